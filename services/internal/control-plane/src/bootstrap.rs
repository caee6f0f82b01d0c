//! Bootstrap of the first owner, allowed users, members, and the first project with its
//! repositories from configuration, applied idempotently at every start so the platform can
//! accept webhooks from a known sender for a known repository before any UI exists.

use ck8s_crypto::Sealer;
use ck8s_store::bootstrap as q;
use secrecy::{ExposeSecret, SecretString};

/// One repository to bind: `owner/name=<numeric id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSeed {
    pub owner: String,
    pub name: String,
    pub external_id: i64,
}

/// One member: `login:email:role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSeed {
    pub login: String,
    pub email: String,
    pub role: String,
}

/// What to bootstrap (every field optional; nothing configured means nothing to do).
#[derive(Clone, Default)]
pub struct BootstrapConfig {
    pub owner_email: Option<String>,
    pub owner_github_login: Option<String>,
    pub allowed_emails: Vec<String>,
    pub admin_emails: Vec<String>,
    pub members: Vec<MemberSeed>,
    pub project_slug: Option<String>,
    pub project_name: Option<String>,
    pub repositories: Vec<RepoSeed>,
    /// Full name of the platform's own repository (`CODEXK8S_GITHUB_REPO`).
    pub platform_repo: Option<String>,
    /// Token used to reach the repositories; sealed before it is stored.
    pub github_token: Option<SecretString>,
    pub learning_mode_default: bool,
}

/// An item of a bootstrap list setting that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("{0:?}: expected owner/name=<numeric repository id>")]
    Repository(String),
    #[error("{0:?}: the repository id must be a number")]
    RepositoryId(String),
    #[error("{0:?}: expected github-login:email:role with role read, read_write or admin")]
    Member(String),
}

/// Parses `owner/name=123,owner/other=456`.
pub fn parse_repositories(s: &str) -> Result<Vec<RepoSeed>, SeedError> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|item| {
            let bad = || SeedError::Repository(item.to_string());
            let (full, id) = item.split_once('=').ok_or_else(bad)?;
            let (owner, name) = full.trim().split_once('/').ok_or_else(bad)?;
            let external_id: i64 = id.trim().parse().map_err(|_| SeedError::RepositoryId(item.to_string()))?;
            if owner.is_empty() || name.is_empty() || name.contains('/') || external_id <= 0 {
                return Err(bad());
            }
            Ok(RepoSeed { owner: owner.to_string(), name: name.to_string(), external_id })
        })
        .collect()
}

/// Parses `login:email:role,...` (role read, read_write or admin).
pub fn parse_members(s: &str) -> Result<Vec<MemberSeed>, SeedError> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.split(':').map(str::trim).collect();
            match parts.as_slice() {
                [login, email, role]
                    if !login.is_empty() && email.contains('@') && role.parse::<ck8s_domain::project::ProjectRole>().is_ok() =>
                {
                    Ok(MemberSeed { login: login.to_string(), email: email.to_string(), role: role.to_string() })
                }
                _ => Err(SeedError::Member(item.to_string())),
            }
        })
        .collect()
}

/// What the bootstrap did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub owner: bool,
    pub users: usize,
    pub project: bool,
    pub repositories: usize,
    pub members: usize,
}

/// Applies the bootstrap in one transaction.
/// Why the bootstrap could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] ck8s_store::StoreError),
    #[error("the repository token cannot be sealed")]
    Seal(#[from] ck8s_crypto::CryptoError),
}

pub async fn apply(pool: &ck8s_store::Pool, cfg: &BootstrapConfig, sealer: &Sealer) -> Result<Applied, ApplyError> {
    let mut tx = ck8s_store::begin(pool).await?;
    let mut applied = Applied::default();
    let owner_id = match &cfg.owner_email {
        Some(email) => {
            applied.owner = true;
            Some(q::upsert_owner(&mut tx, email, cfg.owner_github_login.as_deref()).await?)
        }
        None => None,
    };
    for email in &cfg.allowed_emails {
        q::upsert_user(&mut tx, email, None, false).await?;
        applied.users += 1;
    }
    for email in &cfg.admin_emails {
        q::upsert_user(&mut tx, email, None, true).await?;
        applied.users += 1;
    }
    if let Some(slug) = &cfg.project_slug {
        let is_platform = cfg
            .platform_repo
            .as_ref()
            .is_some_and(|p| cfg.repositories.iter().any(|r| format!("{}/{}", r.owner, r.name).eq_ignore_ascii_case(p)));
        let name = cfg.project_name.clone().unwrap_or_else(|| slug.clone());
        let project_id = q::upsert_project(&mut tx, slug, &name, cfg.learning_mode_default, is_platform).await?;
        applied.project = true;
        if let Some(owner) = owner_id {
            q::upsert_member(&mut tx, project_id, owner, "admin").await?;
        }
        for m in &cfg.members {
            let user = q::upsert_user(&mut tx, &m.email, Some(&m.login), false).await?;
            q::upsert_member(&mut tx, project_id, user, &m.role).await?;
            applied.members += 1;
        }
        let token = cfg.github_token.as_ref().map(|t| t.expose_secret().to_string()).unwrap_or_default();
        for r in &cfg.repositories {
            let sealed = sealer.seal(&ck8s_crypto::repository_token_context("github", r.external_id), &token)?;
            q::upsert_repository(
                &mut tx,
                &q::RepositorySeed {
                    project_id,
                    provider: "github",
                    external_id: r.external_id,
                    owner: &r.owner,
                    name: &r.name,
                    default_ref: "main",
                    token_sealed: &sealed,
                },
            )
            .await?;
            applied.repositories += 1;
        }
    }
    ck8s_store::commit(tx).await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_parse_and_reject_malformed_items() {
        assert_eq!(
            parse_repositories("acme/app=42, acme/web=7").unwrap(),
            vec![
                RepoSeed { owner: "acme".into(), name: "app".into(), external_id: 42 },
                RepoSeed { owner: "acme".into(), name: "web".into(), external_id: 7 }
            ]
        );
        for bad in ["acme/app", "acme=1", "acme/app=x", "a/b/c=1", "/app=1", "acme/app=-3"] {
            assert!(parse_repositories(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn members_parse_and_reject_malformed_items() {
        assert_eq!(parse_members("alice:alice@x.io:read_write").unwrap()[0].role, "read_write");
        for bad in ["alice", "alice:x.io:read", "alice:a@x.io:owner", ":a@x.io:read"] {
            assert!(parse_members(bad).is_err(), "{bad}");
        }
    }
}
