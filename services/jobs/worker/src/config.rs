//! Typed configuration of worker.

use ck8s_config::{ConfigError, Layers};
use ck8s_store::DbConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything worker reads at start.
pub struct Config {
    pub db: DbConfig,
    pub http_addr: SocketAddr,
    pub worker_id: String,
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub heartbeat_interval: Duration,
    pub instance_ttl: Duration,
    pub shutdown_timeout: Duration,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("worker-{}", std::process::id()))
}

impl Config {
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let heartbeat_interval = r.duration("WORKER_HEARTBEAT_INTERVAL", Duration::from_secs(15));
        let instance_ttl = r.duration("WORKER_INSTANCE_TTL", Duration::from_secs(60));
        if instance_ttl <= heartbeat_interval {
            r.issue(
                "WORKER_INSTANCE_TTL",
                format!("must be longer than CODEXK8S_WORKER_HEARTBEAT_INTERVAL ({heartbeat_interval:?}), or live workers look dead"),
            );
        }
        let cfg = Self {
            db: DbConfig::read(&mut r),
            http_addr: r.socket_addr("HTTP_ADDR", "0.0.0.0:8082"),
            worker_id: r.opt_string("WORKER_ID").unwrap_or_else(hostname),
            namespace: r.opt_string("WORKER_K8S_NAMESPACE"),
            pod_name: r.opt_string("POD_NAME"),
            heartbeat_interval,
            instance_ttl,
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
        };
        ck8s_service::startup::warn_unused(&r);
        r.finish()?;
        Ok(cfg)
    }
}
