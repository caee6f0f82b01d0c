//! The repository-provider port (product spec §6, §7, §9.2): everything codex-k8s does on a
//! forge goes through `RepositoryProvider`. GitHub is the first adapter (`ck8s-github`, also
//! pointed at forge-sim in development and tests); GitLab will be a second one. Errors are typed
//! so callers can tell a missing object from a refusal, a rate limit, a validation failure and a
//! transient outage, and retry only what is worth retrying.

use crate::runtime::BoxFuture;
use std::time::Duration;

/// `owner/name` of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self { owner: owner.into(), name: name.into() }
    }

    /// Parses `owner/name`.
    pub fn parse(full_name: &str) -> Option<Self> {
        let (o, n) = full_name.split_once('/')?;
        (!o.is_empty() && !n.is_empty() && !n.contains('/')).then(|| Self::new(o, n))
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// A repository as the provider describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub id: i64,
    pub full_name: String,
    pub default_branch: String,
    pub private: bool,
    pub clone_url: String,
    pub html_url: String,
}

/// A repository label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub name: String,
    /// Six hex digits, no `#`.
    pub color: String,
    pub description: Option<String>,
}

/// An issue (pull requests are issues too, with `is_pull_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: i64,
    pub title: String,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    pub labels: Vec<String>,
    pub author: String,
    pub html_url: String,
    pub is_pull_request: bool,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: i64,
    pub body: String,
    pub author: String,
    pub html_url: String,
}

/// What a reaction is put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionTarget {
    Issue(i64),
    Comment(i64),
}

/// The reactions a forge offers (GitHub's eight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReactionContent {
    #[serde(rename = "+1")]
    PlusOne,
    #[serde(rename = "-1")]
    MinusOne,
    #[serde(rename = "laugh")]
    Laugh,
    #[serde(rename = "confused")]
    Confused,
    #[serde(rename = "heart")]
    Heart,
    #[serde(rename = "hooray")]
    Hooray,
    #[serde(rename = "rocket")]
    Rocket,
    #[serde(rename = "eyes")]
    Eyes,
}

impl ReactionContent {
    /// The wire value (`+1`, `eyes`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReactionContent::PlusOne => "+1",
            ReactionContent::MinusOne => "-1",
            ReactionContent::Laugh => "laugh",
            ReactionContent::Confused => "confused",
            ReactionContent::Heart => "heart",
            ReactionContent::Hooray => "hooray",
            ReactionContent::Rocket => "rocket",
            ReactionContent::Eyes => "eyes",
        }
    }
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: i64,
    pub title: String,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub draft: bool,
    pub head_ref: String,
    pub head_sha: String,
    /// `owner/name` of the repository the head branch lives in (a fork's for a fork's pull
    /// request); `None` when that repository is gone.
    pub head_repo: Option<String>,
    pub base_ref: String,
    pub html_url: String,
    /// Login of the user who opened it.
    pub author: String,
}

/// A pull request to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    pub body: String,
    /// Branch name in the same repository.
    pub head: String,
    pub base: String,
    pub draft: bool,
}

/// Changes to a pull request; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequestUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
}

