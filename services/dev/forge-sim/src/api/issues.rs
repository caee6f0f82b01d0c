//! Issues and what hangs on them: their labels, comments and reactions
//! (`/repos/{o}/{r}/issues/...`), with the `issues` and `issue_comment` webhooks they send.

use crate::api::repo_or_404;
use crate::auth::Authenticated;
use crate::http::{Page, error, lock, paginate, respond, validation};
use crate::shapes;
use crate::state::{Comment, Issue, Label, Shared, key, now};
use crate::webhooks;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
pub struct NewIssue {
    title: String,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

pub async fn create_issue(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewIssue>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.title.trim().is_empty() {
        return validation("Issue", "title", "missing_field");
    }
    let id = f.id();
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let number = repo.issues.len() as i64 + 1;
    let t = now();
    let issue = Issue {
        id,
        number,
        title: b.title,
        body: b.body,
        state: "open".into(),
        user: user.login,
        labels: b.labels,
        comments: vec![],
        reactions: vec![],
        created_at: t.clone(),
        updated_at: t,
        pull: None,
    };
    repo.issues.push(issue.clone());
    let repo = repo.clone();
    let body = shapes::issue(&f, &repo, &issue);
    let payload =
        json!({"action": "opened", "issue": body, "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &issue.user)});
    webhooks::dispatch(s.clone(), f.hooks_of(&o, &r), "issues", payload);
    (StatusCode::CREATED, Json(body)).into_response()
}

pub async fn get_issue(State(s): State<Shared>, _: Authenticated, Path((o, r, n)): Path<(String, String, i64)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    match repo.issue_index(n) {
        Some(i) => Json(shapes::issue(&f, &repo, &repo.issues[i])).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub async fn list_issue_labels(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let items = shapes::issue(&f, &repo, &repo.issues[i])["labels"].as_array().cloned().unwrap_or_default();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/issues/{n}/labels"), items, &p)
}

#[derive(Debug, Deserialize)]
pub struct LabelsBody {
    labels: Vec<String>,
}

/// POST adds labels (creating unknown ones, as GitHub does); PUT replaces them.
pub async fn add_issue_labels(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    method: axum::http::Method,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<LabelsBody>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.labels.iter().any(|l| l.trim().is_empty()) {
        return validation("Label", "name", "invalid");
    }
    let mut ids = Vec::new();
    for _ in &b.labels {
        ids.push(f.id());
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    for (name, id) in b.labels.iter().zip(ids) {
        repo.labels.entry(name.to_lowercase()).or_insert(Label { id, name: name.clone(), color: "ededed".into(), description: None });
    }
    let issue = &mut repo.issues[i];
    if method == axum::http::Method::PUT {
        issue.labels.clear();
    }
    let mut added = Vec::new();
    for name in b.labels {
        if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
            issue.labels.push(name.clone());
            added.push(name);
        }
    }
    issue.updated_at = now();
    let repo = repo.clone();
    let issue_json = shapes::issue(&f, &repo, &repo.issues[i]);
    let hooks = f.hooks_of(&o, &r);
    for name in &added {
        if let Some(l) = repo.labels.get(&name.to_lowercase()) {
            let payload = json!({
                "action": "labeled", "issue": issue_json, "label": shapes::label(&f, &repo, l),
                "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &user.login),
            });
            webhooks::dispatch(s.clone(), hooks.clone(), "issues", payload);
        }
    }
    Json(issue_json["labels"].clone()).into_response()
}

pub async fn remove_issue_label(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, n, name)): Path<(String, String, i64, String)>,
) -> Response {
    let mut f = respond!(lock(&s));
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let before = repo.issues[i].labels.len();
    repo.issues[i].labels.retain(|l| !l.eq_ignore_ascii_case(&name));
    if repo.issues[i].labels.len() == before {
        return error(StatusCode::NOT_FOUND, "Label does not exist");
    }
    let repo = repo.clone();
    Json(shapes::issue(&f, &repo, &repo.issues[i])["labels"].clone()).into_response()
}

pub async fn list_comments(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let lag = std::time::Duration::from_millis(f.faults.comment_list_lag_ms);
    let items = repo.issues[i].comments.iter().filter(|c| c.born.elapsed() >= lag).map(|c| shapes::comment(&f, &repo, n, c)).collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/issues/{n}/comments"), items, &p)
}

#[derive(Debug, Deserialize)]
pub struct CommentBody {
    body: String,
}

pub async fn create_comment(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<CommentBody>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.body.trim().is_empty() {
        return validation("IssueComment", "body", "missing_field");
    }
    if b.body.len() > 65_536 {
        return validation("IssueComment", "body", "too_long");
    }
    let id = f.id();
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let t = now();
    let c = Comment { id, body: b.body, user: user.login, created_at: t.clone(), updated_at: t, born: std::time::Instant::now() };
    repo.issues[i].comments.push(c.clone());
    let repo = repo.clone();
    let body = shapes::comment(&f, &repo, n, &c);
    let payload = json!({
        "action": "created", "issue": shapes::issue(&f, &repo, &repo.issues[i]), "comment": body,
        "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &c.user),
    });
    webhooks::dispatch(s.clone(), f.hooks_of(&o, &r), "issue_comment", payload);
    (StatusCode::CREATED, Json(body)).into_response()
}

pub async fn update_comment(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(b): Json<CommentBody>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.body.trim().is_empty() {
        return validation("IssueComment", "body", "missing_field");
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    for issue in &mut repo.issues {
        if let Some(c) = issue.comments.iter_mut().find(|c| c.id == id) {
            c.body = b.body;
            c.updated_at = now();
            let (c, n) = (c.clone(), issue.number);
            let repo = repo.clone();
            return Json(shapes::comment(&f, &repo, n, &c)).into_response();
        }
    }
    error(StatusCode::NOT_FOUND, "Not Found")
}

#[derive(Debug, Deserialize)]
pub struct ReactionBody {
    content: String,
}

const REACTIONS: [&str; 8] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

fn reaction_json(id: i64, content: &str, user: &Value) -> Value {
    json!({"id": id, "node_id": format!("REA_{id}"), "user": user, "content": content, "created_at": now()})
}

/// Reacting twice with the same content answers 200 with the existing reaction, as GitHub does.
pub async fn react_issue(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<ReactionBody>,
) -> Response {
    let mut f = respond!(lock(&s));
    if !REACTIONS.contains(&b.content.as_str()) {
        return validation("Reaction", "content", "invalid");
    }
    let id = f.id();
    let user_json = shapes::user(&f, &user.login);
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = repo.issue_index(n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let exists = repo.issues[i].reactions.iter().any(|(u, c)| *u == user.login && *c == b.content);
    if exists {
        return (StatusCode::OK, Json(reaction_json(id, &b.content, &user_json))).into_response();
    }
    repo.issues[i].reactions.push((user.login, b.content.clone()));
    (StatusCode::CREATED, Json(reaction_json(id, &b.content, &user_json))).into_response()
}

pub async fn react_comment(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, cid)): Path<(String, String, i64)>,
    Json(b): Json<ReactionBody>,
) -> Response {
    let mut f = respond!(lock(&s));
    if !REACTIONS.contains(&b.content.as_str()) {
        return validation("Reaction", "content", "invalid");
    }
    let found = f.repos.get(&key(&o, &r)).is_some_and(|repo| repo.issues.iter().any(|i| i.comments.iter().any(|c| c.id == cid)));
    if !found {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let id = f.id();
    let user_json = shapes::user(&f, &user.login);
    let exists = f.comment_reactions.iter().any(|(c, u, x)| *c == cid && *u == user.login && *x == b.content);
    if exists {
        return (StatusCode::OK, Json(reaction_json(id, &b.content, &user_json))).into_response();
    }
    f.comment_reactions.push((cid, user.login, b.content.clone()));
    (StatusCode::CREATED, Json(reaction_json(id, &b.content, &user_json))).into_response()
}
