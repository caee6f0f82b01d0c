//! Idempotent bootstrap of the first owner, allowed users, and the first project with its
//! repositories, applied by control-plane at start from configuration.

use crate::error::StoreError;
use sqlx::PgConnection;
use uuid::Uuid;

/// Makes `email` the single platform owner (and an admin); any previous owner loses the flag.
pub async fn upsert_owner(db: &mut PgConnection, email: &str, github_login: Option<&str>) -> Result<Uuid, StoreError> {
    sqlx::query("UPDATE users SET is_platform_owner = false WHERE is_platform_owner AND email <> $1::citext")
        .bind(email)
        .execute(&mut *db)
        .await?;
    sqlx::query_scalar(
        "INSERT INTO users (email, github_login, is_platform_admin, is_platform_owner) VALUES ($1, $2, true, true)
         ON CONFLICT (email) DO UPDATE SET is_platform_admin = true, is_platform_owner = true,
             github_login = COALESCE(EXCLUDED.github_login, users.github_login)
         RETURNING id",
    )
    .bind(email)
    .bind(github_login)
    .fetch_one(db)
    .await
    .map_err(StoreError::from)
}

/// Adds an allowed user (an email allow-list entry); admins get the admin flag.
pub async fn upsert_user(db: &mut PgConnection, email: &str, github_login: Option<&str>, admin: bool) -> Result<Uuid, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO users (email, github_login, is_platform_admin) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO UPDATE SET is_platform_admin = users.is_platform_admin OR EXCLUDED.is_platform_admin,
             github_login = COALESCE(EXCLUDED.github_login, users.github_login)
         RETURNING id",
    )
    .bind(email)
    .bind(github_login)
    .bind(admin)
    .fetch_one(db)
    .await
    .map_err(StoreError::from)
}

/// Creates or updates a project by slug.
pub async fn upsert_project(
    db: &mut PgConnection,
    slug: &str,
    name: &str,
    learning_mode_default: bool,
    is_platform: bool,
) -> Result<Uuid, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO projects (slug, name, settings, is_platform) VALUES ($1, $2, jsonb_build_object('learning_mode_default', $3::boolean), $4)
         ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, is_platform = projects.is_platform OR EXCLUDED.is_platform
         RETURNING id",
    )
    .bind(slug)
    .bind(name)
    .bind(learning_mode_default)
    .bind(is_platform)
    .fetch_one(db)
    .await.map_err(StoreError::from)
}

/// Adds or updates a membership.
pub async fn upsert_member(db: &mut PgConnection, project_id: Uuid, user_id: Uuid, role: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(role)
    .execute(db)
    .await?;
    Ok(())
}

/// A repository binding to create or update.
#[derive(Debug, Clone)]
pub struct RepositorySeed<'a> {
    pub project_id: Uuid,
    pub provider: &'a str,
    pub external_id: i64,
    pub owner: &'a str,
    pub name: &'a str,
    pub default_ref: &'a str,
    pub token_sealed: &'a [u8],
}

/// Binds a repository to a project (by provider and numeric id).
///
/// A repository deleted and created again under the same owner/name gets a new numeric id (as
/// does the demo repository of every fresh forge-sim): the project's binding of that owner/name
/// is moved to the new id, keeping its runs. The alias is the name, or `owner-name` when another
/// repository of the project already has that alias.
pub async fn upsert_repository(db: &mut PgConnection, r: &RepositorySeed<'_>) -> Result<Uuid, StoreError> {
    sqlx::query(
        "UPDATE repositories SET external_id = $3
         WHERE project_id = $1 AND provider = $2 AND lower(owner) = lower($4) AND lower(name) = lower($5) AND external_id <> $3
           AND NOT EXISTS (SELECT 1 FROM repositories o WHERE o.provider = $2 AND o.external_id = $3)",
    )
    .bind(r.project_id)
    .bind(r.provider)
    .bind(r.external_id)
    .bind(r.owner)
    .bind(r.name)
    .execute(&mut *db)
    .await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM repositories WHERE project_id = $1 AND alias = $2 AND NOT (provider = $3 AND external_id = $4))",
    )
    .bind(r.project_id)
    .bind(r.name)
    .bind(r.provider)
    .bind(r.external_id)
    .fetch_one(&mut *db)
    .await?;
    let alias = if taken { format!("{}-{}", r.owner, r.name) } else { r.name.to_string() };
    sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, default_ref, token_encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (provider, external_id) DO UPDATE SET project_id = EXCLUDED.project_id, owner = EXCLUDED.owner,
             name = EXCLUDED.name, default_ref = EXCLUDED.default_ref, token_encrypted = EXCLUDED.token_encrypted
         RETURNING id",
    )
    .bind(r.project_id)
    .bind(r.provider)
    .bind(r.external_id)
    .bind(r.owner)
    .bind(r.name)
    .bind(alias)
    .bind(r.default_ref)
    .bind(r.token_sealed)
    .fetch_one(db)
    .await
    .map_err(StoreError::from)
}
