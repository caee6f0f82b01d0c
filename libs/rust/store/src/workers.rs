//! `worker_instances`: the heartbeat every worker keeps, which other workers read to detect
//! dead lease holders.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use std::time::Duration;

/// Registers or refreshes a worker's heartbeat; `ttl` is how long the heartbeat stays valid.
pub async fn heartbeat<'e>(
    db: impl PgExecutor<'e>,
    worker_id: &str,
    namespace: Option<&str>,
    pod_name: Option<&str>,
    ttl: Duration,
) -> Result<DateTime<Utc>, StoreError> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_scalar(
        "INSERT INTO worker_instances (worker_id, namespace, pod_name, status, started_at, heartbeat_at, expires_at)
         VALUES ($1, $2, $3, 'active', now(), now(), now() + make_interval(secs => $4::double precision / 1000))
         ON CONFLICT (worker_id) DO UPDATE SET
             namespace = EXCLUDED.namespace,
             pod_name = EXCLUDED.pod_name,
             status = 'active',
             started_at = CASE WHEN worker_instances.status = 'stopped' THEN now() ELSE worker_instances.started_at END,
             heartbeat_at = now(),
             expires_at = EXCLUDED.expires_at
         RETURNING expires_at",
    )
    .bind(worker_id)
    .bind(namespace)
    .bind(pod_name)
    .bind(ttl_ms)
    .fetch_one(db)
    .await
    .map_err(StoreError::from)
}

/// Marks a worker stopped (graceful shutdown) so others may reclaim its leases at once.
pub async fn mark_stopped<'e>(db: impl PgExecutor<'e>, worker_id: &str) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE worker_instances SET status = 'stopped', expires_at = now(), heartbeat_at = now() WHERE worker_id = $1")
        .bind(worker_id)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// One row of `worker_instances`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerInstance {
    pub worker_id: String,
    pub status: String,
    pub heartbeat_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Reads one worker's row.
pub async fn get<'e>(db: impl PgExecutor<'e>, worker_id: &str) -> Result<Option<WorkerInstance>, StoreError> {
    sqlx::query_as("SELECT worker_id, status, heartbeat_at, expires_at FROM worker_instances WHERE worker_id = $1")
        .bind(worker_id)
        .fetch_optional(db)
        .await
        .map_err(StoreError::from)
}
