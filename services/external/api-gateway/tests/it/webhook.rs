//! The webhook endpoint end to end: a real gateway, a real control-plane, a real database, and
//! GitHub's published payload examples.

use ck8s_testkit::github::{example, with_labels, with_number, with_repo_and_sender};
use ck8s_testkit::process::{INTERNAL_TOKEN, ServiceProcess, bin_path, control_plane_env, free_port, http_post, http_raw};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

const SECRET: &str = "webhook-test-secret";
const PATH: &str = "/api/v1/webhooks/github";

struct Stack {
    _cp: ServiceProcess,
    gw: ServiceProcess,
    db: ck8s_testkit::TestDb,
}

fn start(db: ck8s_testkit::TestDb, max_body: Option<usize>) -> Stack {
    let cp_env = control_plane_env(&db, &[("CODEXK8S_AGENT_DEFAULT_LOCALE", "en")]);
    let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
    let (status, body) = cp.wait_http_ok("http", "/readyz", Duration::from_secs(15));
    assert_eq!(status, 200, "control-plane not ready: {body}");
    let gw = gateway(&format!("http://{}", cp.addr("grpc")), max_body);
    Stack { _cp: cp, gw, db }
}

fn gateway(target: &str, max_body: Option<usize>) -> ServiceProcess {
    let mut env = vec![
        ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CODEXK8S_ADMIN_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), target.to_string()),
        ("CODEXK8S_GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
        ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
    ];
    if let Some(m) = max_body {
        env.push(("CODEXK8S_WEBHOOK_MAX_BODY_BYTES".to_string(), m.to_string()));
    }
    ServiceProcess::start(env!("CARGO_BIN_EXE_api-gateway"), &env, &["http", "admin"])
}

fn sign(body: &[u8]) -> String {
    ck8s_crypto::github_signature(&SecretString::from(SECRET.to_string()), body)
}

fn deliver(addr: SocketAddr, delivery: &str, event: &str, body: &[u8]) -> (u16, Value) {
    let sig = sign(body);
    let (status, text) =
        http_post(addr, PATH, &[("X-GitHub-Delivery", delivery), ("X-GitHub-Event", event), ("X-Hub-Signature-256", &sig)], body);
    (status, serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})))
}

fn run_dev() -> Vec<u8> {
    let v = with_repo_and_sender(example("issues", Some("labeled")), 4242, "acme/app", "alice", "User");
    serde_json::to_vec(&with_number(with_labels(v, Some("run:dev"), &["run:dev"], "issue"), "issue", 3)).unwrap()
}

