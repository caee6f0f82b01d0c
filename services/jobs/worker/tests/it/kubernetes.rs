//! The worker on the Kubernetes runtime against the test cluster (`tools/test-cluster`): a real
//! API server with the Job, namespace and service-account controllers, a scheduler, and kwok
//! playing the node (it runs nothing; a Job's pod is marked Running, then Succeeded).

use crate::{project, wait_status};
use ck8s_domain::runtime::{JobRuntime, RunEnvironment};
use ck8s_runtime::{KubernetesRuntime, KubernetesSettings};
use ck8s_testkit::cluster;
use ck8s_testkit::process::ServiceProcess;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_worker");

fn k8s_worker(db_env: Vec<(String, String)>, id: &str, prefix: &str) -> ServiceProcess {
    let mut e = db_env;
    e.extend(
        [
            ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("CODEXK8S_WORKER_ID", id.to_string()),
            ("CODEXK8S_WORKER_HEARTBEAT_INTERVAL", "200ms".to_string()),
            ("CODEXK8S_WORKER_INSTANCE_TTL", "2s".to_string()),
            ("CODEXK8S_WORKER_POLL_INTERVAL", "300ms".to_string()),
            ("CODEXK8S_WORKER_RUNTIME", "kubernetes".to_string()),
            ("CODEXK8S_WORKER_RUN_NAMESPACE_PREFIX", prefix.to_string()),
            ("CODEXK8S_WORKER_JOB_IMAGE", "registry.invalid/codex-k8s/agent-runner:0.0.0-test".to_string()),
            ("KUBECONFIG", cluster::kubeconfig().display().to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    ServiceProcess::start(BIN, &e, &["http"])
}

async fn run_with_status(pool: &PgPool, project: Uuid, corr: &str, status: &str) -> Uuid {
    let mut spec = ck8s_testkit::fixtures::run_spec(project, Uuid::nil(), 7, &["run:dev"]);
    spec.runtime.mode = ck8s_domain::policy::RuntimeMode::FullEnv;
    spec.runtime.access_profile = Some(ck8s_domain::policy::AccessProfile::Candidate);
    let payload = spec.to_value();
    let finished = if status == "pending" { None } else { Some(chrono::Utc::now()) };
    sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, run_payload, runtime_mode, issue_number, status, started_at, finished_at) \
         VALUES ($1, $2, $3, 'full-env', 7, $4, $5, $5) RETURNING id",
    )
    .bind(corr)
    .bind(project)
    .bind(payload)
    .bind(status)
    .bind(finished)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_takes_a_run_from_pending_to_succeeded_on_the_cluster() {
    let db = ck8s_testkit::fresh_db().await;
    let client = cluster::client().await;
    let p = project(&db.pool).await;
    let run = run_with_status(&db.pool, p, "k8s-run", "pending").await;
    let prefix = cluster::unique_name("ck8s-w");
    let env = db.env();
    let pre = prefix.clone();
    let w = tokio::task::spawn_blocking(move || k8s_worker(env, "w-k8s", &pre)).await.unwrap();

    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(90)).await, "succeeded", "{}", w.output());
    let (ns, job): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT namespace, job_name FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
    let (ns, job) = (ns.unwrap(), job.unwrap());
    assert!(ns.starts_with(&prefix), "{ns}");
    let nsobj: Namespace = Api::all(client.clone()).get(&ns).await.unwrap();
    assert_eq!(nsobj.metadata.labels.unwrap()["codex-k8s.dev/run-id"], run.to_string());
    let j: Job = Api::namespaced(client.clone(), &ns).get(&job).await.unwrap();
    assert_eq!(j.status.unwrap().succeeded, Some(1), "the cluster's Job controller saw the pod succeed");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM flow_events WHERE run_id = $1 ORDER BY id").bind(run).fetch_all(&db.pool).await.unwrap();
    assert_eq!(
        kinds,
        vec![
            "run.profile.resolved",
            "run.mcp.token.issued",
            "run.namespace.prepared",
            "run.namespace.ttl_scheduled",
            "run.started",
            "run.credentials.withdrawn",
            "run.succeeded"
        ]
    );
    // The run's Secret is gone while its Job (and so the outcome) is still there: nothing started
    // later in the namespace can mount it.
    let secret =
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns).get_opt(&format!("{job}-credentials")).await.unwrap();
    assert!(secret.is_none(), "the credentials Secret is still there");
    let withdrawn: bool = sqlx::query_scalar("SELECT credentials_withdrawn_at IS NOT NULL FROM agent_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(withdrawn);
    drop(w);
    KubernetesRuntime::new(
        client,
        KubernetesSettings {
            quota_pods: 4,
            platform_namespace: "codex-k8s-prod".into(),
            platform_ports: vec![9090, 8081],
            placement: Default::default(),
        },
    )
    .delete_environment(&ns)
    .await
    .unwrap();
}

