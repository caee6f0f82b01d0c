//! The model proxy (ADR-0015): the agent reaches the model only through this loopback server in
//! the runner, which holds the real API key. The agent gets the proxy's URL and a key of the
//! proxy's own (random, good for this proxy alone); the proxy checks that key, lets through only
//! the Responses API paths Codex needs (`POST /v1/responses`, `GET /v1/models`), adds the real
//! key, and counts the tokens of every answer from the upstream's own `response.completed`
//! usage — so usage is what the model reported, not what the agent says — refusing further
//! requests with 429 once the run's budget is spent.

use bytes::Bytes;
use ck8s_domain::agent_run::TurnUsage;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The largest request body the proxy forwards (Codex sends the whole conversation each turn).
const REQUEST_CAP: usize = 32 * 1024 * 1024;
/// The longest SSE line the proxy reads for usage (`response.completed` repeats the output).
const LINE_CAP: usize = 16 * 1024 * 1024;

/// What the proxy needs.
pub struct ProxySettings {
    /// The upstream Responses API root (`https://api.openai.com/v1`, or model-sim's).
    pub upstream: String,
    pub api_key: SecretString,
    /// Tokens (input + output) the run may spend; requests beyond it are refused.
    pub budget_tokens: u64,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the model endpoint {0:?} is not an http(s) URL")]
    BadUpstream(String),
    #[error("cannot start the model proxy: {0}")]
    Io(#[from] std::io::Error),
}

struct State {
    upstream: String,
    api_key: SecretString,
    agent_key: SecretString,
    budget: u64,
    usage: Mutex<Vec<TurnUsage>>,
    refused: Mutex<Vec<String>>,
    client: Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, BoxBody<Bytes, hyper::Error>>,
}

impl State {
    fn spent(&self) -> u64 {
        self.usage.lock().map(|u| u.iter().map(|t| t.input_tokens + t.output_tokens).sum()).unwrap_or(u64::MAX)
    }
    fn refuse(&self, why: String) {
        if let Ok(mut r) = self.refused.lock()
            && r.len() < 100
        {
            r.push(why);
        }
    }
}

/// A running proxy; stops when dropped.
pub struct ModelProxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for ModelProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A fresh random key for the agent (32 bytes from the kernel, hex).
fn random_key() -> std::io::Result<SecretString> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(SecretString::from(format!("ck8sproxy_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())))
}

impl ModelProxy {
    /// Starts the proxy on `127.0.0.1:<free port>`.
    pub async fn start(settings: ProxySettings) -> Result<Self, ProxyError> {
        let upstream = settings.upstream.trim_end_matches('/').to_string();
        if !(upstream.starts_with("https://") || upstream.starts_with("http://")) {
            return Err(ProxyError::BadUpstream(upstream));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let state = Arc::new(State {
            upstream,
            api_key: settings.api_key,
            agent_key: random_key()?,
            budget: settings.budget_tokens,
            usage: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            client,
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        let until = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move { until.cancelled().await }).await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the model proxy stopped");
            }
        });
        Ok(Self { addr, state, stop })
    }

    /// The Responses API root the agent is given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The key the agent presents (worth nothing beyond this proxy).
    pub fn agent_key(&self) -> SecretString {
        self.state.agent_key.clone()
    }

    /// The usage of every answer so far, as the upstream reported it.
    pub fn usage(&self) -> Vec<TurnUsage> {
        self.state.usage.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// What was refused (method and path, or the reason), for the run's events.
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn error(status: http::StatusCode, kind: &str, code: &str, message: &str) -> axum::response::Response {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "code": code, "param": null}});
    (status, axum::Json(body)).into_response()
}

use axum::response::IntoResponse;

async fn forward(axum::extract::State(st): axum::extract::State<Arc<State>>, req: axum::extract::Request) -> axum::response::Response {
    use http::{Method, StatusCode, header};
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let allowed = matches!((&parts.method, path.as_str()), (&Method::POST, "/v1/responses") | (&Method::GET, "/v1/models"));
    if !allowed {
        st.refuse(format!("{} {path}", parts.method));
        return error(StatusCode::FORBIDDEN, "invalid_request_error", "not_allowed", "the run's model proxy serves only the Responses API");
    }
    let presented = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let expected = st.agent_key.expose_secret().as_bytes();
    if !presented.is_some_and(|p| subtle::ConstantTimeEq::ct_eq(p.as_bytes(), expected).into()) {
        st.refuse(format!("{} {path}: wrong key", parts.method));
        return error(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "this proxy takes only its own key");
    }
    if parts.method == Method::POST && st.spent() >= st.budget {
        st.refuse(format!("budget of {} tokens spent", st.budget));
        let message = format!("the run's token budget of {} tokens is spent", st.budget);
        return error(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota", &message);
    }
    let body = match Limited::new(body, REQUEST_CAP).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "too_large", "the request is too large"),
    };
    let uri = format!("{}{}", st.upstream, path.trim_start_matches("/v1"));
    let mut up = http::Request::builder().method(parts.method.clone()).uri(&uri);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::CONTENT_ENCODING, header::USER_AGENT] {
        if let Some(v) = parts.headers.get(&name) {
            up = up.header(name, v);
        }
    }
    for (name, v) in &parts.headers {
        if name.as_str().starts_with("openai-") || name.as_str() == "session_id" || name.as_str() == "originator" {
            up = up.header(name, v);
        }
    }
    up = up.header(header::AUTHORIZATION, format!("Bearer {}", st.api_key.expose_secret())).header(header::ACCEPT_ENCODING, "identity");
    let Ok(up) = up.body(Full::new(body).map_err(|never| match never {}).boxed()) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "bad_request", "the request cannot be forwarded");
    };
    let answer = match st.client.request(up).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "the model endpoint cannot be reached");
            return error(StatusCode::BAD_GATEWAY, "server_error", "upstream_unreachable", "the model endpoint cannot be reached");
        }
    };
    let (aparts, abody) = answer.into_parts();
    let mut out = http::Response::builder().status(aparts.status);
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = aparts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    for (name, v) in &aparts.headers {
        if name.as_str().starts_with("x-request-id") || name.as_str().starts_with("openai-") || name.as_str().starts_with("x-ratelimit") {
            out = out.header(name, v);
        }
    }
    let counted = count_usage(abody, st.clone());
    out.body(axum::body::Body::new(counted))
        .unwrap_or_else(|_| error(StatusCode::BAD_GATEWAY, "server_error", "bad_upstream", "the model endpoint's answer cannot be read"))
}

