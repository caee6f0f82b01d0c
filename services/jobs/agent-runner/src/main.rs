//! agent-runner: the program inside every run's pod (or local process). It reads the run from its
//! environment (set by the worker), dials control-plane's agent callbacks with the run's token,
//! looks up the repository, the issue and — for revise and reviewer runs — the pull request and
//! its review, restores the latest session snapshot of the branch, and runs the pipeline: work
//! tree, prompt, Codex, write scope, commit, push, pull request, labels, review replies, reviewer
//! review, learning-mode explanations. It then reports the snapshot (compare-and-swap), token
//! usage and flow events, prints one JSON line with the outcome, and exits 0 on success, 42 for a
//! revise run with nothing to revise, 3 for a write-scope violation and 1 otherwise (2 for bad
//! settings).

use agent_runner::callbacks::Callbacks;
use agent_runner::codex::{Codex, Mcp, Provider};
use agent_runner::pipeline::{RunError, RunInput, RunOutcome, run};
use agent_runner::prompt::PromptContext;
use agent_runner::session;
use agent_runner::workspace::Identity;

/// OpenAI's Responses API root (`POST {base}/responses`).
const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
use ck8s_config::{ConfigError, Layers};
use ck8s_domain::agent_run::{prompt_kind, stage_of_kind, target_branch, write_scope};
use ck8s_domain::forge::{RepoRef, RepositoryProvider};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_proto::controlplane::v1::{LearningFeedback, UpsertAgentSessionRequest};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

struct Config {
    run_id: String,
    repo: RepoRef,
    issue: Option<i64>,
    trigger_kind: String,
    trigger_label: String,
    agent_key: String,
    agent_name: String,
    model: String,
    reasoning: String,
    locale: String,
    discussion: bool,
    learning_mode: bool,
    github_api_url: String,
    git_base_url: String,
    model_base_url: String,
    codex_bin: PathBuf,
    bot_token: SecretString,
    bot_mail: String,
    model_key: SecretString,
    workdir: PathBuf,
    in_review_label: String,
    control_plane: String,
    run_token: SecretString,
    existing_pr: Option<i64>,
    bot_login: String,
    mcp_url: Option<String>,
}

