//! SQL of the webhook ingest: deliveries, binding, sender standing, run history, agents, runs,
//! owed GitHub side effects, cleanups and the wake-up of workers. Every function runs on the
//! caller's transaction.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use ck8s_domain::effects::OwedEffect;
use ck8s_domain::policy::{RuntimeMode, TriggerSource};
use ck8s_domain::run_spec::RunSpec;
use ck8s_domain::stage::TriggerKind;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// Channel on which pending runs are announced to workers.
pub const RUN_PENDING_CHANNEL: &str = "codexk8s_run_pending";

/// A delivery already recorded under the same id.
#[derive(Debug, Clone)]
pub struct PriorDelivery {
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
}

/// Claims a delivery id. `Ok(None)` means it is new (and now locked by this transaction until
/// commit); `Ok(Some(prior))` means it was recorded before — a concurrent duplicate waits here
/// for the first transaction to finish.
pub async fn claim_delivery(
    db: &mut PgConnection,
    delivery_id: &str,
    event: &str,
    action: Option<&str>,
    repository_external_id: Option<i64>,
    sender_login: Option<&str>,
    payload_sha256: &str,
) -> Result<Option<PriorDelivery>, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, event_type, action, repository_external_id, sender_login, correlation_id, outcome, payload_sha256)
         VALUES ($1, $2, $3, $4, $5, $1, 'accepted', $6)
         ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(delivery_id)
    .bind(event)
    .bind(action)
    .bind(repository_external_id)
    .bind(sender_login)
    .bind(payload_sha256)
    .execute(&mut *db)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT correlation_id, run_id FROM webhook_deliveries WHERE delivery_id = $1")
        .bind(delivery_id)
        .fetch_one(&mut *db)
        .await?;
    Ok(Some(PriorDelivery { correlation_id: row.get(0), run_id: row.get(1) }))
}

/// An earlier delivery of the same repository with the very same body (`payload_sha256`): a
/// signed body replayed under a new delivery id. Concurrent replays wait for each other here
/// (a transaction-scoped advisory lock on the digest).
pub async fn prior_payload(
    db: &mut PgConnection,
    repository_external_id: i64,
    payload_sha256: &str,
    except_delivery: &str,
) -> Result<Option<(String, PriorDelivery)>, StoreError> {
    xact_lock(db, &format!("webhook-payload:{repository_external_id}:{payload_sha256}")).await?;
    let row = sqlx::query(
        "SELECT delivery_id, correlation_id, run_id FROM webhook_deliveries
          WHERE repository_external_id = $1 AND payload_sha256 = $2 AND delivery_id <> $3
          ORDER BY received_at LIMIT 1",
    )
    .bind(repository_external_id)
    .bind(payload_sha256)
    .bind(except_delivery)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.get(0), PriorDelivery { correlation_id: r.get(1), run_id: r.get(2) })))
}

/// Records how a claimed delivery ended.
pub async fn finish_delivery(
    db: &mut PgConnection,
    delivery_id: &str,
    repository_id: Option<Uuid>,
    correlation_id: &str,
    outcome: &str,
    reason: Option<&str>,
    run_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET repository_id = $2, correlation_id = $3, outcome = $4, reason = $5, run_id = $6 WHERE delivery_id = $1",
    )
    .bind(delivery_id)
    .bind(repository_id)
    .bind(correlation_id)
    .bind(outcome)
    .bind(reason)
    .bind(run_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A registered repository matched by provider and numeric id.
#[derive(Debug, Clone)]
pub struct BoundRepository {
    pub repository_id: Uuid,
    pub project_id: Uuid,
    pub default_ref: String,
    pub services_yaml_path: String,
    pub project_is_platform: bool,
    pub project_settings: Value,
}

/// Finds the repository a delivery is about.
pub async fn find_binding(db: &mut PgConnection, provider: &str, external_id: i64) -> Result<Option<BoundRepository>, StoreError> {
    let row = sqlx::query(
        "SELECT r.id, r.project_id, r.default_ref, r.services_yaml_path, p.is_platform, p.settings
           FROM repositories r JOIN projects p ON p.id = r.project_id
          WHERE r.provider = $1 AND r.external_id = $2",
    )
    .bind(provider)
    .bind(external_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| BoundRepository {
        repository_id: r.get(0),
        project_id: r.get(1),
        default_ref: r.get(2),
        services_yaml_path: r.get(3),
        project_is_platform: r.get(4),
        project_settings: r.get(5),
    }))
}

