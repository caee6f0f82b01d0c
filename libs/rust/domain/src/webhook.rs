//! The parts of a repository-provider webhook the trigger policy looks at, independent of the
//! wire format (the GitHub JSON is mapped onto these types at the edge).

/// Who sent the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sender {
    pub id: i64,
    pub login: String,
    /// `User`, `Bot`, `Organization`, ...
    pub kind: String,
}

/// The repository the delivery is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repo {
    pub id: i64,
    pub full_name: String,
    pub default_branch: Option<String>,
}

/// An issue (or the issue side of a pull request).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Issue {
    pub number: i64,
    pub labels: Vec<String>,
    /// The "issue" is a pull request (issue events and comments on PRs).
    pub is_pull_request: bool,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullRequest {
    pub number: i64,
    pub labels: Vec<String>,
    pub head_ref: String,
    pub head_sha: String,
    pub state: String,
    /// `updated_at` as sent (part of the derived reviewer correlation id).
    pub updated_at: String,
}

/// A push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    pub git_ref: String,
    pub after: String,
    pub deleted: bool,
}

/// One delivery, reduced to what the policy needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub delivery_id: String,
    /// `X-GitHub-Event`: `issues`, `issue_comment`, `pull_request`, ...
    pub name: String,
    pub action: Option<String>,
    pub repository: Option<Repo>,
    pub sender: Option<Sender>,
    /// The label added or removed by a `labeled`/`unlabeled` action.
    pub label: Option<String>,
    pub issue: Option<Issue>,
    pub pull_request: Option<PullRequest>,
    /// `pull_request_review`: the review state (`approved`, `changes_requested`, `commented`).
    pub review_state: Option<String>,
    /// `issue_comment`: the comment id and author login.
    pub comment_id: Option<i64>,
    pub comment_author: Option<String>,
    pub push: Option<Push>,
}

impl Event {
    /// Whether the action is `a`.
    pub fn action_is(&self, a: &str) -> bool {
        self.action.as_deref() == Some(a)
    }
}
