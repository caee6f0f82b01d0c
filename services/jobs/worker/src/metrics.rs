//! Metrics of worker.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct WorkerMetrics {
    pub heartbeats: Counter,
    pub heartbeat_failures: Counter,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("worker_heartbeats", "Heartbeats written to worker_instances", m.heartbeats.clone());
        registry.register("worker_heartbeat_failures", "Heartbeats that could not be written", m.heartbeat_failures.clone());
        m
    }
}
