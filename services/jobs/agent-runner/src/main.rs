//! agent-runner: the program inside every run's pod (or local process). It reads the run from its
//! environment (set by the worker), looks up the repository and the issue through the repository
//! provider, and runs the pipeline: work tree, prompt, Codex, write scope, commit, push, pull
//! request, labels. It prints one JSON line with the outcome and exits 0 on success, 42 for a
//! revise run with nothing to revise, 3 for a write-scope violation and 1 otherwise. Reporting the
//! outcome to control-plane (status comment, flow events, token usage, session snapshot) arrives
//! with the rest of the agent-runner work.

use agent_runner::codex::{Codex, Provider};
use agent_runner::pipeline::{RunError, RunInput, run};
use agent_runner::prompt::PromptContext;
use agent_runner::workspace::Identity;
use ck8s_config::{ConfigError, Layers};
use ck8s_domain::agent_run::{prompt_kind, stage_of_kind, target_branch, write_scope};
use ck8s_domain::forge::{RepoRef, RepositoryProvider};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use secrecy::SecretString;
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
    model_base_url: Option<String>,
    codex_bin: PathBuf,
    bot_token: SecretString,
    bot_mail: String,
    model_key: SecretString,
    workdir: PathBuf,
    in_review_label: String,
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
            learning_mode: r.bool("LEARNING_MODE_DEFAULT", false),
            github_api_url: r.string("GITHUB_API_URL", "https://api.github.com"),
            git_base_url: r.string("GIT_BASE_URL", "https://github.com"),
            model_base_url: r.opt_string("MODEL_BASE_URL"),
            codex_bin: r.string("CODEX_BIN", "codex").into(),
            bot_token: r.required_secret("GIT_BOT_TOKEN", "the bot's GitHub token (the worker passes it as a secret)"),
            bot_mail: r.string("GIT_BOT_MAIL", "codex-bot@users.noreply.github.com"),
            model_key: r.required_secret("OPENAI_API_KEY", "the model API key (the worker passes it as a secret)"),
            workdir: r.opt_string("RUN_WORKDIR").map(Into::into).unwrap_or(run_dir),
            in_review_label: r.string("STATE_IN_REVIEW_LABEL", "state:in-review"),
            run_id,
        };
        r.finish()?;
        Ok(cfg)
    }
}

async fn execute(cfg: Config) -> Result<serde_json::Value, (u8, String)> {
    let fail = |e: RunError| (e.exit_code(), e.to_string());
    let gh = Github::new(GithubSettings::new(cfg.github_api_url.clone(), cfg.bot_token.clone())).map_err(|e| (1, e.to_string()))?;
    let provider = GithubProvider::new(gh);
    let repository = provider.repository(&cfg.repo).await.map_err(|e| (1, format!("repository {}: {e}", cfg.repo.full_name())))?;
    let (title, body) = match cfg.issue {
        Some(n) => {
            let i = provider.issue(&cfg.repo, n).await.map_err(|e| (1, format!("issue #{n}: {e}")))?;
            (i.title, i.body.unwrap_or_default())
        }
        None => (format!("Run {}", cfg.run_id), String::new()),
    };
    let branch = target_branch(None, &cfg.trigger_kind, &repository.default_branch, cfg.issue, &cfg.run_id);
    let kind = prompt_kind(&cfg.trigger_kind, cfg.discussion);
    let revise = kind == "revise";
    let mut review_notes = Vec::new();
    let mut existing_pr = None;
    if revise && let Some(pr) = provider.find_pull_by_head(&cfg.repo, &branch).await.map_err(|e| (1, e.to_string()))? {
        existing_pr = Some(pr.number);
        for rv in provider.list_reviews(&cfg.repo, pr.number).await.map_err(|e| (1, e.to_string()))? {
            if let Some(b) = rv.body.filter(|_| rv.state == "CHANGES_REQUESTED") {
                review_notes.push(format!("{}: {b}", rv.author));
            }
        }
        for c in provider.list_review_comments(&cfg.repo, pr.number).await.map_err(|e| (1, e.to_string()))? {
            review_notes.push(format!("{}:{} — {}", c.path, c.line.unwrap_or(0), c.body));
        }
    }
    let scope = write_scope(&cfg.trigger_kind, &cfg.agent_key, cfg.discussion);
    let wants_pr = cfg.agent_key != "reviewer" && !cfg.discussion && cfg.trigger_kind != "ai_repair";
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
            learning_mode: cfg.learning_mode,
            review_notes,
        },
        scope,
        wants_pr,
        revise,
        resume_session: None,
        in_review_label: cfg.in_review_label.clone(),
    };
    let codex = Codex {
        binary: cfg.codex_bin.clone(),
        home: cfg.workdir.join("codex-home"),
        model: cfg.model.clone(),
        reasoning_effort: cfg.reasoning.clone(),
        provider: cfg.model_base_url.clone().map(|base_url| Provider { base_url }),
        mcp: None,
        api_key: cfg.model_key.clone(),
        mcp_token: None,
    };
    let out = run(input, &codex, &provider).await.map_err(fail)?;
    let usage: Vec<_> = out.transcript.turns.iter().map(|t| json!({"input": t.input_tokens, "cached": t.cached_input_tokens, "output": t.output_tokens, "reasoning": t.reasoning_output_tokens})).collect();
    Ok(json!({
        "event": "run.agent.finished", "run_id": cfg.run_id, "session_id": out.transcript.session_id,
        "pr_number": out.pr_number, "pr_url": out.pr_url, "pr_created": out.pr_created, "commit": out.commit,
        "changed_paths": out.changed_paths, "prompt_source": out.prompt_source, "commands": out.transcript.commands.len(), "usage": usage,
    }))
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
