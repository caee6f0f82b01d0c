//! Black-box tests of the control-plane binary against a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod agent;
mod bootstrap;
mod ingest;

use ck8s_testkit::process::{ServiceProcess, free_port, http_get, run_to_exit};
use std::net::TcpListener;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");
pub const INTERNAL_TOKEN: &str = "internal-token-for-tests-0123456789abcdef";
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn env(db: &ck8s_testkit::TestDb) -> Vec<(String, String)> {
    let mut e = db.env();
    e.push(("CODEXK8S_TOKEN_ENCRYPTION_KEY".into(), KEY.into()));
    e.push(("CODEXK8S_INTERNAL_API_TOKEN".into(), INTERNAL_TOKEN.into()));
    e.push(("CODEXK8S_HTTP_ADDR".into(), "127.0.0.1:0".into()));
    e.push(("CODEXK8S_GRPC_ADDR".into(), "127.0.0.1:0".into()));
    e
}

#[test]
fn invalid_configuration_exits_non_zero_naming_every_bad_setting_before_binding() {
    // Hold the port the service would bind: had it bound first, the error would be about the port.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let e = vec![
        ("CODEXK8S_HTTP_ADDR".to_string(), addr.clone()),
        ("CODEXK8S_DB_PORT".to_string(), "not-a-port".to_string()),
        ("CODEXK8S_DB_SSLMODE".to_string(), "sometimes".to_string()),
        ("CODEXK8S_INGEST_BATCH_MAX_SIZE".to_string(), "0".to_string()),
        ("CODEXK8S_INGEST_BATCH_CONCURRENCY".to_string(), "many".to_string()),
        ("CODEXK8S_INGEST_BATCH_WINDOW_MS".to_string(), "5000".to_string()),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    for var in [
        "CODEXK8S_DB_PORT",
        "CODEXK8S_DB_SSLMODE",
        "CODEXK8S_TOKEN_ENCRYPTION_KEY",
        "CODEXK8S_INGEST_BATCH_MAX_SIZE",
        "CODEXK8S_INGEST_BATCH_CONCURRENCY",
        "CODEXK8S_INGEST_BATCH_WINDOW_MS",
    ] {
        assert!(out.contains(var), "{var} not named in:\n{out}");
    }
    assert!(!out.contains("cannot listen"), "it tried to bind before validating:\n{out}");
}

#[test]
fn a_malformed_encryption_key_is_named_but_never_echoed() {
    let e = vec![("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), "hunter2-not-hex".to_string())];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_TOKEN_ENCRYPTION_KEY") && out.contains("64 hexadecimal"), "{out}");
    assert!(!out.contains("hunter2"), "the secret leaked:\n{out}");
    // A malformed previous key (a rotation in progress) is named too, and not echoed either.
    let e = vec![
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), "ab".repeat(32)),
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY_PREVIOUS".to_string(), format!("{},hunter2-old", "cd".repeat(32))),
    ];
    let (code, out) = run_to_exit(BIN, &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_TOKEN_ENCRYPTION_KEY_PREVIOUS") && !out.contains("hunter2") && !out.contains(&"cd".repeat(32)), "{out}");
}

