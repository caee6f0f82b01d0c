//! Pull requests, their reviews and review comments (`/repos/{o}/{r}/pulls/...`), with GitHub's
//! shapes of them and the `pull_request` and `pull_request_review` webhooks they send. A pull
//! request is an issue with a `pull` part, as on GitHub: it shares the issue numbering, labels and
//! comments.

use crate::api::repo_or_404;
use crate::auth::Authenticated;
use crate::http::{Page, error, lock, paginate, respond, validation};
use crate::shapes;
use crate::state::bare::git_out;
use crate::state::{Forge, Issue, Pull, Repo, ReviewCommentRec, ReviewRec, Shared, key, now};
use crate::webhooks;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

fn fake_sha(seed: &str) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(seed.as_bytes());
    h.digest().to_string()
}

fn branch_json(f: &Forge, r: &Repo, name: &str, sha: &str) -> Value {
    json!({"label": format!("{}:{name}", r.owner), "ref": name, "sha": sha, "user": shapes::user(f, &r.owner), "repo": shapes::repo(f, r)})
}

fn pull_json(f: &Forge, r: &Repo, i: &Issue, full_detail: bool) -> Value {
    let Some(p) = &i.pull else { return Value::Null };
    let full = format!("{}/{}", r.owner, r.name);
    let api = format!("{}/repos/{full}/pulls/{}", f.base_url, i.number);
    let issue_api = format!("{}/repos/{full}/issues/{}", f.base_url, i.number);
    let html = format!("{}/{full}/pull/{}", f.base_url, i.number);
    let issue = shapes::issue(f, r, i);
    let mut v = json!({
        "url": api, "id": i.id, "node_id": format!("PR_{}", i.id), "html_url": html, "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"), "issue_url": issue_api, "commits_url": format!("{api}/commits"),
        "review_comments_url": format!("{api}/comments"), "review_comment_url": format!("{}/repos/{full}/pulls/comments{{/number}}", f.base_url),
        "comments_url": format!("{issue_api}/comments"), "statuses_url": format!("{}/repos/{full}/statuses/{}", f.base_url, p.head_sha),
        "number": i.number, "state": i.state, "locked": false, "title": i.title, "user": shapes::user(f, &i.user), "body": i.body,
        "labels": issue["labels"], "milestone": null, "active_lock_reason": null, "created_at": i.created_at, "updated_at": i.updated_at,
        "closed_at": null, "merged_at": null, "merge_commit_sha": null, "assignee": null, "assignees": [], "requested_reviewers": [],
        "requested_teams": [], "head": branch_json(f, r, &p.head, &p.head_sha), "base": branch_json(f, r, &p.base, &fake_sha(&p.base)),
        "_links": {
            "self": {"href": api}, "html": {"href": html}, "issue": {"href": issue_api}, "comments": {"href": format!("{issue_api}/comments")},
            "review_comments": {"href": format!("{api}/comments")},
            "review_comment": {"href": format!("{}/repos/{full}/pulls/comments{{/number}}", f.base_url)},
            "commits": {"href": format!("{api}/commits")}, "statuses": {"href": format!("{}/repos/{full}/statuses/{}", f.base_url, p.head_sha)},
        },
        "author_association": "OWNER", "auto_merge": null, "draft": p.draft,
    });
    if full_detail {
        for (k, val) in [
            ("merged", json!(p.merged)),
            ("mergeable", json!(true)),
            ("rebaseable", json!(true)),
            ("mergeable_state", json!("clean")),
            ("merged_by", Value::Null),
            ("comments", json!(i.comments.len())),
            ("review_comments", json!(p.review_comments.len())),
            ("maintainer_can_modify", json!(false)),
            ("commits", json!(1)),
            ("additions", json!(0)),
            ("deletions", json!(0)),
            ("changed_files", json!(0)),
        ] {
            v[k] = val;
        }
    }
    v
}

fn review_json(f: &Forge, r: &Repo, number: i64, rv: &ReviewRec, head_sha: &str) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    let html = format!("{}/{full}/pull/{number}#pullrequestreview-{}", f.base_url, rv.id);
    let pr = format!("{}/repos/{full}/pulls/{number}", f.base_url);
    json!({
        "id": rv.id, "node_id": format!("PRR_{}", rv.id), "user": shapes::user(f, &rv.user), "body": rv.body, "state": rv.state,
        "commit_id": head_sha, "html_url": html, "pull_request_url": pr, "submitted_at": rv.submitted_at,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr}}, "author_association": "OWNER",
    })
}