/// The platform's view of a GitHub login in one project.
#[derive(Debug, Clone, Default)]
pub struct SenderRecord {
    pub user_id: Option<Uuid>,
    pub is_owner: bool,
    pub is_admin: bool,
    /// `read`, `read_write` or `admin` when a member.
    pub role: Option<String>,
    pub learning_mode_override: Option<bool>,
}

/// Looks up a sender by GitHub login (case-insensitive) and its membership in `project_id`.
pub async fn sender_record(db: &mut PgConnection, login: &str, github_id: i64, project_id: Uuid) -> Result<SenderRecord, StoreError> {
    // The user is whoever holds the sender's GitHub id. A login names a user only while no id is
    // bound to it yet, and the first event binds it; a login that now belongs to another account
    // (a member renamed themselves and someone took the old name) matches no one.
    let columns = "SELECT u.id, u.is_platform_owner, u.is_platform_admin, pm.role, pm.learning_mode_override
                     FROM users u LEFT JOIN project_members pm ON pm.user_id = u.id AND pm.project_id = $2";
    let mut row = if github_id > 0 {
        sqlx::query(&format!("{columns} WHERE u.github_user_id = $1")).bind(github_id).bind(project_id).fetch_optional(&mut *db).await?
    } else {
        None
    };
    if row.is_none() {
        // (`= $3` too: a concurrent delivery may have bound this very id a moment ago.)
        row = sqlx::query(&format!("{columns} WHERE u.github_login = $1::citext AND (u.github_user_id IS NULL OR u.github_user_id = $3)"))
            .bind(login)
            .bind(project_id)
            .bind(github_id)
            .fetch_optional(&mut *db)
            .await?;
        if let Some(r) = row.as_ref().filter(|_| github_id > 0) {
            let user: Uuid = r.get(0);
            sqlx::query("UPDATE users SET github_user_id = $2 WHERE id = $1 AND github_user_id IS NULL")
                .bind(user)
                .bind(github_id)
                .execute(&mut *db)
                .await?;
        }
    }
    Ok(row
        .map(|r| SenderRecord {
            user_id: r.get(0),
            is_owner: r.get(1),
            is_admin: r.get(2),
            role: r.get(3),
            learning_mode_override: r.get(4),
        })
        .unwrap_or_default())
}

/// Serialises the deliveries of one issue (or pull request) of a repository until the caller's
/// transaction ends, so two at once cannot both decide from the same history (both seeing no live
/// discussion run, say).
pub async fn lock_issue(db: &mut PgConnection, repository_id: Uuid, number: i64) -> Result<(), StoreError> {
    xact_lock(db, &format!("ingest-issue:{repository_id}:{number}")).await
}

/// Waits for, then holds until the transaction ends, the advisory lock named `key`.
async fn xact_lock(db: &mut PgConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(key).execute(db).await?;
    Ok(())
}

/// Whether a discussion run of the issue is pending or running.
pub async fn live_discussion_run(db: &mut PgConnection, repository_id: Uuid, issue: i64) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM agent_runs WHERE repository_id = $1 AND issue_number = $2
                          AND status IN ('pending', 'running') AND (run_payload->>'discussion_mode')::boolean)",
    )
    .bind(repository_id)
    .bind(issue as i32)
    .fetch_one(db)
    .await
    .map_err(StoreError::from)
}

