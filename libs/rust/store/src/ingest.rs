//! SQL of the webhook ingest, one batch of deliveries per transaction (group commit) in a fixed
//! handful of statements whatever the batch size: the advisory locks of the whole batch, one read
//! of everything the decisions need, one statement that cancels superseded discussion runs and
//! inserts the new runs, and one that records deliveries, flow events, owed GitHub side effects,
//! cleanups, warnings and deploy tasks and wakes the workers on commit. Every history lookup is an
//! index probe bounded by the issue or pull request, never by the number of stored runs.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use ck8s_domain::effects::OwedEffect;
use ck8s_domain::policy::{RuntimeMode, TriggerSource};
use ck8s_domain::run_spec::RunSpec;
use ck8s_domain::stage::TriggerKind;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Channel on which pending runs are announced to workers.
pub const RUN_PENDING_CHANNEL: &str = "codexk8s_run_pending";

/// Lock key of a delivery id: a concurrent copy of the delivery waits for the first to commit.
pub fn delivery_key(delivery_id: &str) -> String {
    format!("webhook-delivery:{delivery_id}")
}

/// Lock key of a signed body in a repository: concurrent replays of it wait for each other.
pub fn payload_key(repository_external_id: i64, payload_sha256: &str) -> String {
    format!("webhook-payload:{repository_external_id}:{payload_sha256}")
}

/// Lock key of an issue or pull request of a repository: its deliveries decide one at a time, so
/// two cannot both decide from the same history (both seeing no live discussion run, say).
pub fn issue_key(repository_external_id: i64, number: i64) -> String {
    format!("ingest-issue:github:{repository_external_id}:{number}")
}

/// How the ingest's statements are planned, for the transaction of a batch. Generic plans: the
/// read of [`facts`] joins enough relations that planning it for every batch would cost more than
/// running it, so each connection plans it once. No sequential scans: a plan cached while a table
/// was nearly empty must not scan it once it has grown (autovacuum's analyze invalidates cached
/// plans, but a burst of deliveries can outrun it), so every lookup is an index probe whatever
/// the table's size when planned.
pub const PLAN_SETTINGS: [(&str, &str); 2] = [("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off")];

/// Takes, in one statement and in a fixed global order (so two batches cannot deadlock on them),
/// the transaction-scoped advisory locks named by `keys`, waiting for any held elsewhere.
///
/// The same statement applies [`PLAN_SETTINGS`] to the rest of the transaction.
pub async fn lock(db: &mut PgConnection, keys: &[String]) -> Result<(), StoreError> {
    let [(name_a, value_a), (name_b, value_b)] = PLAN_SETTINGS;
    sqlx::query(
        "SELECT set_config($2, $3, true), set_config($4, $5, true), count(pg_advisory_xact_lock(k))
           FROM (SELECT DISTINCT hashtextextended(x, 0) AS k FROM unnest($1::text[]) x ORDER BY 1) keys",
    )
    .bind(keys)
    .bind(name_a)
    .bind(value_a)
    .bind(name_b)
    .bind(value_b)
    .execute(db)
    .await?;
    Ok(())
}

/// What one delivery of a batch asks the store before its decision.
#[derive(Debug, Clone, Default)]
pub struct FactsQuery<'a> {
    pub delivery_id: &'a str,
    /// The repository's numeric GitHub id, when the payload names one.
    pub repository_external_id: Option<i64>,
    pub payload_sha256: &'a str,
    pub sender_login: Option<&'a str>,
    /// The sender's numeric GitHub id (0 when absent).
    pub sender_github_id: i64,
    /// The issue of the delivery (which may be a pull request's issue).
    pub issue_number: Option<i64>,
    /// Whether that issue is a pull request.
    pub issue_is_pull_request: bool,
    pub pr_number: Option<i64>,
}

