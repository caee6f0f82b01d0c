//! Typed configuration of control-plane.

use ck8s_config::{ConfigError, Layers};
use ck8s_store::DbConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything control-plane reads at start.
pub struct Config {
    pub db: DbConfig,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Seals tokens at rest; built at start so a bad key fails before anything is served.
    #[allow(dead_code)] // first used by the bootstrap of repositories (webhook ingest issue)
    pub sealer: ck8s_crypto::Sealer,
    pub migrate_on_start: bool,
    pub shutdown_timeout: Duration,
}

impl Config {
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let key = r.required_secret("TOKEN_ENCRYPTION_KEY", "64 hex characters; generate one with `openssl rand -hex 32`");
        let sealer = ck8s_crypto::Sealer::from_hex(&key).unwrap_or_else(|_| {
            if layers.raw("TOKEN_ENCRYPTION_KEY").is_some_and(|v| !v.trim().is_empty()) {
                r.issue("TOKEN_ENCRYPTION_KEY", "must be exactly 64 hexadecimal characters (32 bytes)");
            }
            ck8s_crypto::Sealer::placeholder()
        });
        let cfg = Self {
            db: DbConfig::read(&mut r),
            grpc_addr: r.socket_addr("GRPC_ADDR", "0.0.0.0:9090"),
            http_addr: r.socket_addr("HTTP_ADDR", "0.0.0.0:8081"),
            sealer,
            migrate_on_start: r.bool("MIGRATE_ON_START", false),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
        };
        ck8s_service::startup::warn_unused(&r);
        r.finish()?;
        Ok(cfg)
    }
}
