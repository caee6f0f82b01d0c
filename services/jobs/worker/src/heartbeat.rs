//! The heartbeat loop: refreshes this worker's `worker_instances` row every interval and marks it
//! stopped on graceful shutdown, so other replicas can reclaim its leases at once.

use crate::metrics::WorkerMetrics;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Heartbeat {
    pub pool: ck8s_store::Pool,
    pub worker_id: String,
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub interval: Duration,
    pub ttl: Duration,
    pub metrics: WorkerMetrics,
}

impl Heartbeat {
    /// Beats until cancelled, then marks the worker stopped; failures are logged and retried.
    pub async fn run(self, token: CancellationToken) -> Result<(), std::convert::Infallible> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            match ck8s_store::workers::heartbeat(&self.pool, &self.worker_id, self.namespace.as_deref(), self.pod_name.as_deref(), self.ttl)
                .await
            {
                Ok(expires_at) => {
                    self.metrics.heartbeats.inc();
                    tracing::debug!(worker_id = %self.worker_id, %expires_at, "heartbeat");
                }
                Err(e) => {
                    self.metrics.heartbeat_failures.inc();
                    tracing::warn!(worker_id = %self.worker_id, error = %ck8s_domain::report::Report(&e), "heartbeat failed; will retry");
                }
            }
        }
        match ck8s_store::workers::mark_stopped(&self.pool, &self.worker_id).await {
            Ok(_) => tracing::info!(worker_id = %self.worker_id, "worker marked stopped"),
            Err(e) => {
                tracing::warn!(worker_id = %self.worker_id, error = %ck8s_domain::report::Report(&e), "could not mark worker stopped; its heartbeat will expire")
            }
        }
        Ok(())
    }
}
