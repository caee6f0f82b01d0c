//! Repository webhooks' endpoints: registration (`/repos/{o}/{r}/hooks`, any http(s) URL, as on
//! GitHub), the recorded deliveries shown with their request
//! (`/repos/{o}/{r}/hooks/{id}/deliveries[/{delivery_id}]`, as GitHub does) and redelivery on
//! request. Only the repository's owner and admins see its hooks; to anyone else they do not
//! exist (404). Sending the events is `webhooks`' part.

use crate::auth::Authenticated;
use crate::http::{error, lock, respond};
use crate::state::{Delivery, Forge, Hook, Shared, User, key};
use crate::webhooks;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

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
    #[serde(default)]
    active: Option<bool>,
}

/// Like GitHub, only the repository's owner and its admins see and change its hooks (others get 404).
fn administers(f: &Forge, user: &User, o: &str, r: &str) -> bool {
    f.repos.get(&key(o, r)).is_some_and(|repo| {
        repo.owner.eq_ignore_ascii_case(&user.login) || repo.collaborators.get(&user.login.to_lowercase()).is_some_and(|p| p == "admin")
    })
}

/// The repository key and hook `id` of `o/r` when `user` administers it (else the caller answers 404).
fn administered_hook(f: &Forge, user: &User, o: &str, r: &str, id: i64) -> Option<(String, Hook)> {
    let k = key(o, r);
    let hook = f.hooks.iter().find(|x| x.id == id && x.repo_key == k)?.clone();
    administers(f, user, o, r).then_some((k, hook))
}

fn default_events() -> Vec<String> {
    vec!["push".into()]
}

pub async fn create_hook(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewHook>,
) -> Response {
    let mut f = respond!(lock(&s));
    if !administers(&f, &user, &o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if !f.has_repo(&o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if !valid_config(&b.config) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CONFIG);
    }
    let hook = f.add_hook(&o, &r, b.config.url, b.config.secret, b.events);
    (StatusCode::CREATED, Json(hook_json(&f.base_url, &o, &r, &hook))).into_response()
}

const INVALID_CONFIG: &str = "Validation Failed: config.url must be an http:// or https:// URL and content_type json";

fn valid_config(c: &HookConfig) -> bool {
    let host = c.url.strip_prefix("http://").or_else(|| c.url.strip_prefix("https://")).map(|r| r.split('/').next().unwrap_or(""));
    host.is_some_and(|h| !h.is_empty()) && c.content_type.as_deref().is_none_or(|c| c == "json")
}

fn hook_json(base: &str, o: &str, r: &str, h: &Hook) -> Value {
    let api = format!("{base}/repos/{o}/{r}/hooks/{}", h.id);
    json!({"id": h.id, "type": "Repository", "name": "web", "active": h.active, "events": h.events,
           "config": {"url": h.url, "content_type": "json", "insecure_ssl": "0"},
           "url": api, "test_url": format!("{api}/test"), "ping_url": format!("{api}/pings"), "deliveries_url": format!("{api}/deliveries"),
           "created_at": h.created_at, "updated_at": h.created_at,
           "last_response": {"code": null, "status": "unused", "message": null}})
}

/// `PATCH /repos/{o}/{r}/hooks/{hook_id}`: replaces the configuration, events and active flag.
pub async fn update_hook(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(b): Json<NewHook>,
) -> Response {
    let mut f = respond!(lock(&s));
    if !administers(&f, &user, &o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if !valid_config(&b.config) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CONFIG);
    }
    let k = key(&o, &r);
    let Some(hook) = f.hooks.iter_mut().find(|x| x.id == id && x.repo_key == k) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    hook.url = b.config.url;
    if !b.config.secret.is_empty() {
        hook.secret = b.config.secret;
    }
    hook.events = b.events;
    hook.active = b.active.unwrap_or(true);
    let hook = hook.clone();
    Json(hook_json(&f.base_url, &o, &r, &hook)).into_response()
}

