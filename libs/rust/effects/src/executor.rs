//! The executor of owed GitHub side effects (`github_side_effects`, recorded in the same
//! transaction as the ingest that decided them). Each tick claims due rows with `SKIP LOCKED` and a
//! lease, carries them out through the repository provider, and records the outcome on the row and
//! in `flow_events`: `github.side_effect.done`, `…retry_scheduled` (with backoff) or `…failed`.
//!
//! Replays never double an effect: labels, label removals and reactions are idempotent on the
//! forge; a plain comment carries a hidden `<!-- codex-k8s:effect KEY -->` marker and, on any
//! attempt after the first, is looked for before it is written again; the status comment goes
//! through [`crate::status::upsert`].

use crate::status::{self, LagPolicy, Target};
use ck8s_domain::comments::{Locale, Phase, StatusState, next_steps, render_conflict, render_warning};
use ck8s_domain::forge::{ProviderError, ReactionTarget, RepoRef, RepositoryProvider};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A repository as the executor needs it.
#[derive(Debug, Clone)]
pub struct RepositoryRow {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    pub provider: String,
    /// The sealed token (AES-GCM); only the provider factory opens it.
    pub token_encrypted: Vec<u8>,
}

/// Builds the provider of a repository (opening its token).
pub trait Providers: Send + Sync {
    fn for_repository(&self, repo: &RepositoryRow) -> Result<Arc<dyn RepositoryProvider>, String>;
}

/// Settings of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
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
        }
    }
}

/// One claimed row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Owed {
    id: i64,
    idempotency_key: String,
    correlation_id: String,
    run_id: Option<Uuid>,
    repository_id: Uuid,
    kind: String,
    target_number: i32,
    payload: Value,
    attempts: i32,
}

/// How one attempt ended.
enum Outcome {
    Done(Value),
    Retry(String),
    Failed(String),
}

/// The executor.
pub struct Executor {
    pub pool: PgPool,
    pub providers: Arc<dyn Providers>,
    pub settings: ExecutorSettings,
}

/// The hidden marker of a plain comment owed under `key`.
pub fn effect_marker(key: &str) -> String {
    format!("<!-- codex-k8s:effect {} -->", key.replace("--", "- -").replace('>', ""))
}

impl Executor {
    /// Claims due effects and carries them out; returns how many were attempted.
    pub async fn tick(&self) -> Result<usize, sqlx::Error> {
        let owed: Vec<Owed> = sqlx::query_as(
            "UPDATE github_side_effects SET status = 'in_progress', lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
                    attempts = attempts + 1
             WHERE id IN (SELECT id FROM github_side_effects
                          WHERE status IN ('pending', 'in_progress') AND next_attempt_at <= now()
                            AND (status = 'pending' OR lease_until < now())
                          ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $3)
             RETURNING id, idempotency_key, correlation_id, run_id, repository_id, kind, target_number, payload, attempts",
        )
        .bind(&self.settings.owner)
        .bind(self.settings.lease.as_millis() as f64)
        .bind(self.settings.batch)
        .fetch_all(&self.pool)
        .await?;
        let mut owed = owed;
        owed.sort_by_key(|o| o.id);
        for o in &owed {
            let outcome = self.attempt(o).await;
            self.record(o, outcome).await?;
        }
        Ok(owed.len())
    }