fn review_comment_json(f: &Forge, r: &Repo, number: i64, c: &ReviewCommentRec, head_sha: &str) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    let api = format!("{}/repos/{full}/pulls/comments/{}", f.base_url, c.id);
    let html = format!("{}/{full}/pull/{number}#discussion_r{}", f.base_url, c.id);
    let pr = format!("{}/repos/{full}/pulls/{number}", f.base_url);
    let mut v = json!({
        "url": api, "id": c.id, "node_id": format!("PRRC_{}", c.id), "pull_request_review_id": c.review_id,
        "diff_hunk": format!("@@ -{0},1 +{0},1 @@", c.line), "path": c.path, "commit_id": head_sha, "original_commit_id": head_sha,
        "user": shapes::user(f, &c.user), "body": c.body, "created_at": c.created_at, "updated_at": c.created_at, "html_url": html,
        "pull_request_url": pr, "author_association": "OWNER", "line": c.line, "side": "RIGHT",
        "_links": {"self": {"href": api}, "html": {"href": html}, "pull_request": {"href": pr}},
    });
    if let Some(parent) = c.in_reply_to {
        v["in_reply_to_id"] = json!(parent);
    }
    v
}

#[derive(Debug, Deserialize)]
pub struct NewPull {
    title: String,
    #[serde(default)]
    body: Option<String>,
    head: String,
    base: String,
    #[serde(default)]
    draft: bool,
}

