//! The main job, shown: the owner opens an issue and labels it `run:dev` on the forge (forge-sim
//! or GitHub), the webhook comes in (directly or through the relay), the platform writes its status
//! comment, the worker runs the agent, and the pull request, the final status comment and the
//! learning comments appear. Everything is read back through the repository-provider port, so
//! forge-sim and GitHub are watched the same way.

use crate::relay::Forwarded;
use crate::say;
use crate::target::{Model, Target};
use anyhow::{Context, Result, bail};
use ck8s_domain::forge::{DeliveryFilter, RepositoryProvider};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long each wait may take.
struct Patience {
    status_comment: Duration,
    pull_request: Duration,
    final_status: Duration,
}

impl Patience {
    /// forge-sim and model-sim answer at once; GitHub delivers in seconds and a real model takes minutes.
    fn for_target(real_forge: bool, real_model: bool) -> Self {
        Self {
            status_comment: Duration::from_secs(if real_forge { 180 } else { 60 }),
            pull_request: Duration::from_secs(if real_model { 1800 } else { 180 }),
            final_status: Duration::from_secs(if real_forge || real_model { 300 } else { 60 }),
        }
    }
}

const ISSUE_TITLE: &str = "Say hello";
const ISSUE_BODY: &str = "Add a `hello` command that prints a greeting.";
const STATUS_MARKER: &str = "codex-k8s:run-status";

/// Prints a progress line every 30 s of a long wait.
struct Progress {
    what: &'static str,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str) -> Self {
        Self { what, started: Instant::now(), last: Instant::now() }
    }

    fn tick(&mut self, hint: &str) {
        if self.last.elapsed() >= Duration::from_secs(30) {
            self.last = Instant::now();
            say(format!("still waiting for {} ({} s so far; {hint})", self.what, self.started.elapsed().as_secs()));
        }
    }
}

/// Opens and labels the demo issue, waits for the main job and shows it.
/// Where the agent's log is: the local runtime's run directories, or the run's pod on the test
/// cluster (`--kubernetes`, with the cluster's kubeconfig).
pub enum AgentLogs<'a> {
    Local(std::path::PathBuf),
    Pod(&'a Path),
}

impl AgentLogs<'_> {
    /// Where to look, for a person.
    fn hint(&self) -> String {
        match self {
            AgentLogs::Local(dir) => format!("the agent's log under {}", dir.display()),
            AgentLogs::Pod(kc) => format!("the run's pod and its logs with `KUBECONFIG={} kubectl get pods -A`", kc.display()),
        }
    }

    /// Progress while the agent works.
    fn progress(&self) -> String {
        match self {
            AgentLogs::Local(dir) => newest_run(dir),
            AgentLogs::Pod(_) => "the run is a Job on the test cluster's real node".into(),
        }
    }
}

pub async fn show(target: &Target, relayed: &Arc<Mutex<Vec<Forwarded>>>, model: &Model, state: &Path, pod: Option<&Path>) -> Result<()> {
    let agent_logs = match pod {
        Some(kubeconfig) => AgentLogs::Pod(kubeconfig),
        None => AgentLogs::Local(state.join("runs")),
    };
    let full = target.repo.full_name();
    let n = open_and_label(target).await?;
    say(format!(
        "{} opened {full}#{n} \"{}\" and labelled it `run:dev`; waiting for the webhook, the agent and its pull request{}",
        target.owner_login,
        ISSUE_TITLE,
        if matches!(model, Model::External { .. }) { " (a real model takes a few minutes)" } else { "" }
    ));
    let patience = Patience::for_target(target.real, matches!(model, Model::External { .. }));
    let shown = watch(target, n, relayed, &patience, state, &agent_logs).await?;
    let engine = match model {
        Model::Sim => "the real Codex CLI against model-sim",
        Model::External { .. } => "the real Codex CLI against the configured model",
    };
    say(format!("the signed webhook came in and the worker ran the agent ({engine}):"));
    println!("{shown}");
    if target.real {
        say(format!(
            "look next: {}/{full}/issues/{n} and its pull request; the run in PostgreSQL (agent_runs, flow_events); logs in {} \
             and {}",
            target.git_url,
            state.join("logs").display(),
            agent_logs.hint()
        ));
    } else {
        say(format!(
            "look next: {}/repos/{full}/pulls and …/issues/{n}/comments (tokens in {}), \
             the run in PostgreSQL (agent_runs, flow_events), logs in {} and {}",
            target.api_url,
            state.join("forge-tokens.env").display(),
            state.join("logs").display(),
            agent_logs.hint()
        ));
    }
    Ok(())
}

