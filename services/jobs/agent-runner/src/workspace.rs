//! The run's git work tree (product spec §6.1 steps 3, 5 and 9): clone over the provider's git
//! URL with the bot token given only through a `GIT_ASKPASS` helper and the helper's environment
//! (never in the URL, the arguments, `.git/config` or any message), check out the target branch
//! or create it from the base, remember the baseline, list what changed since it, commit and push.

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
    fn git_in(&self, dir: &Path, step: &str, args: &[&str]) -> Result<String, WorkspaceError> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", &format!("user.name={}", self.identity.name), "-c", &format!("user.email={}", self.identity.email)])
            .args(args)
            .env("GIT_ASKPASS", self.askpass_dir.join("askpass.sh"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("CODEXK8S_GIT_TOKEN", self.token.expose_secret())
            .env_remove("SSH_ASKPASS")
            .stdin(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            let message = redact(String::from_utf8_lossy(&out.stderr).trim(), &self.token);
            return Err(WorkspaceError::Git { step: step.into(), message });
        }
        Ok(redact(String::from_utf8_lossy(&out.stdout).trim(), &self.token))
    }

    fn git(&self, step: &str, args: &[&str]) -> Result<String, WorkspaceError> {
        self.git_in(&self.dir, step, args)
    }

    /// Clones `clone_url` into `dir` (which must not exist or be empty) and checks out `branch`:
    /// the remote branch when it exists; otherwise, for a new run, a branch from `origin/<base>`
    /// (or an empty history for an empty repository); for a revise run, `NothingToRevise`.
    pub fn prepare(
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
        ws.git_in(&parent, "clone", &["clone", "--quiet", "--no-tags", clone_url, &dir.display().to_string()])?;
        let remote_has = |b: &str| ws.git("ls-remote", &["ls-remote", "--heads", "origin", b]).map(|o| !o.is_empty());
        if remote_has(branch)? {
            ws.git("checkout", &["checkout", "--quiet", "-B", branch, &format!("origin/{branch}")])?;
        } else if revise {
            return Err(WorkspaceError::NothingToRevise(branch.into()));
        } else if remote_has(base)? {
            ws.git("checkout", &["checkout", "--quiet", "-B", branch, &format!("origin/{base}")])?;
        } else {
            ws.git("checkout", &["checkout", "--quiet", "--orphan", branch])?;
        }
        ws.baseline = ws.git("rev-parse", &["rev-parse", "--verify", "--quiet", "HEAD"]).ok().filter(|h| !h.is_empty());
        Ok(ws)
    }

    /// Paths changed since the baseline: commits, staged and unstaged edits, new files.
    pub fn changed_paths(&self) -> Result<Vec<String>, WorkspaceError> {
        let mut paths = std::collections::BTreeSet::new();
        let mut add = |out: String| {
            for l in out.lines().filter(|l| !l.is_empty()) {
                paths.insert(l.to_string());
            }
        };
        match &self.baseline {
            Some(b) => add(self.git("diff", &["diff", "--name-only", b])?),
            None => add(self.git("ls-files", &["ls-files", "--cached"])?),
        }
        add(self.git("ls-files", &["ls-files", "--others", "--exclude-standard"])?);
        Ok(paths.into_iter().collect())
    }

    /// Commits everything (if anything changed); returns the new HEAD.
    pub fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        self.git("add", &["add", "-A"])?;
        if self.git("status", &["status", "--porcelain"])?.is_empty() {
            return Ok(None);
        }
        self.git("commit", &["commit", "--quiet", "-m", message])?;
        self.git("rev-parse", &["rev-parse", "HEAD"]).map(Some)
    }

    /// Pushes the branch to the remote.
    pub fn push(&self) -> Result<(), WorkspaceError> {
        self.git("push", &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{}", self.branch)]).map(|_| ())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.askpass_dir);
    }
}
