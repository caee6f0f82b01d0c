//! forge-sim's REST subset, black-box: GitHub's status codes, error bodies, pagination, auth.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_testkit::process::{ServiceProcess, http_request};
use serde_json::{Value, json};
use std::net::SocketAddr;

fn start() -> ServiceProcess {
    ServiceProcess::start(env!("CARGO_BIN_EXE_forge-sim"), &[("CODEXK8S_FORGE_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into())], &["http"])
}

struct Client {
    addr: SocketAddr,
    auth: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<(String, String)>, Value) {
        let b = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (s, h, text) = http_request(
            self.addr,
            method,
            path,
            &[("Authorization", &self.auth), ("Accept", "application/vnd.github+json")],
            b.as_deref(),
        );
        (s, h, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn user(addr: SocketAddr, login: &str) -> Client {
    let body = serde_json::to_vec(&json!({"login": login, "email": format!("{login}@example.com")})).unwrap();
    let (s, _, text) = http_request(addr, "POST", "/_sim/users", &[], Some(&body));
    assert_eq!(s, 201, "{text}");
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    Client { addr, auth: format!("Bearer {token}") }
}

#[test]
fn requests_need_a_valid_token() {
    let sim = start();
    let addr = sim.addr("http");
    let alice = user(addr, "alice");
    alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    let (s, _, b) = http_request(addr, "GET", "/repos/alice/app", &[], None);
    assert_eq!(s, 401);
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["message"], "Requires authentication");
    let (s, _, b) = http_request(addr, "GET", "/repos/alice/app", &[("Authorization", "Bearer fsim_wrong")], None);
    assert_eq!((s, serde_json::from_str::<Value>(&b).unwrap()["message"].as_str()), (401, Some("Bad credentials")));
    let (s, _, repo) = alice.call("GET", "/repos/alice/app", None);
    assert_eq!(s, 200);
    assert_eq!(
        (repo["full_name"].as_str(), repo["default_branch"].as_str(), repo["owner"]["login"].as_str()),
        (Some("alice/app"), Some("main"), Some("alice"))
    );
    assert!(repo["id"].as_i64().unwrap() > 0);
    assert_eq!(alice.call("GET", "/repos/alice/missing", None).0, 404);
    let (s, _, b) = alice.call("GET", "/no/such/route", None);
    assert_eq!((s, b["message"].as_str()), (404, Some("Not Found")));
    // The scripting API refuses duplicates and bad logins.
    let (s, _, _) = http_request(addr, "POST", "/_sim/users", &[], Some(br#"{"login":"alice","email":"a@x"}"#));
    assert_eq!(s, 422);
    let (s, _, _) = http_request(addr, "POST", "/_sim/users", &[], Some(br#"{"login":"bad login","email":"a@x"}"#));
    assert_eq!(s, 422);
}

#[test]
fn labels_validate_and_paginate_like_github() {
    let sim = start();
    let alice = user(sim.addr("http"), "alice");
    alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    let (s, _, l) = alice.call(
        "POST",
        "/repos/alice/app/labels",
        Some(json!({"name": "run:dev", "color": "0e8a16", "description": "start a dev run"})),
    );
    assert_eq!((s, l["name"].as_str(), l["color"].as_str()), (201, Some("run:dev"), Some("0e8a16")));
    let (s, _, e) = alice.call("POST", "/repos/alice/app/labels", Some(json!({"name": "RUN:DEV"})));
    assert_eq!((s, e["errors"][0]["code"].as_str()), (422, Some("already_exists")));
    let (s, _, e) = alice.call("POST", "/repos/alice/app/labels", Some(json!({"name": "x", "color": "nothex"})));
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("color")));
    let (s, _, _) = alice.call("POST", "/repos/alice/app/labels", Some(json!({"nome": "typo"})));
    assert!(s == 400 || s == 422, "malformed bodies are refused, got {s}");
    for i in 0..34 {
        assert_eq!(alice.call("POST", "/repos/alice/app/labels", Some(json!({"name": format!("l-{i:02}")}))).0, 201);
    }
    let (s, h, page) = alice.call("GET", "/repos/alice/app/labels?per_page=10", None);
    assert_eq!((s, page.as_array().unwrap().len()), (200, 10));
    let link = h.iter().find(|(k, _)| k == "link").map(|(_, v)| v.clone()).unwrap();
    assert!(link.contains("page=2>; rel=\"next\"") && link.contains("page=4>; rel=\"last\""), "{link}");
    let (_, h, last) = alice.call("GET", "/repos/alice/app/labels?per_page=10&page=4", None);
    assert_eq!(last.as_array().unwrap().len(), 5);
    let link = h.iter().find(|(k, _)| k == "link").map(|(_, v)| v.clone()).unwrap();
    assert!(link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""), "{link}");
    let (_, h, all) = alice.call("GET", "/repos/alice/app/labels?per_page=500", None);
    assert_eq!(all.as_array().unwrap().len(), 35, "per_page is capped at 100, which holds all 35");
    assert!(h.iter().all(|(k, _)| k != "link"));
    assert_eq!(alice.call("DELETE", "/repos/alice/app/labels/l-00", None).0, 204);
    assert_eq!(alice.call("DELETE", "/repos/alice/app/labels/l-00", None).0, 404);
}

#[test]
fn issues_labels_comments_and_reactions() {
    let sim = start();
    let addr = sim.addr("http");
    let alice = user(addr, "alice");
    let bob = user(addr, "bob");
    alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    assert_eq!(alice.call("POST", "/repos/alice/app/issues", Some(json!({"title": " "}))).0, 422);
    let (s, _, issue) =
        alice.call("POST", "/repos/alice/app/issues", Some(json!({"title": "Say hello", "body": "Please", "labels": ["bug"]})));
    assert_eq!((s, issue["number"].as_i64(), issue["user"]["login"].as_str()), (201, Some(1), Some("alice")));
    assert_eq!(issue["labels"][0]["name"], "bug");

    let (s, _, labels) = bob.call("POST", "/repos/alice/app/issues/1/labels", Some(json!({"labels": ["run:dev", "bug"]})));
    assert_eq!(s, 200);
    assert_eq!(labels.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect::<Vec<_>>(), vec!["bug", "run:dev"]);
    let (_, _, labels) = bob.call("PUT", "/repos/alice/app/issues/1/labels", Some(json!({"labels": ["state:in-review"]})));
    assert_eq!(labels.as_array().unwrap().len(), 1);
    assert_eq!(bob.call("DELETE", "/repos/alice/app/issues/1/labels/state:in-review", None).0, 200);
    let (s, _, e) = bob.call("DELETE", "/repos/alice/app/issues/1/labels/state:in-review", None);
    assert_eq!((s, e["message"].as_str()), (404, Some("Label does not exist")));
    assert_eq!(bob.call("GET", "/repos/alice/app/issues/9", None).0, 404);

    assert_eq!(bob.call("POST", "/repos/alice/app/issues/1/comments", Some(json!({"body": ""}))).0, 422);
    let (s, _, c) = bob.call("POST", "/repos/alice/app/issues/1/comments", Some(json!({"body": "first"})));
    assert_eq!((s, c["user"]["login"].as_str()), (201, Some("bob")));
    let id = c["id"].as_i64().unwrap();
    let (s, _, c2) = bob.call("PATCH", &format!("/repos/alice/app/issues/comments/{id}"), Some(json!({"body": "edited"})));
    assert_eq!((s, c2["body"].as_str(), c2["id"].as_i64()), (200, Some("edited"), Some(id)));
    assert_eq!(bob.call("PATCH", "/repos/alice/app/issues/comments/999999", Some(json!({"body": "x"}))).0, 404);
    let (_, _, list) = alice.call("GET", "/repos/alice/app/issues/1/comments", None);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["body"], "edited");
    let (_, _, issue) = alice.call("GET", "/repos/alice/app/issues/1", None);
    assert_eq!(issue["comments"], 1);

    assert_eq!(bob.call("POST", "/repos/alice/app/issues/1/reactions", Some(json!({"content": "eyes"}))).0, 201);
    assert_eq!(
        bob.call("POST", "/repos/alice/app/issues/1/reactions", Some(json!({"content": "eyes"}))).0,
        200,
        "reacting twice is idempotent"
    );
    assert_eq!(bob.call("POST", "/repos/alice/app/issues/1/reactions", Some(json!({"content": "party"}))).0, 422);
    assert_eq!(bob.call("POST", &format!("/repos/alice/app/issues/comments/{id}/reactions"), Some(json!({"content": "+1"}))).0, 201);
    assert_eq!(bob.call("POST", "/repos/alice/app/issues/comments/424242/reactions", Some(json!({"content": "+1"}))).0, 404);
}

/// Every key we send exists in GitHub's example with the same JSON type (nulls match anything).
fn shape_mismatches(ours: &Value, theirs: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None => out.push(format!("{path}.{k} is not in GitHub's payload")),
                    Some(w) => shape_mismatches(v, w, &format!("{path}.{k}"), out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                shape_mismatches(x, y, &format!("{path}[0]"), out);
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (a, b) => {
            let kind = |v: &Value| match v {
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
                Value::Null => "null",
            };
            if kind(a) != kind(b) {
                out.push(format!("{path}: {} here, {} in GitHub's payload", kind(a), kind(b)));
            }
        }
    }
}

#[test]
fn labelling_an_issue_delivers_a_signed_github_shaped_webhook() {
    use std::io::{Read, Write};
    let sim = start();
    let addr = sim.addr("http");
    let alice = user(addr, "alice");
    alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    // The issue exists before the hook, so the first delivery is the label's.
    alice.call("POST", "/repos/alice/app/issues", Some(json!({"title": "Say hello"})));
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/webhooks/github", receiver.local_addr().unwrap());
    let (s, _, hook) = alice.call(
        "POST",
        "/repos/alice/app/hooks",
        Some(json!({"config": {"url": url, "secret": "hook-secret", "content_type": "json"}, "events": ["issues", "issue_comment"]})),
    );
    assert_eq!(s, 201, "{hook}");
    assert_eq!(alice.call("POST", "/repos/alice/app/hooks", Some(json!({"config": {"url": "ftp://x"}}))).0, 422);
    alice.call("POST", "/repos/alice/app/issues/1/labels", Some(json!({"labels": ["run:dev"]})));

    receiver.set_nonblocking(false).unwrap();
    let (mut conn, _) = receiver.accept().unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let body = loop {
        let n = conn.read(&mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
            if body.len() >= len || n == 0 {
                break (head.to_string(), body.to_string());
            }
        }
    };
    conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    drop(conn);
    let (head, body) = body;
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).map(str::to_string).unwrap_or_default();
    assert!(head.starts_with("POST /api/v1/webhooks/github HTTP/1.1"), "{head}");
    assert_eq!(header("X-GitHub-Event"), "issues");
    assert_eq!(header("X-GitHub-Hook-ID"), hook["id"].to_string());
    assert_eq!(header("X-GitHub-Delivery").len(), 36, "a UUID delivery id");
    let secret = secrecy::SecretString::from("hook-secret".to_string());
    assert!(
        ck8s_crypto::verify_github_signature(&secret, body.as_bytes(), &header("X-Hub-Signature-256")),
        "the gateway's check accepts it"
    );

    let ours: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (ours["action"].as_str(), ours["label"]["name"].as_str(), ours["issue"]["number"].as_i64()),
        (Some("labeled"), Some("run:dev"), Some(1))
    );
    assert_eq!(
        (ours["repository"]["full_name"].as_str(), ours["sender"]["login"].as_str(), ours["sender"]["type"].as_str()),
        (Some("alice/app"), Some("alice"), Some("User"))
    );
    let github = ck8s_testkit::github::example("issues", Some("labeled"));
    let ours_keys: std::collections::BTreeSet<&String> = ours.as_object().unwrap().keys().collect();
    for k in ["action", "issue", "label", "repository", "sender"] {
        assert!(ours_keys.contains(&k.to_string()) && github.get(k).is_some(), "{k}");
    }
    let mut mismatches = Vec::new();
    shape_mismatches(&ours, &github, "", &mut mismatches);
    assert!(mismatches.is_empty(), "payload differs from GitHub's shape: {mismatches:#?}");

    // The delivery is recorded with the receiver's answer.
    let mut recorded = Value::Null;
    for _ in 0..50 {
        let (_, _, text) = http_request(addr, "GET", "/_sim/deliveries", &[], None);
        recorded = serde_json::from_str(&text).unwrap();
        if recorded.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        (recorded[0]["event"].as_str(), recorded[0]["action"].as_str(), recorded[0]["status_code"].as_u64()),
        (Some("issues"), Some("labeled"), Some(202))
    );
}

#[test]
fn new_endpoints_refuse_unauthenticated_unauthorised_and_malformed_requests() {
    let sim = start();
    let addr = sim.addr("http");
    let bob = user(addr, "bob");
    let eve = user(addr, "eve");
    bob.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    for (method, path) in [
        ("GET", "/repos/bob/app/pulls"),
        ("POST", "/repos/bob/app/pulls"),
        ("GET", "/repos/bob/app/contents/README.md"),
        ("GET", "/repos/bob/app/collaborators/bob/permission"),
        ("GET", "/repos/bob/app/hooks/1/deliveries"),
        ("GET", "/repos/bob/app/hooks/1/deliveries/1"),
        ("PATCH", "/repos/bob/app/labels/x"),
    ] {
        let (s, _, b) = http_request(addr, method, path, &[("Content-Type", "application/json")], Some(b"{}"));
        assert_eq!(s, 401, "{method} {path}: {b}");
    }
    // Only the owner scripts files and collaborators.
    let files = json!({"ref": "main", "files": {"a.txt": "x"}});
    assert_eq!(eve.call("POST", "/_sim/repos/bob/app/files", Some(files.clone())).0, 403);
    assert_eq!(eve.call("POST", "/_sim/repos/bob/app/collaborators", Some(json!({"login": "eve", "permission": "admin"}))).0, 403);
    assert_eq!(bob.call("POST", "/_sim/repos/bob/app/collaborators", Some(json!({"login": "eve", "permission": "god"}))).0, 422);
    assert_eq!(bob.call("POST", "/_sim/repos/bob/app/files", Some(files)).0, 204);
    // Malformed bodies and values are refused without changing anything.
    let (s, _, _) = http_request(
        addr,
        "POST",
        "/repos/bob/app/pulls",
        &[("Authorization", &bob.auth), ("Content-Type", "application/json")],
        Some(b"{not json"),
    );
    assert!(s == 400 || s == 422, "{s}");
    assert_eq!(bob.call("POST", "/repos/bob/app/pulls", Some(json!({"title": "", "head": "x", "base": "main"}))).0, 422);
    assert_eq!(bob.call("POST", "/repos/bob/app/pulls", Some(json!({"title": "t", "head": "main", "base": "main"}))).0, 422);
    let (s, _, pr) = bob.call("POST", "/repos/bob/app/pulls", Some(json!({"title": "t", "head": "feature", "base": "main"})));
    assert_eq!(s, 201);
    let n = pr["number"].as_i64().unwrap();
    assert_eq!(bob.call("PATCH", &format!("/repos/bob/app/pulls/{n}"), Some(json!({"state": "merged-ish"}))).0, 422);
    assert_eq!(eve.call("POST", &format!("/repos/bob/app/pulls/{n}/reviews"), Some(json!({"event": "BLESS"}))).0, 422);
    assert_eq!(eve.call("POST", &format!("/repos/bob/app/pulls/{n}/reviews"), Some(json!({"event": "REQUEST_CHANGES"}))).0, 422);
    let bad_line = json!({"event": "COMMENT", "body": "b", "comments": [{"path": "a.txt", "line": 0, "body": "x"}]});
    assert_eq!(eve.call("POST", &format!("/repos/bob/app/pulls/{n}/reviews"), Some(bad_line)).0, 422);
    let (_, _, reviews) = bob.call("GET", &format!("/repos/bob/app/pulls/{n}/reviews"), None);
    assert_eq!(reviews.as_array().unwrap().len(), 0, "refused reviews leave nothing behind");
    assert_eq!(bob.call("GET", "/repos/bob/app/contents/missing.txt", None).0, 404);
    assert_eq!(bob.call("GET", "/repos/bob/app/contents/a.txt?ref=other", None).0, 404);
    let (s, _, file) = bob.call("GET", "/repos/bob/app/contents/a.txt?ref=main", None);
    assert_eq!((s, file["content"].as_str(), file["encoding"].as_str()), (200, Some("eA=="), Some("base64")));
    assert_eq!(bob.call("GET", "/repos/bob/app/collaborators/nobody/permission", None).0, 404);
    assert_eq!(bob.call("POST", "/repos/bob/app/hooks/999/deliveries/1/attempts", None).0, 404);
    // Hooks may point anywhere GitHub could (https included), but only at a URL.
    for url in ["ftp://example.com/hook", "https://", "not a url"] {
        assert_eq!(bob.call("POST", "/repos/bob/app/hooks", Some(json!({"config": {"url": url}}))).0, 422, "{url}");
    }
    let (s, _, hook) =
        bob.call("POST", "/repos/bob/app/hooks", Some(json!({"config": {"url": "https://relay.invalid/hook"}, "events": ["issues"]})));
    assert_eq!(s, 201);
    let id = hook["id"].as_i64().unwrap();
    assert_eq!(bob.call("GET", &format!("/repos/bob/app/hooks/{id}/deliveries?status=bogus"), None).0, 422);
    assert_eq!(bob.call("GET", &format!("/repos/bob/app/hooks/{id}/deliveries/999999"), None).0, 404);
    assert_eq!(eve.call("GET", &format!("/repos/bob/app/hooks/{id}/deliveries/999999"), None).0, 404);
    // Only the owner and admins see or change hooks: to anyone else they do not exist.
    assert_eq!(eve.call("GET", "/repos/bob/app/hooks", None).0, 404);
    assert_eq!(eve.call("POST", "/repos/bob/app/hooks", Some(json!({"config": {"url": "http://eve.example/steal"}}))).0, 404);
    assert_eq!(eve.call("GET", &format!("/repos/bob/app/hooks/{id}/deliveries"), None).0, 404);
    assert_eq!(bob.call("POST", "/_sim/faults", Some(json!({"outage": "many"}))).0, 422);
}

/// The union of two payload shapes: every key of either object, recursively (arrays by their first
/// element; a null gives way to a typed value).
fn merge_shapes(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match x.get(k) {
                    Some(w) => merge_shapes(w, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(p), Some(q)) => Value::Array(vec![merge_shapes(p, q)]),
            (Some(p), None) => Value::Array(vec![p.clone()]),
            (None, _) => Value::Array(y.iter().take(1).cloned().collect()),
        },
        (Value::Null, v) => v.clone(),
        (v, _) => v.clone(),
    }
}

/// Accepts `n` webhook deliveries on a loopback port, answering 202; returns (headers, body) each.
fn collect_deliveries(receiver: std::net::TcpListener, n: usize) -> std::thread::JoinHandle<Vec<(String, String)>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = receiver.accept().unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            let (head, body) = loop {
                let k = conn.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..k]);
                if let Some(pos) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..pos]).to_string();
                    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
                    if raw.len() - pos - 4 >= len || k == 0 {
                        break (head, String::from_utf8_lossy(&raw[pos + 4..]).to_string());
                    }
                }
            };
            conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            out.push((head, body));
        }
        out
    })
}