/// Opens the demo issue as the owner and labels it `run:dev`; returns its number.
async fn open_and_label(t: &Target) -> Result<i64> {
    let path = format!("/repos/{}/issues", t.repo.full_name());
    let body = serde_json::json!({"title": ISSUE_TITLE, "body": ISSUE_BODY});
    let issue: serde_json::Value =
        t.owner_api.json(http::Method::POST, &path, Some(&body)).await.map_err(|e| anyhow::anyhow!("cannot open the demo issue: {e}"))?;
    let n = issue["number"].as_i64().context("the forge answered the new issue without a number")?;
    t.owner.add_labels(&t.repo, n, &["run:dev".to_string()]).await.map_err(|e| anyhow::anyhow!("cannot label issue #{n} run:dev: {e}"))?;
    Ok(n)
}

/// Waits for the whole main job on issue `n` and describes it for a newcomer.
async fn watch(
    t: &Target,
    n: i64,
    relayed: &Arc<Mutex<Vec<Forwarded>>>,
    patience: &Patience,
    state: &std::path::Path,
    agent_logs: &AgentLogs<'_>,
) -> Result<String> {
    let full = t.repo.full_name();
    let logs = state.join("logs").display().to_string();
    let mut progress = Progress::new("the status comment");
    let deadline = Instant::now() + patience.status_comment;
    let status = loop {
        let comments = t.owner.list_comments(&t.repo, n).await.map_err(|e| anyhow::anyhow!("reading the comments of #{n}: {e}"))?;
        if let Some(c) = comments.into_iter().find(|c| c.body.contains(STATUS_MARKER)) {
            break c;
        }
        if Instant::now() > deadline {
            bail!(
                "no status comment on {full}#{n} within {} s: {}",
                patience.status_comment.as_secs(),
                if t.relayed {
                    format!("see the relay lines above and {logs}/api-gateway.log")
                } else {
                    format!("see {logs}/control-plane.log")
                }
            );
        }
        progress.tick(if t.relayed { "GitHub records the delivery, then the relay forwards it" } else { "waiting for the webhook" });
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut shown = delivery_line(t, relayed).await;
    shown.push_str(&format!("\n  status comment by {} on {full}#{n}:\n    {}", status.author, visible(&status.body).join("\n    ")));
    shown.push_str(&format!("\n{}", pull_request(t, n, patience, agent_logs, &logs).await?));
    shown.push_str(&format!("\n{}", final_status(t, n, patience, &logs).await?));
    Ok(shown)
}

fn visible(body: &str) -> Vec<&str> {
    body.lines().filter(|l| !l.starts_with("<!--") && !l.trim().is_empty()).collect()
}

/// How the `run:dev` labelling reached the gateway.
async fn delivery_line(t: &Target, relayed: &Arc<Mutex<Vec<Forwarded>>>) -> String {
    let labelled = |event: &str, action: Option<&str>| event == "issues" && action == Some("labeled");
    if let Some(f) = relayed.lock().ok().and_then(|r| r.iter().rev().find(|f| labelled(&f.event, f.action.as_deref())).cloned()) {
        return format!(
            "  delivery {} (issues labeled) -> GitHub could not reach this machine; the relay forwarded it: gateway answered {}",
            f.guid, f.status
        );
    }
    match t.owner.list_deliveries(&t.repo, t.hook_id, DeliveryFilter::All, 30).await {
        Ok(ds) => match ds.into_iter().find(|d| labelled(&d.event, d.action.as_deref())) {
            Some(d) => format!("  delivery {} (issues labeled) -> gateway answered {}", d.guid, d.status_code),
            None => "  delivery: not listed yet".to_string(),
        },
        Err(e) => format!("  delivery: cannot list the hook's deliveries ({e})"),
    }
}

/// The newest run directory, where the agent's log is.
fn newest_run(runs_dir: &std::path::Path) -> String {
    let newest = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.display().to_string());
    newest.map(|p| format!("the agent's log is in {p}")).unwrap_or_else(|| "the worker has not launched the run yet".into())
}

