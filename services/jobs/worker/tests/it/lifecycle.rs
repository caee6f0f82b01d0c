//! The run lifecycle with real worker processes, the local runtime and a real database.

use crate::{project, wait_status};
use ck8s_testkit::process::ServiceProcess;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_worker");

async fn pending(pool: &PgPool, project: Uuid, corr: &str, issue: i64, issue_labels: &[&str]) -> Uuid {
    let payload = ck8s_testkit::fixtures::run_spec(project, Uuid::nil(), issue, issue_labels).to_value();
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
    let no_pr = pending(&db.pool, p, "no-pr", 15, &["run:dev"]).await;
    let dir = runs_dir("outcome");
    // Every job gets its own run token through the secret channel; exit 42 is the runner's
    // "revise without a pull request".
    // The job command is one program (it runs with exec): a script standing in for the runner.
    let script = std::env::temp_dir().join(format!("ck8s-worker-it-{}-outcome.sh", std::process::id()));
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$CODEXK8S_RUN_TOKEN\" in ck8srun_*) ;; *) exit 9 ;; esac
echo \"agent for issue $CODEXK8S_ISSUE_NUMBER with $CODEXK8S_AGENT_MODEL in $CODEXK8S_PROMPT_TEMPLATE_LOCALE\"
test \"$CODEXK8S_ISSUE_NUMBER\" != 13 || echo \"a careless line: token=$CODEXK8S_RUN_TOKEN\"
test \"$CODEXK8S_ISSUE_NUMBER\" != 15 || exit 42
test \"$CODEXK8S_ISSUE_NUMBER\" != 13\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cmd = script.display().to_string();
    let (env, d) = (db.env(), dir.clone());
    let svc = tokio::task::spawn_blocking(move || worker(env, "w-outcome", &d, &cmd)).await.unwrap();

    assert_eq!(wait_status(&db.pool, ok, "succeeded", Duration::from_secs(20)).await, "succeeded");
    assert_eq!(wait_status(&db.pool, bad, "failed", Duration::from_secs(20)).await, "failed");
    assert_eq!(wait_status(&db.pool, dup, "failed", Duration::from_secs(20)).await, "failed");
    assert_eq!(wait_status(&db.pool, no_pr, "failed", Duration::from_secs(20)).await, "failed");
    // Three jobs were created (the run with two model labels never got one): each start is in
    // the histogram of run-creation-to-job seconds.
    let (_, metrics) = ck8s_testkit::process::http_get(svc.addr("http"), "/metrics");
    assert!(metrics.contains("codexk8s_worker_run_start_seconds_count 3"), "{metrics}");
    let sum: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("codexk8s_worker_run_start_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0);
    assert!(sum > 0.0 && sum < 60.0, "{metrics}");

    let (model, ns, job): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT model, namespace, job_name FROM agent_runs WHERE id = $1").bind(ok).fetch_one(&db.pool).await.unwrap();
    assert_eq!(model.as_deref(), Some("gpt-5.2"));
    let log = std::fs::read_to_string(dir.join(ns.unwrap()).join(job.unwrap()).join("job.log")).unwrap();
    assert!(log.contains("agent for issue 12 with gpt-5.2 in ru"), "{log}");
    let captured: serde_json::Value =
        sqlx::query_scalar("SELECT agent_logs_json FROM agent_runs WHERE id = $1").bind(ok).fetch_one(&db.pool).await.unwrap();
    assert!(captured["tail"].as_str().unwrap().contains("agent for issue 12 with gpt-5.2"), "{captured}");
    let kinds: Vec<String> = events(&db.pool, ok).await.into_iter().map(|e| e.0).collect();
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
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM run_tokens WHERE run_id = $1").bind(ok).fetch_one(&db.pool).await.unwrap();
    assert_eq!(tokens, 0, "a finished run's token is revoked");
    assert!(!log.contains("ck8srun_"), "the run token is not in the job log");
    // A job that prints its token: the stored tail is redacted all the same.
    let careless: serde_json::Value =
        sqlx::query_scalar("SELECT agent_logs_json FROM agent_runs WHERE id = $1").bind(bad).fetch_one(&db.pool).await.unwrap();
    let tail = careless["tail"].as_str().unwrap();
    assert!(tail.contains("a careless line: token=[REDACTED]") && !tail.contains("ck8srun_"), "the stored tail is redacted: {tail}");

    let (reason, message): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT failure_reason, failure_message FROM agent_runs WHERE id = $1")
            .bind(no_pr)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("failed_precondition"));
    assert!(message.unwrap().contains("no pull request"));
    assert!(events(&db.pool, no_pr).await.iter().any(|e| e.0 == "run.failed.precondition"));

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

/// A worker that died after recording where its run's job goes and before creating it: another
/// worker reclaims the run, finds no such job, and creates it — once.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_worker_died_before_creating_its_recorded_job_is_launched_by_another() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let run = pending_full_env(&db.pool, p, repo, "recorded-only", 51, "dev").await;
    // What a launch leaves after `record_launch`, by a worker with no heartbeat any more.
    sqlx::query(
        "UPDATE agent_runs SET status = 'running', started_at = now(), lease_owner = 'w-dead', lease_until = now() + interval '1 hour',
                namespace = 'codex-issue-recorded-51', job_name = 'codex-run-recorded-only'
          WHERE id = $1",
    )
    .bind(run)
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = runs_dir("recorded");
    let (env, d) = (db.env(), dir.clone());
    let extra = [("CODEXK8S_WORKER_POLL_INTERVAL", "100ms")];
    let w = tokio::task::spawn_blocking(move || worker_with(env, "w-alive", &d, "true", &extra)).await.unwrap();
    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(30)).await, "succeeded", "{}", w.output());
    let started = events(&db.pool, run).await.iter().filter(|e| e.0 == "run.started").count();
    assert_eq!(started, 1, "the recorded job was created exactly once");
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_a_killed_worker_is_finished_by_another_exactly_once() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let run = pending(&db.pool, p, "survivor", 21, &["run:dev"]).await;
    let dir = runs_dir("killed");
    let (env, d) = (db.env(), dir.clone());
    let mut a = tokio::task::spawn_blocking(move || worker(env, "w-a", &d, "sleep 3")).await.unwrap();
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
    let b = tokio::task::spawn_blocking(move || worker(env, "w-b", &d, "sleep 3")).await.unwrap();
    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(30)).await, "succeeded");
    // A finished run is never claimed or reconciled again, so these counts are final (that a
    // reclaimed run with a live job is not launched twice is decided by the worker's core and
    // unit-tested there).
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

