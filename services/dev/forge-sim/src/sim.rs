//! Test controls of forge-sim, outside GitHub's API (`/_sim/*`):
//!
//! - **Faults** (`POST /_sim/faults`): the next `outage` API requests answer 503; the next
//!   `rate_limit` requests answer 403 with `Retry-After: retry_after` (a secondary limit) or, when
//!   `primary_reset_in` is given, with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` that many
//!   seconds ahead (an exhausted primary limit); comments younger than `comment_list_lag_ms`
//!   are left out of comment lists, as GitHub's eventually consistent lists do.
//! - **Exchanges** (`GET /_sim/exchanges`): every API answer (method, route template, status,
//!   JSON body), so tests can validate forge-sim against GitHub's OpenAPI description.

use crate::http::{error, lock, respond};
use crate::state::{Exchange, Faults, Shared};
use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Exchanges kept at most (oldest dropped first).
const MAX_EXCHANGES: usize = 5_000;
/// Bodies larger than this are recorded as `null`.
const MAX_RECORDED_BODY: usize = 1 << 20;

/// `POST /_sim/faults`: replaces the injected faults.
pub async fn set_faults(State(s): State<Shared>, Json(f): Json<Faults>) -> Response {
    let mut forge = respond!(lock(&s));
    forge.faults = f;
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/exchanges`: every recorded answer, oldest first.
pub async fn exchanges(State(s): State<Shared>) -> Response {
    let forge = respond!(lock(&s));
    let v: Vec<Value> =
        forge.exchanges.iter().map(|e| json!({"method": e.method, "route": e.route, "status": e.status, "body": e.body})).collect();
    Json(Value::Array(v)).into_response()
}

fn injected(s: &Shared) -> Option<Response> {
    let mut forge = s.lock().ok()?;
    let f = &mut forge.faults;
    if f.outage > 0 {
        f.outage -= 1;
        return Some(error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable (forge-sim outage)"));
    }
    if f.rate_limit > 0 {
        f.rate_limit -= 1;
        let mut resp = error(StatusCode::FORBIDDEN, "API rate limit exceeded (forge-sim)");
        let h = resp.headers_mut();
        if let Some(reset_in) = f.primary_reset_in {
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&(now + reset_in).to_string()) {
                h.insert("x-ratelimit-reset", v);
            }
        } else if let Ok(v) = HeaderValue::from_str(&f.retry_after.unwrap_or(1).to_string()) {
            h.insert("retry-after", v);
        }
        return Some(resp);
    }
    None
}

/// Middleware of the API routes: injects faults, authenticates, then records the answer.
pub async fn layer(State(s): State<Shared>, matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = matched.map(|m| m.as_str().replace("{*path}", "{path}")).unwrap_or_default();
    if let Some(resp) = injected(&s) {
        return resp;
    }
    // Authentication comes before reading the body, as on GitHub.
    let refused = crate::auth::authenticate(&s, req.headers()).err();
    let resp = match refused {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let recorded = if bytes.len() <= MAX_RECORDED_BODY { serde_json::from_slice(&bytes).unwrap_or(Value::Null) } else { Value::Null };
    if let Ok(mut forge) = s.lock() {
        if forge.exchanges.len() >= MAX_EXCHANGES {
            forge.exchanges.remove(0);
        }
        forge.exchanges.push(Exchange { method, route, status: parts.status.as_u16(), body: recorded });
    }
    Response::from_parts(parts, Body::from(bytes))
}
