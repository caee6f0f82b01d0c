//! The GitHub adapter of the domain's repository-provider port, on `octocrab` with a
//! configurable base URL (api.github.com, GitHub Enterprise, or forge-sim in development and
//! tests). octocrab carries authentication, headers and the HTTP client; this crate adds what the
//! platform needs on top:
//!
//! - **Rate limits.** A 403/429 with `Retry-After` (secondary limit) or with
//!   `X-RateLimit-Remaining: 0` (primary limit, until `X-RateLimit-Reset`) is waited out when the
//!   wait fits in `max_wait`, logged, and retried up to `max_attempts`; otherwise the call fails
//!   with `ProviderError::RateLimited { retry_after }`.
//! - **Transient failures.** 5xx answers and unreachable servers are retried with backoff for
//!   idempotent requests (GET, PUT, PATCH, DELETE) and reported as `Transient` otherwise, so a
//!   POST is never silently repeated.
//! - **Typed errors** for 401, 403, 404 and 422, with GitHub's message and never the token.
//! - **Pagination** through the `Link` header for every list.

mod provider;

use ck8s_domain::forge::ProviderError;
use http::{HeaderMap, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use provider::GithubProvider;

/// Settings of the adapter.
#[derive(Clone)]
pub struct GithubSettings {
    /// `https://api.github.com`, a GitHub Enterprise API root, or forge-sim's address.
    pub base_url: String,
    /// The bot's token.
    pub token: SecretString,
    /// The longest single rate-limit wait the adapter accepts before giving up.
    pub max_wait: Duration,
    /// Attempts per call, counting the first.
    pub max_attempts: u32,
    /// First backoff after a transient failure (doubles each time).
    pub backoff: Duration,
    /// Timeout of one HTTP exchange.
    pub timeout: Duration,
}

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("max_wait", &self.max_wait)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl GithubSettings {
    /// Defaults for `base_url` and `token`: waits up to a minute, four attempts, 30 s per call.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            max_wait: Duration::from_secs(60),
            max_attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A GitHub API client: requests with rate-limit handling, typed errors and pagination.
#[derive(Clone)]
pub struct Github {
    client: octocrab::Octocrab,
    settings: GithubSettings,
}

/// One answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// What to do after a failed attempt.
enum Next {
    Wait(Duration),
    Fail(ProviderError),
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

/// GitHub's error message of a body (`{"message": ...}`), with its validation errors.
fn message_of(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let mut m = v["message"].as_str().unwrap_or("").to_string();
            if let Some(errors) = v["errors"].as_array() {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| match (e["field"].as_str(), e["code"].as_str(), e["message"].as_str()) {
                        (_, _, Some(msg)) => msg.to_string(),
                        (Some(f), Some(c), _) => format!("{f} {c}"),
                        _ => e.to_string(),
                    })
                    .collect();
                if !details.is_empty() {
                    m = format!("{m} ({})", details.join("; "));
                }
            }
            if m.is_empty() { "no message".into() } else { m }
        }
        Err(_) => body.chars().take(200).collect(),
    }
}

/// The rate-limit wait an answer asks for, if it is a rate-limit answer.
pub fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(s) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(s));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let now_s = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(now_s + 60);
        // One extra second: the reset time is whole seconds and clocks differ.
        return Some(Duration::from_secs(reset.saturating_sub(now_s) + 1));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(Duration::from_secs(60));
    }
    None
}

