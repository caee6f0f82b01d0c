//! The product's main job with the run in real containers: the worker on the Kubernetes runtime
//! places the run's Job on the test cluster's real node (kubelet, containerd, runc), from the
//! agent-runner image `scripts/images.sh` built. The runner container clones from forge-sim and
//! pushes and opens the pull request; the agent container runs the real Codex CLI (the image's
//! native binary) against model-sim through the runner's proxy; both reach the host only on the
//! node's gateway address. The outcome, the logs (read through the API server), the token usage
//! and the status comment come back as they do on the local runtime.

use crate::stack::{MODEL_KEY, Setup, Stack, assert_no_secret, wait_for};
use ck8s_domain::comments::{Phase, StatusState};
use ck8s_testkit::cluster;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::time::Duration;

fn status_comments(comments: &Value) -> Vec<StatusState> {
    comments.as_array().into_iter().flatten().filter_map(|c| StatusState::from_comment(c["body"].as_str().unwrap_or(""))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_issue_becomes_a_pull_request_from_a_run_in_real_containers() {
    let stack = Stack::start("realnode", Setup { real_node: true, ..Setup::default() }).await;
    let (db, fs, alice) = (&stack.db, &stack.fs, stack.alice.clone());
    let diag = || stack.diag();
    let n = stack.labelled_issue("Say hello", "A greeting script, please.", "run:dev");

    let (run, status, _) = stack.finished_run("dev", Some(n), Duration::from_secs(300)).await;
    assert_eq!(status, "succeeded", "{}", diag());
    let finished = wait_for(
        "the final status comment",
        Duration::from_secs(30),
        || async {
            let (_, comments) = fs.call("GET", &format!("/repos/acme/app/issues/{n}/comments"), Some(&alice), None);
            let all = status_comments(&comments);
            all.iter().any(|s| s.phase == Some(Phase::Finished)).then_some(all)
        },
        &diag,
    )
    .await;
    assert_eq!(finished.len(), 1, "one status comment: {finished:?}");
    let pr = finished[0].pr_number.expect("the status comment names the pull request");
    let (_, pull) = fs.call("GET", &format!("/repos/acme/app/pulls/{pr}"), Some(&alice), None);
    assert_eq!((pull["head"]["ref"].as_str(), pull["user"]["login"].as_str()), (Some("codex/issue-1"), Some("acme")), "{pull}");
    assert_eq!(fs.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&alice), None).0, 200, "the agent's change");

    // The run's pod ran on the real node, in its two containers, from the image.
    let (ns, job, logs): (String, String, Option<Value>) =
        sqlx::query_as("SELECT namespace, job_name, agent_logs_json FROM agent_runs WHERE id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let client = cluster::client_of(cluster::real_node()).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&ListParams::default().labels(&format!("job-name={job}"))).await.unwrap();
    let pod = pods.items.first().unwrap_or_else(|| panic!("no pod of {ns}/{job} is left"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(cluster::REAL_NODE), "the pod ran on the real node");
    let status = pod.status.as_ref().unwrap();
    let runner = status.container_statuses.iter().flatten().find(|c| c.name == "run").expect("the runner's status");
    let agent = status.init_container_statuses.iter().flatten().find(|c| c.name == "agent").expect("the agent's status");
    let exit = |c: &k8s_openapi::api::core::v1::ContainerStatus| c.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    assert_eq!(exit(runner), Some(0), "the runner ended well: {runner:?}");
    assert!(agent.state.as_ref().is_some_and(|s| s.terminated.is_some()), "the agent sidecar was stopped with the runner: {agent:?}");
    assert!(runner.image_id.contains("sha256:") && runner.image.contains("agent-runner"), "{runner:?}");

    // What came back: the runner's log (read through the API server), and the proxy's usage.
    let logs = logs.map(|l| l.to_string()).unwrap_or_default();
    assert!(logs.len() > 100, "the Job's logs were captured: {logs}");
    let usage: Vec<(String, i64)> =
        sqlx::query_as("SELECT model, total_tokens FROM token_usage WHERE run_id = $1").bind(run).fetch_all(&db.pool).await.unwrap();
    assert!(!usage.is_empty() && usage.iter().all(|(m, t)| m == "gpt-5.4" && *t > 0), "{usage:?}");

    // No credential leaked into what the platform kept or the pod printed.
    let mut captured = stack.captured(false).await;
    captured.push_str(&logs);
    assert_no_secret(&captured, &[("bot token", &stack.bot), ("model key", MODEL_KEY)], "the captured output");
}
