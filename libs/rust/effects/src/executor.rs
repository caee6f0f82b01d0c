//! The executor of owed GitHub side effects (`github_side_effects`, recorded in the same
//! transaction as the decision that owes them). Each tick claims due rows with `SKIP LOCKED` and a
//! lease, decodes each into the domain's [`OwedEffect`], carries it out through the repository
//! provider, and records the outcome on the row and in `flow_events`: `github.side_effect.done`,
//! `…retry_scheduled` (with backoff) or `…failed`. Only the claim that still holds a row may
//! record its outcome, so a slow executor cannot overwrite the work of one that took over.
//!
//! Replays never double an effect: labels, label removals and reactions are idempotent on the forge; a plain
//! comment carries a hidden `<!-- codex-k8s:effect KEY -->` marker and, on any attempt after the
//! first, is looked for before it is written again; the status comment goes through
//! [`crate::status::upsert`].

use crate::status::{self, LagPolicy, Target};
use ck8s_domain::comments::{Locale, Phase, StatusState, next_steps, render_conflict, render_warning};
use ck8s_domain::effects::{OwedEffect, ReactionSubject};
use ck8s_domain::forge::{ProviderError, ReactionTarget, RepoRef, RepositoryProvider};
use ck8s_domain::policy::CommentTemplate;
use ck8s_domain::run::RunStatus;
use ck8s_store::effects::{self as queue, Claimed, Outcome, Recorded};
use ck8s_store::{Pool, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub use ck8s_store::effects::RepositoryRow;

/// A repository's provider cannot be built (an unsupported forge, a token that cannot be opened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProviderSetupError(pub String);

/// Builds the provider of a repository (opening its token).
pub trait Providers: Send + Sync {
    fn for_repository(&self, repo: &RepositoryRow) -> Result<Arc<dyn RepositoryProvider>, ProviderSetupError>;
}

/// Settings of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// This executor's lease owner name (unique per replica).
    pub owner: String,
    pub batch: i64,
    pub lease: Duration,
    pub max_attempts: i32,
    /// Backoff after the first failure; doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub lag: LagPolicy,
    /// The staff console's base URL: status comments link to `<console>/runs/<run id>`.
    pub console_url: Option<String>,
    /// The bot's login (`CODEXK8S_GIT_BOT_USERNAME`): the author of every status comment.
    pub bot_login: String,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            owner: "side-effects".into(),
            batch: 20,
            lease: Duration::from_secs(120),
            max_attempts: 12,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            lag: LagPolicy::default(),
            console_url: None,
            bot_login: "codex-bot".into(),
        }
    }
}

/// How one attempt ended, before the retry budget is applied.
enum Attempt {
    Done(Value),
    Retry(String),
    Failed(String),
}

/// The executor.
pub struct Executor {
    pub pool: Pool,
    pub providers: Arc<dyn Providers>,
    pub settings: ExecutorSettings,
}

/// The hidden marker of a plain comment owed under `key`.
pub fn effect_marker(key: &str) -> String {
    format!("<!-- codex-k8s:effect {} -->", key.replace("--", "- -").replace('>', ""))
}