impl Config {
    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let run_id = r.required_string("RUN_ID", "the id of the run this pod executes");
        if !run_id.is_empty() && run_id.parse::<uuid::Uuid>().is_err() {
            r.issue("RUN_ID", format!("invalid value {run_id:?}: expected a UUID"));
        }
        let full = r.required_string("REPOSITORY_FULL_NAME", "owner/name of the repository");
        let repo = RepoRef::parse(&full).unwrap_or_else(|| {
            if !full.is_empty() {
                r.issue("REPOSITORY_FULL_NAME", format!("invalid value {full:?}: expected owner/name"));
            }
            RepoRef::new("-", "-")
        });
        let issue = r.opt_string("ISSUE_NUMBER").filter(|s| !s.is_empty()).and_then(|s| {
            s.parse::<i64>().ok().filter(|n| *n > 0).or_else(|| {
                r.issue("ISSUE_NUMBER", format!("invalid value {s:?}: expected a positive number"));
                None
            })
        });
        let run_dir = std::env::temp_dir().join(format!("codex-k8s-run-{run_id}"));
        let cfg = Self {
            repo,
            issue,
            trigger_kind: r.string("RUN_TRIGGER_KIND", "dev"),
            trigger_label: r.string("RUN_TRIGGER_LABEL", "run:dev"),
            agent_key: r.string("AGENT_KEY", "dev"),
            agent_name: r.string("AGENT_DISPLAY_NAME", "AI Developer"),
            model: r.string("AGENT_MODEL", "gpt-5.4"),
            reasoning: r.string("AGENT_REASONING_EFFORT", "high"),
            locale: if r.string("PROMPT_TEMPLATE_LOCALE", "ru").starts_with("ru") { "ru".into() } else { "en".into() },
            discussion: r.bool("DISCUSSION_MODE", false),
            learning_mode: {
                let default = r.bool("LEARNING_MODE_DEFAULT", false);
                r.bool("LEARNING_MODE", default)
            },
            github_api_url: r.string("GITHUB_API_URL", "https://api.github.com"),
            git_base_url: r.string("GIT_BASE_URL", "https://github.com"),
            // OpenAI itself unless another Responses API endpoint (model-sim) is named. Either way it
            // is an explicit provider (Responses API over HTTP, key from OPENAI_API_KEY): the set-up
            // verified with the pinned Codex CLI (spec/codex-cli.md), where the built-in provider
            // would switch to WebSockets and take its key from a login instead.
            model_base_url: r.string("MODEL_BASE_URL", OPENAI_BASE_URL),
            codex_bin: r.string("CODEX_BIN", "codex").into(),
            bot_token: r.required_secret("GIT_BOT_TOKEN", "the bot's GitHub token (the worker passes it as a secret)"),
            bot_mail: r.string("GIT_BOT_MAIL", "codex-bot@users.noreply.github.com"),
            model_key: r.required_secret("OPENAI_API_KEY", "the model API key (the worker passes it as a secret)"),
            workdir: r.opt_string("RUN_WORKDIR").map(Into::into).unwrap_or(run_dir),
            in_review_label: r.string("STATE_IN_REVIEW_LABEL", "state:in-review"),
            control_plane: r.required_string("CONTROL_PLANE_GRPC_TARGET", "control-plane's gRPC address (the worker sets it)"),
            run_token: r.required_secret("RUN_TOKEN", "the run's bearer token for control-plane (the worker passes it as a secret)"),
            existing_pr: r
                .opt_string("EXISTING_PR_NUMBER")
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse::<i64>().ok().filter(|n| *n > 0)),
            bot_login: r.string("GIT_BOT_USERNAME", "codex-bot"),
            mcp_url: r.opt_string("CONTROL_PLANE_MCP_URL").filter(|s| !s.is_empty()),
            run_id,
        };
        r.finish()?;
        Ok(cfg)
    }
}

struct Prepared {
    input: RunInput,
    codex: Codex,
    restored_from: Option<String>,
    existing_pr: Option<i64>,
}

