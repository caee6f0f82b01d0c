//! Driving the Codex CLI (product spec §3.5, §6.1 step 8; `shared/spec/codex-cli.md`): write its
//! `config.toml` (model, reasoning, approval and sandbox, the model provider, the platform's MCP
//! server with its bearer token taken from the environment), run `codex exec --json` — or
//! `codex exec resume <session>` — with stdin closed, and read its events with the domain's reader.
//! Secrets go only through environment variables and are redacted from everything kept. Codex
//! runs in a process group of its own on the async runtime; if the run is dropped (the pod is
//! stopped), the whole group — Codex and every command it started — is killed.

use crate::host::Invocation;
use crate::sandbox::AgentUser;
use ck8s_domain::agent_run::{CodexTranscript, redact_all};
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
    /// The user the agent runs as (`None`: the runner's own).
    pub agent: Option<AgentUser>,
    /// The agent container's host directory (Kubernetes: the agent runs in a container of its
    /// own, [`crate::host`]); `None` runs Codex here.
    pub host: Option<PathBuf>,
}

/// Running Codex failed.
#[derive(Debug, thiserror::Error)]
pub enum CodexError {
    #[error("cannot start the Codex CLI at {0}: {1}")]
    Start(String, std::io::Error),
    #[error("the Codex CLI exited with {code:?}: {message}")]
    Failed { code: Option<i32>, message: String, transcript: Box<CodexTranscript> },
    #[error(
        "the agent's user cannot run the Codex CLI: {0}; install it where every user can read it (scripts/codex.sh does) and point CODEXK8S_CODEX_BIN at it"
    )]
    Unreachable(String),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
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

    /// The command line and environment of one Codex turn in `workdir` (new, or resuming
    /// `session`). The environment is all the agent gets: its home, the proxy's key (worth
    /// nothing beyond this run's proxy) and — only with an MCP server — the run's MCP token.
    pub fn invocation(&self, workdir: &Path, prompt: &str, session: Option<&str>) -> Result<Invocation, CodexError> {
        self.write_config()?;
        let mut args: Vec<String> = vec!["exec".into(), "--json".into(), "--skip-git-repo-check".into(), "--cd".into()];
        args.push(workdir.display().to_string());
        if self.output_schema {
            let schema = self.home.join("report-schema.json");
            std::fs::write(&schema, ck8s_domain::agent_run::report_schema().to_string())?;
            args.extend(["--output-schema".into(), schema.display().to_string()]);
        }
        if let Some(s) = session {
            args.extend(["resume".into(), s.to_string()]);
        }
        args.push(prompt.to_string());
        let home = self.home.display().to_string();
        let mut env = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())),
            ("HOME".into(), home.clone()),
            ("CODEX_HOME".into(), home),
            ("OPENAI_API_KEY".into(), self.api_key.expose_secret().to_string()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ];
        if let (Some(t), Some(_)) = (&self.mcp_token, &self.mcp) {
            env.push(("CODEXK8S_MCP_BEARER_TOKEN".into(), t.expose_secret().to_string()));
        }
        Ok(Invocation { program: self.binary.display().to_string(), args, env, cwd: workdir.display().to_string() })
    }

    /// Runs one Codex turn in `workdir` as the agent's user (when there is one); `extra_secrets`
    /// are redacted too. Its output is read line by line as it comes (bounded, redacted); when it
    /// ends, every process the agent left behind is killed before the runner looks at its files.
    pub async fn exec(
        &self,
        workdir: &Path,
        prompt: &str,
        session: Option<&str>,
        extra_secrets: &[&str],
    ) -> Result<CodexTranscript, CodexError> {
        let inv = self.invocation(workdir, prompt, session)?;
        let mut secrets = self.secrets();
        secrets.extend(extra_secrets.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let (transcript, tail, code) = match &self.host {
            Some(dir) => {
                let mut remote = crate::host::Remote::start(dir, &inv)?;
                let exit = remote.wait().await?;
                // The files are the agent's: opened without following links, read with caps.
                let out = tokio::fs::File::from_std(crate::host::open_plain(&remote.file("stdout"))?);
                let err = tokio::fs::File::from_std(crate::host::open_plain(&remote.file("stderr"))?);
                let (t, tail) = tokio::try_join!(read_transcript(Some(out), &refs), read_tail(Some(err)))?;
                (t, tail, exit.code)
            }
            None => self.exec_here(&inv, &refs).await?,
        };
        if code != Some(0) {
            let stderr = redact_all(tail.trim(), &refs);
            let message = transcript.errors.last().cloned().unwrap_or(stderr);
            tracing::warn!(code = ?code, "the Codex CLI failed");
            return Err(CodexError::Failed { code, message, transcript: Box::new(transcript) });
        }
        Ok(transcript)
    }

    /// Runs `inv` here, as the agent's user when there is one; every process that user left is
    /// killed when it ends (or when the run is dropped).
    async fn exec_here(&self, inv: &Invocation, refs: &[&str]) -> Result<(CodexTranscript, String, Option<i32>), CodexError> {
        if let Some(agent) = self.agent {
            if let Some(why) = crate::sandbox::unreachable_for_others(&self.binary) {
                return Err(CodexError::Unreachable(why));
            }
            agent.hand_over(&self.home)?;
        }
        let mut cmd = tokio::process::Command::new(&inv.program);
        cmd.args(&inv.args)
            .current_dir(&inv.cwd)
            .env_clear()
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(agent) = self.agent {
            cmd.uid(agent.uid).gid(agent.gid);
        }
        let mut child = cmd.spawn().map_err(|e| CodexError::Start(self.binary.display().to_string(), e))?;
        let mut group = GroupGuard { pgid: child.id(), agent: self.agent };
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (transcript, tail, status) = tokio::try_join!(read_transcript(stdout, refs), read_tail(stderr), child.wait())?;
        group.pgid = None;
        drop(group);
        Ok((transcript, tail, status.code()))
    }
}

