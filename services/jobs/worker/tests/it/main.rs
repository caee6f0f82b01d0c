//! Black-box tests of the worker binary against a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod kubernetes;
mod lifecycle;

use ck8s_testkit::process::{ServiceProcess, run_to_exit};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_worker");

/// A project `acme`.
async fn project(pool: &sqlx::PgPool) -> uuid::Uuid {
    sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('acme', 'acme') RETURNING id").fetch_one(pool).await.unwrap()
}

/// Polls a run's status until it is `want` or `within` has passed; returns the last status.
async fn wait_status(pool: &sqlx::PgPool, id: uuid::Uuid, want: &str, within: Duration) -> String {
    let started = std::time::Instant::now();
    loop {
        let s: String = sqlx::query_scalar("SELECT status FROM agent_runs WHERE id = $1").bind(id).fetch_one(pool).await.unwrap();
        if s == want || started.elapsed() > within {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_heartbeat_ttl_shorter_than_the_interval_is_rejected() {
    let e = vec![
        ("CODEXK8S_WORKER_HEARTBEAT_INTERVAL".to_string(), "30s".to_string()),
        ("CODEXK8S_WORKER_INSTANCE_TTL".to_string(), "10s".to_string()),
        ("CODEXK8S_DB_MAX_CONNECTIONS".to_string(), "0".to_string()),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_WORKER_INSTANCE_TTL") && out.contains("CODEXK8S_DB_MAX_CONNECTIONS"), "{out}");
}

/// The worker started with one setting: it must refuse to start (exit 2) and name the setting
/// and `why` in its output.
fn assert_refused(key: &str, value: &str, why: &str) {
    let (code, out) = run_to_exit(BIN, &[(key.to_string(), value.to_string())], &[]);
    assert_eq!(code, Some(2), "{key}={value}: {out}");
    assert!(out.contains(key) && out.contains(why), "{key}={value}: {out}");
}

#[test]
fn a_job_image_that_can_change_under_running_runs_is_refused() {
    for floating in ["codex-k8s/agent-runner:latest", "codex-k8s/agent-runner:main", "registry.local:5000/codex-k8s/agent-runner"] {
        assert_refused("CODEXK8S_WORKER_JOB_IMAGE", floating, "pinned");
    }
}

#[test]
fn a_job_command_that_is_more_than_one_program_is_refused() {
    // It runs with exec: what follows a list operator would never run.
    for compound in ["/usr/local/bin/agent-runner; rm -rf /", "agent-runner && echo done", "agent-runner | tee log"] {
        assert_refused("CODEXK8S_WORKER_JOB_COMMAND", compound, "one program");
    }
}

#[test]
fn a_placement_that_is_not_labels_and_taint_keys_is_refused_naming_the_setting() {
    for (key, value) in [("CODEXK8S_WORKER_JOB_NODE_SELECTOR", "pool"), ("CODEXK8S_WORKER_JOB_TOLERATIONS", "a b")] {
        assert_refused(key, value, &format!("{value:?}"));
    }
}

#[test]
fn webhook_redelivery_needs_the_key_that_opens_repository_tokens_and_a_url() {
    let e = vec![
        ("CODEXK8S_GITHUB_WEBHOOK_URL".to_string(), "codex.example.com/hook".to_string()),
        ("CODEXK8S_WEBHOOK_REDELIVERY_MAX_REQUESTS".to_string(), "0".to_string()),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    for setting in ["CODEXK8S_GITHUB_WEBHOOK_URL", "CODEXK8S_TOKEN_ENCRYPTION_KEY", "CODEXK8S_WEBHOOK_REDELIVERY_MAX_REQUESTS"] {
        assert!(out.contains(setting), "{setting} not named: {out}");
    }
    // A key that is there but malformed is named without being echoed.
    let bad_key = "not-hex-but-a-secret-value";
    let e = vec![
        ("CODEXK8S_GITHUB_WEBHOOK_URL".to_string(), "https://codex.example.com/api/v1/webhooks/github".to_string()),
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), bad_key.to_string()),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_TOKEN_ENCRYPTION_KEY") && !out.contains(bad_key), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn it_heartbeats_while_running_and_marks_itself_stopped_on_sigterm() {
    let db = ck8s_testkit::fresh_db().await;
    let mut e = db.env();
    e.extend([
        ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CODEXK8S_WORKER_ID".to_string(), "worker-under-test".to_string()),
        ("CODEXK8S_WORKER_HEARTBEAT_INTERVAL".to_string(), "200ms".to_string()),
        ("CODEXK8S_WORKER_INSTANCE_TTL".to_string(), "5s".to_string()),
    ]);
    let mut svc = tokio::task::spawn_blocking(move || {
        let svc = ServiceProcess::start(BIN, &e, &["http"]);
        let (status, body) = svc.wait_http_ok("http", "/readyz", Duration::from_secs(10));
        assert_eq!(status, 200, "{body}");
        svc
    })
    .await
    .unwrap();

    let mut beats = Vec::new();
    for _ in 0..50 {
        if let Some(w) = ck8s_store::workers::get(&db.pool, "worker-under-test").await.unwrap() {
            assert_eq!(w.status, "active");
            if beats.last() != Some(&w.heartbeat_at) {
                beats.push(w.heartbeat_at);
            }
            if beats.len() >= 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(beats.len() >= 3, "expected repeated heartbeats, saw {beats:?}");

    let status = tokio::task::spawn_blocking(move || {
        let s = svc.stop("TERM", Duration::from_secs(10));
        (s, svc.output())
    })
    .await
    .unwrap();
    assert!(status.0.is_some_and(|s| s.success()), "{}", status.1);
    let w = ck8s_store::workers::get(&db.pool, "worker-under-test").await.unwrap().unwrap();
    assert_eq!(w.status, "stopped");
}
