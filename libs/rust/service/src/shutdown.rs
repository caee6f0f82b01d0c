//! Graceful shutdown: one cancellation token tree, cancelled on SIGTERM or SIGINT, and a drain
//! with a deadline so a stuck task cannot hold the process forever.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The root of the cancellation tree plus the tasks that must finish before exit.
pub struct Shutdown {
    token: CancellationToken,
    tasks: JoinSet<Result<(), String>>,
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
    pub fn spawn<F>(&mut self, name: &'static str, fut: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            let r = fut.await;
            if let Err(e) = &r {
                tracing::error!(task = name, error = %e, "task failed; shutting down");
                token.cancel();
            }
            r.map_err(|e| format!("{name}: {e}"))
        });
    }

    /// Waits until cancellation, then gives the tasks `deadline` to finish. Returns the first
    /// task error, or an error naming the deadline if tasks had to be abandoned.
    pub async fn run_until_stopped(mut self, deadline: Duration) -> Result<(), String> {
        let mut first_error = None;
        tokio::select! {
            biased;
            _ = self.token.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                // A task that ends before shutdown was requested is a failure of a long-running
                // service; one that ends because shutdown began (it saw the token first) is not.
                let stopping = self.token.is_cancelled();
                first_error = match joined {
                    Ok(Ok(())) if stopping => None,
                    Ok(Ok(())) => Some("a service task ended unexpectedly".to_string()),
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(format!("a service task panicked: {e}")),
                };
                self.token.cancel();
            }
        }
        let drain = async {
            while let Some(joined) = self.tasks.join_next().await {
                let r = match joined {
                    Ok(r) => r,
                    Err(e) => Err(format!("task panicked: {e}")),
                };
                if let (Err(e), None) = (r, &first_error) {
                    first_error = Some(e);
                }
            }
        };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            self.tasks.abort_all();
            return Err(format!("shutdown deadline of {deadline:?} exceeded; remaining tasks aborted"));
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
            Ok(())
        });
        let root = s.token();
        root.cancel();
        assert_eq!(s.run_until_stopped(Duration::from_secs(1)).await, Ok(()));
    }

    #[tokio::test]
    async fn a_task_finishing_right_after_cancel_is_a_clean_stop() {
        for _ in 0..200 {
            let mut s = Shutdown::new();
            let t = s.token();
            s.spawn("quick", async move {
                t.cancelled().await;
                Ok(())
            });
            let root = s.token();
            // Cancel from another task so the drain may observe the task's end first.
            tokio::spawn(async move { root.cancel() });
            assert_eq!(s.run_until_stopped(Duration::from_secs(1)).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn a_task_ending_on_its_own_is_an_error() {
        let mut s = Shutdown::new();
        s.spawn("short", async { Ok(()) });
        let err = s.run_until_stopped(Duration::from_secs(1)).await.unwrap_err();
        assert!(err.contains("ended unexpectedly"), "{err}");
    }

    #[tokio::test]
    async fn deadline_aborts_stuck_tasks() {
        let mut s = Shutdown::new();
        s.spawn("stuck", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        s.token().cancel();
        let err = s.run_until_stopped(Duration::from_millis(50)).await.unwrap_err();
        assert!(err.contains("deadline"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_task_stops_everything() {
        let mut s = Shutdown::new();
        let t = s.token();
        s.spawn("ok", async move {
            t.cancelled().await;
            Ok(())
        });
        s.spawn("bad", async { Err("boom".to_string()) });
        let err = s.run_until_stopped(Duration::from_secs(1)).await.unwrap_err();
        assert!(err.contains("boom"), "{err}");
    }
}
