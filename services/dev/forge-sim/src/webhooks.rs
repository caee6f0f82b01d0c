//! Webhook delivery: events go to every active hook of the repository subscribed to them, in the
//! background, as GitHub sends them: a JSON `POST` signed with `X-Hub-Signature-256`, with
//! `X-GitHub-Event`, `X-GitHub-Delivery` and `X-GitHub-Hook-ID`. Every attempt is recorded with the
//! receiver's status (0 when it could not be reached: forge-sim only reaches `http://` URLs).

use crate::state::{Delivery, Hook, Shared, now};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs one signed delivery; returns the HTTP status (0 when unreachable).
async fn deliver(hook: &Hook, event: &str, delivery_id: &str, body: &[u8]) -> u16 {
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
    for hook in hooks.into_iter().filter(|h| h.active && h.events.iter().any(|e| e == event || e == "*")) {
        let (state, body, event, action) = (state.clone(), body.clone(), event.to_string(), action.clone());
        tokio::spawn(async move {
            send_and_record(state, hook, event, action, uuid::Uuid::new_v4().to_string(), body, false).await;
        });
    }
}

/// Delivers once and records the attempt (a new delivery id; the `guid` is kept on redelivery).
pub async fn send_and_record(
    state: Shared,
    hook: Hook,
    event: String,
    action: Option<String>,
    guid: String,
    body: Vec<u8>,
    redelivery: bool,
) {
    let started = std::time::Instant::now();
    let status = deliver(&hook, &event, &guid, &body).await;
    if let Ok(mut f) = state.lock() {
        let id = f.id();
        f.record_delivery(Delivery {
            id,
            guid,
            hook_id: hook.id,
            url: hook.url.clone(),
            event,
            action,
            status,
            redelivery,
            delivered_at: now(),
            duration: started.elapsed().as_secs_f64(),
            body,
        });
    }
}