/// A delivery recorded before: its own id again, or (for a replay) the first with the same body.
#[derive(Debug, Clone)]
pub struct PriorDelivery {
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
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

/// The platform's view of a GitHub login in one project.
#[derive(Debug, Clone, Default)]
pub struct SenderRecord {
    pub user_id: Option<Uuid>,
    pub is_owner: bool,
    pub is_admin: bool,
    /// `read`, `read_write` or `admin` when a member.
    pub role: Option<String>,
    pub learning_mode_override: Option<bool>,
    /// The user was matched by a login no GitHub id is bound to yet: the sender's id is bound to
    /// it when the batch is recorded.
    pub bind_github_id: bool,
}

/// What the latest run of an issue (or pull request) stored: its trigger kind and the issue's
/// and the pull request's labels.
#[derive(Debug, Clone, Default)]
pub struct LastRun {
    /// `None` when the stored kind is not one this build knows.
    pub trigger_kind: Option<TriggerKind>,
    pub issue_labels: Vec<String>,
    pub pull_request_labels: Vec<String>,
}

/// The candidate lineage of an issue: its latest live or successful run with a pull request that
/// has not been closed, with the build ref and namespace it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateRun {
    pub pr_number: i64,
    pub build_ref: String,
    pub namespace: Option<String>,
}

/// An agent usable for a run: the project's override of a key, else the global one.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub is_active: bool,
}

/// Everything the decision of one delivery needs, read in the batch's single read statement.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The delivery id was recorded before.
    pub prior: Option<PriorDelivery>,
    /// The same body was recorded before under another delivery id (that id, and its record).
    pub replay_of: Option<(String, PriorDelivery)>,
    pub binding: Option<BoundRepository>,
    pub sender: SenderRecord,
    /// A discussion run of the (non-PR) issue is pending or running.
    pub live_discussion_run: bool,
    pub candidate: Option<CandidateRun>,
    /// Distinct issues of earlier runs of the pull request.
    pub pr_linked_issues: Vec<i64>,
    /// The trigger kind of the latest run touching the pull request (reviews excluded).
    pub pr_last_run_kind: Option<TriggerKind>,
    /// The latest run of the delivery's issue.
    pub issue_last_run: Option<LastRun>,
    /// The latest run of the pull request's single linked issue.
    pub linked_issue_last_run: Option<LastRun>,
    /// The latest run of the pull request.
    pub pr_last_run: Option<LastRun>,
    /// The agents of the bound project, by key.
    pub agents: Vec<AgentRecord>,
    /// The transaction's `now()`, for payload timestamps consistent with row timestamps.
    pub now: DateTime<Utc>,
}

impl Facts {
    /// The agent configured for `key`, if any.
    pub fn agent(&self, key: &str) -> Option<&AgentRecord> {
        self.agents.iter().find(|a| a.key == key)
    }
}

#[derive(sqlx::FromRow)]
struct FactsRow {
    prior_correlation_id: Option<String>,
    prior_run_id: Option<Uuid>,
    replay_of: Option<String>,
    replay_correlation_id: Option<String>,
    replay_run_id: Option<Uuid>,
    repository_id: Option<Uuid>,
    project_id: Option<Uuid>,
    default_ref: Option<String>,
    services_yaml_path: Option<String>,
    project_is_platform: Option<bool>,
    project_settings: Option<Value>,
    user_id: Option<Uuid>,
    is_owner: Option<bool>,
    is_admin: Option<bool>,
    role: Option<String>,
    learning_mode_override: Option<bool>,
    bind_github_id: Option<bool>,
    live_discussion_run: Option<bool>,
    candidate_pr: Option<i32>,
    candidate_build_ref: Option<String>,
    candidate_namespace: Option<String>,
    pr_linked_issues: Option<Vec<i32>>,
    pr_last_kind: Option<String>,
    issue_last_found: Option<bool>,
    issue_last_kind: Option<String>,
    issue_last_issue_labels: Option<Value>,
    issue_last_pr_labels: Option<Value>,
    linked_last_found: Option<bool>,
    linked_last_kind: Option<String>,
    linked_last_issue_labels: Option<Value>,
    linked_last_pr_labels: Option<Value>,
    pr_last_found: Option<bool>,
    pr_last_run_kind: Option<String>,
    pr_last_issue_labels: Option<Value>,
    pr_last_pr_labels: Option<Value>,
    agent_keys: Option<Vec<String>>,
    agent_ids: Option<Vec<Uuid>>,
    agent_names: Option<Vec<String>>,
    agent_active: Option<Vec<bool>>,
    now: DateTime<Utc>,
}

fn label_names(v: Option<Value>) -> Vec<String> {
    v.and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.as_str().map(String::from).or_else(|| l.get("name").and_then(Value::as_str).map(String::from)))
        .collect()
}

