//! One agent run from work tree to pull request (product spec §6.1 steps 5, 7–9, §3.5 completion
//! requirements): prepare the branch, render the prompt, run Codex (resuming the session when one
//! is known), enforce the write scope on everything changed since the baseline, commit, push, open
//! or update the pull request through the repository provider, and move the labels (`state:in-review`
//! on issue and PR, trigger label off the issue). A reviewer commits nothing; a revise run without a
//! branch to continue fails with `NothingToRevise` (`AgentExit::NothingToRevise`).

use crate::codex::{Codex, CodexError};
use crate::prompt::{PromptContext, render};
use crate::sandbox::AgentUser;
use crate::workspace::{Identity, Workspace, WorkspaceError};
use ck8s_domain::agent_run::{AgentReport, CodexTranscript, ScopeViolation, WriteScope, check_changes, redact_all};
use ck8s_domain::forge::{
    LineComment, NewPullRequest, NewReview, ProviderError, PullRequestUpdate, RepoRef, RepositoryProvider, ReviewComment, ReviewEvent,
};
use ck8s_domain::run_spec::AgentExit;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

/// What a run needs.
pub struct RunInput {
    pub repo: RepoRef,
    pub clone_url: String,
    pub bot_token: SecretString,
    pub identity: Identity,
    pub workdir: PathBuf,
    /// The agent's directory (`<workdir>/agent` on the local runtime).
    pub agent_dir: PathBuf,
    pub prompt: PromptContext,
    pub scope: WriteScope,
    /// Whether the run should end with a pull request (not for reviewer/discussion/ai-repair).
    pub wants_pr: bool,
    pub revise: bool,
    /// The Codex session to resume, if a snapshot exists.
    pub resume_session: Option<String>,
    pub in_review_label: String,
    /// Revise: the pull request's review comments (the top-level ones not by the bot get answers).
    pub review_comments: Vec<ReviewComment>,
    /// Reviewer: the pull request to review.
    pub review_pr: Option<i64>,
    /// The bot's login (its own comments are never answered).
    pub bot_login: String,
    /// Every secret of the run, redacted from all text the run posts.
    pub secrets: Vec<SecretString>,
}

/// Makes the run's directories: `<workdir>` (others may pass through, not list), `runner/`
/// (the runner's alone) and `agent_dir` (the agent's: `<workdir>/agent`, or the volume shared with
/// the agent's container). Leftovers of an earlier attempt are removed.
fn layout(workdir: &std::path::Path, agent_dir: &std::path::Path, agent: Option<AgentUser>) -> Result<PathBuf, WorkspaceError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(workdir)?;
    let meta = std::fs::symlink_metadata(workdir)?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        let message = format!("{} is not a directory of the runner's own (a link, or made by someone else)", workdir.display());
        return Err(WorkspaceError::Unexpected { step: "work directory".into(), message });
    }
    let runner = workdir.join("runner");
    for d in [&runner, &agent_dir.join("repo")] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    std::fs::create_dir_all(&runner)?;
    std::fs::create_dir_all(agent_dir)?;
    std::fs::set_permissions(workdir, std::fs::Permissions::from_mode(0o711))?;
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o700))?;
    let agent_mode = if agent.is_some() { 0o700 } else { 0o755 };
    std::fs::set_permissions(agent_dir, std::fs::Permissions::from_mode(agent_mode))?;
    Ok(runner)
}

/// A learning-mode explanation posted on the pull request (spec §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearningItem {
    pub file_path: Option<String>,
    pub line: Option<i64>,
    pub explanation: String,
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
    /// The agent's final report.
    pub report: AgentReport,
    /// Review comments answered (revise).
    pub replies: usize,
    /// The review posted (reviewer).
    pub review_id: Option<i64>,
    /// Learning-mode explanations posted on the pull request.
    pub learning: Vec<LearningItem>,
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
    /// The agent's change holds a platform secret; nothing was committed or pushed.
    #[error("the agent's change holds a platform secret in {}; nothing was pushed (the secret never left the runner)", .0.join(", "))]
    SecretInChange(Vec<String>),
}

impl RunError {
    /// How the process ends for this failure.
    pub fn exit(&self) -> AgentExit {
        match self {
            RunError::Workspace(WorkspaceError::NothingToRevise(_)) => AgentExit::NothingToRevise,
            RunError::Scope(_) | RunError::SecretInChange(_) => AgentExit::ScopeViolation,
            _ => AgentExit::Failed,
        }
    }
}

