//! forge-sim for tests: starts the binary on a free port and speaks its API and scripting API.

use crate::process::{ServiceProcess, bin_path, http_request};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A running forge-sim (stopped when dropped).
pub struct ForgeSim {
    pub proc: ServiceProcess,
    pub addr: SocketAddr,
}

impl ForgeSim {
    /// Starts forge-sim on a free loopback port.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Starts forge-sim on a free port of `ip` (the real node's gateway, for pods).
    pub fn start_on(ip: &str) -> Self {
        let proc = ServiceProcess::start(&bin_path("forge-sim"), &[("CODEXK8S_FORGE_SIM_HTTP_ADDR".into(), format!("{ip}:0"))], &["http"]);
        let addr = proc.addr("http");
        Self { proc, addr }
    }

    /// `http://<ip>:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One request, as `token`'s user when given; returns the status and the decoded body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let b = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (s, _, text) = http_request(self.addr, method, path, &headers, b.as_deref());
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a user (`kind` `User` or `Bot`) and returns its API token.
    ///
    /// # Panics
    /// If forge-sim refuses the user.
    pub fn user_of_kind(&self, login: &str, kind: &str) -> String {
        let (s, v) =
            self.call("POST", "/_sim/users", None, Some(json!({"login": login, "email": format!("{login}@example.com"), "kind": kind})));
        assert_eq!(s, 201, "forge-sim refused the user {login}: {v}");
        v["token"].as_str().unwrap_or_default().to_string()
    }

    /// Creates a user and returns its API token.
    pub fn user(&self, login: &str) -> String {
        self.user_of_kind(login, "User")
    }

    /// Replaces the injected faults (`{"outage": n}`, `{"rate_limit": n, "retry_after": s}`, ...).
    pub fn faults(&self, faults: Value) {
        let (s, v) = self.call("POST", "/_sim/faults", None, Some(faults));
        assert_eq!(s, 204, "{v}");
    }

    /// Every API answer so far.
    pub fn exchanges(&self) -> Value {
        self.call("GET", "/_sim/exchanges", None, None).1
    }

    /// Pushes one commit with `files` (path, content) to `main` of `repo` over git smart HTTP as
    /// `token`'s user, using `root` as scratch space.
    pub fn push_main(&self, token: &str, repo: &str, files: &[(&str, &str)], root: &std::path::Path) {
        self.push_main_with_links(token, repo, files, &[], root);
    }

    /// [`ForgeSim::push_main`] with symbolic links too (`(path, target)`).
    ///
    /// # Panics
    /// If a file cannot be written or git fails.
    pub fn push_main_with_links(&self, token: &str, repo: &str, files: &[(&str, &str)], links: &[(&str, &str)], root: &std::path::Path) {
        let dir = root.join("seed");
        let _ = std::fs::remove_dir_all(&dir);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a file path")).expect("seed directory");
            std::fs::write(p, content).expect("seed file");
        }
        for (path, target) in links {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a link path")).expect("seed directory");
            std::os::unix::fs::symlink(target, p).expect("seed link");
        }
        let header = git_auth(token);
        for args in [
            vec!["init", "-q", "--initial-branch=main"],
            vec!["add", "-A"],
            vec!["-c", "user.name=o", "-c", "user.email=o@x", "commit", "-q", "-m", "init"],
            vec!["-c", &header, "push", "-q", &format!("{}/git/{repo}.git", self.url()), "HEAD:refs/heads/main"],
        ] {
            let ok = std::process::Command::new("git").args(&args).current_dir(&dir).status().expect("git runs").success();
            assert!(ok, "git {}", args[0]);
        }
    }
}

/// The git setting (`-c <this>`) that authenticates to forge-sim's git as `token`'s user.
pub fn git_auth(token: &str) -> String {
    use base64::Engine;
    format!("http.extraHeader=Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x:{token}")))
}