/// A submitted review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: i64,
    pub author: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`, `PENDING`.
    pub state: String,
    pub body: Option<String>,
}

/// A line comment of a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewComment {
    pub id: i64,
    pub author: String,
    pub body: String,
    pub path: String,
    pub line: Option<i64>,
    pub in_reply_to: Option<i64>,
}

/// The verdict of a review to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewEvent {
    Comment,
    Approve,
    RequestChanges,
}

impl ReviewEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewEvent::Comment => "COMMENT",
            ReviewEvent::Approve => "APPROVE",
            ReviewEvent::RequestChanges => "REQUEST_CHANGES",
        }
    }
}

/// A comment on one line of the new version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineComment {
    pub path: String,
    pub line: i64,
    pub body: String,
}

/// A review to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    pub body: String,
    pub event: ReviewEvent,
    pub comments: Vec<LineComment>,
}

/// The webhook the platform wants on a repository.
#[derive(Clone, PartialEq, Eq)]
pub struct HookSpec {
    pub url: String,
    /// The signing secret (never printed).
    pub secret: String,
    pub events: Vec<String>,
}

impl std::fmt::Debug for HookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSpec").field("url", &self.url).field("secret", &"<redacted>").field("events", &self.events).finish()
    }
}

/// A repository webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
}

/// One recent delivery of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDelivery {
    pub id: i64,
    /// `X-GitHub-Delivery`.
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub status_code: i64,
    pub redelivery: bool,
    /// When the forge made this attempt (absent if it did not say).
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which deliveries of a webhook to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFilter {
    All,
    /// Those the receiver did not accept with a 2xx (GitHub's `status=failure`).
    Failed,
}

/// One delivery with the request the forge sent: the event's payload as it was delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredRequest {
    pub delivery: HookDelivery,
    /// The webhook payload (GitHub returns it as a JSON object).
    pub payload: serde_json::Value,
}

/// A user's permission on a repository, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// GitHub's `permission`/`role_name` value.
    pub fn parse(s: &str) -> Self {
        match s {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            _ => Permission::None,
        }
    }
}

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The object does not exist (or the token may not see it).
    #[error("not found: {0}")]
    NotFound(String),
    /// The token is missing, expired or revoked.
    #[error("unauthorized: {0}; check the bot token")]
    Unauthorized(String),
    /// The token may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A primary or secondary rate limit held longer than the adapter may wait.
    #[error("rate limited: {message}; retry after {retry_after:?}")]
    RateLimited { message: String, retry_after: Option<Duration> },
    /// The request was refused as invalid (422).
    #[error("validation failed: {0}")]
    Validation(String),
    /// A server error, a timeout or an unreachable provider: worth retrying later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// An answer the adapter cannot use (unexpected shape).
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

impl ProviderError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::RateLimited { .. } | ProviderError::Transient(_))
    }
}

/// Result of a provider call.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// A forge hosting the projects' repositories.
pub trait RepositoryProvider: Send + Sync {
    /// The repository, which validates that it exists and the token may see it.
    fn repository<'a>(&'a self, repo: &'a RepoRef) -> BoxFuture<'a, ProviderResult<Repository>>;

    /// Every label of the repository.
    fn list_labels<'a>(&'a self, repo: &'a RepoRef) -> BoxFuture<'a, ProviderResult<Vec<Label>>>;
    /// Creates the label, or updates its colour and description when it exists.
    fn ensure_label<'a>(&'a self, repo: &'a RepoRef, label: &'a Label) -> BoxFuture<'a, ProviderResult<Label>>;
    /// Deletes a label; a missing label is not an error.
    fn delete_label<'a>(&'a self, repo: &'a RepoRef, name: &'a str) -> BoxFuture<'a, ProviderResult<()>>;

    fn issue<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Issue>>;
    /// Every comment of an issue or pull request, oldest first.
    fn list_comments<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<Comment>>>;
    fn create_comment<'a>(&'a self, repo: &'a RepoRef, number: i64, body: &'a str) -> BoxFuture<'a, ProviderResult<Comment>>;
    fn update_comment<'a>(&'a self, repo: &'a RepoRef, comment_id: i64, body: &'a str) -> BoxFuture<'a, ProviderResult<Comment>>;
    /// Adds a reaction (`+1`, `eyes`, ...); reacting twice is not an error.
    fn add_reaction<'a>(&'a self, repo: &'a RepoRef, target: ReactionTarget, content: &'a str) -> BoxFuture<'a, ProviderResult<()>>;

    /// Labels of an issue or pull request.
    fn issue_labels<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<String>>>;
    /// Adds labels to an issue or pull request; returns its labels afterwards.
    fn add_labels<'a>(&'a self, repo: &'a RepoRef, number: i64, labels: &'a [String]) -> BoxFuture<'a, ProviderResult<Vec<String>>>;
    /// Removes a label; a label that is not there is not an error.
    fn remove_label<'a>(&'a self, repo: &'a RepoRef, number: i64, name: &'a str) -> BoxFuture<'a, ProviderResult<()>>;

    fn create_pull<'a>(&'a self, repo: &'a RepoRef, pr: &'a NewPullRequest) -> BoxFuture<'a, ProviderResult<PullRequest>>;
    fn update_pull<'a>(
        &'a self,
        repo: &'a RepoRef,
        number: i64,
        update: &'a PullRequestUpdate,
    ) -> BoxFuture<'a, ProviderResult<PullRequest>>;
    fn pull<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<PullRequest>>;
    /// The open pull request whose head is `branch` of this repository, if any.
    fn find_pull_by_head<'a>(&'a self, repo: &'a RepoRef, branch: &'a str) -> BoxFuture<'a, ProviderResult<Option<PullRequest>>>;

    fn list_reviews<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<Review>>>;
    fn list_review_comments<'a>(&'a self, repo: &'a RepoRef, number: i64) -> BoxFuture<'a, ProviderResult<Vec<ReviewComment>>>;
    fn create_review<'a>(&'a self, repo: &'a RepoRef, number: i64, review: &'a NewReview) -> BoxFuture<'a, ProviderResult<Review>>;
    /// Answers a top-level review comment in its thread.
    fn reply_to_review_comment<'a>(
        &'a self,
        repo: &'a RepoRef,
        number: i64,
        comment_id: i64,
        body: &'a str,
    ) -> BoxFuture<'a, ProviderResult<ReviewComment>>;

    /// A file's bytes at a ref (branch, tag or commit); `None` when the path does not exist.
    fn file<'a>(&'a self, repo: &'a RepoRef, path: &'a str, git_ref: &'a str) -> BoxFuture<'a, ProviderResult<Option<Vec<u8>>>>;

    /// Creates the webhook, or updates the one with the same URL.
    fn ensure_webhook<'a>(&'a self, repo: &'a RepoRef, spec: &'a HookSpec) -> BoxFuture<'a, ProviderResult<Hook>>;
    /// The repository's webhook that delivers to `url`, if there is one (read-only).
    fn find_webhook<'a>(&'a self, repo: &'a RepoRef, url: &'a str) -> BoxFuture<'a, ProviderResult<Option<Hook>>>;
    /// Deletes a webhook; a missing one is not an error.
    fn delete_webhook<'a>(&'a self, repo: &'a RepoRef, hook_id: i64) -> BoxFuture<'a, ProviderResult<()>>;
    /// The most recent deliveries of a webhook, newest first, at most `limit`.
    fn list_deliveries<'a>(
        &'a self,
        repo: &'a RepoRef,
        hook_id: i64,
        filter: DeliveryFilter,
        limit: usize,
    ) -> BoxFuture<'a, ProviderResult<Vec<HookDelivery>>>;
    /// One delivery of a webhook with its payload.
    fn delivery<'a>(&'a self, repo: &'a RepoRef, hook_id: i64, delivery_id: i64) -> BoxFuture<'a, ProviderResult<DeliveredRequest>>;
    /// Asks the provider to deliver a past delivery again.
    fn redeliver<'a>(&'a self, repo: &'a RepoRef, hook_id: i64, delivery_id: i64) -> BoxFuture<'a, ProviderResult<()>>;

    /// A user's permission on the repository.
    fn permission<'a>(&'a self, repo: &'a RepoRef, user: &'a str) -> BoxFuture<'a, ProviderResult<Permission>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_refs_parse_only_owner_slash_name() {
        assert_eq!(RepoRef::parse("acme/app"), Some(RepoRef::new("acme", "app")));
        for bad in ["acme", "/app", "acme/", "a/b/c", ""] {
            assert_eq!(RepoRef::parse(bad), None, "{bad}");
        }
        assert_eq!(RepoRef::new("acme", "app").full_name(), "acme/app");
    }

    #[test]
    fn permissions_order_and_parse_github_names() {
        assert!(Permission::Admin > Permission::Write && Permission::Write > Permission::Read);
        assert_eq!(Permission::parse("push"), Permission::Write);
        assert_eq!(Permission::parse("maintain"), Permission::Maintain);
        assert_eq!(Permission::parse("weird"), Permission::None);
    }

    #[test]
    fn only_rate_limits_and_transient_failures_are_retryable() {
        assert!(ProviderError::Transient("503".into()).is_retryable());
        assert!(ProviderError::RateLimited { message: "x".into(), retry_after: None }.is_retryable());
        for e in [ProviderError::NotFound("x".into()), ProviderError::Validation("x".into()), ProviderError::Forbidden("x".into())] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn hook_specs_never_print_their_secret() {
        let s = HookSpec { url: "https://x".into(), secret: "hunter2-secret".into(), events: vec![] };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
