//! agent-runner: the program inside every run's pod (or local process). It only wires: telemetry,
//! the settings the worker wrote (`config`), a runtime, the run (`job::execute`), then one JSON
//! line with the outcome and the exit code both ends agree on (`AgentExit`: 0 success, 1 failure,
//! 2 bad settings, 3 write-scope violation, 42 nothing to revise). SIGTERM stops the run and saves
//! its session before the process exits. `agent-runner agent-host <dir>` is the agent
//! container's side of a run pod instead (`host`): it runs what the runner asks, nothing more.

use agent_runner::config::Config;
use agent_runner::job;
use ck8s_config::Layers;
use ck8s_domain::run_spec::AgentExit;
use serde_json::json;
use std::process::ExitCode;

fn bad_settings(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("agent-runner: {e}");
    ExitCode::from(AgentExit::BadSettings.code())
}

fn main() -> ExitCode {
    agent_runner::sandbox::seal_runner();
    ck8s_service::telemetry::init("agent-runner");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent-host") {
        return agent_host(&args[1..]);
    }
    let cfg = match Layers::from_parts(std::env::vars(), args).and_then(|l| Config::load(&l)) {
        Ok(c) => c,
        Err(e) => return bad_settings(e),
    };
    let outcome = match until_sigterm("stopping the run and saving its session", |stop| job::execute(cfg, stop)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match outcome {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!("{}", json!({"event": "run.agent.failed", "exit_code": f.exit.code(), "error": f.message}));
            eprintln!("agent-runner: {}", f.message);
            ExitCode::from(f.exit.code())
        }
    }
}

/// The agent container's program: carries out the runner's commands from `<dir>` until SIGTERM.
fn agent_host(args: &[String]) -> ExitCode {
    let [dir] = args else {
        eprintln!("agent-runner: usage: agent-runner agent-host <shared directory>");
        return ExitCode::from(AgentExit::BadSettings.code());
    };
    let served = match until_sigterm("stopping the agent's command", |stop| agent_runner::host::serve(std::path::Path::new(dir), stop)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            ExitCode::from(AgentExit::Failed.code())
        }
    }
}

/// Runs `work` on a single-threaded runtime; SIGTERM cancels the token it is given (`what` says
/// what that does). Fails only when the runtime cannot start.
fn until_sigterm<F, Fut>(what: &'static str, work: F) -> Result<Fut::Output, ExitCode>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("agent-runner: cannot start the async runtime: {e}");
        ExitCode::from(AgentExit::Failed.code())
    })?;
    let stop = tokio_util::sync::CancellationToken::new();
    Ok(rt.block_on(async {
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                tracing::warn!("SIGTERM: {what}");
                on_signal.cancel();
            }
        });
        work(stop).await
    }))
}