/// Distinct issues of earlier runs of a pull request.
pub async fn pr_linked_issues(db: &mut PgConnection, repository_id: Uuid, pr: i64) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT issue_number FROM agent_runs
          WHERE repository_id = $1 AND pr_number = $2 AND issue_number IS NOT NULL AND issue_number <> $2
          ORDER BY issue_number",
    )
    .bind(repository_id)
    .bind(pr as i32)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(i64::from).collect())
}

/// The trigger kind of the latest run touching a pull request (excluding deploys).
pub async fn pr_last_run_kind(db: &mut PgConnection, repository_id: Uuid, pr: i64) -> Result<Option<TriggerKind>, StoreError> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT trigger_kind FROM agent_runs
          WHERE repository_id = $1 AND pr_number = $2 AND trigger_kind IS NOT NULL AND agent_key IS DISTINCT FROM 'reviewer'
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(repository_id)
    .bind(pr as i32)
    .fetch_optional(db)
    .await?;
    Ok(kind.and_then(|k| TriggerKind::parse(&k).ok()))
}

/// What the latest run of an issue stored: its trigger kind and the issue's and PR's labels.
#[derive(Debug, Clone, Default)]
pub struct LastRun {
    /// `None` when the stored kind is not one this build knows.
    pub trigger_kind: Option<TriggerKind>,
    pub issue_labels: Vec<String>,
    pub pull_request_labels: Vec<String>,
}

fn label_names(v: Option<Value>) -> Vec<String> {
    v.and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.as_str().map(String::from).or_else(|| l.get("name").and_then(Value::as_str).map(String::from)))
        .collect()
}

/// The latest run of an issue (or, with `pr`, of a pull request).
pub async fn last_run(
    db: &mut PgConnection,
    repository_id: Uuid,
    issue: Option<i64>,
    pr: Option<i64>,
) -> Result<Option<LastRun>, StoreError> {
    let row = sqlx::query(
        "SELECT trigger_kind, run_payload->'issue'->'labels', run_payload->'pull_request'->'labels'
           FROM agent_runs
          WHERE repository_id = $1 AND ($2::int IS NULL OR issue_number = $2) AND ($3::int IS NULL OR pr_number = $3)
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(repository_id)
    .bind(issue.map(|i| i as i32))
    .bind(pr.map(|p| p as i32))
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let kind: Option<String> = r.get(0);
        LastRun {
            trigger_kind: kind.and_then(|k| TriggerKind::parse(&k).ok()),
            issue_labels: label_names(r.get(1)),
            pull_request_labels: label_names(r.get(2)),
        }
    }))
}

/// The candidate lineage of an issue: its latest live or successful run with a PR that has not
/// been closed, with the build ref and namespace it used. A run in production (the platform's
/// namespace) is never a candidate: a later `run:qa` would otherwise run there with the candidate
/// profile.
pub async fn candidate(
    db: &mut PgConnection,
    repository_id: Uuid,
    issue: i64,
) -> Result<Option<(i64, String, Option<String>)>, StoreError> {
    let row = sqlx::query(
        "SELECT r.pr_number,
                COALESCE(r.run_payload->'pull_request'->'head'->>'sha', r.run_payload->'runtime'->>'build_ref'),
                r.namespace
           FROM agent_runs r
          WHERE r.repository_id = $1 AND r.issue_number = $2 AND r.pr_number IS NOT NULL
            AND r.status IN ('running', 'succeeded')
            AND COALESCE(r.run_payload->'runtime'->>'target_env', '') <> 'production'
            AND NOT EXISTS (SELECT 1 FROM cleanup_requests c
                             WHERE c.repository_id = r.repository_id AND c.scope = 'pull_request_namespaces' AND c.number = r.pr_number)
          ORDER BY r.created_at DESC LIMIT 1",
    )
    .bind(repository_id)
    .bind(issue as i32)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        let pr: i32 = r.get(0);
        let build_ref: Option<String> = r.get(1);
        build_ref.map(|b| (i64::from(pr), b, r.get(2)))
    }))
}

