//! The product's main job with the run in real containers: the worker on the Kubernetes runtime
//! places the run's Job on the test cluster's real node (kubelet, containerd, runc), from the
//! agent-runner image `scripts/images.sh` built. The runner container clones from forge-sim and
//! pushes and opens the pull request; the agent container runs the real Codex CLI (the image's
//! native binary) against model-sim through the runner's proxy; both reach the host only on the
//! node's gateway address. The outcome, the logs (read through the API server), the token usage
//! and the status comment come back as they do on the local runtime.

use crate::stack::{MODEL_KEY, Setup, Stack, assert_no_secret, wait_for};
use ck8s_testkit::cluster;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_issue_becomes_a_pull_request_from_a_run_in_real_containers() {
    let stack = Stack::start("realnode", Setup { real_node: true, ..Setup::default() }).await;
    let (db, fs, alice) = (&stack.db, &stack.fs, stack.alice.clone());
    let diag = || stack.diag();
    let n = stack.labelled_issue("Say hello", "A greeting script, please.", "run:dev");

    let (run, status, _) = stack.finished_run("dev", Some(n), Duration::from_secs(300)).await;
    assert_eq!(status, "succeeded", "{}", diag());
    let finished = stack.final_status_comments(n).await;
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
    // The finished Job and its pod's logs outlive the worker's reading (no TTL): still there.
    let job_left = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), &ns).get_opt(&job).await.unwrap();
    assert!(job_left.is_some_and(|j| j.status.and_then(|s| s.succeeded) == Some(1)), "the finished Job stays until its namespace goes");
    let params = kube::api::LogParams { container: Some("run".into()), ..Default::default() };
    let pod_name = pod.metadata.name.clone().unwrap();
    let still = Api::<Pod>::namespaced(client.clone(), &ns).logs(&pod_name, &params).await.unwrap();
    assert!(!still.is_empty(), "the runner's log is still readable after the worker read it");
    let usage: Vec<(String, i64)> =
        sqlx::query_as("SELECT model, total_tokens FROM token_usage WHERE run_id = $1").bind(run).fetch_all(&db.pool).await.unwrap();
    assert!(!usage.is_empty() && usage.iter().all(|(m, t)| m == "gpt-5.4" && *t > 0), "{usage:?}");

    // No credential leaked into what the platform kept or the pod printed.
    let mut captured = stack.captured(false).await;
    captured.push_str(&logs);
    assert_no_secret(&captured, &[("bot token", &stack.bot), ("model key", MODEL_KEY)], "the captured output");
}

const SLOW: &str = r#"{
  "name": "slow-pod",
  "description": "The agent starts a ten-minute command, so the run can be cancelled while Codex is at work in its pod.",
  "match": ["Wait in a pod"],
  "turns": [
    {"tool": "exec_command", "arguments": {"cmd": "echo started > started.txt && sleep 623"}},
    {"message": "{\"summary\": \"Done waiting.\", \"review_replies\": [], \"explanation\": null, \"line_notes\": [], \"verdict\": null}"}
  ],
  "usage": {"input_tokens": 100, "output_tokens": 10}
}"#;

/// Cancelling a run while its agent works in a real pod: the worker deletes the Job, the stop
/// signal reaches the runner as the container's first process, which stops Codex and saves the
/// session so far (`cancelled`, for a later revise), and no container of the pod keeps running.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_in_a_pod_stops_its_containers_and_keeps_the_session() {
    let stack = Stack::start("realcancel", Setup { real_node: true, scenarios: &[("slow-pod.json", SLOW)], ..Setup::default() }).await;
    let diag = || stack.diag();
    let n = stack.labelled_issue("Wait in a pod", "Take your time.", "run:dev");
    // Codex is at work once it has asked the model for the next turn after the long command
    // started (the first request is answered with that command).
    wait_for(
        "the agent to start its long command",
        Duration::from_secs(180),
        || async { (!stack.model_requests("slow-pod").is_empty()).then_some(()) },
        &diag,
    )
    .await;
    let run: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM agent_runs WHERE issue_number = $1").bind(n as i32).fetch_one(&stack.db.pool).await.unwrap();
    let (ns, job): (String, String) =
        sqlx::query_as("SELECT namespace, job_name FROM agent_runs WHERE id = $1").bind(run).fetch_one(&stack.db.pool).await.unwrap();
    let client = cluster::client_of(cluster::real_node()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the run's pod");
    let ids = cluster::container_ids(&pod);
    assert_eq!(ids.len(), 2, "runner and agent run: {:?}", pod.status);

    ck8s_store::runs::cancel(&stack.db.pool, run, "test", "cancelled by the test").await.unwrap();
    let session = wait_for(
        "the runner to save the cancelled session",
        Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM agent_sessions WHERE run_id = $1")
                .bind(run)
                .fetch_optional(&stack.db.pool)
                .await
                .unwrap()
                .filter(|s| s != "running")
        },
        &diag,
    )
    .await;
    assert_eq!(session, "cancelled", "the runner got the stop signal and saved the session so far");
    let name = pod.metadata.name.clone().unwrap();
    wait_for(
        "the pod and its containers to go",
        Duration::from_secs(60),
        || async {
            let gone = pods.get_opt(&name).await.unwrap().is_none();
            let tasks = tokio::task::spawn_blocking(cluster::real_node_tasks).await.unwrap();
            (gone && !ids.iter().any(|id| tasks.contains(id))).then_some(())
        },
        &diag,
    )
    .await;
    let status: String =
        sqlx::query_scalar("SELECT status FROM agent_runs WHERE id = $1").bind(run).fetch_one(&stack.db.pool).await.unwrap();
    assert_eq!(status, "canceled");
}
