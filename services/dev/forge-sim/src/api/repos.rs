//! Repositories, their labels, and collaborators' permissions: `GET /repos/{o}/{r}`,
//! `/repos/{o}/{r}/labels[/{name}]` and `GET /repos/{o}/{r}/collaborators/{username}/permission`.

use crate::api::repo_or_404;
use crate::auth::Authenticated;
use crate::http::{Page, error, lock, paginate, respond, validation};
use crate::shapes;
use crate::state::{Label, Shared, key};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub async fn get_repo(State(s): State<Shared>, _: Authenticated, Path((o, r)): Path<(String, String)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    // The REST answer is GitHub's full-repository; webhooks and nested objects carry the shorter form.
    let mut v = shapes::repo(&f, &repo);
    for (k, val) in [("network_count", json!(0)), ("subscribers_count", json!(0)), ("has_discussions", json!(false))] {
        v[k] = val;
    }
    Json(v).into_response()
}

pub async fn list_labels(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r)): Path<(String, String)>,
    Query(p): Query<Page>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let items = repo.labels.values().map(|l| shapes::label(&f, &repo, l)).collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/labels"), items, &p)
}

pub async fn get_label(State(s): State<Shared>, _: Authenticated, Path((o, r, name)): Path<(String, String, String)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    match repo.labels.get(&name.to_lowercase()) {
        Some(l) => Json(shapes::label(&f, &repo, l)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Debug, Deserialize)]
pub struct NewLabel {
    name: String,
    color: Option<String>,
    description: Option<String>,
}

pub async fn create_label(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewLabel>,
) -> Response {
    let mut f = respond!(lock(&s));
    let _ = repo_or_404!(f, o, r);
    if b.name.trim().is_empty() {
        return validation("Label", "name", "missing_field");
    }
    let color = b.color.unwrap_or_else(|| "ededed".into());
    if color.len() != 6 || !color.chars().all(|c| c.is_ascii_hexdigit()) {
        return validation("Label", "color", "invalid");
    }
    let id = f.id();
    let k = key(&o, &r);
    let Some(repo) = f.repos.get_mut(&k) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if repo.labels.contains_key(&b.name.to_lowercase()) {
        return validation("Label", "name", "already_exists");
    }
    let label = Label { id, name: b.name.clone(), color, description: b.description };
    repo.labels.insert(b.name.to_lowercase(), label.clone());
    let repo = repo.clone();
    (StatusCode::CREATED, Json(shapes::label(&f, &repo, &label))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LabelPatch {
    new_name: Option<String>,
    color: Option<String>,
    description: Option<String>,
}

pub async fn update_label(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, name)): Path<(String, String, String)>,
    Json(b): Json<LabelPatch>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.color.as_ref().is_some_and(|c| c.len() != 6 || !c.chars().all(|c| c.is_ascii_hexdigit())) {
        return validation("Label", "color", "invalid");
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(mut label) = repo.labels.remove(&name.to_lowercase()) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if let Some(n) = b.new_name.filter(|n| !n.trim().is_empty()) {
        label.name = n;
    }
    if let Some(c) = b.color {
        label.color = c;
    }
    if b.description.is_some() {
        label.description = b.description;
    }
    repo.labels.insert(label.name.to_lowercase(), label.clone());
    let repo = repo.clone();
    Json(shapes::label(&f, &repo, &label)).into_response()
}

pub async fn delete_label(State(s): State<Shared>, _: Authenticated, Path((o, r, name)): Path<(String, String, String)>) -> Response {
    let mut f = respond!(lock(&s));
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    match repo.labels.remove(&name.to_lowercase()) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `GET /repos/{o}/{r}/collaborators/{username}/permission`.
pub async fn get_permission(State(s): State<Shared>, _: Authenticated, Path((o, r, login)): Path<(String, String, String)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    if !f.users.contains_key(&login.to_lowercase()) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let permission = if repo.owner.eq_ignore_ascii_case(&login) {
        "admin".to_string()
    } else {
        repo.collaborators.get(&login.to_lowercase()).cloned().unwrap_or_else(|| if repo.private { "none".into() } else { "read".into() })
    };
    let mut user = shapes::user(&f, &login);
    user["permissions"] = json!({
        "admin": permission == "admin", "maintain": matches!(permission.as_str(), "admin" | "maintain"),
        "push": matches!(permission.as_str(), "admin" | "maintain" | "write"), "triage": permission != "read" && permission != "none",
        "pull": permission != "none",
    });
    user["role_name"] = json!(permission);
    Json(json!({"permission": permission, "role_name": permission, "user": user})).into_response()
}