/// An agent usable for a run.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub is_active: bool,
}

/// The agent for `key` in a project: the project's override if any, else the global one.
pub async fn agent(db: &mut PgConnection, key: &str, project_id: Uuid) -> Result<Option<AgentRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT id, agent_key, name, is_active FROM agents
          WHERE agent_key = $1 AND (project_id = $2 OR project_id IS NULL)
          ORDER BY project_id NULLS LAST LIMIT 1",
    )
    .bind(key)
    .bind(project_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| AgentRecord { id: r.get(0), key: r.get(1), name: r.get(2), is_active: r.get(3) }))
}

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub correlation_id: &'a str,
    pub project_id: Uuid,
    pub repository_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub spec: &'a RunSpec,
    pub learning_mode: bool,
    pub repository_full_name: &'a str,
    pub issue_number: Option<i64>,
    pub pr_number: Option<i64>,
    pub trigger_source: TriggerSource,
    pub trigger_kind: TriggerKind,
    pub trigger_label: Option<&'a str>,
    pub agent_key: Option<&'a str>,
    pub runtime_mode: RuntimeMode,
    pub namespace: Option<&'a str>,
}

/// Inserts a pending run. `Ok((id, true))` when inserted, `Ok((id, false))` when a run with the
/// same correlation id already existed (a duplicate).
pub async fn insert_run(db: &mut PgConnection, r: &NewRun<'_>) -> Result<(Uuid, bool), StoreError> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, agent_id, status, run_payload, learning_mode,
                                 repository_full_name, issue_number, pr_number, trigger_source, trigger_kind, trigger_label,
                                 agent_key, runtime_mode, namespace)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (correlation_id) DO NOTHING RETURNING id",
    )
    .bind(r.correlation_id)
    .bind(r.project_id)
    .bind(r.repository_id)
    .bind(r.agent_id)
    .bind(r.spec.to_value())
    .bind(r.learning_mode)
    .bind(r.repository_full_name)
    .bind(r.issue_number.map(|n| n as i32))
    .bind(r.pr_number.map(|n| n as i32))
    .bind(r.trigger_source.as_str())
    .bind(r.trigger_kind.to_string())
    .bind(r.trigger_label)
    .bind(r.agent_key)
    .bind(r.runtime_mode.as_str())
    .bind(r.namespace)
    .fetch_optional(&mut *db)
    .await?;
    match id {
        Some(id) => Ok((id, true)),
        None => {
            let id = sqlx::query_scalar("SELECT id FROM agent_runs WHERE correlation_id = $1").bind(r.correlation_id).fetch_one(db).await?;
            Ok((id, false))
        }
    }
}

/// Records the deploy task of a deploy-only run (a push to the platform's `main`). It waits
/// (`pending`) for self-deploy, which will carry it out; no agent ever starts for it.
pub async fn owe_deploy_task(db: &mut PgConnection, run: Uuid, spec: &ck8s_domain::run_spec::RunSpec) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO runtime_deploy_tasks (run_id, runtime_mode, namespace, target_env, repository_full_name, build_ref, deploy_only)
         VALUES ($1, $2, $3, $4, $5, $6, true) ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(run)
    .bind(spec.runtime.mode.as_str())
    .bind(&spec.runtime.namespace)
    .bind(spec.runtime.target_env.as_deref().unwrap_or("production"))
    .bind(&spec.repository.full_name)
    .bind(spec.runtime.build_ref.as_deref().unwrap_or_default())
    .execute(db)
    .await?;
    Ok(())
}

