//! The run lifecycle's SQL (product spec §5.3–5.4, §5.9–5.11): claiming pending runs with
//! `FOR UPDATE SKIP LOCKED` and per-project slots, leases that every later write re-checks,
//! finishing with the slot released in the same transaction, stale-lease recovery from worker
//! heartbeats, pausable deadlines, and idempotent cancellation.

use crate::error::StoreError;
use ck8s_domain::lifecycle::{Finish, RunLease};
use ck8s_domain::run::RunStatus;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
use uuid::Uuid;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A run a worker holds the lease of.
pub type LeasedRun = RunLease;

const RUN_COLUMNS: &str = "id, correlation_id, project_id, status, run_payload, slot_no, namespace, job_name, stale_reclaim_pending, \
                           deadline_at, timeout_paused_at, wait_reason, namespace_lease_until, \
                           credentials_withdrawn_at IS NOT NULL, created_at";

fn status(text: &str) -> Result<RunStatus, StoreError> {
    text.parse().map_err(|e: ck8s_domain::run::UnknownRunStatus| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

fn leased(r: &sqlx::postgres::PgRow) -> Result<LeasedRun, StoreError> {
    Ok(LeasedRun {
        id: r.get(0),
        correlation_id: r.get(1),
        project_id: r.get(2),
        status: status(r.get(3))?,
        payload: r.get(4),
        slot_no: r.get(5),
        namespace: r.get(6),
        job_name: r.get(7),
        stale_reclaim_pending: r.get(8),
        deadline_at: r.get(9),
        timeout_paused_at: r.get(10),
        wait_reason: r.get(11),
        namespace_lease_until: r.get(12),
        credentials_withdrawn: r.get(13),
        created_at: r.get(14),
    })
}

/// The write was refused because this worker no longer holds the lease (or the run moved on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease on run {0} is not held by this worker any more")]
pub struct LeaseLost(pub Uuid);

/// Errors of lease-checked writes.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Lost(#[from] LeaseLost),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> Self {
        LeaseError::Store(e.into())
    }
}

/// Claim settings.
#[derive(Debug, Clone, Copy)]
pub struct ClaimSettings {
    pub run_lease: Duration,
    pub slot_lease: Duration,
    /// Slots per project when the project does not set `settings.slots_per_project`.
    pub default_slots: i32,
}

/// A project's slot count: its `settings.slots_per_project` when that is a number of 1-100, else
/// the default (`$2`). A malformed value of one project never breaks claiming for the others.
const PROJECT_SLOTS: &str = "CASE WHEN p.settings->>'slots_per_project' ~ '^[0-9]{1,3}$'
      THEN LEAST(GREATEST((p.settings->>'slots_per_project')::int, 1), 100) ELSE $2 END";

/// Whether a run needs a slot: full-env runs that are not deploy-only.
const NEEDS_SLOT: &str = "(r.runtime_mode = 'full-env' AND NOT COALESCE((r.run_payload->'runtime'->>'deploy_only')::boolean, false))";

