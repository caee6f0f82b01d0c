//! Binding and serving HTTP with graceful shutdown.

use crate::error::ServiceError;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `addr`, naming the setting it came from in the error so the operator knows what to
/// change (e.g. `CODEXK8S_HTTP_ADDR`).
pub async fn bind(addr: SocketAddr, setting: &str) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, setting: setting.to_string(), source })
}

/// The bound address of `listener` (named in the error as `name`), for the `listening` log line.
pub fn local_addr(listener: &TcpListener, name: &'static str) -> Result<SocketAddr, ServiceError> {
    listener.local_addr().map_err(|source| ServiceError::LocalAddr { listener: name, source })
}

/// Serves `router` on `listener` until `token` is cancelled, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) -> Result<(), ServiceError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
        .map_err(|e| ServiceError::Serve { server: "http", source: e.into() })
}
