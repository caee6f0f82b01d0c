//! What the test controls keep: the injected faults and the recorded API answers. Plain data; the
//! `/_sim` endpoints and the middleware that applies and records them live in `sim`.

use serde::Deserialize;
use serde_json::Value;

/// The injected faults (also the body of `POST /_sim/faults`).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub outage: u32,
    #[serde(default)]
    pub rate_limit: u32,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub primary_reset_in: Option<u64>,
    #[serde(default)]
    pub comment_list_lag_ms: u64,
}

/// One recorded API answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub body: Value,
}
