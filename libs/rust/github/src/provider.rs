//! `RepositoryProvider` on the GitHub REST API: each operation is one endpoint (or a lookup and a
//! write for the `ensure_*` ones), decoded into the domain's types from GitHub's published shapes.

use crate::{Github, seg};
use ck8s_domain::forge::{
    Comment, DeliveredRequest, DeliveryFilter, Hook, HookDelivery, HookSpec, Issue, Label, NewPullRequest, NewReview, Permission,
    ProviderError, ProviderResult, PullRequest, PullRequestUpdate, ReactionTarget, RepoRef, Repository, RepositoryProvider, Review,
    ReviewComment,
};
use ck8s_domain::runtime::BoxFuture;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

/// Pages followed at most for one list (100 items each).
const MAX_PAGES: usize = 50;

/// The GitHub repository provider.
#[derive(Clone)]
pub struct GithubProvider {
    gh: Github,
}

impl GithubProvider {
    pub fn new(gh: Github) -> Self {
        Self { gh }
    }
}

fn repo_path(r: &RepoRef) -> String {
    format!("/repos/{}/{}", seg(&r.owner), seg(&r.name))
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Deserialize)]
struct RawRepo {
    id: i64,
    full_name: String,
    default_branch: Option<String>,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    clone_url: String,
    #[serde(default)]
    html_url: String,
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
    #[serde(default)]
    color: String,
    description: Option<String>,
}

impl From<RawLabel> for Label {
    fn from(l: RawLabel) -> Self {
        Label { name: l.name, color: l.color, description: l.description }
    }
}

#[derive(Deserialize)]
struct RawIssue {
    number: i64,
    title: String,
    body: Option<String>,
    state: String,
    #[serde(default)]
    labels: Vec<RawLabel>,
    user: Option<RawUser>,
    #[serde(default)]
    html_url: String,
    pull_request: Option<Value>,
}

#[derive(Deserialize)]
struct RawComment {
    id: i64,
    body: Option<String>,
    user: Option<RawUser>,
    #[serde(default)]
    html_url: String,
}

impl From<RawComment> for Comment {
    fn from(c: RawComment) -> Self {
        Comment { id: c.id, body: c.body.unwrap_or_default(), author: c.user.map(|u| u.login).unwrap_or_default(), html_url: c.html_url }
    }
}

#[derive(Deserialize)]
struct RawRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
    repo: Option<RawRefRepo>,
}

#[derive(Deserialize)]
struct RawRefRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct RawPull {
    number: i64,
    title: String,
    body: Option<String>,
    state: String,
    #[serde(default)]
    merged: bool,
    merged_at: Option<String>,
    #[serde(default)]
    draft: bool,
    head: RawRef,
    base: RawRef,
    #[serde(default)]
    html_url: String,
    user: Option<RawUser>,
}

