//! One run from the job's settings to its outcome (product spec §6.1–6.4): dial control-plane's
//! agent callbacks with the run's token (failing closed), look up the repository, the issue and —
//! for revise and reviewer runs — the pull request and its review, restore the latest session
//! snapshot of the branch, run the pipeline, then report the snapshot (compare-and-swap), token
//! usage, the pull request and learning-mode explanations. The outcome is one JSON value, and a
//! failure carries the [`AgentExit`] the process ends with.

use crate::callbacks::Callbacks;
use crate::codex::{Codex, Mcp, Provider};
use crate::config::Config;
use crate::pipeline::{RunError, RunInput, RunOutcome, run};
use crate::prompt::PromptContext;
use crate::proxy::{ModelProxy, ProxySettings};
use crate::sandbox::{AgentUser, Claim};
use crate::session;
use crate::workspace::Identity;
use ck8s_domain::agent_run::{PromptKind, seed_stage, target_branch, write_scope};
use ck8s_domain::forge::{RepositoryProvider, ReviewComment};
use ck8s_domain::report::chain;
use ck8s_domain::run_spec::AgentExit;
use ck8s_domain::stage::Stage;
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_proto::controlplane::v1::{LearningFeedback, UpsertAgentSessionRequest};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How often and how long a runner in a pod asks whether its credentials were withdrawn (the
/// worker does it on its next look at the running job: every few seconds).
const CREDENTIALS_POLL: std::time::Duration = std::time::Duration::from_secs(1);
const CREDENTIALS_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// A run that did not succeed: how the process ends and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: AgentExit,
    pub message: String,
}

impl Failure {
    fn failed(message: impl Into<String>) -> Self {
        Self { exit: AgentExit::Failed, message: message.into() }
    }
}

pub(crate) struct Prepared {
    input: RunInput,
    codex: Codex,
    restored_from: Option<String>,
    existing_pr: Option<i64>,
    /// The model proxy the agent talks to; its counts are the run's token usage.
    proxy: ModelProxy,
    /// The agent's user, held for the whole run.
    _claim: Option<Claim>,
}