/// Claims the oldest pending run this worker can start, leasing a slot when it needs one. Runs
/// of projects without a free slot are skipped, so one project's shortage never blocks another.
/// Each claim is its own transaction.
pub async fn claim_next(pool: &PgPool, worker: &str, s: ClaimSettings) -> Result<Option<LeasedRun>, StoreError> {
    let mut skip: Vec<Uuid> = Vec::new();
    loop {
        let mut tx = pool.begin().await?;
        let sql = format!(
            "SELECT r.id, r.project_id, {NEEDS_SLOT} AS needs_slot,
                    {PROJECT_SLOTS} AS pool
               FROM agent_runs r LEFT JOIN projects p ON p.id = r.project_id
              WHERE r.status = 'pending' AND NOT (r.id = ANY($1))
                -- Deploy-only runs wait for self-deploy as deploy tasks; the worker starts no agent for them.
                AND NOT COALESCE((r.run_payload->'runtime'->>'deploy_only')::boolean, false)
                AND (NOT {NEEDS_SLOT} OR r.project_id IS NULL
                     OR EXISTS (SELECT 1 FROM slots sl WHERE sl.project_id = r.project_id AND (sl.state = 'free' OR sl.lease_until < now()))
                     OR (SELECT count(*) FROM slots sl WHERE sl.project_id = r.project_id) < {PROJECT_SLOTS})
              ORDER BY r.created_at
              FOR UPDATE OF r SKIP LOCKED
              LIMIT 1"
        );
        let Some(row) = sqlx::query(&sql).bind(&skip).bind(s.default_slots).fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let (id, project, needs_slot, pool_size): (Uuid, Option<Uuid>, bool, i32) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let mut slot_no: Option<i32> = None;
        if let (true, Some(project)) = (needs_slot, project) {
            sqlx::query("INSERT INTO slots (project_id, slot_no) SELECT $1, g FROM generate_series(1, $2) g ON CONFLICT DO NOTHING")
                .bind(project)
                .bind(pool_size.max(1))
                .execute(&mut *tx)
                .await?;
            slot_no = sqlx::query_scalar(
                "UPDATE slots SET state = 'leased', lease_owner = $2, lease_until = now() + make_interval(secs => $3::double precision / 1000)
                  WHERE id = (SELECT id FROM slots WHERE project_id = $1 AND slot_no <= $4 AND (state = 'free' OR lease_until < now())
                              ORDER BY slot_no FOR UPDATE SKIP LOCKED LIMIT 1)
                  RETURNING slot_no",
            )
            .bind(project)
            .bind(id)
            .bind(ms(s.slot_lease))
            .bind(pool_size.max(1))
            .fetch_optional(&mut *tx)
            .await?;
            if slot_no.is_none() {
                // Another worker took the last slot meanwhile: try the next candidate.
                tx.rollback().await?;
                skip.push(id);
                continue;
            }
        }
        let row = sqlx::query(&format!(
            "UPDATE agent_runs SET status = 'running', started_at = now(), lease_owner = $2,
                    lease_until = now() + make_interval(secs => $3::double precision / 1000), slot_no = $4
              WHERE id = $1 RETURNING {RUN_COLUMNS}"
        ))
        .bind(id)
        .bind(worker)
        .bind(ms(s.run_lease))
        .bind(slot_no)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Some(leased(&row)?));
    }
}

/// Takes (or renews) the lease of running runs that are this worker's, unowned, or expired,
/// for reconciliation; also renews their slot leases.
pub async fn lease_running(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    slot_lease: Duration,
    limit: i64,
) -> Result<Vec<LeasedRun>, StoreError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(&format!(
        "UPDATE agent_runs SET lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000)
          WHERE id IN (SELECT id FROM agent_runs
                        WHERE status = 'running' AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < now())
                        -- Least recently leased first, so a limit smaller than the number of running
                        -- runs still rotates through all of them.
                        ORDER BY lease_until NULLS FIRST, started_at FOR UPDATE SKIP LOCKED LIMIT $3)
          RETURNING {RUN_COLUMNS}"
    ))
    .bind(worker)
    .bind(ms(lease))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let runs: Vec<LeasedRun> = rows.iter().map(leased).collect::<Result<_, _>>()?;
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    sqlx::query("UPDATE slots SET lease_until = now() + make_interval(secs => $2::double precision / 1000) WHERE lease_owner = ANY($1)")
        .bind(&ids)
        .bind(ms(slot_lease))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(runs)
}

