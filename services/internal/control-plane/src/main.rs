//! control-plane: owns the PostgreSQL schema and migrations, runs the domain use-cases and serves
//! the internal gRPC API (and later MCP) to api-gateway, worker and agent-runner.
//!
//! `control-plane` serves; `control-plane migrate` applies pending migrations and exits (the
//! migration Job before a rollout, and the local stack at start).

use control_plane::{config, startup};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let migrate_only = args.first().is_some_and(|a| a == "migrate");
    if migrate_only {
        args.remove(0);
    }
    ck8s_service::startup::main_with("control-plane", args, config::Config::load, move |cfg| async move {
        if migrate_only { startup::migrate_only(cfg).await } else { startup::run(cfg).await }
    })
}