async fn count(db: &ck8s_testkit::TestDb, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&db.pool).await.unwrap()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_has_its_status_and_body_and_stores_nothing() {
    let db = ck8s_testkit::fresh_db().await;
    let s = tokio::task::spawn_blocking(move || start(db, Some(4096))).await.unwrap();
    let addr = s.gw.addr("http");
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let sig = sign(&body);

    // (name, headers, body, expected status, expected body)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, Value);
    let cases: Vec<Case> = vec![
        (
            "missing delivery",
            vec![("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)],
            body.clone(),
            400,
            json!({"code": "invalid_argument", "message": "missing X-GitHub-Delivery header", "field": "X-GitHub-Delivery"}),
        ),
        (
            "missing event",
            vec![("X-GitHub-Delivery", "d1"), ("X-Hub-Signature-256", &sig)],
            body.clone(),
            400,
            json!({"code": "invalid_argument", "message": "missing X-GitHub-Event header", "field": "X-GitHub-Event"}),
        ),
        (
            "bad delivery id",
            vec![("X-GitHub-Delivery", "d 1;drop"), ("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)],
            body.clone(),
            400,
            json!({"code": "invalid_argument", "message": "X-GitHub-Delivery must be at most 200 letters, digits, '-', '_', '.' or ':'", "field": "X-GitHub-Delivery"}),
        ),
        (
            "bad event",
            vec![("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "Push!"), ("X-Hub-Signature-256", &sig)],
            body.clone(),
            400,
            json!({"code": "invalid_argument", "message": "X-GitHub-Event must be a lowercase event name", "field": "X-GitHub-Event"}),
        ),
        (
            "missing signature",
            vec![("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "ping")],
            body.clone(),
            401,
            json!({"code": "unauthorized", "message": "missing X-Hub-Signature-256 header", "field": "X-Hub-Signature-256"}),
        ),
        (
            "wrong signature",
            vec![
                ("X-GitHub-Delivery", "d1"),
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", "sha256=0000000000000000000000000000000000000000000000000000000000000000"),
            ],
            body.clone(),
            401,
            json!({"code": "unauthorized", "message": "X-Hub-Signature-256 does not match the body", "field": "X-Hub-Signature-256"}),
        ),
        (
            "sha1 signature",
            vec![("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", "sha1=abc")],
            body.clone(),
            401,
            json!({"code": "unauthorized", "message": "X-Hub-Signature-256 does not match the body", "field": "X-Hub-Signature-256"}),
        ),
    ];
    for (name, headers, b, status, expected) in cases {
        let (got, text) = http_post(addr, PATH, &headers, &b);
        assert_eq!(got, status, "{name}: {text}");
        assert_eq!(json_of(&text), expected, "{name}");
    }

    // A body signed with the right secret but tampered with afterwards.
    let mut tampered = body.clone();
    tampered[5] = b'X';
    let (got, _) =
        http_post(addr, PATH, &[("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)], &tampered);
    assert_eq!(got, 401);

    // Correctly signed, but not JSON.
    let junk = b"zen=keep-it-logically-awesome".to_vec();
    let (got, text) =
        http_post(addr, PATH, &[("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sign(&junk))], &junk);
    assert_eq!((got, json_of(&text)), (400, json!({"code": "invalid_argument", "message": "body is not valid JSON"})));

    // Oversized: refused from the declared length, without reading the body.
    let big = vec![b' '; 5000];
    let (got, text) =
        http_post(addr, PATH, &[("X-GitHub-Delivery", "d1"), ("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sign(&big))], &big);
    assert_eq!((got, json_of(&text)), (413, json!({"code": "payload_too_large", "message": "body exceeds 4096 bytes"})));
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Delivery: d1\r\nX-GitHub-Event: ping\r\nX-Hub-Signature-256: {}\r\nContent-Length: 999999999\r\n\r\n{{",
        sign(b"{")
    );
    let started = std::time::Instant::now();
    let (got, _) = http_raw(addr, head.as_bytes());
    assert_eq!(got, 413, "a huge declared length is refused at once");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Oversized without a declared length (chunked): cut off at the limit.
    let mut chunked = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Delivery: d1\r\nX-GitHub-Event: ping\r\nX-Hub-Signature-256: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        sign(&big)
    )
    .into_bytes();
    for chunk in big.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (got, text) = http_raw(addr, &chunked);
    assert_eq!((got, json_of(&text)), (413, json!({"code": "payload_too_large", "message": "body exceeds 4096 bytes"})));

    assert_eq!(count(&s.db, "webhook_deliveries").await, 0, "nothing is stored for a rejected delivery");
    assert_eq!(count(&s.db, "flow_events").await, 0);
    assert_eq!(count(&s.db, "agent_runs").await, 0);

    assert_eq!(ck8s_testkit::process::http_get(addr, "/metrics").0, 404, "metrics are on the admin port only");
    let (_, metrics) = ck8s_testkit::process::http_get(s.gw.addr("admin"), "/metrics");
    assert!(metrics.contains("codexk8s_webhook_requests_total{result=\"unauthorized\",event=\"ping\"} 4"), "{metrics}");
    assert!(metrics.contains("codexk8s_webhook_requests_total{result=\"payload_too_large\",event=\"ping\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_duplicate_and_ignored_answers() {
    let db = ck8s_testkit::fresh_db().await;
    let s = tokio::task::spawn_blocking(move || start(db, None)).await.unwrap();
    let addr = s.gw.addr("http");

    let (status, a) = deliver(addr, "acc-1", "issues", &run_dev());
    assert_eq!(status, 202, "{a}");
    assert_eq!(
        (a["status"].as_str(), a["correlation_id"].as_str(), a["duplicate"].as_bool()),
        (Some("accepted"), Some("acc-1"), Some(false))
    );
    let run_id = a["run_id"].as_str().unwrap().to_string();

    let (status, d) = deliver(addr, "acc-1", "issues", &run_dev());
    assert_eq!(
        (status, d["status"].as_str(), d["duplicate"].as_bool(), d["run_id"].as_str()),
        (200, Some("duplicate"), Some(true), Some(run_id.as_str()))
    );

    let v = with_repo_and_sender(example("issues", Some("labeled")), 4242, "acme/app", "alice", "User");
    let bug = serde_json::to_vec(&with_labels(v, Some("bug"), &["bug"], "issue")).unwrap();
    let (status, i) = deliver(addr, "ign-1", "issues", &bug);
    assert_eq!(status, 200);
    assert_eq!(i, json!({"correlation_id": "ign-1", "status": "ignored", "duplicate": false, "reason": "issue_event_not_trigger_label"}));

    let ping = serde_json::to_vec(&example("ping", None)).unwrap();
    let (status, p) = deliver(addr, "ping-1", "ping", &ping);
    assert_eq!((status, p["status"].as_str(), p["reason"].as_str()), (200, Some("ignored"), Some("ping")));

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE id::text = $1 AND status = 'pending'")
        .bind(&run_id)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_largest_body_the_gateway_accepts_is_never_refused_by_control_plane() {
    // The gateway at GitHub's cap; a signed 6 MiB ping (over tonic's default 4 MiB) reaches
    // control-plane and gets its real answer, not a transport error.
    let db = ck8s_testkit::fresh_db().await;
    let s = tokio::task::spawn_blocking(move || start(db, Some(ck8s_proto::MAX_WEBHOOK_BODY_BYTES))).await.unwrap();
    let mut ping = example("ping", None);
    ping["zen"] = Value::String("z".repeat(6 << 20));
    let body = serde_json::to_vec(&ping).unwrap();
    let addr = s.gw.addr("http");
    let (status, p) = tokio::task::spawn_blocking(move || deliver(addr, "big-1", "ping", &body)).await.unwrap();
    assert_eq!((status, p["status"].as_str(), p["reason"].as_str()), (200, Some("ignored"), Some("ping")), "{p}");
    assert_eq!(count(&s.db, "webhook_deliveries").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_copies_through_the_gateway_make_exactly_one_run() {
    let db = ck8s_testkit::fresh_db().await;
    let s = tokio::task::spawn_blocking(move || start(db, None)).await.unwrap();
    let addr = s.gw.addr("http");
    let body = run_dev();
    let answers = tokio::task::spawn_blocking(move || {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || deliver(addr, "storm-1", "issues", &body))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers.iter().filter(|(s, _)| *s == 202).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|(s, b)| *s == 200 && b["status"] == "duplicate").count(), 49);
    assert_eq!(count(&s.db, "agent_runs").await, 1);
    assert_eq!(count(&s.db, "github_side_effects").await, 2);
    assert_eq!(count(&s.db, "webhook_deliveries").await, 1);
}

#[test]
fn control_plane_unavailable_is_a_503_that_github_will_retry() {
    let gw = gateway(&format!("http://127.0.0.1:{}", free_port()), None);
    let (status, body) = deliver(gw.addr("http"), "down-1", "issues", &run_dev());
    assert_eq!(status, 503);
    assert_eq!(body, json!({"code": "unavailable", "message": "control-plane is unavailable; GitHub will redeliver"}));
}
