//! The real Codex CLI (npm `@openai/codex`, pinned in `tools/codex/package.json`) for tests that
//! drive it against model-sim.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The `codex` executable, installing `tools/codex` with npm on first use.
///
/// # Panics
/// If npm cannot install it.
pub fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    static INSTALL: Mutex<()> = Mutex::new(());
    BIN.get_or_init(|| {
        let _guard = INSTALL.lock();
        let dir = crate::repo_root().join("tools/codex");
        let bin = dir.join("node_modules/.bin/codex");
        if !bin.exists() {
            let status = std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .unwrap_or_else(|e| panic!("cannot run npm to install the Codex CLI in {}: {e}", dir.display()));
            assert!(status.success(), "npm install of @openai/codex failed in {}", dir.display());
        }
        bin
    })
}
