//! Wiring: the public and admin listeners (bound early), control-plane channel, routes, drain on
//! shutdown.

use crate::config::Config;
use crate::metrics::WebhookMetrics;
use crate::webhook::{WebhookState, github};
use axum::Router;
use axum::routing::post;
use ck8s_proto::controlplane::v1::GetStatusRequest;
use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
use ck8s_service::health::{ReadinessCheck, health_router, public_probes, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Endpoint;

/// What ends the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("CODEXK8S_CONTROL_PLANE_GRPC_TARGET is not a valid address")]
    ControlPlaneTarget(#[source] tonic::transport::Error),
    #[error("CODEXK8S_INTERNAL_API_TOKEN cannot be sent")]
    InternalToken(#[source] ck8s_proto::auth::BadToken),
    #[error(transparent)]
    Service(#[from] ck8s_service::ServiceError),
}

/// A readiness check of control-plane that failed.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("{target} unreachable: {message}")]
    Unreachable { target: String, message: String },
    #[error("control-plane reports its database is not ready")]
    Database,
}

/// Serves until a signal, then drains.
pub async fn run(cfg: Config) -> Result<(), GatewayError> {
    let http = server::bind(cfg.http_addr, "CODEXK8S_HTTP_ADDR").await?;
    tracing::info!(listener = "http", addr = %server::local_addr(&http, "http")?, "listening");
    let admin = server::bind(cfg.admin_addr, "CODEXK8S_ADMIN_ADDR").await?;
    tracing::info!(listener = "admin", addr = %server::local_addr(&admin, "admin")?, "listening");

    let channel = Endpoint::from_shared(cfg.control_plane_target.clone())
        .map_err(GatewayError::ControlPlaneTarget)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy();
    let auth = ck8s_proto::auth::SendToken::new(secrecy::ExposeSecret::expose_secret(&cfg.internal_api_token))
        .map_err(GatewayError::InternalToken)?;
    let control_plane = ControlPlaneClient::with_interceptor(channel, auth);

    let mut shutdown = Shutdown::on_signals();
    let mut metrics = MetricsBuilder::new("api-gateway");
    let webhook_metrics = WebhookMetrics::register(metrics.registry());
    let metrics = metrics.build();
    let webhook = Arc::new(WebhookState {
        secret: cfg.webhook_secret.clone(),
        max_body_bytes: cfg.webhook_max_body_bytes,
        control_plane: control_plane.clone(),
        metrics: webhook_metrics,
    });
    let target = cfg.control_plane_target.clone();
    let checks = vec![ReadinessCheck::new("control-plane", move || {
        let mut client = control_plane.clone();
        let target = target.clone();
        async move {
            let status = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(|e| NotReady::Unreachable { target, message: e.message().to_string() })?
                .into_inner();
            if status.database_ready { Ok(()) } else { Err(NotReady::Database) }
        }
    })];
    let api = Router::new().route("/api/v1/webhooks/github", post(github)).with_state(webhook);
    // The public port: the webhook and bare probes, with the edge limits. Metrics and which check
    // fails are on the admin port only.
    let public = ck8s_service::with_request_trace(with_request_metrics(
        public_probes("api-gateway", checks.clone(), shutdown.token()).merge(api),
        metrics.clone(),
    ));
    shutdown.spawn("http", server::serve_with(http, public, cfg.limits, shutdown.token()));
    let admin_router = ck8s_service::with_request_trace(health_router("api-gateway", checks, metrics, shutdown.token()));
    shutdown.spawn("admin", server::serve(admin, admin_router, shutdown.token()));
    Ok(shutdown.run_until_stopped(cfg.shutdown_timeout).await?)
}
