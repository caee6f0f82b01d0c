//! The `LISTEN` connection that wakes workers when ingest commits a pending run
//! (`NOTIFY codexk8s_run_pending`). A lost connection (a restarted server, a terminated backend,
//! a network break) is opened again with a growing pause, and the caller hears of it: a
//! notification sent while the connection was down is lost, so the caller looks for work at once.

use crate::db::Pool;
use crate::error::StoreError;
use sqlx::postgres::PgListener;
use std::time::Duration;

/// Channel on which pending runs are announced to workers.
pub use crate::ingest::RUN_PENDING_CHANNEL;

/// Why [`Listener::wake`] returned.
#[derive(Debug)]
pub enum Wake {
    /// A notification arrived.
    Notified,
    /// The connection was (re)opened; notifications may have been missed meanwhile.
    Reconnected,
}

/// A self-healing `LISTEN` on one channel.
pub struct Listener {
    pool: Pool,
    channel: &'static str,
    conn: Option<PgListener>,
    /// Pause before the next reconnect attempt.
    backoff: Duration,
    first_error_logged: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("channel", &self.channel).field("connected", &self.conn.is_some()).finish()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Listener {
    /// A listener on `channel`; it connects on the first [`Listener::wake`].
    pub fn new(pool: Pool, channel: &'static str) -> Self {
        Self { pool, channel, conn: None, backoff: MIN_BACKOFF, first_error_logged: false }
    }

    async fn open(&self) -> Result<PgListener, StoreError> {
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(self.channel).await?;
        Ok(l)
    }

    /// Waits until a notification arrives or the connection is open again after a loss. Never
    /// fails: errors are logged and retried with a pause that grows up to five seconds.
    pub async fn wake(&mut self) -> Wake {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                match self.open().await {
                    Ok(l) => {
                        self.conn = Some(l);
                        self.backoff = MIN_BACKOFF;
                        if self.first_error_logged {
                            tracing::info!(channel = self.channel, "LISTEN connection open again");
                        }
                        return Wake::Reconnected;
                    }
                    Err(e) => {
                        self.pause(&e).await;
                        continue;
                    }
                }
            };
            match conn.try_recv().await {
                Ok(Some(_)) => return Wake::Notified,
                // The connection closed under us; sqlx dropped it, we open a new one.
                Ok(None) => {
                    self.conn = None;
                    tracing::warn!(channel = self.channel, "LISTEN connection lost; opening it again");
                    self.first_error_logged = true;
                }
                Err(e) => {
                    self.conn = None;
                    self.pause(&StoreError::from(e)).await;
                }
            }
        }
    }

    /// Waits before the next attempt. The pause grows before it starts, so a caller that gives up
    /// waiting (its own poll timer fired) still backs off next time; only the first failure of a
    /// run of failures is a warning.
    async fn pause(&mut self, e: &StoreError) {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if wait == MIN_BACKOFF {
            tracing::warn!(channel = self.channel, error = %ck8s_domain::report::Report(e), "LISTEN connection failed; polling meanwhile and retrying");
        } else {
            tracing::debug!(channel = self.channel, error = %ck8s_domain::report::Report(e), retry_in_ms = wait.as_millis() as u64, "LISTEN still failing");
        }
        self.first_error_logged = true;
        tokio::time::sleep(wait).await;
    }
}
