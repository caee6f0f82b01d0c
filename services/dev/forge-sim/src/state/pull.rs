//! The pull-request part of an issue, with its reviews and review comments. Plain data; the
//! endpoints and GitHub's shapes of them live in `api::pulls`.

/// The pull-request part of an issue.
#[derive(Debug, Clone)]
pub struct Pull {
    pub head: String,
    pub base: String,
    pub head_sha: String,
    pub draft: bool,
    pub merged: bool,
    pub reviews: Vec<ReviewRec>,
    pub review_comments: Vec<ReviewCommentRec>,
}

#[derive(Debug, Clone)]
pub struct ReviewRec {
    pub id: i64,
    pub user: String,
    pub state: String,
    pub body: String,
    pub submitted_at: String,
}

#[derive(Debug, Clone)]
pub struct ReviewCommentRec {
    pub id: i64,
    pub review_id: i64,
    pub user: String,
    pub body: String,
    pub path: String,
    pub line: i64,
    pub created_at: String,
    /// The comment this one answers (a reply in the same thread).
    pub in_reply_to: Option<i64>,
}
