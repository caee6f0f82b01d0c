//! The runner's model proxy against model-sim (which checks the real key as OpenAI does): the
//! agent's own key gets through and the answer streams back with its usage counted; a wrong or
//! missing key, the real key, other paths and methods, an oversized body and requests past the
//! token budget are refused with the Responses API's error shape, and the refusals are listed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use agent_runner::proxy::{ModelProxy, ProxySettings};
use ck8s_testkit::process::{ServiceProcess, bin_path, http_request};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::net::SocketAddr;

const MODEL_KEY: &str = "model-key-canary-proxy-77e1";

fn model_sim() -> ServiceProcess {
    ServiceProcess::start(
        &bin_path("model-sim"),
        &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into())],
        &["http"],
    )
}

async fn call(addr: SocketAddr, method: &str, path: &str, key: Option<String>, body: Option<Vec<u8>>) -> (u16, String) {
    let (method, path) = (method.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (s, _, b) = http_request(addr, &method, &path, &headers, body.as_deref());
        (s, b)
    })
    .await
    .unwrap()
}

fn addr_of(proxy: &ModelProxy) -> SocketAddr {
    proxy.base_url().trim_start_matches("http://").trim_end_matches("/v1").parse().unwrap()
}

fn request() -> Vec<u8> {
    json!({"model": "gpt-5.4", "stream": true, "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}]})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_reaches_the_model_only_through_the_proxy_with_its_own_key_and_within_budget() {
    let sim = tokio::task::spawn_blocking(model_sim).await.unwrap();
    let upstream = format!("http://{}/v1", sim.addr("http"));
    let settings = ProxySettings { upstream: upstream.clone(), api_key: SecretString::from(MODEL_KEY.to_string()), budget_tokens: 1 };
    let proxy = ModelProxy::start(settings).await.unwrap();
    let addr = addr_of(&proxy);
    let key = proxy.agent_key().expose_secret().to_string();
    assert!(key.starts_with("ck8sproxy_") && !key.contains(MODEL_KEY));

    // Through the proxy with its key: model-sim accepted the real key the proxy added.
    let (s, body) = call(addr, "POST", "/v1/responses", Some(key.clone()), Some(request())).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("response.completed"), "the stream passes through: {body}");
    assert!(!body.contains(MODEL_KEY));
    let usage = proxy.usage();
    assert_eq!(usage.len(), 1, "one answer, counted from the upstream's own usage");
    assert!(usage[0].input_tokens > 0 && usage[0].output_tokens > 0, "{usage:?}");
    let (s, body) = call(addr, "GET", "/v1/models", Some(key.clone()), None).await;
    assert_eq!(s, 200, "{body}");

    // The budget (1 token) is spent now: the next request is refused before it leaves.
    let (s, body) = call(addr, "POST", "/v1/responses", Some(key.clone()), Some(request())).await;
    assert_eq!(s, 429, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert_eq!(proxy.usage().len(), 1, "the refused request reached nobody");

    // Without the proxy's key — none, a wrong one, even the real one — nothing gets through.
    for k in [None, Some("sk-wrong".to_string()), Some(MODEL_KEY.to_string())] {
        let (s, body) = call(addr, "POST", "/v1/responses", k.clone(), Some(request())).await;
        assert_eq!(s, 401, "{k:?}: {body}");
    }
    // Only the Responses API: other paths, methods and model-sim's own test routes are refused.
    for (m, p) in [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/files"),
        ("DELETE", "/v1/responses"),
        ("GET", "/_sim/requests"),
        ("POST", "/v1/responses/../../_sim/requests"),
        ("POST", "/v1/responses?x=1/../"),
    ] {
        let (s, body) = call(addr, m, p, Some(key.clone()), Some(request())).await;
        assert!(s == 403 || (s == 429 && p.starts_with("/v1/responses?")), "{m} {p}: {s} {body}");
    }
    let refused = proxy.refused();
    assert!(refused.iter().any(|r| r.contains("/v1/chat/completions")) && refused.iter().any(|r| r.contains("wrong key")), "{refused:?}");
    drop(sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_is_refused_and_a_bad_upstream_is_an_error() {
    let settings =
        ProxySettings { upstream: "ftp://example.invalid".into(), api_key: SecretString::from("k".to_string()), budget_tokens: 10 };
    assert!(ModelProxy::start(settings).await.err().unwrap().to_string().contains("not an http(s) URL"));
    // An upstream nobody listens on: the agent gets a 502, not a hang.
    let port = ck8s_testkit::process::free_port();
    let settings = ProxySettings {
        upstream: format!("http://127.0.0.1:{port}/v1"),
        api_key: SecretString::from("k".to_string()),
        budget_tokens: 1_000_000,
    };
    let proxy = ModelProxy::start(settings).await.unwrap();
    let addr = addr_of(&proxy);
    let key = proxy.agent_key().expose_secret().to_string();
    let (s, body) = call(addr, "POST", "/v1/responses", Some(key.clone()), Some(request())).await;
    assert_eq!(s, 502, "{body}");
    let big = vec![b' '; 33 * 1024 * 1024];
    let (s, _) = call(addr, "POST", "/v1/responses", Some(key), Some(big)).await;
    assert_eq!(s, 413);
}
