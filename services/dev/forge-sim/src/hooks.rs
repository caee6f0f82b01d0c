//! Repository webhooks: registration (`/repos/{o}/{r}/hooks`) and delivery of events to them,
//! signed with `X-Hub-Signature-256` exactly as GitHub signs, with `X-GitHub-Event`,
//! `X-GitHub-Delivery` and `X-GitHub-Hook-ID`. Deliveries are recorded for `/_sim/deliveries`.

use crate::rest::{Shared, error, session};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A registered hook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub id: i64,
    pub repo_key: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub hook_id: i64,
    pub event: String,
    pub action: Option<String>,
    pub status: u16,
}

#[derive(Debug, Deserialize)]
pub struct HookConfig {
    url: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NewHook {
    config: HookConfig,
    #[serde(default = "default_events")]
    events: Vec<String>,
}

fn default_events() -> Vec<String> {
    vec!["push".into()]
}

pub async fn create_hook(State(s): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Json(b): Json<NewHook>) -> Response {
    let (mut f, _) = respond!(session(&s, &h));
    if !f.has_repo(&o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if !b.config.url.starts_with("http://") || b.config.content_type.as_deref().is_some_and(|c| c != "json") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: config.url must be an http:// URL and content_type json");
    }
    let hook = f.add_hook(&o, &r, b.config.url, b.config.secret, b.events);
    (StatusCode::CREATED, Json(hook_json(&hook))).into_response()
}

fn hook_json(h: &Hook) -> Value {
    json!({"id": h.id, "type": "Repository", "name": "web", "active": true, "events": h.events,
           "config": {"url": h.url, "content_type": "json", "insecure_ssl": "0"}})
}

pub async fn list_hooks(State(s): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>) -> Response {
    let (f, _) = respond!(session(&s, &h));
    if !f.has_repo(&o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(Value::Array(f.hooks_of(&o, &r).iter().map(hook_json).collect())).into_response()
}

pub async fn list_deliveries(State(s): State<Shared>) -> Response {
    let Ok(f) = s.lock() else { return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned") };
    let v: Vec<Value> = f
        .deliveries()
        .iter()
        .map(|d| json!({"id": d.id, "hook_id": d.hook_id, "event": d.event, "action": d.action, "status_code": d.status}))
        .collect();
    Json(Value::Array(v)).into_response()
}

/// POSTs one signed delivery; returns the HTTP status (0 when unreachable).
pub async fn deliver(hook: &Hook, event: &str, delivery_id: &str, body: &[u8]) -> u16 {
    let secret = secrecy::SecretString::from(hook.secret.clone());
    let signature = ck8s_crypto::github_signature(&secret, body);
    let Some(rest) = hook.url.strip_prefix("http://") else { return 0 };
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a.to_string(), format!("/{p}"))).unwrap_or((rest.to_string(), "/".into()));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: GitHub-Hookshot/forge-sim\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery_id}\r\nX-GitHub-Hook-ID: {}\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        hook.id,
        body.len()
    );
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(&authority).await.ok()?;
        s.write_all(head.as_bytes()).await.ok()?;
        s.write_all(body).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await.ok().flatten().unwrap_or(0)
}

/// Sends `payload` as `event` to every hook of the repository subscribed to it, in the background.
pub fn dispatch(state: Shared, hooks: Vec<Hook>, event: &str, payload: Value) {
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    let action = payload.get("action").and_then(Value::as_str).map(String::from);
    for hook in hooks.into_iter().filter(|h| h.events.iter().any(|e| e == event || e == "*")) {
        let (state, body, event, action) = (state.clone(), body.clone(), event.to_string(), action.clone());
        tokio::spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let status = deliver(&hook, &event, &id, &body).await;
            if let Ok(mut f) = state.lock() {
                f.record_delivery(Delivery { id, hook_id: hook.id, event, action, status });
            }
        });
    }
}
