//! Graceful shutdown: one cancellation token tree, cancelled on SIGTERM or SIGINT, and a drain
//! with a deadline so a stuck task cannot hold the process forever.

use crate::error::{BoxError, ServiceError};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The root of the cancellation tree plus the tasks that must finish before exit.
pub struct Shutdown {
    token: CancellationToken,
    tasks: JoinSet<(&'static str, Result<(), BoxError>)>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A tree that is cancelled only when [`Shutdown::token`]'s owner cancels it.
    pub fn new() -> Self {
        Self { token: CancellationToken::new(), tasks: JoinSet::new() }
    }

    /// A tree that is also cancelled on SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let s = Self::new();
        let token = s.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, draining");
            token.cancel();
        });
        s
    }

    /// The root token; child tokens reach every server and loop.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs a task that must observe the token and end after cancellation.
    pub fn spawn<F, E>(&mut self, name: &'static str, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            let r = fut.await.map_err(Into::into);
            if let Err(e) = &r {
                tracing::error!(task = name, error = %ck8s_domain::report::Report(e.as_ref()), "task failed; shutting down");
                token.cancel();
            }
            (name, r)
        });
    }

    /// Waits until cancellation, then gives the tasks `deadline` to finish. Returns the first
    /// task error, or an error naming the deadline if tasks had to be abandoned.
    pub async fn run_until_stopped(mut self, deadline: Duration) -> Result<(), ServiceError> {
        let mut first_error = None;
        tokio::select! {
            biased;
            _ = self.token.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                // A task that ends before shutdown was requested is a failure of a long-running
                // service; one that ends because shutdown began (it saw the token first) is not.
                let stopping = self.token.is_cancelled();
                first_error = match joined {
                    Ok((_, Ok(()))) if stopping => None,
                    Ok((task, Ok(()))) => Some(ServiceError::Ended { task }),
                    Ok((task, Err(source))) => Some(ServiceError::Task { task, source }),
                    Err(e) => Some(ServiceError::Panicked(e)),
                };
                self.token.cancel();
            }
        }
        let drain = async {
            while let Some(joined) = self.tasks.join_next().await {
                let failed = match joined {
                    Ok((_, Ok(()))) => None,
                    Ok((task, Err(source))) => Some(ServiceError::Task { task, source }),
                    Err(e) => Some(ServiceError::Panicked(e)),
                };
                if first_error.is_none() {
                    first_error = failed;
                }
            }
        };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            self.tasks.abort_all();
            return Err(ServiceError::DeadlineExceeded(deadline));
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                tracing::info!("shutdown complete");
                Ok(())
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_tasks_after_cancel() {
        let mut s = Shutdown::new();
        let t = s.token();
        s.spawn("loop", async move {
            t.cancelled().await;
            Ok::<(), std::io::Error>(())
        });
        let root = s.token();
        root.cancel();
        assert!(s.run_until_stopped(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn a_task_finishing_right_after_cancel_is_a_clean_stop() {
        for _ in 0..200 {
            let mut s = Shutdown::new();
            let t = s.token();
            s.spawn("quick", async move {
                t.cancelled().await;
                Ok::<(), std::io::Error>(())
            });
            let root = s.token();
            // Cancel from another task so the drain may observe the task's end first.
            tokio::spawn(async move { root.cancel() });
            assert!(s.run_until_stopped(Duration::from_secs(1)).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_task_ending_on_its_own_is_an_error() {
        let mut s = Shutdown::new();
        s.spawn("short", async { Ok::<(), std::io::Error>(()) });
        let err = s.run_until_stopped(Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(err.contains("ended unexpectedly") && err.contains("short"), "{err}");
    }

    #[tokio::test]
    async fn deadline_aborts_stuck_tasks() {
        let mut s = Shutdown::new();
        s.spawn("stuck", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), std::io::Error>(())
        });
        s.token().cancel();
        let err = s.run_until_stopped(Duration::from_millis(50)).await.unwrap_err().to_string();
        assert!(err.contains("deadline"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_task_stops_everything() {
        let mut s = Shutdown::new();
        let t = s.token();
        s.spawn("ok", async move {
            t.cancelled().await;
            Ok::<(), std::io::Error>(())
        });
        s.spawn("bad", async { Err(std::io::Error::other("boom")) });
        let err = s.run_until_stopped(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(ck8s_domain::report::chain(&err), "task bad failed: boom");
    }
}
