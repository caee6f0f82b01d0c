//! worker: the background loops of codex-k8s. It keeps a heartbeat in `worker_instances` (which
//! other replicas read to detect dead lease holders) and, as the run lifecycle lands, claims
//! pending runs, launches and reconciles their jobs, and sweeps expired namespaces. Replicas
//! coordinate only through PostgreSQL.

mod config;
mod error;
mod heartbeat;
mod lifecycle;
mod metrics;
mod startup;

use std::process::ExitCode;

fn main() -> ExitCode {
    ck8s_service::startup::main_with("worker", std::env::args().skip(1).collect(), config::Config::load, startup::run)
}
