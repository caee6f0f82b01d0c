//! The test Kubernetes cluster (`tools/test-cluster/cluster.sh`): a real etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler on loopback, with kwok playing the nodes, and — for
//! the tests that need real containers — a real node (kubelet, containerd, runc, the CNI bridge),
//! tainted so only pods placed there with [`real_node_placement`] land on it. Started once
//! (idempotent across processes too); the first start builds the binaries from their Go modules,
//! which takes minutes. A cluster that cannot start fails the test with the reason: the tests are
//! never skipped.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The kubeconfig of the running test cluster, starting it if needed.
///
/// # Panics
/// If the cluster cannot be built or started: the message carries the script's error.
pub fn kubeconfig() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| script("start"))
}

/// The kubeconfig of the running test cluster with its real node Ready, starting both if needed
/// (the node needs root; the first start installs containerd, runc and the CNI plugins from
/// Debian's archive).
///
/// # Panics
/// If the cluster or the node cannot start: the message carries the script's error.
pub fn real_node() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| script("start-node"))
}

/// The real node's name.
pub const REAL_NODE: &str = "codex-k8s-node";
/// An image on the real node: a static probe that prints its uid, gid, effective capabilities,
/// no_new_privs and seccomp mode and whether its root filesystem is writable (`/probe`), or
/// waits until killed (`/probe sleep`).
pub const PROBE_IMAGE: &str = "localhost/codex-k8s/probe:1";

/// The address of the real node's bridge (the pods' gateway): host services the pods need
/// listen there, and only there for them (starting the node if needed).
pub fn real_node_gateway() -> &'static str {
    static GATEWAY: OnceLock<String> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        real_node();
        let names = script_in(None, &["node-names"]);
        names.lines().find_map(|l| l.strip_prefix("gateway=")).map(str::to_string).expect("cluster.sh node-names prints the gateway")
    })
}

/// The agent-runner image (`scripts/images.sh`), imported into the real node once per process:
/// its reference for a run's Job.
///
/// # Panics
/// If the image was not built, or holds another build of agent-runner than the binary the tests
/// run (then it would test other code): the message says to run `scripts/images.sh agent-runner`.
pub fn agent_runner_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        real_node();
        let archive = images_dir().join("agent-runner.tar");
        let built_from = std::fs::read_to_string(images_dir().join("agent-runner.binary")).unwrap_or_default();
        assert!(
            archive.exists() && !built_from.trim().is_empty(),
            "no agent-runner image at {}: run scripts/images.sh agent-runner (the test command does)",
            archive.display()
        );
        let binary = PathBuf::from(crate::process::bin_path("agent-runner"));
        let bytes = std::fs::read(&binary).unwrap_or_else(|e| panic!("cannot read {}: {e}", binary.display()));
        let running = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        assert_eq!(
            built_from.trim(),
            running,
            "the agent-runner image {} holds another build than {}: run scripts/images.sh agent-runner",
            archive.display(),
            binary.display()
        );
        script_in(None, &["import", &archive.display().to_string()]);
        format!("localhost/codex-k8s/agent-runner:{}", env!("CARGO_PKG_VERSION"))
    })
}

/// Turns a local-runtime worker's environment into one that runs each run as a Job on the real
/// node, from `image` (agent-runner's, holding the Codex CLI), in namespaces named `<prefix>-…`.
pub fn worker_on_real_node(worker_env: &mut Vec<(String, String)>, image: &str, prefix: &str) {
    let kubernetes = [
        ("CODEXK8S_WORKER_RUNTIME", "kubernetes".to_string()),
        ("CODEXK8S_WORKER_RUN_NAMESPACE_PREFIX", prefix.to_string()),
        ("CODEXK8S_WORKER_JOB_IMAGE", image.to_string()),
        ("CODEXK8S_WORKER_JOB_COMMAND", "/usr/local/bin/agent-runner".to_string()),
        ("CODEXK8S_CODEX_BIN", "/usr/local/bin/codex".to_string()),
        ("CODEXK8S_WORKER_JOB_NODE_SELECTOR", REAL_NODE_SELECTOR.to_string()),
        ("CODEXK8S_WORKER_JOB_TOLERATIONS", REAL_NODE_TAINT.to_string()),
        ("KUBECONFIG", real_node().display().to_string()),
    ];
    worker_env.retain(|(k, _)| !kubernetes.iter().any(|(set, _)| k == set) && k != "CODEXK8S_WORKER_LOCAL_RUNTIME_DIR");
    worker_env.extend(kubernetes.map(|(k, v)| (k.to_string(), v)));
}

