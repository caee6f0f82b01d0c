//! One agent run from work tree to pull request (product spec §6.1 steps 5, 7–9, §3.5 completion
//! requirements): prepare the branch, render the prompt, run Codex (resuming the session when one
//! is known), enforce the write scope on everything changed since the baseline, commit, push, open
//! or update the pull request through the repository provider, and move the labels (`state:in-review`
//! on issue and PR, trigger label off the issue). A reviewer commits nothing; a revise run without a
//! branch to continue fails with `NothingToRevise` (exit code 42).

use crate::codex::{Codex, CodexError};
use crate::prompt::{PromptContext, render};
use crate::workspace::{Identity, Workspace, WorkspaceError};
use ck8s_domain::agent_run::{CodexTranscript, ScopeViolation, WriteScope, check_write_scope};
use ck8s_domain::forge::{NewPullRequest, ProviderError, PullRequestUpdate, RepoRef, RepositoryProvider};
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

/// What a run needs.
pub struct RunInput {
    pub repo: RepoRef,
    pub clone_url: String,
    pub bot_token: SecretString,
    pub identity: Identity,
    pub workdir: PathBuf,
    pub prompt: PromptContext,
    pub scope: WriteScope,
    /// Whether the run should end with a pull request (not for reviewer/discussion/ai-repair).
    pub wants_pr: bool,
    pub revise: bool,
    /// The Codex session to resume, if a snapshot exists.
    pub resume_session: Option<String>,
    pub in_review_label: String,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub transcript: CodexTranscript,
    pub commit: Option<String>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub pr_created: bool,
    pub changed_paths: Vec<String>,
    pub prompt_source: String,
}

/// A run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Codex(#[from] CodexError),
    #[error(transparent)]
    Scope(#[from] ScopeViolation),
    #[error("repository provider: {0}")]
    Provider(#[from] ProviderError),
}

impl RunError {
    /// The process exit code of this failure: 42 for a revise without a pull request.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Workspace(WorkspaceError::NothingToRevise(_)) => 42,
            RunError::Scope(_) => 3,
            _ => 1,
        }
    }
}

/// Runs the agent once.
pub async fn run(input: RunInput, codex: &Codex, provider: &dyn RepositoryProvider) -> Result<RunOutcome, RunError> {
    let p = &input.prompt;
    let ws = Workspace::prepare(
        &input.workdir,
        &input.clone_url,
        &p.base_branch,
        &p.target_branch,
        input.revise,
        input.bot_token.clone(),
        input.identity.clone(),
    )?;
    let prompt = render(&ws.dir, p);
    let token = input.bot_token.expose_secret().to_string();
    let transcript = codex.exec(&ws.dir, &prompt.text, input.resume_session.as_deref(), &[&token])?;

    let changed = ws.changed_paths()?;
    check_write_scope(&input.scope, &changed)?;
    let mut outcome = RunOutcome {
        transcript,
        commit: None,
        pr_number: None,
        pr_url: None,
        pr_created: false,
        changed_paths: changed,
        prompt_source: prompt.source,
    };
    if input.scope == WriteScope::Nothing {
        return Ok(outcome);
    }
    let subject = format!("{}: {}", p.agent_name, p.issue_title);
    outcome.commit = ws.commit_all(&subject)?;
    if outcome.commit.is_some() || input.revise {
        ws.push()?;
    }
    if !input.wants_pr || outcome.commit.is_none() && !input.revise {
        return Ok(outcome);
    }
    let summary = outcome.transcript.final_message.clone().unwrap_or_default();
    let closes = p.issue_number.map(|n| format!("\n\nCloses #{n}")).unwrap_or_default();
    let pr = match provider.find_pull_by_head(&input.repo, &p.target_branch).await? {
        Some(existing) => {
            let body = format!(
                "{}\n\n### {}\n\n{summary}",
                existing.body.clone().unwrap_or_default().trim_end(),
                if p.locale == "ru" { "Доработка" } else { "Revision" }
            );
            provider.update_pull(&input.repo, existing.number, &PullRequestUpdate { body: Some(body), ..Default::default() }).await?
        }
        None => {
            outcome.pr_created = true;
            let new = NewPullRequest {
                title: subject.clone(),
                body: format!("{summary}{closes}"),
                head: p.target_branch.clone(),
                base: p.base_branch.clone(),
                draft: false,
            };
            provider.create_pull(&input.repo, &new).await?
        }
    };
    let in_review = vec![input.in_review_label.clone()];
    provider.add_labels(&input.repo, pr.number, &in_review).await?;
    if let Some(n) = p.issue_number {
        provider.add_labels(&input.repo, n, &in_review).await?;
        provider.remove_label(&input.repo, n, &p.trigger_label).await?;
    }
    outcome.pr_number = Some(pr.number);
    outcome.pr_url = Some(pr.html_url);
    Ok(outcome)
}
