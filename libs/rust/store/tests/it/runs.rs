use super::project;
use ck8s_domain::lifecycle::{FailureReason, Finish};
use ck8s_store::runs::{self, Cancel, ClaimSettings, LeaseError};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const S: ClaimSettings = ClaimSettings { run_lease: Duration::from_secs(60), slot_lease: Duration::from_secs(60), default_slots: 1 };

async fn pending(pool: &PgPool, project: Uuid, corr: &str, mode: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO agent_runs (correlation_id, project_id, run_payload, runtime_mode) VALUES ($1, $2, '{\"runtime\": {\"deploy_only\": false}}', $3) RETURNING id")
        .bind(corr)
        .bind(project)
        .bind(mode)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn status(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM agent_runs WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_launch_every_run_of_two_one_slot_projects_exactly_once() {
    let db = ck8s_testkit::fresh_db().await;
    let (a, b) = (project(&db.pool, "alpha").await, project(&db.pool, "beta").await);
    let mut all = Vec::new();
    for i in 0..8 {
        all.push(pending(&db.pool, a, &format!("a-{i}"), "full-env").await);
        all.push(pending(&db.pool, b, &format!("b-{i}"), "full-env").await);
    }
    all.push(pending(&db.pool, a, "a-code-only", "code-only").await);
    let claims: Arc<Mutex<Vec<(Uuid, String)>>> = Arc::default();
    let max_running: Arc<Mutex<BTreeMap<Uuid, i64>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..3 {
        let (pool, claims, max_running) = (db.pool.clone(), claims.clone(), max_running.clone());
        workers.push(tokio::spawn(async move {
            let me = format!("worker-{w}");
            let mut idle = 0;
            while idle < 20 {
                match runs::claim_next(&pool, &me, S).await.unwrap() {
                    Some(run) => {
                        idle = 0;
                        claims.lock().unwrap().push((run.id, me.clone()));
                        let per_project: Vec<(Uuid, i64)> = sqlx::query_as(
                            "SELECT project_id, count(*) FROM agent_runs WHERE status = 'running' AND runtime_mode = 'full-env' GROUP BY project_id",
                        )
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                        for (p, n) in per_project {
                            let mut m = max_running.lock().unwrap();
                            let e = m.entry(p).or_default();
                            *e = (*e).max(n);
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        runs::finish(&pool, run.id, &me, &Finish::succeeded(), &serde_json::json!({})).await.unwrap();
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let claims = claims.lock().unwrap().clone();
    assert_eq!(claims.len(), all.len(), "every run launched, none twice: {claims:?}");
    let distinct: std::collections::BTreeSet<Uuid> = claims.iter().map(|c| c.0).collect();
    assert_eq!(distinct.len(), all.len());
    for id in &all {
        assert_eq!(status(&db.pool, *id).await, "succeeded");
    }
    assert!(max_running.lock().unwrap().values().all(|n| *n <= 1), "one slot per project: {:?}", max_running.lock().unwrap());
    let free: i64 = sqlx::query_scalar("SELECT count(*) FROM slots WHERE state = 'free'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(free, 2, "slots are released when runs finish");
    let workers_used: std::collections::BTreeSet<&str> = claims.iter().map(|c| c.1.as_str()).collect();
    assert!(workers_used.len() >= 2, "the work was shared: {workers_used:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_project_does_not_block_another_projects_runs() {
    let db = ck8s_testkit::fresh_db().await;
    let (a, b) = (project(&db.pool, "alpha").await, project(&db.pool, "beta").await);
    let first = pending(&db.pool, a, "a-1", "full-env").await;
    pending(&db.pool, a, "a-2", "full-env").await;
    pending(&db.pool, a, "a-3", "full-env").await;
    let bee = pending(&db.pool, b, "b-1", "full-env").await;
    assert_eq!(runs::claim_next(&db.pool, "w", S).await.unwrap().unwrap().id, first);
    let next = runs::claim_next(&db.pool, "w", S).await.unwrap().expect("beta's run must not wait behind alpha's queue");
    assert_eq!(next.id, bee);
    assert!(runs::claim_next(&db.pool, "w", S).await.unwrap().is_none(), "alpha has no free slot");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_lost_its_lease_cannot_write() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let id = pending(&db.pool, p, "c-1", "full-env").await;
    runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
    sqlx::query("UPDATE agent_runs SET lease_until = now() - interval '1 second' WHERE id = $1").bind(id).execute(&db.pool).await.unwrap();
    let taken = runs::lease_running(&db.pool, "w2", Duration::from_secs(60), Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    let lost = runs::finish(&db.pool, id, "w1", &Finish::succeeded(), &serde_json::json!({})).await;
    assert!(matches!(lost, Err(LeaseError::Lost(_))));
    let lost = runs::record_launch(&db.pool, id, "w1", "ns", "job", Duration::from_secs(60), "m", "r").await;
    assert!(matches!(lost, Err(LeaseError::Lost(_))));
    assert_eq!(status(&db.pool, id).await, "running");
    let failed = Finish::failed(FailureReason::KubernetesJobFailed, "exit code 1", "run.failed");
    runs::finish(&db.pool, id, "w2", &failed, &serde_json::json!({})).await.unwrap();
    assert_eq!(status(&db.pool, id).await, "failed");
    // Finishing twice is refused too: terminal is final.
    assert!(runs::finish(&db.pool, id, "w2", &Finish::succeeded(), &serde_json::json!({})).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_of_dead_workers_are_released_and_reclaimed_once() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let id = pending(&db.pool, p, "c-1", "full-env").await;
    ck8s_store::workers::heartbeat(&db.pool, "w1", None, None, Duration::from_secs(60)).await.unwrap();
    runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
    assert!(runs::release_stale_leases(&db.pool, "w2", 10).await.unwrap().is_empty(), "w1 is alive");
    // w1 dies: its heartbeat expires.
    sqlx::query("UPDATE worker_instances SET expires_at = now() - interval '1 second', heartbeat_at = now() - interval '2 seconds' WHERE worker_id = 'w1'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs::release_stale_leases(&db.pool, "w2", 10).await.unwrap(), vec![id]);
    assert!(runs::release_stale_leases(&db.pool, "w3", 10).await.unwrap().is_empty(), "released once");
    let (a, b) = tokio::join!(
        runs::lease_running(&db.pool, "w2", Duration::from_secs(60), Duration::from_secs(60), 10),
        runs::lease_running(&db.pool, "w3", Duration::from_secs(60), Duration::from_secs(60), 10)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "exactly one worker reclaims the run");
    assert!(a.iter().chain(b.iter()).all(|r| r.stale_reclaim_pending));
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM flow_events WHERE run_id = $1 ORDER BY id").bind(id).fetch_all(&db.pool).await.unwrap();
    assert_eq!(events, vec!["worker.instance.heartbeat.missed", "run.lease.detected_stale", "run.lease.released"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_is_idempotent_and_releases_the_slot() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let running = pending(&db.pool, p, "c-1", "full-env").await;
    let queued = pending(&db.pool, p, "c-2", "full-env").await;
    runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
    runs::record_launch(&db.pool, running, "w1", "ns-1", "job-1", Duration::from_secs(60), "gpt-5.4", "high").await.unwrap();
    assert_eq!(
        runs::cancel(&db.pool, running, "alice", "not needed").await.unwrap(),
        Cancel::Canceled { namespace: Some("ns-1".into()), job_name: Some("job-1".into()) }
    );
    assert_eq!(
        runs::cancel(&db.pool, running, "alice", "again").await.unwrap(),
        Cancel::AlreadyCanceled { namespace: Some("ns-1".into()), job_name: Some("job-1".into()) }
    );
    // The slot is free again: the queued run can start.
    assert_eq!(runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap().id, queued);
    runs::finish(&db.pool, queued, "w1", &Finish::succeeded(), &serde_json::json!({})).await.unwrap();
    assert_eq!(runs::cancel(&db.pool, queued, "alice", "late").await.unwrap(), Cancel::AlreadyTerminal("succeeded".into()));
    assert_eq!(runs::cancel(&db.pool, Uuid::new_v4(), "alice", "x").await.unwrap(), Cancel::NotFound);
    let canceled_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'run.canceled'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(canceled_events, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_pauses_while_waiting_on_an_approval() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let waiting = pending(&db.pool, p, "c-wait", "code-only").await;
    let ordinary = pending(&db.pool, p, "c-plain", "code-only").await;
    for id in [waiting, ordinary] {
        runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
        runs::record_launch(&db.pool, id, "w1", "ns", "job", Duration::from_secs(800), "m", "r").await.unwrap();
    }
    sqlx::query("UPDATE agent_runs SET wait_reason = 'approval_pending', wait_target_kind = 'approval_request', wait_target_ref = '7' WHERE id = $1")
        .bind(waiting)
        .execute(&db.pool)
        .await
        .unwrap();
    let paused = runs::sync_wait_pause(&db.pool, waiting, "w1").await.unwrap();
    assert_eq!(paused.event, Some("run.wait.paused"));
    assert!(paused.timeout_paused_at.is_some());
    assert_eq!(runs::sync_wait_pause(&db.pool, waiting, "w1").await.unwrap().event, None, "pausing is idempotent");
    let plain = runs::sync_wait_pause(&db.pool, ordinary, "w1").await.unwrap();
    assert_eq!((plain.event, plain.timeout_paused_at), (None, None));

    // The deadlines as the worker judges them, at an instant past both (pinned, no waiting).
    let lease = |deadline_at, timeout_paused_at| ck8s_domain::lifecycle::RunLease {
        id: waiting,
        correlation_id: String::new(),
        project_id: None,
        status: ck8s_domain::run::RunStatus::Running,
        payload: serde_json::json!({}),
        slot_no: None,
        namespace: Some("ns".into()),
        job_name: Some("job".into()),
        stale_reclaim_pending: false,
        deadline_at,
        timeout_paused_at,
        wait_reason: None,
        namespace_lease_until: None,
        credentials_withdrawn: false,
        created_at: chrono::Utc::now(),
    };
    let later = plain.deadline_at.unwrap() + chrono::Duration::seconds(1);
    assert!(lease(plain.deadline_at, plain.timeout_paused_at).deadline_passed(later), "an ordinary run times out");
    assert!(!lease(paused.deadline_at, paused.timeout_paused_at).deadline_passed(later), "a run waiting on an approval does not");

    // The wait lasted ten minutes; once it is over the deadline moves out by as much.
    sqlx::query("UPDATE agent_runs SET wait_reason = NULL, timeout_paused_at = timeout_paused_at - interval '10 minutes' WHERE id = $1")
        .bind(waiting)
        .execute(&db.pool)
        .await
        .unwrap();
    let resumed = runs::sync_wait_pause(&db.pool, waiting, "w1").await.unwrap();
    assert_eq!((resumed.event, resumed.timeout_paused_at), (Some("run.wait.resumed"), None));
    let moved = resumed.deadline_at.unwrap() - paused.deadline_at.unwrap();
    assert!(moved >= chrono::Duration::minutes(10), "the remaining time is kept after resuming: moved by {moved}");
    let resumed_run = lease(resumed.deadline_at, None);
    assert!(!resumed_run.deadline_passed(later), "not timed out when the original deadline passes");
    assert!(resumed_run.deadline_passed(resumed.deadline_at.unwrap() + chrono::Duration::milliseconds(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_logs_are_purged_after_retention() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let id = pending(&db.pool, p, "c-1", "code-only").await;
    runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
    runs::record_logs(&db.pool, id, "w1", &serde_json::json!({"tail": "hello"})).await.unwrap();
    assert!(matches!(runs::record_logs(&db.pool, id, "w2", &serde_json::json!({})).await, Err(LeaseError::Lost(_))));
    runs::finish(&db.pool, id, "w1", &Finish::succeeded(), &serde_json::json!({})).await.unwrap();
    assert_eq!(runs::purge_old_logs(&db.pool, Duration::from_secs(3600)).await.unwrap(), 0, "recent logs stay");
    sqlx::query("UPDATE agent_runs SET finished_at = now() - interval '8 days', started_at = now() - interval '8 days' WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs::purge_old_logs(&db.pool, Duration::from_secs(7 * 86_400)).await.unwrap(), 1);
    let logs: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT agent_logs_json FROM agent_runs WHERE id = $1").bind(id).fetch_one(&db.pool).await.unwrap();
    assert!(logs.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_rotates_through_more_running_runs_than_its_limit() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    for i in 0..5 {
        pending(&db.pool, p, &format!("c-{i}"), "code-only").await;
        runs::claim_next(&db.pool, "w1", S).await.unwrap().unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        for r in runs::lease_running(&db.pool, "w1", Duration::from_secs(60), Duration::from_secs(60), 2).await.unwrap() {
            seen.insert(r.id);
        }
    }
    assert_eq!(seen.len(), 5, "every running run is visited within ceil(5 / 2) ticks");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cleanup_request_is_carried_out_by_one_worker_and_only_its_claim_may_finish_it() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "alpha").await;
    let repo: Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted) VALUES ($1, 'github', 1, 'acme', 'app', 'app', $2) RETURNING id",
    )
    .bind(p)
    .bind(vec![1u8; 40])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let run = pending(&db.pool, p, "c-1", "full-env").await;
    sqlx::query("UPDATE agent_runs SET repository_id = $2, issue_number = 61, namespace = 'codex-issue-61' WHERE id = $1")
        .bind(run)
        .bind(repo)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO cleanup_requests (repository_id, correlation_id, scope, number) VALUES ($1, 'close-61', 'issue_namespaces', 61)",
    )
    .bind(repo)
    .execute(&db.pool)
    .await
    .unwrap();

    let lease = Duration::from_secs(60);
    let (a, b) = tokio::join!(runs::claim_cleanups(&db.pool, "w1", lease, 20), runs::claim_cleanups(&db.pool, "w2", lease, 20));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "exactly one worker gets the request: {a:?} {b:?}");
    let (mine, me) = if a.is_empty() { (b, "w2") } else { (a, "w1") };
    assert_eq!(mine[0].namespaces, vec![(run, "codex-issue-61".to_string())]);
    assert!(runs::claim_cleanups(&db.pool, "w3", lease, 20).await.unwrap().is_empty(), "a held claim is not handed out again");

    // The holder stalls past its lease; another worker takes the request over and finishes it.
    sqlx::query("UPDATE cleanup_requests SET lease_until = now() - interval '1 second'").execute(&db.pool).await.unwrap();
    let taken = runs::claim_cleanups(&db.pool, "w3", lease, 20).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(runs::finish_cleanup(&db.pool, &taken[0], "w3", &runs::CleanupResult::Done).await.unwrap());
    let late = runs::finish_cleanup(&db.pool, &mine[0], me, &runs::CleanupResult::Failed("too late".into())).await.unwrap();
    assert!(!late, "the stalled claim cannot overwrite the outcome");
    let (status, last_error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM cleanup_requests").fetch_one(&db.pool).await.unwrap();
    assert_eq!((status.as_str(), last_error), ("done", None));
}