/// Appends one audit event.
pub async fn flow_event(
    db: &mut PgConnection,
    correlation_id: &str,
    run_id: Option<Uuid>,
    actor_type: &str,
    actor_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type, payload) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(correlation_id)
    .bind(run_id)
    .bind(actor_type)
    .bind(actor_id)
    .bind(event_type)
    .bind(payload)
    .execute(db)
    .await?;
    Ok(())
}

/// Where an owed effect goes and under which key it is owed once.
#[derive(Debug, Clone, Copy)]
pub struct Owed<'a> {
    pub idempotency_key: &'a str,
    pub correlation_id: &'a str,
    pub run_id: Option<Uuid>,
    pub repository_id: Uuid,
    /// The issue or pull request number.
    pub target_number: i64,
}

/// Records an owed GitHub side effect (idempotent on its key).
pub async fn owe_side_effect(db: &mut PgConnection, at: Owed<'_>, effect: &OwedEffect) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "INSERT INTO github_side_effects (idempotency_key, correlation_id, run_id, repository_id, kind, target_number, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(at.idempotency_key)
    .bind(at.correlation_id)
    .bind(at.run_id)
    .bind(at.repository_id)
    .bind(effect.kind())
    .bind(at.target_number as i32)
    .bind(effect.to_value())
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// What a cleanup request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupScope {
    /// Every run namespace of an issue.
    IssueNamespaces,
    /// The namespaces of runs linked to a pull request.
    PullRequestNamespaces,
}

impl CleanupScope {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupScope::IssueNamespaces => "issue_namespaces",
            CleanupScope::PullRequestNamespaces => "pull_request_namespaces",
        }
    }
}

/// Records a cleanup for the worker.
pub async fn request_cleanup(
    db: &mut PgConnection,
    repository_id: Uuid,
    correlation_id: &str,
    scope: CleanupScope,
    number: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cleanup_requests (repository_id, correlation_id, scope, number) VALUES ($1, $2, $3, $4)
         ON CONFLICT (correlation_id, scope, number) DO NOTHING",
    )
    .bind(repository_id)
    .bind(correlation_id)
    .bind(scope.as_str())
    .bind(number as i32)
    .execute(db)
    .await?;
    Ok(())
}

/// Cancels the live discussion runs of an issue; returns their (id, correlation id).
pub async fn cancel_discussion_runs(db: &mut PgConnection, repository_id: Uuid, issue: i64) -> Result<Vec<(Uuid, String)>, StoreError> {
    let rows = sqlx::query(
        "UPDATE agent_runs SET status = 'canceled', finished_at = now(), lease_owner = NULL, lease_until = NULL,
                wait_reason = NULL, wait_target_kind = NULL, wait_target_ref = NULL, wait_deadline_at = NULL,
                failure_reason = 'discussion_cleanup'
          WHERE repository_id = $1 AND issue_number = $2 AND status IN ('pending', 'running')
            AND (run_payload->>'discussion_mode')::boolean
          RETURNING id, correlation_id",
    )
    .bind(repository_id)
    .bind(issue as i32)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records a staff-visible runtime error or warning.
pub async fn runtime_error(
    db: &mut PgConnection,
    source: &str,
    level: &str,
    message: &str,
    details: &Value,
    correlation_id: Option<&str>,
    project_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO runtime_errors (source, level, message, details_json, correlation_id, project_id) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(source)
    .bind(level)
    .bind(message)
    .bind(details)
    .bind(correlation_id)
    .bind(project_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Wakes waiting workers when the transaction commits.
pub async fn notify_run_pending(db: &mut PgConnection, run_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(RUN_PENDING_CHANNEL).bind(run_id.to_string()).execute(db).await?;
    Ok(())
}

/// `now()` of the database, for payload timestamps consistent with row timestamps.
pub async fn db_now(db: &mut PgConnection) -> Result<DateTime<Utc>, StoreError> {
    sqlx::query_scalar("SELECT now()").fetch_one(db).await.map_err(StoreError::from)
}
