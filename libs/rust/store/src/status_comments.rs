//! The stored side of each run's single status comment (`run_status_comments`): the comment's id
//! once created, the merged state, and whether a create was attempted. Reports of one run are
//! serialised by a PostgreSQL advisory lock held on one connection for the whole upsert
//! ([`StatusLock`]), so the forge calls in between see a consistent row.

use crate::db::Pool;
use crate::error::StoreError;
use ck8s_domain::comments::StatusState;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use uuid::Uuid;

/// The stored row of a run's status comment.
#[derive(Debug, Clone, Default)]
pub struct StoredStatus {
    pub comment_id: Option<i64>,
    pub state: StatusState,
    /// A create may have reached the forge without its id being stored.
    pub create_attempted: bool,
}

/// The advisory lock of one run's status comment, with the connection that holds it.
pub struct StatusLock {
    conn: PoolConnection<Postgres>,
    key: String,
    correlation_id: String,
}

impl std::fmt::Debug for StatusLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusLock").field("correlation_id", &self.correlation_id).finish_non_exhaustive()
    }
}

/// Waits for and takes the lock of the run with `correlation_id`.
pub async fn lock(pool: &Pool, correlation_id: &str) -> Result<StatusLock, StoreError> {
    let mut conn = pool.acquire().await?;
    let key = format!("codex-k8s:status:{correlation_id}");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))").bind(&key).execute(&mut *conn).await?;
    Ok(StatusLock { conn, key, correlation_id: correlation_id.to_string() })
}

impl StatusLock {
    /// The row of the run, created empty for `(repository, target)` if it does not exist.
    pub async fn ensure(&mut self, repository_id: Uuid, target_number: i64) -> Result<StoredStatus, StoreError> {
        sqlx::query(
            "INSERT INTO run_status_comments (correlation_id, repository_id, target_number) VALUES ($1, $2, $3) ON CONFLICT (correlation_id) DO NOTHING",
        )
        .bind(&self.correlation_id)
        .bind(repository_id)
        .bind(target_number as i32)
        .execute(&mut *self.conn)
        .await?;
        let (comment_id, state, create_attempted): (Option<i64>, serde_json::Value, bool) =
            sqlx::query_as("SELECT comment_id, state, create_attempted FROM run_status_comments WHERE correlation_id = $1")
                .bind(&self.correlation_id)
                .fetch_one(&mut *self.conn)
                .await?;
        // A state this build cannot read starts over: the comment's own marker carries it too.
        Ok(StoredStatus { comment_id, state: serde_json::from_value(state).unwrap_or_default(), create_attempted })
    }

    /// Records, before the forge call, that a create is about to happen.
    pub async fn mark_create_attempted(&mut self) -> Result<(), StoreError> {
        sqlx::query("UPDATE run_status_comments SET create_attempted = true WHERE correlation_id = $1")
            .bind(&self.correlation_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Stores the comment's id and the merged state.
    pub async fn save(&mut self, comment_id: i64, state: &StatusState) -> Result<(), StoreError> {
        sqlx::query("UPDATE run_status_comments SET comment_id = $2, state = $3 WHERE correlation_id = $1")
            .bind(&self.correlation_id)
            .bind(comment_id)
            .bind(serde_json::to_value(state).unwrap_or_default())
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Gives the lock up without a round trip: the connection is closed, not returned to the
    /// pool, and PostgreSQL releases a session's advisory locks when it ends.
    pub fn abandon(self) {
        drop(self.conn.detach());
    }

    /// Releases the lock. A connection that may still hold it never goes back to the pool.
    pub async fn unlock(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))").bind(&self.key).execute(&mut *self.conn).await;
        if unlocked.is_err() {
            self.conn.detach();
        }
    }
}
