//! The GitHub REST subset forge-sim serves, with GitHub's shapes, status codes and error bodies
//! (`{"message", "documentation_url"}`, 422 with `errors[]`), token authentication, and `Link`
//! pagination (`per_page` ≤ 100, default 30).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const DOCS: &str = "https://docs.github.com/rest";

/// A user of the simulated forge.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
struct Label {
    id: i64,
    name: String,
    color: String,
    description: Option<String>,
}

#[derive(Debug, Clone)]
struct Comment {
    id: i64,
    body: String,
    user: String,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone)]
struct Issue {
    id: i64,
    number: i64,
    title: String,
    body: Option<String>,
    state: String,
    user: String,
    labels: Vec<String>,
    comments: Vec<Comment>,
    reactions: Vec<(String, String)>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone)]
struct Repo {
    id: i64,
    owner: String,
    name: String,
    default_branch: String,
    private: bool,
    labels: BTreeMap<String, Label>,
    issues: Vec<Issue>,
}

/// The whole simulated forge, in memory.
#[derive(Default)]
pub struct Forge {
    next_id: i64,
    users: BTreeMap<String, User>,
    tokens: BTreeMap<String, String>,
    repos: BTreeMap<String, Repo>,
    comment_reactions: Vec<(i64, String, String)>,
    hooks: Vec<crate::hooks::Hook>,
    deliveries: Vec<crate::hooks::Delivery>,
    pub base_url: String,
}

/// Shared state of the handlers.
pub type Shared = Arc<Mutex<Forge>>;

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A GitHub-shaped error.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "documentation_url": DOCS}))).into_response()
}

fn validation(resource: &str, field: &str, code: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Validation Failed", "errors": [{"resource": resource, "field": field, "code": code}], "documentation_url": DOCS})),
    )
        .into_response()
}

fn key(owner: &str, name: &str) -> String {
    format!("{}/{}", owner.to_lowercase(), name.to_lowercase())
}

impl Forge {
    /// An empty forge whose URLs start with `base_url`.
    pub fn new(base_url: String) -> Self {
        Self { base_url, ..Default::default() }
    }

    /// Whether `owner/name` exists.
    pub fn has_repo(&self, owner: &str, name: &str) -> bool {
        self.repos.contains_key(&key(owner, name))
    }

    /// Registers a hook on a repository.
    pub fn add_hook(&mut self, owner: &str, name: &str, url: String, secret: String, events: Vec<String>) -> crate::hooks::Hook {
        let hook = crate::hooks::Hook { id: self.id(), repo_key: key(owner, name), url, secret, events };
        self.hooks.push(hook.clone());
        hook
    }

    /// Hooks of a repository.
    pub fn hooks_of(&self, owner: &str, name: &str) -> Vec<crate::hooks::Hook> {
        let k = key(owner, name);
        self.hooks.iter().filter(|h| h.repo_key == k).cloned().collect()
    }

    /// Every delivery so far.
    pub fn deliveries(&self) -> &[crate::hooks::Delivery] {
        &self.deliveries
    }

    /// Records a delivery attempt.
    pub fn record_delivery(&mut self, d: crate::hooks::Delivery) {
        self.deliveries.push(d);
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a user and returns its API token.
    pub fn add_user(&mut self, login: &str, email: &str, kind: &str) -> Result<String, String> {
        if login.is_empty() || !login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '[' || c == ']') {
            return Err("login must be letters, digits or '-'".into());
        }
        if self.users.contains_key(&login.to_lowercase()) {
            return Err(format!("user {login} exists"));
        }
        let id = self.id();
        self.users.insert(login.to_lowercase(), User { id, login: login.into(), email: email.into(), kind: kind.into() });
        let token = format!("fsim_{login}_{:016x}", rand_u64());
        self.tokens.insert(token.clone(), login.to_lowercase());
        Ok(token)
    }

