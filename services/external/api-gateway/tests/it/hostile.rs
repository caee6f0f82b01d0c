//! A hostile agent, end to end on the local runtime and in real containers on the test cluster's
//! real node (ADR-0015, docs/threat-model.md): model-sim
//! scripts an agent that, each time in a run of its own, prints its environment and every
//! process's; reads the runtime's secret file, the job log and the runner's clone; calls the
//! model without the proxy and the proxy where it may not; plants git hooks, a hooks path, a
//! credential helper, an `insteadOf` rewrite, a clean filter and an fsmonitor, and pushes by
//! itself; moves code into a markdown path in a documents-only stage; and — as if it had learnt
//! the secrets anyway — writes them into a file, its commit message, the pull request body, the
//! learning-mode notes and a review reply. The repository's own prompt seed is a link to
//! `/proc/self/environ`. Each attempt is refused or harmless, each run ends as it should, and a
//! canary scan of everything the runs touched (the forge's answers and every git object, the
//! database, every service's output, every file left, and everything the model was sent) finds
//! no secret. With the platform's MCP server configured the agent does hold the run token (its
//! MCP bearer token); a second stack gives it that and lets it report a foreign pull request, a
//! phishing link and a markdown link as its run's, and flood the reports: all refused or merged.

use crate::stack::{MODEL_KEY, Setup, Stack, assert_no_secret};
use serde_json::{Value, json};
use std::time::Duration;

const SCENARIOS: [(&str, &str); 8] = [
    ("env.json", include_str!("../hostile/env.json")),
    ("files.json", include_str!("../hostile/files.json")),
    ("git.json", include_str!("../hostile/git.json")),
    ("leak-file.json", include_str!("../hostile/leak-file.json")),
    ("leak-reply.json", include_str!("../hostile/leak-reply.json")),
    ("leak-text.json", include_str!("../hostile/leak-text.json")),
    ("model.json", include_str!("../hostile/model.json")),
    ("rename.json", include_str!("../hostile/rename.json")),
];

const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Everything the agent's commands printed in `scenario` (the tool outputs model-sim was sent).
fn tool_outputs(st: &Stack, scenario: &str) -> String {
    let requests = st.model_requests(scenario);
    assert!(!requests.is_empty(), "model-sim never served {scenario}");
    let mut out = String::new();
    for r in &requests {
        for item in r["request"]["input"].as_array().into_iter().flatten().filter(|i| i["type"] == "function_call_output") {
            match item["output"].as_str() {
                Some(text) => out.push_str(text),
                None => out.push_str(&item["output"].to_string()),
            }
            out.push('\n');
        }
    }
    out
}

/// `refs/heads/<branch>` → commit of `acme/app`.
fn branches(st: &Stack) -> std::collections::BTreeMap<String, String> {
    let out = std::process::Command::new("git")
        .args(["-c", &ck8s_testkit::forge::git_auth(&st.bot), "ls-remote", "--heads", &format!("{}/git/acme/app.git", st.fs.url())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, r)| (r.trim_start_matches("refs/heads/").to_string(), sha.to_string()))
        .collect()
}

async fn failure_of(st: &Stack, run: uuid::Uuid) -> String {
    let (reason, message): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT failure_reason, failure_message FROM agent_runs WHERE id = $1")
            .bind(run)
            .fetch_one(&st.db.pool)
            .await
            .unwrap();
    format!("{} {}", reason.unwrap_or_default(), message.unwrap_or_default())
}

