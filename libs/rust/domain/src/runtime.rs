//! The job-runtime port (product spec §5): where a run's job executes. Kubernetes in every real
//! deployment, a local process for development, demos and tests. The worker holds it as
//! `Arc<dyn JobRuntime>`; adapters live in `ck8s-runtime`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Where a run pod mounts the volume its two containers share (ADR-0015): the agent's work tree,
/// its `CODEX_HOME` and the host directory the runner hands commands through.
pub const AGENT_VOLUME: &str = "/agent";
/// The host directory in that volume.
pub const AGENT_HOST_DIR: &str = "/agent/host";

/// Whether an image reference names one image for good: a digest (`name@sha256:<64 hex>`), or a
/// version tag (`0.1.0`, `v1.2`, `1.4.2-rc.1`: a digit first, after an optional `v`). An
/// untagged reference or a branch-like tag (`latest`, `main`, `stable`) can change under running
/// runs and between the pods of one run.
pub fn image_pinned(reference: &str) -> bool {
    if let Some((name, digest)) = reference.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        return !name.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    // The tag follows the last ':' after the last '/' (a registry's port is before a '/').
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        Some((name, tag)) => !name.is_empty() && tag.strip_prefix('v').unwrap_or(tag).starts_with(|c: char| c.is_ascii_digit()),
        None => false,
    }
}

/// Where run pods may be scheduled (`CODEXK8S_WORKER_JOB_NODE_SELECTOR`,
/// `CODEXK8S_WORKER_JOB_TOLERATIONS`): only on nodes with every label of `node_selector`, and
/// tolerating taints whose key is in `tolerated_taints` (any value and effect). Empty: anywhere
/// untainted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    pub tolerated_taints: Vec<String>,
}

/// Why a placement does not parse; each names the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{0:?} is not a Kubernetes label key=value")]
    NodeSelector(String),
    #[error("{0:?} is not a taint key")]
    Toleration(String),
}

impl Placement {
    /// Parses `key=value,key2=value2` and `key,key2`.
    pub fn parse(node_selector: &str, tolerations: &str) -> Result<Self, PlacementError> {
        let mut p = Self::default();
        for entry in node_selector.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((k, v)) if label_key(k) && label_value(v) => p.node_selector.insert(k.to_string(), v.to_string()),
                _ => return Err(PlacementError::NodeSelector(entry.to_string())),
            };
        }
        for key in tolerations.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if !label_key(key) {
                return Err(PlacementError::Toleration(key.to_string()));
            }
            p.tolerated_taints.push(key.to_string());
        }
        Ok(p)
    }
}

/// A label (or taint) key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_` and `.` that starts and ends alphanumeric.
fn label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    });
    prefix_ok && !name.is_empty() && label_value(name)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.` that starts and ends
/// alphanumeric.
fn label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// The TCP port of an `http(s)://host[:port][/path]` URL (80 or 443 when it names none).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(p) => p.parse().ok(),
        None => Some(default),
    }
}

/// The platform ports a run pod reaches: control-plane's gRPC callbacks (where the runner dials)
/// and its MCP endpoint when there is one; empty when the target is not a URL.
pub fn platform_ports(control_plane_target: &str, mcp_url: Option<&str>) -> Vec<i32> {
    let Some(grpc) = url_port(control_plane_target) else { return vec![] };
    let mut ports = vec![i32::from(grpc)];
    if let Some(p) = mcp_url.and_then(url_port).map(i32::from).filter(|p| !ports.contains(p)) {
        ports.push(p);
    }
    ports
}