    /// Creates a repository owned by `owner` with a default branch `main`.
    pub fn add_repo(&mut self, owner: &str, name: &str) -> Result<i64, String> {
        if !self.users.contains_key(&owner.to_lowercase()) {
            return Err(format!("unknown owner {owner}"));
        }
        let k = key(owner, name);
        if self.repos.contains_key(&k) {
            return Err(format!("repository {owner}/{name} exists"));
        }
        let id = self.id();
        let repo = Repo {
            id,
            owner: owner.into(),
            name: name.into(),
            default_branch: "main".into(),
            private: false,
            labels: BTreeMap::new(),
            issues: vec![],
        };
        self.repos.insert(k, repo);
        Ok(id)
    }

    fn user_json(&self, login: &str) -> Value {
        let u = self.users.get(&login.to_lowercase());
        let login = u.map(|u| u.login.clone()).unwrap_or_else(|| login.to_string());
        json!({
            "login": login, "id": u.map(|u| u.id).unwrap_or(0), "node_id": format!("U_{login}"),
            "avatar_url": format!("{}/avatars/{login}", self.base_url), "gravatar_id": "",
            "url": format!("{}/users/{login}", self.base_url), "html_url": format!("{}/{login}", self.base_url),
            "type": u.map(|u| u.kind.clone()).unwrap_or_else(|| "User".into()), "site_admin": false,
        })
    }

    fn repo_json(&self, r: &Repo) -> Value {
        let full = format!("{}/{}", r.owner, r.name);
        json!({
            "id": r.id, "node_id": format!("R_{}", r.id), "name": r.name, "full_name": full, "private": r.private,
            "owner": self.user_json(&r.owner), "html_url": format!("{}/{full}", self.base_url), "description": null, "fork": false,
            "url": format!("{}/repos/{full}", self.base_url), "default_branch": r.default_branch,
            "clone_url": format!("{}/{full}.git", self.base_url), "visibility": if r.private { "private" } else { "public" },
        })
    }

    fn label_json(&self, r: &Repo, l: &Label) -> Value {
        json!({
            "id": l.id, "node_id": format!("LA_{}", l.id), "url": format!("{}/repos/{}/{}/labels/{}", self.base_url, r.owner, r.name, l.name),
            "name": l.name, "color": l.color, "default": false, "description": l.description,
        })
    }

    fn issue_json(&self, r: &Repo, i: &Issue) -> Value {
        let full = format!("{}/{}", r.owner, r.name);
        let labels: Vec<Value> = i
            .labels
            .iter()
            .map(|n| match r.labels.get(&n.to_lowercase()) {
                Some(l) => self.label_json(r, l),
                None => json!({"name": n}),
            })
            .collect();
        json!({
            "id": i.id, "node_id": format!("I_{}", i.id), "number": i.number, "title": i.title, "body": i.body, "state": i.state,
            "user": self.user_json(&i.user), "labels": labels, "comments": i.comments.len(), "locked": false,
            "url": format!("{}/repos/{full}/issues/{}", self.base_url, i.number), "html_url": format!("{}/{full}/issues/{}", self.base_url, i.number),
            "created_at": i.created_at, "updated_at": i.updated_at, "closed_at": null, "author_association": "OWNER",
        })
    }

    fn comment_json(&self, r: &Repo, issue: i64, c: &Comment) -> Value {
        let full = format!("{}/{}", r.owner, r.name);
        json!({
            "id": c.id, "node_id": format!("IC_{}", c.id), "body": c.body, "user": self.user_json(&c.user),
            "url": format!("{}/repos/{full}/issues/comments/{}", self.base_url, c.id),
            "html_url": format!("{}/{full}/issues/{issue}#issuecomment-{}", self.base_url, c.id),
            "issue_url": format!("{}/repos/{full}/issues/{issue}", self.base_url),
            "created_at": c.created_at, "updated_at": c.updated_at, "author_association": "OWNER",
        })
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b)
}

/// The authenticated user of a request, or the 401 GitHub answers.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, returned at once
fn auth(forge: &Forge, headers: &HeaderMap) -> Result<User, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Requires authentication"));
    };
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token ")).unwrap_or("").trim();
    forge.tokens.get(token).and_then(|l| forge.users.get(l)).cloned().ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Bad credentials"))
}

/// Locks the forge and authenticates the request: the preamble of every API handler.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, returned at once
pub fn session<'a>(s: &'a Shared, headers: &HeaderMap) -> Result<(std::sync::MutexGuard<'a, Forge>, User), Response> {
    let f = s.lock().map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))?;
    let user = auth(&f, headers)?;
    Ok((f, user))
}

