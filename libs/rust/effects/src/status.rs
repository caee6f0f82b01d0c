//! The upsert of a run's single status comment (product spec §7.1–7.2).
//!
//! Every report is merged into the state stored for the run (phases only move forward), rendered
//! in the run's locale and written to the one comment. The comment's id is stored after the first
//! create, so later reports edit it directly and never depend on the forge's comment list, which
//! can lag behind a create. Reports of one run are serialised by a PostgreSQL advisory lock held
//! for the whole upsert. Before creating, the stored flag `create_attempted` is committed: if a
//! process dies between the create and storing the id, the next upsert knows a comment may exist
//! and looks for its marker through the lagging list (waiting up to `LagPolicy`) before creating.

use ck8s_domain::comments::{Locale, StatusState, render_status};
use ck8s_domain::forge::{ProviderError, RepoRef, RepositoryProvider};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// How long to look for a comment that may have been created but is not listed yet.
#[derive(Debug, Clone, Copy)]
pub struct LagPolicy {
    pub attempts: u32,
    pub wait: Duration,
}

impl Default for LagPolicy {
    fn default() -> Self {
        Self { attempts: 5, wait: Duration::from_secs(2) }
    }
}

/// Where a run's status comment lives.
#[derive(Debug, Clone)]
pub struct Target {
    pub correlation_id: String,
    pub repository_id: Uuid,
    pub repo: RepoRef,
    pub number: i64,
}

/// What the upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub comment_id: i64,
    pub created: bool,
    pub state: StatusState,
}

/// An upsert failed.
#[derive(Debug, thiserror::Error)]
pub enum UpsertError {
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl UpsertError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpsertError::Provider(e) => e.is_retryable(),
            UpsertError::Db(_) => true,
        }
    }
}

async fn find_own(p: &dyn RepositoryProvider, t: &Target, run_id: &str) -> Result<Option<(i64, StatusState)>, ProviderError> {
    let comments = p.list_comments(&t.repo, t.number).await?;
    Ok(comments.into_iter().find_map(|c| StatusState::from_comment(&c.body).filter(|s| s.run_id == run_id).map(|s| (c.id, s))))
}

/// Merges `report` into the run's status comment, creating the comment only if it does not exist.
pub async fn upsert(
    pool: &PgPool,
    p: &dyn RepositoryProvider,
    t: &Target,
    report: &StatusState,
    locale: Locale,
    lag: LagPolicy,
) -> Result<Upserted, UpsertError> {
    let mut conn = pool.acquire().await?;
    let key = format!("codex-k8s:status:{}", t.correlation_id);
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))").bind(&key).execute(&mut *conn).await?;
    let result = upsert_locked(&mut conn, p, t, report, locale, lag).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))").bind(&key).execute(&mut *conn).await;
    if unlocked.is_err() {
        // A connection that may still hold the lock must not go back to the pool.
        conn.detach();
    }
    result
}

async fn upsert_locked(
    conn: &mut sqlx::PgConnection,
    p: &dyn RepositoryProvider,
    t: &Target,
    report: &StatusState,
    locale: Locale,
    lag: LagPolicy,
) -> Result<Upserted, UpsertError> {
    sqlx::query(
        "INSERT INTO run_status_comments (correlation_id, repository_id, target_number) VALUES ($1, $2, $3) ON CONFLICT (correlation_id) DO NOTHING",
    )
    .bind(&t.correlation_id)
    .bind(t.repository_id)
    .bind(t.number as i32)
    .execute(&mut *conn)
    .await?;
    let (comment_id, stored, create_attempted): (Option<i64>, serde_json::Value, bool) =
        sqlx::query_as("SELECT comment_id, state, create_attempted FROM run_status_comments WHERE correlation_id = $1")
            .bind(&t.correlation_id)
            .fetch_one(&mut *conn)
            .await?;
    let stored: StatusState = serde_json::from_value(stored).unwrap_or_default();
    let mut state = stored.merge(report);
    if state.run_id.is_empty() {
        state.run_id = t.correlation_id.clone();
    }

    let mut target = comment_id;
    if target.is_none() {
        let mut found = find_own(p, t, &state.run_id).await?;
        if found.is_none() && create_attempted {
            // A create may have happened without its id being stored: wait for the list to show it.
            for _ in 0..lag.attempts {
                tokio::time::sleep(lag.wait).await;
                found = find_own(p, t, &state.run_id).await?;
                if found.is_some() {
                    break;
                }
            }
        }
        if let Some((id, on_forge)) = found {
            state = on_forge.merge(&state);
            target = Some(id);
        }
    }
    let body = render_status(&state, locale);
    let (id, created) = match target {
        Some(id) => match p.update_comment(&t.repo, id, &body).await {
            Ok(c) => (c.id, false),
            // Deleted by someone: write a new one.
            Err(ProviderError::NotFound(_)) => (create(conn, p, t, &body).await?, true),
            Err(e) => return Err(e.into()),
        },
        None => (create(conn, p, t, &body).await?, true),
    };
    sqlx::query("UPDATE run_status_comments SET comment_id = $2, state = $3 WHERE correlation_id = $1")
        .bind(&t.correlation_id)
        .bind(id)
        .bind(serde_json::to_value(&state).unwrap_or_default())
        .execute(&mut *conn)
        .await?;
    Ok(Upserted { comment_id: id, created, state })
}

async fn create(conn: &mut sqlx::PgConnection, p: &dyn RepositoryProvider, t: &Target, body: &str) -> Result<i64, UpsertError> {
    sqlx::query("UPDATE run_status_comments SET create_attempted = true WHERE correlation_id = $1")
        .bind(&t.correlation_id)
        .execute(&mut *conn)
        .await?;
    Ok(p.create_comment(&t.repo, t.number, body).await?.id)
}
