//! Wiring: listener (bound early), control-plane channel, routes, drain on shutdown.

use crate::config::Config;
use crate::metrics::WebhookMetrics;
use crate::webhook::{WebhookState, github};
use axum::Router;
use axum::routing::post;
use ck8s_proto::controlplane::v1::GetStatusRequest;
use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
use ck8s_service::health::{ReadinessCheck, health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Endpoint;

pub async fn run(cfg: Config) -> Result<(), String> {
    let http = server::bind(cfg.http_addr, "CODEXK8S_HTTP_ADDR").await?;
    tracing::info!(listener = "http", addr = %http.local_addr().map_err(|e| e.to_string())?, "listening");

    let channel = Endpoint::from_shared(cfg.control_plane_target.clone())
        .map_err(|e| format!("CODEXK8S_CONTROL_PLANE_GRPC_TARGET: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let auth = ck8s_proto::auth::SendToken::new(secrecy::ExposeSecret::expose_secret(&cfg.internal_api_token))
        .map_err(|e| format!("CODEXK8S_INTERNAL_API_TOKEN: {e}"))?;
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
            let status =
                client.get_status(GetStatusRequest {}).await.map_err(|e| format!("{target} unreachable: {}", e.message()))?.into_inner();
            if status.database_ready { Ok(()) } else { Err("control-plane reports its database is not ready".into()) }
        }
    })];
    let api = Router::new().route("/api/v1/webhooks/github", post(github)).with_state(webhook);
    let router = with_request_metrics(health_router("api-gateway", checks, metrics.clone(), shutdown.token()).merge(api), metrics);
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));
    shutdown.run_until_stopped(cfg.shutdown_timeout).await
}
