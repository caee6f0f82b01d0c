//! Wiring: listener (bound early), control-plane channel, routes, drain on shutdown.

use crate::config::Config;
use ck8s_proto::controlplane::v1::GetStatusRequest;
use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
use ck8s_service::health::{ReadinessCheck, health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
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
    let control_plane = ControlPlaneClient::new(channel);

    let mut shutdown = Shutdown::on_signals();
    let metrics = MetricsBuilder::new("api-gateway").build();
    let target = cfg.control_plane_target.clone();
    let checks = vec![ReadinessCheck::new("control-plane", move || {
        let mut client = control_plane.clone();
        let target = target.clone();
        async move {
            let status = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(|e| format!("{target} unreachable: {}", e.message()))?
                .into_inner();
            if status.database_ready { Ok(()) } else { Err("control-plane reports its database is not ready".into()) }
        }
    })];
    let router = with_request_metrics(health_router("api-gateway", checks, metrics.clone(), shutdown.token()), metrics);
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));
    shutdown.run_until_stopped(cfg.shutdown_timeout).await
}