/// The next page of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Percent-encodes one path segment (label names carry `:` and spaces; branches carry `/`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Github {
    /// A client of the API at `settings.base_url`.
    pub fn new(settings: GithubSettings) -> Result<Self, ProviderError> {
        let client = octocrab::Octocrab::builder()
            .base_uri(settings.base_url.as_str())
            .map_err(|e| ProviderError::Unexpected(format!("bad GitHub base URL {:?}: {e}", settings.base_url)))?
            .personal_token(settings.token.expose_secret().to_string())
            .set_connect_timeout(Some(settings.timeout))
            .set_read_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| ProviderError::Unexpected(format!("cannot build the GitHub client: {e}")))?;
        Ok(Self { client, settings })
    }

    async fn exchange(&self, method: &Method, uri: &str, body: Option<&Value>) -> Result<Answer, ProviderError> {
        let c = &self.client;
        let sent = match *method {
            Method::GET => c._get(uri).await,
            Method::POST => c._post(uri, body).await,
            Method::PATCH => c._patch(uri, body).await,
            Method::PUT => c._put(uri, body).await,
            Method::DELETE => c._delete(uri, body).await,
            _ => return Err(ProviderError::Unexpected(format!("unsupported method {method}"))),
        };
        let resp = sent.map_err(|e| ProviderError::Transient(format!("{method} {}: {e}", path_of(uri))))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = c.body_to_string(resp).await.map_err(|e| ProviderError::Transient(format!("reading the answer: {e}")))?;
        Ok(Answer { status, headers, body })
    }

    fn judge(&self, method: &Method, uri: &str, a: &Answer, attempt: u32) -> Next {
        let what = format!("{method} {}", path_of(uri));
        let last = attempt + 1 >= self.settings.max_attempts;
        if let Some(wait) = rate_limit_wait(a.status, &a.headers, SystemTime::now()) {
            let message = message_of(&a.body);
            if wait > self.settings.max_wait || last {
                return Next::Fail(ProviderError::RateLimited { message: format!("{what}: {message}"), retry_after: Some(wait) });
            }
            tracing::warn!(request = %what, wait_ms = wait.as_millis() as u64, attempt = attempt + 1, %message, "GitHub rate limit: waiting");
            return Next::Wait(wait);
        }
        let message = format!("{what}: {}", message_of(&a.body));
        match a.status {
            StatusCode::UNAUTHORIZED => Next::Fail(ProviderError::Unauthorized(message)),
            StatusCode::FORBIDDEN => Next::Fail(ProviderError::Forbidden(message)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Next::Fail(ProviderError::NotFound(message)),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::BAD_REQUEST => {
                Next::Fail(ProviderError::Validation(message))
            }
            s if s.is_server_error() => {
                if idempotent(method) && !last {
                    let wait = self.settings.backoff * 2u32.pow(attempt);
                    tracing::warn!(request = %what, status = s.as_u16(), wait_ms = wait.as_millis() as u64, "GitHub server error: retrying");
                    Next::Wait(wait)
                } else {
                    Next::Fail(ProviderError::Transient(message))
                }
            }
            s => Next::Fail(ProviderError::Unexpected(format!("{message} (status {})", s.as_u16()))),
        }
    }

    /// Sends a request with retries; returns the successful answer.
    async fn send(&self, method: Method, uri: &str, body: Option<&Value>) -> Result<Answer, ProviderError> {
        let mut attempt = 0;
        loop {
            let answer = match self.exchange(&method, uri, body).await {
                Ok(a) => a,
                Err(e) => {
                    if idempotent(&method) && attempt + 1 < self.settings.max_attempts {
                        let wait = self.settings.backoff * 2u32.pow(attempt);
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "GitHub unreachable: retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            };
            if answer.status.is_success() {
                return Ok(answer);
            }
            match self.judge(&method, uri, &answer, attempt) {
                Next::Wait(d) => {
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Next::Fail(e) => return Err(e),
            }
        }
    }

    /// A JSON request; the answer's body decoded as `T`.
    pub async fn json<T: DeserializeOwned, B: Serialize>(&self, method: Method, uri: &str, body: Option<&B>) -> Result<T, ProviderError> {
        let body = match body {
            Some(b) => Some(serde_json::to_value(b).map_err(|e| ProviderError::Unexpected(format!("encoding the request: {e}")))?),
            None => None,
        };
        let a = self.send(method.clone(), uri, body.as_ref()).await?;
        decode(&a.body, &method, uri)
    }

    /// A request whose answer has no body worth reading (204, 202).
    pub async fn call<B: Serialize>(&self, method: Method, uri: &str, body: Option<&B>) -> Result<(), ProviderError> {
        let body = match body {
            Some(b) => Some(serde_json::to_value(b).map_err(|e| ProviderError::Unexpected(format!("encoding the request: {e}")))?),
            None => None,
        };
        self.send(method, uri, body.as_ref()).await.map(|_| ())
    }

    /// Every item of a list, following `Link: rel="next"` (at most `max_pages` pages of 100).
    pub async fn all<T: DeserializeOwned>(&self, uri: &str, max_pages: usize) -> Result<Vec<T>, ProviderError> {
        let sep = if uri.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{uri}{sep}per_page=100"));
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(u) = next.take() {
            let a = self.send(Method::GET, &u, None).await?;
            let mut items: Vec<T> = decode(&a.body, &Method::GET, &u)?;
            out.append(&mut items);
            pages += 1;
            if pages >= max_pages {
                tracing::warn!(request = %path_of(uri), pages, "stopped following pages");
                break;
            }
            next = next_link(&a.headers);
        }
        Ok(out)
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::PUT | Method::PATCH | Method::DELETE)
}

/// The path of a URI, for messages (never a query string, which could carry anything).
fn path_of(uri: &str) -> String {
    let no_scheme = uri.split_once("://").map(|(_, r)| r.split_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default());
    let p = no_scheme.unwrap_or_else(|| uri.to_string());
    p.split('?').next().unwrap_or("").to_string()
}

fn decode<T: DeserializeOwned>(body: &str, method: &Method, uri: &str) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|e| ProviderError::Unexpected(format!("{method} {}: cannot read the answer: {e}", path_of(uri))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limits_are_read_from_retry_after_or_the_primary_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", "2")]), now), Some(Duration::from_secs(2)));
        let primary = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1030")]);
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &primary, now), Some(Duration::from_secs(31)));
        // A plain 403 is a refusal, not a rate limit.
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &headers(&[("x-ratelimit-remaining", "12")]), now), None);
        assert_eq!(rate_limit_wait(StatusCode::NOT_FOUND, &headers(&[("retry-after", "7")]), now), None);
    }

    #[test]
    fn next_links_and_segments() {
        let h = headers(&[("link", "<http://x/r?page=2>; rel=\"next\", <http://x/r?page=5>; rel=\"last\"")]);
        assert_eq!(next_link(&h).as_deref(), Some("http://x/r?page=2"));
        assert_eq!(next_link(&headers(&[("link", "<http://x/r?page=1>; rel=\"prev\"")])), None);
        assert_eq!(seg("run:dev"), "run%3Adev");
        assert_eq!(seg("codex/issue-7"), "codex%2Fissue-7");
        assert_eq!(seg("[ai-model-gpt]"), "%5Bai-model-gpt%5D");
    }

    #[test]
    fn messages_carry_githubs_text_and_validation_details_but_no_query() {
        assert_eq!(
            message_of(r#"{"message":"Validation Failed","errors":[{"resource":"Label","field":"name","code":"already_exists"}]}"#),
            "Validation Failed (name already_exists)"
        );
        assert_eq!(message_of("not json"), "not json");
        assert_eq!(path_of("http://h:1/repos/a/b/contents/x?ref=secret"), "/repos/a/b/contents/x");
        assert_eq!(path_of("/repos/a/b?x=1"), "/repos/a/b");
    }

    #[test]
    fn malformed_answers_are_typed_errors_naming_the_request_not_panics() {
        #[derive(Debug, serde::Deserialize)]
        struct Repo {
            #[allow(dead_code)]
            id: i64,
        }
        for body in ["", "not json", "{\"id\": \"seven\"}", "[1, 2]"] {
            match decode::<Repo>(body, &Method::GET, "http://h/repos/a/b?token=x") {
                Err(ProviderError::Unexpected(m)) => {
                    assert!(m.starts_with("GET /repos/a/b: cannot read the answer") && !m.contains("token=x"), "{m}")
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert_eq!(message_of(&"x".repeat(10_000)).len(), 200, "a huge non-JSON error body is cut");
    }

    #[test]
    fn settings_never_print_the_token() {
        let s = GithubSettings::new("http://x", SecretString::from("ghp_canary_token".to_string()));
        assert!(!format!("{s:?}").contains("canary"));
    }
}