fn last_run(found: Option<bool>, kind: Option<String>, issue_labels: Option<Value>, pr_labels: Option<Value>) -> Option<LastRun> {
    found.filter(|f| *f).map(|_| LastRun {
        trigger_kind: kind.and_then(|k| TriggerKind::parse(&k).ok()),
        issue_labels: label_names(issue_labels),
        pull_request_labels: label_names(pr_labels),
    })
}

impl From<FactsRow> for Facts {
    fn from(r: FactsRow) -> Self {
        let prior = r.prior_correlation_id.map(|correlation_id| PriorDelivery { correlation_id, run_id: r.prior_run_id });
        let replay_of = match (r.replay_of, r.replay_correlation_id) {
            (Some(id), Some(correlation_id)) => Some((id, PriorDelivery { correlation_id, run_id: r.replay_run_id })),
            _ => None,
        };
        let binding = match (r.repository_id, r.project_id) {
            (Some(repository_id), Some(project_id)) => Some(BoundRepository {
                repository_id,
                project_id,
                default_ref: r.default_ref.unwrap_or_default(),
                services_yaml_path: r.services_yaml_path.unwrap_or_default(),
                project_is_platform: r.project_is_platform.unwrap_or(false),
                project_settings: r.project_settings.unwrap_or(Value::Null),
            }),
            _ => None,
        };
        let sender = SenderRecord {
            user_id: r.user_id,
            is_owner: r.is_owner.unwrap_or(false),
            is_admin: r.is_admin.unwrap_or(false),
            role: r.role,
            learning_mode_override: r.learning_mode_override,
            bind_github_id: r.bind_github_id.unwrap_or(false),
        };
        let candidate = match (r.candidate_pr, r.candidate_build_ref) {
            (Some(pr), Some(build_ref)) => Some(CandidateRun { pr_number: i64::from(pr), build_ref, namespace: r.candidate_namespace }),
            _ => None,
        };
        let agents = match (r.agent_keys, r.agent_ids, r.agent_names, r.agent_active) {
            (Some(keys), Some(ids), Some(names), Some(active)) => keys
                .into_iter()
                .zip(ids)
                .zip(names)
                .zip(active)
                .map(|(((key, id), name), is_active)| AgentRecord { id, key, name, is_active })
                .collect(),
            _ => Vec::new(),
        };
        Facts {
            prior,
            replay_of,
            binding,
            sender,
            live_discussion_run: r.live_discussion_run.unwrap_or(false),
            candidate,
            pr_linked_issues: r.pr_linked_issues.unwrap_or_default().into_iter().map(i64::from).collect(),
            pr_last_run_kind: r.pr_last_kind.and_then(|k| TriggerKind::parse(&k).ok()),
            issue_last_run: last_run(r.issue_last_found, r.issue_last_kind, r.issue_last_issue_labels, r.issue_last_pr_labels),
            linked_issue_last_run: last_run(r.linked_last_found, r.linked_last_kind, r.linked_last_issue_labels, r.linked_last_pr_labels),
            pr_last_run: last_run(r.pr_last_found, r.pr_last_run_kind, r.pr_last_issue_labels, r.pr_last_pr_labels),
            agents,
            now: r.now,
        }
    }
}

/// The latest run of an issue or pull request: its kind and the labels its payload stored.
const LAST_RUN: &str = "SELECT true AS found, a.trigger_kind AS kind, a.run_payload->'issue'->'labels' AS issue_labels,
                               a.run_payload->'pull_request'->'labels' AS pr_labels
                          FROM agent_runs a";