/// A lease-checked update of the job reference, deadline and profile after launch.
#[allow(clippy::too_many_arguments)]
pub async fn record_launch(
    pool: &PgPool,
    run: Uuid,
    worker: &str,
    namespace: &str,
    job_name: &str,
    deadline: Duration,
    model: &str,
    reasoning: &str,
) -> Result<(), LeaseError> {
    let n = sqlx::query(
        "UPDATE agent_runs SET namespace = $3, job_name = $4, deadline_at = now() + make_interval(secs => $5::double precision / 1000),
                model = $6, reasoning_effort = $7, stale_reclaim_pending = false
          WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_until > now()",
    )
    .bind(run)
    .bind(worker)
    .bind(namespace)
    .bind(job_name)
    .bind(ms(deadline))
    .bind(model)
    .bind(reasoning)
    .execute(pool)
    .await?
    .rows_affected();
    if n == 1 { Ok(()) } else { Err(LeaseLost(run).into()) }
}

/// Finishes a run (only by the current lease holder) and releases its slot in the same
/// transaction; also revokes its token and appends the terminal flow event.
pub async fn finish(pool: &PgPool, run: Uuid, worker: &str, f: &Finish, event_payload: &Value) -> Result<(), LeaseError> {
    let mut tx = pool.begin().await?;
    let corr: Option<String> = sqlx::query_scalar(
        "UPDATE agent_runs SET status = $3, finished_at = now(), lease_owner = NULL, lease_until = NULL,
                failure_reason = $4, failure_message = $5, wait_reason = NULL, wait_target_kind = NULL, wait_target_ref = NULL,
                wait_deadline_at = NULL, timeout_paused_at = NULL
          WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_until > now()
          RETURNING correlation_id",
    )
    .bind(run)
    .bind(worker)
    .bind(f.status.as_str())
    .bind(f.reason.map(|r| r.as_str()))
    .bind(&f.message)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(corr) = corr else { return Err(LeaseLost(run).into()) };
    release_slot(&mut tx, run).await?;
    crate::agent::revoke_run_token(&mut tx, run).await?;
    crate::ingest::flow_event(&mut tx, &corr, Some(run), "system", worker, f.event, event_payload).await?;
    tx.commit().await?;
    Ok(())
}

async fn release_slot(db: &mut PgConnection, run: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE slots SET state = 'free', lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
        .bind(run)
        .execute(db)
        .await?;
    Ok(())
}