async fn prepare(cfg: &Config, provider: &GithubProvider, cb: &Callbacks) -> Result<Prepared, (u8, String)> {
    let e1 = |e: ck8s_domain::forge::ProviderError| (1, e.to_string());
    let repository = provider.repository(&cfg.repo).await.map_err(|e| (1, format!("repository {}: {e}", cfg.repo.full_name())))?;
    let (title, body) = match cfg.issue {
        Some(n) => {
            let i = provider.issue(&cfg.repo, n).await.map_err(|e| (1, format!("issue #{n}: {e}")))?;
            (i.title, i.body.unwrap_or_default())
        }
        None => (format!("Run {}", cfg.run_id), String::new()),
    };
    let reviewer = cfg.agent_key == "reviewer";
    let kind = prompt_kind(&cfg.trigger_kind, cfg.discussion);
    let revise = kind == "revise";
    let mut branch = target_branch(None, &cfg.trigger_kind, &repository.default_branch, cfg.issue, &cfg.run_id);
    let mut existing_pr = None;
    if reviewer {
        let n = cfg.existing_pr.ok_or((1, "a reviewer run needs the pull request (CODEXK8S_EXISTING_PR_NUMBER)".to_string()))?;
        let pr = provider.pull(&cfg.repo, n).await.map_err(|e| (1, format!("pull request #{n}: {e}")))?;
        branch = pr.head_ref;
        existing_pr = Some(n);
    } else if revise && let Some(pr) = provider.find_pull_by_head(&cfg.repo, &branch).await.map_err(e1)? {
        existing_pr = Some(pr.number);
    }
    let mut review_notes = Vec::new();
    let mut review_comments = Vec::new();
    if revise && let Some(n) = existing_pr {
        for rv in provider.list_reviews(&cfg.repo, n).await.map_err(e1)? {
            if let Some(b) = rv.body.filter(|b| rv.state == "CHANGES_REQUESTED" && !b.trim().is_empty()) {
                review_notes.push(format!("{}: {b}", rv.author));
            }
        }
        review_comments = provider.list_review_comments(&cfg.repo, n).await.map_err(e1)?;
        for c in review_comments.iter().filter(|c| c.in_reply_to.is_none() && c.author != cfg.bot_login) {
            review_notes.push(format!("[id {}] {}:{} — {}: {}", c.id, c.path, c.line.unwrap_or(0), c.author, c.body));
        }
    }

    let home = cfg.workdir.join("codex-home");
    let mut resume = None;
    let mut restored_from = None;
    if revise || reviewer {
        match cb.latest_session(&branch).await {
            Ok(Some(s)) => {
                let stored = s.codex_cli_session_json.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
                match (stored, &s.session_id) {
                    (Some(v), Some(id)) => match session::restore(&home, &v) {
                        Ok(path) => {
                            cb.event("run.agent.session.restored", json!({"from_run_id": s.run_id, "session_id": id, "snapshot_version": s.snapshot_version, "path": path.strip_prefix(&home).map(|p| p.display().to_string()).unwrap_or_default()})).await;
                            resume = Some(id.clone());
                            restored_from = Some(s.run_id.clone());
                        }
                        Err(e) => tracing::warn!(error = %e, "the stored session cannot be restored; starting a new one"),
                    },
                    _ => tracing::info!("the latest snapshot has no Codex session; starting a new one"),
                }
                if existing_pr.is_none() {
                    existing_pr = s.pr_number;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look up an earlier session; starting a new one"),
        }
    }
    let scope = write_scope(&cfg.trigger_kind, &cfg.agent_key, cfg.discussion);
    let wants_pr = !reviewer && !cfg.discussion && cfg.trigger_kind != "ai_repair";
    let input = RunInput {
        repo: cfg.repo.clone(),
        clone_url: format!("{}/{}.git", cfg.git_base_url.trim_end_matches('/'), cfg.repo.full_name()),
        bot_token: cfg.bot_token.clone(),
        identity: Identity { name: cfg.agent_name.clone(), email: cfg.bot_mail.clone() },
        workdir: cfg.workdir.join("repo"),
        prompt: PromptContext {
            repository: cfg.repo.full_name(),
            run_id: cfg.run_id.clone(),
            issue_number: cfg.issue,
            issue_title: title,
            issue_body: body,
            agent_name: cfg.agent_name.clone(),
            stage: stage_of_kind(&cfg.trigger_kind),
            role: cfg.agent_key.clone(),
            kind: kind.into(),
            trigger_label: cfg.trigger_label.clone(),
            base_branch: repository.default_branch.clone(),
            target_branch: branch,
            locale: cfg.locale.clone(),
            existing_pr,
            learning_mode: cfg.learning_mode && !reviewer,
            review_notes,
        },
        scope,
        wants_pr,
        // A reviewer works on the pull request's existing branch, like a revise.
        revise: revise || reviewer,
        resume_session: resume,
        in_review_label: cfg.in_review_label.clone(),
        review_comments,
        review_pr: if reviewer { existing_pr } else { None },
        bot_login: cfg.bot_login.clone(),
        secrets: vec![cfg.model_key.clone(), cfg.run_token.clone()],
    };
    let codex = Codex {
        binary: cfg.codex_bin.clone(),
        home,
        model: cfg.model.clone(),
        reasoning_effort: cfg.reasoning.clone(),
        provider: Some(Provider { base_url: cfg.model_base_url.clone() }),
        mcp: cfg.mcp_url.clone().map(|url| Mcp { url }),
        api_key: cfg.model_key.clone(),
        mcp_token: Some(cfg.run_token.clone()),
        output_schema: true,
    };
    Ok(Prepared { input, codex, restored_from, existing_pr })
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
            "model": cfg.model, "reasoning_effort": cfg.reasoning, "replies": out.map(|o| o.replies), "review_id": out.and_then(|o| o.review_id),
        },
        "runtime": {
            "target_branch": branch, "existing_pr_number": existing_pr, "commit": out.and_then(|o| o.commit.clone()),
            "changed_paths": out.map(|o| o.changed_paths.clone()), "prompt_source": out.map(|o| o.prompt_source.clone()),
            "codex_exec_output": t.map(|t| json!({"commands": t.commands.iter().map(|c| json!({"command": c.command, "exit_code": c.exit_code, "output": c.output})).collect::<Vec<_>>(), "final_message": t.final_message, "errors": t.errors})),
        },
        "error": error,
    })
}