async fn repository(pool: &PgPool, project: Uuid) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted) VALUES ($1, 'github', 1, 'acme', 'app', 'app', $2) RETURNING id",
    )
    .bind(project)
    .bind(vec![1u8; 40])
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn pending_full_env(pool: &PgPool, project: Uuid, repo: Uuid, corr: &str, issue: i64, kind: &str) -> Uuid {
    let mut spec = ck8s_testkit::fixtures::run_spec(project, repo, issue, &[]);
    spec.trigger.kind = ck8s_testkit::fixtures::kind(kind);
    spec.runtime.mode = ck8s_domain::policy::RuntimeMode::FullEnv;
    let payload = spec.to_value();
    sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, runtime_mode, issue_number, agent_key, trigger_kind)
         VALUES ($1, $2, $3, $4, 'full-env', $5, 'dev', $6) RETURNING id",
    )
    .bind(corr)
    .bind(project)
    .bind(repo)
    .bind(payload)
    .bind(issue as i32)
    .bind(kind)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Records that issue `issue` closed (as ingest does) and waits until a worker has carried the
/// cleanup request out.
async fn close_issue(pool: &PgPool, repo: Uuid, corr: &str, issue: i32) {
    sqlx::query("INSERT INTO cleanup_requests (repository_id, correlation_id, scope, number) VALUES ($1, $2, 'issue_namespaces', $3)")
        .bind(repo)
        .bind(corr)
        .bind(issue)
        .execute(pool)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM cleanup_requests WHERE correlation_id = $1").bind(corr).fetch_one(pool).await.unwrap();
        if status == "done" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "cleanup request {corr} stayed {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn worker_with(env: Vec<(String, String)>, id: &str, dir: &std::path::Path, command: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let mut e = env;
    e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    worker(e, id, dir, command)
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_live_while_their_run_does_and_only_expired_idle_managed_ones_are_swept() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let run = pending_full_env(&db.pool, p, repo, "ttl", 51, "dev").await;
    let dir = runs_dir("sweep");
    // A directory codex-k8s does not manage, and a managed one whose lease expired but whose job
    // still runs (its run already finished).
    std::fs::create_dir_all(dir.join("stranger")).unwrap();
    let finished = pending(&db.pool, p, "done-before", 52, &[]).await;
    sqlx::query("UPDATE agent_runs SET status = 'succeeded', started_at = now(), finished_at = now() WHERE id = $1")
        .bind(finished)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut busy = tokio::process::Command::new("sleep").arg("300").process_group(0).kill_on_drop(true).spawn().unwrap();
    std::fs::create_dir_all(dir.join("codex-issue-busy").join("job-x")).unwrap();
    std::fs::write(
        dir.join("codex-issue-busy").join("environment"),
        format!(
            "managed-by=codex-k8s-worker\ncodex-k8s.dev/run-id={finished}\ncodex-k8s.dev/namespace-lease-expires-at=2020-01-01T00:00:00Z\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("codex-issue-busy").join("job-x").join("pid"), busy.id().unwrap().to_string()).unwrap();

    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || worker_with(env, "w-sweep", &d, "sleep 3", &[("CODEXK8S_WORKER_NAMESPACE_TTL", "2s")]))
        .await
        .unwrap();
    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(30)).await, "succeeded");
    let ns: String = sqlx::query_scalar("SELECT namespace FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
    let kinds: Vec<String> = events(&db.pool, run).await.into_iter().map(|e| e.0).collect();
    assert!(kinds.contains(&"run.namespace.ttl_extended".to_string()), "the lease is extended while the run is active: {kinds:?}");
    // After the run, the lease runs out and the sweeper deletes the namespace.
    let started = Instant::now();
    while dir.join(&ns).exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "the expired namespace was not swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kinds: Vec<String> = events(&db.pool, run).await.into_iter().map(|e| e.0).collect();
    assert!(kinds.contains(&"run.namespace.cleaned".to_string()), "{kinds:?}");
    assert!(dir.join("stranger").exists(), "unmanaged directories are never deleted");
    assert!(dir.join("codex-issue-busy").exists(), "a namespace with a live workload is kept");
    let skipped: Vec<String> = events(&db.pool, finished).await.into_iter().map(|e| e.0).collect();
    assert_eq!(skipped, vec!["run.namespace.cleanup_skipped"], "recorded once, not every tick");
    let _ = busy.kill().await;
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_projects_malformed_slot_setting_breaks_claiming_for_no_one() {
    let db = ck8s_testkit::fresh_db().await;
    let good = project(&db.pool).await;
    let bad: Uuid = sqlx::query_scalar(
        "INSERT INTO projects (slug, name, settings) VALUES ('bad', 'bad', '{\"slots_per_project\": \"lots\"}') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let repo = repository(&db.pool, good).await;
    let runs = [
        pending_full_env(&db.pool, bad, repo, "bad-1", 81, "dev").await,
        pending_full_env(&db.pool, good, repo, "good-1", 82, "dev").await,
    ];
    let (env, d) = (db.env(), runs_dir("slots"));
    let w = tokio::task::spawn_blocking(move || worker(env, "w-slots", &d, "true")).await.unwrap();
    for id in runs {
        assert_eq!(wait_status(&db.pool, id, "succeeded", Duration::from_secs(20)).await, "succeeded", "{}", w.output());
    }
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_run_is_never_claimed_so_no_agent_starts_for_it() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let mut spec = ck8s_testkit::fixtures::run_spec(p, repo, 91, &[]);
    spec.agent = None;
    spec.issue = None;
    spec.trigger = ck8s_domain::run_spec::Trigger {
        source: ck8s_domain::policy::TriggerSource::PushMain,
        label: None,
        kind: ck8s_domain::stage::TriggerKind::DEPLOY,
    };
    spec.runtime.deploy_only = true;
    spec.runtime.namespace = Some("codex-k8s-prod".into());
    let deploy: Uuid = sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, runtime_mode, trigger_kind)
         VALUES ('push-1', $1, $2, $3, 'full-env', 'deploy') RETURNING id",
    )
    .bind(p)
    .bind(repo)
    .bind(spec.to_value())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // A normal run created after it: once it has finished, the worker has passed the deploy by.
    let normal = pending_full_env(&db.pool, p, repo, "after-deploy", 92, "dev").await;
    let dir = runs_dir("deploy");
    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || worker(env, "w-deploy", &d, "true")).await.unwrap();
    assert_eq!(wait_status(&db.pool, normal, "succeeded", Duration::from_secs(20)).await, "succeeded");
    let (status, namespace): (String, Option<String>) =
        sqlx::query_as("SELECT status, namespace FROM agent_runs WHERE id = $1").bind(deploy).fetch_one(&db.pool).await.unwrap();
    assert_eq!((status.as_str(), namespace), ("pending", None), "left to self-deploy: no token, no namespace, no job");
    assert!(events(&db.pool, deploy).await.is_empty(), "the worker never touched it");
    assert!(!dir.join("codex-k8s-prod").exists(), "the production namespace was not touched");
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_and_idle_transactions_are_bounded() {
    let db = ck8s_testkit::fresh_db().await;
    let mut cfg = db.config.clone();
    cfg.statement_timeout = Duration::from_millis(300);
    let pool = ck8s_store::connect(&cfg).await.unwrap();
    let err = sqlx::query("SELECT pg_sleep(5)").execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    let (statement, idle): (String, String) =
        sqlx::query_as("SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((statement.as_str(), idle.as_str()), ("300ms", "5min"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_in_the_platforms_namespace_never_prepares_leases_or_deletes_it() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let dir = runs_dir("platform");
    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || worker(env, "w-platform", &d, "true")).await.unwrap();
    // An ops run: routed to the platform's namespace, read-only.
    let mut spec = ck8s_testkit::fixtures::run_spec(p, repo, 71, &[]);
    spec.trigger.kind = ck8s_testkit::fixtures::kind("ops");
    spec.runtime.namespace = Some("codex-k8s-prod".into());
    spec.runtime.target_env = Some("production".into());
    spec.runtime.access_profile = Some(ck8s_domain::policy::AccessProfile::ProductionReadonly);
    let run: Uuid = sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, runtime_mode, issue_number, agent_key, trigger_kind)
         VALUES ('ops-71', $1, $2, $3, 'full-env', 71, 'sre', 'ops') RETURNING id",
    )
    .bind(p)
    .bind(repo)
    .bind(spec.to_value())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(wait_status(&db.pool, run, "succeeded", Duration::from_secs(20)).await, "succeeded");
    let kinds: Vec<String> = events(&db.pool, run).await.into_iter().map(|e| e.0).collect();
    assert!(kinds.contains(&"run.namespace.not_prepared".to_string()), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "run.namespace.prepared" || k == "run.namespace.ttl_scheduled"), "{kinds:?}");
    let (ns, lease): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT namespace, namespace_lease_until FROM agent_runs WHERE id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((ns.as_deref(), lease), (Some("codex-k8s-prod"), None), "never leased");
    assert!(!dir.join("codex-k8s-prod/environment").exists(), "never marked as a run environment");

    // Closing the issue asks for its namespaces to go: the platform's is skipped, not deleted.
    close_issue(&db.pool, repo, "close-71", 71).await;
    assert!(dir.join("codex-k8s-prod").exists(), "the platform's namespace is still there");
    let kinds: Vec<String> = events(&db.pool, run).await.into_iter().map(|e| e.0).collect();
    assert!(kinds.contains(&"run.namespace.cleanup_skipped".to_string()) && !kinds.iter().any(|k| k == "run.namespace.delete_by_system"));
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn revise_runs_reuse_the_namespace_of_their_issue_and_closing_the_issue_deletes_it() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let dir = runs_dir("reuse");
    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || worker(env, "w-reuse", &d, "true")).await.unwrap();
    // A second replica: the cleanup below must still be carried out once.
    let (env, d) = (db.env(), dir.clone());
    let w2 = tokio::task::spawn_blocking(move || worker(env, "w-reuse-2", &d, "true")).await.unwrap();
    let first = pending_full_env(&db.pool, p, repo, "first", 61, "dev").await;
    assert_eq!(wait_status(&db.pool, first, "succeeded", Duration::from_secs(20)).await, "succeeded");
    let revise = pending_full_env(&db.pool, p, repo, "revise", 61, "dev_revise").await;
    assert_eq!(wait_status(&db.pool, revise, "succeeded", Duration::from_secs(20)).await, "succeeded");
    let namespaces: Vec<Option<String>> = sqlx::query_scalar("SELECT namespace FROM agent_runs WHERE id = ANY($1) ORDER BY created_at")
        .bind(vec![first, revise])
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(namespaces[0], namespaces[1], "the revise run works in the same namespace");
    assert!(events(&db.pool, revise).await.iter().any(|e| e.0 == "run.namespace.reuse_fast_path"));

    // The issue closes: ingest records a cleanup request, the worker deletes the namespace.
    close_issue(&db.pool, repo, "close-61", 61).await;
    let ns = namespaces[0].clone().unwrap();
    assert!(!dir.join(&ns).exists());
    let by_system: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'run.namespace.delete_by_system'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(by_system, 1, "one replica carried the cleanup out");
    drop((w, w2));
}

