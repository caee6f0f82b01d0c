//! The real Codex CLI (npm `@openai/codex`, pinned in `tools/codex/package.json`) for tests that
//! drive it against model-sim.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The `codex` executable: `CODEXK8S_CODEX_BIN` when set (test.sh sets it), else the one
/// `scripts/codex.sh` installs — where every user can run it, since agents run as users of their
/// own.
///
/// # Panics
/// If the script cannot install it.
pub fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    static INSTALL: Mutex<()> = Mutex::new(());
    BIN.get_or_init(|| {
        let _guard = INSTALL.lock();
        if let Some(bin) = std::env::var_os("CODEXK8S_CODEX_BIN").map(PathBuf::from).filter(|b| b.exists()) {
            return bin;
        }
        let script = crate::repo_root().join("scripts/codex.sh");
        let out = std::process::Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} could not install the Codex CLI", script.display());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}
