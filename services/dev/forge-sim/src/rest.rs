//! The GitHub REST subset forge-sim serves, with GitHub's shapes, status codes and error bodies
//! (`{"message", "documentation_url"}`, 422 with `errors[]`), token authentication, and `Link`
//! pagination (`per_page` ≤ 100, default 30).

use crate::auth::{AuthError, Authenticated};
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
use std::collections::BTreeMap;

#[macro_export]
macro_rules! repo_or_404 {
    ($forge:expr, $o:expr, $r:expr) => {
        match $forge.repos.get(&$crate::state::key(&$o, &$r)) {
            Some(r) => r.clone(),
            None => return $crate::http::error(axum::http::StatusCode::NOT_FOUND, "Not Found"),
        }
    };
}

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

pub async fn delete_label(State(s): State<Shared>, _: Authenticated, Path((o, r, name)): Path<(String, String, String)>) -> Response {
    let mut f = respond!(lock(&s));
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    match repo.labels.remove(&name.to_lowercase()) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

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
pub async fn sim_create_user(State(s): State<Shared>, Json(b): Json<SimUser>) -> Response {
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
pub async fn sim_user_token(State(s): State<Shared>, Path(login): Path<String>) -> Response {
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
pub async fn sim_create_repo(State(s): State<Shared>, auth: Result<Authenticated, AuthError>, Json(b): Json<SimRepo>) -> Response {
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

pub async fn get_label(State(s): State<Shared>, _: Authenticated, Path((o, r, name)): Path<(String, String, String)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    match repo.labels.get(&name.to_lowercase()) {
        Some(l) => Json(shapes::label(&f, &repo, l)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
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

#[derive(Debug, Deserialize)]
pub struct RefQuery {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

fn blob_sha(bytes: &[u8]) -> String {
    use sha1_smol::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.digest().to_string()
}

/// `GET /repos/{o}/{r}/contents/{path}?ref=`: a file as GitHub's `content-file` (base64).
pub async fn get_contents(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, path)): Path<(String, String, String)>,
    Query(q): Query<RefQuery>,
) -> Response {
    use base64::Engine;
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let git_ref = q.git_ref.unwrap_or_else(|| repo.default_branch.clone());
    // The git repository first (what was pushed), then files set through /_sim.
    let from_git = if git_ref.starts_with('-') || path.contains("..") {
        None
    } else {
        crate::state::bare::git_out(&f.git_dir(&repo.owner, &repo.name), &["cat-file", "blob", &format!("{git_ref}:{path}")])
    };
    let Some(bytes) = from_git.as_ref().or_else(|| repo.files.get(&git_ref).and_then(|files| files.get(&path))) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let full = format!("{}/{}", repo.owner, repo.name);
    let sha = blob_sha(bytes);
    let api = format!("{}/repos/{full}/contents/{path}?ref={git_ref}", f.base_url);
    let html = format!("{}/{full}/blob/{git_ref}/{path}", f.base_url);
    let git = format!("{}/repos/{full}/git/blobs/{sha}", f.base_url);
    Json(json!({
        "type": "file", "encoding": "base64", "size": bytes.len(), "name": path.rsplit('/').next().unwrap_or(&path), "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(bytes), "sha": sha, "url": api, "git_url": git, "html_url": html,
        "download_url": format!("{}/{full}/raw/{git_ref}/{path}", f.base_url),
        "_links": {"self": api, "git": git, "html": html},
    }))
    .into_response()
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

#[derive(Debug, Deserialize)]
pub struct SimFiles {
    #[serde(rename = "ref")]
    git_ref: String,
    files: BTreeMap<String, String>,
}

/// Scripting API: `POST /_sim/repos/{o}/{r}/files {ref, files: {path: text}}` sets files at a ref.
pub async fn sim_put_files(
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
pub async fn sim_add_collaborator(
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