/// Passes the upstream's body through unchanged while reading its lines for usage: an SSE
/// `data:` line of a `response.completed` event, or a whole JSON response with `usage`.
fn count_usage(body: Incoming, st: Arc<State>) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, hyper::Error>>> {
    let scanner = Scanner { st, line: Vec::new(), overlong: false, whole: Some(Vec::new()) };
    let stream = futures_util::stream::unfold(Some((body, scanner)), |state| async move {
        let (mut body, mut scanner) = state?;
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    scanner.scan(data);
                }
                Some((Ok(frame), Some((body, scanner))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                scanner.finish();
                None
            }
        }
    });
    StreamBody::new(stream)
}

/// Reads an answer's bytes as they pass.
struct Scanner {
    st: Arc<State>,
    line: Vec<u8>,
    overlong: bool,
    /// The body so far while it may be one JSON document (dropped past the line cap).
    whole: Option<Vec<u8>>,
}

impl Scanner {
    fn scan(&mut self, data: &[u8]) {
        if let Some(w) = &mut self.whole {
            w.extend_from_slice(data);
            if w.len() > LINE_CAP {
                self.whole = None;
            }
        }
        for part in data.split_inclusive(|&b| b == b'\n') {
            let ends = part.last() == Some(&b'\n');
            if !self.overlong {
                self.line.extend_from_slice(part);
                if self.line.len() > LINE_CAP {
                    self.overlong = true;
                    self.line = Vec::new();
                }
            }
            if ends {
                if !self.overlong {
                    self.event_line();
                }
                self.line.clear();
                self.overlong = false;
            }
        }
    }

    fn event_line(&mut self) {
        let Some(data) = self.line.strip_prefix(b"data:") else { return };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) else { return };
        if v["type"] == "response.completed" {
            record(&v["response"]["usage"], &self.st);
            self.whole = None;
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() && !self.overlong {
            self.event_line();
        }
        if let Some(v) = self.whole.take().and_then(|w| serde_json::from_slice::<serde_json::Value>(&w).ok()) {
            record(&v["usage"], &self.st);
        }
    }
}

/// Stores one answer's usage (`input_tokens`, `output_tokens` and their details).
fn record(usage: &serde_json::Value, st: &State) {
    if !usage.is_object() {
        return;
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let turn = TurnUsage {
        input_tokens: n(&usage["input_tokens"]),
        cached_input_tokens: n(&usage["input_tokens_details"]["cached_tokens"]),
        output_tokens: n(&usage["output_tokens"]),
        reasoning_output_tokens: n(&usage["output_tokens_details"]["reasoning_tokens"]),
    };
    if let Ok(mut u) = st.usage.lock() {
        u.push(turn);
    }
}
