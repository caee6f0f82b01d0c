//! Helpers shared by the agent-runner tests.

#![allow(dead_code)]

use ck8s_testkit::forge::ForgeSim;
use std::path::Path;

/// Pushes an initial commit with README.md to `main` as the repository's owner.
pub fn seed(sim: &ForgeSim, token: &str, repo: &str, root: &Path) {
    use base64::Engine;
    let dir = root.join("seed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "# app\n").unwrap();
    let header =
        format!("http.extraHeader=Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x:{token}")));
    for args in [
        vec!["init", "-q", "--initial-branch=main"],
        vec!["add", "-A"],
        vec!["-c", "user.name=o", "-c", "user.email=o@x", "commit", "-q", "-m", "init"],
        vec!["-c", &header, "push", "-q", &format!("{}/git/{repo}.git", sim.url()), "HEAD:refs/heads/main"],
    ] {
        let ok = std::process::Command::new("git").args(&args).current_dir(&dir).status().unwrap().success();
        assert!(ok, "git {args:?}");
    }
}