#[tokio::test(flavor = "multi_thread")]
async fn three_worker_processes_launch_every_run_of_two_one_slot_projects_exactly_once() {
    let db = ck8s_testkit::fresh_db().await;
    let alpha = project(&db.pool).await;
    let beta: Uuid =
        sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('beta', 'beta') RETURNING id").fetch_one(&db.pool).await.unwrap();
    let mut runs = Vec::new();
    for i in 0..6 {
        for (p, name) in [(alpha, "a"), (beta, "b")] {
            let id = pending(&db.pool, p, &format!("{name}-{i}"), 100 + i, &[]).await;
            sqlx::query("UPDATE agent_runs SET runtime_mode = 'full-env', run_payload = jsonb_set(run_payload, '{runtime,mode}', '\"full-env\"') WHERE id = $1")
                .bind(id)
                .execute(&db.pool)
                .await
                .unwrap();
            runs.push(id);
        }
    }
    let dir = runs_dir("three");
    let mut workers = Vec::new();
    for w in 0..3 {
        let (env, d) = (db.env(), dir.clone());
        workers.push(
            tokio::task::spawn_blocking(move || {
                worker_with(env, &format!("w-{w}"), &d, "sleep 0.3", &[("CODEXK8S_WORKER_SLOTS_PER_PROJECT", "1")])
            })
            .await
            .unwrap(),
        );
    }
    for id in &runs {
        assert_eq!(wait_status(&db.pool, *id, "succeeded", Duration::from_secs(60)).await, "succeeded");
    }
    let started: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT run_id, count(*) FROM flow_events WHERE event_type = 'run.started' GROUP BY run_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(started.len(), runs.len());
    assert!(started.iter().all(|(_, n)| *n == 1), "a run was launched twice: {started:?}");
    // One slot per project: no two runs of a project overlapped.
    let overlaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM agent_runs a JOIN agent_runs b ON a.project_id = b.project_id AND a.id < b.id
          WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(overlaps, 0);
    // All three competed for the runs the whole time (which of them wins each claim is up to the
    // scheduler, so the split is printed, not asserted).
    let alive: Vec<String> = sqlx::query_scalar("SELECT worker_id FROM worker_instances WHERE status = 'active' ORDER BY worker_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(alive, ["w-0", "w-1", "w-2"], "three claimers were registered and alive");
    let split: Vec<(String, i64)> =
        sqlx::query_as("SELECT actor_id, count(*) FROM flow_events WHERE event_type = 'run.started' GROUP BY actor_id ORDER BY actor_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    eprintln!("runs launched per worker: {split:?}");
    drop(workers);
}

/// The backend pid of the worker's `LISTEN` connection on `db`, if it has one.
async fn listener_pid(pool: &PgPool, db: &str) -> Option<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN %' AND pid <> pg_backend_pid()")
        .bind(db)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_listen_connection_is_opened_again_and_a_notify_still_wakes_the_worker() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let dir = runs_dir("listen");
    // Polling is off for the test's length: only a notification can wake the worker.
    let (env, d) = (db.env(), dir.clone());
    let w = tokio::task::spawn_blocking(move || {
        worker_with(env, "w-listen", &d, "true", &[("CODEXK8S_WORKER_POLL_INTERVAL", "10m"), ("CODEXK8S_WORKER_CLAIM_LIMIT", "1")])
    })
    .await
    .unwrap();
    let started = Instant::now();
    let first = loop {
        if let Some(pid) = listener_pid(&db.pool, &db.name).await {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the worker never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The connection dies under the worker (a restarted or failed-over server does this).
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&db.pool).await.unwrap();
    assert!(killed);
    let started = Instant::now();
    loop {
        if listener_pid(&db.pool, &db.name).await.is_some_and(|pid| pid != first) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the worker did not listen again after losing its connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Runs arrive the way ingest announces them. The worker ticks once when its connection is
    // back and claims one run per tick, so the second run can only be claimed after a tick that a
    // notification woke.
    let mut finished = Vec::new();
    for (corr, issue) in [("after-reconnect-1", 71), ("after-reconnect-2", 72)] {
        let run = pending(&db.pool, p, corr, issue, &[]).await;
        let mut tx = db.pool.begin().await.unwrap();
        ck8s_store::ingest::notify_run_pending(&mut tx, run).await.unwrap();
        tx.commit().await.unwrap();
        let notified = Instant::now();
        assert_ne!(wait_status(&db.pool, run, "running", Duration::from_secs(10)).await, "pending", "the notification woke the worker");
        finished.push((run, notified.elapsed().as_millis()));
    }
    println!("claimed {:?} ms after their NOTIFY (polling interval 10 minutes)", finished.iter().map(|f| f.1).collect::<Vec<_>>());
    drop(w);
}

/// Pending runs claimed in one tick launch together, except the runs of one issue, which launch
/// in order: the revise run, claimed with its issue's first run, still finds and reuses the
/// namespace the first run prepared.
#[tokio::test(flavor = "multi_thread")]
async fn runs_claimed_together_launch_at_once_but_one_issues_runs_in_order() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let first = pending_full_env(&db.pool, p, repo, "together-first", 71, "dev").await;
    let revise = pending_full_env(&db.pool, p, repo, "together-revise", 71, "dev_revise").await;
    let mut others = Vec::new();
    for n in 0..8 {
        others.push(pending_full_env(&db.pool, p, repo, &format!("together-{n}"), 80 + n, "dev").await);
    }
    let dir = runs_dir("together");
    let (env, d) = (db.env(), dir.clone());
    let extra = [("CODEXK8S_WORKER_SLOTS_PER_PROJECT", "20"), ("CODEXK8S_WORKER_CLAIM_LIMIT", "20")];
    let w = tokio::task::spawn_blocking(move || worker_with(env, "w-together", &d, "true", &extra)).await.unwrap();
    for id in [first, revise].iter().chain(&others) {
        assert_eq!(wait_status(&db.pool, *id, "succeeded", Duration::from_secs(30)).await, "succeeded");
    }
    let launched_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT run_id FROM flow_events WHERE event_type = 'run.started' GROUP BY run_id HAVING count(*) > 1) d",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(launched_twice, 0, "every run launched once");
    let namespaces: Vec<Option<String>> = sqlx::query_scalar("SELECT namespace FROM agent_runs WHERE id = ANY($1) ORDER BY created_at")
        .bind(vec![first, revise])
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(namespaces[0], namespaces[1], "the revise run launched after its issue's first run and reused its namespace");
    assert!(events(&db.pool, revise).await.iter().any(|e| e.0 == "run.namespace.reuse_fast_path"));
    drop(w);
}

/// A launch that hangs holds up no one else's: while the first run's launch waits (the test holds
/// a row its credentials need), a run of another issue, announced by NOTIFY, is claimed, launched
/// and finished; the first launches once the row is let go.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_launch_does_not_hold_up_the_next_claimed_run() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let stuck = pending_full_env(&db.pool, p, repo, "hang-first", 91, "dev").await;
    // The run's token row, written and not committed: issuing its credentials waits for it. (Its
    // foreign key is not checked, so the run's row stays unlocked and can be claimed.)
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *hold).await.unwrap();
    sqlx::query("INSERT INTO run_tokens (run_id, token_hash, expires_at) VALUES ($1, $2, now() + interval '1 hour')")
        .bind(stuck)
        .bind(vec![7u8; 32])
        .execute(&mut *hold)
        .await
        .unwrap();
    let dir = runs_dir("hang");
    let (env, d) = (db.env(), dir.clone());
    let extra = [("CODEXK8S_WORKER_POLL_INTERVAL", "100ms")];
    let w = tokio::task::spawn_blocking(move || worker_with(env, "w-hang", &d, "true", &extra)).await.unwrap();
    assert_eq!(wait_status(&db.pool, stuck, "running", Duration::from_secs(30)).await, "running", "the first run is claimed");

    let next = pending_full_env(&db.pool, p, repo, "hang-next", 92, "dev").await;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(ck8s_store::listen::RUN_PENDING_CHANNEL)
        .bind(next.to_string())
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        wait_status(&db.pool, next, "succeeded", Duration::from_secs(30)).await,
        "succeeded",
        "the next run waited for the hanging launch"
    );
    assert!(!events(&db.pool, stuck).await.iter().any(|e| e.0 == "run.started"), "the first run started while its row was held");

    hold.rollback().await.unwrap();
    assert_eq!(wait_status(&db.pool, stuck, "succeeded", Duration::from_secs(30)).await, "succeeded");
    drop(w);
}

