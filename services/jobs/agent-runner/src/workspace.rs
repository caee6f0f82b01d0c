//! The run's git work tree (product spec §6.1 steps 3, 5 and 9): clone over the provider's git
//! URL with the bot token given only through a `GIT_ASKPASS` helper and the helper's environment
//! (never in the URL, the arguments, `.git/config` or any message), check out the target branch
//! or create it from the base, remember the baseline, list what changed since it, commit and push.
//! git runs as a child process on the async runtime (`tokio::process`), killed if the run is
//! dropped (a stopped pod).

use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// A step of the work tree failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A revise run found no branch to continue (exit code 42 path).
    #[error("revise run: branch {0} does not exist on the remote, so there is no pull request to revise")]
    NothingToRevise(String),
    /// git failed; the message is redacted.
    #[error("git {step} failed: {message}")]
    Git { step: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Who commits.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// A prepared work tree.
pub struct Workspace {
    pub dir: PathBuf,
    pub branch: String,
    /// HEAD before the agent ran (`None` for a brand-new repository).
    pub baseline: Option<String>,
    askpass_dir: PathBuf,
    token: SecretString,
    identity: Identity,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("dir", &self.dir)
            .field("branch", &self.branch)
            .field("baseline", &self.baseline)
            .finish_non_exhaustive()
    }
}

/// The askpass helper: git calls it with a prompt; it answers the user name or the token, which
/// it reads from its own environment.
const ASKPASS: &str =
    "#!/bin/sh\ncase \"$1\" in\n  Username*) echo x-access-token ;;\n  *) printf '%s\\n' \"$CODEXK8S_GIT_TOKEN\" ;;\nesac\n";

fn redact(text: &str, token: &SecretString) -> String {
    let t = token.expose_secret();
    if t.len() >= 6 { text.replace(t, "[REDACTED]") } else { text.to_string() }
}

impl Workspace {
    async fn git_in(&self, dir: &Path, step: &str, args: &[&str]) -> Result<String, WorkspaceError> {
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", &format!("user.name={}", self.identity.name), "-c", &format!("user.email={}", self.identity.email)])
            .args(args)
            .env("GIT_ASKPASS", self.askpass_dir.join("askpass.sh"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("CODEXK8S_GIT_TOKEN", self.token.expose_secret())
            .env_remove("SSH_ASKPASS")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        if !out.status.success() {
            let message = redact(String::from_utf8_lossy(&out.stderr).trim(), &self.token);
            return Err(WorkspaceError::Git { step: step.into(), message });
        }
        Ok(redact(String::from_utf8_lossy(&out.stdout).trim(), &self.token))
    }

    async fn git(&self, step: &str, args: &[&str]) -> Result<String, WorkspaceError> {
        self.git_in(&self.dir, step, args).await
    }

    async fn remote_has(&self, branch: &str) -> Result<bool, WorkspaceError> {
        Ok(!self.git("ls-remote", &["ls-remote", "--heads", "origin", branch]).await?.is_empty())
    }

    /// Clones `clone_url` into `dir` (which must not exist or be empty) and checks out `branch`:
    /// the remote branch when it exists; otherwise, for a new run, a branch from `origin/<base>`
    /// (or an empty history for an empty repository); for a revise run, `NothingToRevise`.
    pub async fn prepare(
        dir: &Path,
        clone_url: &str,
        base: &str,
        branch: &str,
        revise: bool,
        token: SecretString,
        identity: Identity,
    ) -> Result<Self, WorkspaceError> {
        let askpass_dir = std::env::temp_dir().join(format!("ck8s-askpass-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&askpass_dir)?;
        let script = askpass_dir.join("askpass.sh");
        std::fs::write(&script, ASKPASS)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&askpass_dir, std::fs::Permissions::from_mode(0o700))?;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
        }
        std::fs::create_dir_all(dir)?;
        let mut ws = Workspace { dir: dir.to_path_buf(), branch: branch.into(), baseline: None, askpass_dir, token, identity };
        let parent = dir.parent().unwrap_or(dir).to_path_buf();
        ws.git_in(&parent, "clone", &["clone", "--quiet", "--no-tags", clone_url, &dir.display().to_string()]).await?;
        if ws.remote_has(branch).await? {
            ws.git("checkout", &["checkout", "--quiet", "-B", branch, &format!("origin/{branch}")]).await?;
        } else if revise {
            return Err(WorkspaceError::NothingToRevise(branch.into()));
        } else if ws.remote_has(base).await? {
            ws.git("checkout", &["checkout", "--quiet", "-B", branch, &format!("origin/{base}")]).await?;
        } else {
            ws.git("checkout", &["checkout", "--quiet", "--orphan", branch]).await?;
        }
        ws.baseline = ws.git("rev-parse", &["rev-parse", "--verify", "--quiet", "HEAD"]).await.ok().filter(|h| !h.is_empty());
        Ok(ws)
    }

    /// Paths changed since the baseline: commits, staged and unstaged edits, new files.
    pub async fn changed_paths(&self) -> Result<Vec<String>, WorkspaceError> {
        let tracked = match &self.baseline {
            Some(b) => self.git("diff", &["diff", "--name-only", b]).await?,
            None => self.git("ls-files", &["ls-files", "--cached"]).await?,
        };
        let untracked = self.git("ls-files", &["ls-files", "--others", "--exclude-standard"]).await?;
        let paths: std::collections::BTreeSet<String> =
            tracked.lines().chain(untracked.lines()).filter(|l| !l.is_empty()).map(String::from).collect();
        Ok(paths.into_iter().collect())
    }

    /// Commits everything (if anything changed); returns the new HEAD.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        self.git("add", &["add", "-A"]).await?;
        if self.git("status", &["status", "--porcelain"]).await?.is_empty() {
            return Ok(None);
        }
        self.git("commit", &["commit", "--quiet", "-m", message]).await?;
        self.git("rev-parse", &["rev-parse", "HEAD"]).await.map(Some)
    }

    /// Pushes the branch to the remote.
    pub async fn push(&self) -> Result<(), WorkspaceError> {
        self.git("push", &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{}", self.branch)]).await.map(|_| ())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.askpass_dir);
    }
}
