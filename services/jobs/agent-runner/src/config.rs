//! The agent runner's settings: the run (`AgentEnv`) and the platform settings (`PlatformEnv`)
//! exactly as the worker wrote them — one shared pair of `to_env`/`from_env` in the domain, so a
//! misspelt or missing variable is an error naming it — plus the credentials that come through
//! the runtime's secret channel and the local work directory.

use ck8s_config::{ConfigError, Layers};
use ck8s_domain::forge::RepoRef;
use ck8s_domain::run_spec::{AgentEnv, PlatformEnv};
use secrecy::SecretString;
use std::path::PathBuf;

/// OpenAI's Responses API root (`POST {base}/responses`).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Everything one run reads at start.
pub struct Config {
    pub run: AgentEnv,
    pub platform: PlatformEnv,
    /// The run's repository (parsed from `run.repository_full_name`).
    pub repo: RepoRef,
    /// The Responses API the model is reached at: OpenAI itself unless another endpoint
    /// (model-sim) is named. Either way it is an explicit provider (Responses API over HTTP, key
    /// from `OPENAI_API_KEY`): the set-up verified with the pinned Codex CLI
    /// (`shared/spec/codex-cli.md`), where the built-in provider would switch to WebSockets and
    /// take its key from a login instead.
    pub model_base_url: String,
    pub bot_token: SecretString,
    pub model_key: SecretString,
    pub run_token: SecretString,
    /// The runner's own directory (its clone; on the local runtime the agent's too).
    pub workdir: PathBuf,
    /// The agent's directory: its work tree and `CODEX_HOME` (`CODEXK8S_AGENT_WORKDIR`; on
    /// Kubernetes the volume shared with the agent's container; else `<workdir>/agent`).
    pub agent_dir: PathBuf,
    /// The agent container's host directory (`CODEXK8S_AGENT_HOST_DIR`, Kubernetes): the agent
    /// runs there, not as a process of the runner.
    pub agent_host: Option<PathBuf>,
}

impl Config {
    /// Reads the settings; every problem is reported, each naming its variable, and no secret
    /// value is echoed.
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let lookup = |k: &str| layers.raw(k).map(String::from);
        let mut r = layers.reader();
        let run = match AgentEnv::from_env(&lookup) {
            Ok(run) => Some(run),
            Err(problems) => {
                for p in problems {
                    r.issue(p.key, p.message);
                }
                None
            }
        };
        let platform = PlatformEnv::from_env(&lookup);
        let bot_token = r.required_secret("GIT_BOT_TOKEN", "the bot's GitHub token (the worker passes it as a secret)");
        let model_key = r.required_secret("OPENAI_API_KEY", "the model API key (the worker passes it as a secret)");
        let run_token = r.required_secret("RUN_TOKEN", "the run's bearer token for control-plane (the worker passes it as a secret)");
        let workdir = r.opt_string("RUN_WORKDIR").map(PathBuf::from);
        let agent_dir = r.opt_string("AGENT_WORKDIR").map(PathBuf::from);
        let agent_host = r.opt_string("AGENT_HOST_DIR").map(PathBuf::from);
        r.finish()?;
        // `finish` fails whenever the run could not be read, so it is there.
        let Some(run) = run else { return Err(ConfigError::Invalid(vec![])) };
        let repo = RepoRef::parse(&run.repository_full_name).unwrap_or_else(|| RepoRef::new("-", "-"));
        let workdir = workdir.unwrap_or_else(|| std::env::temp_dir().join(format!("codex-k8s-run-{}", run.run_id)));
        let model_base_url = platform.model_base_url.clone().unwrap_or_else(|| OPENAI_BASE_URL.to_string());
        let agent_dir = agent_dir.unwrap_or_else(|| workdir.join("agent"));
        Ok(Self { run, platform, repo, model_base_url, bot_token, model_key, run_token, workdir, agent_dir, agent_host })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: Vec<(String, String)> = [
            ("CODEXK8S_RUN_ID", "7f0c8a52-2c1a-4a8e-9d3e-2b6f4f0f7a10"),
            ("CODEXK8S_REPOSITORY_FULL_NAME", "acme/app"),
            ("CODEXK8S_RUN_TRIGGER_KIND", "dev"),
            ("CODEXK8S_AGENT_KEY", "dev"),
            ("CODEXK8S_AGENT_DISPLAY_NAME", "AI Developer"),
            ("CODEXK8S_AGENT_MODEL", "gpt-5.4"),
            ("CODEXK8S_AGENT_REASONING_EFFORT", "high"),
            ("CODEXK8S_GIT_BOT_TOKEN", "t"),
            ("CODEXK8S_OPENAI_API_KEY", "k"),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", "http://127.0.0.1:9090"),
            ("CODEXK8S_RUN_TOKEN", "r"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(&Layers::from_parts(env, Vec::<String>::new()).expect("layers"))
    }

    #[test]
    fn the_model_is_openai_unless_another_endpoint_is_named() {
        assert_eq!(config(&[]).expect("config").model_base_url, "https://api.openai.com/v1");
        let c = config(&[("CODEXK8S_MODEL_BASE_URL", "http://127.0.0.1:8091/v1")]).expect("config");
        assert_eq!(c.model_base_url, "http://127.0.0.1:8091/v1");
    }

    #[test]
    fn a_misspelt_trigger_kind_is_refused_naming_the_variable() {
        let e = config(&[("CODEXK8S_RUN_TRIGGER_KIND", "dev-revise")]).err().expect("refused").to_string();
        assert!(e.contains("CODEXK8S_RUN_TRIGGER_KIND") && e.contains("dev-revise"), "{e}");
    }
}
