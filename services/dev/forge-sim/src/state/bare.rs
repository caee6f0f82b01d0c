//! The bare git repositories behind the forge's repositories: creating one, and running git
//! against one. A leaf module: callers say where the repository lives.

use std::path::{Path, PathBuf};

/// Why a bare repository could not be created.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot run git (is it installed?): {0}")]
    Spawn(#[source] std::io::Error),
    /// `git init` ran and failed; its standard error.
    #[error("git init failed: {0}")]
    Init(String),
}

/// Creates the bare repository `dir` with `main` as its default branch.
pub fn init(dir: &Path) -> Result<(), GitError> {
    std::fs::create_dir_all(dir).map_err(|source| GitError::CreateDir { dir: dir.to_path_buf(), source })?;
    let out = std::process::Command::new("git")
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(dir)
        .output()
        .map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Init(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(())
}

/// Runs git against a bare repository and returns stdout (None when git fails).
pub fn git_out(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = std::process::Command::new("git").arg("--git-dir").arg(dir).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}
