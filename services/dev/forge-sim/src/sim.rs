//! Test controls of forge-sim, outside GitHub's API (`/_sim/*`):
//!
//! - **World** (`POST /_sim/users`, `/_sim/users/{login}/tokens`, `/_sim/repos`,
//!   `/_sim/repos/{o}/{r}/files`, `/_sim/repos/{o}/{r}/collaborators`, `/_sim/oauth-apps`): users
//!   and their tokens, repositories, files at a ref, collaborators and OAuth apps. Repositories,
//!   files and collaborators are scripted as an authenticated user (the body is read first).
//! - **Faults** (`POST /_sim/faults`): the next `outage` API requests answer 503; the next
//!   `rate_limit` requests answer 403 with `Retry-After: retry_after` (a secondary limit) or, when
//!   `primary_reset_in` is given, with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` that many
//!   seconds ahead (an exhausted primary limit); comments younger than `comment_list_lag_ms`
//!   are left out of comment lists, as GitHub's eventually consistent lists do.
//! - **Exchanges** (`GET /_sim/exchanges`): every API answer (method, route template, status,
//!   JSON body), so tests can validate forge-sim against GitHub's OpenAPI description.
//! - **Deliveries** (`GET /_sim/deliveries`): every webhook delivery attempt.
//!
//! [`layer`] is the middleware of the API routes: it injects the faults, authenticates, and
//! records the answers.

use crate::auth::{AuthError, Authenticated, authenticate};
use crate::http::{error, lock, respond, validation};
use crate::shapes;
use crate::state::{App, Exchange, Faults, Shared, key};
use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Exchanges kept at most (oldest dropped first).
const MAX_EXCHANGES: usize = 5_000;
/// Bodies larger than this are recorded as `null`.
const MAX_RECORDED_BODY: usize = 1 << 20;