async fn prepare(cfg: &Config, provider: &GithubProvider, cb: &Callbacks) -> Result<Prepared, Failure> {
    let e1 = |e: ck8s_domain::forge::ProviderError| Failure::failed(e.to_string());
    let repository =
        provider.repository(&cfg.repo).await.map_err(|e| Failure::failed(format!("repository {}: {e}", cfg.repo.full_name())))?;
    let (title, body) = match cfg.run.issue_number {
        Some(n) => {
            let i = provider.issue(&cfg.repo, n).await.map_err(|e| Failure::failed(format!("issue #{n}: {e}")))?;
            (i.title, i.body.unwrap_or_default())
        }
        None => (format!("Run {}", cfg.run.run_id), String::new()),
    };
    let reviewer = cfg.run.agent_key == "reviewer";
    let kind = PromptKind::of(cfg.run.trigger_kind, cfg.run.discussion);
    let revise = kind == PromptKind::Revise;
    let mut branch =
        target_branch(None, cfg.run.trigger_kind, &repository.default_branch, cfg.run.issue_number, &cfg.run.run_id.to_string());
    let mut existing_pr = None;
    if reviewer {
        let n = cfg
            .run
            .existing_pr_number
            .ok_or_else(|| Failure::failed("a reviewer run needs the pull request (CODEXK8S_EXISTING_PR_NUMBER)"))?;
        let pr = provider.pull(&cfg.repo, n).await.map_err(|e| Failure::failed(format!("pull request #{n}: {e}")))?;
        branch = pr.head_ref;
        existing_pr = Some(n);
    } else if revise && let Some(pr) = provider.find_pull_by_head(&cfg.repo, &branch).await.map_err(e1)? {
        existing_pr = Some(pr.number);
    }
    let (review_notes, review_comments) = match existing_pr {
        Some(n) if revise => review_notes(cfg, provider, n).await?,
        _ => (Vec::new(), Vec::new()),
    };

    // In a pod the agent has a container of its own, and it may be able to create pods in the
    // run's namespace: it starts only once the worker has deleted the run's Secret (the runner
    // read it when its container started). Here it gets a user of its own.
    if cfg.agent_host.is_some() {
        cb.await_credentials_withdrawn(CREDENTIALS_POLL, CREDENTIALS_WAIT).await.map_err(|e| Failure::failed(e.to_string()))?;
    }
    let claim = match cfg.agent_host {
        Some(_) => None,
        None => AgentUser::claim(&cfg.run.run_id.to_string())
            .map_err(|e| Failure::failed(format!("cannot claim a user for the agent under /run/codex-k8s/agents: {e}")))?,
    };
    if claim.is_none() && cfg.agent_host.is_none() {
        cb.event(
            "run.agent.isolation",
            json!({"separate_user": false, "reason": "the runner is not root, so the agent runs as the runner's user"}),
        )
        .await;
    }
    // What an earlier attempt's agent left (it may have planted links for the runner to follow
    // while restoring the session as root) goes first.
    let agent_dir = cfg.agent_dir.clone();
    if agent_dir.exists() {
        std::fs::remove_dir_all(&agent_dir).map_err(|e| Failure::failed(format!("cannot clear {}: {e}", agent_dir.display())))?;
    }
    let home = agent_dir.join("codex-home");
    let restored = if revise || reviewer { restore_session(cb, &home, &branch).await } else { Restored::default() };
    let existing_pr = existing_pr.or(restored.pr_number);
    let (resume, restored_from) = (restored.session_id, restored.from_run);
    let scope = write_scope(cfg.run.trigger_kind, &cfg.run.agent_key, cfg.run.discussion);
    let wants_pr = !reviewer && !cfg.run.discussion && cfg.run.trigger_kind.stage != Stage::AiRepair;
    let input = RunInput {
        repo: cfg.repo.clone(),
        clone_url: format!("{}/{}.git", cfg.platform.git_base_url.trim_end_matches('/'), cfg.repo.full_name()),
        bot_token: cfg.bot_token.clone(),
        identity: Identity { name: cfg.run.agent_name.clone(), email: cfg.platform.git_bot_mail.clone() },
        workdir: cfg.workdir.clone(),
        agent_dir: cfg.agent_dir.clone(),
        prompt: PromptContext {
            repository: cfg.repo.full_name(),
            run_id: cfg.run.run_id.to_string(),
            issue_number: cfg.run.issue_number,
            issue_title: title,
            issue_body: body,
            agent_name: cfg.run.agent_name.clone(),
            stage: seed_stage(cfg.run.trigger_kind).into(),
            role: cfg.run.agent_key.clone(),
            kind: kind.as_str().into(),
            trigger_label: cfg.run.trigger_label.clone().unwrap_or_default(),
            base_branch: repository.default_branch.clone(),
            target_branch: branch,
            locale: cfg.run.locale.as_str().to_string(),
            existing_pr,
            learning_mode: cfg.run.learning_mode && !reviewer,
            review_notes,
        },
        scope,
        wants_pr,
        // A reviewer works on the pull request's existing branch, like a revise.
        revise: revise || reviewer,
        resume_session: resume,
        in_review_label: cfg.platform.in_review_label.clone(),
        review_comments,
        review_pr: if reviewer { existing_pr } else { None },
        bot_login: cfg.platform.git_bot_username.clone(),
        secrets: vec![cfg.model_key.clone(), cfg.run_token.clone()],
    };
    // The agent reaches the model only through the runner's proxy, which holds the real key.
    let settings = ProxySettings {
        upstream: cfg.model_base_url.clone(),
        api_key: cfg.model_key.clone(),
        budget_tokens: cfg.platform.agent_token_budget,
    };
    let proxy = ModelProxy::start(settings).await.map_err(|e| Failure::failed(e.to_string()))?;
    let codex = Codex {
        binary: cfg.platform.codex_bin.clone().into(),
        home,
        model: cfg.run.model.clone(),
        reasoning_effort: cfg.run.reasoning_effort.clone(),
        provider: Some(Provider { base_url: proxy.base_url() }),
        mcp: cfg.platform.mcp_url.clone().map(|url| Mcp { url }),
        api_key: proxy.agent_key(),
        // The run token reaches the agent only for the platform's MCP server.
        mcp_token: cfg.platform.mcp_url.as_ref().map(|_| cfg.run_token.clone()),
        output_schema: true,
        agent: claim.as_ref().map(|c| c.user),
        host: cfg.agent_host.clone(),
    };
    Ok(Prepared { input, codex, restored_from, existing_pr, proxy, _claim: claim })
}

