//! A stopped pod: the agent runner gets SIGTERM while the real Codex CLI is running a long command
//! (model-sim scripts it), kills Codex and everything it started, stores the session so far as a
//! `cancelled` snapshot through control-plane (so a revise run can resume it) and exits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod common;

use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{ServiceProcess, bin_path};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-runner");
const MODEL_KEY: &str = "model-key-canary-2b7f";

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_run_kills_codex_and_stores_the_session_so_far() {
    stop_mid_run(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_run_still_stores_the_session_of_its_stopped_job() {
    // How a cancel reaches a job: the run is marked canceled first, then its job is stopped.
    stop_mid_run(true).await;
}

async fn stop_mid_run(cancel_first: bool) {
    // Each case has its own scenario (tests/scenarios), so their long commands can be told apart.
    let (title, long_command) = if cancel_first { ("Take a while", "sleep 619") } else { ("Take your time", "sleep 617") };
    let db = ck8s_testkit::fresh_db().await;
    let project: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('acme', 'acme') RETURNING id").fetch_one(&db.pool).await.unwrap();
    let run: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, run_payload, repository_full_name, issue_number, agent_key, trigger_kind)
         VALUES ($2, $1, '{}', 'acme/app', 1, 'dev', 'dev') RETURNING id",
    )
    .bind(project)
    .bind(if cancel_first { "stop-canceled" } else { "stop-1" })
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let token = ck8s_crypto::random_token("ck8srun_").expose_secret().to_string();
    let digest = ck8s_crypto::sha256(token.as_bytes());
    assert!(ck8s_store::agent::issue_run_token(&db.pool, run, &digest, Duration::from_secs(3600), "test").await.unwrap());

    let cp_env = ck8s_testkit::process::control_plane_env(&db, &[]);
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let work = std::env::temp_dir().join(format!("ck8s-signal-{}-{cancel_first}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (run_s, token_s, work_s) = (run.to_string(), token.clone(), work.clone());
    let (cp, forge, model, mut child) = tokio::task::spawn_blocking(move || {
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let forge = ForgeSim::start();
        let bot = forge.user_of_kind("acme", "Bot");
        assert_eq!(forge.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"}))).0, 201);
        common::seed(&forge, &bot, "acme/app", &work_s);
        let issue = json!({"title": title, "body": "Wait for the long build."});
        assert_eq!(forge.call("POST", "/repos/acme/app/issues", Some(&bot), Some(issue)).0, 201);
        let model = ServiceProcess::start(
            &bin_path("model-sim"),
            &[
                ("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()),
                ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into()),
                ("CODEXK8S_MODEL_SIM_SCENARIOS_DIR".into(), scenarios.display().to_string()),
            ],
            &["http"],
        );
        let (api, git, model_url) = (forge.url(), format!("{}/git", forge.url()), format!("http://{}/v1", model.addr("http")));
        let (codex, cp_target, workdir) = (
            ck8s_testkit::codex::binary().display().to_string(),
            format!("http://{}", cp.addr("grpc")),
            work_s.join("run").display().to_string(),
        );
        let env = [
            ("CODEXK8S_RUN_ID", run_s.as_str()),
            ("CODEXK8S_REPOSITORY_FULL_NAME", "acme/app"),
            ("CODEXK8S_ISSUE_NUMBER", "1"),
            ("CODEXK8S_RUN_TRIGGER_KIND", "dev"),
            ("CODEXK8S_RUN_TRIGGER_LABEL", "run:dev"),
            ("CODEXK8S_AGENT_KEY", "dev"),
            ("CODEXK8S_AGENT_DISPLAY_NAME", "AI Developer"),
            ("CODEXK8S_AGENT_MODEL", "gpt-5.4"),
            ("CODEXK8S_AGENT_REASONING_EFFORT", "high"),
            ("CODEXK8S_GITHUB_API_URL", api.as_str()),
            ("CODEXK8S_GIT_BASE_URL", git.as_str()),
            ("CODEXK8S_MODEL_BASE_URL", model_url.as_str()),
            ("CODEXK8S_CODEX_BIN", codex.as_str()),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", cp_target.as_str()),
            ("CODEXK8S_RUN_WORKDIR", workdir.as_str()),
            ("CODEXK8S_GIT_BOT_TOKEN", &bot),
            ("CODEXK8S_OPENAI_API_KEY", MODEL_KEY),
            ("CODEXK8S_RUN_TOKEN", &token_s),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let child = std::process::Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (cp, forge, model, child)
    })
    .await
    .unwrap();

    // Codex is at work once its long command runs.
    let started = Instant::now();
    while processes_with(long_command).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the runner ended before Codex started its command");
        assert!(started.elapsed() < Duration::from_secs(120), "Codex never started the long command");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if cancel_first {
        assert!(matches!(
            ck8s_store::runs::cancel(&db.pool, run, "alice", "not needed").await.unwrap(),
            ck8s_store::runs::Cancel::Canceled { .. }
        ));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-s", "TERM", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(out.status.code(), Some(1), "{all}");
    let failed: Value =
        stdout.lines().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["event"] == "run.agent.failed")).expect(&all);
    assert!(failed["error"].as_str().unwrap().contains("SIGTERM"), "{failed}");
    assert!(processes_with(long_command).is_empty(), "Codex's command was killed with it");

    let (status, session_id, codex_json, branch): (String, Option<String>, Option<Value>, Option<String>) =
        sqlx::query_as("SELECT status, session_id, codex_cli_session_json, branch_name FROM agent_sessions WHERE run_id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), branch.as_deref()), ("cancelled", Some("codex/issue-1")));
    let codex_json = codex_json.expect("the Codex rollout so far is stored");
    assert!(codex_json["lines"].as_array().is_some_and(|l| !l.is_empty()), "{codex_json}");
    let session_id = session_id.expect("the Codex session id, so a revise can resume it");
    assert!(codex_json.to_string().contains(&session_id));
    assert!(!codex_json.to_string().contains(MODEL_KEY) && !codex_json.to_string().contains(&token), "secrets are redacted");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM flow_events WHERE run_id = $1 ORDER BY id").bind(run).fetch_all(&db.pool).await.unwrap();
    let saved = events.contains(&"run.agent.session.saved".to_string());
    // A canceled run's token stores the snapshot and nothing else: its event is refused.
    assert_eq!(saved, !cancel_first, "{events:?}");
    drop((cp, forge, model));
    let _ = std::fs::remove_dir_all(&work);
}