impl Executor {
    /// Claims due effects and carries them out; returns how many were attempted.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let owed = queue::claim_due(&self.pool, &self.settings.owner, self.settings.lease, self.settings.batch).await?;
        for o in &owed {
            let outcome = self.attempt(o).await;
            if queue::record(&self.pool, o, &self.settings.owner, &outcome).await? == Recorded::LeaseLost {
                tracing::warn!(kind = %o.kind, key = %o.idempotency_key, attempts = o.attempts, "another executor took the side effect over; its outcome stands");
            }
        }
        Ok(owed.len())
    }

    /// Ticks until nothing is due (effects waiting on a backoff are left for later ticks).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.tick().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    #[tracing::instrument(skip_all, fields(correlation_id = %o.correlation_id, run_id = ?o.run_id, kind = %o.kind, attempt = o.attempts))]
    async fn attempt(&self, o: &Claimed) -> Outcome {
        let attempt = self.carry_out(o).await;
        match attempt {
            Attempt::Done(v) => Outcome::Done(v),
            Attempt::Retry(error) if o.attempts < self.settings.max_attempts => {
                let wait = self.backoff(o.attempts);
                tracing::warn!(key = %o.idempotency_key, wait_ms = wait.as_millis() as u64, %error, "side effect will be retried");
                Outcome::Retry { error, wait }
            }
            Attempt::Retry(error) | Attempt::Failed(error) => {
                tracing::error!(key = %o.idempotency_key, %error, "side effect failed for good");
                Outcome::Failed(error)
            }
        }
    }

    async fn carry_out(&self, o: &Claimed) -> Attempt {
        let effect = match &o.effect {
            Ok(e) => e,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let repo_row = match queue::repository(&self.pool, o.repository_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Attempt::Failed("the repository is no longer registered".into()),
            Err(e) => return Attempt::Retry(ck8s_domain::report::chain(&e)),
        };
        let provider = match self.providers.for_repository(&repo_row) {
            Ok(p) => p,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let repo = RepoRef::new(repo_row.owner.clone(), repo_row.name.clone());
        let n = o.target_number;
        let result = match effect {
            OwedEffect::IssueComment { template, locale } => self.comment(provider.as_ref(), &repo, o, template, *locale).await,
            OwedEffect::StatusComment { phase, locale, state } => self.status(provider.as_ref(), &repo, o, *phase, *locale, state).await,
            OwedEffect::AddLabels { labels } => {
                provider.add_labels(&repo, n, labels).await.map(|now| json!({"labels": now})).map_err(classify)
            }
            OwedEffect::RemoveLabel { label } => {
                provider.remove_label(&repo, n, label).await.map(|_| json!({"removed": label})).map_err(classify)
            }
            OwedEffect::Reaction { subject, content } => {
                let target = match subject {
                    ReactionSubject::IssueComment { comment_id } => ReactionTarget::Comment(*comment_id),
                    ReactionSubject::Issue => ReactionTarget::Issue(n),
                };
                provider.add_reaction(&repo, target, content.as_str()).await.map(|_| json!({"content": content})).map_err(classify)
            }
        };
        match result {
            Ok(v) => Attempt::Done(v),
            Err(a) => a,
        }
    }

    async fn status(
        &self,
        provider: &dyn RepositoryProvider,
        repo: &RepoRef,
        o: &Claimed,
        phase: Phase,
        locale: Locale,
        partial: &StatusState,
    ) -> Result<Value, Attempt> {
        let target = Target {
            correlation_id: o.correlation_id.clone(),
            repository_id: o.repository_id,
            repo: repo.clone(),
            number: o.target_number,
            bot_login: self.settings.bot_login.clone(),
        };
        let run_id = o.run_id.map(|r| r.to_string()).unwrap_or_else(|| o.correlation_id.clone());
        let mut report = StatusState {
            console_url: self.settings.console_url.as_ref().map(|c| format!("{}/runs/{run_id}", c.trim_end_matches('/'))),
            run_id,
            phase: Some(phase),
            repository: Some(repo.full_name()),
            issue_number: partial.issue_number.or(Some(o.target_number)),
            ..Default::default()
        };
        // Reports after the first carry a partial state (phase and facts) to merge in.
        report = report.merge(&StatusState { run_id: String::new(), console_url: None, repository: None, ..partial.clone() });
        if report.phase == Some(Phase::Finished)
            && report.run_status == Some(RunStatus::Succeeded)
            && report.next_steps.is_empty()
            && let (Some(console), Some(kind)) = (&self.settings.console_url, report.trigger_kind)
        {
            report.next_steps = next_steps(kind, &repo.full_name(), report.issue_number, report.pr_number, console, locale);
        }
        match status::upsert(&self.pool, provider, &target, &report, locale, self.settings.lag).await {
            Ok(u) => Ok(json!({"comment_id": u.comment_id, "created": u.created})),
            Err(e) if e.is_retryable() => Err(Attempt::Retry(ck8s_domain::report::chain(&e))),
            Err(e) => Err(Attempt::Failed(ck8s_domain::report::chain(&e))),
        }
    }

    async fn comment(
        &self,
        p: &dyn RepositoryProvider,
        repo: &RepoRef,
        o: &Claimed,
        template: &CommentTemplate,
        locale: Locale,
    ) -> Result<Value, Attempt> {
        let text = match template {
            CommentTemplate::TriggerConflict { labels } => render_conflict(labels, locale),
            CommentTemplate::TriggerWarning { reason, suggested } => render_warning(reason, suggested, locale),
        };
        let marker = effect_marker(&o.idempotency_key);
        let n = o.target_number;
        if o.attempts > 1 {
            // An earlier attempt may have written it before failing: look before writing again.
            let existing = p.list_comments(repo, n).await.map_err(classify)?;
            if let Some(c) = existing.iter().find(|c| c.body.contains(&marker)) {
                return Ok(json!({"comment_id": c.id, "found_after_retry": true}));
            }
        }
        let c = p.create_comment(repo, n, &format!("{text}\n\n{marker}")).await.map_err(classify)?;
        Ok(json!({"comment_id": c.id}))
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let factor = 2u32.saturating_pow(u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20));
        (self.settings.backoff * factor).min(self.settings.max_backoff)
    }
}

fn classify(e: ProviderError) -> Attempt {
    if e.is_retryable() { Attempt::Retry(e.to_string()) } else { Attempt::Failed(e.to_string()) }
}
