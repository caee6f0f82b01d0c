//! Binding and serving HTTP with edge limits and graceful shutdown.
//!
//! Every HTTP server of the platform runs with [`Limits`]: a client gets a bounded time to send
//! its request head (a slow-headers client is dropped), a bounded time for the whole request
//! (a slow body gets 408), a cap on open connections (beyond it the server stops accepting until
//! one closes, so idle sockets cannot exhaust file descriptors or memory) and a cap on requests in
//! flight (beyond it the answer is an immediate 503 with `Retry-After`, never a growing queue).
//! Connections are served by hyper's HTTP/1 connection builder (its header-read timeout) and
//! drained with hyper-util's graceful shutdown; the request limits are tower layers.

use crate::error::ServiceError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

/// Binds `addr`, naming the setting it came from in the error so the operator knows what to
/// change (e.g. `CODEXK8S_HTTP_ADDR`).
pub async fn bind(addr: SocketAddr, setting: &str) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, setting: setting.to_string(), source })
}

/// The bound address of `listener` (named in the error as `name`), for the `listening` log line.
pub fn local_addr(listener: &TcpListener, name: &'static str) -> Result<SocketAddr, ServiceError> {
    listener.local_addr().map_err(|source| ServiceError::LocalAddr { listener: name, source })
}

/// The limits of one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request head (also between requests of a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Time for a whole request, body included, and its answer.
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Requests being handled at once at most.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_in_flight: 256,
        }
    }
}

impl Limits {
    /// Reads `CODEXK8S_HTTP_HEADER_READ_TIMEOUT`, `…_REQUEST_TIMEOUT`, `…_MAX_CONNECTIONS` and
    /// `…_MAX_IN_FLIGHT`, defaulting to [`Limits::default`].
    pub fn read(r: &mut ck8s_config::Reader<'_>) -> Self {
        let d = Self::default();
        let limits = Self {
            header_read_timeout: r.duration("HTTP_HEADER_READ_TIMEOUT", d.header_read_timeout),
            request_timeout: r.duration("HTTP_REQUEST_TIMEOUT", d.request_timeout),
            max_connections: r.parse("HTTP_MAX_CONNECTIONS", d.max_connections, "a number of connections"),
            max_in_flight: r.parse("HTTP_MAX_IN_FLIGHT", d.max_in_flight, "a number of requests"),
        };
        for (key, zero) in [
            ("HTTP_HEADER_READ_TIMEOUT", limits.header_read_timeout.is_zero()),
            ("HTTP_REQUEST_TIMEOUT", limits.request_timeout.is_zero()),
            ("HTTP_MAX_CONNECTIONS", limits.max_connections == 0),
            ("HTTP_MAX_IN_FLIGHT", limits.max_in_flight == 0),
        ] {
            if zero {
                r.issue(key, "must be greater than zero");
            }
        }
        limits
    }

    /// `router` with the request timeout and the in-flight cap. The cap is one semaphore for the
    /// whole router (`Router::layer` wraps each route on its own, so a per-layer limit would be
    /// per route).
    pub fn apply(&self, router: Router) -> Router {
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async { busy() }))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(self.max_in_flight))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, self.request_timeout)),
        )
    }
}

/// The answer when every in-flight slot is taken.
fn busy() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "busy: too many requests in flight; retry shortly\n").into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Serves `router` on `listener` with the default [`Limits`] until `token` is cancelled.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) -> Result<(), ServiceError> {
    serve_with(listener, router, Limits::default(), token).await
}

/// Serves `router` on `listener` with `limits` until `token` is cancelled, then stops accepting,
/// closes idle connections and lets in-flight requests finish (the caller's drain deadline
/// bounds the wait).
pub async fn serve_with(listener: TcpListener, router: Router, limits: Limits, token: CancellationToken) -> Result<(), ServiceError> {
    let app = limits.apply(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A connection slot first: at the cap the server stops accepting (the kernel's backlog
        // holds newcomers) until an open connection closes.
        let slot = tokio::select! {
            _ = token.cancelled() => break,
            slot = open.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: say so, and back off briefly instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Answers go out at once, not after the client's delayed ACK (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot turn off Nagle's algorithm on a connection");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends its own connection only.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