fn lease(run: Uuid, expires: chrono::DateTime<chrono::Utc>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        BTreeMap::from([("codex-k8s.dev/run-id".to_string(), run.to_string())]),
        BTreeMap::from([("codex-k8s.dev/namespace-lease-expires-at".to_string(), expires.to_rfc3339())]),
    )
}

async fn terminating_or_gone(api: &Api<Namespace>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_none_or(|n| n.metadata.deletion_timestamp.is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_deletes_only_managed_expired_idle_namespaces() {
    let db = ck8s_testkit::fresh_db().await;
    let client = cluster::client().await;
    let rt = KubernetesRuntime::new(
        client.clone(),
        KubernetesSettings {
            quota_pods: 4,
            platform_namespace: "codex-k8s-prod".into(),
            platform_ports: vec![9090, 8081],
            placement: Default::default(),
        },
    );
    let p = project(&db.pool).await;
    let past = chrono::Utc::now() - chrono::Duration::minutes(5);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let prefix = cluster::unique_name("ck8s-sw");
    let names = ["expired", "unexpired", "busy", "foreign"].map(|n| format!("{prefix}-{n}"));
    let mut runs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let run = run_with_status(&db.pool, p, &format!("sweep-{i}"), "succeeded").await;
        runs.push(run);
        let (labels, annotations) = lease(run, if name.ends_with("unexpired") { future } else { past });
        if name.ends_with("foreign") {
            // Same labels and an expired lease, but not marked as managed by codex-k8s.
            let mut ns = Namespace::default();
            ns.metadata.name = Some(name.clone());
            ns.metadata.labels = Some(labels);
            ns.metadata.annotations = Some(annotations);
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        } else {
            rt.prepare(&RunEnvironment { namespace: name.clone(), labels, annotations, access_profile: None }).await.unwrap();
        }
    }
    // A pod that keeps running in the busy namespace (not a Job's, so kwok never finishes it).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names[2]);
    // (Run namespaces admit only pods that meet Pod Security `restricted`.)
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "still-working"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "run", "image": "registry.invalid/busy:1",
                            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }
    }))
    .unwrap();
    let started = Instant::now();
    loop {
        // Admission needs the namespace's default service account and quota status first.
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => break,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(60), "cannot create the busy pod: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    loop {
        let phase = pods.get("still-working").await.unwrap().status.and_then(|s| s.phase);
        if phase.as_deref() == Some("Running") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "kwok never ran the busy pod ({phase:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let env = db.env();
    // The worker's run prefix is the test's: the sweeper deletes only its own run namespaces.
    let worker_prefix = prefix.clone();
    let w = tokio::task::spawn_blocking(move || k8s_worker(env, "w-sweep", &worker_prefix)).await.unwrap();
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    while !terminating_or_gone(&api, &names[0]).await {
        assert!(started.elapsed() < Duration::from_secs(60), "the expired idle namespace was not deleted: {}", w.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the sweeper several more ticks to make a mistake about the others.
    let started = Instant::now();
    loop {
        let skipped: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT payload FROM flow_events WHERE event_type = 'run.namespace.cleanup_skipped' AND run_id = $1")
                .bind(runs[2])
                .fetch_all(&db.pool)
                .await
                .unwrap();
        if let Some(s) = skipped.first() {
            assert_eq!(s["reason"], "active_workload");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the busy namespace was never considered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in &names[1..] {
        assert!(!terminating_or_gone(&api, name).await, "{name} must be left alone");
    }
    let cleaned: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'run.namespace.cleaned'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(cleaned, 1);
    drop(w);
    for name in &names[1..3] {
        let _ = api.delete(name, &Default::default()).await;
    }
    api.delete(&names[3], &Default::default()).await.unwrap();
}