/// `per_page` and `page` of list endpoints.
#[derive(Debug, Deserialize)]
pub struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
}

/// One page of `items` with GitHub's `Link` header.
fn paginate(base: &str, path: &str, items: Vec<Value>, p: &Page) -> Response {
    let per = p.per_page.unwrap_or(30).clamp(1, 100);
    let page = p.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let mut links = Vec::new();
    let url = |n: usize| format!("<{base}{path}?per_page={per}&page={n}>");
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
    }
    let mut resp = Json(Value::Array(slice)).into_response();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

macro_rules! repo_or_404 {
    ($forge:expr, $o:expr, $r:expr) => {
        match $forge.repos.get(&key(&$o, &$r)) {
            Some(r) => r.clone(),
            None => return error(StatusCode::NOT_FOUND, "Not Found"),
        }
    };
}

pub async fn get_repo(State(s): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>) -> Response {
    let (f, _) = respond!(session(&s, &h));
    let repo = repo_or_404!(f, o, r);
    Json(f.repo_json(&repo)).into_response()
}

pub async fn list_labels(State(s): State<Shared>, h: HeaderMap, Path((o, r)): Path<(String, String)>, Query(p): Query<Page>) -> Response {
    let (f, _) = respond!(session(&s, &h));
    let repo = repo_or_404!(f, o, r);
    let items = repo.labels.values().map(|l| f.label_json(&repo, l)).collect();
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
    h: HeaderMap,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewLabel>,
) -> Response {
    let (mut f, _) = respond!(session(&s, &h));
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
    (StatusCode::CREATED, Json(f.label_json(&repo, &label))).into_response()
}

pub async fn delete_label(State(s): State<Shared>, h: HeaderMap, Path((o, r, name)): Path<(String, String, String)>) -> Response {
    let (mut f, _) = respond!(session(&s, &h));
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
    h: HeaderMap,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewIssue>,
) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
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
    };
    repo.issues.push(issue.clone());
    let repo = repo.clone();
    (StatusCode::CREATED, Json(f.issue_json(&repo, &issue))).into_response()
}

fn issue_index(repo: &Repo, n: i64) -> Option<usize> {
    repo.issues.iter().position(|i| i.number == n)
}