#[test]
fn unknown_arguments_are_rejected() {
    let (code, out) = run_to_exit(BIN, &[], &["--verbose"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--verbose"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_the_schema_to_an_empty_database_and_is_idempotent() {
    let db = ck8s_testkit::empty_db().await;
    for _ in 0..2 {
        let (code, out) = tokio::task::spawn_blocking({
            let e = env(&db);
            move || run_to_exit(BIN, &e, &["migrate"])
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("migrations applied"), "{out}");
    }
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM agents").fetch_one(&db.pool).await.unwrap();
    assert_eq!(agents, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn it_becomes_ready_serves_metrics_and_stops_gracefully_on_sigterm() {
    let db = ck8s_testkit::fresh_db().await;
    let e = env(&db);
    tokio::task::spawn_blocking(move || {
        let mut svc = ServiceProcess::start(BIN, &e, &["http", "grpc"]);
        let (status, body) = svc.wait_http_ok("http", "/readyz", Duration::from_secs(10));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"postgres\":\"ok\""), "{body}");
        assert_eq!(http_get(svc.addr("http"), "/health/livez").0, 200);
        let (_, metrics) = http_get(svc.addr("http"), "/metrics");
        assert!(metrics.contains("codexk8s_build_info{service=\"control-plane\""), "{metrics}");

        let status = svc.stop("TERM", Duration::from_secs(10)).expect("did not stop within 10 s");
        assert!(status.success(), "exit {status}: {}", svc.output());
        assert!(svc.output().contains("shutdown complete"), "{}", svc.output());
        assert_eq!(http_get(svc.addr("http"), "/healthz").0, 0, "port still open after exit");
    })
    .await
    .unwrap();
}

#[test]
fn readiness_fails_while_the_database_is_unreachable() {
    let e = vec![
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), KEY.to_string()),
        ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
        ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CODEXK8S_GRPC_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CODEXK8S_DB_PORT".to_string(), free_port().to_string()),
        ("CODEXK8S_DB_CONNECT_TIMEOUT".to_string(), "1s".to_string()),
    ];
    let mut svc = ServiceProcess::start(BIN, &e, &["http", "grpc"]);
    assert_eq!(http_get(svc.addr("http"), "/healthz").0, 200, "alive even without a database");
    let (status, body) = http_get(svc.addr("http"), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("postgres"), "{body}");
    assert!(svc.stop("INT", Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_internal_api_requires_the_token_and_checks_its_arguments() {
    use ck8s_proto::auth::SendToken;
    use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
    use ck8s_proto::controlplane::v1::{GetStatusRequest, IngestGithubWebhookRequest};

    let db = ck8s_testkit::fresh_db().await;
    let e = env(&db);
    let svc = tokio::task::spawn_blocking(move || ServiceProcess::start(BIN, &e, &["http", "grpc"])).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", svc.addr("grpc"))).unwrap().connect().await.unwrap();

    let code = ControlPlaneClient::new(channel.clone()).get_status(GetStatusRequest {}).await.unwrap_err().code();
    assert_eq!(code, tonic::Code::Unauthenticated, "no token");
    let ingest = IngestGithubWebhookRequest { delivery_id: "d".into(), event: "ping".into(), payload: b"{}".to_vec() };
    let mut wrong =
        ControlPlaneClient::with_interceptor(channel.clone(), SendToken::new("internal-token-for-tests-0123456789abcdeX").unwrap());
    assert_eq!(wrong.ingest_github_webhook(ingest.clone()).await.unwrap_err().code(), tonic::Code::Unauthenticated, "wrong token");

    let mut ok = ControlPlaneClient::with_interceptor(channel, SendToken::new(INTERNAL_TOKEN).unwrap());
    assert!(ok.get_status(GetStatusRequest {}).await.unwrap().into_inner().database_ready);
    for bad in [
        IngestGithubWebhookRequest { delivery_id: String::new(), ..ingest.clone() },
        IngestGithubWebhookRequest { delivery_id: "x".repeat(201), ..ingest.clone() },
        IngestGithubWebhookRequest { event: String::new(), ..ingest.clone() },
        IngestGithubWebhookRequest { payload: b"[1]".to_vec(), ..ingest.clone() },
        IngestGithubWebhookRequest { payload: b"{not json".to_vec(), ..ingest.clone() },
    ] {
        assert_eq!(ok.ingest_github_webhook(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
    // Larger than the internal API decodes (GitHub's 25 MiB cap plus the envelope): refused
    // before it reaches the use-case.
    let huge = IngestGithubWebhookRequest { payload: vec![b' '; ck8s_proto::MAX_INTERNAL_MESSAGE_BYTES + 1], ..ingest.clone() };
    // tonic reports a message over its decoding limit as OUT_OF_RANGE.
    assert_eq!(ok.ingest_github_webhook(huge).await.unwrap_err().code(), tonic::Code::OutOfRange);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&db.pool).await.unwrap();
    assert_eq!(stored, 0);
    let answer = ok.ingest_github_webhook(ingest).await.unwrap().into_inner();
    assert_eq!(answer.reason.as_deref(), Some("ping"));
}