/// `DELETE /repos/{o}/{r}/hooks/{hook_id}`.
pub async fn delete_hook(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, id)): Path<(String, String, i64)>,
) -> Response {
    let mut f = respond!(lock(&s));
    if !administers(&f, &user, &o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let k = key(&o, &r);
    let before = f.hooks.len();
    f.hooks.retain(|x| !(x.id == id && x.repo_key == k));
    if f.hooks.len() == before { error(StatusCode::NOT_FOUND, "Not Found") } else { StatusCode::NO_CONTENT.into_response() }
}

fn succeeded(d: &Delivery) -> bool {
    (200..300).contains(&d.status)
}

fn delivery_json(d: &Delivery, repo_id: i64) -> Value {
    let status = match d.status {
        _ if succeeded(d) => "OK".to_string(),
        0 => "failed to connect".to_string(),
        s => format!("Invalid HTTP Response: {s}"),
    };
    json!({"id": d.id, "guid": d.guid, "delivered_at": d.delivered_at, "redelivery": d.redelivery, "duration": d.duration,
           "status": status, "status_code": d.status, "event": d.event, "action": d.action, "installation_id": null,
           "repository_id": repo_id, "throttled_at": null})
}

#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    per_page: Option<usize>,
    /// `success` or `failure` (GitHub's `webhook-delivery-status` parameter).
    status: Option<String>,
}

/// `GET /repos/{o}/{r}/hooks/{hook_id}/deliveries`: newest first, `per_page` at most 100,
/// optionally only the successful or the failed ones.
pub async fn hook_deliveries(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, id)): Path<(String, String, i64)>,
    axum::extract::Query(q): axum::extract::Query<DeliveryQuery>,
) -> Response {
    let f = respond!(lock(&s));
    let Some((k, _)) = administered_hook(&f, &user, &o, &r, id) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let wanted: fn(&Delivery) -> bool = match q.status.as_deref() {
        None => |_| true,
        Some("success") => succeeded,
        Some("failure") => |d| !succeeded(d),
        Some(_) => return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed: status must be success or failure"),
    };
    let repo_id = f.repos.get(&k).map(|r| r.id).unwrap_or(0);
    let per = q.per_page.unwrap_or(30).clamp(1, 100);
    let v: Vec<Value> =
        f.deliveries().iter().rev().filter(|d| d.hook_id == id && wanted(d)).take(per).map(|d| delivery_json(d, repo_id)).collect();
    Json(Value::Array(v)).into_response()
}

/// `GET /repos/{o}/{r}/hooks/{hook_id}/deliveries/{delivery_id}`: one delivery with the request
/// that was sent (headers and payload) and the receiver's answer.
pub async fn hook_delivery(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, id, delivery)): Path<(String, String, i64, i64)>,
) -> Response {
    let f = respond!(lock(&s));
    let Some((k, _)) = administered_hook(&f, &user, &o, &r, id) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(d) = f.deliveries().iter().find(|d| d.id == delivery && d.hook_id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut v = delivery_json(d, f.repos.get(&k).map(|r| r.id).unwrap_or(0));
    let payload: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
    v["url"] = json!(d.url);
    v["request"] = json!({
        "headers": {"Accept": "*/*", "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/forge-sim",
                    "X-GitHub-Delivery": d.guid, "X-GitHub-Event": d.event, "X-GitHub-Hook-ID": d.hook_id.to_string(),
                    "X-Hub-Signature-256": "sha256=********"},
        "payload": payload,
    });
    v["response"] = json!({"headers": {}, "payload": if d.status == 0 { Value::Null } else { json!("") }});
    Json(v).into_response()
}

/// `POST /repos/{o}/{r}/hooks/{hook_id}/deliveries/{delivery_id}/attempts`: delivers again (202).
pub async fn redeliver(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, id, delivery)): Path<(String, String, i64, i64)>,
) -> Response {
    let f = respond!(lock(&s));
    let Some((_, hook)) = administered_hook(&f, &user, &o, &r, id) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(d) = f.deliveries().iter().find(|d| d.id == delivery && d.hook_id == id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    drop(f);
    let state = s.clone();
    tokio::spawn(async move {
        webhooks::send_and_record(state, hook, d.event, d.action, d.guid, d.body, true).await;
    });
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

pub async fn list_hooks(State(s): State<Shared>, Authenticated(user): Authenticated, Path((o, r)): Path<(String, String)>) -> Response {
    let f = respond!(lock(&s));
    if !administers(&f, &user, &o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if !f.has_repo(&o, &r) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(Value::Array(f.hooks_of(&o, &r).iter().map(|x| hook_json(&f.base_url, &o, &r, x)).collect())).into_response()
}
