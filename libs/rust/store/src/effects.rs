//! The queue of owed GitHub side effects (`github_side_effects`): rows are recorded in the same
//! transaction as the decision that owes them (`ingest::owe_side_effect`), claimed in batches
//! with `SKIP LOCKED` and a lease, and their outcome is written only by the claim that holds them:
//! a claim's attempt number is its fencing token, so an executor that was too slow and lost its
//! lease to another cannot overwrite that one's outcome.

use crate::db::Pool;
use crate::error::StoreError;
use ck8s_domain::effects::{EffectDecodeError, OwedEffect};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// One claimed row.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub idempotency_key: String,
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
    pub repository_id: Uuid,
    pub target_number: i64,
    /// The effect, or why its stored form cannot be read.
    pub effect: Result<OwedEffect, EffectDecodeError>,
    /// This claim's attempt (1 for the first); also the fencing token of [`record`].
    pub attempts: i32,
    /// The row's `kind` column, for logs of rows that cannot be decoded.
    pub kind: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    idempotency_key: String,
    correlation_id: String,
    run_id: Option<Uuid>,
    repository_id: Uuid,
    kind: String,
    target_number: i32,
    payload: Value,
    attempts: i32,
}

/// Claims up to `batch` due effects for `owner` for `lease`, oldest first.
pub async fn claim_due(pool: &Pool, owner: &str, lease: Duration, batch: i64) -> Result<Vec<Claimed>, StoreError> {
    let mut rows: Vec<Row> = sqlx::query_as(
        "UPDATE github_side_effects SET status = 'in_progress', lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
                attempts = attempts + 1
         WHERE id IN (SELECT id FROM github_side_effects
                      WHERE status IN ('pending', 'in_progress') AND next_attempt_at <= now()
                        AND (status = 'pending' OR lease_until < now())
                      ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $3)
         RETURNING id, idempotency_key, correlation_id, run_id, repository_id, kind, target_number, payload, attempts",
    )
    .bind(owner)
    .bind(lease.as_millis() as f64)
    .bind(batch)
    .fetch_all(pool)
    .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            effect: OwedEffect::decode(&r.kind, &r.payload),
            id: r.id,
            idempotency_key: r.idempotency_key,
            correlation_id: r.correlation_id,
            run_id: r.run_id,
            repository_id: r.repository_id,
            target_number: i64::from(r.target_number),
            attempts: r.attempts,
            kind: r.kind,
        })
        .collect())
}

/// A repository as the executor needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepositoryRow {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    pub provider: String,
    /// The provider's stable id of the repository (the sealed token is bound to it).
    pub external_id: i64,
    /// The sealed token (AES-GCM); only the provider factory opens it.
    pub token_encrypted: Vec<u8>,
}

/// The columns of [`RepositoryRow`].
pub(crate) const REPOSITORY_COLUMNS: &str = "id, owner, name, provider, external_id, token_encrypted";

/// The repository an effect is owed on, if it is still registered.
pub async fn repository(pool: &Pool, id: Uuid) -> Result<Option<RepositoryRow>, StoreError> {
    let sql = format!("SELECT {REPOSITORY_COLUMNS} FROM repositories WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done, with what the forge answered.
    Done(Value),
    /// Try again after `wait`.
    Retry { error: String, wait: Duration },
    /// Given up.
    Failed(String),
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The outcome and its flow event are stored.
    Stored,
    /// Another claim took the row over meanwhile; nothing was written.
    LeaseLost,
}

/// Writes the outcome of claim `c` and its flow event (`github.side_effect.done`,
/// `…retry_scheduled`, `…failed`), only if the row is still held by this claim.
pub async fn record(pool: &Pool, c: &Claimed, owner: &str, outcome: &Outcome) -> Result<Recorded, StoreError> {
    let mut tx = pool.begin().await?;
    let held = "id = $1 AND status = 'in_progress' AND lease_owner = $2 AND attempts = $3";
    let (n, event, payload) = match outcome {
        Outcome::Done(result) => {
            let n = sqlx::query(&format!(
                "UPDATE github_side_effects SET status = 'done', done_at = now(), result = $4, last_error = NULL,
                        lease_owner = NULL, lease_until = NULL WHERE {held}"
            ))
            .bind(c.id)
            .bind(owner)
            .bind(c.attempts)
            .bind(result)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            (n, "github.side_effect.done", json!({"kind": c.kind, "key": c.idempotency_key, "attempts": c.attempts, "result": result}))
        }
        Outcome::Retry { error, wait } => {
            let n = sqlx::query(&format!(
                "UPDATE github_side_effects SET status = 'pending', last_error = $4, lease_owner = NULL, lease_until = NULL,
                        next_attempt_at = now() + $5 * interval '1 millisecond' WHERE {held}"
            ))
            .bind(c.id)
            .bind(owner)
            .bind(c.attempts)
            .bind(error)
            .bind(wait.as_millis() as f64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let payload = json!({"kind": c.kind, "key": c.idempotency_key, "attempts": c.attempts, "error": error, "retry_in_ms": wait.as_millis() as u64});
            (n, "github.side_effect.retry_scheduled", payload)
        }
        Outcome::Failed(error) => {
            let n = sqlx::query(&format!(
                "UPDATE github_side_effects SET status = 'failed', last_error = $4, lease_owner = NULL, lease_until = NULL WHERE {held}"
            ))
            .bind(c.id)
            .bind(owner)
            .bind(c.attempts)
            .bind(error)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            (n, "github.side_effect.failed", json!({"kind": c.kind, "key": c.idempotency_key, "attempts": c.attempts, "error": error}))
        }
    };
    if n == 0 {
        return Ok(Recorded::LeaseLost);
    }
    crate::ingest::flow_event(&mut tx, &c.correlation_id, c.run_id, "system", owner, event, &payload).await?;
    tx.commit().await?;
    Ok(Recorded::Stored)
}