/// Releases the leases of running runs whose owner is stopped, expired or unknown; marks them
/// `stale_reclaim_pending` and records `worker.instance.heartbeat.missed`,
/// `run.lease.detected_stale` and `run.lease.released`. Returns the released run ids.
pub async fn release_stale_leases(pool: &PgPool, worker: &str, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "WITH stale AS (
            SELECT r.id, r.correlation_id, r.lease_owner FROM agent_runs r
             WHERE r.status = 'running' AND r.lease_owner IS NOT NULL AND r.lease_owner <> $1
               AND NOT EXISTS (SELECT 1 FROM worker_instances w
                                WHERE w.worker_id = r.lease_owner AND w.status = 'active' AND w.expires_at > now())
             ORDER BY r.started_at FOR UPDATE OF r SKIP LOCKED LIMIT $2)
         UPDATE agent_runs a SET lease_owner = NULL, lease_until = NULL, stale_reclaim_pending = true
           FROM stale WHERE a.id = stale.id
         RETURNING a.id, a.correlation_id, stale.lease_owner",
    )
    .bind(worker)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = Vec::new();
    for r in rows {
        let (id, corr, owner): (Uuid, String, String) = (r.get(0), r.get(1), r.get(2));
        let payload = serde_json::json!({"run_id": id, "previous_owner": owner, "detected_by": worker});
        for event in ["worker.instance.heartbeat.missed", "run.lease.detected_stale", "run.lease.released"] {
            crate::ingest::flow_event(&mut tx, &corr, Some(id), "system", worker, event, &payload).await?;
        }
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// The run's deadline after [`sync_wait_pause`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitSync {
    /// `run.wait.paused` or `run.wait.resumed` when the pause changed.
    pub event: Option<&'static str>,
    pub deadline_at: Option<chrono::DateTime<chrono::Utc>>,
    pub timeout_paused_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Pauses the run deadline while the run waits on an approval, and resumes it (pushing the
/// deadline out by the paused time) once the wait is over. Returns the deadline as it now stands
/// and the event it recorded.
pub async fn sync_wait_pause(pool: &PgPool, run: Uuid, worker: &str) -> Result<WaitSync, LeaseError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT correlation_id, wait_reason = 'approval_pending' AS waiting, timeout_paused_at IS NOT NULL AS paused
           FROM agent_runs WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_until > now() FOR UPDATE",
    )
    .bind(run)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Err(LeaseLost(run).into()) };
    let (corr, waiting, paused): (String, Option<bool>, bool) = (row.get(0), row.get(1), row.get(2));
    let event = match (waiting.unwrap_or(false), paused) {
        (true, false) => {
            sqlx::query("UPDATE agent_runs SET timeout_paused_at = now() WHERE id = $1").bind(run).execute(&mut *tx).await?;
            Some("run.wait.paused")
        }
        (false, true) => {
            sqlx::query(
                "UPDATE agent_runs SET deadline_at = deadline_at + (now() - timeout_paused_at), timeout_paused_at = NULL WHERE id = $1",
            )
            .bind(run)
            .execute(&mut *tx)
            .await?;
            Some("run.wait.resumed")
        }
        _ => None,
    };
    if let Some(e) = event {
        crate::ingest::flow_event(&mut tx, &corr, Some(run), "system", worker, e, &serde_json::json!({"run_id": run})).await?;
    }
    let (deadline_at, timeout_paused_at) =
        sqlx::query_as("SELECT deadline_at, timeout_paused_at FROM agent_runs WHERE id = $1").bind(run).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(WaitSync { event, deadline_at, timeout_paused_at })
}

/// Outcome of a cancel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// The run was live and is now canceled; its job (if any) must be stopped.
    Canceled {
        namespace: Option<String>,
        job_name: Option<String>,
    },
    /// It was canceled before: nothing to do.
    AlreadyCanceled {
        namespace: Option<String>,
        job_name: Option<String>,
    },
    /// It had already finished otherwise.
    AlreadyTerminal(String),
    NotFound,
}

/// Cancels a pending or running run (idempotent), clearing waits and leases, releasing its slot
/// and recording `run.canceled`.
pub async fn cancel(pool: &PgPool, run: Uuid, actor: &str, reason: &str) -> Result<Cancel, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query("SELECT status, namespace, job_name, correlation_id FROM agent_runs WHERE id = $1 FOR UPDATE")
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(Cancel::NotFound) };
    let (status, namespace, job_name, corr): (String, Option<String>, Option<String>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let out = match status.as_str() {
        "canceled" => Cancel::AlreadyCanceled { namespace, job_name },
        "succeeded" | "failed" => Cancel::AlreadyTerminal(status),
        _ => {
            sqlx::query(
                "UPDATE agent_runs SET status = 'canceled', finished_at = now(), lease_owner = NULL, lease_until = NULL,
                        wait_reason = NULL, wait_target_kind = NULL, wait_target_ref = NULL, wait_deadline_at = NULL,
                        timeout_paused_at = NULL, failure_reason = 'canceled', failure_message = $2
                  WHERE id = $1",
            )
            .bind(run)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE agent_sessions SET wait_state = NULL, status = 'cancelled', finished_at = now() WHERE run_id = $1 AND status = 'running'")
                .bind(run)
                .execute(&mut *tx)
                .await?;
            release_slot(&mut tx, run).await?;
            crate::ingest::flow_event(
                &mut tx,
                &corr,
                Some(run),
                "human",
                actor,
                "run.canceled",
                &serde_json::json!({"run_id": run, "reason": reason}),
            )
            .await?;
            Cancel::Canceled { namespace, job_name }
        }
    };
    tx.commit().await?;
    Ok(out)
}