async fn execute(cfg: Config) -> Result<serde_json::Value, (u8, String)> {
    let secrets = vec![cfg.bot_token.clone(), cfg.model_key.clone()];
    let cb = Callbacks::connect(&cfg.control_plane, &cfg.run_token, secrets).await.map_err(|e| (1, e))?;
    cb.started(json!({"agent_key": cfg.agent_key, "trigger_kind": cfg.trigger_kind, "repository": cfg.repo.full_name(), "learning_mode": cfg.learning_mode}))
        .await
        .map_err(|e| (1, e))?;
    let gh = Github::new(GithubSettings::new(cfg.github_api_url.clone(), cfg.bot_token.clone())).map_err(|e| (1, e.to_string()))?;
    let provider = GithubProvider::new(gh);

    let prepared = prepare(&cfg, &provider, &cb).await;
    let Prepared { input, codex, restored_from, existing_pr } = match prepared {
        Ok(p) => p,
        Err((code, message)) => {
            save_failure(&cfg, &cb, "", None, code, &message).await;
            return Err((code, message));
        }
    };
    let branch = input.prompt.target_branch.clone();
    let template = (input.prompt.kind.clone(), input.prompt.locale.clone());
    if let Some(id) = &input.resume_session {
        cb.event("run.agent.resume.used", json!({"session_id": id, "from_run_id": restored_from})).await;
    }
    cb.event("run.agent.ready", json!({"branch": branch, "existing_pr": existing_pr, "resume": input.resume_session.is_some()})).await;
    cb.phase("ready", None, Some(&cfg.model), Some(&cfg.reasoning)).await;

    let out = match run(input, &codex, &provider).await {
        Ok(o) => o,
        Err(e) => {
            let (code, message) = (e.exit_code(), e.to_string());
            let transcript = match &e {
                RunError::Codex(agent_runner::codex::CodexError::Failed { transcript, .. }) => Some(transcript.as_ref().clone()),
                _ => None,
            };
            if code == 42 {
                cb.event("run.revise.pr_not_found", json!({"branch": branch, "reason": message})).await;
            }
            save_failure(&cfg, &cb, &branch, transcript.as_ref().and_then(|t| t.session_id.as_deref()), code, &message).await;
            if let Some(t) = &transcript {
                cb.usage(&cfg.model, &t.turns).await;
            }
            return Err((code, message));
        }
    };

    // Snapshot first (usage rows hang off it), then usage, then what happened on the forge.
    let secrets: Vec<&str> = [&cfg.bot_token, &cfg.model_key, &cfg.run_token].iter().map(|s| s.expose_secret()).collect();
    let codex_session = session::collect(&codex.home, out.transcript.session_id.as_deref(), &secrets);
    let sj = session_json(&cfg, "succeeded", &branch, existing_pr, Some(&out), None);
    let snapshot = UpsertAgentSessionRequest {
        expected_version: 0,
        status: "succeeded".into(),
        branch_name: Some(branch.clone()),
        pr_number: out.pr_number,
        pr_url: out.pr_url.clone(),
        session_id: out.transcript.session_id.clone(),
        template_kind: Some(template.0),
        template_source: Some(out.prompt_source.clone()),
        template_locale: Some(template.1),
        model: Some(cfg.model.clone()),
        reasoning_effort: Some(cfg.reasoning.clone()),
        session_json: sj.to_string(),
        codex_cli_session_path: codex_session.as_ref().and_then(|v| v["file"].as_str().map(String::from)),
        codex_cli_session_json: codex_session.map(|v| v.to_string()),
    };
    let version = match cb.save_snapshot(snapshot).await {
        Ok(v) => {
            cb.event("run.agent.session.saved", json!({"snapshot_version": v, "session_id": out.transcript.session_id})).await;
            Some(v)
        }
        Err(e) => {
            tracing::error!(error = %e, "the session snapshot was not stored; a later revise cannot resume this session");
            None
        }
    };
    let usage_rows = cb.usage(&cfg.model, &out.transcript.turns).await;
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
    Ok(json!({
        "event": "run.agent.finished", "run_id": cfg.run_id, "session_id": out.transcript.session_id,
        "pr_number": out.pr_number, "pr_url": out.pr_url, "pr_created": out.pr_created, "commit": out.commit,
        "changed_paths": out.changed_paths, "prompt_source": out.prompt_source, "commands": out.transcript.commands.len(),
        "snapshot_version": version, "token_usage_rows": usage_rows, "review_replies": out.replies, "review_id": out.review_id,
        "learning_items": out.learning.len(),
    }))
}

