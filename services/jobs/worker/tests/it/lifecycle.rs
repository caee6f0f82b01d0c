//! The run lifecycle with real worker processes, the local runtime and a real database.

use ck8s_testkit::process::ServiceProcess;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_worker");

async fn project(pool: &PgPool) -> Uuid {
    sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('acme', 'acme') RETURNING id").fetch_one(pool).await.unwrap()
}

async fn pending(pool: &PgPool, project: Uuid, corr: &str, issue: i64, issue_labels: &[&str]) -> Uuid {
    let payload = serde_json::json!({
        "issue": {"number": issue, "labels": issue_labels},
        "repository": {"full_name": "acme/app"},
        "agent": {"key": "dev", "name": "AI Developer"},
        "trigger": {"source": "issue_label", "kind": "dev", "label": "run:dev"},
        "runtime": {"mode": "code-only", "deploy_only": false},
    });
    sqlx::query_scalar("INSERT INTO agent_runs (correlation_id, project_id, run_payload, runtime_mode, issue_number) VALUES ($1, $2, $3, 'code-only', $4) RETURNING id")
        .bind(corr)
        .bind(project)
        .bind(payload)
        .bind(issue as i32)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn worker(mut e: Vec<(String, String)>, id: &str, runs_dir: &std::path::Path, command: &str) -> ServiceProcess {
    e.extend(
        [
            ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("CODEXK8S_WORKER_ID", id.to_string()),
            ("CODEXK8S_WORKER_HEARTBEAT_INTERVAL", "200ms".to_string()),
            ("CODEXK8S_WORKER_INSTANCE_TTL", "1s".to_string()),
            ("CODEXK8S_WORKER_POLL_INTERVAL", "200ms".to_string()),
            ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR", runs_dir.display().to_string()),
            ("CODEXK8S_WORKER_JOB_COMMAND", command.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    ServiceProcess::start(BIN, &e, &["http"])
}

async fn wait_status(pool: &PgPool, id: Uuid, want: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let s: String = sqlx::query_scalar("SELECT status FROM agent_runs WHERE id = $1").bind(id).fetch_one(pool).await.unwrap();
        if s == want || started.elapsed() > within {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn events(pool: &PgPool, id: Uuid) -> Vec<(String, String)> {
    sqlx::query_as("SELECT event_type, actor_id FROM flow_events WHERE run_id = $1 ORDER BY id").bind(id).fetch_all(pool).await.unwrap()
}

fn runs_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ck8s-worker-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_runs_are_launched_and_finished_with_their_outcome() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let ok = pending(&db.pool, p, "ok", 12, &["run:dev", "[ai-model-gpt-5.2]"]).await;
    let bad = pending(&db.pool, p, "bad", 13, &["run:dev"]).await;
    let dup = pending(&db.pool, p, "dup", 14, &["run:dev", "[ai-model-gpt-5.2]", "[ai-model-gpt-5.4]"]).await;
    let dir = runs_dir("outcome");
    let cmd = "echo \"agent for issue $CODEXK8S_ISSUE_NUMBER with $CODEXK8S_AGENT_MODEL\"; test \"$CODEXK8S_ISSUE_NUMBER\" != 13";
    let (env, d) = (db.env(), dir.clone());
    let svc = tokio::task::spawn_blocking(move || worker(env, "w-outcome", &d, cmd)).await.unwrap();

    assert_eq!(wait_status(&db.pool, ok, "succeeded", Duration::from_secs(20)).await, "succeeded");
    assert_eq!(wait_status(&db.pool, bad, "failed", Duration::from_secs(20)).await, "failed");
    assert_eq!(wait_status(&db.pool, dup, "failed", Duration::from_secs(20)).await, "failed");

    let (model, ns, job): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT model, namespace, job_name FROM agent_runs WHERE id = $1").bind(ok).fetch_one(&db.pool).await.unwrap();
    assert_eq!(model.as_deref(), Some("gpt-5.2"));
    let log = std::fs::read_to_string(dir.join(ns.unwrap()).join(job.unwrap()).join("job.log")).unwrap();
    assert!(log.contains("agent for issue 12 with gpt-5.2"), "{log}");
    let captured: serde_json::Value =
        sqlx::query_scalar("SELECT agent_logs_json FROM agent_runs WHERE id = $1").bind(ok).fetch_one(&db.pool).await.unwrap();
    assert!(captured["tail"].as_str().unwrap().contains("agent for issue 12 with gpt-5.2"), "{captured}");
    let kinds: Vec<String> = events(&db.pool, ok).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec!["run.profile.resolved", "run.namespace.prepared", "run.namespace.ttl_scheduled", "run.started", "run.succeeded"]
    );

    let (reason, message): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT failure_reason, failure_message FROM agent_runs WHERE id = $1").bind(bad).fetch_one(&db.pool).await.unwrap();
    assert_eq!((reason.as_deref(), message.as_deref()), (Some("kubernetes_job_failed"), Some("exit code 1")));

    let (reason, message): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT failure_reason, failure_message FROM agent_runs WHERE id = $1").bind(dup).fetch_one(&db.pool).await.unwrap();
    assert_eq!(reason.as_deref(), Some("precondition_failed"));
    assert!(message.unwrap().contains("conflicting model labels"));
    assert!(events(&db.pool, dup).await.iter().any(|e| e.0 == "run.failed.precondition"));
    drop(svc);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_a_killed_worker_is_finished_by_another_exactly_once() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let run = pending(&db.pool, p, "survivor", 21, &["run:dev"]).await;
    let dir = runs_dir("killed");
    let (env, d) = (db.env(), dir.clone());
    let mut a = tokio::task::spawn_blocking(move || worker(env, "w-a", &d, "sleep 3; echo done")).await.unwrap();
    // Wait until A has launched the job, then kill A without a chance to clean up.
    let started = Instant::now();
    loop {
        let job: Option<String> =
            sqlx::query_scalar("SELECT job_name FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
        if job.is_some() || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || {
        assert!(a.stop("KILL", Duration::from_secs(5)).is_some());
    })
    .await
    .unwrap();
    let owner: Option<String> =
        sqlx::query_scalar("SELECT lease_owner FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
    assert_eq!(owner.as_deref(), Some("w-a"), "the dead worker's lease is left behind");

    let (env, d) = (db.env(), dir.clone());
    let b = tokio::task::spawn_blocking(move || worker(env, "w-b", &d, "sleep 3; echo done")).await.unwrap();
    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(30)).await, "succeeded");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let evs = events(&db.pool, run).await;
    let count = |t: &str| evs.iter().filter(|e| e.0 == t).count();
    assert_eq!(count("run.started"), 1, "the job is not launched twice: {evs:?}");
    assert_eq!(count("run.succeeded"), 1, "{evs:?}");
    assert_eq!(count("run.lease.detected_stale"), 1, "{evs:?}");
    assert!(count("run.reclaimed_after_stale_lease") >= 1, "{evs:?}");
    assert!(evs.iter().any(|e| e.0 == "run.succeeded" && e.1 == "w-b"), "the surviving worker finished it: {evs:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_running_run_stops_its_process() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let run = pending(&db.pool, p, "to-cancel", 31, &["run:dev"]).await;
    let dir = runs_dir("cancel");
    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || worker(env, "w-c", &d, "sleep 300")).await.unwrap();
    let started = Instant::now();
    let (ns, job) = loop {
        let row: (Option<String>, Option<String>) =
            sqlx::query_as("SELECT namespace, job_name FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
        if let (Some(ns), Some(job)) = row
            && dir.join(&ns).join(&job).join("pid").exists()
        {
            break (ns, job);
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pid: i32 = std::fs::read_to_string(dir.join(&ns).join(&job).join("pid")).unwrap().trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(matches!(ck8s_store::runs::cancel(&db.pool, run, "alice", "stop").await.unwrap(), ck8s_store::runs::Cancel::Canceled { .. }));
    assert!(matches!(
        ck8s_store::runs::cancel(&db.pool, run, "alice", "again").await.unwrap(),
        ck8s_store::runs::Cancel::AlreadyCanceled { .. }
    ));
    let started = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the job's process was not stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(wait_status(&db.pool, run, "canceled", Duration::from_secs(1)).await, "canceled");
    drop(w);
}
