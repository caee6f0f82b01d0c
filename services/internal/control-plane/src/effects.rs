//! The loop that carries out owed GitHub side effects (`ck8s-effects`), with repository tokens
//! opened from their sealed form only for the call that needs them ([`SealedProviders`]).

pub use ck8s_effects::SealedProviders;
use ck8s_effects::{Executor, ExecutorSettings};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Ticks the executor every `interval` until cancelled; a failing tick is logged and retried.
pub async fn run(executor: Executor, interval: Duration, token: CancellationToken) -> Result<(), std::convert::Infallible> {
    loop {
        match executor.drain().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(attempted = n, "side effects attempted"),
            Err(e) => {
                tracing::warn!(error = %ck8s_domain::report::Report(&e), "side-effect tick failed; retrying (is PostgreSQL reachable?)")
            }
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Default settings with this instance as lease owner, the console's address for links and the
/// bot's login (the author of status comments).
pub fn settings(owner: String, console_url: Option<String>, bot_login: String) -> ExecutorSettings {
    ExecutorSettings { owner, console_url, bot_login, ..Default::default() }
}
