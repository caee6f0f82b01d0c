//! Git hosting over smart HTTP: every repository is a bare repository under the forge's git root,
//! served by Debian's `git http-backend` as a CGI program at `/git/{owner}/{name}.git/...`, so
//! clones and pushes are real. Reads of public repositories need no credentials; pushes need
//! HTTP Basic credentials whose password is a forge-sim token with write access (GitHub's
//! `x-access-token:<token>` form works). A push sends a `push` webhook per updated branch.

use crate::http::{error, lock, respond};
use crate::shapes;
use crate::state::bare::git_out;
use crate::state::{Shared, User, key};
use crate::webhooks;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where `git http-backend` lives on Debian.
const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";

/// `refs/heads/*` and their commits.
fn branches(dir: &std::path::Path) -> BTreeMap<String, String> {
    let text = git_out(dir, &["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"]).unwrap_or_default();
    String::from_utf8_lossy(&text).lines().filter_map(|l| l.split_once(' ')).map(|(r, s)| (r.to_string(), s.to_string())).collect()
}

fn credentials(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b) = v.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_string());
    }
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")).map(|t| t.trim().to_string())
}

fn challenge(status: StatusCode, message: &str) -> Response {
    let mut r = (status, message.to_string()).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"forge-sim\""));
    r
}

/// `/git/{owner}/{name}.git/{*rest}`: the smart HTTP protocol through `git http-backend`.
pub async fn smart_http(
    State(s): State<Shared>,
    method: Method,
    Path((owner, repo_git, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(name) = repo_git.strip_suffix(".git") else { return error(StatusCode::NOT_FOUND, "Not Found") };
    let query = query.unwrap_or_default();
    let push = rest.ends_with("git-receive-pack") || query.contains("service=git-receive-pack");
    let (dir, user, repo_json, hooks, before) = {
        let f = respond!(lock(&s));
        let Some(repo) = f.repos.get(&key(&owner, name)).cloned() else { return error(StatusCode::NOT_FOUND, "Repository not found") };
        let user = credentials(&headers).and_then(|t| f.user_of_token(&t));
        if push {
            let Some(u) = &user else { return challenge(StatusCode::UNAUTHORIZED, "Authentication required to push") };
            let may_write = repo.owner.eq_ignore_ascii_case(&u.login)
                || repo.collaborators.get(&u.login.to_lowercase()).is_some_and(|p| matches!(p.as_str(), "admin" | "maintain" | "write"));
            if !may_write {
                return error(StatusCode::FORBIDDEN, &format!("Permission to {owner}/{name} denied to {}", u.login));
            }
        } else if repo.private && user.is_none() {
            return challenge(StatusCode::UNAUTHORIZED, "Authentication required");
        }
        let dir = f.git_dir(&owner, name);
        let before = if push && method == Method::POST { Some(branches(&dir)) } else { None };
        (dir, user, shapes::repo(&f, &repo), f.hooks_of(&owner, name), before)
    };

    let mut cmd = tokio::process::Command::new(HTTP_BACKEND);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", dir.parent().unwrap_or(&dir))
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{}/{rest}", dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()))
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(enc) = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", proto);
    }
    if let Some(u) = &user {
        cmd.env("REMOTE_USER", &u.login);
    }
    let Ok(mut child) = cmd.spawn() else { return error(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend is not installed") };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else { return error(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed") };
    let Some(split) = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)))
    else {
        tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "git http-backend gave no headers");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend gave no answer");
    };
    let (head, body_out) = (String::from_utf8_lossy(&out.stdout[..split.0]).to_string(), out.stdout[split.0 + split.1..].to_vec());
    let mut status = StatusCode::OK;
    let mut resp_headers = HeaderMap::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v.split_whitespace().next().and_then(|c| c.parse().ok()).and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(status);
        } else if let (Ok(name), Ok(value)) = (header::HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v)) {
            resp_headers.insert(name, value);
        }
    }

    if let (Some(before), Some(u)) = (before, &user) {
        let after = branches(&dir);
        let mut pushes = Vec::new();
        for (r, sha) in &after {
            if before.get(r) != Some(sha) {
                pushes.push((r.clone(), before.get(r).cloned(), Some(sha.clone())));
            }
        }
        for (r, sha) in &before {
            if !after.contains_key(r) {
                pushes.push((r.clone(), Some(sha.clone()), None));
            }
        }
        let f = respond!(lock(&s));
        let sender = shapes::user(&f, &u.login);
        for (r, old, new) in pushes {
            let payload = push_payload(&dir, &f.base_url, &owner, name, &r, old.as_deref(), new.as_deref(), &repo_json, &sender, u);
            webhooks::dispatch(s.clone(), hooks.clone(), "push", payload);
        }
    }
    let mut resp = Response::new(Body::from(body_out));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    resp
}

const ZERO: &str = "0000000000000000000000000000000000000000";

#[allow(clippy::too_many_arguments)]
fn push_payload(
    dir: &std::path::Path,
    base: &str,
    owner: &str,
    name: &str,
    r: &str,
    old: Option<&str>,
    new: Option<&str>,
    repo_json: &Value,
    sender: &Value,
    u: &User,
) -> Value {
    let range = match (old, new) {
        (Some(o), Some(n)) => format!("{o}..{n}"),
        (None, Some(n)) => n.to_string(),
        _ => String::new(),
    };
    let mut commits = Vec::new();
    if !range.is_empty() {
        let log = git_out(dir, &["log", "--reverse", "--format=%H%x1f%s%x1f%an%x1f%ae%x1f%cI", "-n", "20", &range]).unwrap_or_default();
        for line in String::from_utf8_lossy(&log).lines() {
            let p: Vec<&str> = line.split('\u{1f}').collect();
            if p.len() == 5 {
                commits.push(json!({
                    "id": p[0], "tree_id": p[0], "distinct": true, "message": p[1], "timestamp": p[4],
                    "url": format!("{base}/{owner}/{name}/commit/{}", p[0]),
                    "author": {"name": p[2], "email": p[3], "username": u.login}, "committer": {"name": p[2], "email": p[3], "username": u.login},
                    "added": [], "removed": [], "modified": [],
                }));
            }
        }
    }
    let head_commit = commits.last().cloned().unwrap_or(Value::Null);
    let mut repo = repo_json.clone();
    // Push payloads carry the repository with `pushed_at` and `created_at` as Unix timestamps.
    let ts = chrono::Utc::now().timestamp();
    repo["pushed_at"] = json!(ts);
    repo["created_at"] = json!(ts);
    repo["master_branch"] = repo["default_branch"].clone();
    repo["stargazers"] = json!(0);
    json!({
        "ref": r, "before": old.unwrap_or(ZERO), "after": new.unwrap_or(ZERO),
        "created": old.is_none(), "deleted": new.is_none(), "forced": false, "base_ref": null,
        "compare": format!("{base}/{owner}/{name}/compare/{}...{}", &old.unwrap_or(ZERO)[..12], &new.unwrap_or(ZERO)[..12]),
        "commits": commits, "head_commit": head_commit, "repository": repo,
        "pusher": {"name": u.login, "email": u.email}, "sender": sender,
    })
}
