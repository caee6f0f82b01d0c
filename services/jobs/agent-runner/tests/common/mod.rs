//! Helpers shared by the agent-runner tests.

#![allow(dead_code)]

use ck8s_testkit::forge::ForgeSim;
use std::path::Path;

/// Pushes an initial commit with README.md to `main` as the repository's owner.
pub fn seed(sim: &ForgeSim, token: &str, repo: &str, root: &Path) {
    sim.push_main(token, repo, &[("README.md", "# app\n")], root);
}