#[test]
fn issue_comment_pull_request_and_review_webhooks_have_githubs_shape_and_signature() {
    let sim = start();
    let addr = sim.addr("http");
    let alice = user(addr, "alice");
    let bob = user(addr, "bob");
    alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", receiver.local_addr().unwrap());
    let events = json!(["issues", "issue_comment", "pull_request", "pull_request_review"]);
    let (s, _, _) = alice.call(
        "POST",
        "/repos/alice/app/hooks",
        Some(json!({"config": {"url": url, "secret": "s", "content_type": "json"}, "events": events})),
    );
    assert_eq!(s, 201);
    let collected = collect_deliveries(receiver, 5);
    // Deliveries are sent in the background; pause between actions so they arrive in order.
    let pause = || std::thread::sleep(std::time::Duration::from_millis(150));
    alice.call("POST", "/repos/alice/app/issues", Some(json!({"title": "Say hello"})));
    pause();
    bob.call("POST", "/repos/alice/app/issues/1/comments", Some(json!({"body": "Sounds good"})));
    pause();
    alice.call("POST", "/repos/alice/app/pulls", Some(json!({"title": "Hello", "head": "codex/issue-1", "base": "main"})));
    pause();
    bob.call("POST", "/repos/alice/app/pulls/2/reviews", Some(json!({"event": "REQUEST_CHANGES", "body": "rename it"})));
    pause();
    alice.call("PATCH", "/repos/alice/app/pulls/2", Some(json!({"state": "closed"})));
    let got = collected.join().unwrap();

    let secret = secrecy::SecretString::from("s".to_string());
    let want = [
        ("issues", "opened"),
        ("issue_comment", "created"),
        ("pull_request", "opened"),
        ("pull_request_review", "submitted"),
        ("pull_request", "closed"),
    ];
    for ((head, body), (event, action)) in got.iter().zip(want) {
        let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).map(str::to_string).unwrap_or_default();
        assert_eq!(header("X-GitHub-Event"), event, "{head}");
        assert!(ck8s_crypto::verify_github_signature(&secret, body.as_bytes(), &header("X-Hub-Signature-256")), "{event} signed");
        let ours: Value = serde_json::from_str(body).unwrap();
        assert_eq!(ours["action"], action);
        let github = ck8s_testkit::github::example(event, Some(action));
        // `installation`, `organization` and `enterprise` only come with GitHub App and organisation
        // deliveries, never on a user's repository webhook.
        for k in github.as_object().unwrap().keys().filter(|k| !["installation", "organization", "enterprise"].contains(&k.as_str())) {
            assert!(ours.get(k).is_some(), "{event}.{action}: GitHub's payload has `{k}`, ours does not");
        }
        // The published examples were captured at different times (older ones lack newer fields such
        // as `repository.visibility`), so ours is compared with the union of every example's shape:
        // this event's examples, plus every example's `repository` and `sender`.
        let mut known = Value::Null;
        for group in ck8s_testkit::github::examples() {
            for ex in group["examples"].as_array().into_iter().flatten() {
                if group["name"] == event {
                    known = merge_shapes(&known, ex);
                } else {
                    let shared: serde_json::Map<String, Value> = ["repository", "sender"]
                        .iter()
                        .filter_map(|k| ex.get(*k).filter(|v| v.is_object()).map(|v| (k.to_string(), v.clone())))
                        .collect();
                    known = merge_shapes(&known, &Value::Object(shared));
                }
            }
        }
        let mut mismatches = Vec::new();
        shape_mismatches(&ours, &known, "", &mut mismatches);
        assert!(mismatches.is_empty(), "{event}.{action} differs from GitHub's shape: {mismatches:#?}");
    }
    let review: Value = serde_json::from_str(&got[3].1).unwrap();
    assert_eq!((review["review"]["state"].as_str(), review["sender"]["login"].as_str()), (Some("changes_requested"), Some("bob")));
    let comment: Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(comment["comment"]["body"], "Sounds good");
}

