//! Providers of GitHub repositories with each repository's own token, opened from its sealed
//! form only for the provider that needs it (control-plane's executor and callbacks, the worker's
//! redelivery loop).

use crate::executor::{ProviderSetupError, Providers};
use ck8s_domain::forge::RepositoryProvider;
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_store::effects::RepositoryRow;
use std::sync::Arc;

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
        let context = ck8s_crypto::repository_token_context(&repo.provider, repo.external_id);
        let token = self.sealer.open(&context, &repo.token_encrypted).map_err(|_| {
            ProviderSetupError(format!("the token of {}/{} cannot be opened; check CODEXK8S_TOKEN_ENCRYPTION_KEY", repo.owner, repo.name))
        })?;
        let gh = Github::new(GithubSettings::new(self.base_url.clone(), token)).map_err(|e| ProviderSetupError(e.to_string()))?;
        Ok(Arc::new(GithubProvider::new(gh)))
    }
}