/// The read of [`facts`]: `$1`–`$8` are the arrays of delivery ids, repository ids, body
/// digests, sender logins, sender ids, issue numbers, whether each issue is a pull request, and
/// pull request numbers. Public for the test that checks its plan probes indexes only. Built
/// once.
pub fn facts_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
        "SELECT p.correlation_id AS prior_correlation_id, p.run_id AS prior_run_id,
                rp.delivery_id AS replay_of, rp.correlation_id AS replay_correlation_id, rp.run_id AS replay_run_id,
                b.id AS repository_id, b.project_id, b.default_ref, b.services_yaml_path, b.is_platform AS project_is_platform,
                b.settings AS project_settings,
                s.id AS user_id, s.is_platform_owner AS is_owner, s.is_platform_admin AS is_admin, s.role, s.learning_mode_override,
                s.bind_github_id,
                ld.live AS live_discussion_run,
                c.pr_number AS candidate_pr, c.build_ref AS candidate_build_ref, c.namespace AS candidate_namespace,
                pl.issues AS pr_linked_issues, pk.trigger_kind AS pr_last_kind,
                li.found AS issue_last_found, li.kind AS issue_last_kind, li.issue_labels AS issue_last_issue_labels,
                li.pr_labels AS issue_last_pr_labels,
                ll.found AS linked_last_found, ll.kind AS linked_last_kind, ll.issue_labels AS linked_last_issue_labels,
                ll.pr_labels AS linked_last_pr_labels,
                lp.found AS pr_last_found, lp.kind AS pr_last_run_kind, lp.issue_labels AS pr_last_issue_labels,
                lp.pr_labels AS pr_last_pr_labels,
                ag.keys AS agent_keys, ag.ids AS agent_ids, ag.names AS agent_names, ag.active AS agent_active,
                now() AS now
           FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::bool[], $8::int[])
                WITH ORDINALITY AS d(delivery_id, ext_id, sha, login, gh_id, issue, issue_is_pr, pr, ord)
           -- Every part is a lateral probe per delivery (a LIMIT keeps the planner from turning
           -- one into a join over the whole table).
           LEFT JOIN LATERAL (SELECT w.correlation_id, w.run_id FROM webhook_deliveries w WHERE w.delivery_id = d.delivery_id
                               LIMIT 1) p ON true
           LEFT JOIN LATERAL (SELECT w.delivery_id, w.correlation_id, w.run_id FROM webhook_deliveries w
                               WHERE p.correlation_id IS NULL AND w.repository_external_id = d.ext_id AND w.payload_sha256 = d.sha
                                 AND w.delivery_id <> d.delivery_id
                               ORDER BY w.received_at LIMIT 1) rp ON true
           LEFT JOIN LATERAL (SELECT r.id, r.project_id, r.default_ref, r.services_yaml_path, pj.is_platform, pj.settings
                                FROM repositories r JOIN projects pj ON pj.id = r.project_id
                               WHERE p.correlation_id IS NULL AND rp.delivery_id IS NULL
                                 AND r.provider = 'github' AND r.external_id = d.ext_id
                               LIMIT 1) b ON true
           LEFT JOIN LATERAL (SELECT u.id, u.is_platform_owner, u.is_platform_admin, m.role, m.learning_mode_override,
                                     (u.github_user_id IS NULL AND d.gh_id > 0) AS bind_github_id
                                FROM (SELECT x.id, x.is_platform_owner, x.is_platform_admin, x.github_user_id, 0 AS pref
                                        FROM users x WHERE d.gh_id > 0 AND x.github_user_id = d.gh_id
                                      UNION ALL
                                      -- A login names a user only while no GitHub id is bound to it (or this very one).
                                      SELECT x.id, x.is_platform_owner, x.is_platform_admin, x.github_user_id, 1
                                        FROM users x
                                       WHERE x.github_login = d.login::citext AND (x.github_user_id IS NULL OR x.github_user_id = d.gh_id)
                                      ORDER BY pref LIMIT 1) u
                                LEFT JOIN project_members m ON m.user_id = u.id AND m.project_id = b.project_id
                               WHERE b.id IS NOT NULL AND d.login <> '') s ON true
           LEFT JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM agent_runs a
                                              WHERE a.repository_id = b.id AND a.issue_number = d.issue
                                                AND a.status IN ('pending', 'running')
                                                AND (a.run_payload->>'discussion_mode')::boolean) AS live
                               WHERE b.id IS NOT NULL AND d.issue IS NOT NULL AND NOT d.issue_is_pr) ld ON true
           LEFT JOIN LATERAL (SELECT a.pr_number,
                                     COALESCE(a.run_payload->'pull_request'->'head'->>'sha', a.run_payload->'runtime'->>'build_ref') AS build_ref,
                                     a.namespace
                                FROM agent_runs a
                               WHERE b.id IS NOT NULL AND d.issue IS NOT NULL AND NOT d.issue_is_pr
                                 AND a.repository_id = b.id AND a.issue_number = d.issue AND a.pr_number IS NOT NULL
                                 AND a.status IN ('running', 'succeeded')
                                 -- A production run (the platform's namespace) is never a candidate.
                                 AND COALESCE(a.run_payload->'runtime'->>'target_env', '') <> 'production'
                                 AND NOT EXISTS (SELECT 1 FROM cleanup_requests cr
                                                  WHERE cr.repository_id = a.repository_id AND cr.scope = 'pull_request_namespaces'
                                                    AND cr.number = a.pr_number)
                               ORDER BY a.created_at DESC LIMIT 1) c ON true
           -- The guards repeat inside the array: the planner pulls this part up and evaluates the
           -- array before the outer condition. The runs are found by the pull request's index and
           -- sorted after (`OFFSET 0` keeps them apart): a plan made on empty tables would otherwise
           -- walk the issue index for its order, over every run of the repository.
           LEFT JOIN LATERAL (SELECT ARRAY(SELECT DISTINCT x.issue_number
                                             FROM (SELECT a.issue_number FROM agent_runs a
                                                    WHERE b.id IS NOT NULL AND d.pr IS NOT NULL
                                                      AND a.repository_id = b.id AND a.pr_number = d.pr AND a.issue_number <> d.pr
                                                   OFFSET 0) x
                                            ORDER BY 1) AS issues
                               WHERE b.id IS NOT NULL AND d.pr IS NOT NULL) pl ON true
           LEFT JOIN LATERAL (SELECT a.trigger_kind FROM agent_runs a
                               WHERE b.id IS NOT NULL AND d.pr IS NOT NULL AND a.repository_id = b.id AND a.pr_number = d.pr
                                 AND a.trigger_kind IS NOT NULL AND a.agent_key IS DISTINCT FROM 'reviewer'
                               ORDER BY a.created_at DESC LIMIT 1) pk ON true
           LEFT JOIN LATERAL ({LAST_RUN} WHERE b.id IS NOT NULL AND d.issue IS NOT NULL
                                 AND a.repository_id = b.id AND a.issue_number = d.issue
                               ORDER BY a.created_at DESC LIMIT 1) li ON true
           LEFT JOIN LATERAL ({LAST_RUN} WHERE cardinality(pl.issues) = 1
                                 AND a.repository_id = b.id AND a.issue_number = pl.issues[1]
                               ORDER BY a.created_at DESC LIMIT 1) ll ON true
           LEFT JOIN LATERAL ({LAST_RUN} WHERE b.id IS NOT NULL AND d.pr IS NOT NULL
                                 AND a.repository_id = b.id AND a.pr_number = d.pr
                               ORDER BY a.created_at DESC LIMIT 1) lp ON true
           LEFT JOIN LATERAL (SELECT array_agg(g.agent_key ORDER BY g.agent_key) AS keys, array_agg(g.id ORDER BY g.agent_key) AS ids,
                                     array_agg(g.name ORDER BY g.agent_key) AS names, array_agg(g.is_active ORDER BY g.agent_key) AS active
                                FROM (SELECT DISTINCT ON (x.agent_key) x.agent_key, x.id, x.name, x.is_active
                                        FROM (SELECT a.agent_key, a.id, a.name, a.is_active, 0 AS pref FROM agents a
                                               WHERE b.id IS NOT NULL AND a.project_id = b.project_id
                                              UNION ALL
                                              SELECT a.agent_key, a.id, a.name, a.is_active, 1 FROM agents a
                                               WHERE b.id IS NOT NULL AND a.project_id IS NULL) x
                                       ORDER BY x.agent_key, x.pref) g) ag ON true
          ORDER BY d.ord"
        )
    });
    &SQL
}