/// What a revise is asked to address: the bodies of change requests and the top-level review
/// comments not written by the bot (with the comments themselves, to answer them later).
async fn review_notes(cfg: &Config, provider: &GithubProvider, pr: i64) -> Result<(Vec<String>, Vec<ReviewComment>), Failure> {
    let e1 = |e: ck8s_domain::forge::ProviderError| Failure::failed(e.to_string());
    let mut notes = Vec::new();
    for rv in provider.list_reviews(&cfg.repo, pr).await.map_err(e1)? {
        if let Some(b) = rv.body.filter(|b| rv.state == "CHANGES_REQUESTED" && !b.trim().is_empty()) {
            notes.push(format!("{}: {b}", rv.author));
        }
    }
    let comments = provider.list_review_comments(&cfg.repo, pr).await.map_err(e1)?;
    for c in comments.iter().filter(|c| c.in_reply_to.is_none() && c.author != cfg.platform.git_bot_username) {
        notes.push(format!("[id {}] {}:{} — {}: {}", c.id, c.path, c.line.unwrap_or(0), c.author, c.body));
    }
    Ok((notes, comments))
}

/// The earlier session a revise or reviewer run continues, restored into `home`.
#[derive(Debug, Default)]
struct Restored {
    session_id: Option<String>,
    from_run: Option<String>,
    pr_number: Option<i64>,
}

/// Restores the latest snapshot of the branch (best effort: without one, a new session starts).
async fn restore_session(cb: &Callbacks, home: &std::path::Path, branch: &str) -> Restored {
    let s = match cb.latest_session(branch).await {
        Ok(Some(s)) => s,
        Ok(None) => return Restored::default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up an earlier session; starting a new one");
            return Restored::default();
        }
    };
    let mut restored = Restored { pr_number: s.pr_number, ..Default::default() };
    let stored = s.codex_cli_session_json.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    match (stored, &s.session_id) {
        (Some(v), Some(id)) => match session::restore(home, &v) {
            Ok(path) => {
                let path = path.strip_prefix(home).map(|p| p.display().to_string()).unwrap_or_default();
                let payload = json!({"from_run_id": s.run_id, "session_id": id, "snapshot_version": s.snapshot_version, "path": path});
                cb.event("run.agent.session.restored", payload).await;
                restored.session_id = Some(id.clone());
                restored.from_run = Some(s.run_id.clone());
            }
            Err(e) => tracing::warn!(error = %e, "the stored session cannot be restored; starting a new one"),
        },
        _ => tracing::info!("the latest snapshot has no Codex session; starting a new one"),
    }
    restored
}

