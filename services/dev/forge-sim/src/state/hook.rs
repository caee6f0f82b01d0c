//! Repository webhooks as the forge keeps them: a registered hook, and one recorded delivery
//! attempt. Plain data; registration and delivery live in `api::hooks` and `webhooks`.

/// A registered hook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub id: i64,
    pub repo_key: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub active: bool,
    pub created_at: String,
}

/// One delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Numeric id (GitHub's `id`, used to ask for a redelivery).
    pub id: i64,
    /// `X-GitHub-Delivery` (a redelivery keeps the original's).
    pub guid: String,
    pub hook_id: i64,
    /// The hook's URL when it was delivered.
    pub url: String,
    pub event: String,
    pub action: Option<String>,
    pub status: u16,
    pub redelivery: bool,
    pub delivered_at: String,
    pub duration: f64,
    pub body: Vec<u8>,
}