/// Reads, for every delivery of a batch and in its order, what its decision needs: whether its id
/// or its body was recorded before, the repository binding, the sender's standing, the history of
/// its issue or pull request and the project's agents. One statement; each part is skipped when
/// an earlier one already settles the delivery (a duplicate needs no binding, an unbound one no
/// history).
pub async fn facts(db: &mut PgConnection, queries: &[FactsQuery<'_>]) -> Result<Vec<Facts>, StoreError> {
    let rows: Vec<FactsRow> = sqlx::query_as(facts_sql())
        .bind(queries.iter().map(|q| q.delivery_id).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.repository_external_id).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.payload_sha256).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.sender_login.unwrap_or_default()).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.sender_github_id).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.issue_number.filter(|n| *n > 0).map(|n| n as i32)).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.issue_is_pull_request).collect::<Vec<_>>())
        .bind(queries.iter().map(|q| q.pr_number.filter(|n| *n > 0).map(|n| n as i32)).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    if rows.len() != queries.len() {
        let msg = format!("the facts of {} deliveries came back as {} rows", queries.len(), rows.len());
        return Err(StoreError::Database(sqlx::Error::Protocol(msg)));
    }
    Ok(rows.into_iter().map(Facts::from).collect())
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

/// A live discussion run that a cleanup cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanceledRun {
    pub repository_id: Uuid,
    pub issue_number: i64,
    pub run_id: Uuid,
    pub correlation_id: String,
}

