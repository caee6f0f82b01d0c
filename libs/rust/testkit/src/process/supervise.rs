//! Supervising child processes, shared by the tests' [`ServiceProcess`](super::ServiceProcess) and
//! the local stack (`devstack`): start a service with its output in a log file, poll it over HTTP
//! until it is ready, and stop it gracefully — `SIGTERM`, a grace period, then `SIGKILL`.
//!
//! Everything here returns what happened instead of panicking, so a command-line tool can say
//! what to do next. The waits block the calling thread while they poll.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often an exit is looked for.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A service started with its stdout and stderr in a log file. Dropping it kills the process if
/// it is still running.
pub struct LoggedChild {
    name: String,
    log: PathBuf,
    child: Child,
}

impl LoggedChild {
    /// Starts `bin` with `env` over the inherited environment, stdin closed, and stdout and
    /// stderr written to `log` (created anew). The child gets its own process group, so a
    /// terminal's Ctrl-C reaches only the parent, which stops its children in its own order.
    pub fn spawn(name: &str, bin: &Path, env: impl IntoIterator<Item = (String, String)>, log: &Path) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log)?;
        let child = Command::new(bin).envs(env).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).process_group(0).spawn()?;
        Ok(Self { name: name.to_string(), log: log.to_path_buf(), child })
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file with its output.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `GET path` on `addr` until it answers 200, the process exits, or `deadline` passes.
    pub fn wait_ready(&mut self, addr: SocketAddr, path: &str, deadline: Instant) -> Result<(), NotReady> {
        poll_http_ok(addr, path, deadline, || self.exited()).map(|_| ())
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        kill_if_running(&mut self.child);
    }
}

/// Why a service did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first, with this status.
    Exited(ExitStatus),
    /// The deadline passed; the last answer (status 0: no connection).
    TimedOut(u16, String),
}

/// Polls `GET path` on `addr` until it answers 200 and returns that answer's body. Gives up when
/// `exited` reports an exit status or when `deadline` passes.
pub fn poll_http_ok(
    addr: SocketAddr,
    path: &str,
    deadline: Instant,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> Result<String, NotReady> {
    loop {
        let (status, body) = super::http_get(addr, path);
        if status == 200 {
            return Ok(body);
        }
        if let Some(s) = exited() {
            return Err(NotReady::Exited(s));
        }
        if Instant::now() > deadline {
            return Err(NotReady::TimedOut(status, body));
        }
        std::thread::sleep(POLL);
    }
}

/// Sends `signal` (`TERM`, `KILL`, `INT`, …) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Waits for `child` to exit until `deadline`; `None` if it is still running then.
pub fn wait_exit(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(EXIT_POLL);
    }
}

/// Kills `child` and reaps it, unless it has exited already.
pub fn kill_if_running(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How one child ended when it was terminated.
#[derive(Debug)]
pub enum Stopped {
    /// It exited within the grace period.
    Exited(ExitStatus),
    /// It was still running when the grace period ended, and is killed right after the report.
    Overdue,
}

/// Stops `children` gracefully: `SIGTERM` to all of them at once, then each gets what is left of
/// `grace` to exit, in order; one still running then is killed. `report` hears of each child as
/// it ends (before the kill, for one that is overdue).
pub fn terminate(children: &mut [LoggedChild], grace: Duration, mut report: impl FnMut(&LoggedChild, Stopped)) {
    for c in children.iter_mut() {
        // One already reaped has no pid of its own any more: it must not be signalled.
        if let Ok(None) = c.child.try_wait() {
            send_signal(c.child.id(), "TERM");
        }
    }
    let deadline = Instant::now() + grace;
    for c in children.iter_mut() {
        match wait_exit(&mut c.child, deadline) {
            Some(status) => report(c, Stopped::Exited(status)),
            None => {
                report(c, Stopped::Overdue);
                kill_if_running(&mut c.child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory with an executable shell script `name` running `body`.
    fn script(name: &str, body: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("supervise-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join(name);
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, bin)
    }

    #[test]
    fn output_goes_to_the_log_file_with_the_given_env() {
        let (dir, bin) = script("greet", "echo \"out $SUPERVISE_GREETING\"; echo \"err $SUPERVISE_GREETING\" >&2");
        let log = dir.join("greet.log");
        let mut c = LoggedChild::spawn("greet", &bin, [("SUPERVISE_GREETING".to_string(), "hello".to_string())], &log).unwrap();
        assert!(wait_exit(&mut c.child, Instant::now() + Duration::from_secs(10)).is_some_and(|s| s.success()));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out hello") && text.contains("err hello"), "{text}");
        assert_eq!((c.name(), c.log()), ("greet", log.as_path()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn terminate_sends_term_then_kills_what_outlives_the_grace_period() {
        let (dir, polite) = script("polite", "exec sleep 30");
        let (_, stubborn) = script("stubborn", "trap '' TERM; exec sleep 30");
        let mut children = vec![
            LoggedChild::spawn("polite", &polite, [], &dir.join("polite.log")).unwrap(),
            LoggedChild::spawn("stubborn", &stubborn, [], &dir.join("stubborn.log")).unwrap(),
        ];
        std::thread::sleep(Duration::from_millis(300)); // let the shell set its trap
        let started = Instant::now();
        let mut seen = Vec::new();
        terminate(&mut children, Duration::from_millis(800), |c, s| seen.push((c.name().to_string(), s)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(&seen[..], [(a, Stopped::Exited(_)), (b, Stopped::Overdue)] if a == "polite" && b == "stubborn"), "{seen:?}");
        for c in &mut children {
            assert!(c.exited().is_some(), "{} is still running", c.name());
        }
        let _ = std::fs::remove_dir_all(polite.parent().unwrap());
        let _ = std::fs::remove_dir_all(stubborn.parent().unwrap());
    }

    #[test]
    fn readiness_polling_reports_ready_exited_and_timed_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ready = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for (n, stream) in listener.incoming().enumerate() {
                let mut s = stream.unwrap();
                let _ = s.read(&mut [0u8; 1024]);
                let answer = if n == 0 { "HTTP/1.1 503 Unavailable\r\n\r\nwait" } else { "HTTP/1.1 200 OK\r\n\r\nok" };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        let soon = || Instant::now() + Duration::from_secs(10);
        assert_eq!(poll_http_ok(ready, "/readyz", soon(), || None).unwrap(), "ok");

        let nobody = SocketAddr::from(([127, 0, 0, 1], super::super::free_port()));
        let (dir, bin) = script("quitter", "exit 3");
        let mut quitter = LoggedChild::spawn("quitter", &bin, [], &dir.join("quitter.log")).unwrap();
        assert!(matches!(quitter.wait_ready(nobody, "/readyz", soon()), Err(NotReady::Exited(s)) if s.code() == Some(3)));
        let _ = std::fs::remove_dir_all(&dir);

        let past = Instant::now();
        assert!(matches!(poll_http_ok(nobody, "/readyz", past, || None), Err(NotReady::TimedOut(0, _))));
    }
}
