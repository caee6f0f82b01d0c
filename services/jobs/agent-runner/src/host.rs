//! The run split across two containers of one pod (ADR-0015): the runner container holds the
//! credentials and never runs the agent; the agent container (no Secret, no service-account token
//! unless the run's access profile needs the cluster) runs `agent-runner agent-host <dir>`, which
//! carries out the runner's [`Invocation`]s. They meet only in a shared directory (an `emptyDir`)
//! holding the agent's work tree, its Codex home and these files:
//!
//! - `request.json` — the runner's next [`Request`] (written whole: a temporary file renamed);
//! - `<id>.stdout`, `<id>.stderr` — the command's output, written by the host as it comes;
//! - `<id>.exit` — how it ended ([`Exit`], written whole), after which the runner reads the output;
//! - `<id>.stop` — the runner's ask to stop it (the run was stopped): the host kills its group.
//!
//! Everything in the directory is the agent's to write, so the runner treats it as it treats the
//! agent's output anywhere: opened without following links, read line by line with caps.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often each side looks at the shared directory.
pub const POLL: Duration = Duration::from_millis(100);

/// One agent command: what the runner asks to be run, locally or by the agent container's host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

/// One command for the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Names the command's files (`<id>.stdout`, ...): letters, digits and `-` only.
    pub id: String,
    pub invocation: Invocation,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
}

/// The shared directory failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the agent host's directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the agent host's request {0} cannot be read: {1}")]
    BadRequest(PathBuf, serde_json::Error),
    #[error("the agent host reported an unreadable exit for {0}")]
    BadExit(String),
    #[error("the agent host cannot start {0}: {1}")]
    Start(String, std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |e| HostError::Io(path.to_path_buf(), e)
}

/// Writes `bytes` to `path` whole: a temporary file beside it, then a rename.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), HostError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Opens a file of the shared directory for reading without following a link the agent planted.
pub fn open_plain(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
    std::fs::OpenOptions::new().read(true).custom_flags(nofollow).open(path)
}

/// The runner's side: one command carried out by the host.
pub struct Remote {
    dir: PathBuf,
    id: String,
    /// Armed until the command has ended: dropping it (the run was stopped) asks the host to
    /// stop the command.
    armed: bool,
}

impl Remote {
    /// Hands `invocation` to the host in `dir`.
    pub fn start(dir: &Path, invocation: &Invocation) -> Result<Self, HostError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let request = Request { id: id.clone(), invocation: invocation.clone() };
        let bytes = serde_json::to_vec(&request).map_err(|e| HostError::BadRequest(dir.join("request.json"), e))?;
        write_whole(&dir.join("request.json"), &bytes)?;
        Ok(Self { dir: dir.to_path_buf(), id, armed: true })
    }

    /// Path of one of the command's files.
    pub fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.id))
    }

    /// Waits until the host reports the command's end.
    pub async fn wait(&mut self) -> Result<Exit, HostError> {
        let path = self.file("exit");
        loop {
            match open_plain(&path) {
                Ok(f) => {
                    let exit: Exit =
                        serde_json::from_reader(std::io::Read::take(f, 1024)).map_err(|_| HostError::BadExit(self.id.clone()))?;
                    self.armed = false;
                    return Ok(exit);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => tokio::time::sleep(POLL).await,
                Err(e) => return Err(HostError::Io(path, e)),
            }
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if self.armed {
            let stop = self.file("stop");
            if let Err(e) = std::fs::write(&stop, b"") {
                tracing::warn!(error = %e, "cannot ask the agent host to stop the command");
            }
        }
    }
}

/// The agent container's side: carries out requests until `stop` is cancelled (SIGTERM: the pod
/// is going away), killing the running command's process group then.
pub async fn serve(dir: &Path, stop: tokio_util::sync::CancellationToken) -> Result<(), HostError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    tracing::info!(dir = %dir.display(), "agent host waiting for the runner's commands");
    let request_path = dir.join("request.json");
    loop {
        let request = match std::fs::read(&request_path) {
            Ok(bytes) => {
                std::fs::remove_file(&request_path).map_err(io(&request_path))?;
                serde_json::from_slice::<Request>(&bytes).map_err(|e| HostError::BadRequest(request_path.clone(), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(POLL) => continue,
                }
            }
            Err(e) => return Err(HostError::Io(request_path, e)),
        };
        if request.id.is_empty() || !request.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            tracing::warn!("a request with a malformed id was ignored");
            continue;
        }
        let exit = carry_out(dir, &request, &stop).await?;
        let bytes = serde_json::to_vec(&exit).unwrap_or_default();
        write_whole(&dir.join(format!("{}.exit", request.id)), &bytes)?;
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}

async fn carry_out(dir: &Path, request: &Request, stop: &tokio_util::sync::CancellationToken) -> Result<Exit, HostError> {
    let inv = &request.invocation;
    let out_path = dir.join(format!("{}.stdout", request.id));
    let err_path = dir.join(format!("{}.stderr", request.id));
    let stdout = std::fs::File::create(&out_path).map_err(io(&out_path))?;
    let stderr = std::fs::File::create(&err_path).map_err(io(&err_path))?;
    let mut child = tokio::process::Command::new(&inv.program)
        .args(&inv.args)
        .current_dir(&inv.cwd)
        .env_clear()
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HostError::Start(inv.program.clone(), e))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw);
    let stop_file = dir.join(format!("{}.stop", request.id));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(io(dir))?,
            () = stop.cancelled() => break kill(&mut child, pgid).await,
            () = tokio::time::sleep(POLL) => {
                if stop_file.exists() {
                    tracing::warn!(id = %request.id, "the runner stopped the command");
                    break kill(&mut child, pgid).await;
                }
            }
        }
    };
    // What the command left running in its group goes too.
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    Ok(Exit { code: status.code() })
}

async fn kill(child: &mut tokio::process::Child, pgid: Option<rustix::process::Pid>) -> std::process::ExitStatus {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    child.wait().await.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(9))
}