/// Runs the agent once. The runner's clone (`<workdir>/runner`, private) is where git holds the
/// bot token; the agent gets a copy (`<workdir>/agent`, its own) and its change comes back as the
/// files of that copy, checked against the write scope path by path before one commit is pushed.
pub async fn run(input: RunInput, codex: &Codex, provider: &dyn RepositoryProvider) -> Result<RunOutcome, RunError> {
    let p = &input.prompt;
    let agent_dir = input.agent_dir.clone();
    let runner_dir = layout(&input.workdir, &agent_dir, codex.agent)?;
    let ws = Workspace::prepare(
        &runner_dir.join("repo"),
        &runner_dir.join("git-home"),
        &input.clone_url,
        &p.base_branch,
        &p.target_branch,
        input.revise,
        input.bot_token.clone(),
        input.identity.clone(),
    )
    .await?;
    let prompt = render(&ws.dir, p);
    let agent_tree = agent_dir.join("repo");
    ws.agent_tree(&agent_tree, &input.clone_url).await?;
    if let Some(agent) = codex.agent {
        agent.hand_over(&agent_dir).map_err(WorkspaceError::from)?;
    }
    let token = input.bot_token.expose_secret().to_string();
    let redacted: Vec<&str> = input.secrets.iter().map(|s| s.expose_secret()).chain([token.as_str()]).collect();
    let transcript = codex.exec(&agent_tree, &prompt.text, input.resume_session.as_deref(), &redacted).await?;

    let changes = ws.stage_from(&agent_tree).await?;
    check_changes(&input.scope, &changes)?;
    let changed: Vec<String> = changes.iter().map(|c| c.path().to_string()).collect();
    let secrets = redacted;
    let leaking = ws.staged_with(&secrets).await?;
    if !leaking.is_empty() {
        return Err(RunError::SecretInChange(leaking));
    }
    let clean = |t: &str| redact_all(t, &secrets);
    let report = AgentReport::from_final_message(transcript.final_message.as_deref().unwrap_or_default());
    let mut outcome = RunOutcome {
        transcript,
        commit: None,
        pr_number: None,
        pr_url: None,
        pr_created: false,
        changed_paths: changed,
        prompt_source: prompt.source,
        report,
        replies: 0,
        review_id: None,
        learning: vec![],
    };
    if input.scope == WriteScope::Nothing {
        if let Some(pr) = input.review_pr {
            outcome.review_id = Some(post_review(provider, &input.repo, pr, &outcome.report, &clean).await?);
            outcome.pr_number = Some(pr);
        }
        return Ok(outcome);
    }
    let subject = format!("{}: {}", p.agent_name, p.issue_title);
    outcome.commit = ws.commit_staged(&subject).await?;
    if outcome.commit.is_some() || input.revise {
        ws.push().await?;
    }
    if !input.wants_pr || outcome.commit.is_none() && !input.revise {
        return Ok(outcome);
    }
    let summary = clean(&outcome.report.summary);
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
    if input.revise {
        outcome.replies = answer_review(provider, &input, pr.number, &outcome, &clean).await?;
    }
    if p.learning_mode {
        outcome.learning = explain(provider, &input, pr.number, &outcome, &clean).await?;
    }
    Ok(outcome)
}

/// The reviewer's review: always a `COMMENT` (a bot may not approve or block its own pull
/// requests), its verdict stated in the body; findings become line comments, or — when the forge
/// refuses a line outside the diff — a list in the body.
async fn post_review(
    provider: &dyn RepositoryProvider,
    repo: &RepoRef,
    pr: i64,
    report: &AgentReport,
    clean: &dyn Fn(&str) -> String,
) -> Result<i64, RunError> {
    let verdict = report.verdict.as_deref().map(|v| format!("\n\n**Verdict:** `{v}`")).unwrap_or_default();
    let body = format!("{}{verdict}", clean(&report.summary));
    let comments: Vec<LineComment> = report
        .line_notes
        .iter()
        .filter(|n| n.line >= 1 && !n.path.is_empty())
        .map(|n| LineComment { path: n.path.clone(), line: n.line, body: clean(&n.body) })
        .collect();
    let review = NewReview { body: body.clone(), event: ReviewEvent::Comment, comments: comments.clone() };
    match provider.create_review(repo, pr, &review).await {
        Ok(r) => Ok(r.id),
        Err(ProviderError::Validation(_)) if !comments.is_empty() => {
            let listed: String = comments.iter().map(|c| format!("\n- `{}:{}` — {}", c.path, c.line, c.body)).collect();
            let flat = NewReview { body: format!("{body}\n{listed}"), event: ReviewEvent::Comment, comments: vec![] };
            Ok(provider.create_review(repo, pr, &flat).await?.id)
        }
        Err(e) => Err(e.into()),
    }
}