/// Codex's JSON events, line by line with caps, redacted as they are read.
async fn read_transcript<R: tokio::io::AsyncRead + Unpin>(out: Option<R>, refs: &[&str]) -> std::io::Result<CodexTranscript> {
    let mut t = CodexTranscript::default();
    if let Some(out) = out {
        let mut lines = BoundedLines::new(out);
        while let Some(line) = lines.next().await? {
            t.feed(&line, refs);
        }
        t.unparsed_lines += lines.overlong;
    }
    Ok(t)
}

/// The last [`STDERR_TAIL`] bytes (about) of Codex's stderr.
async fn read_tail<R: tokio::io::AsyncRead + Unpin>(err: Option<R>) -> std::io::Result<String> {
    let mut tail = String::new();
    if let Some(err) = err {
        let mut lines = BoundedLines::new(err);
        while let Some(line) = lines.next().await? {
            tail.push_str(&line);
            tail.push('\n');
            if tail.len() > STDERR_TAIL {
                let cut = tail.len() - STDERR_TAIL / 2;
                tail = tail[tail.ceil_char_boundary(cut)..].to_string();
            }
        }
    }
    Ok(tail)
}

/// Bytes of Codex's stderr kept (the end of it).
const STDERR_TAIL: usize = 64 * 1024;
/// The longest line read from the agent; longer ones are skipped and counted.
const LINE_CAP: usize = 4 * 1024 * 1024;

/// Lines of a pipe, each at most [`LINE_CAP`] bytes: a longer line is drained and skipped, so an
/// agent printing without end cannot make the runner hold its output.
struct BoundedLines<R> {
    reader: tokio::io::BufReader<R>,
    overlong: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> BoundedLines<R> {
    fn new(r: R) -> Self {
        Self { reader: tokio::io::BufReader::new(r), overlong: 0 }
    }

    async fn next(&mut self) -> std::io::Result<Option<String>> {
        use tokio::io::AsyncBufReadExt;
        let mut line = Vec::new();
        let mut skipping = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok((!line.is_empty() && !skipping).then(|| String::from_utf8_lossy(&line).into_owned()));
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !skipping {
                line.extend_from_slice(chunk);
                if line.len() > LINE_CAP {
                    skipping = true;
                    line = Vec::new();
                    self.overlong += 1;
                }
            }
            let used = done.unwrap_or(buf.len());
            self.reader.consume(used);
            if done.is_some() {
                if skipping {
                    skipping = false;
                    continue;
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
        }
    }
}

/// Stops the agent when dropped: while armed (Codex still running: the run was stopped), its
/// process group is killed; always, every process of the agent's user is killed — including
/// those that left the group (`setsid`, a double fork).
struct GroupGuard {
    pgid: Option<u32>,
    agent: Option<AgentUser>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
            match rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL) {
                Ok(()) => tracing::info!(pgid = pgid.as_raw_nonzero().get(), "stopped the Codex CLI and its commands"),
                Err(e) => tracing::warn!(error = %e, "cannot stop the Codex CLI's process group"),
            }
        }
        if let Some(agent) = self.agent {
            let n = agent.kill_all();
            if n > 0 {
                tracing::info!(processes = n, uid = agent.uid, "stopped what the agent left running");
            }
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
            agent: None,
            host: None,
        };
        let t = c.config_toml();
        assert!(t.starts_with("model_provider = \"codexk8s\"\nmodel = \"gpt-5.4\"\nmodel_reasoning_effort = \"high\""), "{t}");
        assert!(t.contains("base_url = \"http://127.0.0.1:8091/v1\"") && t.contains("wire_api = \"responses\""));
        assert!(t.contains("[mcp_servers.codex-k8s]") && t.contains("bearer_token_env_var = \"CODEXK8S_MCP_BEARER_TOKEN\""));
        assert!(!t.contains("canary"), "{t}");
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
