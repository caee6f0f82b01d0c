//! The common shape of every `main`: telemetry, config (validated before any port is bound),
//! a multi-threaded runtime, run until stopped, and an exit code an operator can act on.

use ck8s_config::{ConfigError, Layers};
use std::future::Future;
use std::process::ExitCode;

/// Exit code for invalid configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;

/// Runs a binary: loads config from the process environment and `args`, then `run`s it.
///
/// Invalid configuration prints every problem to stderr, naming each variable, and exits with
/// code 2 before anything else happens.
pub fn main_with<C, L, R, Fut, E>(service: &'static str, args: Vec<String>, load: L, run: R) -> ExitCode
where
    L: FnOnce(&Layers) -> Result<C, ConfigError>,
    R: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    crate::telemetry::init(service);
    let config = Layers::from_parts(std::env::vars(), args).and_then(|layers| load(&layers));
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{service}: {e}\nFix the settings above and start again (see docs/runbook.md, \"Configuration\").");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = ck8s_domain::report::chain(&e);
            tracing::error!(error = %e, "{service} stopped with an error");
            eprintln!("{service}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Warns about settings given in a file or flag that nothing read (almost always typos).
pub fn warn_unused(reader: &ck8s_config::Reader<'_>) {
    for var in reader.unused_explicit() {
        tracing::warn!(setting = %var, "setting is not used by this service; check its spelling");
    }
}
