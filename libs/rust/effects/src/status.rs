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
use ck8s_store::status_comments::{self, StatusLock};
use ck8s_store::{Pool, StoreError};
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
    /// The bot's login: only its comments are ever taken for the run's status comment (anyone
    /// can post a comment that carries a marker).
    pub bot_login: String,
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
    #[error("the forge refused the status comment")]
    Provider(#[from] ProviderError),
    #[error("the status comment's row cannot be read or written")]
    Store(#[from] StoreError),
    /// The forge did not finish within the time the run's lock may be held; the lock was given
    /// back (its connection closed) and the report is retried later.
    #[error("the status comment was not updated within {0:?}; the forge is slow or unreachable, retrying later")]
    Deadline(Duration),
}

impl UpsertError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpsertError::Provider(e) => e.is_retryable(),
            UpsertError::Store(_) | UpsertError::Deadline(_) => true,
        }
    }
}

async fn find_own(p: &dyn RepositoryProvider, t: &Target, run_id: &str) -> Result<Option<(i64, StatusState)>, ProviderError> {
    let comments = p.list_comments(&t.repo, t.number).await?;
    Ok(comments
        .into_iter()
        .filter(|c| c.author.eq_ignore_ascii_case(&t.bot_login))
        .find_map(|c| StatusState::from_comment(&c.body).filter(|s| s.run_id == run_id).map(|s| (c.id, s))))
}

/// Merges `report` into the run's status comment, creating the comment only if it does not exist.
pub async fn upsert(
    pool: &Pool,
    p: &dyn RepositoryProvider,
    t: &Target,
    report: &StatusState,
    locale: Locale,
    lag: LagPolicy,
) -> Result<Upserted, UpsertError> {
    upsert_within(pool, p, t, report, locale, lag, MAX_LOCK_HOLD).await
}

/// How long one upsert may hold its run's lock (a few forge calls, each bounded by the client's
/// own timeout, plus the lag retries).
pub const MAX_LOCK_HOLD: Duration = Duration::from_secs(120);

/// [`upsert`], holding the run's lock at most `hold`: past it the forge calls are abandoned, the
/// lock's connection is closed (PostgreSQL releases the lock with it) and the answer is
/// [`UpsertError::Deadline`], so a hung forge never blocks the run's other reports for good.
pub async fn upsert_within(
    pool: &Pool,
    p: &dyn RepositoryProvider,
    t: &Target,
    report: &StatusState,
    locale: Locale,
    lag: LagPolicy,
    hold: Duration,
) -> Result<Upserted, UpsertError> {
    let mut lock = status_comments::lock(pool, &t.correlation_id).await?;
    match tokio::time::timeout(hold, upsert_locked(&mut lock, p, t, report, locale, lag)).await {
        Ok(result) => {
            lock.unlock().await;
            result
        }
        Err(_) => {
            lock.abandon();
            Err(UpsertError::Deadline(hold))
        }
    }
}

async fn upsert_locked(
    lock: &mut StatusLock,
    p: &dyn RepositoryProvider,
    t: &Target,
    report: &StatusState,
    locale: Locale,
    lag: LagPolicy,
) -> Result<Upserted, UpsertError> {
    let stored = lock.ensure(t.repository_id, t.number).await?;
    let mut state = stored.state.merge(report);
    if state.run_id.is_empty() {
        state.run_id = t.correlation_id.clone();
    }

    let mut target = stored.comment_id;
    if target.is_none() {
        let mut found = find_own(p, t, &state.run_id).await?;
        if found.is_none() && stored.create_attempted {
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
            Err(ProviderError::NotFound(_)) => (create(lock, p, t, &body).await?, true),
            Err(e) => return Err(e.into()),
        },
        None => (create(lock, p, t, &body).await?, true),
    };
    lock.save(id, &state).await?;
    Ok(Upserted { comment_id: id, created, state })
}

async fn create(lock: &mut StatusLock, p: &dyn RepositoryProvider, t: &Target, body: &str) -> Result<i64, UpsertError> {
    lock.mark_create_attempted().await?;
    Ok(p.create_comment(&t.repo, t.number, body).await?.id)
}
