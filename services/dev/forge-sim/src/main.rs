//! forge-sim: a GitHub stand-in for development and tests. It serves the GitHub REST subset the
//! platform uses (repositories, labels, issues and their labels, comments, reactions, pull
//! requests, reviews and review comments, file contents, collaborator permissions, webhooks with
//! their deliveries and redelivery) with GitHub's shapes (validated against GitHub's OpenAPI
//! description by the tests), errors, token authentication and `Link` pagination; signed webhook
//! delivery; and a scripting API (`/_sim/*`) to create users, repositories and files, inject
//! faults (outages, rate limits, comment-list lag) and read back every API answer; and git hosting
//! over smart HTTP (`git http-backend`) with `push` webhooks; and GitHub's OAuth web flow with
//! `/user` and `/user/emails`. Never deployed to production.
//!
//! This file reads the configuration and wires the router. The modules depend one way, from the
//! leaves up: `http` (GitHub-shaped answers) and `state` (the forge in memory); `auth` (the token
//! extractor), `shapes` (GitHub's JSON of the forge's objects) and `webhooks` (signed delivery);
//! then the handlers: `api::*` (the REST subset by resource), `git` (hosting), `oauth` (the web
//! flow) and `sim` (the `/_sim` controls and the API middleware).

// GitHub's pull-request objects are large `json!` literals.
#![recursion_limit = "256"]

mod api;
mod auth;
mod git;
mod http;
mod oauth;
mod shapes;
mod sim;
mod state;
mod webhooks;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use ck8s_config::{ConfigError, Layers};
use ck8s_service::health::{health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use state::{Forge, Shared};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Config {
    http_addr: SocketAddr,
    shutdown_timeout: Duration,
    /// Where bare git repositories live; a fresh directory per process unless set.
    git_root: Option<PathBuf>,
}

impl Config {
    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let cfg = Self {
            http_addr: r.socket_addr("FORGE_SIM_HTTP_ADDR", "127.0.0.1:8090"),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(10)),
            git_root: r.opt_string("FORGE_SIM_GIT_ROOT").map(Into::into),
        };
        r.finish()?;
        Ok(cfg)
    }
}

/// Why forge-sim could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// A listener could not be bound (the message names the setting to change), or the server
    /// failed, or the shutdown overran its deadline.
    #[error(transparent)]
    Service(#[from] ck8s_service::ServiceError),
    #[error("cannot create the git root {}; set CODEXK8S_FORGE_SIM_GIT_ROOT", .dir.display())]
    GitRoot {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

async fn run(cfg: Config) -> Result<(), RunError> {
    let listener = server::bind(cfg.http_addr, "CODEXK8S_FORGE_SIM_HTTP_ADDR").await?;
    let addr = server::local_addr(&listener, "http")?;
    tracing::info!(listener = "http", addr = %addr, "listening");
    let mut shutdown = Shutdown::on_signals();
    let metrics = MetricsBuilder::new("forge-sim").build();
    let base_url = format!("http://{addr}");
    let (git_root, temporary) = match cfg.git_root.clone() {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("forge-sim-git-{}", std::process::id())), true),
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&git_root);
    }
    std::fs::create_dir_all(&git_root).map_err(|source| RunError::GitRoot { dir: git_root.clone(), source })?;
    let forge: Shared = Arc::new(Mutex::new(Forge::new(base_url, git_root.clone())));
    let app = with_request_metrics(health_router("forge-sim", vec![], metrics.clone(), shutdown.token()).merge(router(forge)), metrics);
    shutdown.spawn("http", server::serve(listener, app, shutdown.token()));
    let result = shutdown.run_until_stopped(cfg.shutdown_timeout).await.map_err(RunError::from);
    if temporary {
        let _ = std::fs::remove_dir_all(&git_root);
    }
    result
}

