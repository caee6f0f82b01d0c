//! control-plane: owns the PostgreSQL schema and migrations, runs the domain use-cases (webhook
//! ingest and trigger policy, bootstrap of the first owner and project), carries out the GitHub
//! side effects owed by committed ingests, and serves the internal gRPC API to api-gateway, worker
//! and agent-runner.
//!
//! The library holds the use-cases so tests can drive them on a real database; `main.rs` only
//! wires them into a process.

pub mod agent;
pub mod bootstrap;
pub mod config;
pub mod effects;
pub mod error;
pub mod grpc;
pub mod ingest;
pub mod startup;
