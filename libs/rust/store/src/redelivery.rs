//! What the worker's webhook redelivery loop reads and records: the bound repositories, which
//! delivery ids ingest already holds, and the platform's own requests to GitHub to deliver again
//! (`webhook_redeliveries`).

use crate::effects::{REPOSITORY_COLUMNS, RepositoryRow};
use crate::{Pool, StoreError};
use chrono::{DateTime, Utc};
use ck8s_domain::redelivery::Requested;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Every bound repository, with its sealed token.
pub async fn repositories(pool: &Pool) -> Result<Vec<RepositoryRow>, StoreError> {
    let sql = format!("SELECT {REPOSITORY_COLUMNS} FROM repositories ORDER BY created_at, id");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// Which of `guids` ingest has recorded (whatever it decided about them).
pub async fn ingested(pool: &Pool, guids: &[String]) -> Result<HashSet<String>, StoreError> {
    let found: Vec<String> =
        sqlx::query_scalar("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY($1)").bind(guids).fetch_all(pool).await?;
    Ok(found.into_iter().collect())
}

/// The platform's earlier requests for `guids` of `repository`.
pub async fn requested(pool: &Pool, repository: Uuid, guids: &[String]) -> Result<HashMap<String, Requested>, StoreError> {
    let rows: Vec<(String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT delivery_guid, requests, last_request_at FROM webhook_redeliveries WHERE repository_id = $1 AND delivery_guid = ANY($2)",
    )
    .bind(repository)
    .bind(guids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(g, n, at)| (g, Requested { count: u32::try_from(n).unwrap_or(0), last_at: at })).collect())
}

/// Records that the platform asked for `guid` again at `at` (request number `request`).
pub async fn record_request(pool: &Pool, repository: Uuid, guid: &str, request: u32, at: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_redeliveries (repository_id, delivery_guid, requests, last_request_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repository_id, delivery_guid) DO UPDATE SET requests = GREATEST(webhook_redeliveries.requests, EXCLUDED.requests),
                last_request_at = EXCLUDED.last_request_at",
    )
    .bind(repository)
    .bind(guid)
    .bind(i32::try_from(request).unwrap_or(i32::MAX))
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks `guid` given up on; true the first time (so the loop says it once).
pub async fn abandon(pool: &Pool, repository: Uuid, guid: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE webhook_redeliveries SET abandoned_at = $3 WHERE repository_id = $1 AND delivery_guid = $2 AND abandoned_at IS NULL",
    )
    .bind(repository)
    .bind(guid)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Forgets requests older than `before` (GitHub no longer lists those deliveries); returns how many.
pub async fn prune(pool: &Pool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM webhook_redeliveries WHERE last_request_at < $1").bind(before).execute(pool).await?.rows_affected())
}
