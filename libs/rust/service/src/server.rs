//! Binding and serving HTTP with graceful shutdown.

use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `addr`, naming the setting it came from in the error so the operator knows what to
/// change (e.g. `CODEXK8S_HTTP_ADDR`).
pub async fn bind(addr: SocketAddr, setting: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({setting}): {e}; free the port or set {setting} to another address"))
}

/// Serves `router` on `listener` until `token` is cancelled, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) -> Result<(), String> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
        .map_err(|e| format!("http server failed: {e}"))
}