/// A boxed future, so the port stays object-safe without an async-trait dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to run for one agent run.
#[derive(Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub run_id: String,
    pub correlation_id: String,
    pub project_id: String,
    /// Namespace (Kubernetes) or run directory name (local).
    pub namespace: String,
    /// Job name, unique per run.
    pub job_name: String,
    /// Image (Kubernetes); ignored by the local runtime.
    pub image: String,
    /// Program and arguments (the runner).
    pub command: Vec<String>,
    /// The agent's container (Kubernetes): the same program as the agent's host on
    /// [`AGENT_HOST_DIR`]. The local runtime has no such container: there the runner runs the
    /// agent as a user of its own.
    pub agent_command: Vec<String>,
    /// Non-secret environment.
    pub env: BTreeMap<String, String>,
    /// Credentials: never plain env values in a pod spec; the Kubernetes adapter puts them in a
    /// per-run Secret, the local adapter in a 0600 file read by the wrapper.
    pub secret_env: BTreeMap<String, String>,
    /// Hard limit of the job (activeDeadlineSeconds).
    pub active_deadline: Duration,
    /// Service account of the job's pod (Kubernetes): the access profile's, or the default.
    pub service_account: Option<String>,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("run_id", &self.run_id)
            .field("namespace", &self.namespace)
            .field("job_name", &self.job_name)
            .field("command", &self.command)
            .field("env", &self.env)
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The environment a run's job executes in: its namespace and what goes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnvironment {
    pub namespace: String,
    /// Labels naming the run (`codex-k8s.dev/run-id`, ...), added to the managed labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (correlation id, namespace lease TTL and expiry).
    pub annotations: BTreeMap<String, String>,
    /// `candidate`, `production-readonly`, or none (code-only: no cluster access).
    pub access_profile: Option<String>,
}

/// A managed run environment as the runtime sees it, for the namespace sweeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentInfo {
    pub namespace: String,
    /// Labels and annotations together (`codex-k8s.dev/run-id`, `…/namespace-lease-expires-at`).
    pub metadata: BTreeMap<String, String>,
    /// Whether anything still runs in it (pods, unfinished jobs, live processes).
    pub active: bool,
}

/// Where a launched job lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub namespace: String,
    pub job_name: String,
}

/// What the runtime knows about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Created, not running yet.
    Pending,
    Running,
    Succeeded,
    /// Finished unsuccessfully; `reason` is short and secret-free (e.g. `exit code 3`).
    Failed {
        reason: String,
        exit_code: Option<i32>,
    },
    /// The runtime has no such job (deleted, never created, or lost).
    NotFound,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed { .. } | JobState::NotFound)
    }
}

/// A runtime operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime could not be reached; retry later.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The request is invalid (bad name, bad spec).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// Refused by policy (e.g. deleting a namespace that is not managed by codex-k8s).
    #[error("refused: {0}")]
    Refused(String),
    /// Anything else.
    #[error("runtime error: {0}")]
    Other(String),
}

impl RuntimeError {
    /// Whether trying again shortly may succeed (the runtime was unreachable, busy or briefly
    /// conflicting); a refusal or an invalid request will not change.
    pub fn is_transient(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }
}

/// Executes run jobs.
pub trait JobRuntime: Send + Sync {
    /// Creates or updates the run's namespace and the objects in it (idempotent).
    fn prepare<'a>(&'a self, env: &'a RunEnvironment) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Every environment codex-k8s manages.
    fn environments<'a>(&'a self) -> BoxFuture<'a, Result<Vec<EnvironmentInfo>, RuntimeError>>;
    /// Deletes a run namespace; refuses (`Refused`) one that codex-k8s does not manage.
    fn delete_environment<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Creates the job (idempotent: launching an existing job returns its reference).
    fn launch<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<JobRef, RuntimeError>>;
    /// Current state of a job.
    fn status<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<JobState, RuntimeError>>;
    /// The last `tail_lines` lines of the job's log (all when `None`).
    fn logs<'a>(&'a self, job: &'a JobRef, tail_lines: Option<usize>) -> BoxFuture<'a, Result<String, RuntimeError>>;
    /// Stops the job and everything it started; stopping a finished or missing job is not an error.
    fn cancel<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Removes the job's credentials from the runtime once its runner has read them (a missing
    /// Secret is not an error), so nothing started later in the run's namespace can take them.
    fn withdraw_credentials<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>>;
}

