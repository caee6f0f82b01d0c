//! forge-sim: a GitHub stand-in for development and tests. It serves the GitHub REST subset the
//! platform uses (repositories, labels, issues and their labels, comments, reactions) with
//! GitHub's shapes, errors, token authentication and `Link` pagination, plus a scripting API
//! (`/_sim/*`) to create users and repositories. The OAuth flow, git hosting and signed webhook
//! delivery arrive with the rest of the repository-provider work. Never deployed to production.

/// Returns the error response of a handler step, or its value.
macro_rules! respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

mod hooks;
mod rest;

use axum::Router;
use axum::routing::{delete, get, patch, post};
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
    let base_url = format!("http://{}", http.local_addr().map_err(|e| e.to_string())?);
    let forge: rest::Shared = std::sync::Arc::new(std::sync::Mutex::new(rest::Forge::new(base_url)));
    let api = Router::new()
        .route("/repos/{owner}/{repo}", get(rest::get_repo))
        .route("/repos/{owner}/{repo}/labels", get(rest::list_labels).post(rest::create_label))
        .route("/repos/{owner}/{repo}/labels/{name}", delete(rest::delete_label))
        .route("/repos/{owner}/{repo}/issues", post(rest::create_issue))
        .route("/repos/{owner}/{repo}/issues/{number}", get(rest::get_issue))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/labels",
            get(rest::list_issue_labels).post(rest::add_issue_labels).put(rest::add_issue_labels),
        )
        .route("/repos/{owner}/{repo}/issues/{number}/labels/{name}", delete(rest::remove_issue_label))
        .route("/repos/{owner}/{repo}/issues/{number}/comments", get(rest::list_comments).post(rest::create_comment))
        .route("/repos/{owner}/{repo}/issues/comments/{id}", patch(rest::update_comment))
        .route("/repos/{owner}/{repo}/issues/{number}/reactions", post(rest::react_issue))
        .route("/repos/{owner}/{repo}/issues/comments/{id}/reactions", post(rest::react_comment))
        .route("/repos/{owner}/{repo}/hooks", get(hooks::list_hooks).post(hooks::create_hook))
        .route("/_sim/deliveries", get(hooks::list_deliveries))
        .route("/_sim/users", post(rest::sim_create_user))
        .route("/_sim/repos", post(rest::sim_create_repo))
        .fallback(|| async { rest::error(axum::http::StatusCode::NOT_FOUND, "Not Found") })
        .with_state(forge);
    let router = with_request_metrics(health_router("forge-sim", vec![], metrics.clone(), shutdown.token()).merge(api), metrics);
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));
    shutdown.run_until_stopped(cfg.shutdown_timeout).await
}

fn main() -> ExitCode {
    ck8s_service::startup::main_with("forge-sim", std::env::args().skip(1).collect(), Config::load, run)
}
