//! Black-box tests of the api-gateway binary, with a real control-plane behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod e2e;
mod edge;
mod forge;
mod hostile;
mod real_node;
mod redelivery;
mod stack;
mod webhook;

use ck8s_testkit::process::{ServiceProcess, bin_path, free_port, http_get, run_to_exit};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_api-gateway");

fn gateway_env(target: &str) -> Vec<(String, String)> {
    vec![
        ("CODEXK8S_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("CODEXK8S_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
        ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), target.into()),
        ("CODEXK8S_GITHUB_WEBHOOK_SECRET".into(), "test-webhook-secret-0123".into()),
        ("CODEXK8S_INTERNAL_API_TOKEN".into(), ck8s_testkit::process::INTERNAL_TOKEN.into()),
    ]
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_settings() {
    let e = vec![
        ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), "control-plane:9090".to_string()),
        ("CODEXK8S_WEBHOOK_MAX_BODY_BYTES".to_string(), "12".to_string()),
        ("CODEXK8S_SHUTDOWN_TIMEOUT".to_string(), "forever".to_string()),
        ("CODEXK8S_HTTP_MAX_IN_FLIGHT".to_string(), "0".to_string()),
        ("CODEXK8S_HTTP_HEADER_READ_TIMEOUT".to_string(), "0s".to_string()),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    // Over GitHub's payload cap is refused too (control-plane would refuse such a message).
    let over = vec![("CODEXK8S_WEBHOOK_MAX_BODY_BYTES".to_string(), (ck8s_proto::MAX_WEBHOOK_BODY_BYTES + 1).to_string())];
    let (code, big) = run_to_exit(BIN, &over, &[]);
    assert!(code == Some(2) && big.contains("CODEXK8S_WEBHOOK_MAX_BODY_BYTES"), "{big}");
    for var in [
        "CODEXK8S_INTERNAL_API_TOKEN",
        "CODEXK8S_GITHUB_WEBHOOK_SECRET",
        "CODEXK8S_CONTROL_PLANE_GRPC_TARGET",
        "CODEXK8S_WEBHOOK_MAX_BODY_BYTES",
        "CODEXK8S_SHUTDOWN_TIMEOUT",
        "CODEXK8S_HTTP_MAX_IN_FLIGHT",
        "CODEXK8S_HTTP_HEADER_READ_TIMEOUT",
    ] {
        assert!(out.contains(var), "{var} not named in:\n{out}");
    }
}

#[test]
fn a_webhook_secret_anyone_could_guess_is_refused_without_being_echoed() {
    let mut e = gateway_env("http://127.0.0.1:9");
    e.retain(|(k, _)| k != "CODEXK8S_GITHUB_WEBHOOK_SECRET");
    e.push(("CODEXK8S_GITHUB_WEBHOOK_SECRET".into(), "hunter2".into()));
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_GITHUB_WEBHOOK_SECRET") && out.contains("at least 16 characters"), "{out}");
    assert!(!out.contains("hunter2"), "the secret is never printed: {out}");
}

#[test]
fn readiness_follows_control_plane() {
    // Nobody listens on this port: not ready, but alive.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut gw = ServiceProcess::start(BIN, &gateway_env(&dead), &["http", "admin"]);
    assert_eq!(http_get(gw.addr("http"), "/healthz").0, 200);
    // The public port says only that it is not ready; the admin port names the failing check.
    let (status, body) = http_get(gw.addr("http"), "/readyz");
    assert_eq!((status, body.as_str()), (503, r#"{"status":"not_ready"}"#));
    let (status, body) = http_get(gw.addr("admin"), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""control-plane":"failing""#) && !body.contains(&dead[7..]), "{body}");
    assert!(gw.stop("TERM", Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", gw.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_when_control_plane_and_its_database_are_and_drains_on_sigint() {
    let db = ck8s_testkit::fresh_db().await;
    let cp_env = ck8s_testkit::process::control_plane_env(&db, &[]);
    tokio::task::spawn_blocking(move || {
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let target = format!("http://{}", cp.addr("grpc"));
        let mut gw = ServiceProcess::start(BIN, &gateway_env(&target), &["http", "admin"]);
        let (status, body) = gw.wait_http_ok("http", "/readyz", Duration::from_secs(10));
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
        let (status, body) = http_get(gw.addr("admin"), "/readyz");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""control-plane":"ok""#), "{body}");
        assert_eq!(http_get(gw.addr("http"), "/metrics").0, 404, "no metrics on the public port");
        let (_, metrics) = http_get(gw.addr("admin"), "/metrics");
        assert!(metrics.contains("codexk8s_http_requests_total{route=\"/readyz\""), "{metrics}");
        let status = gw.stop("INT", Duration::from_secs(10)).expect("gateway did not stop");
        assert!(status.success(), "{}", gw.output());
    })
    .await
    .unwrap();
}