/// Checks a namespace or job name: a DNS label (lowercase letters, digits, '-', at most 63).
pub fn validate_name(kind: &str, name: &str) -> Result<(), RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err(RuntimeError::Invalid(format!("{kind} {name:?} is not a DNS label"))) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_digests_and_version_tags_pin_an_image() {
        for pinned in [
            "codex-k8s/agent-runner:0.1.0",
            "registry.local:5000/codex-k8s/agent-runner:0.1.0",
            "codex-k8s/agent-runner:v1.2.3-rc.1",
            &format!("codex-k8s/agent-runner@sha256:{}", "a".repeat(64)),
        ] {
            assert!(super::image_pinned(pinned), "{pinned}");
        }
        for floating in [
            "codex-k8s/agent-runner",
            "codex-k8s/agent-runner:latest",
            "registry.local:5000/codex-k8s/agent-runner",
            "codex-k8s/agent-runner:",
            "codex-k8s/agent-runner:main",
            "codex-k8s/agent-runner:stable",
            "codex-k8s/agent-runner:v",
            "codex-k8s/agent-runner@sha256:abc",
            "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(!super::image_pinned(floating), "{floating}");
        }
    }

    use super::*;

    #[test]
    fn the_pod_reaches_control_plane_where_the_runner_dials_it() {
        assert_eq!(platform_ports("http://control-plane:9090", Some("http://control-plane:8081/mcp")), [9090, 8081]);
        assert_eq!(platform_ports("http://127.0.0.1:9090", None), [9090]);
        assert_eq!(platform_ports("https://cp.example", Some("https://cp.example/mcp")), [443]);
        assert_eq!(platform_ports("http://[::1]:7000", None), [7000]);
        assert_eq!(platform_ports("control-plane:9090", None), Vec::<i32>::new(), "not a URL");
        assert_eq!(url_port("http://user@host:81/x"), Some(81));
        assert_eq!(url_port("http://:81"), None);
        assert_eq!(url_port("ftp://host"), None);
    }

    #[test]
    fn names_must_be_dns_labels() {
        assert!(validate_name("job", "codex-k8s-run-abc").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "../x", &"a".repeat(64)] {
            assert!(validate_name("job", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_prints_secret_values() {
        let mut spec = JobSpec {
            run_id: "r".into(),
            correlation_id: "c".into(),
            project_id: "p".into(),
            namespace: "ns".into(),
            job_name: "j".into(),
            image: "i".into(),
            command: vec!["true".into()],
            agent_command: vec!["true".into()],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            active_deadline: Duration::from_secs(1),
            service_account: None,
        };
        spec.secret_env.insert("CODEXK8S_GIT_BOT_TOKEN".into(), "ghp_supersecret".into());
        let shown = format!("{spec:?}");
        assert!(shown.contains("CODEXK8S_GIT_BOT_TOKEN") && !shown.contains("ghp_supersecret"), "{shown}");
    }

    #[test]
    fn placements_parse_labels_and_taint_keys_and_name_a_bad_entry() {
        let p = Placement::parse(" codex-k8s.io/node=real , pool=agents", "codex-k8s.io/real-node,dedicated").unwrap();
        assert_eq!(p.node_selector.get("codex-k8s.io/node").map(String::as_str), Some("real"));
        assert_eq!(p.node_selector.get("pool").map(String::as_str), Some("agents"));
        assert_eq!(p.tolerated_taints, vec!["codex-k8s.io/real-node".to_string(), "dedicated".to_string()]);
        assert_eq!(Placement::parse("", "").unwrap(), Placement::default());
        for (selector, tolerations) in [
            ("pool", ""),
            ("pool=agents;rm -rf", ""),
            ("Bad_Prefix.io/x=y", ""),
            ("/x=y", ""),
            ("x=-y", ""),
            ("", "a b"),
            ("", "-dedicated"),
        ] {
            let err = Placement::parse(selector, tolerations).unwrap_err();
            let named = if selector.is_empty() { tolerations } else { selector };
            assert!(err.to_string().contains(&format!("{named:?}")), "{err}");
            assert_eq!(matches!(err, PlacementError::NodeSelector(_)), !selector.is_empty());
        }
        assert!(Placement::parse(&format!("k={}", "v".repeat(64)), "").is_err());
    }
}
