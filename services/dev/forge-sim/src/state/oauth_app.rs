//! What GitHub's OAuth web flow keeps: registered OAuth apps and the codes waiting to be exchanged
//! for a token. Plain data; the flow lives in `oauth`.

use serde::Deserialize;
use std::time::Instant;

/// A registered OAuth app (also the body of `POST /_sim/oauth-apps`).
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

/// A code waiting to be exchanged.
#[derive(Debug, Clone)]
pub struct Grant {
    pub client_id: String,
    pub login: String,
    pub scope: String,
    pub redirect_uri: String,
    pub issued: Instant,
}
