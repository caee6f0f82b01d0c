//! The pure domain of codex-k8s: the vocabulary (agents, project roles, run statuses) and the
//! rules over it, with no knowledge of PostgreSQL, Kubernetes, GitHub or any transport.
//!
//! Decisions here are functions from values to values; adapters elsewhere perform them. Time
//! comes from the [`clock::Clock`] port so tests can pin it. The crate must never depend on
//! sqlx, kube, tonic, axum, hyper or reqwest: `scripts/check-domain-deps.sh` fails the test run
//! if it ever does.

pub mod agent;
pub mod agent_run;
pub mod clock;
pub mod comments;
pub mod duration;
pub mod effects;
pub mod forge;
pub mod labels;
pub mod lifecycle;
pub mod policy;
pub mod profile;
pub mod project;
pub mod redelivery;
pub mod report;
pub mod run;
pub mod run_spec;
pub mod runtime;
pub mod stage;
pub mod webhook;
