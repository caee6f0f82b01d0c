//! The errors every service's plumbing can end with: a port it cannot bind, a server that
//! fails, a task that fails, ends on its own or panics, and a drain past its deadline. Each
//! message is short and says what to do; the cause is its `source()`.

use std::net::SocketAddr;
use std::time::Duration;

/// Any error a service task or readiness check hands back (its own typed error, boxed).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The service's plumbing failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({setting}); free the port or set {setting} to another address")]
    Bind {
        addr: SocketAddr,
        setting: String,
        #[source]
        source: std::io::Error,
    },
    /// A bound listener's address cannot be read.
    #[error("cannot read the address of the {listener} listener")]
    LocalAddr {
        listener: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A long-running task failed.
    #[error("task {task} failed")]
    Task {
        task: &'static str,
        #[source]
        source: BoxError,
    },
    /// A long-running task ended before shutdown was requested.
    #[error("task {task} ended unexpectedly")]
    Ended { task: &'static str },
    /// A task panicked.
    #[error("a service task panicked")]
    Panicked(#[source] tokio::task::JoinError),
    /// Tasks did not finish within the drain deadline.
    #[error("shutdown deadline of {0:?} exceeded; remaining tasks aborted")]
    DeadlineExceeded(Duration),
}