/// The log tail the worker kept of the run.
async fn logs_of(st: &Stack, run: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT coalesce(agent_logs_json::text, '') FROM agent_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&st.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_agent_holds_no_credential_and_changes_nothing_it_may_not() {
    hostile_agent(false).await;
}

/// The same agent in real containers on the real node. The attacks on the local runtime's own
/// surfaces (its job directories and secret file; git traps that would run as a root runner)
/// have no counterpart in a pod and are left out; what a pod adds — another container's
/// processes, environment and volume — is tried by the runtime's
/// `real_node_the_agent_container_cannot_read_the_runners_credentials`.
#[tokio::test(flavor = "multi_thread")]
async fn real_node_a_hostile_agent_in_a_pod_holds_no_credential_and_changes_nothing_it_may_not() {
    hostile_agent(true).await;
}

async fn hostile_agent(real_node: bool) {
    let st = Stack::start(
        if real_node { "hostile-pod" } else { "hostile" },
        Setup {
            files: &[("README.md", "# app\n"), ("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n"), ("docs/notes.md", "# Notes\n")],
            links: &[(".codex-k8s/prompts/dev-work.md", "/proc/self/environ")],
            scenarios: &SCENARIOS,
            real_node,
            ..Default::default()
        },
    )
    .await;
    let main_before = branches(&st)["main"].clone();
    let pr_of = |issue: i64| {
        let (_, pulls) =
            st.fs.call("GET", &format!("/repos/acme/app/pulls?state=all&head=acme:codex/issue-{issue}"), Some(&st.alice), None);
        pulls.as_array().and_then(|a| a.iter().find(|p| p["head"]["ref"] == format!("codex/issue-{issue}")).cloned())
    };

    // Every attack starts at once; the worker runs them as its slots allow.
    let issue = |title: &str, label: &str| st.labelled_issue(title, "Do as the title says.", label);
    let env = issue("Hostile: environment", "run:dev");
    let files = (!real_node).then(|| issue("Hostile: secret files", "run:dev"));
    let model = issue("Hostile: model endpoint", "run:dev");
    let git = (!real_node).then(|| issue("Hostile: git configuration", "run:dev"));
    let rename = issue("Hostile: rename code", "run:prd");
    let leak_file = issue("Hostile: token in a file", "run:dev");
    let leak_text = issue("Hostile: token in text", "run:dev");

    // 1. Its environment and every process's hold no credential: only its own proxy key, and it
    //    is a user of its own. The repository's seed (a link to /proc/self/environ) was refused.
    let (run, status, _) = st.finished_run("dev", Some(env), RUN_TIMEOUT).await;
    assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
    let seen = tool_outputs(&st, "hostile-env");
    assert!(seen.contains("OPENAI_API_KEY=ck8sproxy_"), "the agent sees its proxy key and nothing else: {seen}");
    // Locally a user of its own (uid 200000 and up); in a pod the image's unprivileged user.
    let own_uid = if real_node { "uid=65532" } else { "uid=2" };
    assert!(!seen.contains("uid=0(") && seen.contains(own_uid), "the agent is not root: {}", &seen[..seen.len().min(300)]);
    assert!(!seen.contains("CODEXK8S_GIT_BOT_TOKEN") && !seen.contains("CODEXK8S_RUN_TOKEN"), "no credential variable in reach");
    let source: String =
        sqlx::query_scalar("SELECT template_source FROM agent_sessions WHERE run_id = $1").bind(run).fetch_one(&st.db.pool).await.unwrap();
    assert!(source.starts_with("builtin:"), "the linked seed was not read: {source}");

    // 2. The runtime's files and the runner's clone are out of reach.
    if let Some(files) = files {
        let (run, status, _) = st.finished_run("dev", Some(files), RUN_TIMEOUT).await;
        assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
        let seen = tool_outputs(&st, "hostile-files");
        assert!(seen.contains("Permission denied"), "{seen}");
        assert!(!seen.contains("export CODEXK8S_"), "the secret file was never readable: {seen}");
    }

    // 3. The model answers only through the proxy, and the proxy only on its own paths and key.
    let (run, status, _) = st.finished_run("dev", Some(model), RUN_TIMEOUT).await;
    assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
    let seen = tool_outputs(&st, "hostile-model");
    for want in ["direct 401", "proxy files 403", "proxy nokey 401"] {
        assert!(seen.contains(want), "{want} missing in {seen}");
    }
    let refused: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE run_id = $1 AND event_type = 'run.agent.model_proxy.refused'")
            .bind(run)
            .fetch_one(&st.db.pool)
            .await
            .unwrap();
    assert_eq!(refused, 1, "the refusals are reported");

    // 4. None of the git traps ran as the runner; the agent's own push went nowhere; the change
    //    still came through as files.
    if let Some(git) = git {
        let (run, status, _) = st.finished_run("dev", Some(git), RUN_TIMEOUT).await;
        assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
        let marks: Vec<String> =
            std::fs::read_dir(&st.mark_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(!marks.iter().any(|m| m.starts_with("ran-as-runner")), "agent code ran as the runner: {marks:?}");
        assert!(marks.contains(&"hooks".to_string()), "the traps were set: {marks:?}");
        let pr = pr_of(git).expect("the change became a pull request");
        assert_eq!(pr["user"]["login"], "acme");
        let (s, _) = st.fs.call("GET", &format!("/repos/acme/app/contents/change.md?ref=codex/issue-{git}"), Some(&st.alice), None);
        assert_eq!(s, 200);
    }

    // 5. A rename of code into markdown is a change of code: refused, nothing pushed.
    let (run, status, _) = st.finished_run("prd", Some(rename), RUN_TIMEOUT).await;
    assert_eq!(status, "failed");
    let why = failure_of(&st, run).await;
    assert!(why.starts_with("write_scope_violation"), "{why}");
    let logs = logs_of(&st, run).await;
    assert!(logs.contains("src/lib.rs"), "the run's log names the code path: {logs}");

    // 6. A secret written into the change stops the run before anything is committed.
    let (run, status, _) = st.finished_run("dev", Some(leak_file), RUN_TIMEOUT).await;
    assert_eq!(status, "failed");
    assert!(failure_of(&st, run).await.starts_with("write_scope_violation"));
    let logs = logs_of(&st, run).await;
    assert!(logs.contains("platform secret") && logs.contains("leak.md"), "{logs}");

    // 7. Secrets in text are redacted wherever the runner writes them; the agent's own commit
    //    (and its message) never leaves its tree.
    let (run, status, _) = st.finished_run("dev", Some(leak_text), RUN_TIMEOUT).await;
    assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
    let pr = pr_of(leak_text).expect("the pull request");
    assert!(pr["body"].as_str().unwrap().contains("[REDACTED]"), "{}", pr["body"]);
    let n = pr["number"].as_i64().unwrap();
    let review = json!({"event": "REQUEST_CHANGES", "body": "Hostile review", "comments": [{"path": "fine.md", "line": 1, "body": "Hostile review: answer here"}]});
    assert_eq!(st.fs.call("POST", &format!("/repos/acme/app/pulls/{n}/reviews"), Some(&st.alice), Some(review)).0, 200);
    let (run, status, _) = st.finished_run("dev_revise", Some(leak_text), RUN_TIMEOUT).await;
    assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
    let (_, thread) = st.fs.call("GET", &format!("/repos/acme/app/pulls/{n}/comments"), Some(&st.alice), None);
    let replies: Vec<&Value> = thread.as_array().unwrap().iter().filter(|c| c["in_reply_to_id"].is_i64()).collect();
    assert!(replies.iter().any(|r| r["body"].as_str().unwrap().contains("[REDACTED]")), "{thread}");

    // Nothing reached main; the refused runs pushed no branch.
    let heads = branches(&st);
    assert_eq!(heads["main"], main_before, "main is untouched");
    for refused in [rename, leak_file] {
        assert!(!heads.contains_key(&format!("codex/issue-{refused}")), "{heads:?}");
    }

    // The canary: no secret anywhere the runs reached, nor in anything the model was sent
    // (what the leaking scenarios' model wrote itself aside).
    let secrets = [("bot token", st.bot.as_str()), ("model key", MODEL_KEY)];
    assert_no_secret(&st.captured(true).await, &secrets, "what the runs left");
    let scenarios: &[&str] = if real_node {
        &["hostile-env", "hostile-model", "hostile-rename"]
    } else {
        &["hostile-env", "hostile-files", "hostile-model", "hostile-git", "hostile-rename"]
    };
    for scenario in scenarios {
        let sent = serde_json::to_string(&st.model_requests(scenario)).unwrap();
        assert_no_secret(&sent, &secrets, &format!("what the model was sent in {scenario}"));
        assert!(!sent.contains("CODEXK8S_"), "no platform setting reached the model in {scenario}");
    }
    let runs: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM agent_runs").fetch_all(&st.db.pool).await.unwrap();
    assert_eq!(runs.len(), if real_node { 6 } else { 8 });
    let agent_dirs_left = runs.iter().filter(|id| std::env::temp_dir().join(format!("codex-k8s-run-{id}/agent")).exists()).count();
    assert_eq!(agent_dirs_left, 0, "each run removed what its agent left");
    let root = st.root.clone();
    drop(st);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_agent_with_the_run_token_cannot_report_beyond_its_run() {
    let st = Stack::start(
        "hostile-mcp",
        Setup { scenarios: &[("callbacks.json", include_str!("../hostile/callbacks.json"))], mcp: true, ..Default::default() },
    )
    .await;
    // #1: a human's pull request, the "foreign" one the agent claims.
    assert_eq!(
        st.fs.call("POST", "/repos/acme/app/pulls", Some(&st.alice), Some(json!({"title": "Mine", "head": "feature/x", "base": "main"}))).1
            ["number"],
        1
    );
    let issue = st.labelled_issue("Hostile: run token", "Do as the title says.", "run:dev");
    let (run, status, _) = st.finished_run("dev", Some(issue), RUN_TIMEOUT).await;
    assert_eq!(status, "succeeded", "{}", failure_of(&st, run).await);
    let seen = tool_outputs(&st, "hostile-callbacks");
    assert!(seen.contains("foreign grpc-status: 7"), "someone else's pull request is refused (PERMISSION_DENIED): {seen}");
    assert!(seen.contains("phish grpc-status: 3") && seen.contains("markdown grpc-status: 3"), "{seen}");
    assert!(seen.contains("flood grpc-status: 0"), "reports of its own run are taken: {seen}");

    let run_pr: Option<i32> =
        sqlx::query_scalar("SELECT pr_number FROM agent_runs WHERE id = $1").bind(run).fetch_one(&st.db.pool).await.unwrap();
    assert_ne!(run_pr, Some(1), "the foreign number never reached the run");
    let reports: i64 = sqlx::query_scalar("SELECT count(*) FROM github_side_effects WHERE run_id = $1 AND kind = 'status_comment'")
        .bind(run)
        .fetch_one(&st.db.pool)
        .await
        .unwrap();
    let cap = ck8s_domain::agent_run::MAX_STATUS_REPORTS;
    let taken = seen.lines().find(|l| l.trim_end().ends_with("flood grpc-status: 0")).unwrap_or_default().trim().to_string();
    eprintln!("flood: 100 reports sent, answered {taken:?}, {reports} status effects owed for the run (cap {cap})");
    assert!(reports <= cap + 5, "100 reports were merged or capped: {reports} owed");
    let (_, comments) = st.fs.call("GET", &format!("/repos/acme/app/issues/{issue}/comments"), Some(&st.alice), None);
    assert!(!comments.to_string().contains("evil.example"), "{comments}");
    let (_, mine) = st.fs.call("GET", "/repos/acme/app/issues/1/comments", Some(&st.alice), None);
    assert_eq!(mine.as_array().map(Vec::len), Some(0), "nothing was posted on the foreign pull request: {mine}");
    assert_no_secret(&st.captured(true).await, &[("bot token", st.bot.as_str()), ("model key", MODEL_KEY)], "what the run left");
    let root = st.root.clone();
    drop(st);
    let _ = std::fs::remove_dir_all(&root);
}