/// Every route: the GitHub REST subset behind the API middleware (faults, authentication,
/// recording), then the OAuth web flow, git hosting and the `/_sim` controls, which it does not see.
fn router(forge: Shared) -> Router {
    Router::new()
        .route("/repos/{owner}/{repo}", get(api::repos::get_repo))
        .route("/repos/{owner}/{repo}/labels", get(api::repos::list_labels).post(api::repos::create_label))
        .route(
            "/repos/{owner}/{repo}/labels/{name}",
            get(api::repos::get_label).patch(api::repos::update_label).delete(api::repos::delete_label),
        )
        .route("/repos/{owner}/{repo}/issues", post(api::issues::create_issue))
        .route("/repos/{owner}/{repo}/issues/{issue_number}", get(api::issues::get_issue))
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            get(api::issues::list_issue_labels).post(api::issues::add_issue_labels).put(api::issues::add_issue_labels),
        )
        .route("/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", delete(api::issues::remove_issue_label))
        .route("/repos/{owner}/{repo}/issues/{issue_number}/comments", get(api::issues::list_comments).post(api::issues::create_comment))
        .route("/repos/{owner}/{repo}/issues/comments/{comment_id}", patch(api::issues::update_comment))
        .route("/repos/{owner}/{repo}/issues/{issue_number}/reactions", post(api::issues::react_issue))
        .route("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", post(api::issues::react_comment))
        .route("/repos/{owner}/{repo}/pulls", get(api::pulls::list_pulls).post(api::pulls::create_pull))
        .route("/repos/{owner}/{repo}/pulls/{pull_number}", get(api::pulls::get_pull).patch(api::pulls::update_pull))
        .route("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", get(api::pulls::list_reviews).post(api::pulls::create_review))
        .route("/repos/{owner}/{repo}/pulls/{pull_number}/comments", get(api::pulls::list_review_comments))
        .route("/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies", post(api::pulls::reply_review_comment))
        .route("/repos/{owner}/{repo}/contents/{*path}", get(api::contents::get_contents))
        .route("/repos/{owner}/{repo}/collaborators/{username}/permission", get(api::repos::get_permission))
        .route("/repos/{owner}/{repo}/hooks", get(api::hooks::list_hooks).post(api::hooks::create_hook))
        .route("/repos/{owner}/{repo}/hooks/{hook_id}", patch(api::hooks::update_hook).delete(api::hooks::delete_hook))
        .route("/repos/{owner}/{repo}/hooks/{hook_id}/deliveries", get(api::hooks::hook_deliveries))
        .route("/repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}", get(api::hooks::hook_delivery))
        .route("/repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts", post(api::hooks::redeliver))
        .route("/user", get(api::users::current_user))
        .route("/user/emails", get(api::users::emails))
        .route_layer(axum::middleware::from_fn_with_state(forge.clone(), sim::layer))
        .route("/login/oauth/authorize", get(oauth::authorize))
        .route("/login/oauth/access_token", post(oauth::access_token))
        .route("/_sim/oauth-apps", post(sim::register_oauth_app))
        .route(
            "/git/{owner}/{repo}/{*rest}",
            get(git::smart_http).post(git::smart_http).layer(axum::extract::DefaultBodyLimit::max(256 << 20)),
        )
        .route("/_sim/deliveries", get(sim::list_deliveries))
        .route("/_sim/users", post(sim::create_user))
        .route("/_sim/users/{login}/tokens", post(sim::user_token))
        .route("/_sim/repos", post(sim::create_repo))
        .route("/_sim/repos/{owner}/{repo}/files", post(sim::put_files))
        .route("/_sim/repos/{owner}/{repo}/collaborators", post(sim::add_collaborator))
        .route("/_sim/faults", post(sim::set_faults))
        .route("/_sim/exchanges", get(sim::exchanges))
        .fallback(|| async { http::error(axum::http::StatusCode::NOT_FOUND, "Not Found") })
        .with_state(forge)
}

fn main() -> ExitCode {
    ck8s_service::startup::main_with("forge-sim", std::env::args().skip(1).collect(), Config::load, run)
}