/// The platform's session JSON (spec §6.3).
fn session_json(
    cfg: &Config,
    status: &str,
    branch: &str,
    existing_pr: Option<i64>,
    out: Option<&RunOutcome>,
    error: Option<&str>,
) -> serde_json::Value {
    let t = out.map(|o| &o.transcript);
    json!({
        "version": "v1", "status": status,
        "report": {
            "summary": out.map(|o| o.report.summary.clone()), "branch": branch, "pr_number": out.and_then(|o| o.pr_number),
            "pr_url": out.and_then(|o| o.pr_url.clone()), "session_id": t.and_then(|t| t.session_id.clone()),
            "model": cfg.run.model, "reasoning_effort": cfg.run.reasoning_effort, "replies": out.map(|o| o.replies), "review_id": out.and_then(|o| o.review_id),
        },
        "runtime": {
            "target_branch": branch, "existing_pr_number": existing_pr, "commit": out.and_then(|o| o.commit.clone()),
            "changed_paths": out.map(|o| o.changed_paths.clone()), "prompt_source": out.map(|o| o.prompt_source.clone()),
            "codex_exec_output": t.map(|t| json!({"commands": t.commands.iter().map(|c| json!({"command": c.command, "exit_code": c.exit_code, "output": c.output})).collect::<Vec<_>>(), "final_message": t.final_message, "errors": t.errors})),
        },
        "error": error,
    })
}

/// Runs the job: the outcome as one JSON value, or the failure and its exit code. When `stop` is
/// cancelled (SIGTERM: the pod is being stopped) the run stops at once — Codex and every command
/// it started are killed — and the session so far is saved as a `cancelled` snapshot, so a
/// revise run can resume it.
pub async fn execute(cfg: Config, stop: CancellationToken) -> Result<serde_json::Value, Failure> {
    let agent_dir = cfg.agent_dir.clone();
    let result = execute_run(cfg, stop).await;
    // What the agent leaves (its tree, and its Codex home with everything it printed) goes once
    // the run is over: the session that matters is stored, redacted, through control-plane. The
    // agent's processes are gone by now, and removal follows none of the links it may have made.
    if let Err(e) = std::fs::remove_dir_all(&agent_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, dir = %agent_dir.display(), "cannot remove what the agent left");
    }
    result
}

async fn execute_run(cfg: Config, stop: CancellationToken) -> Result<serde_json::Value, Failure> {
    let secrets = vec![cfg.bot_token.clone(), cfg.model_key.clone()];
    let cb = Callbacks::connect(&cfg.run.control_plane_target, &cfg.run_token, secrets).await.map_err(|e| Failure::failed(chain(&e)))?;
    cb.started(json!({"agent_key": cfg.run.agent_key, "trigger_kind": cfg.run.trigger_kind, "repository": cfg.repo.full_name(), "learning_mode": cfg.run.learning_mode}))
        .await
        .map_err(|e| Failure::failed(chain(&e)))?;
    let gh = Github::new(GithubSettings::new(cfg.platform.github_api_url.clone(), cfg.bot_token.clone()))
        .map_err(|e| Failure::failed(e.to_string()))?;
    let provider = GithubProvider::new(gh);

    let prepared = tokio::select! {
        p = prepare(&cfg, &provider, &cb) => p,
        () = stop.cancelled() => Err(Failure::failed(STOPPED)),
    };
    let Prepared { input, codex, restored_from, existing_pr, proxy, _claim } = match prepared {
        Ok(p) => p,
        Err(f) => {
            save_failure(&cfg, &cb, "", None, &f).await;
            return Err(f);
        }
    };
    let branch = input.prompt.target_branch.clone();
    let template = (input.prompt.kind.clone(), input.prompt.locale.clone());
    if let Some(id) = &input.resume_session {
        cb.event("run.agent.resume.used", json!({"session_id": id, "from_run_id": restored_from})).await;
    }
    cb.event("run.agent.ready", json!({"branch": branch, "existing_pr": existing_pr, "resume": input.resume_session.is_some()})).await;
    cb.phase("ready", None, Some(&cfg.run.model), Some(&cfg.run.reasoning_effort)).await;

    let home = codex.home.clone();
    let outcome = tokio::select! {
        out = run(input, &codex, &provider) => out,
        () = stop.cancelled() => return Err(interrupted(&cfg, &cb, &home, &branch).await),
    };
    let out = match outcome {
        Ok(o) => o,
        Err(e) => {
            let f = Failure { exit: e.exit(), message: e.to_string() };
            let transcript = match &e {
                RunError::Codex(crate::codex::CodexError::Failed { transcript, .. }) => Some(transcript.as_ref().clone()),
                _ => None,
            };
            if f.exit == AgentExit::NothingToRevise {
                cb.event("run.revise.pr_not_found", json!({"branch": branch, "reason": f.message})).await;
            }
            save_failure(&cfg, &cb, &branch, transcript.as_ref().and_then(|t| t.session_id.as_deref()), &f).await;
            report_proxy(&cb, &proxy).await;
            cb.usage(&cfg.run.model, &proxy.usage()).await;
            return Err(f);
        }
    };

    // Snapshot first (usage rows hang off it), then usage, then what happened on the forge.
    let version = save_success(&cfg, &cb, &codex.home, &branch, template, existing_pr, &out).await;
    report_proxy(&cb, &proxy).await;
    let usage_rows = cb.usage(&cfg.run.model, &proxy.usage()).await;
    report_forge(&cb, &branch, &out).await;
    Ok(json!({
        "event": "run.agent.finished", "run_id": cfg.run.run_id, "session_id": out.transcript.session_id,
        "pr_number": out.pr_number, "pr_url": out.pr_url, "pr_created": out.pr_created, "commit": out.commit,
        "changed_paths": out.changed_paths, "prompt_source": out.prompt_source, "commands": out.transcript.commands.len(),
        "snapshot_version": version, "token_usage_rows": usage_rows, "review_replies": out.replies, "review_id": out.review_id,
        "learning_items": out.learning.len(),
    }))
}