pub async fn create_pull(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r)): Path<(String, String)>,
    Json(b): Json<NewPull>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.title.trim().is_empty() {
        return validation("PullRequest", "title", "missing_field");
    }
    let head = b.head.split_once(':').map(|(_, br)| br.to_string()).unwrap_or(b.head.clone());
    if head.is_empty() || head == b.base {
        return validation("PullRequest", "head", "invalid");
    }
    let id = f.id();
    // The branch's commit when it was pushed to the forge's git repository.
    let pushed_sha = git_out(&f.git_dir(&o, &r), &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{head}")])
        .map(|out| String::from_utf8_lossy(&out).trim().to_string())
        .filter(|sha| sha.len() == 40);
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    if repo.issues.iter().any(|i| i.state == "open" && i.pull.as_ref().is_some_and(|p| p.head == head && p.base == b.base)) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
                "message": format!("A pull request already exists for {o}:{head}.")}], "documentation_url": "https://docs.github.com/rest"})),
        )
            .into_response();
    }
    let t = now();
    let number = repo.issues.len() as i64 + 1;
    let issue = Issue {
        id,
        number,
        title: b.title,
        body: b.body,
        state: "open".into(),
        user: user.login,
        labels: vec![],
        comments: vec![],
        reactions: vec![],
        created_at: t.clone(),
        updated_at: t,
        pull: Some(Pull {
            head_sha: pushed_sha.unwrap_or_else(|| fake_sha(&format!("{head}-{id}"))),
            head,
            base: b.base,
            draft: b.draft,
            merged: false,
            reviews: vec![],
            review_comments: vec![],
        }),
    };
    repo.issues.push(issue.clone());
    let repo = repo.clone();
    let body = pull_json(&f, &repo, &issue, true);
    let payload = json!({"action": "opened", "number": number, "pull_request": body, "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &issue.user)});
    webhooks::dispatch(s.clone(), f.hooks_of(&o, &r), "pull_request", payload);
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct PullFilter {
    state: Option<String>,
    head: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

pub async fn list_pulls(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r)): Path<(String, String)>,
    Query(q): Query<PullFilter>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let state = q.state.unwrap_or_else(|| "open".into());
    let head = q.head.map(|h| h.split_once(':').map(|(_, b)| b.to_string()).unwrap_or(h));
    let items = repo
        .issues
        .iter()
        .filter(|i| i.pull.is_some() && (state == "all" || i.state == state))
        .filter(|i| head.as_ref().is_none_or(|h| i.pull.as_ref().is_some_and(|p| &p.head == h)))
        .map(|i| pull_json(&f, &repo, i, false))
        .collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/pulls"), items, &Page { per_page: q.per_page, page: q.page })
}

/// The pull-request part of issue `n`, if it is a pull request.
fn pull_of(repo: &Repo, n: i64) -> Option<&Pull> {
    repo.issue_index(n).and_then(|i| repo.issues[i].pull.as_ref())
}

fn pull_index(repo: &Repo, n: i64) -> Option<usize> {
    repo.issue_index(n).filter(|i| repo.issues[*i].pull.is_some())
}

pub async fn get_pull(State(s): State<Shared>, _: Authenticated, Path((o, r, n)): Path<(String, String, i64)>) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    match pull_index(&repo, n) {
        Some(i) => Json(pull_json(&f, &repo, &repo.issues[i], true)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[derive(Debug, Deserialize)]
pub struct PullPatch {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
}

pub async fn update_pull(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<PullPatch>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.state.as_ref().is_some_and(|st| st != "open" && st != "closed") {
        return validation("PullRequest", "state", "invalid");
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = pull_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let issue = &mut repo.issues[i];
    if let Some(t) = b.title.filter(|t| !t.trim().is_empty()) {
        issue.title = t;
    }
    if b.body.is_some() {
        issue.body = b.body;
    }
    let action = match b.state {
        Some(st) if st != issue.state => {
            issue.state = st.clone();
            if st == "closed" { "closed" } else { "reopened" }
        }
        _ => "edited",
    };
    issue.updated_at = now();
    let repo = repo.clone();
    let body = pull_json(&f, &repo, &repo.issues[i], true);
    let payload = json!({"action": action, "number": n, "pull_request": body, "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &user.login)});
    webhooks::dispatch(s.clone(), f.hooks_of(&o, &r), "pull_request", payload);
    Json(body).into_response()
}

pub async fn list_reviews(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let Some(pull) = pull_of(&repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let items = pull.reviews.iter().map(|rv| review_json(&f, &repo, n, rv, &pull.head_sha)).collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/pulls/{n}/reviews"), items, &p)
}

pub async fn list_review_comments(
    State(s): State<Shared>,
    _: Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Query(p): Query<Page>,
) -> Response {
    let f = respond!(lock(&s));
    let repo = repo_or_404!(f, o, r);
    let Some(pull) = pull_of(&repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let items = pull.review_comments.iter().map(|c| review_comment_json(&f, &repo, n, c, &pull.head_sha)).collect();
    paginate(&f.base_url, &format!("/repos/{o}/{r}/pulls/{n}/comments"), items, &p)
}

#[derive(Debug, Deserialize)]
pub struct NewLineComment {
    path: String,
    line: i64,
    body: String,
}

#[derive(Debug, Deserialize)]
pub struct NewReview {
    #[serde(default)]
    body: String,
    event: Option<String>,
    #[serde(default)]
    comments: Vec<NewLineComment>,
}

pub async fn create_review(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, n)): Path<(String, String, i64)>,
    Json(b): Json<NewReview>,
) -> Response {
    let mut f = respond!(lock(&s));
    let state = match b.event.as_deref() {
        Some("APPROVE") => "APPROVED",
        Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
        Some("COMMENT") => "COMMENTED",
        None => "PENDING",
        Some(_) => return validation("PullRequestReview", "event", "invalid"),
    };
    if matches!(state, "CHANGES_REQUESTED" | "COMMENTED") && b.body.trim().is_empty() && b.comments.is_empty() {
        return validation("PullRequestReview", "body", "missing_field");
    }
    if b.comments.iter().any(|c| c.path.trim().is_empty() || c.line < 1 || c.body.trim().is_empty()) {
        return validation("PullRequestReviewComment", "line", "invalid");
    }
    let review_id = f.id();
    let mut ids = Vec::new();
    for _ in &b.comments {
        ids.push(f.id());
    }
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = pull_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let t = now();
    let Some(pull) = repo.issues[i].pull.as_mut() else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let rv = ReviewRec { id: review_id, user: user.login.clone(), state: state.into(), body: b.body, submitted_at: t.clone() };
    pull.reviews.push(rv.clone());
    for (c, id) in b.comments.into_iter().zip(ids) {
        pull.review_comments.push(ReviewCommentRec {
            id,
            review_id,
            user: user.login.clone(),
            body: c.body,
            path: c.path,
            line: c.line,
            created_at: t.clone(),
            in_reply_to: None,
        });
    }
    let sha = pull.head_sha.clone();
    let repo = repo.clone();
    let body = review_json(&f, &repo, n, &rv, &sha);
    if rv.state != "PENDING" {
        let mut review = body.clone();
        // Webhooks carry the state in lower case (`changes_requested`), the REST API in upper case.
        review["state"] = json!(rv.state.to_lowercase());
        let payload = json!({
            "action": "submitted", "review": review, "pull_request": pull_json(&f, &repo, &repo.issues[i], false),
            "repository": shapes::repo(&f, &repo), "sender": shapes::user(&f, &user.login),
        });
        webhooks::dispatch(s.clone(), f.hooks_of(&o, &r), "pull_request_review", payload);
    }
    Json(body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct NewReply {
    #[serde(default)]
    body: String,
}

/// `POST /repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies`: a reply in the
/// thread of a top-level review comment (GitHub refuses replies to replies).
pub async fn reply_review_comment(
    State(s): State<Shared>,
    Authenticated(user): Authenticated,
    Path((o, r, n, comment_id)): Path<(String, String, i64, i64)>,
    Json(b): Json<NewReply>,
) -> Response {
    let mut f = respond!(lock(&s));
    if b.body.trim().is_empty() {
        return validation("PullRequestReviewComment", "body", "missing_field");
    }
    let id = f.id();
    let Some(repo) = f.repos.get_mut(&key(&o, &r)) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(i) = pull_index(repo, n) else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(pull) = repo.issues[i].pull.as_mut() else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let Some(parent) = pull.review_comments.iter().find(|c| c.id == comment_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if parent.in_reply_to.is_some() {
        return validation("PullRequestReviewComment", "in_reply_to", "invalid");
    }
    let c = ReviewCommentRec {
        id,
        review_id: parent.review_id,
        user: user.login.clone(),
        body: b.body,
        path: parent.path,
        line: parent.line,
        created_at: now(),
        in_reply_to: Some(comment_id),
    };
    pull.review_comments.push(c.clone());
    let sha = pull.head_sha.clone();
    let repo = repo.clone();
    (StatusCode::CREATED, Json(review_comment_json(&f, &repo, n, &c, &sha))).into_response()
}