fn git(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Alice", "-c", "user.email=alice@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn git_over_smart_http_clones_and_pushes_for_real_and_a_push_sends_a_github_shaped_webhook() {
    use base64::Engine;
    let sim = start();
    let addr = sim.addr("http");
    let alice = user(addr, "alice");
    let eve = user(addr, "eve");
    let (_, _, repo) = alice.call("POST", "/_sim/repos", Some(json!({"name": "app"})));
    let clone_url = repo["clone_url"].as_str().unwrap().to_string();
    assert_eq!(clone_url, format!("http://{addr}/git/alice/app.git"));
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", receiver.local_addr().unwrap());
    alice.call(
        "POST",
        "/repos/alice/app/hooks",
        Some(json!({"config": {"url": url, "secret": "s", "content_type": "json"}, "events": ["push"]})),
    );
    let collected = collect_deliveries(receiver, 1);

    let work = std::env::temp_dir().join(format!("forge-sim-git-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (ok, out) = git(&work, &["clone", "-q", &clone_url, "app"]);
    assert!(ok, "anonymous clone of a public repository: {out}");
    let app = work.join("app");
    std::fs::write(app.join("README.md"), "hello from a real push\n").unwrap();
    assert!(git(&app, &["add", "README.md"]).0);
    assert!(git(&app, &["commit", "-q", "-m", "Add a README"]).0);

    let (ok, out) = git(&app, &["push", "-q", "origin", "HEAD:main"]);
    assert!(!ok, "a push without credentials is refused: {out}");
    let basic = |t: &str| {
        format!("http.extraHeader=Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}")))
    };
    let eve_token = eve.auth.trim_start_matches("Bearer ").to_string();
    let (ok, out) = git(&app, &["-c", &basic(&eve_token), "push", "-q", "origin", "HEAD:main"]);
    assert!(!ok && out.contains("403"), "a user without write access cannot push: {out}");
    let alice_token = alice.auth.trim_start_matches("Bearer ").to_string();
    let (ok, out) = git(&app, &["-c", &basic(&alice_token), "push", "-q", "origin", "HEAD:main"]);
    assert!(ok, "the owner pushes: {out}");
    let (_, head) = git(&app, &["rev-parse", "HEAD"]);

    // The pushed file is served by the contents API, and a fresh clone has the commit.
    let (s, _, file) = alice.call("GET", "/repos/alice/app/contents/README.md?ref=main", None);
    assert_eq!(s, 200);
    let content = base64::engine::general_purpose::STANDARD.decode(file["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, b"hello from a real push\n");
    let (ok, out) = git(&work, &["clone", "-q", &clone_url, "again"]);
    assert!(ok, "{out}");
    assert_eq!(git(&work.join("again"), &["rev-parse", "HEAD"]).1, head);

    let got = collected.join().unwrap();
    let (h, body) = &got[0];
    assert!(h.contains("X-GitHub-Event: push"), "{h}");
    let ours: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (ours["ref"].as_str(), ours["after"].as_str(), ours["created"].as_bool()),
        (Some("refs/heads/main"), Some(head.trim()), Some(true))
    );
    assert_eq!(ours["head_commit"]["message"], "Add a README");
    let github = ck8s_testkit::github::example("push", None);
    for k in github.as_object().unwrap().keys().filter(|k| !["installation", "organization", "enterprise"].contains(&k.as_str())) {
        assert!(ours.get(k).is_some(), "push: GitHub's payload has `{k}`, ours does not");
    }
    let mut known = Value::Null;
    for group in ck8s_testkit::github::examples().iter().filter(|g| g["name"] == "push") {
        for ex in group["examples"].as_array().into_iter().flatten() {
            known = merge_shapes(&known, ex);
        }
    }
    let mut mismatches = Vec::new();
    shape_mismatches(&ours, &known, "", &mut mismatches);
    assert!(mismatches.is_empty(), "push differs from GitHub's shape: {mismatches:#?}");
    let _ = std::fs::remove_dir_all(&work);
}

fn location(headers: &[(String, String)]) -> String {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone()).unwrap_or_default()
}

#[test]
fn the_oauth_web_flow_gives_a_token_for_user_and_emails_once_per_code() {
    let sim = start();
    let addr = sim.addr("http");
    user(addr, "alice");
    let app = json!({"client_id": "Iv1.console", "client_secret": "console-secret", "redirect_uri": "http://console.local/callback"});
    let (s, _, _) = http_request(addr, "POST", "/_sim/oauth-apps", &[], Some(&serde_json::to_vec(&app).unwrap()));
    assert_eq!(s, 204);
    let short = json!({"client_id": "x", "client_secret": "short", "redirect_uri": "http://x"});
    assert_eq!(http_request(addr, "POST", "/_sim/oauth-apps", &[], Some(&serde_json::to_vec(&short).unwrap())).0, 422);

    // Unknown app, wrong callback, the sign-in page.
    assert_eq!(http_request(addr, "GET", "/login/oauth/authorize?client_id=nope", &[], None).0, 404);
    let (s, h, _) =
        http_request(addr, "GET", "/login/oauth/authorize?client_id=Iv1.console&redirect_uri=http://evil.local/cb&state=xyz", &[], None);
    assert_eq!(s, 302);
    assert!(location(&h).starts_with("http://console.local/callback?error=redirect_uri_mismatch"), "{}", location(&h));
    let (s, _, page) = http_request(addr, "GET", "/login/oauth/authorize?client_id=Iv1.console&state=xyz", &[], None);
    assert_eq!(s, 200);
    assert!(page.contains("login=alice"), "{page}");

    // Sign in as alice: a code comes back with the state.
    let (s, h, _) = http_request(
        addr,
        "GET",
        "/login/oauth/authorize?client_id=Iv1.console&redirect_uri=http://console.local/callback&state=st-1&scope=read:user%20user:email&login=alice",
        &[],
        None,
    );
    assert_eq!(s, 302);
    let loc = location(&h);
    assert!(loc.starts_with("http://console.local/callback?code=") && loc.ends_with("&state=st-1"), "{loc}");
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();

    let form = |secret: &str, code: &str| format!("client_id=Iv1.console&client_secret={secret}&code={code}");
    let json_accept = [("Accept", "application/json"), ("Content-Type", "application/x-www-form-urlencoded")];
    let (s, _, body) = http_request(addr, "POST", "/login/oauth/access_token", &json_accept, Some(form("wrong-secret", &code).as_bytes()));
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "incorrect_client_credentials");
    let (s, _, body) =
        http_request(addr, "POST", "/login/oauth/access_token", &json_accept, Some(form("console-secret", &code).as_bytes()));
    assert_eq!(s, 200);
    let token = serde_json::from_str::<Value>(&body).unwrap();
    assert_eq!((token["token_type"].as_str(), token["scope"].as_str()), (Some("bearer"), Some("read:user user:email")));
    let access = token["access_token"].as_str().unwrap().to_string();
    let (_, _, again) =
        http_request(addr, "POST", "/login/oauth/access_token", &json_accept, Some(form("console-secret", &code).as_bytes()));
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap()["error"], "bad_verification_code", "a code works once");
    let (_, h, form_body) = http_request(
        addr,
        "POST",
        "/login/oauth/access_token",
        &[("Content-Type", "application/json")],
        Some(br#"{"client_id":"Iv1.console","client_secret":"console-secret","code":"nope"}"#),
    );
    assert!(form_body.starts_with("error=bad_verification_code"), "GitHub answers form-encoded by default: {form_body} {h:?}");

    let me = Client { addr, auth: format!("Bearer {access}") };
    let (s, _, u) = me.call("GET", "/user", None);
    assert_eq!((s, u["login"].as_str(), u["email"].as_str()), (200, Some("alice"), Some("alice@example.com")));
    let (s, _, emails) = me.call("GET", "/user/emails", None);
    assert_eq!((s, emails[0]["primary"].as_bool()), (200, Some(true)));
    assert_eq!(http_request(addr, "GET", "/user", &[], None).0, 401);

    let (_, _, text) = http_request(addr, "GET", "/_sim/exchanges", &[], None);
    let exchanges: Value = serde_json::from_str(&text).unwrap();
    let report = ck8s_testkit::github::validate_against_openapi(&exchanges);
    assert!(report["failures"].as_array().is_some_and(|f| f.is_empty()), "{report:#}");
    let ops = report["operations"].to_string();
    assert!(ops.contains("GET /user\"") && ops.contains("GET /user/emails"), "{ops}");
}

