//! The runner's own git work tree (product spec §6.1 steps 3, 5 and 9; ADR-0015). Only the runner
//! runs git with the bot token, and only in a clone nobody else writes: git runs with a neutral
//! configuration (no system or global config, no hooks, no fsmonitor, no credential helpers, no
//! quoted paths), and the token reaches git only through a `GIT_ASKPASS` helper that answers for
//! the configured forge host alone — never in a URL, an argument, `.git/config` or a message.
//!
//! The agent works in a copy of this clone that it owns ([`Workspace::agent_tree`]); its change
//! comes back by staging the agent's files into the runner's index ([`Workspace::stage_from`]):
//! git reads them as plain files under the runner's own configuration, so nothing the agent
//! wrote in its `.git` runs, and the change set is exact (no rename detection, every mode and
//! link visible). The runner then makes one commit of the final tree and pushes it.

use ck8s_domain::agent_run::{Change, Entry};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

/// A step of the work tree failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A revise run found no branch to continue (`AgentExit::NothingToRevise`).
    #[error("revise run: branch {0} does not exist on the remote, so there is no pull request to revise")]
    NothingToRevise(String),
    /// git failed; the message is redacted.
    #[error("git {step} failed: {message}")]
    Git { step: String, message: String },
    /// git answered something the runner cannot read.
    #[error("git {step} gave an unexpected answer: {message}")]
    Unexpected { step: String, message: String },
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
    /// The runner's private directory: the askpass helper and git's (empty) home.
    private: PathBuf,
    token: SecretString,
    identity: Identity,
    /// `host[:port]` of the forge: the only place the token is given to.
    forge_authority: String,
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

/// The askpass helper: git calls it with a prompt naming the URL; it answers only for the forge's
/// host (`CODEXK8S_GIT_HOST`), with the user name or the token it reads from its environment.
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  *\"//$CODEXK8S_GIT_HOST'\"*|*\"@$CODEXK8S_GIT_HOST'\"*) ;;\n  *) exit 1 ;;\nesac\ncase \"$1\" in\n  Username*) echo x-access-token ;;\n  *) printf '%s\\n' \"$CODEXK8S_GIT_TOKEN\" ;;\nesac\n";

/// Settings every git command runs with, whatever any configuration file says.
const NEUTRAL: [&str; 12] = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "credential.helper=",
    "-c",
    "core.quotePath=false",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "submodule.recurse=false",
];

fn redact(text: &str, token: &SecretString) -> String {
    let t = token.expose_secret();
    if t.len() >= 6 { text.replace(t, "[REDACTED]") } else { text.to_string() }
}

/// `host[:port]` of a URL (`https://github.com` → `github.com`).
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    host.rsplit_once('@').map_or(host, |(_, h)| h).to_string()
}

impl Workspace {
    /// git in `dir` with the neutral settings, an empty environment and the askpass.
    fn command(&self, dir: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(dir)
            .args(NEUTRAL)
            .args(["-c", &format!("user.name={}", self.identity.name), "-c", &format!("user.email={}", self.identity.email)])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
            .env("HOME", &self.private)
            .env("XDG_CONFIG_HOME", &self.private)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .env("GIT_ASKPASS", self.private.join("askpass.sh"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("CODEXK8S_GIT_HOST", &self.forge_authority)
            .env("CODEXK8S_GIT_TOKEN", self.token.expose_secret())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn git_in(&self, dir: &Path, step: &str, args: &[&str]) -> Result<String, WorkspaceError> {
        let out = self.command(dir, args).output().await?;
        if !out.status.success() {
            let message = redact(String::from_utf8_lossy(&out.stderr).trim(), &self.token);
            return Err(WorkspaceError::Git { step: step.into(), message });
        }
        Ok(redact(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'), &self.token))
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
    /// `private` is a directory only the runner can read (the askpass helper lives there).
    #[allow(clippy::too_many_arguments)]
    pub async fn prepare(
        dir: &Path,
        private: &Path,
        clone_url: &str,
        base: &str,
        branch: &str,
        revise: bool,
        token: SecretString,
        identity: Identity,
    ) -> Result<Self, WorkspaceError> {
        std::fs::create_dir_all(private)?;
        let script = private.join("askpass.sh");
        std::fs::write(&script, ASKPASS)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
        }
        std::fs::create_dir_all(dir)?;
        let mut ws = Workspace {
            dir: dir.to_path_buf(),
            branch: branch.into(),
            baseline: None,
            private: private.to_path_buf(),
            token,
            identity,
            forge_authority: authority(clone_url),
        };
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

    /// Makes the agent's work tree at `dir`: a copy of this clone at the baseline, whose remote
    /// points at the forge without any credential. The caller hands it over to the agent.
    pub async fn agent_tree(&self, dir: &Path, remote_url: &str) -> Result<(), WorkspaceError> {
        let parent = dir.parent().unwrap_or(dir).to_path_buf();
        std::fs::create_dir_all(&parent)?;
        let source = self.dir.display().to_string();
        self.git_in(&parent, "clone", &["clone", "--quiet", "--no-hardlinks", &source, &dir.display().to_string()]).await?;
        self.git_in(dir, "remote", &["remote", "set-url", "origin", remote_url]).await?;
        Ok(())
    }

    /// Stages the agent's files (read as plain files from `agent_dir`, honouring its
    /// `.gitignore`) into this clone's index and returns what changed against the baseline.
    pub async fn stage_from(&self, agent_dir: &Path) -> Result<Vec<Change>, WorkspaceError> {
        let tree = format!("--work-tree={}", agent_dir.display());
        // The agent owns the files; the repository (this clone's .git) is the runner's.
        let safe = format!("safe.directory={}", agent_dir.display());
        self.git("stage", &["-c", &safe, &tree, "add", "--all", "--", "."]).await?;
        let raw = self.git("diff", &["diff", "--cached", "--no-renames", "--raw", "-z", "--no-abbrev"]).await?;
        parse_raw(&raw).map_err(|e| WorkspaceError::Unexpected { step: "diff".into(), message: e.to_string() })
    }

    /// The staged files whose content holds any of `secrets` (matched as fixed strings, binary
    /// files too). The patterns go to git through a file in the runner's private directory, never
    /// on a command line.
    pub async fn staged_with(&self, secrets: &[&str]) -> Result<Vec<String>, WorkspaceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let patterns: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 6 && !s.contains('\n')).collect();
        if patterns.is_empty() {
            return Ok(vec![]);
        }
        let file = self.private.join("secret-patterns");
        {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&file)?;
            f.write_all(patterns.join("\n").as_bytes())?;
        }
        let path = file.display().to_string();
        let out = self.command(&self.dir, &["grep", "--cached", "-F", "-l", "-z", "-a", "-f", &path]).output().await;
        let _ = std::fs::remove_file(&file);
        let out = out?;
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).split('\0').filter(|p| !p.is_empty()).map(String::from).collect()),
            Some(1) => Ok(vec![]),
            _ => {
                Err(WorkspaceError::Git { step: "grep".into(), message: redact(String::from_utf8_lossy(&out.stderr).trim(), &self.token) })
            }
        }
    }

