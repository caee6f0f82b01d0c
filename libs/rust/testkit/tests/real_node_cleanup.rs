//! The real node leaves nothing behind: a second test cluster with its own home (sharing the
//! built binaries and images) starts its node, runs a pod that is still running when the cluster
//! is stopped, and after the stop no process, mount, bridge, network namespace, cgroup, iptables
//! chain or rule, CNI cache entry or log link of it remains — and the first cluster's node is
//! still Ready.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use ck8s_testkit::cluster;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn script(home: &Path, command: &str) -> String {
    cluster::script_in(Some(home), &[command])
}

/// The rules and chains of every iptables table, without counters.
fn iptables() -> BTreeSet<String> {
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_string())
        .collect()
}

fn lines_of(cmd: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&Command::new(cmd).args(args).output().unwrap().stdout).into_owned()
}

fn entries(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_real_node_leaves_nothing_behind() {
    // The first cluster's node is up, so what it made is in the "before" picture.
    let first = cluster::real_node().clone();
    let iptables_before = iptables();
    let netns_before = entries("/var/run/netns");
    let cni_before = entries("/var/lib/cni/results");

    let home = std::env::temp_dir().join(format!("ck8s-cleanup-{}", std::process::id()));
    let home_str = home.display().to_string();
    let names: Vec<(String, String)> =
        script(&home, "node-names").lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let name = |k: &str| names.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    let (bridge, cgroup_root) = (name("bridge"), name("cgroup_root"));
    assert_ne!(bridge, cluster::script_in(None, &["node-names"]).lines().next().unwrap().trim_start_matches("bridge="));

    let kubeconfig = PathBuf::from(script(&home, "start-node").trim());
    let client = cluster::client_of(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "left-running"},
        "spec": {
            "nodeSelector": {"codex-k8s.io/node": "real"},
            "tolerations": [{"key": "codex-k8s.io/real-node", "operator": "Exists"}],
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "sleep", "image": cluster::PROBE_IMAGE, "args": ["sleep"],
                            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let started = Instant::now();
    loop {
        let p = pods.get("left-running").await.unwrap();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the pod never ran: {:?}", p.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // While it runs, its traces are there (so their absence later means something).
    assert!(lines_of("ip", &["-o", "link"]).contains(&bridge), "no bridge {bridge}");
    assert!(Path::new(&format!("/sys/fs/cgroup/memory{cgroup_root}")).is_dir());
    assert!(std::fs::read_to_string("/proc/self/mounts").unwrap().contains(&home_str));
    assert!(lines_of("ps", &["-eo", "args"]).contains(&home_str));

    script(&home, "stop");

    let processes: Vec<String> = lines_of("ps", &["-eo", "pid,args"]).lines().filter(|l| l.contains(&home_str)).map(String::from).collect();
    assert!(processes.is_empty(), "processes left: {processes:?}");
    let mounts: Vec<String> =
        std::fs::read_to_string("/proc/self/mounts").unwrap().lines().filter(|l| l.contains(&home_str)).map(String::from).collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(!lines_of("ip", &["-o", "link"]).contains(&bridge), "the bridge {bridge} is left");
    let netns_left: Vec<String> = entries("/var/run/netns").difference(&netns_before).cloned().collect();
    assert!(netns_left.is_empty(), "network namespaces left: {netns_left:?}");
    let cgroups: Vec<String> = entries("/sys/fs/cgroup")
        .into_iter()
        .map(|c| format!("/sys/fs/cgroup/{c}{cgroup_root}"))
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let rules_left: Vec<String> = iptables().difference(&iptables_before).cloned().collect();
    assert!(rules_left.is_empty(), "iptables left: {rules_left:?}");
    let cni_left: Vec<String> = entries("/var/lib/cni/results").difference(&cni_before).cloned().collect();
    assert!(cni_left.is_empty(), "CNI cache entries left: {cni_left:?}");
    let links_left: Vec<String> = entries("/var/log/containers")
        .into_iter()
        .filter(|e| std::fs::read_link(format!("/var/log/containers/{e}")).is_ok_and(|t| t.starts_with(&home)))
        .collect();
    assert!(links_left.is_empty(), "log links left: {links_left:?}");
    assert!(!home.join("run").exists(), "the run state is left");
    let _ = std::fs::remove_dir_all(&home);

    // The first cluster's node was not touched.
    let node: Node = Api::all(cluster::client_of(&first).await).get(cluster::REAL_NODE).await.unwrap();
    let ready = node.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "the first cluster's node is no longer Ready");
}