/// Housekeeping runs beside the claims: with it running every few milliseconds while thirty runs
/// launch at once, no run it finds half-launched is launched a second time.
#[tokio::test(flavor = "multi_thread")]
async fn housekeeping_beside_launches_never_launches_a_run_twice() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool).await;
    let repo = repository(&db.pool, p).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(pending_full_env(&db.pool, p, repo, &format!("busy-{n}"), 300 + n, "dev").await);
    }
    let dir = runs_dir("busy");
    let (env, d) = (db.env(), dir.clone());
    let extra =
        [("CODEXK8S_WORKER_SLOTS_PER_PROJECT", "40"), ("CODEXK8S_WORKER_CLAIM_LIMIT", "40"), ("CODEXK8S_WORKER_POLL_INTERVAL", "5ms")];
    let w = tokio::task::spawn_blocking(move || worker_with(env, "w-busy", &d, "true", &extra)).await.unwrap();
    for id in &ids {
        assert_eq!(wait_status(&db.pool, *id, "succeeded", Duration::from_secs(30)).await, "succeeded");
    }
    let launches: Vec<i64> =
        sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'run.started' AND run_id = ANY($1) GROUP BY run_id")
            .bind(&ids)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(launches, vec![1; 30], "every run launched exactly once");
    drop(w);
}