async fn pull_request(t: &Target, n: i64, patience: &Patience, agent_logs: &AgentLogs<'_>, logs: &str) -> Result<String> {
    let branch = format!("codex/issue-{n}");
    let deadline = Instant::now() + patience.pull_request;
    let mut progress = Progress::new("the agent's pull request");
    loop {
        let found = t.owner.find_pull_by_head(&t.repo, &branch).await.map_err(|e| anyhow::anyhow!("looking for the pull request: {e}"))?;
        if let Some(pr) = found {
            let labels = t.owner.issue_labels(&t.repo, n).await.map_err(|e| anyhow::anyhow!("reading the labels of #{n}: {e}"))?;
            let hello = t.owner.file(&t.repo, "hello.sh", &branch).await.ok().flatten().is_some();
            return Ok(format!(
                "  pull request #{} by {}: {}\n    {}\n    {} <- {branch} (head {})\n    body: {}{}\n  issue #{n} labels now: {}",
                pr.number,
                t.bot_login,
                pr.title,
                pr.html_url,
                pr.base_ref,
                &pr.head_sha[..12.min(pr.head_sha.len())],
                pr.body.unwrap_or_default().replace('\n', " "),
                if t.real { String::new() } else { format!("\n    hello.sh on the branch: {}", if hello { "yes" } else { "no" }) },
                labels.join(", ")
            ));
        }
        if Instant::now() > deadline {
            bail!("no pull request within {} s; see {logs}/worker.log ({})", patience.pull_request.as_secs(), agent_logs.progress());
        }
        progress.tick(&agent_logs.progress());
        tokio::time::sleep(Duration::from_secs(if t.real { 3 } else { 1 })).await;
    }
}

async fn final_status(t: &Target, n: i64, patience: &Patience, logs: &str) -> Result<String> {
    let full = t.repo.full_name();
    let deadline = Instant::now() + patience.final_status;
    let mut progress = Progress::new("the final status comment");
    loop {
        let comments = t.owner.list_comments(&t.repo, n).await.map_err(|e| anyhow::anyhow!("reading the comments of #{n}: {e}"))?;
        let finished = comments.into_iter().find(|c| c.body.contains(STATUS_MARKER) && c.body.contains("\"phase\":\"finished\""));
        if let Some(c) = finished {
            let pr = t.owner.find_pull_by_head(&t.repo, &format!("codex/issue-{n}")).await.ok().flatten().map(|p| p.number).unwrap_or(0);
            let on_pr = t.owner.list_comments(&t.repo, pr).await.unwrap_or_default();
            let learning = on_pr.iter().filter(|c| c.body.contains("codex-k8s:learning")).count();
            let lines = t.owner.list_review_comments(&t.repo, pr).await.map(|v| v.len()).unwrap_or(0);
            return Ok(format!(
                "  final status comment on {full}#{n}:\n    {}\n  learning mode on PR #{pr}: {learning} explanation comment(s), {lines} line comment(s)",
                visible(&c.body).join("\n    ")
            ));
        }
        if Instant::now() > deadline {
            bail!(
                "the status comment did not reach its final phase within {} s; see {logs}/worker.log and control-plane.log",
                patience.final_status.as_secs()
            );
        }
        progress.tick("the worker reports when the agent's job ends");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