/// Tells what the model proxy refused, if anything (an agent calling other APIs, a wrong key, a
/// spent budget).
async fn report_proxy(cb: &Callbacks, proxy: &ModelProxy) {
    let refused = proxy.refused();
    if !refused.is_empty() {
        cb.event("run.agent.model_proxy.refused", json!({"count": refused.len(), "requests": refused})).await;
    }
}

/// Stores the successful run's snapshot (the Codex rollout with secrets redacted); its version.
async fn save_success(
    cfg: &Config,
    cb: &Callbacks,
    home: &std::path::Path,
    branch: &str,
    template: (String, String),
    existing_pr: Option<i64>,
    out: &RunOutcome,
) -> Option<i32> {
    let secrets: Vec<&str> = [&cfg.bot_token, &cfg.model_key, &cfg.run_token].iter().map(|s| s.expose_secret()).collect();
    let codex_session = session::collect(home, out.transcript.session_id.as_deref(), &secrets);
    let sj = session_json(cfg, "succeeded", branch, existing_pr, Some(out), None);
    let snapshot = UpsertAgentSessionRequest {
        expected_version: 0,
        status: "succeeded".into(),
        branch_name: Some(branch.to_string()),
        pr_number: out.pr_number,
        pr_url: out.pr_url.clone(),
        session_id: out.transcript.session_id.clone(),
        template_kind: Some(template.0),
        template_source: Some(out.prompt_source.clone()),
        template_locale: Some(template.1),
        model: Some(cfg.run.model.clone()),
        reasoning_effort: Some(cfg.run.reasoning_effort.clone()),
        session_json: sj.to_string(),
        codex_cli_session_path: codex_session.as_ref().and_then(|v| v["file"].as_str().map(String::from)),
        codex_cli_session_json: codex_session.map(|v| v.to_string()),
    };
    match cb.save_snapshot(snapshot).await {
        Ok(v) => {
            cb.event("run.agent.session.saved", json!({"snapshot_version": v, "session_id": out.transcript.session_id})).await;
            Some(v)
        }
        Err(e) => {
            tracing::error!(error = %e, "the session snapshot was not stored; a later revise cannot resume this session");
            None
        }
    }
}