/// What [`start_runs`] did.
#[derive(Debug, Clone, Default)]
pub struct StartedRuns {
    pub canceled: Vec<CanceledRun>,
    /// Per correlation id: the run's id, and whether this batch inserted it (`false`: a run with
    /// that correlation id existed already — another delivery of the same trigger).
    pub runs: Vec<(String, Uuid, bool)>,
}

impl StartedRuns {
    /// The run of `correlation_id` and whether this batch inserted it.
    pub fn run(&self, correlation_id: &str) -> Option<(Uuid, bool)> {
        self.runs.iter().find(|(c, ..)| c == correlation_id).map(|(_, id, inserted)| (*id, *inserted))
    }

    /// Like [`StartedRuns::run`], for a run that [`start_runs`] was asked to start (it is always
    /// there unless the database answered unexpectedly).
    pub fn require(&self, correlation_id: &str) -> Result<(Uuid, bool), StoreError> {
        self.run(correlation_id).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Protocol(format!("the run of {correlation_id} was neither inserted nor found")))
        })
    }

    /// The discussion runs of an issue that this batch cancelled.
    pub fn canceled_of(&self, repository_id: Uuid, issue: i64) -> impl Iterator<Item = &CanceledRun> {
        self.canceled.iter().filter(move |c| c.repository_id == repository_id && c.issue_number == issue)
    }
}

/// A row of [`start_runs`]: (cancelled rather than inserted, run id, correlation id, and for a
/// cancelled run its repository and issue).
type StartedRow = (bool, Uuid, String, Option<Uuid>, Option<i32>);

/// Cancels the live discussion runs of the issues in `cancel` (repository, issue) and inserts
/// `runs` as pending, in one statement; a run whose correlation id exists already is not inserted
/// and its existing id is looked up (a second statement, only then). Runs inserted here are not
/// cancelled by the same call.
pub async fn start_runs(db: &mut PgConnection, cancel: &[(Uuid, i64)], runs: &[NewRun<'_>]) -> Result<StartedRuns, StoreError> {
    let mut started = StartedRuns::default();
    if cancel.is_empty() && runs.is_empty() {
        return Ok(started);
    }
    let rows: Vec<StartedRow> = sqlx::query_as(
        "WITH canceled AS (
             UPDATE agent_runs a
                SET status = 'canceled', finished_at = now(), lease_owner = NULL, lease_until = NULL, wait_reason = NULL,
                    wait_target_kind = NULL, wait_target_ref = NULL, wait_deadline_at = NULL, failure_reason = 'discussion_cleanup'
               FROM unnest($1::uuid[], $2::int[]) AS x(repository_id, issue)
              -- Probes of the index of live discussion runs (agent_runs_live_discussion).
              WHERE a.repository_id = x.repository_id AND a.issue_number = x.issue AND a.status IN ('pending', 'running')
                AND (a.run_payload->>'discussion_mode')::boolean
          RETURNING a.id, a.correlation_id, a.repository_id, a.issue_number),
         inserted AS (
             INSERT INTO agent_runs (correlation_id, project_id, repository_id, agent_id, status, run_payload, learning_mode,
                                     repository_full_name, issue_number, pr_number, trigger_source, trigger_kind, trigger_label,
                                     agent_key, runtime_mode, namespace)
             SELECT c, p, r, ag, 'pending', pl, lm, fn, i, pr, ts, tk, tl, ak, rm, ns
               FROM unnest($3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::jsonb[], $8::bool[], $9::text[], $10::int[],
                           $11::int[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
                    AS x(c, p, r, ag, pl, lm, fn, i, pr, ts, tk, tl, ak, rm, ns)
             ON CONFLICT (correlation_id) DO NOTHING
          RETURNING id, correlation_id)
         SELECT true, id, correlation_id, repository_id, issue_number FROM canceled
          UNION ALL
         SELECT false, id, correlation_id, NULL::uuid, NULL::int FROM inserted",
    )
    .bind(cancel.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(cancel.iter().map(|c| c.1 as i32).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.correlation_id).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.project_id).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.repository_id).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.agent_id).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.spec.to_value()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.learning_mode).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.repository_full_name).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.issue_number.map(|n| n as i32)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.pr_number.map(|n| n as i32)).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.trigger_source.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.trigger_kind.to_string()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.trigger_label).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.agent_key).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.runtime_mode.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.namespace).collect::<Vec<_>>())
    .fetch_all(&mut *db)
    .await?;
    for (was_canceled, id, correlation_id, repository_id, issue) in rows {
        match (was_canceled, repository_id, issue) {
            (true, Some(repository_id), Some(issue)) => {
                started.canceled.push(CanceledRun { repository_id, issue_number: i64::from(issue), run_id: id, correlation_id })
            }
            _ => started.runs.push((correlation_id, id, true)),
        }
    }
    let existing: Vec<&str> = runs.iter().map(|r| r.correlation_id).filter(|c| started.run(c).is_none()).collect();
    if !existing.is_empty() {
        let found: Vec<(String, Uuid)> = sqlx::query_as("SELECT correlation_id, id FROM agent_runs WHERE correlation_id = ANY($1)")
            .bind(&existing)
            .fetch_all(db)
            .await?;
        started.runs.extend(found.into_iter().map(|(c, id)| (c, id, false)));
    }
    Ok(started)
}