/// Jobs of runs canceled in the last hour, which workers keep stopping (idempotently) so a
/// cancel from anywhere reaches the runtime.
pub async fn recently_canceled_jobs(pool: &PgPool, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query_as(
        "SELECT namespace, job_name FROM agent_runs
          WHERE status = 'canceled' AND namespace IS NOT NULL AND job_name IS NOT NULL AND finished_at > now() - interval '1 hour'
          ORDER BY finished_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::from)
}

/// Stores the captured tail of a run's job log (lease-checked), e.g.
/// `{"tail": "...", "lines": 200, "captured_at": "..."}`, merged with what is there (the agent's
/// session JSON under `session`).
pub async fn record_logs(pool: &PgPool, run: Uuid, worker: &str, logs: &Value) -> Result<(), LeaseError> {
    let n = sqlx::query("UPDATE agent_runs SET agent_logs_json = COALESCE(agent_logs_json, '{}'::jsonb) || $3 WHERE id = $1 AND lease_owner = $2 AND lease_until > now()")
        .bind(run)
        .bind(worker)
        .bind(logs)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 1 { Ok(()) } else { Err(LeaseLost(run).into()) }
}

/// Blanks captured logs of runs that finished more than `retention` ago; returns how many.
pub async fn purge_old_logs(pool: &PgPool, retention: Duration) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE agent_runs SET agent_logs_json = NULL
          WHERE agent_logs_json IS NOT NULL AND finished_at < now() - make_interval(secs => $1::double precision / 1000)",
    )
    .bind(ms(retention))
    .execute(pool)
    .await?
    .rows_affected())
}

/// Records the lease of the run's namespace (lease-checked).
pub async fn set_namespace_lease(pool: &PgPool, run: Uuid, worker: &str, until: chrono::DateTime<chrono::Utc>) -> Result<(), LeaseError> {
    let n = sqlx::query("UPDATE agent_runs SET namespace_lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND lease_until > now()")
        .bind(run)
        .bind(worker)
        .bind(until)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 1 { Ok(()) } else { Err(LeaseLost(run).into()) }
}

/// The live namespace of the latest earlier run of the same repository, issue and agent, which a
/// revise run reuses.
pub async fn reusable_namespace(
    pool: &PgPool,
    exclude: Uuid,
    repository_id: Uuid,
    issue: i64,
    agent_key: &str,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT namespace FROM agent_runs
          WHERE repository_id = $1 AND issue_number = $2 AND agent_key = $3 AND id <> $4 AND runtime_mode = 'full-env'
            AND namespace IS NOT NULL AND namespace_lease_until > now()
          ORDER BY namespace_lease_until DESC LIMIT 1",
    )
    .bind(repository_id)
    .bind(issue as i32)
    .bind(agent_key)
    .bind(exclude)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)
}

/// Appends one flow event of a run, as `actor` (a worker), on a connection of its own.
pub async fn record_event(
    pool: &PgPool,
    correlation_id: &str,
    run: Uuid,
    actor: &str,
    event_type: &str,
    payload: &Value,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    crate::ingest::flow_event(&mut conn, correlation_id, Some(run), "system", actor, event_type, payload).await
}

/// A run's status and correlation id.
pub async fn status_of(pool: &PgPool, run: Uuid) -> Result<Option<(RunStatus, String)>, StoreError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT status, correlation_id FROM agent_runs WHERE id = $1").bind(run).fetch_optional(pool).await?;
    row.map(|(s, corr)| Ok((status(&s)?, corr))).transpose()
}

/// Whether a run's job is recorded (a launch got as far as naming it), read now rather than from
/// an earlier snapshot of the run.
pub async fn job_recorded(pool: &PgPool, run: Uuid) -> Result<bool, StoreError> {
    let recorded: Option<bool> =
        sqlx::query_scalar("SELECT job_name IS NOT NULL FROM agent_runs WHERE id = $1").bind(run).fetch_optional(pool).await?;
    Ok(recorded.unwrap_or(false))
}

