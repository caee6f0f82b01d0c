//! Metrics of worker.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct WorkerMetrics {
    pub heartbeats: Counter,
    pub heartbeat_failures: Counter,
    pub redelivery_passes: Counter,
    pub redeliveries_requested: Counter,
    pub redeliveries_abandoned: Counter,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("worker_heartbeats", "Heartbeats written to worker_instances", m.heartbeats.clone());
        registry.register("worker_heartbeat_failures", "Heartbeats that could not be written", m.heartbeat_failures.clone());
        registry.register(
            "worker_webhook_redelivery_passes",
            "Passes of the webhook redelivery loop that completed",
            m.redelivery_passes.clone(),
        );
        registry.register(
            "worker_webhook_redeliveries_requested",
            "Lost webhook deliveries GitHub was asked to deliver again",
            m.redeliveries_requested.clone(),
        );
        registry.register(
            "worker_webhook_redeliveries_abandoned",
            "Lost webhook deliveries given up on after the request limit",
            m.redeliveries_abandoned.clone(),
        );
        m
    }
}