impl From<RawPull> for PullRequest {
    fn from(p: RawPull) -> Self {
        PullRequest {
            number: p.number,
            title: p.title,
            body: p.body,
            state: p.state,
            merged: p.merged || p.merged_at.is_some(),
            draft: p.draft,
            head_ref: p.head.name,
            head_sha: p.head.sha,
            head_repo: p.head.repo.map(|r| r.full_name),
            base_ref: p.base.name,
            html_url: p.html_url,
            author: p.user.map(|u| u.login).unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct RawReview {
    id: i64,
    user: Option<RawUser>,
    state: String,
    body: Option<String>,
}

impl From<RawReview> for Review {
    fn from(r: RawReview) -> Self {
        Review { id: r.id, author: r.user.map(|u| u.login).unwrap_or_default(), state: r.state, body: r.body.filter(|b| !b.is_empty()) }
    }
}

#[derive(Deserialize)]
struct RawReviewComment {
    id: i64,
    user: Option<RawUser>,
    body: String,
    path: String,
    line: Option<i64>,
    in_reply_to_id: Option<i64>,
}

#[derive(Deserialize)]
struct RawContent {
    #[serde(rename = "type")]
    kind: String,
    encoding: Option<String>,
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawHookConfig {
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawHook {
    id: i64,
    config: RawHookConfig,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    active: bool,
}

impl From<RawHook> for Hook {
    fn from(h: RawHook) -> Self {
        Hook { id: h.id, url: h.config.url.unwrap_or_default(), events: h.events, active: h.active }
    }
}

#[derive(Deserialize)]
struct RawDelivery {
    id: i64,
    guid: String,
    event: String,
    action: Option<String>,
    status_code: i64,
    #[serde(default)]
    redelivery: bool,
    #[serde(default)]
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<RawDelivery> for HookDelivery {
    fn from(d: RawDelivery) -> Self {
        HookDelivery {
            id: d.id,
            guid: d.guid,
            event: d.event,
            action: d.action,
            status_code: d.status_code,
            redelivery: d.redelivery,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Deserialize)]
struct RawDeliveryRequest {
    #[serde(default)]
    payload: Value,
}

#[derive(Deserialize)]
struct RawDeliveryWithRequest {
    #[serde(flatten)]
    delivery: RawDelivery,
    request: RawDeliveryRequest,
}

#[derive(Deserialize)]
struct RawPermission {
    permission: String,
}

fn decode_base64(s: &str) -> Result<Vec<u8>, ProviderError> {
    use base64::Engine;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| ProviderError::Unexpected(format!("file content is not base64: {e}")))
}

type NoBody = Option<&'static Value>;

impl From<RawReviewComment> for ReviewComment {
    fn from(c: RawReviewComment) -> Self {
        ReviewComment {
            id: c.id,
            author: c.user.map(|u| u.login).unwrap_or_default(),
            body: c.body,
            path: c.path,
            line: c.line,
            in_reply_to: c.in_reply_to_id,
        }
    }
}

impl RepositoryProvider for GithubProvider {
    fn repository<'a>(&'a self, repo: &'a RepoRef) -> BoxFuture<'a, ProviderResult<Repository>> {
        Box::pin(async move {
            let r: RawRepo = self.gh.json(Method::GET, &repo_path(repo), None::<&Value>).await?;
            Ok(Repository {
                id: r.id,
                full_name: r.full_name,
                default_branch: r.default_branch.unwrap_or_else(|| "main".into()),
                private: r.private,
                clone_url: r.clone_url,
                html_url: r.html_url,
            })
        })
    }

    fn list_labels<'a>(&'a self, repo: &'a RepoRef) -> BoxFuture<'a, ProviderResult<Vec<Label>>> {
        Box::pin(async move {
            let raw: Vec<RawLabel> = self.gh.all(&format!("{}/labels", repo_path(repo)), MAX_PAGES).await?;
            Ok(raw.into_iter().map(Label::from).collect())
        })
    }

    fn ensure_label<'a>(&'a self, repo: &'a RepoRef, label: &'a Label) -> BoxFuture<'a, ProviderResult<Label>> {
        Box::pin(async move {
            let path = format!("{}/labels/{}", repo_path(repo), seg(&label.name));
            let body = json!({"name": label.name, "color": label.color, "description": label.description});
            match self.gh.json::<RawLabel, _>(Method::GET, &path, NoBody::None).await {
                Ok(existing) => {
                    let same = existing.color.eq_ignore_ascii_case(&label.color) && existing.description == label.description;
                    if same {
                        return Ok(existing.into());
                    }
                    let patch = json!({"new_name": label.name, "color": label.color, "description": label.description});
                    Ok(self.gh.json::<RawLabel, _>(Method::PATCH, &path, Some(&patch)).await?.into())
                }
                Err(ProviderError::NotFound(_)) => {
                    match self.gh.json::<RawLabel, _>(Method::POST, &format!("{}/labels", repo_path(repo)), Some(&body)).await {
                        Ok(l) => Ok(l.into()),
                        // Created meanwhile by someone else: read it back.
                        Err(ProviderError::Validation(m)) if m.contains("already_exists") => {
                            Ok(self.gh.json::<RawLabel, _>(Method::GET, &path, NoBody::None).await?.into())
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    fn delete_label<'a>(&'a self, repo: &'a RepoRef, name: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            match self.gh.call(Method::DELETE, &format!("{}/labels/{}", repo_path(repo), seg(name)), NoBody::None).await {
                Err(ProviderError::NotFound(_)) => Ok(()),
                other => other,
            }
        })
    }

    fn issue<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Issue>> {
        Box::pin(async move {
            let i: RawIssue = self.gh.json(Method::GET, &format!("{}/issues/{number}", repo_path(repo)), NoBody::None).await?;
            Ok(Issue {
                number: i.number,
                title: i.title,
                body: i.body,
                state: i.state,
                labels: i.labels.into_iter().map(|l| l.name).collect(),
                author: i.user.map(|u| u.login).unwrap_or_default(),
                html_url: i.html_url,
                is_pull_request: i.pull_request.is_some(),
            })
        })
    }

    fn list_comments<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<Comment>>> {
        Box::pin(async move {
            let raw: Vec<RawComment> = self.gh.all(&format!("{}/issues/{number}/comments", repo_path(repo)), MAX_PAGES).await?;
            Ok(raw.into_iter().map(Comment::from).collect())
        })
    }

    fn create_comment<'a>(&'a self, repo: &'a RepoRef, number: i64, body: &'a str) -> BoxFuture<'a, ProviderResult<Comment>> {
        Box::pin(async move {
            let c: RawComment =
                self.gh.json(Method::POST, &format!("{}/issues/{number}/comments", repo_path(repo)), Some(&json!({"body": body}))).await?;
            Ok(c.into())
        })
    }

    fn update_comment<'a>(&'a self, repo: &'a RepoRef, comment_id: i64, body: &'a str) -> BoxFuture<'a, ProviderResult<Comment>> {
        Box::pin(async move {
            let c: RawComment = self
                .gh
                .json(Method::PATCH, &format!("{}/issues/comments/{comment_id}", repo_path(repo)), Some(&json!({"body": body})))
                .await?;
            Ok(c.into())
        })
    }

    fn add_reaction<'a>(&'a self, repo: &'a RepoRef, target: ReactionTarget, content: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            let path = match target {
                ReactionTarget::Issue(n) => format!("{}/issues/{n}/reactions", repo_path(repo)),
                ReactionTarget::Comment(id) => format!("{}/issues/comments/{id}/reactions", repo_path(repo)),
            };
            self.gh.call(Method::POST, &path, Some(&json!({"content": content}))).await
        })
    }

    fn issue_labels<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<String>>> {
        Box::pin(async move {
            let raw: Vec<RawLabel> = self.gh.all(&format!("{}/issues/{number}/labels", repo_path(repo)), MAX_PAGES).await?;
            Ok(raw.into_iter().map(|l| l.name).collect())
        })
    }

    fn add_labels<'a>(&'a self, repo: &'a RepoRef, number: i64, labels: &'a [String]) -> BoxFuture<'a, ProviderResult<Vec<String>>> {
        Box::pin(async move {
            let raw: Vec<RawLabel> = self
                .gh
                .json(Method::POST, &format!("{}/issues/{number}/labels", repo_path(repo)), Some(&json!({"labels": labels})))
                .await?;
            Ok(raw.into_iter().map(|l| l.name).collect())
        })
    }

    fn remove_label<'a>(&'a self, repo: &'a RepoRef, number: i64, name: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            match self.gh.call(Method::DELETE, &format!("{}/issues/{number}/labels/{}", repo_path(repo), seg(name)), NoBody::None).await {
                Err(ProviderError::NotFound(_)) => Ok(()),
                other => other,
            }
        })
    }

    fn create_pull<'a>(&'a self, repo: &'a RepoRef, pr: &'a NewPullRequest) -> BoxFuture<'a, ProviderResult<PullRequest>> {
        Box::pin(async move {
            let body = json!({"title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base, "draft": pr.draft});
            let p: RawPull = self.gh.json(Method::POST, &format!("{}/pulls", repo_path(repo)), Some(&body)).await?;
            Ok(p.into())
        })
    }

    fn update_pull<'a>(
        &'a self,
        repo: &'a RepoRef,
        number: i64,
        update: &'a PullRequestUpdate,
    ) -> BoxFuture<'a, ProviderResult<PullRequest>> {
        Box::pin(async move {
            let mut body = serde_json::Map::new();
            if let Some(t) = &update.title {
                body.insert("title".into(), json!(t));
            }
            if let Some(b) = &update.body {
                body.insert("body".into(), json!(b));
            }
            if let Some(s) = &update.state {
                body.insert("state".into(), json!(s));
            }
            let p: RawPull =
                self.gh.json(Method::PATCH, &format!("{}/pulls/{number}", repo_path(repo)), Some(&Value::Object(body))).await?;
            Ok(p.into())
        })
    }

    fn pull<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<PullRequest>> {
        Box::pin(async move {
            let p: RawPull = self.gh.json(Method::GET, &format!("{}/pulls/{number}", repo_path(repo)), NoBody::None).await?;
            Ok(p.into())
        })
    }

    fn find_pull_by_head<'a>(&'a self, repo: &'a RepoRef, branch: &'a str) -> BoxFuture<'a, ProviderResult<Option<PullRequest>>> {
        Box::pin(async move {
            let head = seg(&format!("{}:{branch}", repo.owner));
            let raw: Vec<RawPull> = self.gh.all(&format!("{}/pulls?state=open&head={head}", repo_path(repo)), 1).await?;
            Ok(raw.into_iter().map(PullRequest::from).find(|p| p.head_ref == branch))
        })
    }

    fn list_reviews<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<Review>>> {
        Box::pin(async move {
            let raw: Vec<RawReview> = self.gh.all(&format!("{}/pulls/{number}/reviews", repo_path(repo)), MAX_PAGES).await?;
            Ok(raw.into_iter().map(Review::from).collect())
        })
    }

    fn list_review_comments<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<ReviewComment>>> {
        Box::pin(async move {
            let raw: Vec<RawReviewComment> = self.gh.all(&format!("{}/pulls/{number}/comments", repo_path(repo)), MAX_PAGES).await?;
            Ok(raw.into_iter().map(ReviewComment::from).collect())
        })
    }

    fn create_review<'a>(&'a self, repo: &'a RepoRef, number: i64, review: &'a NewReview) -> BoxFuture<'a, ProviderResult<Review>> {
        Box::pin(async move {
            let comments: Vec<Value> =
                review.comments.iter().map(|c| json!({"path": c.path, "line": c.line, "side": "RIGHT", "body": c.body})).collect();
            let body = json!({"body": review.body, "event": review.event.as_str(), "comments": comments});
            let r: RawReview = self.gh.json(Method::POST, &format!("{}/pulls/{number}/reviews", repo_path(repo)), Some(&body)).await?;
            Ok(r.into())
        })
    }

    fn reply_to_review_comment<'a>(
        &'a self,
        repo: &'a RepoRef,
        number: i64,
        comment_id: i64,
        body: &'a str,
    ) -> BoxFuture<'a, ProviderResult<ReviewComment>> {
        Box::pin(async move {
            let uri = format!("{}/pulls/{number}/comments/{comment_id}/replies", repo_path(repo));
            let c: RawReviewComment = self.gh.json(Method::POST, &uri, Some(&json!({"body": body}))).await?;
            Ok(c.into())
        })
    }

    fn file<'a>(&'a self, repo: &'a RepoRef, path: &'a str, git_ref: &'a str) -> BoxFuture<'a, ProviderResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let encoded: Vec<String> = path.split('/').filter(|p| !p.is_empty()).map(seg).collect();
            let uri = format!("{}/contents/{}?ref={}", repo_path(repo), encoded.join("/"), seg(git_ref));
            match self.gh.json::<Value, _>(Method::GET, &uri, NoBody::None).await {
                Ok(v) if v.is_array() => Err(ProviderError::Validation(format!("{path} is a directory"))),
                Ok(v) => {
                    let c: RawContent =
                        serde_json::from_value(v).map_err(|e| ProviderError::Unexpected(format!("contents of {path}: {e}")))?;
                    if c.kind != "file" {
                        return Err(ProviderError::Validation(format!("{path} is a {}", c.kind)));
                    }
                    match (c.encoding.as_deref(), c.content) {
                        (Some("base64"), Some(content)) => Ok(Some(decode_base64(&content)?)),
                        (enc, _) => Err(ProviderError::Unexpected(format!("contents of {path} in encoding {enc:?}"))),
                    }
                }
                Err(ProviderError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn ensure_webhook<'a>(&'a self, repo: &'a RepoRef, spec: &'a HookSpec) -> BoxFuture<'a, ProviderResult<Hook>> {
        Box::pin(async move {
            let body = json!({
                "name": "web", "active": true, "events": spec.events,
                "config": {"url": spec.url, "content_type": "json", "secret": spec.secret, "insecure_ssl": "0"},
            });
            match self.find_webhook(repo, &spec.url).await? {
                Some(h) => {
                    Ok(self.gh.json::<RawHook, _>(Method::PATCH, &format!("{}/hooks/{}", repo_path(repo), h.id), Some(&body)).await?.into())
                }
                None => Ok(self.gh.json::<RawHook, _>(Method::POST, &format!("{}/hooks", repo_path(repo)), Some(&body)).await?.into()),
            }
        })
    }

    fn find_webhook<'a>(&'a self, repo: &'a RepoRef, url: &'a str) -> BoxFuture<'a, ProviderResult<Option<Hook>>> {
        Box::pin(async move {
            let hooks: Vec<RawHook> = self.gh.all(&format!("{}/hooks", repo_path(repo)), MAX_PAGES).await?;
            Ok(hooks.into_iter().find(|h| h.config.url.as_deref() == Some(url)).map(Hook::from))
        })
    }

    fn delete_webhook<'a>(&'a self, repo: &'a RepoRef, hook_id: i64) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            match self.gh.call(Method::DELETE, &format!("{}/hooks/{hook_id}", repo_path(repo)), NoBody::None).await {
                Err(ProviderError::NotFound(_)) => Ok(()),
                other => other,
            }
        })
    }

    fn list_deliveries<'a>(
        &'a self,
        repo: &'a RepoRef,
        hook_id: i64,
        filter: DeliveryFilter,
        limit: usize,
    ) -> BoxFuture<'a, ProviderResult<Vec<HookDelivery>>> {
        Box::pin(async move {
            let status = match filter {
                DeliveryFilter::All => "",
                DeliveryFilter::Failed => "?status=failure",
            };
            let uri = format!("{}/hooks/{hook_id}/deliveries{status}", repo_path(repo));
            let raw: Vec<RawDelivery> = if limit <= 100 {
                let sep = if status.is_empty() { '?' } else { '&' };
                self.gh.json(Method::GET, &format!("{uri}{sep}per_page={}", limit.max(1)), NoBody::None).await?
            } else {
                // Pages of 100 through GitHub's cursor links, as many as the limit needs.
                self.gh.all(&uri, limit.div_ceil(100)).await?
            };
            Ok(raw.into_iter().take(limit).map(HookDelivery::from).collect())
        })
    }

    fn delivery<'a>(&'a self, repo: &'a RepoRef, hook_id: i64, delivery_id: i64) -> BoxFuture<'a, ProviderResult<DeliveredRequest>> {
        Box::pin(async move {
            let uri = format!("{}/hooks/{hook_id}/deliveries/{delivery_id}", repo_path(repo));
            let raw: RawDeliveryWithRequest = self.gh.json(Method::GET, &uri, NoBody::None).await?;
            if !raw.request.payload.is_object() {
                return Err(ProviderError::Unexpected(format!("delivery {delivery_id} of hook {hook_id} carries no payload")));
            }
            Ok(DeliveredRequest { delivery: raw.delivery.into(), payload: raw.request.payload })
        })
    }

    fn redeliver<'a>(&'a self, repo: &'a RepoRef, hook_id: i64, delivery_id: i64) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            self.gh
                .call(Method::POST, &format!("{}/hooks/{hook_id}/deliveries/{delivery_id}/attempts", repo_path(repo)), NoBody::None)
                .await
        })
    }

    fn permission<'a>(&'a self, repo: &'a RepoRef, user: &'a str) -> BoxFuture<'a, ProviderResult<Permission>> {
        Box::pin(async move {
            let p: RawPermission =
                self.gh.json(Method::GET, &format!("{}/collaborators/{}/permission", repo_path(repo), seg(user)), NoBody::None).await?;
            Ok(Permission::parse(&p.permission))
        })
    }
}
