//! Metrics of worker.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct WorkerMetrics {
    /// Seconds from a run's creation by ingest (its delivery's transaction) to its job being
    /// created: ingest, the NOTIFY, the claim, the namespace and the launch.
    pub run_start: Histogram,
    pub heartbeats: Counter,
    pub heartbeat_failures: Counter,
    pub redelivery_passes: Counter,
    pub redeliveries_requested: Counter,
    pub redeliveries_abandoned: Counter,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            run_start: Histogram::new([0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            heartbeats: Counter::default(),
            heartbeat_failures: Counter::default(),
            redelivery_passes: Counter::default(),
            redeliveries_requested: Counter::default(),
            redeliveries_abandoned: Counter::default(),
        };
        registry.register(
            "worker_run_start_seconds",
            "Seconds from a run's creation by ingest to its job being created",
            m.run_start.clone(),
        );
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