pub async fn get_issue(State(s): State<Shared>, h: HeaderMap, Path((o, r, n)): Path<(String, String, i64)>) -> Response {
    let (f, _) = respond!(session(&s, &h));
    let repo = repo_or_404!(f, o, r);
    match issue_index(&repo, n) {
        Some(i) => Json(f.issue_json(&repo, &repo.issues[i])).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub async fn list_issue_labels(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let (f, _) = respond!(session(&s, &h));
    let repo = repo_or_404!(f, o, r);
    let Some(i) = issue_index(&repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let items = f.issue_json(&repo, &repo.issues[i])["labels"].as_array().cloned().unwrap_or_default();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/issues/{n}/labels"), items, &p)
}

#[derive(Debug, Deserialize)]
pub struct LabelsBody {
    labels: Vec<String>,
}

/// POST adds labels (creating unknown ones, as GitHub does); PUT replaces them.
pub async fn add_issue_labels(
    State(s): State<Shared>,
    h: HeaderMap,
    method: axum::http::Method,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<LabelsBody>,
) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
    if b.labels.iter().any(|l| l.trim().is_empty()) {
        return validation("Label", "name", "invalid");
    }
    let mut ids = Vec::new();
    for _ in &b.labels {
        ids.push(f.id());
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = issue_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
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
    let issue_json = f.issue_json(&repo, &repo.issues[i]);
    let hooks = f.hooks_of(&o, &r);
    for name in &added {
        if let Some(l) = repo.labels.get(&name.to_lowercase()) {
            let payload = json!({
                "action": "labeled", "issue": issue_json, "label": f.label_json(&repo, l),
                "repository": f.repo_json(&repo), "sender": f.user_json(&user.login),
            });
            crate::hooks::dispatch(s.clone(), hooks.clone(), "issues", payload);
        }
    }
    Json(issue_json["labels"].clone()).into_response()
}

pub async fn remove_issue_label(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, n, name)): Path<(String, String, i64, String)>,
) -> Response {
    let (mut f, _) = respond!(session(&s, &h));
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = issue_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let before = repo.issues[i].labels.len();
    repo.issues[i].labels.retain(|l| !l.eq_ignore_ascii_case(&name));
    if repo.issues[i].labels.len() == before {
        return error(StatusCode::NOT_FOUND, "Label does not exist");
    }
    let repo = repo.clone();
    Json(f.issue_json(&repo, &repo.issues[i])["labels"].clone()).into_response()
}

pub async fn list_comments(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let (f, _) = respond!(session(&s, &h));
    let repo = repo_or_404!(f, o, r);
    let Some(i) = issue_index(&repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let items = repo.issues[i].comments.iter().map(|c| f.comment_json(&repo, n, c)).collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/issues/{n}/comments"), items, &p)
}

#[derive(Debug, Deserialize)]
pub struct CommentBody {
    body: String,
}

pub async fn create_comment(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<CommentBody>,
) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
    if b.body.trim().is_empty() {
        return validation("IssueComment", "body", "missing_field");
    }
    if b.body.len() > 65_536 {
        return validation("IssueComment", "body", "too_long");
    }
    let id = f.id();
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = issue_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let t = now();
    let c = Comment { id, body: b.body, user: user.login, created_at: t.clone(), updated_at: t };
    repo.issues[i].comments.push(c.clone());
    let repo = repo.clone();
    (StatusCode::CREATED, Json(f.comment_json(&repo, n, &c))).into_response()
}

pub async fn update_comment(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, id)): Path<(String, String, i64)>,
    Json(b): Json<CommentBody>,
) -> Response {
    let (mut f, _) = respond!(session(&s, &h));
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
            return Json(f.comment_json(&repo, n, &c)).into_response();
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
    h: HeaderMap,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<ReactionBody>,
) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
    if !REACTIONS.contains(&b.content.as_str()) {
        return validation("Reaction", "content", "invalid");
    }
    let id = f.id();
    let user_json = f.user_json(&user.login);
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = issue_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let exists = repo.issues[i].reactions.iter().any(|(u, c)| *u == user.login && *c == b.content);
    if exists {
        return (StatusCode::OK, Json(reaction_json(id, &b.content, &user_json))).into_response();
    }
    repo.issues[i].reactions.push((user.login, b.content.clone()));
    (StatusCode::CREATED, Json(reaction_json(id, &b.content, &user_json))).into_response()
}

pub async fn react_comment(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((o, r, cid)): Path<(String, String, i64)>,
    Json(b): Json<ReactionBody>,
) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
    if !REACTIONS.contains(&b.content.as_str()) {
        return validation("Reaction", "content", "invalid");
    }
    let found = f.repos.get(&key(&o, &r)).is_some_and(|repo| repo.issues.iter().any(|i| i.comments.iter().any(|c| c.id == cid)));
    if !found {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let id = f.id();
    let user_json = f.user_json(&user.login);
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
    let Ok(mut f) = s.lock() else { return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned") };
    match f.add_user(&b.login, &b.email, &b.kind) {
        Ok(token) => {
            let (id, email) = f.users.get(&b.login.to_lowercase()).map(|u| (u.id, u.email.clone())).unwrap_or_default();
            (StatusCode::CREATED, Json(json!({"login": b.login, "id": id, "email": email, "token": token}))).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct SimRepo {
    name: String,
}

/// Scripting API: `POST /_sim/repos {name}` as the authenticated user → the repository.
pub async fn sim_create_repo(State(s): State<Shared>, h: HeaderMap, Json(b): Json<SimRepo>) -> Response {
    let (mut f, user) = respond!(session(&s, &h));
    match f.add_repo(&user.login, &b.name) {
        Ok(_) => {
            let repo = f.repos.get(&key(&user.login, &b.name)).cloned();
            match repo {
                Some(r) => (StatusCode::CREATED, Json(f.repo_json(&r))).into_response(),
                None => error(StatusCode::INTERNAL_SERVER_ERROR, "repository vanished"),
            }
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    }
}
