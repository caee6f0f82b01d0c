//! The loop that carries out owed GitHub side effects (`ck8s-effects`), with repository tokens
//! opened from their sealed form only for the call that needs them.

use ck8s_domain::forge::RepositoryProvider;
use ck8s_effects::{Executor, ExecutorSettings, ProviderSetupError, Providers, RepositoryRow};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Providers of GitHub repositories at `base_url`, with each repository's own token.
pub struct SealedProviders {
    pub sealer: Arc<ck8s_crypto::Sealer>,
    pub base_url: String,
}

impl Providers for SealedProviders {
    fn for_repository(&self, repo: &RepositoryRow) -> Result<Arc<dyn RepositoryProvider>, ProviderSetupError> {
        if repo.provider != "github" {
            return Err(ProviderSetupError(format!("provider {:?} is not supported yet (only github)", repo.provider)));
        }
        let token = self.sealer.open(&repo.token_encrypted).map_err(|_| {
            ProviderSetupError(format!("the token of {}/{} cannot be opened; check CODEXK8S_TOKEN_ENCRYPTION_KEY", repo.owner, repo.name))
        })?;
        let gh = Github::new(GithubSettings::new(self.base_url.clone(), token)).map_err(|e| ProviderSetupError(e.to_string()))?;
        Ok(Arc::new(GithubProvider::new(gh)))
    }
}

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
