//! Storage tests on a real PostgreSQL 18 + pgvector: a fresh database per test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod constraints;
mod ingest;
mod migrations;
mod runs;
mod vectors;
mod workers;

use sqlx::PgPool;
use uuid::Uuid;

/// Inserts a project and returns its id.
pub async fn project(pool: &PgPool, slug: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ($1, $1) RETURNING id").bind(slug).fetch_one(pool).await.unwrap()
}

/// Inserts a user and returns its id.
pub async fn user(pool: &PgPool, email: &str, owner: bool) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO users (email, is_platform_admin, is_platform_owner) VALUES ($1, $2, $2) RETURNING id")
        .bind(email)
        .bind(owner)
        .fetch_one(pool)
        .await
}

/// Inserts a pending run and returns its id.
pub async fn run(pool: &PgPool, project: Uuid, correlation_id: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO agent_runs (correlation_id, project_id, run_payload) VALUES ($1, $2, '{}') RETURNING id")
        .bind(correlation_id)
        .bind(project)
        .fetch_one(pool)
        .await
}

/// The constraint a failed write violated.
pub fn violated(e: sqlx::Error) -> String {
    match ck8s_store::StoreError::from(e) {
        ck8s_store::StoreError::Constraint { constraint, .. } => constraint,
        other => panic!("expected a constraint violation, got {other}"),
    }
}
