//! Black-box helpers: start a codex-k8s binary as a child process, learn the addresses it bound
//! from its JSON `listening` log lines, make plain HTTP requests, and stop it with a signal.
//!
//! `supervise` holds what the tests share with the local stack (`devstack`): starting a service
//! with its output in a log file, polling it until it is ready, and stopping it gracefully.

pub mod supervise;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A running service binary.
pub struct ServiceProcess {
    child: Child,
    /// Bound addresses by listener name (`http`, `grpc`).
    pub addrs: HashMap<String, SocketAddr>,
    output: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `bin` with exactly `env` (plus `PATH`), waits until it logged a `listening` line for
    /// each of `listeners`, and panics with its output if it exits or takes longer than 30 s.
    pub fn start(bin: &str, env: &[(String, String)], listeners: &[&str]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CODEXK8S_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut o) = output.lock() {
                        o.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while listeners.iter().any(|l| !addrs.contains_key(*l)) {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("{bin} exited with {status} before listening:\n{}", output.lock().map(|o| o.join("\n")).unwrap_or_default());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{bin} did not listen within 30s:\n{}", output.lock().map(|o| o.join("\n")).unwrap_or_default());
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
                && let (Some(l), Some(a)) = (v["listener"].as_str(), v["addr"].as_str().and_then(|a| a.parse().ok()))
            {
                addrs.insert(l.to_string(), a);
            }
        }
        Self { child, addrs, output }
    }

    /// The address of listener `name`, with `0.0.0.0` replaced by loopback.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let mut a = *self.addrs.get(name).unwrap_or_else(|| panic!("no listener {name}"));
        if a.ip().is_unspecified() {
            a.set_ip([127, 0, 0, 1].into());
        }
        a
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `TERM`) and waits up to `timeout` for the exit.
    pub fn stop(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        supervise::send_signal(self.child.id(), signal);
        supervise::wait_exit(&mut self.child, Instant::now() + timeout)
    }

    /// Polls `GET path` until it answers 200 or `timeout` passes; returns the last answer.
    pub fn wait_http_ok(&self, listener: &str, path: &str, timeout: Duration) -> (u16, String) {
        match supervise::poll_http_ok(self.addr(listener), path, Instant::now() + timeout, || None) {
            Ok(body) => (200, body),
            Err(supervise::NotReady::TimedOut(status, body)) => (status, body),
            Err(supervise::NotReady::Exited(status)) => (0, format!("exited ({status})")),
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        supervise::kill_if_running(&mut self.child);
    }
}

/// Runs `bin` to completion with exactly `env`; returns (exit code, stdout + stderr).
pub fn run_to_exit(bin: &str, env: &[(String, String)], args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A minimal HTTP/1.1 GET; returns (status, body). Status 0 means the connection failed.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A TCP port that was free a moment ago, on every address of the machine (loopback and the real
/// node's gateway alike).
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different TCP ports that were free a moment ago on every address (each is tried on the
/// wildcard address, which a listener on any one address blocks): all are held while they are
/// chosen, so none is handed out twice (0 for one that could not be had). They are picked at
/// random below the kernel's ephemeral range, so that between now and their use no outgoing
/// connection or bind to port 0 of another test or service can take them (the kernel hands
/// those out from the ephemeral range only).
pub fn free_ports<const N: usize>() -> [u16; N] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) ^ SEQ.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    let mut next = move || {
        // xorshift64: enough to spread concurrent callers over the range.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        low + (state % u64::from(high - low)) as u16
    };
    let mut held: Vec<std::net::TcpListener> = Vec::with_capacity(N);
    for _ in 0..N {
        let listener = (0..200)
            .find_map(|_| std::net::TcpListener::bind(("0.0.0.0", next())).ok())
            .or_else(|| std::net::TcpListener::bind("0.0.0.0:0").ok());
        held.extend(listener);
    }
    let mut ports = held.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.port());
    std::array::from_fn(|_| ports.next().unwrap_or(0))
}

/// Path of a workspace binary (`control-plane`, `worker`, ...), building it first if a
/// single-package test run has not.
pub fn bin_path(name: &str) -> String {
    // Test executables live in <target>/<profile>/deps/, tools in <target>/<profile>/.
    let exe = std::env::current_exe().unwrap_or_default();
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let path = profile_dir.join(name);
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock();
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut args = vec!["build", "-p", name, "--bin", name];
        if release {
            args.push("--release");
        }
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(&args)
            .current_dir(crate::repo_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
        assert!(status.success(), "building {name} failed");
    }
    path.display().to_string()
}

/// Sends raw bytes as one HTTP/1.1 exchange and returns (status, body). Lets tests send what
/// clients should not: lying lengths, chunked bodies, missing headers.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    // The server may answer and close before the whole request is written (413): that's fine.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A POST with the given headers and body (Content-Length set).
pub fn http_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(addr, &bytes)
}

/// An HTTP/1.1 request with any method; returns (status, headers, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, Vec<(String, String)>, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, vec![], String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.write_all(&bytes);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, body)
}

/// Internal API token of test stacks (control-plane and the callers it authenticates).
pub const INTERNAL_TOKEN: &str = "internal-token-for-tests-0123456789abcdef";

/// Environment of a control-plane on `db`: loopback listeners on free ports, a test encryption
/// key and [`INTERNAL_TOKEN`], and a bootstrapped owner (`the-owner`), writer `alice`, project
/// `acme` and repository `acme/app` (GitHub id 4242). Owed GitHub side effects are not carried
/// out (there is no GitHub to reach) unless `extra` sets `CODEXK8S_SIDE_EFFECTS_ENABLED=true` and
/// `CODEXK8S_GITHUB_API_URL`. Later entries of `extra` override these.
pub fn control_plane_env(db: &crate::TestDb, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut e = db.env();
    let key = "ab".repeat(32);
    let base = [
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY", key.as_str()),
        ("CODEXK8S_INTERNAL_API_TOKEN", INTERNAL_TOKEN),
        ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0"),
        ("CODEXK8S_GRPC_ADDR", "127.0.0.1:0"),
        ("CODEXK8S_BOOTSTRAP_OWNER_EMAIL", "owner@example.com"),
        ("CODEXK8S_BOOTSTRAP_OWNER_GITHUB_LOGIN", "the-owner"),
        ("CODEXK8S_BOOTSTRAP_MEMBERS", "alice:alice@example.com:read_write"),
        ("CODEXK8S_BOOTSTRAP_PROJECT_SLUG", "acme"),
        ("CODEXK8S_BOOTSTRAP_REPOSITORIES", "acme/app=4242"),
        ("CODEXK8S_GITHUB_PAT", "ghp_not_a_real_token"),
        ("CODEXK8S_SIDE_EFFECTS_ENABLED", "false"),
    ];
    e.extend(base.iter().chain(extra.iter()).map(|(k, v)| (k.to_string(), v.to_string())));
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_chosen_together_are_all_different() {
        for _ in 0..50 {
            let ports: [u16; 6] = super::free_ports();
            let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
            assert!(!ports.contains(&0) && distinct.len() == 6, "{ports:?}");
        }
    }

    /// The kernel gives outgoing connections and binds to port 0 a port of its ephemeral range;
    /// the chosen ports lie below it, so neither can take one before its service binds it.
    #[test]
    fn ports_are_chosen_outside_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let start: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        for _ in 0..50 {
            let ports: [u16; 4] = super::free_ports();
            assert!(ports.iter().all(|p| (10_000..start).contains(p)), "{ports:?} (ephemeral from {start})");
        }
    }
}