/// Answers every top-level review comment not written by the bot and not answered yet: with the
/// agent's reply for that comment when it gave one, otherwise with what the revision did.
async fn answer_review(
    provider: &dyn RepositoryProvider,
    input: &RunInput,
    pr: i64,
    outcome: &RunOutcome,
    clean: &dyn Fn(&str) -> String,
) -> Result<usize, RunError> {
    let answered: Vec<i64> = input.review_comments.iter().filter(|c| c.author == input.bot_login).filter_map(|c| c.in_reply_to).collect();
    let commit = outcome.commit.as_deref().map(|c| c.chars().take(7).collect::<String>());
    let mut n = 0;
    for c in input.review_comments.iter().filter(|c| c.in_reply_to.is_none() && c.author != input.bot_login && !answered.contains(&c.id)) {
        let reply = match outcome.report.review_replies.iter().find(|r| r.comment_id == c.id) {
            Some(r) => clean(&r.body),
            None => match &commit {
                Some(sha) => format!(
                    "{} {sha}: {}",
                    if input.prompt.locale == "ru" { "Исправлено в" } else { "Addressed in" },
                    clean(&outcome.report.summary)
                ),
                None => clean(&outcome.report.summary),
            },
        };
        provider.reply_to_review_comment(&input.repo, pr, c.id, &reply).await?;
        n += 1;
    }
    Ok(n)
}

/// Learning mode's post-PR pass: one summary comment (why, what it gains, alternatives rejected)
/// and line comments on the key changed lines, as a `COMMENT` review. Comments carry a marker of
/// the run so a relaunched run does not post them twice.
async fn explain(
    provider: &dyn RepositoryProvider,
    input: &RunInput,
    pr: i64,
    outcome: &RunOutcome,
    clean: &dyn Fn(&str) -> String,
) -> Result<Vec<LearningItem>, RunError> {
    let marker = format!("<!-- codex-k8s:learning {} -->", input.prompt.run_id.replace("--", "- -").replace('>', ""));
    if provider.list_comments(&input.repo, pr).await?.iter().any(|c| c.body.contains(&marker)) {
        return Ok(vec![]);
    }
    let ru = input.prompt.locale == "ru";
    let explanation = clean(outcome.report.explanation.as_deref().filter(|e| !e.trim().is_empty()).unwrap_or(&outcome.report.summary));
    let title = if ru { "🎓 Режим обучения: почему так" } else { "🎓 Learning mode: why this change" };
    provider.create_comment(&input.repo, pr, &format!("### {title}\n\n{explanation}\n\n{marker}")).await?;
    let mut items = vec![LearningItem { file_path: None, line: None, explanation: explanation.clone() }];
    let notes: Vec<LineComment> = outcome
        .report
        .line_notes
        .iter()
        .filter(|n| n.line >= 1 && outcome.changed_paths.contains(&n.path))
        .take(10)
        .map(|n| LineComment { path: n.path.clone(), line: n.line, body: clean(&n.body) })
        .collect();
    if !notes.is_empty() {
        let head = if ru { "Пояснения к ключевым строкам." } else { "Notes on the key lines." };
        let review = NewReview { body: format!("{head}\n\n{marker}"), event: ReviewEvent::Comment, comments: notes.clone() };
        match provider.create_review(&input.repo, pr, &review).await {
            Ok(_) => {
                items.extend(notes.into_iter().map(|n| LearningItem { file_path: Some(n.path), line: Some(n.line), explanation: n.body }))
            }
            Err(ProviderError::Validation(e)) => {
                tracing::warn!(error = %e, "the forge refused the learning line comments; the summary stands")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(items)
}
