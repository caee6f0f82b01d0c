//! Driving the Codex CLI (product spec §3.5, §6.1 step 8; `shared/spec/codex-cli.md`): write its
//! `config.toml` (model, reasoning, approval and sandbox, the model provider, the platform's MCP
//! server with its bearer token taken from the environment), run `codex exec --json` — or
//! `codex exec resume <session>` — with stdin closed, and read its events with the domain's reader.
//! Secrets go only through environment variables and are redacted from everything kept. Codex
//! runs in a process group of its own on the async runtime; if the run is dropped (the pod is
//! stopped), the whole group — Codex and every command it started — is killed.

use ck8s_domain::agent_run::{CodexTranscript, read_codex_events, redact};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// An OpenAI-compatible Responses API endpoint (OpenAI itself, or model-sim).
#[derive(Debug, Clone)]
pub struct Provider {
    pub base_url: String,
}

/// The platform's MCP server for the run.
#[derive(Debug, Clone)]
pub struct Mcp {
    pub url: String,
}

/// How to run Codex for one run.
pub struct Codex {
    pub binary: PathBuf,
    /// `CODEX_HOME`: config, sessions, auth.
    pub home: PathBuf,
    pub model: String,
    pub reasoning_effort: String,
    /// `None` uses Codex's built-in OpenAI provider.
    pub provider: Option<Provider>,
    pub mcp: Option<Mcp>,
    pub api_key: SecretString,
    /// The run's MCP bearer token (`CODEXK8S_MCP_BEARER_TOKEN` in Codex's environment).
    pub mcp_token: Option<SecretString>,
    /// Ask for the final message as the JSON report (`--output-schema`, the domain's report schema).
    pub output_schema: bool,
}

/// Running Codex failed.
#[derive(Debug, thiserror::Error)]
pub enum CodexError {
    #[error("cannot start the Codex CLI at {0}: {1}")]
    Start(String, std::io::Error),
    #[error("the Codex CLI exited with {code:?}: {message}")]
    Failed { code: Option<i32>, message: String, transcript: Box<CodexTranscript> },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Codex {
    /// `config.toml` for this run (no secret is written: tokens are named by environment variable).
    pub fn config_toml(&self) -> String {
        let mut c = format!(
            "model = {}\nmodel_reasoning_effort = {}\napproval_policy = \"never\"\nsandbox_mode = \"danger-full-access\"\nmodel_verbosity = \"low\"\n\n[history]\npersistence = \"save-all\"\n",
            toml_str(&self.model),
            toml_str(&self.reasoning_effort)
        );
        if let Some(p) = &self.provider {
            c = format!(
                "model_provider = \"codexk8s\"\n{c}\n[model_providers.codexk8s]\nname = \"codex-k8s provider\"\nbase_url = {}\nwire_api = \"responses\"\nenv_key = \"OPENAI_API_KEY\"\n",
                toml_str(&p.base_url)
            );
        }
        if let Some(m) = &self.mcp {
            c.push_str(&format!(
                "\n[mcp_servers.codex-k8s]\nurl = {}\nbearer_token_env_var = \"CODEXK8S_MCP_BEARER_TOKEN\"\ntool_timeout_sec = 180\n",
                toml_str(&m.url)
            ));
        }
        c
    }

    /// Writes `config.toml` under `CODEX_HOME`.
    pub fn write_config(&self) -> Result<(), CodexError> {
        std::fs::create_dir_all(self.home.join("sessions"))?;
        std::fs::write(self.home.join("config.toml"), self.config_toml())?;
        Ok(())
    }

    fn secrets(&self) -> Vec<String> {
        let mut s = vec![self.api_key.expose_secret().to_string()];
        if let Some(t) = &self.mcp_token {
            s.push(t.expose_secret().to_string());
        }
        s
    }

    /// Runs one Codex turn in `workdir` (new, or resuming `session`); `extra_secrets` are redacted too.
    pub async fn exec(
        &self,
        workdir: &Path,
        prompt: &str,
        session: Option<&str>,
        extra_secrets: &[&str],
    ) -> Result<CodexTranscript, CodexError> {
        self.write_config()?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("exec").args(["--json", "--skip-git-repo-check", "--cd"]).arg(workdir);
        if self.output_schema {
            let schema = self.home.join("report-schema.json");
            std::fs::write(&schema, ck8s_domain::agent_run::report_schema().to_string())?;
            cmd.arg("--output-schema").arg(schema);
        }
        if let Some(s) = session {
            cmd.args(["resume", s]);
        }
        cmd.arg(prompt)
            .current_dir(workdir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("CODEX_HOME", &self.home)
            .env("OPENAI_API_KEY", self.api_key.expose_secret())
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(t) = &self.mcp_token {
            cmd.env("CODEXK8S_MCP_BEARER_TOKEN", t.expose_secret());
        }
        let child = cmd.spawn().map_err(|e| CodexError::Start(self.binary.display().to_string(), e))?;
        let mut group = GroupGuard(child.id());
        let out = child.wait_with_output().await?;
        group.0 = None;
        let mut secrets = self.secrets();
        secrets.extend(extra_secrets.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let transcript = read_codex_events(&String::from_utf8_lossy(&out.stdout), &refs);
        if !out.status.success() {
            let stderr = redact(String::from_utf8_lossy(&out.stderr).trim(), &refs);
            let message = transcript.errors.last().cloned().unwrap_or(stderr);
            return Err(CodexError::Failed { code: out.status.code(), message, transcript: Box::new(transcript) });
        }
        Ok(transcript)
    }
}

/// Kills a process group when dropped while armed: the Codex CLI and whatever it started.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) else { return };
        match rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL) {
            Ok(()) => tracing::info!(pgid = pgid.as_raw_nonzero().get(), "stopped the Codex CLI and its commands"),
            Err(e) => tracing::warn!(error = %e, "cannot stop the Codex CLI's process group"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_model_provider_and_mcp_server_but_holds_no_secret() {
        let c = Codex {
            binary: "codex".into(),
            home: "/tmp/h".into(),
            model: "gpt-5.4".into(),
            reasoning_effort: "high".into(),
            provider: Some(Provider { base_url: "http://127.0.0.1:8091/v1".into() }),
            mcp: Some(Mcp { url: "http://control-plane:8081/mcp".into() }),
            api_key: SecretString::from("sk-canary-123456".to_string()),
            mcp_token: Some(SecretString::from("run-token-canary".to_string())),
            output_schema: true,
        };
        let t = c.config_toml();
        assert!(t.starts_with("model_provider = \"codexk8s\"\nmodel = \"gpt-5.4\"\nmodel_reasoning_effort = \"high\""), "{t}");
        assert!(t.contains("base_url = \"http://127.0.0.1:8091/v1\"") && t.contains("wire_api = \"responses\""));
        assert!(t.contains("[mcp_servers.codex-k8s]") && t.contains("bearer_token_env_var = \"CODEXK8S_MCP_BEARER_TOKEN\""));
        assert!(!t.contains("canary"), "{t}");
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