/// Where `scripts/images.sh` puts the image archives (`CODEXK8S_IMAGES_DIR`, else
/// `~/.cache/codex-k8s/images`).
pub fn images_dir() -> PathBuf {
    std::env::var_os("CODEXK8S_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/codex-k8s/images"))
}

/// The ids of the containers the real node's containerd runs now (its tasks).
///
/// # Panics
/// If `ctr` cannot ask containerd.
pub fn real_node_tasks() -> Vec<String> {
    real_node();
    let sock = default_home().join("run/node/containerd/containerd.sock");
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(&sock)
        .args(["-n", "k8s.io", "tasks", "ls", "-q"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ctr: {e}"));
    assert!(out.status.success(), "ctr tasks ls failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The containerd ids of a pod's containers, init containers (sidecars) included.
pub fn container_ids(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .filter_map(|c| c.container_id.as_deref().and_then(|id| id.strip_prefix("containerd://")).map(str::to_string))
        .collect()
}

/// The real node's label a pod selects to land there (`CODEXK8S_WORKER_JOB_NODE_SELECTOR`).
pub const REAL_NODE_SELECTOR: &str = "codex-k8s.io/node=real";
/// The real node's taint a pod tolerates to land there (`CODEXK8S_WORKER_JOB_TOLERATIONS`).
pub const REAL_NODE_TAINT: &str = "codex-k8s.io/real-node";

/// The placement that sends a run's pod to the real node.
pub fn real_node_placement() -> ck8s_domain::runtime::Placement {
    ck8s_domain::runtime::Placement::parse(REAL_NODE_SELECTOR, REAL_NODE_TAINT).expect("a valid placement")
}

fn script(command: &str) -> PathBuf {
    PathBuf::from(script_in(None, &[command]).trim())
}

/// Runs `cluster.sh <command>` and returns what it printed, for the default cluster or for one
/// with its own `home` (sharing the default cluster's built binaries and images).
///
/// # Panics
/// If the script fails: its error is on stderr.
pub fn script_in(home: Option<&Path>, args: &[&str]) -> String {
    let command = args.first().copied().unwrap_or_default();
    let script = crate::repo_root().join("tools/test-cluster/cluster.sh");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).args(args).stderr(std::process::Stdio::inherit());
    if let Some(home) = home {
        cmd.env("CODEXK8S_CLUSTER_HOME", home).env("CODEXK8S_CLUSTER_CACHE", default_home());
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "tools/test-cluster/cluster.sh {command} failed ({}): the reason is above; run it by hand to see it again",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The default cluster's home (`CODEXK8S_CLUSTER_HOME`, else `<repo>/.cache/test-cluster`).
pub fn default_home() -> PathBuf {
    std::env::var_os("CODEXK8S_CLUSTER_HOME").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join(".cache/test-cluster"))
}

/// A client of the test cluster, as its administrator.
pub async fn client() -> kube::Client {
    client_of(kubeconfig()).await
}

/// A client of the cluster whose administrator kubeconfig is at `path`.
pub async fn client_of(path: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).expect("a client of the test cluster")
}

/// A namespace name unique to this test process and call, with a readable prefix.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{:x}-{}", std::process::id(), nanos % 0xfffff, N.fetch_add(1, Ordering::Relaxed))
}