/// Stores a failed snapshot (best effort): `failed_precondition` for exit code 42.
async fn save_failure(cfg: &Config, cb: &Callbacks, branch: &str, session_id: Option<&str>, code: u8, message: &str) {
    let status = if code == 42 { "failed_precondition" } else { "failed" };
    let req = UpsertAgentSessionRequest {
        expected_version: 0,
        status: status.into(),
        branch_name: Some(branch.to_string()).filter(|b| !b.is_empty()),
        session_id: session_id.map(String::from),
        model: Some(cfg.model.clone()),
        reasoning_effort: Some(cfg.reasoning.clone()),
        session_json: session_json(cfg, status, branch, cfg.existing_pr, None, Some(message)).to_string(),
        ..Default::default()
    };
    if let Err(e) = cb.save_snapshot(req).await {
        tracing::warn!(error = %e, "cannot store the failed snapshot");
    }
}

fn main() -> ExitCode {
    ck8s_service::telemetry::init("agent-runner");
    let layers = match Layers::from_parts(std::env::vars(), std::env::args().skip(1).collect::<Vec<String>>()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match Config::load(&layers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-runner: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(cfg)) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            println!("{}", json!({"event": "run.agent.failed", "exit_code": code, "error": message}));
            eprintln!("agent-runner: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut env: Vec<(String, String)> = [
            ("CODEXK8S_RUN_ID", "7f0c8a52-2c1a-4a8e-9d3e-2b6f4f0f7a10"),
            ("CODEXK8S_REPOSITORY_FULL_NAME", "acme/app"),
            ("CODEXK8S_GIT_BOT_TOKEN", "t"),
            ("CODEXK8S_OPENAI_API_KEY", "k"),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", "http://127.0.0.1:9090"),
            ("CODEXK8S_RUN_TOKEN", "r"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(&Layers::from_parts(env, Vec::<String>::new()).expect("layers")).expect("config")
    }

    #[test]
    fn the_model_is_openai_unless_another_endpoint_is_named() {
        assert_eq!(config(&[]).model_base_url, "https://api.openai.com/v1");
        assert_eq!(config(&[("CODEXK8S_MODEL_BASE_URL", "http://127.0.0.1:8091/v1")]).model_base_url, "http://127.0.0.1:8091/v1");
    }
}