    /// Commits the staged change (if any); returns the new HEAD.
    pub async fn commit_staged(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        if self.git("status", &["diff", "--cached", "--name-only", "-z"]).await?.is_empty() {
            return Ok(None);
        }
        self.git("commit", &["commit", "--quiet", "--no-verify", "-m", message]).await?;
        self.git("rev-parse", &["rev-parse", "HEAD"]).await.map(Some)
    }

    /// Pushes the branch to the remote.
    pub async fn push(&self) -> Result<(), WorkspaceError> {
        self.git("push", &["push", "--quiet", "--no-verify", "origin", &format!("HEAD:refs/heads/{}", self.branch)]).await.map(|_| ())
    }
}

/// Why `git diff --raw -z` output could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawDiffError {
    #[error("unknown mode {0}")]
    UnknownMode(String),
    #[error("no path after {0:?}")]
    NoPath(String),
    #[error("cannot read {0:?}")]
    Unreadable(String),
    #[error("{0}: neither side exists")]
    NeitherSide(String),
}

fn entry(mode: &str) -> Result<Option<Entry>, RawDiffError> {
    match mode {
        "000000" => Ok(None),
        "100644" => Ok(Some(Entry::File { executable: false })),
        "100755" => Ok(Some(Entry::File { executable: true })),
        "120000" => Ok(Some(Entry::Symlink)),
        "160000" => Ok(Some(Entry::Gitlink)),
        other => Err(RawDiffError::UnknownMode(other.into())),
    }
}

/// Reads `git diff --raw -z` (`:<old mode> <new mode> <old> <new> <status>\0<path>\0` per path).
fn parse_raw(raw: &str) -> Result<Vec<Change>, RawDiffError> {
    let mut fields = raw.split('\0').filter(|f| !f.is_empty());
    let mut out = Vec::new();
    while let Some(meta) = fields.next() {
        let path = fields.next().ok_or_else(|| RawDiffError::NoPath(meta.into()))?.to_string();
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [old, new, ..] = parts.as_slice() else { return Err(RawDiffError::Unreadable(meta.into())) };
        out.push(match (entry(old)?, entry(new)?) {
            (None, Some(entry)) => Change::Added { path, entry },
            (Some(entry), None) => Change::Deleted { path, entry },
            (Some(from), Some(to)) => Change::Modified { path, from, to },
            (None, None) => return Err(RawDiffError::NeitherSide(path)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_diffs_read_into_changes_with_modes_and_links() {
        let raw = ":000000 100644 0000 3e75 A\0docs/заметки.md\0:100644 000000 45b9 0000 D\0src/lib.rs\0:100644 100755 45b9 45b9 M\0build.sh\0:000000 120000 0000 3594 A\0link.md\0";
        let c = parse_raw(raw).unwrap();
        assert_eq!(c[0], Change::Added { path: "docs/заметки.md".into(), entry: Entry::File { executable: false } });
        assert_eq!(c[1], Change::Deleted { path: "src/lib.rs".into(), entry: Entry::File { executable: false } });
        assert_eq!(
            c[2],
            Change::Modified { path: "build.sh".into(), from: Entry::File { executable: false }, to: Entry::File { executable: true } }
        );
        assert_eq!(c[3], Change::Added { path: "link.md".into(), entry: Entry::Symlink });
        assert_eq!(parse_raw(":100644 100644 a b M\0"), Err(RawDiffError::NoPath(":100644 100644 a b M".into())));
        assert!(parse_raw(":100600 100644 a b M\0x\0").is_err());
        assert_eq!(parse_raw("").unwrap(), vec![]);
    }

    #[test]
    fn the_token_goes_only_to_the_forge_host() {
        assert_eq!(authority("https://github.com"), "github.com");
        assert_eq!(authority("http://127.0.0.1:8090/git"), "127.0.0.1:8090");
        assert_eq!(authority("https://user@ghe.example:8443/"), "ghe.example:8443");
    }
}
