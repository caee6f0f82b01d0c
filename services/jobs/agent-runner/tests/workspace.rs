//! The run's work trees against forge-sim's real git hosting: the runner clones with the bot
//! token through askpass only, hands the agent a copy, takes the agent's change back as files
//! (exact paths, modes and links, no renames), commits once and pushes. Whatever the agent writes
//! into its own `.git` — hooks, `core.hooksPath`, credential helpers, `insteadOf`, clean filters,
//! fsmonitor — never runs in the runner.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use agent_runner::workspace::{Identity, Workspace, WorkspaceError};
use ck8s_domain::agent_run::{Change, Entry, WriteScope, check_changes};
use ck8s_testkit::forge::ForgeSim;
use secrecy::SecretString;
use serde_json::json;
use std::path::{Path, PathBuf};

mod common;

fn bot() -> Identity {
    Identity { name: "AI Developer".into(), email: "bot@example.com".into() }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    sim: ForgeSim,
    token: String,
    root: PathBuf,
    clone_url: String,
}

fn fixture(name: &str) -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = ForgeSim::start();
    let token = sim.user("acme");
    assert_eq!(sim.call("POST", "/_sim/repos", Some(&token), Some(json!({"name": "app"}))).0, 201);
    let root = std::env::temp_dir().join(format!("ck8s-ws-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    sim.push_main(&token, "acme/app", &[("README.md", "# app\n"), ("src/lib.rs", "pub fn f() {}\n")], &root);
    let clone_url = format!("{}/git/acme/app.git", sim.url());
    Fixture { rt, sim, token, root, clone_url }
}

impl Fixture {
    fn prepare(&self, dir: &str, branch: &str, revise: bool, token: &str) -> Result<Workspace, WorkspaceError> {
        let d = self.root.join(dir);
        self.rt.block_on(Workspace::prepare(
            &d.join("repo"),
            &d.join("git-home"),
            &self.clone_url,
            "main",
            branch,
            revise,
            SecretString::from(token.to_string()),
            bot(),
        ))
    }

    /// The runner's workspace and the agent's copy of it.
    fn trees(&self, dir: &str, branch: &str) -> (Workspace, PathBuf) {
        let ws = self.prepare(dir, branch, false, &self.token).unwrap();
        let agent = self.root.join(dir).join("agent");
        self.rt.block_on(ws.agent_tree(&agent, &self.clone_url)).unwrap();
        (ws, agent)
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn file(path: &str) -> Change {
    Change::Added { path: path.into(), entry: Entry::File { executable: false } }
}

#[test]
fn a_run_clones_with_askpass_only_takes_the_agents_files_back_and_pushes_one_commit() {
    let f = fixture("flow");
    // A revise run with no branch on the remote has nothing to revise (the exit-42 path).
    let err = f.prepare("r0", "codex/issue-1", true, &f.token).unwrap_err();
    assert!(matches!(err, WorkspaceError::NothingToRevise(ref b) if b == "codex/issue-1"), "{err}");

    let (ws, agent) = f.trees("r1", "codex/issue-1");
    assert!(ws.baseline.is_some(), "a branch from origin/main");
    for config in [ws.dir.join(".git/config"), agent.join(".git/config")] {
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(!text.contains(&f.token), "the token is not stored in {}", config.display());
    }
    let agent_config = std::fs::read_to_string(agent.join(".git/config")).unwrap();
    assert!(agent_config.contains(&f.clone_url), "the agent's remote is the forge, without credentials: {agent_config}");
    assert!(std::fs::read_dir(ws.dir.parent().unwrap().join("git-home")).unwrap().count() > 0, "askpass lives in the private dir");

    // The agent changes code and docs, and commits twice on its own: only the files count.
    std::fs::write(agent.join("hello.sh"), "echo hello\n").unwrap();
    std::fs::write(agent.join("README.md"), "# app\n\nSays hello.\n").unwrap();
    git(&agent, &["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "agent's own commit"]);
    let changes = f.rt.block_on(ws.stage_from(&agent)).unwrap();
    let paths: Vec<&str> = changes.iter().map(Change::path).collect();
    assert_eq!(paths, vec!["README.md", "hello.sh"]);
    assert!(check_changes(&WriteScope::Unrestricted, &changes).is_ok());
    assert_eq!(check_changes(&WriteScope::MarkdownOnly, &changes).unwrap_err().paths, vec!["hello.sh"]);

    let head = f.rt.block_on(ws.commit_staged("Add hello.sh")).unwrap().expect("a commit");
    f.rt.block_on(ws.push()).unwrap();
    let (s, got) = f.sim.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&f.token), None);
    assert_eq!((s, got["sha"].is_string()), (200, true), "the branch is on the forge");
    let (_, pr) =
        f.sim.call("POST", "/repos/acme/app/pulls", Some(&f.token), Some(json!({"title": "t", "head": "codex/issue-1", "base": "main"})));
    assert_eq!(pr["head"]["sha"], head, "one runner commit on top of the baseline, not the agent's");
    let out = std::process::Command::new("git").arg("-C").arg(&ws.dir).args(["log", "--format=%P %s", "-1", &head]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(log.trim(), format!("{} Add hello.sh", ws.baseline.as_deref().unwrap()), "the agent's commit is not pushed");

    // A revise run continues the same branch; an untouched copy changes nothing.
    let again = f.prepare("r2", "codex/issue-1", true, &f.token).unwrap();
    assert_eq!(again.baseline.as_deref(), Some(head.as_str()));
    let agent2 = f.root.join("r2/agent");
    f.rt.block_on(again.agent_tree(&agent2, &f.clone_url)).unwrap();
    assert!(f.rt.block_on(again.stage_from(&agent2)).unwrap().is_empty());
    assert_eq!(f.rt.block_on(again.commit_staged("nothing")).unwrap(), None);

    // A bad token fails with git's reason and without the token.
    let bad = "fsim_definitely_wrong_token_123";
    let ws = f.prepare("r3", "codex/issue-2", false, bad).unwrap();
    std::fs::write(ws.dir.join("x.md"), "x").unwrap();
    f.rt.block_on(ws.stage_from(&ws.dir)).unwrap();
    f.rt.block_on(ws.commit_staged("x")).unwrap();
    let err = f.rt.block_on(ws.push()).unwrap_err().to_string();
    assert!(err.starts_with("git push failed") && !err.contains(bad), "{err}");
    let _ = std::fs::remove_dir_all(&f.root);
}

#[test]
fn what_the_agent_writes_into_its_git_directory_never_runs_in_the_runner() {
    let f = fixture("hostile-git");
    let (ws, agent) = f.trees("r1", "codex/issue-3");
    let marker = f.root.join("ran");
    let touch = format!("#!/bin/sh\necho \"$0 $*\" >> {}\ncat >/dev/null 2>&1 || true\n", marker.display());
    let hooks = f.root.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in ["pre-commit", "pre-push", "post-checkout", "reference-transaction", "fsmonitor-watchman"] {
        for dir in [&hooks, &agent.join(".git/hooks")] {
            std::fs::write(dir.join(hook), &touch).unwrap();
            std::fs::set_permissions(dir.join(hook), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }
    let helper = hooks.join("pre-commit").display().to_string();
    for (k, v) in [
        ("core.hooksPath", hooks.display().to_string()),
        ("credential.helper", format!("!{helper}")),
        ("url.http://127.0.0.1:9/.insteadOf", f.clone_url.clone()),
        ("filter.steal.clean", helper.clone()),
        ("filter.steal.required", "true".into()),
        ("core.fsmonitor", helper.clone()),
        ("core.sshCommand", helper.clone()),
    ] {
        git(&agent, &["config", k, &v]);
    }
    std::fs::write(agent.join(".gitattributes"), "* filter=steal\n").unwrap();
    std::fs::write(agent.join("notes.md"), "notes\n").unwrap();

    let changes = f.rt.block_on(ws.stage_from(&agent)).unwrap();
    assert_eq!(changes, vec![file(".gitattributes"), file("notes.md")]);
    f.rt.block_on(ws.commit_staged("notes")).unwrap().expect("a commit");
    f.rt.block_on(ws.push()).unwrap();
    assert!(!marker.exists(), "something the agent configured ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());
    let (s, _) = f.sim.call("GET", "/repos/acme/app/contents/notes.md?ref=codex/issue-3", Some(&f.token), None);
    assert_eq!(s, 200, "the push went to the forge, not where insteadOf pointed");
    let _ = std::fs::remove_dir_all(&f.root);
}

#[test]
fn the_change_set_is_exact_moves_links_modes_and_names_in_any_script() {
    let f = fixture("exact");
    let (ws, agent) = f.trees("r1", "codex/issue-4");
    // A move of code into a markdown path (rename detection would have hidden the deletion).
    std::fs::create_dir_all(agent.join("docs")).unwrap();
    git(&agent, &["mv", "src/lib.rs", "docs/lib.md"]);
    // A Cyrillic markdown name, a link disguised as markdown, a mode change, a FIFO.
    std::fs::write(agent.join("docs/заметки.md"), "заметки\n").unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", agent.join("docs/env.md")).unwrap();
    std::fs::set_permissions(agent.join("README.md"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fifo = agent.join("pipe.md");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let changes = f.rt.block_on(ws.stage_from(&agent)).unwrap();
    let file_ = Entry::File { executable: false };
    assert!(changes.contains(&Change::Deleted { path: "src/lib.rs".into(), entry: file_ }), "{changes:?}");
    assert!(changes.contains(&file("docs/lib.md")));
    assert!(changes.contains(&file("docs/заметки.md")), "names are not quoted: {changes:?}");
    assert!(changes.contains(&Change::Added { path: "docs/env.md".into(), entry: Entry::Symlink }));
    assert!(changes.contains(&Change::Modified { path: "README.md".into(), from: file_, to: Entry::File { executable: true } }));
    assert!(!changes.iter().any(|c| c.path() == "pipe.md"), "a FIFO is not a file git keeps");
    let v = check_changes(&WriteScope::MarkdownOnly, &changes).unwrap_err();
    assert_eq!(v.paths, vec!["docs/env.md", "src/lib.rs"], "the link and the moved-out code (a markdown file's mode is in scope)");

    // A nested repository with a commit is a gitlink: refused in every scope.
    let (ws2, agent2) = f.trees("r2", "codex/issue-5");
    let nested = agent2.join("vendor/x");
    std::fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    std::fs::write(nested.join("a"), "a").unwrap();
    git(&nested, &["add", "a"]);
    git(&nested, &["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "x"]);
    let changes = f.rt.block_on(ws2.stage_from(&agent2)).unwrap();
    assert_eq!(changes, vec![Change::Added { path: "vendor/x".into(), entry: Entry::Gitlink }]);
    assert!(check_changes(&WriteScope::Unrestricted, &changes).is_err());
    let _ = std::fs::remove_dir_all(&f.root);
}
