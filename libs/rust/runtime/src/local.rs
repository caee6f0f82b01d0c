//! The local-process runtime. A run directory `<root>/<namespace>/<job>/` stands in for the
//! namespace; the job runs under `/bin/sh run.sh` in its own process group with `timeout` as
//! its active deadline, and every fact about it lives in files of that directory:
//!
//! - `pid`       the wrapper's pid (= the process group id), written at launch;
//! - `job.log`   stdout and stderr;
//! - `exit_code` written by the wrapper when the command ends;
//! - `canceled`  written by `cancel`;
//! - `secrets.env` credentials (mode 0600), sourced by the wrapper, never in the command line.
//!
//! Because state is on disk, a job outlives the worker that launched it, and any worker can read
//! its status, its logs, or cancel it — as with Kubernetes Jobs.

use ck8s_domain::runtime::{
    BoxFuture, EnvironmentInfo, JobRef, JobRuntime, JobSpec, JobState, RunEnvironment, RuntimeError, validate_name,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs jobs as local process groups under `root`.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    root: PathBuf,
}

/// Exit code `timeout` uses when the deadline passed.
const TIMEOUT_EXIT: i32 = 124;

fn io(e: std::io::Error) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

impl LocalRuntime {
    /// A runtime keeping run directories under `root`, made (or checked) to be this process's own:
    /// a real directory (not a link), owned by the effective user, mode 0700. A directory someone
    /// else made in a shared place such as `/tmp` is refused, never adopted: its owner could swap
    /// the run directories inside it.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let root = root.into();
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let meta = std::fs::symlink_metadata(&root).map_err(io)?;
        // The owner of /proc/self is this process's effective user.
        let me = std::fs::metadata("/proc/self").map_err(io)?.uid();
        if !meta.is_dir() || meta.uid() != me {
            return Err(RuntimeError::Refused(format!(
                "{} is {} owned by uid {}, not by this worker (uid {me}); remove it, or set CODEXK8S_WORKER_LOCAL_RUNTIME_DIR to a directory of the worker's own",
                root.display(),
                if meta.file_type().is_symlink() {
                    "a link"
                } else if meta.is_dir() {
                    "a directory"
                } else {
                    "a file"
                },
                meta.uid()
            )));
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self { root })
    }

    /// A runtime keeping run directories under `root`, as it is (tests; [`LocalRuntime::open`]
    /// secures it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory of a job.
    pub fn job_dir(&self, job: &JobRef) -> PathBuf {
        self.root.join(&job.namespace).join(&job.job_name)
    }

    fn read_i32(path: &Path) -> Option<i32> {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok())
    }

    /// Whether any process of the group `pgid` is alive (zombies do not count).
    fn group_alive(pgid: i32) -> bool {
        // Fast path: the wrapper leads the group and lives as long as its command.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pgid}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let mut f = rest.split_whitespace();
            let (state, _ppid, pgrp) = (f.next().unwrap_or("Z"), f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
            // Still leading its own group: not a stranger that reused the pid.
            if state != "Z" && state != "X" && pgrp == Some(pgid) {
                return true;
            }
        }
        // The leader is gone: look for survivors of its group (children it left behind).
        let Ok(entries) = std::fs::read_dir("/proc") else { return false };
        entries.flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
            // Fields after the command name: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return false };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let _ppid = f.next();
            let pgrp = f.next().and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
    }

    async fn signal_group(pgid: i32, signal: &str) {
        let _ = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{pgid}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    fn state_of(dir: &Path) -> JobState {
        if !dir.exists() {
            return JobState::NotFound;
        }
        if dir.join("canceled").exists() {
            return JobState::Failed { reason: "canceled".into(), exit_code: None };
        }
        if let Some(code) = Self::read_i32(&dir.join("exit_code")) {
            return match code {
                0 => JobState::Succeeded,
                TIMEOUT_EXIT => JobState::Failed { reason: "active deadline exceeded".into(), exit_code: Some(code) },
                c => JobState::Failed { reason: format!("exit code {c}"), exit_code: Some(c) },
            };
        }
        match Self::read_i32(&dir.join("pid")) {
            None => JobState::Pending,
            Some(pgid) if Self::group_alive(pgid) => JobState::Running,
            // Re-check: the wrapper may have written its exit code just now.
            Some(_) => match Self::read_i32(&dir.join("exit_code")) {
                Some(0) => JobState::Succeeded,
                Some(c) => JobState::Failed { reason: format!("exit code {c}"), exit_code: Some(c) },
                None => JobState::Failed { reason: "the process ended without an exit code (killed)".into(), exit_code: None },
            },
        }
    }

    async fn do_launch(&self, spec: &JobSpec) -> Result<JobRef, RuntimeError> {
        validate_name("namespace", &spec.namespace)?;
        validate_name("job name", &spec.job_name)?;
        if spec.command.is_empty() {
            return Err(RuntimeError::Invalid("the command is empty".into()));
        }
        let job = JobRef { namespace: spec.namespace.clone(), job_name: spec.job_name.clone() };
        let dir = self.job_dir(&job);
        if dir.join("pid").exists() {
            return Ok(job); // already launched: launching is idempotent
        }
        std::fs::create_dir_all(dir.join("workspace")).map_err(io)?;
        // The job's files (its log, the secret file while it exists) are the runner's alone: an
        // agent running as a user of its own cannot even list them.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io)?;

        let secrets: String = spec.secret_env.iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect();
        write_private(&dir.join("secrets.env"), &secrets).map_err(io)?;
        let deadline = spec.active_deadline.as_secs().max(1);
        let wrapper = format!(
            "#!/bin/sh\n# codex-k8s local job {ns}/{job}\n. ./secrets.env\nrm -f ./secrets.env\ncd workspace\n\
             timeout --kill-after=10s {deadline}s \"$@\"\ncode=$?\necho \"$code\" > ../exit_code.tmp && mv ../exit_code.tmp ../exit_code\n",
            ns = spec.namespace,
            job = spec.job_name,
        );
        std::fs::write(dir.join("run.sh"), wrapper).map_err(io)?;
        let log = std::fs::File::create(dir.join("job.log")).map_err(io)?;

        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("run.sh")
            .args(&spec.command)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
            .env("HOME", dir.join("workspace"))
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Other(format!("cannot start the job: {e}")))?;
        let pid = child.id().ok_or_else(|| RuntimeError::Other("the job exited before its pid was known".into()))?;
        std::fs::write(dir.join("pid"), pid.to_string()).map_err(io)?;
        // Reap the wrapper when it ends; if this worker dies first, init reaps it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        tracing::info!(namespace = %job.namespace, job = %job.job_name, pid, "local job launched");
        Ok(job)
    }

    async fn do_cancel(&self, job: &JobRef) -> Result<(), RuntimeError> {
        let dir = self.job_dir(job);
        if !dir.exists() {
            return Ok(());
        }
        let finished = dir.join("exit_code").exists();
        if !finished && !dir.join("canceled").exists() {
            std::fs::write(dir.join("canceled"), "").map_err(io)?;
        }
        let Some(pgid) = Self::read_i32(&dir.join("pid")) else { return Ok(()) };
        if !Self::group_alive(pgid) {
            return Ok(());
        }
        Self::signal_group(pgid, "TERM").await;
        let started = Instant::now();
        while Self::group_alive(pgid) {
            if started.elapsed() > Duration::from_secs(5) {
                Self::signal_group(pgid, "KILL").await;
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err(RuntimeError::Other(format!("process group {pgid} survived SIGKILL")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(namespace = %job.namespace, job = %job.job_name, "local job canceled");
        Ok(())
    }
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(content.as_bytes())
}

/// The most of a job log read at once (its end).
pub const LOG_READ_CAP: u64 = 1 << 20;

/// File in a run directory that marks it as managed and carries its labels and annotations.
const ENVIRONMENT_FILE: &str = "environment";

impl JobRuntime for LocalRuntime {
    fn prepare<'a>(&'a self, env: &'a RunEnvironment) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &env.namespace)?;
            let dir = self.root.join(&env.namespace);
            // A directory the runtime did not make (no environment file) is not adopted.
            if dir.exists() && !dir.join(ENVIRONMENT_FILE).exists() {
                return Err(RuntimeError::Refused(format!(
                    "{} exists and was not created by codex-k8s; it is left untouched",
                    env.namespace
                )));
            }
            std::fs::create_dir_all(&dir).map_err(io)?;
            let mut text = String::from("managed-by=codex-k8s-worker\n");
            for (k, v) in env.labels.iter().chain(env.annotations.iter()) {
                text.push_str(&format!("{k}={}\n", v.replace('\n', " ")));
            }
            std::fs::write(dir.join(ENVIRONMENT_FILE), text).map_err(io)
        })
    }

    fn environments<'a>(&'a self) -> BoxFuture<'a, Result<Vec<EnvironmentInfo>, RuntimeError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(out) };
            for e in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(e.path().join(ENVIRONMENT_FILE)) else { continue };
                let metadata: std::collections::BTreeMap<String, String> =
                    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
                if metadata.get("managed-by").map(String::as_str) != Some("codex-k8s-worker") {
                    continue;
                }
                let active = std::fs::read_dir(e.path()).into_iter().flatten().flatten().any(|job| {
                    let dir = job.path();
                    !dir.join("exit_code").exists() && Self::read_i32(&dir.join("pid")).is_some_and(Self::group_alive)
                });
                out.push(EnvironmentInfo { namespace: e.file_name().to_string_lossy().to_string(), metadata, active });
            }
            out.sort_by(|a, b| a.namespace.cmp(&b.namespace));
            Ok(out)
        })
    }

    fn delete_environment<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", namespace)?;
            let dir = self.root.join(namespace);
            if !dir.exists() {
                return Ok(());
            }
            let managed =
                std::fs::read_to_string(dir.join(ENVIRONMENT_FILE)).is_ok_and(|t| t.lines().any(|l| l == "managed-by=codex-k8s-worker"));
            if !managed {
                return Err(RuntimeError::Refused(format!("{namespace} is not managed by codex-k8s")));
            }
            for job in std::fs::read_dir(&dir).map_err(io)?.flatten().filter(|e| e.path().is_dir()) {
                let job_name = job.file_name().to_string_lossy().to_string();
                if validate_name("job name", &job_name).is_ok() {
                    self.do_cancel(&JobRef { namespace: namespace.to_string(), job_name }).await?;
                }
            }
            std::fs::remove_dir_all(&dir).map_err(io)
        })
    }

    fn launch<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<JobRef, RuntimeError>> {
        Box::pin(self.do_launch(spec))
    }

    fn status<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<JobState, RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &job.namespace)?;
            validate_name("job name", &job.job_name)?;
            Ok(Self::state_of(&self.job_dir(job)))
        })
    }

    fn logs<'a>(&'a self, job: &'a JobRef, tail_lines: Option<usize>) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &job.namespace)?;
            validate_name("job name", &job.job_name)?;
            // At most the last LOG_READ_CAP bytes: a job that printed gigabytes costs no more.
            let text = match std::fs::File::open(self.job_dir(job).join("job.log")) {
                Ok(mut f) => {
                    use std::io::{Read, Seek, SeekFrom};
                    let len = f.metadata().map_err(io)?.len();
                    let start = len.saturating_sub(LOG_READ_CAP);
                    f.seek(SeekFrom::Start(start)).map_err(io)?;
                    let mut b = Vec::new();
                    f.take(LOG_READ_CAP).read_to_end(&mut b).map_err(io)?;
                    // A cut line at the start is dropped.
                    let from = if start > 0 { b.iter().position(|&c| c == b'\n').map_or(b.len(), |i| i + 1) } else { 0 };
                    String::from_utf8_lossy(&b[from..]).to_string()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(io(e)),
            };
            Ok(match tail_lines {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(n)..].join("\n")
                }
                None => text,
            })
        })
    }

    /// The wrapper removes `secrets.env` before the command starts; nothing is left to withdraw.
    fn withdraw_credentials<'a>(&'a self, _job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn cancel<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &job.namespace)?;
            validate_name("job name", &job.job_name)?;
            self.do_cancel(job).await
        })
    }
}

#[cfg(test)]
mod tests;
