//! Typed configuration of api-gateway.

use ck8s_config::{ConfigError, Layers};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::time::Duration;

/// Everything api-gateway reads at start.
pub struct Config {
    /// The public port: the webhook endpoint and bare probes.
    pub http_addr: SocketAddr,
    /// The admin port: detailed readiness and metrics (never exposed outside the cluster).
    pub admin_addr: SocketAddr,
    /// Timeouts and caps of the public port.
    pub limits: ck8s_service::server::Limits,
    /// gRPC endpoint of control-plane, e.g. `http://127.0.0.1:9090`.
    pub control_plane_target: String,
    pub webhook_secret: SecretString,
    /// Bearer token for control-plane's internal API.
    pub internal_api_token: SecretString,
    pub webhook_max_body_bytes: usize,
    pub shutdown_timeout: Duration,
}

/// The shortest webhook secret accepted.
pub const MIN_WEBHOOK_SECRET: usize = 16;

impl Config {
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let control_plane_target = r.string("CONTROL_PLANE_GRPC_TARGET", "http://127.0.0.1:9090");
        if !(control_plane_target.starts_with("http://") || control_plane_target.starts_with("https://")) {
            r.issue(
                "CONTROL_PLANE_GRPC_TARGET",
                format!("invalid value {control_plane_target:?}: expected a URL such as http://control-plane:9090"),
            );
        }
        let webhook_max_body_bytes = r.parse("WEBHOOK_MAX_BODY_BYTES", 1usize << 20, "a size in bytes, e.g. 1048576");
        if !(1024..=ck8s_proto::MAX_WEBHOOK_BODY_BYTES).contains(&webhook_max_body_bytes) {
            r.issue(
                "WEBHOOK_MAX_BODY_BYTES",
                format!("must be between 1024 and {} bytes (GitHub's payload cap)", ck8s_proto::MAX_WEBHOOK_BODY_BYTES),
            );
        }
        let webhook_secret = r.required_secret("GITHUB_WEBHOOK_SECRET", "the secret configured on the repository webhook");
        if (1..MIN_WEBHOOK_SECRET).contains(&webhook_secret.expose_secret().len()) {
            r.issue(
                "GITHUB_WEBHOOK_SECRET",
                format!("is too short: at least {MIN_WEBHOOK_SECRET} characters (a short secret lets anyone sign webhooks); generate one with `openssl rand -hex 32`"),
            );
        }
        let cfg = Self {
            http_addr: r.socket_addr("HTTP_ADDR", "0.0.0.0:8080"),
            admin_addr: r.socket_addr("ADMIN_ADDR", "0.0.0.0:8090"),
            limits: ck8s_service::server::Limits::read(&mut r),
            control_plane_target,
            webhook_secret,
            webhook_max_body_bytes,
            internal_api_token: r.required_secret("INTERNAL_API_TOKEN", "the token control-plane expects on its internal API"),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
        };
        ck8s_service::startup::warn_unused(&r);
        r.finish()?;
        Ok(cfg)
    }
}
