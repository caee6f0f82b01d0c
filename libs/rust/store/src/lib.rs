//! PostgreSQL access for codex-k8s: the connection pool, the forward-only migrations that
//! define the schema (owned by control-plane, embedded in every binary that needs them), and the
//! repositories the use-cases call. Repository functions take an executor or a transaction so
//! the use-case owns the transaction boundary. All SQL of the platform lives in this crate, and every
//! repository function answers with [`StoreError`]; services reach PostgreSQL only through it
//! (they do not depend on sqlx), including the `LISTEN` connection that wakes the workers.

pub mod agent;
pub mod bootstrap;
pub mod db;
pub mod effects;
pub mod error;
pub mod ingest;
pub mod listen;
pub mod redelivery;
pub mod runs;
pub mod status_comments;
pub mod workers;

pub use db::{Conn, DbConfig, MIGRATOR, Pool, Tx, begin, commit, connect, connect_lazy, migrate, ping, schema_version};
pub use error::StoreError;
