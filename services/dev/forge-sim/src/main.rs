//! forge-sim: a GitHub stand-in for development and tests. This first version serves only its
//! health endpoints; the REST subset, OAuth flow, git hosting and signed webhook delivery arrive
//! with the repository-provider issue. Never deployed to production.

use ck8s_config::{ConfigError, Layers};
use ck8s_service::health::{health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

struct Config {
    http_addr: SocketAddr,
    shutdown_timeout: Duration,
}

impl Config {
    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let cfg = Self {
            http_addr: r.socket_addr("FORGE_SIM_HTTP_ADDR", "127.0.0.1:8090"),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(10)),
        };
        r.finish()?;
        Ok(cfg)
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let http = server::bind(cfg.http_addr, "CODEXK8S_FORGE_SIM_HTTP_ADDR").await?;
    tracing::info!(listener = "http", addr = %http.local_addr().map_err(|e| e.to_string())?, "listening");
    let mut shutdown = Shutdown::on_signals();
    let metrics = MetricsBuilder::new("forge-sim").build();
    let router = with_request_metrics(health_router("forge-sim", vec![], metrics.clone(), shutdown.token()), metrics);
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));
    shutdown.run_until_stopped(cfg.shutdown_timeout).await
}

fn main() -> ExitCode {
    ck8s_service::startup::main_with("forge-sim", std::env::args().skip(1).collect(), Config::load, run)
}