/// How a delivery ended, as recorded.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository_external_id: Option<i64>,
    pub repository_id: Option<Uuid>,
    pub sender_login: Option<String>,
    pub correlation_id: String,
    /// `accepted`, `duplicate` or `ignored`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub run_id: Option<Uuid>,
    pub payload_sha256: String,
}

/// One audit event to append.
#[derive(Debug, Clone)]
pub struct NewFlowEvent {
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
    pub actor_type: &'static str,
    pub actor_id: &'static str,
    pub event_type: String,
    pub payload: Value,
}

/// One owed GitHub side effect (recorded once per idempotency key).
#[derive(Debug, Clone)]
pub struct NewSideEffect {
    pub idempotency_key: String,
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
    pub repository_id: Uuid,
    /// The issue or pull request number.
    pub target_number: i64,
    pub effect: OwedEffect,
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

/// A cleanup for the worker.
#[derive(Debug, Clone)]
pub struct NewCleanup {
    pub repository_id: Uuid,
    pub correlation_id: String,
    pub scope: CleanupScope,
    pub number: i64,
}

/// A staff-visible runtime error or warning.
#[derive(Debug, Clone)]
pub struct NewRuntimeError {
    pub source: &'static str,
    pub level: &'static str,
    pub message: String,
    pub details: Value,
    pub correlation_id: Option<String>,
    pub project_id: Option<Uuid>,
}

/// The deploy task of a deploy-only run (a push to the platform's `main`). It waits (`pending`)
/// for self-deploy, which will carry it out; no agent ever starts for it.
#[derive(Debug, Clone)]
pub struct NewDeployTask {
    pub run_id: Uuid,
    pub runtime_mode: RuntimeMode,
    pub namespace: Option<String>,
    pub target_env: String,
    pub repository_full_name: String,
    pub build_ref: String,
}

/// Everything a batch records after its decisions.
#[derive(Debug, Clone, Default)]
pub struct BatchWrites {
    pub deliveries: Vec<DeliveryRecord>,
    pub flow_events: Vec<NewFlowEvent>,
    pub side_effects: Vec<NewSideEffect>,
    pub cleanups: Vec<NewCleanup>,
    pub runtime_errors: Vec<NewRuntimeError>,
    pub deploy_tasks: Vec<NewDeployTask>,
    /// (user, GitHub id): bind the id to a user matched by login that had none yet.
    pub github_ids: Vec<(Uuid, i64)>,
    /// Pending runs to announce to the workers when the transaction commits.
    pub notify_runs: Vec<Uuid>,
}

/// Records a batch's writes in one statement. A delivery id recorded twice is a constraint error
/// (the caller's locks make it impossible unless something else wrote it).
pub async fn record(db: &mut PgConnection, w: &BatchWrites) -> Result<(), StoreError> {
    let (d, f, s, c, e, t) = (&w.deliveries, &w.flow_events, &w.side_effects, &w.cleanups, &w.runtime_errors, &w.deploy_tasks);
    sqlx::query(
        "WITH dlv AS (
             INSERT INTO webhook_deliveries (delivery_id, event_type, action, repository_external_id, repository_id, sender_login,
                                             correlation_id, outcome, reason, run_id, payload_sha256)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::text[],
                                  $9::text[], $10::uuid[], $11::text[])
          RETURNING 1),
         fe AS (
             INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type, payload)
             SELECT * FROM unnest($12::text[], $13::uuid[], $14::text[], $15::text[], $16::text[], $17::jsonb[])
          RETURNING 1),
         se AS (
             INSERT INTO github_side_effects (idempotency_key, correlation_id, run_id, repository_id, kind, target_number, payload)
             SELECT * FROM unnest($18::text[], $19::text[], $20::uuid[], $21::uuid[], $22::text[], $23::int[], $24::jsonb[])
             ON CONFLICT (idempotency_key) DO NOTHING
          RETURNING 1),
         cr AS (
             INSERT INTO cleanup_requests (repository_id, correlation_id, scope, number)
             SELECT * FROM unnest($25::uuid[], $26::text[], $27::text[], $28::int[])
             ON CONFLICT (correlation_id, scope, number) DO NOTHING
          RETURNING 1),
         re AS (
             INSERT INTO runtime_errors (source, level, message, details_json, correlation_id, project_id)
             SELECT * FROM unnest($29::text[], $30::text[], $31::text[], $32::jsonb[], $33::text[], $34::uuid[])
          RETURNING 1),
         dt AS (
             INSERT INTO runtime_deploy_tasks (run_id, runtime_mode, namespace, target_env, repository_full_name, build_ref, deploy_only)
             SELECT r, m, n, e, f, b, true FROM unnest($35::uuid[], $36::text[], $37::text[], $38::text[], $39::text[], $40::text[])
                    AS x(r, m, n, e, f, b)
             ON CONFLICT (run_id) DO NOTHING
          RETURNING 1),
         ub AS (
             UPDATE users u SET github_user_id = x.g FROM unnest($41::uuid[], $42::bigint[]) AS x(id, g)
              WHERE u.id = x.id AND u.github_user_id IS NULL
          RETURNING 1),
         nt AS (SELECT pg_notify($43, x::text) FROM unnest($44::uuid[]) x)
         SELECT (SELECT count(*) FROM nt)",
    )
    .bind(d.iter().map(|x| x.delivery_id.as_str()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.event.as_str()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.action.as_deref()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.repository_external_id).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.repository_id).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.sender_login.as_deref()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.correlation_id.as_str()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.outcome).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.reason.as_deref()).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.run_id).collect::<Vec<_>>())
    .bind(d.iter().map(|x| x.payload_sha256.as_str()).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.correlation_id.as_str()).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.run_id).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.actor_type).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.actor_id).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.event_type.as_str()).collect::<Vec<_>>())
    .bind(f.iter().map(|x| &x.payload).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.idempotency_key.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.correlation_id.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.run_id).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.repository_id).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.effect.kind()).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.target_number as i32).collect::<Vec<_>>())
    .bind(s.iter().map(|x| x.effect.to_value()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.repository_id).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.correlation_id.as_str()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.scope.as_str()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.number as i32).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.source).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.level).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.message.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| &x.details).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.correlation_id.as_deref()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.project_id).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.run_id).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.runtime_mode.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.namespace.as_deref()).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.target_env.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.repository_full_name.as_str()).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.build_ref.as_str()).collect::<Vec<_>>())
    .bind(w.github_ids.iter().map(|x| x.0).collect::<Vec<_>>())
    .bind(w.github_ids.iter().map(|x| x.1).collect::<Vec<_>>())
    .bind(RUN_PENDING_CHANNEL)
    .bind(&w.notify_runs)
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

/// Wakes waiting workers when the transaction commits.
pub async fn notify_run_pending(db: &mut PgConnection, run_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(RUN_PENDING_CHANNEL).bind(run_id.to_string()).execute(db).await?;
    Ok(())
}
