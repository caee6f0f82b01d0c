//! The run's work tree against forge-sim's real git hosting: clone with the bot token through
//! askpass only, branch rules, changed paths against the write scope, commit and push.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use agent_runner::workspace::{Identity, Workspace, WorkspaceError};
use ck8s_domain::agent_run::{WriteScope, check_write_scope};
use ck8s_testkit::forge::ForgeSim;
use secrecy::SecretString;
use serde_json::json;

mod common;
use common::seed;

fn bot() -> Identity {
    Identity { name: "AI Developer".into(), email: "bot@example.com".into() }
}

#[test]
fn a_run_clones_with_askpass_only_changes_within_scope_and_pushes_its_branch() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = ForgeSim::start();
    let token = sim.user("acme");
    assert_eq!(sim.call("POST", "/_sim/repos", Some(&token), Some(json!({"name": "app"}))).0, 201);
    let root = std::env::temp_dir().join(format!("ck8s-ws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    seed(&sim, &token, "acme/app", &root);
    let clone_url = format!("{}/git/acme/app.git", sim.url());

    // A revise run with no branch on the remote has nothing to revise (the exit-42 path).
    let err = rt
        .block_on(Workspace::prepare(&root.join("r0"), &clone_url, "main", "codex/issue-1", true, SecretString::from(token.clone()), bot()))
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::NothingToRevise(ref b) if b == "codex/issue-1"), "{err}");

    let ws = rt
        .block_on(Workspace::prepare(
            &root.join("r1"),
            &clone_url,
            "main",
            "codex/issue-1",
            false,
            SecretString::from(token.clone()),
            bot(),
        ))
        .unwrap();
    assert!(ws.baseline.is_some(), "a branch from origin/main");
    let config = std::fs::read_to_string(ws.dir.join(".git/config")).unwrap();
    assert!(!config.contains(&token), "the token is not stored in .git/config");
    assert!(config.contains(&clone_url), "the remote URL carries no credentials: {config}");

    // The agent changes code and docs: fine for dev, not for a document stage.
    std::fs::write(ws.dir.join("hello.sh"), "echo hello\n").unwrap();
    std::fs::write(ws.dir.join("README.md"), "# app\n\nSays hello.\n").unwrap();
    let changed = rt.block_on(ws.changed_paths()).unwrap();
    assert_eq!(changed, vec!["README.md", "hello.sh"]);
    assert!(check_write_scope(&WriteScope::Unrestricted, &changed).is_ok());
    assert_eq!(check_write_scope(&WriteScope::MarkdownOnly, &changed).unwrap_err().paths, vec!["hello.sh"]);

    let head = rt.block_on(ws.commit_all("Add hello.sh")).unwrap().expect("a commit");
    assert_eq!(
        rt.block_on(ws.changed_paths()).unwrap(),
        vec!["README.md", "hello.sh"],
        "committed changes still count against the baseline"
    );
    rt.block_on(ws.push()).unwrap();
    let (s, file) = sim.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&token), None);
    assert_eq!((s, file["sha"].is_string()), (200, true), "the branch is on the forge");
    let (_, pr) =
        sim.call("POST", "/repos/acme/app/pulls", Some(&token), Some(json!({"title": "t", "head": "codex/issue-1", "base": "main"})));
    assert_eq!(pr["head"]["sha"], head);

    // A revise run continues the same branch.
    let again = rt
        .block_on(Workspace::prepare(&root.join("r2"), &clone_url, "main", "codex/issue-1", true, SecretString::from(token.clone()), bot()))
        .unwrap();
    assert_eq!(again.baseline.as_deref(), Some(head.as_str()));
    assert!(rt.block_on(again.changed_paths()).unwrap().is_empty());
    assert_eq!(rt.block_on(again.commit_all("nothing")).unwrap(), None);

    // A bad token fails with git's reason and without the token.
    let bad = "fsim_definitely_wrong_token_123";
    let ws = rt
        .block_on(Workspace::prepare(
            &root.join("r3"),
            &clone_url,
            "main",
            "codex/issue-2",
            false,
            SecretString::from(bad.to_string()),
            bot(),
        ))
        .unwrap();
    std::fs::write(ws.dir.join("x.md"), "x").unwrap();
    rt.block_on(ws.commit_all("x")).unwrap();
    let err = rt.block_on(ws.push()).unwrap_err().to_string();
    assert!(err.starts_with("git push failed") && !err.contains(bad), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
