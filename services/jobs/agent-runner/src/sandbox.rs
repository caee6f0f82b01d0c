//! Who the agent runs as (ADR-0015). The agent — the Codex CLI and every command the model makes
//! it run — is untrusted, so when the runner is root it runs the agent as a user of its own: a
//! numeric uid and gid chosen from the run id, with no supplementary groups and no entry in
//! `/etc/passwd`. That user cannot read the runner's `/proc` entries (its environment holds the
//! credentials) or the runner's private directory, and cannot signal the runner. The runner also
//! marks itself non-dumpable, so even a process of its own uid cannot read its memory.
//!
//! When the runner is not root (a developer's own account), the agent runs as the same user and
//! the run says so in its events: isolation then rests on the Kubernetes runtime's split pod.

use std::path::Path;

/// The first uid handed to agents; far above the ranges distributions give to people and daemons.
const FIRST_UID: u32 = 200_000;
/// How many uids agents are spread over.
const UID_SPAN: u32 = 100_000;

/// Where runs lock the uids they use.
const LOCK_DIR: &str = "/run/codex-k8s/agents";

/// A run's hold on its agent user (see [`AgentUser::claim`]).
#[derive(Debug)]
pub struct Claim {
    pub user: AgentUser,
    _lock: std::fs::File,
}

/// The unprivileged user one run's agent runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentUser {
    pub uid: u32,
    pub gid: u32,
}

impl AgentUser {
    /// The uid of a run (FNV-1a of its id): distinct runs on one machine almost never share one,
    /// and the same run gets the same user on every attempt.
    pub fn of_run(run_id: &str) -> Self {
        let mut h: u32 = 0x811c_9dc5;
        for b in run_id.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let uid = FIRST_UID + h % UID_SPAN;
        Self { uid, gid: uid }
    }

    /// Claims the agent's user for a run when the runner can switch to one (it is root), else
    /// `None`: the run's own uid, or — when another run on this machine holds it — the next free
    /// one. The claim is an exclusive lock on `/run/codex-k8s/agents/<uid>.lock`, held while the
    /// returned [`Claim`] lives and released by the kernel if the runner dies, so two runs never
    /// share a user (one's clean-up would kill the other's agent).
    pub fn claim(run_id: &str) -> std::io::Result<Option<Claim>> {
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        let dir = Path::new(LOCK_DIR);
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let first = Self::of_run(run_id).uid - FIRST_UID;
        for i in 0..UID_SPAN {
            let uid = FIRST_UID + (first + i) % UID_SPAN;
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{uid}.lock")))?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(Claim { user: Self { uid, gid: uid }, _lock: file })),
                Err(rustix::io::Errno::WOULDBLOCK) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(std::io::Error::other("every agent uid is taken by a running run"))
    }

    /// Gives `path` and everything under it to the agent (links are changed, never followed).
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        let owner = Some(rustix::process::Uid::from_raw(self.uid));
        let group = Some(rustix::process::Gid::from_raw(self.gid));
        rustix::fs::chownat(rustix::fs::CWD, path, owner, group, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for e in std::fs::read_dir(path)? {
                self.hand_over(&e?.path())?;
            }
        }
        Ok(())
    }

    /// Kills every process running as the agent's user — what Codex left behind (a background
    /// server, a `sleep` in a detached session) — and returns how many it signalled. Called
    /// after Codex ends and before the runner reads the agent's files, so nothing of the agent
    /// changes them while they are read.
    pub fn kill_all(&self) -> usize {
        let mut killed = 0;
        // A process may fork while the scan runs; a few rounds catch the children.
        for _ in 0..5 {
            let pids = processes_of(self.uid);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    killed += 1;
                }
            }
        }
        killed
    }
}

/// Why the agent's user could not run `program` (every directory on its real path must be
/// searchable by others and the file readable and executable by others), if it could not.
pub fn unreachable_for_others(program: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if program.components().count() < 2 {
        return None; // a bare name is looked up on PATH when it runs
    }
    let real = match std::fs::canonicalize(program) {
        Ok(p) => p,
        Err(e) => return Some(format!("{}: {e}", program.display())),
    };
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode(&real) & 0o005 != 0o005 {
        return Some(format!("{} is not readable and executable by other users", real.display()));
    }
    real.ancestors().skip(1).find(|d| mode(d) & 0o001 == 0).map(|d| format!("{} is not searchable by other users", d.display()))
}

/// Processes whose real or effective uid is `uid` (from `/proc/<pid>/status`).
fn processes_of(uid: u32) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            let mut ids = uids.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
            let (real, effective) = (ids.next()?, ids.next()?);
            let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
            ((real == uid || effective == uid) && !zombie).then(|| rustix::process::Pid::from_raw(pid)).flatten()
        })
        .collect()
}

/// Makes the runner non-dumpable: no process of its uid but root may read its memory or
/// environment through `/proc`, and it leaves no core file.
pub fn seal_runner() {
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot mark the runner non-dumpable");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is a failed test
    use super::*;

    #[test]
    fn each_run_gets_a_stable_unprivileged_uid_in_the_agent_range() {
        let a = AgentUser::of_run("7f0c8a52-2c1a-4a8e-9d3e-2b6f4f0f7a10");
        assert_eq!(a, AgentUser::of_run("7f0c8a52-2c1a-4a8e-9d3e-2b6f4f0f7a10"));
        assert!((FIRST_UID..FIRST_UID + UID_SPAN).contains(&a.uid) && a.gid == a.uid);
        let spread: std::collections::BTreeSet<u32> = (0..1000).map(|i| AgentUser::of_run(&format!("run-{i}")).uid).collect();
        assert!(spread.len() > 990, "1000 runs share few uids: {}", spread.len());
    }

    #[test]
    fn two_runs_never_hold_the_same_agent_user() {
        let Some(first) = AgentUser::claim("same-run-id").unwrap() else { return }; // not root: no users to claim
        let second = AgentUser::claim("same-run-id").unwrap().unwrap();
        assert_ne!(first.user, second.user, "the second claim moves on to the next free uid");
        assert_eq!(first.user, AgentUser::of_run("same-run-id"));
        let uid = first.user.uid;
        drop(first);
        assert_eq!(AgentUser::claim("same-run-id").unwrap().unwrap().user.uid, uid, "a released uid is free again");
    }

    #[test]
    fn a_program_in_a_private_directory_is_reported_unreachable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ck8s-reach-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let prog = dir.join("bin/tool");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        for (d, m) in [(&dir, 0o755), (&dir.join("bin"), 0o755), (&prog, 0o755)] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(m)).unwrap();
        }
        assert_eq!(unreachable_for_others(&prog), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(unreachable_for_others(&prog).unwrap().contains("not searchable"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(unreachable_for_others(&prog).unwrap().contains("not readable and executable"));
        assert_eq!(unreachable_for_others(Path::new("codex")), None, "found on PATH when it runs");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