/// A claimed cleanup request and the namespaces of the runs it concerns.
#[derive(Debug, Clone)]
pub struct CleanupWork {
    pub id: i64,
    pub correlation_id: String,
    /// This claim's attempt; the fencing token of [`finish_cleanup`].
    pub attempts: i32,
    /// (run id, namespace) of every run of the issue or PR that has a namespace.
    pub namespaces: Vec<(Uuid, String)>,
}

/// Claims up to `limit` cleanup requests that are pending or whose claim expired, for `worker`
/// and `lease`: one worker carries out each request.
pub async fn claim_cleanups(pool: &PgPool, worker: &str, lease: Duration, limit: i64) -> Result<Vec<CleanupWork>, StoreError> {
    let rows: Vec<(i64, String, Uuid, String, i32, i32)> = sqlx::query_as(
        "UPDATE cleanup_requests SET status = 'in_progress', lease_owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000),
                attempts = attempts + 1
          WHERE id IN (SELECT id FROM cleanup_requests
                        WHERE status = 'pending' OR (status = 'in_progress' AND lease_until < now())
                        ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT $3)
          RETURNING id, correlation_id, repository_id, scope, number, attempts",
    )
    .bind(worker)
    .bind(ms(lease))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (id, correlation_id, repo, scope, number, attempts) in rows {
        let column = if scope == "issue_namespaces" { "issue_number" } else { "pr_number" };
        let namespaces: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT DISTINCT ON (namespace) id, namespace FROM agent_runs WHERE repository_id = $1 AND {column} = $2 AND namespace IS NOT NULL"
        ))
        .bind(repo)
        .bind(number)
        .fetch_all(pool)
        .await?;
        out.push(CleanupWork { id, correlation_id, attempts, namespaces });
    }
    Ok(out)
}

/// How a claimed cleanup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupResult {
    Done,
    /// Given up, with the last error.
    Failed(String),
    /// The runtime was unreachable: back to pending for a later claim.
    Retry(String),
}

/// Records how a claimed cleanup ended, only by the claim that holds it; false when another
/// claim took it over meanwhile.
pub async fn finish_cleanup(pool: &PgPool, work: &CleanupWork, worker: &str, result: &CleanupResult) -> Result<bool, StoreError> {
    let (status, error) = match result {
        CleanupResult::Done => ("done", None),
        CleanupResult::Failed(e) => ("failed", Some(e.as_str())),
        CleanupResult::Retry(e) => ("pending", Some(e.as_str())),
    };
    let n = sqlx::query(
        "UPDATE cleanup_requests SET status = $4, last_error = $5, lease_owner = NULL, lease_until = NULL
          WHERE id = $1 AND status = 'in_progress' AND lease_owner = $2 AND attempts = $3",
    )
    .bind(work.id)
    .bind(worker)
    .bind(work.attempts)
    .bind(status)
    .bind(error)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records that the run's credentials were withdrawn (with `run.credentials.withdrawn`), while
/// `worker` holds its lease; false when the lease moved on or it was recorded already.
pub async fn mark_credentials_withdrawn(pool: &PgPool, run: Uuid, worker: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let corr: Option<String> = sqlx::query_scalar(
        "UPDATE agent_runs SET credentials_withdrawn_at = now()
          WHERE id = $1 AND lease_owner = $2 AND credentials_withdrawn_at IS NULL RETURNING correlation_id",
    )
    .bind(run)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(corr) = corr else { return Ok(false) };
    let payload = serde_json::json!({"run_id": run});
    crate::ingest::flow_event(&mut tx, &corr, Some(run), "system", worker, "run.credentials.withdrawn", &payload).await?;
    tx.commit().await?;
    Ok(true)
}