/// Reports what the run did on the forge: the pull request (and the status comment's `ready`
/// phase with it), review replies, the reviewer's review, learning-mode explanations.
async fn report_forge(cb: &Callbacks, branch: &str, out: &RunOutcome) {
    match (out.pr_number, &out.pr_url) {
        (Some(n), Some(url)) => {
            let kind = if out.pr_created { "run.pr.created" } else { "run.pr.updated" };
            cb.event(kind, json!({"branch": branch, "pr_number": n, "pr_url": url, "commit": out.commit})).await;
            cb.phase("ready", Some((n, url.clone())), None, None).await;
        }
        _ => {
            cb.event("run.agent.status_reported", json!({"status": "succeeded", "summary": out.report.summary, "review_id": out.review_id}))
                .await
        }
    }
    if out.replies > 0 {
        cb.event("run.review.replied", json!({"pr_number": out.pr_number, "replies": out.replies})).await;
    }
    if let Some(id) = out.review_id {
        cb.event("run.review.posted", json!({"pr_number": out.pr_number, "review_id": id, "comments": out.report.line_notes.len()})).await;
    }
    if !out.learning.is_empty() {
        let items = out
            .learning
            .iter()
            .map(|l| LearningFeedback {
                kind: "post_pr".into(),
                pr_number: out.pr_number,
                file_path: l.file_path.clone(),
                line: l.line.and_then(|n| i32::try_from(n).ok()),
                explanation: l.explanation.clone(),
            })
            .collect();
        cb.feedback(items).await;
        cb.event("run.learning.feedback_posted", json!({"pr_number": out.pr_number, "items": out.learning.len()})).await;
    }
}

/// Why a run ends when its pod is stopped.
const STOPPED: &str = "stopped by SIGTERM (the job was stopped or canceled)";

/// The run was stopped mid-way: saves what Codex recorded so far as a `cancelled` snapshot.
async fn interrupted(cfg: &Config, cb: &Callbacks, home: &std::path::Path, branch: &str) -> Failure {
    let secrets: Vec<&str> = [&cfg.bot_token, &cfg.model_key, &cfg.run_token].iter().map(|s| s.expose_secret()).collect();
    let codex_session = session::collect(home, None, &secrets);
    let session_id = codex_session.as_ref().and_then(session::session_id);
    let message = format!("{STOPPED}; the session so far is saved for a revise to resume");
    let req = UpsertAgentSessionRequest {
        expected_version: 0,
        status: "cancelled".into(),
        branch_name: Some(branch.to_string()),
        session_id: session_id.clone(),
        model: Some(cfg.run.model.clone()),
        reasoning_effort: Some(cfg.run.reasoning_effort.clone()),
        session_json: session_json(cfg, "cancelled", branch, cfg.run.existing_pr_number, None, Some(&message)).to_string(),
        codex_cli_session_path: codex_session.as_ref().and_then(|v| v["file"].as_str().map(String::from)),
        codex_cli_session_json: codex_session.map(|v| v.to_string()),
        ..Default::default()
    };
    match cb.save_snapshot(req).await {
        Ok(v) => cb.event("run.agent.session.saved", json!({"snapshot_version": v, "session_id": session_id, "interrupted": true})).await,
        Err(e) => tracing::error!(error = %e, "the session snapshot of the stopped run was not stored"),
    }
    Failure::failed(message)
}

/// Stores a failed snapshot (best effort): `failed_precondition` when there was nothing to revise.
async fn save_failure(cfg: &Config, cb: &Callbacks, branch: &str, session_id: Option<&str>, f: &Failure) {
    let status = if f.exit == AgentExit::NothingToRevise { "failed_precondition" } else { "failed" };
    let message = f.message.as_str();
    let req = UpsertAgentSessionRequest {
        expected_version: 0,
        status: status.into(),
        branch_name: Some(branch.to_string()).filter(|b| !b.is_empty()),
        session_id: session_id.map(String::from),
        model: Some(cfg.run.model.clone()),
        reasoning_effort: Some(cfg.run.reasoning_effort.clone()),
        session_json: session_json(cfg, status, branch, cfg.run.existing_pr_number, None, Some(message)).to_string(),
        ..Default::default()
    };
    if let Err(e) = cb.save_snapshot(req).await {
        tracing::warn!(error = %e, "cannot store the failed snapshot");
    }
}
