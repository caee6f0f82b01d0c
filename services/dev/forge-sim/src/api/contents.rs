//! File contents (`GET /repos/{o}/{r}/contents/{path}?ref=`): what was pushed to the repository's
//! git repository, else the files set through `/_sim/repos/{o}/{r}/files`.

use crate::api::repo_or_404;
use crate::auth::Authenticated;
use crate::http::{error, lock, respond};
use crate::state::Shared;
use crate::state::bare::git_out;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

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
        git_out(&f.git_dir(&repo.owner, &repo.name), &["cat-file", "blob", &format!("{git_ref}:{path}")])
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
