//! The agent container's side of a run pod, as its own process (`agent-runner agent-host <dir>`)
//! sharing only a directory with the runner: a command runs there with the environment the
//! runner gives it and nothing else, its output and exit come back as files; a stopped run stops
//! the command and everything it started; a link planted in place of an output file is not
//! followed; SIGTERM ends the host.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use agent_runner::host::Invocation;
use agent_runner::host::{Exit, Remote, open_plain};
use std::io::Read;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-runner");

fn host(dir: &std::path::Path) -> std::process::Child {
    std::process::Command::new(BIN)
        .args(["agent-host"])
        .arg(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CODEXK8S_GIT_BOT_TOKEN", "must-not-reach-the-command")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn sh(script: &str, dir: &std::path::Path) -> Invocation {
    Invocation {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("SHARED".into(), dir.display().to_string())],
        cwd: dir.display().to_string(),
    }
}

fn read(path: &std::path::Path) -> String {
    let mut s = String::new();
    open_plain(path).unwrap().read_to_string(&mut s).unwrap();
    s
}

fn running(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_host_runs_the_runners_commands_and_nothing_else_reaches_them() {
    let dir = std::env::temp_dir().join(format!("ck8s-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = host(&dir);

    // A command: its environment is the runner's invocation's alone; output and exit come back.
    let mut r = Remote::start(&dir, &sh("echo out; env; echo err >&2; exit 3", &dir)).unwrap();
    assert_eq!(r.wait().await.unwrap(), Exit { code: Some(3) });
    let out = read(&r.file("stdout"));
    assert!(out.starts_with("out\n") && out.contains("SHARED="), "{out}");
    assert!(!out.contains("must-not-reach"), "the host's own environment is not the command's: {out}");
    assert_eq!(read(&r.file("stderr")), "err\n");

    // A stopped run stops the command and what it started.
    let r = Remote::start(&dir, &sh("sleep 613 & sleep 614; wait", &dir)).unwrap();
    let started = Instant::now();
    while !running("sleep 614") {
        assert!(started.elapsed() < Duration::from_secs(20), "the command never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = r.file("stop");
    let exit = r.file("exit");
    drop(r);
    assert!(stop.exists(), "dropping the runner's side asks for a stop");
    while !exit.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "the host never stopped the command");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!running("sleep 613") && !running("sleep 614"), "the command's group is gone");

    // The agent may replace an output file with a link: the runner does not follow it.
    let mut r = Remote::start(&dir, &sh("for f in \"$SHARED\"/*.stdout; do rm -f \"$f\"; ln -s /etc/hostname \"$f\"; done", &dir)).unwrap();
    assert_eq!(r.wait().await.unwrap().code, Some(0));
    assert!(open_plain(&r.file("stdout")).is_err(), "a link is not followed");

    // SIGTERM ends the host.
    assert!(std::process::Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
