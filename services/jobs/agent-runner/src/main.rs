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
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-runner: cannot start the async runtime: {e}");
            return ExitCode::from(AgentExit::Failed.code());
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let outcome = rt.block_on(async {
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                tracing::warn!("SIGTERM: stopping the run and saving its session");
                on_signal.cancel();
            }
        });
        job::execute(cfg, stop).await
    });
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
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-runner: cannot start the async runtime: {e}");
            return ExitCode::from(AgentExit::Failed.code());
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let served = rt.block_on(async {
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                on_signal.cancel();
            }
        });
        agent_runner::host::serve(std::path::Path::new(dir), stop).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            ExitCode::from(AgentExit::Failed.code())
        }
    }
}