    /// Ticks until nothing is due (effects waiting on a backoff are left for later ticks).
    pub async fn drain(&self) -> Result<usize, sqlx::Error> {
        let mut total = 0;
        loop {
            let n = self.tick().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn repository(&self, id: Uuid) -> Result<Option<RepositoryRow>, sqlx::Error> {
        let row: Option<(Uuid, String, String, String, Vec<u8>)> =
            sqlx::query_as("SELECT id, owner, name, provider, token_encrypted FROM repositories WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, owner, name, provider, token_encrypted)| RepositoryRow { id, owner, name, provider, token_encrypted }))
    }

    async fn attempt(&self, o: &Owed) -> Outcome {
        let repo_row = match self.repository(o.repository_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Failed("the repository is no longer registered".into()),
            Err(e) => return Outcome::Retry(format!("database: {e}")),
        };
        let provider = match self.providers.for_repository(&repo_row) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let repo = RepoRef::new(repo_row.owner.clone(), repo_row.name.clone());
        let n = i64::from(o.target_number);
        let locale = Locale::parse(o.payload["locale"].as_str().unwrap_or("ru"));
        let result: Result<Value, Outcome> = match o.kind.as_str() {
            "issue_comment" => self.comment(provider.as_ref(), &repo, n, o, locale).await,
            "status_comment" => {
                let target =
                    Target { correlation_id: o.correlation_id.clone(), repository_id: o.repository_id, repo: repo.clone(), number: n };
                let run_id = o.run_id.map(|r| r.to_string()).unwrap_or_else(|| o.correlation_id.clone());
                // Reports after the first carry a partial state (phase and facts) to merge in.
                let partial: StatusState = serde_json::from_value(o.payload["state"].clone()).unwrap_or_default();
                let mut report = StatusState {
                    console_url: self.settings.console_url.as_ref().map(|c| format!("{}/runs/{run_id}", c.trim_end_matches('/'))),
                    run_id,
                    phase: serde_json::from_value(o.payload["phase"].clone()).ok().or(Some(Phase::Created)),
                    repository: Some(repo.full_name()),
                    issue_number: partial.issue_number.or(Some(n)),
                    ..Default::default()
                };
                report = report.merge(&StatusState { run_id: String::new(), console_url: None, repository: None, ..partial });
                if report.phase == Some(Phase::Finished)
                    && report.run_status.as_deref() == Some("succeeded")
                    && report.next_steps.is_empty()
                    && let (Some(console), Some(kind)) = (&self.settings.console_url, &report.trigger_kind)
                {
                    report.next_steps = next_steps(kind, &repo.full_name(), report.issue_number, report.pr_number, console, locale);
                }
                match status::upsert(&self.pool, provider.as_ref(), &target, &report, locale, self.settings.lag).await {
                    Ok(u) => Ok(json!({"comment_id": u.comment_id, "created": u.created})),
                    Err(e) if e.is_retryable() => Err(Outcome::Retry(e.to_string())),
                    Err(e) => Err(Outcome::Failed(e.to_string())),
                }
            }
            "add_labels" => {
                let labels: Vec<String> =
                    o.payload["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect();
                provider.add_labels(&repo, n, &labels).await.map(|now| json!({"labels": now})).map_err(classify)
            }
            "remove_label" => {
                let name = o.payload["label"].as_str().unwrap_or_default().to_string();
                provider.remove_label(&repo, n, &name).await.map(|_| json!({"removed": name})).map_err(classify)
            }
            "reaction" => {
                let content = o.payload["content"].as_str().unwrap_or("eyes");
                let target = match (o.payload["subject"].as_str(), o.payload["comment_id"].as_i64()) {
                    (Some("issue_comment"), Some(id)) => ReactionTarget::Comment(id),
                    _ => ReactionTarget::Issue(n),
                };
                provider.add_reaction(&repo, target, content).await.map(|_| json!({"content": content})).map_err(classify)
            }
            other => Err(Outcome::Failed(format!("unknown side effect kind {other:?}"))),
        };
        match result {
            Ok(v) => Outcome::Done(v),
            Err(o) => o,
        }
    }

    async fn comment(&self, p: &dyn RepositoryProvider, repo: &RepoRef, n: i64, o: &Owed, locale: Locale) -> Result<Value, Outcome> {
        let strings = |k: &str| -> Vec<String> {
            o.payload[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
        };
        let text = match o.payload["template"].as_str() {
            Some("trigger_conflict") => render_conflict(&strings("labels"), locale),
            Some("trigger_warning") => render_warning(o.payload["reason"].as_str().unwrap_or(""), &strings("suggested_labels"), locale),
            other => return Err(Outcome::Failed(format!("unknown comment template {other:?}"))),
        };
        let marker = effect_marker(&o.idempotency_key);
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

    async fn record(&self, o: &Owed, outcome: Outcome) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let (event, payload) = match outcome {
            Outcome::Done(result) => {
                sqlx::query(
                    "UPDATE github_side_effects SET status = 'done', done_at = now(), result = $2, last_error = NULL,
                            lease_owner = NULL, lease_until = NULL WHERE id = $1",
                )
                .bind(o.id)
                .bind(&result)
                .execute(&mut *tx)
                .await?;
                ("github.side_effect.done", json!({"kind": o.kind, "key": o.idempotency_key, "attempts": o.attempts, "result": result}))
            }
            Outcome::Retry(error) if o.attempts < self.settings.max_attempts => {
                let wait = self.backoff(o.attempts);
                sqlx::query(
                    "UPDATE github_side_effects SET status = 'pending', last_error = $2, lease_owner = NULL, lease_until = NULL,
                            next_attempt_at = now() + $3 * interval '1 millisecond' WHERE id = $1",
                )
                .bind(o.id)
                .bind(&error)
                .bind(wait.as_millis() as f64)
                .execute(&mut *tx)
                .await?;
                tracing::warn!(kind = %o.kind, key = %o.idempotency_key, attempts = o.attempts, wait_ms = wait.as_millis() as u64, %error, "side effect will be retried");
                (
                    "github.side_effect.retry_scheduled",
                    json!({"kind": o.kind, "key": o.idempotency_key, "attempts": o.attempts, "error": error, "retry_in_ms": wait.as_millis() as u64}),
                )
            }
            Outcome::Retry(error) | Outcome::Failed(error) => {
                sqlx::query("UPDATE github_side_effects SET status = 'failed', last_error = $2, lease_owner = NULL, lease_until = NULL WHERE id = $1")
                    .bind(o.id)
                    .bind(&error)
                    .execute(&mut *tx)
                    .await?;
                tracing::error!(kind = %o.kind, key = %o.idempotency_key, attempts = o.attempts, %error, "side effect failed for good");
                ("github.side_effect.failed", json!({"kind": o.kind, "key": o.idempotency_key, "attempts": o.attempts, "error": error}))
            }
        };
        sqlx::query(
            "INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type, payload) VALUES ($1, $2, 'system', $3, $4, $5)",
        )
        .bind(&o.correlation_id)
        .bind(o.run_id)
        .bind(&self.settings.owner)
        .bind(event)
        .bind(payload)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

fn classify(e: ProviderError) -> Outcome {
    if e.is_retryable() { Outcome::Retry(e.to_string()) } else { Outcome::Failed(e.to_string()) }
}
