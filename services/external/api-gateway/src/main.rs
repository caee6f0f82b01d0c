//! api-gateway: the only public edge of codex-k8s. It checks what arrives (headers, size,
//! signatures, staff identity), forwards it to control-plane over gRPC, and holds no business
//! logic and no SQL.

mod config;
mod error;
mod metrics;
mod startup;
mod webhook;

use std::process::ExitCode;

fn main() -> ExitCode {
    ck8s_service::startup::main_with("api-gateway", std::env::args().skip(1).collect(), config::Config::load, startup::run)
}
