//! agent-runner: the program inside every run's pod. It validates the run's settings and checks
//! that control-plane answers; preparing the repository, running the Codex CLI, pushing and
//! reporting arrive with the agent-runner issue.

use ck8s_config::{ConfigError, Layers};
use ck8s_proto::controlplane::v1::GetStatusRequest;
use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
use std::process::ExitCode;
use std::time::Duration;

struct Config {
    run_id: String,
    control_plane_target: String,
    repository_full_name: String,
    /// Token for control-plane's API (per-run tokens replace it with the agent-runner work).
    control_plane_token: secrecy::SecretString,
}

impl Config {
    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let run_id = r.required_string("RUN_ID", "the id of the run this pod executes");
        if !run_id.is_empty() && run_id.parse::<uuid::Uuid>().is_err() {
            r.issue("RUN_ID", format!("invalid value {run_id:?}: expected a UUID"));
        }
        let repository_full_name = r.required_string("REPOSITORY_FULL_NAME", "owner/name of the repository");
        if !repository_full_name.is_empty() && repository_full_name.split('/').filter(|s| !s.is_empty()).count() != 2 {
            r.issue("REPOSITORY_FULL_NAME", format!("invalid value {repository_full_name:?}: expected owner/name"));
        }
        let cfg = Self {
            run_id,
            control_plane_target: r.required_string("CONTROL_PLANE_GRPC_TARGET", "gRPC URL of control-plane"),
            repository_full_name,
            control_plane_token: r.required_secret("CONTROL_PLANE_TOKEN", "bearer token for control-plane's API"),
        };
        r.finish()?;
        Ok(cfg)
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(cfg.control_plane_target.clone())
        .map_err(|e| format!("CODEXK8S_CONTROL_PLANE_GRPC_TARGET: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("control-plane at {} is unreachable: {e}", cfg.control_plane_target))?;
    let auth = ck8s_proto::auth::SendToken::new(secrecy::ExposeSecret::expose_secret(&cfg.control_plane_token))
        .map_err(|e| format!("CODEXK8S_CONTROL_PLANE_TOKEN: {e}"))?;
    let status = ControlPlaneClient::with_interceptor(channel, auth)
        .get_status(GetStatusRequest {})
        .await
        .map_err(|e| format!("control-plane status failed: {}", e.message()))?
        .into_inner();
    tracing::info!(run_id = %cfg.run_id, repository = %cfg.repository_full_name, control_plane = %status.version, "control-plane reachable");
    Ok(())
}

fn main() -> ExitCode {
    ck8s_service::startup::main_with("agent-runner", std::env::args().skip(1).collect(), Config::load, run)
}