/// `POST /_sim/faults`: replaces the injected faults.
pub async fn set_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Response {
    let mut forge = respond!(lock(&s));
    forge.faults = f;
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/exchanges`: every recorded answer, oldest first.
pub async fn exchanges(State(s): State<Shared>) -> Response {
    let forge = respond!(lock(&s));
    let v: Vec<Value> =
        forge.exchanges.iter().map(|e| json!({"method": e.method, "route": e.route, "status": e.status, "body": e.body})).collect();
    Json(Value::Array(v)).into_response()
}

fn injected(s: &Shared) -> Option<Response> {
    let mut forge = s.lock().ok()?;
    let f = &mut forge.faults;
    if f.outage > 0 {
        f.outage -= 1;
        return Some(error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable (forge-sim outage)"));
    }
    if f.rate_limit > 0 {
        f.rate_limit -= 1;
        let mut resp = error(StatusCode::FORBIDDEN, "API rate limit exceeded (forge-sim)");
        let h = resp.headers_mut();
        if let Some(reset_in) = f.primary_reset_in {
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&(now + reset_in).to_string()) {
                h.insert("x-ratelimit-reset", v);
            }
        } else if let Ok(v) = HeaderValue::from_str(&f.retry_after.unwrap_or(1).to_string()) {
            h.insert("retry-after", v);
        }
        return Some(resp);
    }
    None
}

/// Middleware of the API routes: injects faults, authenticates, then records the answer.
pub async fn layer(State(s): State<Shared>, matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = matched.map(|m| m.as_str().replace("{*path}", "{path}")).unwrap_or_default();
    if let Some(resp) = injected(&s) {
        return resp;
    }
    // Authentication comes before reading the body, as on GitHub.
    let refused = authenticate(&s, req.headers()).err();
    let resp = match refused {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let recorded = if bytes.len() <= MAX_RECORDED_BODY { serde_json::from_slice(&bytes).unwrap_or(Value::Null) } else { Value::Null };
    if let Ok(mut forge) = s.lock() {
        if forge.exchanges.len() >= MAX_EXCHANGES {
            forge.exchanges.remove(0);
        }
        forge.exchanges.push(Exchange { method, route, status: parts.status.as_u16(), body: recorded });
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[derive(Debug, Deserialize)]
pub struct SimUser {
    login: String,
    email: String,
    #[serde(default = "default_kind")]
    kind: String,
}

fn default_kind() -> String {
    "User".into()
}

/// Scripting API: `POST /_sim/users {login, email, kind?}` → `{login, id, token}`.
pub async fn create_user(State(s): State<Shared>, Json(b): Json<SimUser>) -> Response {
    let mut f = respond!(lock(&s));
    match f.add_user(&b.login, &b.email, &b.kind) {
        Ok(token) => {
            let (id, email) = f.users.get(&b.login.to_lowercase()).map(|u| (u.id, u.email.clone())).unwrap_or_default();
            (StatusCode::CREATED, Json(json!({"login": b.login, "id": id, "email": email, "token": token}))).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

/// Scripting API: `POST /_sim/users/{login}/tokens` → `{login, token}`, a new token to act as an
/// existing user (forge-sim is a local stand-in: whoever reaches it may act as anyone).
pub async fn user_token(State(s): State<Shared>, Path(login): Path<String>) -> Response {
    let mut f = respond!(lock(&s));
    let Some(user) = f.users.get(&login.to_lowercase()).cloned() else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let token = f.issue_token(&user.login);
    (StatusCode::CREATED, Json(json!({"login": user.login, "token": token}))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SimRepo {
    name: String,
}

/// Scripting API: `POST /_sim/repos {name}` as the authenticated user → the repository.
pub async fn create_repo(State(s): State<Shared>, auth: Result<Authenticated, AuthError>, Json(b): Json<SimRepo>) -> Response {
    // A malformed body answers before missing credentials do: the extractor only reports them.
    let Authenticated(user) = respond!(auth);
    let mut f = respond!(lock(&s));
    match f.add_repo(&user.login, &b.name) {
        Ok(_) => {
            let repo = f.repos.get(&key(&user.login, &b.name)).cloned();
            match repo {
                Some(r) => (StatusCode::CREATED, Json(shapes::repo(&f, &r))).into_response(),
                None => error(StatusCode::INTERNAL_SERVER_ERROR, "repository vanished"),
            }
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct SimFiles {
    #[serde(rename = "ref")]
    git_ref: String,
    files: BTreeMap<String, String>,
}

/// Scripting API: `POST /_sim/repos/{o}/{r}/files {ref, files: {path: text}}` sets files at a ref.
pub async fn put_files(
    State(s): State<Shared>,
    auth: Result<Authenticated, AuthError>,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<SimFiles>,
) -> Response {
    // A malformed body answers before missing credentials do: the extractor only reports them.
    let Authenticated(user) = respond!(auth);
    let mut f = respond!(lock(&s));
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if !repo.owner.eq_ignore_ascii_case(&user.login) {
        return error(StatusCode::FORBIDDEN, "Only the owner may write files through /_sim");
    }
    let tree = repo.files.entry(b.git_ref).or_default();
    for (path, text) in b.files {
        tree.insert(path.trim_start_matches('/').to_string(), text.into_bytes());
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
pub struct SimCollaborator {
    login: String,
    permission: String,
}

/// Scripting API: `POST /_sim/repos/{o}/{r}/collaborators {login, permission}` (owner only).
pub async fn add_collaborator(
    State(s): State<Shared>,
    auth: Result<Authenticated, AuthError>,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<SimCollaborator>,
) -> Response {
    // A malformed body answers before missing credentials do: the extractor only reports them.
    let Authenticated(user) = respond!(auth);
    let mut f = respond!(lock(&s));
    if !["admin", "maintain", "write", "triage", "read"].contains(&b.permission.as_str()) {
        return validation("Collaborator", "permission", "invalid");
    }
    if !f.users.contains_key(&b.login.to_lowercase()) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if !repo.owner.eq_ignore_ascii_case(&user.login) {
        return error(StatusCode::FORBIDDEN, "Only the owner may add collaborators");
    }
    repo.collaborators.insert(b.login.to_lowercase(), b.permission);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/deliveries`: every delivery attempt, oldest first.
pub async fn list_deliveries(State(s): State<Shared>) -> Response {
    let f = respond!(lock(&s));
    let v: Vec<Value> = f
        .deliveries()
        .iter()
        .map(|d| json!({"id": d.id, "guid": d.guid, "hook_id": d.hook_id, "event": d.event, "action": d.action, "status_code": d.status, "redelivery": d.redelivery}))
        .collect();
    Json(Value::Array(v)).into_response()
}

/// `POST /_sim/oauth-apps {client_id, client_secret, redirect_uri}`: registers an OAuth app.
pub async fn register_oauth_app(State(s): State<Shared>, Json(app): Json<App>) -> Response {
    if app.client_id.trim().is_empty() || app.client_secret.len() < 8 || !app.redirect_uri.starts_with("http") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "client_id, a client_secret of 8+ characters and an http(s) redirect_uri are required",
        );
    }
    let mut f = respond!(lock(&s));
    f.oauth_apps.insert(app.client_id.clone(), app);
    StatusCode::NO_CONTENT.into_response()
}
