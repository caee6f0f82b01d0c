//! devstack's children: starts each service of the topology with its log in
//! `<state>/logs/<service>.log`, waits for its `/readyz`, watches them while the stack runs, and
//! stops them in order on Ctrl-C, SIGTERM or a failure. The mechanics (log files, readiness
//! polling, SIGTERM then SIGKILL after a grace period) are the tests' own, from
//! `ck8s_testkit::process::supervise`; this module names the services and says what happened.
//!
//! The waits block the runtime's only thread while they poll: devstack calls them while it has
//! nothing else to do (starting up, stopping).

use crate::say;
use crate::topology::{Dirs, Svc};
use anyhow::{Context, Result, bail};
use ck8s_testkit::process::supervise::{self, LoggedChild, NotReady, Stopped};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The running services, in start order.
pub struct Supervisor {
    bin_dir: PathBuf,
    logs: PathBuf,
    running: Vec<LoggedChild>,
}

impl Supervisor {
    pub fn new(dirs: &Dirs) -> Self {
        Self { bin_dir: dirs.bin.clone(), logs: dirs.logs.clone(), running: Vec::new() }
    }

    /// Starts `svc` with the common environment and its own, and waits until it is ready.
    pub fn start(&mut self, svc: &Svc, common: &[(String, String)], timeout: Duration) -> Result<()> {
        self.spawn(svc, common)?;
        self.wait_ready(svc, Instant::now() + timeout)
    }

    /// Starts every one of `svcs` at once, then waits until all are ready within `timeout`.
    pub fn start_all(&mut self, svcs: &[Svc], common: &[(String, String)], timeout: Duration) -> Result<()> {
        for s in svcs {
            self.spawn(s, common)?;
        }
        let deadline = Instant::now() + timeout;
        for s in svcs {
            self.wait_ready(s, deadline)?;
        }
        Ok(())
    }

    fn spawn(&mut self, s: &Svc, common: &[(String, String)]) -> Result<()> {
        let log = self.logs.join(format!("{}.log", s.name));
        let env = common.iter().cloned().chain(s.env.iter().cloned());
        let child = LoggedChild::spawn(s.name, &self.bin_dir.join(s.name), env, &log).with_context(|| format!("starting {}", s.name))?;
        self.running.push(child);
        Ok(())
    }

    fn wait_ready(&mut self, s: &Svc, deadline: Instant) -> Result<()> {
        let Some(child) = self.running.iter_mut().find(|c| c.name() == s.name) else {
            bail!("{} was never started", s.name);
        };
        match child.wait_ready(SocketAddr::new(s.host, s.ready_port), "/readyz", deadline) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => bail!("{} exited ({status}) before it was ready; see {}", s.name, child.log().display()),
            Err(NotReady::TimedOut(..)) => bail!("{} was not ready in time; see {}", s.name, child.log().display()),
        }
    }

    /// Stops every service: SIGTERM to all, then SIGKILL to those still running after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        supervise::terminate(&mut self.running, grace, |c, stopped| match stopped {
            Stopped::Exited(status) => say(format!("{} stopped ({status})", c.name())),
            Stopped::Overdue => say(format!("{} did not stop within {grace:?}; killing it", c.name())),
        });
    }

    /// Runs until Ctrl-C or SIGTERM (`Ok`), or until a service exits by itself (`Err`).
    pub async fn wait_for_stop(&mut self) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = int.recv() => { println!(); say("Ctrl-C received, stopping"); return Ok(()); }
                _ = term.recv() => { say("SIGTERM received, stopping"); return Ok(()); }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    for c in self.running.iter_mut() {
                        if let Some(status) = c.exited() {
                            bail!("{} exited unexpectedly ({status}); stopping the rest (see {})", c.name(), c.log().display());
                        }
                    }
                }
            }
        }
    }
}