#[test]
fn the_cli_acts_as_named_users_through_a_whole_scenario() {
    let sim = start();
    let url = format!("http://{}", sim.addr("http"));
    let cli = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        let env = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_string(), std::env::temp_dir().display().to_string()),
        ];
        let (code, out) = ck8s_testkit::process::run_to_exit(env!("CARGO_BIN_EXE_forge-sim-cli"), &env, &all);
        (code, out)
    };
    let json_of = |out: &str| -> Value { serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("not JSON: {out}")) };

    assert_eq!(cli(&["user", "alice"]).0, Some(0));
    assert_eq!(cli(&["user", "bob"]).0, Some(0));
    let (code, out) = cli(&["--as", "alice", "repo", "app"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(json_of(&out)["full_name"], "alice/app");
    let (code, out) = cli(&["--as", "bob", "issue", "alice/app", "Say hello", "Please add a greeting"]);
    assert_eq!((code, json_of(&out)["number"].as_i64()), (Some(0), Some(1)), "{out}");
    let (code, out) = cli(&["--as", "alice", "label", "alice/app", "1", "run:dev"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(json_of(&out)[0]["name"], "run:dev");

    let dir = std::env::temp_dir().join(format!("forge-sim-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    let d = dir.display().to_string();
    let (code, out) = cli(&["--as", "alice", "push", "alice/app", &d, "codex/issue-1"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&["--as", "alice", "pr", "alice/app", "codex/issue-1", "main", "Hello"]);
    assert_eq!(code, Some(0), "{out}");
    let pr = json_of(&out);
    assert_eq!(pr["head"]["sha"], json_of(&cli(&["--as", "alice", "push", "alice/app", &d, "codex/issue-1"]).1)["pushed"]);
    let (code, out) = cli(&["--as", "bob", "review", "alice/app", "2", "request-changes", "Rename it", "hello.txt:1:say hi instead"]);
    assert_eq!((code, json_of(&out)["state"].as_str()), (Some(0), Some("CHANGES_REQUESTED")), "{out}");

    // Mistakes get a clear message and a failing exit code.
    let (code, out) = cli(&["--as", "nobody", "repo", "x"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("no user nobody"), "{out}");
    let (code, out) = cli(&["--as", "bob", "review", "alice/app", "2", "bless", "x"]);
    assert!(code == Some(1) && out.contains("unknown verdict"), "{out}");
    let (code, out) = cli(&["repo", "x"]);
    assert!(code == Some(1) && out.contains("--as LOGIN"), "{out}");
    let (code, out) = cli(&["--as", "bob", "push", "alice/app", &d]);
    assert!(code == Some(1) && out.contains("403"), "bob may not push to alice's repository: {out}");
    assert_eq!(cli(&[]).0, Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
