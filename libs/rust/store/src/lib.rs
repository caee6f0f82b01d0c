//! PostgreSQL access for codex-k8s: the connection pool, the forward-only migrations that
//! define the schema (owned by control-plane, embedded in every binary that needs them), and the
//! repositories the use-cases call. Repository functions take an executor or a transaction so
//! the use-case owns the transaction boundary. All SQL of the platform lives in this crate.

pub mod agent;
pub mod bootstrap;
pub mod db;
pub mod error;
pub mod ingest;
pub mod runs;
pub mod workers;

pub use db::{DbConfig, MIGRATOR, connect, connect_lazy, migrate, ping};
pub use error::StoreError;
