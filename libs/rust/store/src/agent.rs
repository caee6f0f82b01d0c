//! What the agent runner reports about its run (product spec §6.2–§6.4, §8): the per-run bearer
//! token that authorises it, its flow events, its session snapshots (compare-and-swap on version
//! and checksum), its token usage and its learning-mode explanations.

use crate::error::StoreError;
use ck8s_domain::comments::{Locale, StatusState};
use ck8s_domain::effects::OwedEffect;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// The run a valid run token belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunAuth {
    pub run_id: Uuid,
    pub correlation_id: String,
    pub project_id: Option<Uuid>,
    pub repository_id: Option<Uuid>,
    pub repository_full_name: Option<String>,
    pub issue_number: Option<i32>,
    pub pr_number: Option<i32>,
    pub agent_key: Option<String>,
    pub trigger_kind: Option<String>,
    pub status: String,
    /// Whether the worker withdrew the run's credentials from its runtime.
    pub credentials_withdrawn: bool,
}

/// Stores the digest of a fresh token for a pending or running run (replacing an earlier one)
/// and records `run.mcp.token.issued`; returns false when the run is not live.
pub async fn issue_run_token(pool: &PgPool, run: Uuid, token_hash: &[u8; 32], ttl: Duration, actor: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let corr: Option<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "INSERT INTO run_tokens (run_id, token_hash, expires_at)
         SELECT id, $2, now() + $3 * interval '1 second' FROM agent_runs WHERE id = $1 AND status IN ('pending', 'running')
         ON CONFLICT (run_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, issued_at = now(), expires_at = EXCLUDED.expires_at
         RETURNING (SELECT correlation_id FROM agent_runs WHERE id = $1), expires_at",
    )
    .bind(run)
    .bind(&token_hash[..])
    .bind(ttl.as_secs() as f64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((corr, expires_at)) = corr else { return Ok(false) };
    let payload = serde_json::json!({"run_id": run, "expires_at": expires_at.to_rfc3339(), "ttl_seconds": ttl.as_secs()});
    crate::ingest::flow_event(&mut tx, &corr, Some(run), "system", actor, "run.mcp.token.issued", &payload).await?;
    tx.commit().await?;
    Ok(true)
}

/// The live run whose token has this digest: unexpired, and the run pending or running.
pub async fn authorize(pool: &PgPool, token_hash: &[u8; 32]) -> Result<Option<RunAuth>, StoreError> {
    sqlx::query_as(
        "SELECT r.id AS run_id, r.correlation_id, r.project_id, r.repository_id, r.repository_full_name, r.issue_number, r.pr_number,
                r.agent_key, r.trigger_kind, r.status, r.credentials_withdrawn_at IS NOT NULL AS credentials_withdrawn
           FROM run_tokens t JOIN agent_runs r ON r.id = t.run_id
          WHERE t.token_hash = $1 AND t.expires_at > now() AND r.status IN ('pending', 'running')",
    )
    .bind(&token_hash[..])
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)
}

/// The run of a token whose run was canceled less than `grace` ago. Such a token may still store
/// the `cancelled` snapshot of its stopped job, and nothing else (the caller enforces that).
pub async fn authorize_canceled(pool: &PgPool, token_hash: &[u8; 32], grace: Duration) -> Result<Option<RunAuth>, StoreError> {
    sqlx::query_as(
        "SELECT r.id AS run_id, r.correlation_id, r.project_id, r.repository_id, r.repository_full_name, r.issue_number, r.pr_number,
                r.agent_key, r.trigger_kind, r.status, r.credentials_withdrawn_at IS NOT NULL AS credentials_withdrawn
           FROM run_tokens t JOIN agent_runs r ON r.id = t.run_id
          WHERE t.token_hash = $1 AND t.expires_at > now() AND r.status = 'canceled'
            AND r.finished_at > now() - $2 * interval '1 second'",
    )
    .bind(&token_hash[..])
    .bind(grace.as_secs() as f64)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)
}

/// Deletes the run's token (the run finished).
pub async fn revoke_run_token(db: &mut PgConnection, run: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM run_tokens WHERE run_id = $1").bind(run).execute(db).await?;
    Ok(())
}

/// Appends an event of the agent runner (actor `agent`).
pub async fn agent_event(pool: &PgPool, auth: &RunAuth, actor: &str, event_type: &str, payload: &Value) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    crate::ingest::flow_event(&mut conn, &auth.correlation_id, Some(auth.run_id), "agent", actor, event_type, payload).await
}

/// A session snapshot as the runner sends it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub status: String,
    pub branch_name: Option<String>,
    pub pr_number: Option<i32>,
    pub pr_url: Option<String>,
    pub session_id: Option<String>,
    pub template_kind: Option<String>,
    pub template_source: Option<String>,
    pub template_locale: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub session_json: Value,
    pub codex_cli_session_path: Option<String>,
    pub codex_cli_session_json: Option<Value>,
    /// sha256 hex of the canonical `{codex_cli_session_json, session_json}`.
    pub checksum: String,
}

/// How a snapshot upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotWrite {
    /// Stored; the version now current and whether anything changed.
    Stored { version: i32, changed: bool, session_row: Uuid },
    /// The stored version is not the one the caller expected and holds other content.
    Conflict { expected: i32, actual: i32 },
}

/// Compare-and-swap of the run's snapshot (spec §6.3): expected version 0 inserts when absent;
/// otherwise the row is updated only at the expected version, and the version moves only when the
/// checksum changes. An identical replay is a no-op at any version. Also mirrors `session_json`
/// into `agent_runs.agent_logs_json.session` for the staff log view.
pub async fn upsert_snapshot(pool: &PgPool, auth: &RunAuth, expected: i32, s: &Snapshot) -> Result<SnapshotWrite, StoreError> {
    let mut tx = pool.begin().await?;
    let current: Option<(Uuid, i32, Option<String>)> =
        sqlx::query_as("SELECT id, snapshot_version, snapshot_checksum FROM agent_sessions WHERE run_id = $1 FOR UPDATE")
            .bind(auth.run_id)
            .fetch_optional(&mut *tx)
            .await?;
    let finished = matches!(s.status.as_str(), "succeeded" | "failed" | "cancelled" | "failed_precondition");
    let (row, version, changed) = match current {
        Some((id, v, sum)) if sum.as_deref() == Some(s.checksum.as_str()) => {
            tx.commit().await?;
            return Ok(SnapshotWrite::Stored { version: v, changed: false, session_row: id });
        }
        Some((_, v, sum)) if v != expected && sum.as_deref() != Some(s.checksum.as_str()) => {
            return Ok(SnapshotWrite::Conflict { expected, actual: v });
        }
        None if expected != 0 => return Ok(SnapshotWrite::Conflict { expected, actual: 0 }),
        None => {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO agent_sessions (run_id, correlation_id, project_id, repository_full_name, agent_key, issue_number, branch_name,
                        pr_number, pr_url, trigger_kind, template_kind, template_source, template_locale, model, reasoning_effort, status,
                        session_id, session_json, codex_cli_session_path, codex_cli_session_json, snapshot_version, snapshot_checksum,
                        snapshot_updated_at, last_heartbeat_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, 1, $21, now(), now(),
                         CASE WHEN $22 THEN now() END)
                 RETURNING id",
            )
            .bind(auth.run_id)
            .bind(&auth.correlation_id)
            .bind(auth.project_id)
            .bind(auth.repository_full_name.clone().unwrap_or_default())
            .bind(auth.agent_key.clone().unwrap_or_default())
            .bind(auth.issue_number)
            .bind(&s.branch_name)
            .bind(s.pr_number)
            .bind(&s.pr_url)
            .bind(&auth.trigger_kind)
            .bind(&s.template_kind)
            .bind(&s.template_source)
            .bind(&s.template_locale)
            .bind(&s.model)
            .bind(&s.reasoning_effort)
            .bind(&s.status)
            .bind(&s.session_id)
            .bind(&s.session_json)
            .bind(&s.codex_cli_session_path)
            .bind(&s.codex_cli_session_json)
            .bind(&s.checksum)
            .bind(finished)
            .fetch_one(&mut *tx)
            .await?;
            (id, 1, true)
        }
        Some((id, v, sum)) => {
            let content_changed = sum.as_deref() != Some(s.checksum.as_str());
            let next = if content_changed { v + 1 } else { v };
            sqlx::query(
                "UPDATE agent_sessions SET branch_name = COALESCE($2, branch_name), pr_number = COALESCE($3, pr_number),
                        pr_url = COALESCE($4, pr_url), template_kind = COALESCE($5, template_kind),
                        template_source = COALESCE($6, template_source), template_locale = COALESCE($7, template_locale),
                        model = COALESCE($8, model), reasoning_effort = COALESCE($9, reasoning_effort), status = $10,
                        session_id = COALESCE($11, session_id), session_json = $12,
                        codex_cli_session_path = COALESCE($13, codex_cli_session_path),
                        codex_cli_session_json = COALESCE($14, codex_cli_session_json), snapshot_version = $15, snapshot_checksum = $16,
                        snapshot_updated_at = CASE WHEN $17 THEN now() ELSE snapshot_updated_at END, last_heartbeat_at = now(),
                        finished_at = CASE WHEN $18 THEN now() END
                  WHERE id = $1",
            )
            .bind(id)
            .bind(&s.branch_name)
            .bind(s.pr_number)
            .bind(&s.pr_url)
            .bind(&s.template_kind)
            .bind(&s.template_source)
            .bind(&s.template_locale)
            .bind(&s.model)
            .bind(&s.reasoning_effort)
            .bind(&s.status)
            .bind(&s.session_id)
            .bind(&s.session_json)
            .bind(&s.codex_cli_session_path)
            .bind(&s.codex_cli_session_json)
            .bind(next)
            .bind(&s.checksum)
            .bind(content_changed)
            .bind(finished)
            .execute(&mut *tx)
            .await?;
            (id, next, content_changed)
        }
    };
    // The run's pull request, once known, is denormalised onto the run: review webhooks find the
    // stage and the issue of a pull request through it.
    sqlx::query(
        "UPDATE agent_runs SET agent_logs_json = COALESCE(agent_logs_json, '{}'::jsonb) || jsonb_build_object('session', $2::jsonb),
                pr_number = COALESCE(pr_number, $3)
          WHERE id = $1",
    )
    .bind(auth.run_id)
    .bind(&s.session_json)
    .bind(s.pr_number)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(SnapshotWrite::Stored { version, changed, session_row: row })
}

/// A stored snapshot, for resuming.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredSession {
    pub run_id: Uuid,
    pub branch_name: Option<String>,
    pub pr_number: Option<i32>,
    pub pr_url: Option<String>,
    pub session_id: Option<String>,
    pub status: String,
    pub codex_cli_session_path: Option<String>,
    pub codex_cli_session_json: Option<Value>,
    pub snapshot_version: i32,
}

/// The newest snapshot of (repository, branch, agent) with a Codex session (spec §6.3 resume
/// key), excluding the asking run itself.
pub async fn latest_session(
    pool: &PgPool,
    repository_full_name: &str,
    branch: &str,
    agent_key: &str,
    except_run: Uuid,
) -> Result<Option<StoredSession>, StoreError> {
    sqlx::query_as(
        "SELECT run_id, branch_name, pr_number, pr_url, session_id, status, codex_cli_session_path, codex_cli_session_json, snapshot_version
           FROM agent_sessions
          WHERE repository_full_name = $1 AND branch_name = $2 AND agent_key = $3 AND run_id <> $4 AND session_id IS NOT NULL
          ORDER BY snapshot_updated_at DESC NULLS LAST, snapshot_version DESC LIMIT 1",
    )
    .bind(repository_full_name)
    .bind(branch)
    .bind(agent_key)
    .bind(except_run)
    .fetch_optional(pool)
    .await.map_err(StoreError::from)
}

/// Token usage of one model turn.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub model: String,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
}

/// Appends usage rows to the run's session (which must exist: upload a snapshot first).
/// Returns how many rows were stored, or `None` when the run has no session yet.
pub async fn append_usage(pool: &PgPool, auth: &RunAuth, rows: &[Usage]) -> Result<Option<usize>, StoreError> {
    let mut tx = pool.begin().await?;
    let session: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM agent_sessions WHERE run_id = $1").bind(auth.run_id).fetch_optional(&mut *tx).await?;
    let Some(session) = session else { return Ok(None) };
    for u in rows {
        sqlx::query(
            "INSERT INTO token_usage (session_id, run_id, model, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, total_tokens)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session)
        .bind(auth.run_id)
        .bind(&u.model)
        .bind(u.prompt_tokens)
        .bind(u.cached_prompt_tokens)
        .bind(u.completion_tokens)
        .bind(u.reasoning_tokens)
        .bind(u.total_tokens)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(rows.len()))
}

/// One learning-mode explanation (spec §8).
#[derive(Debug, Clone)]
pub struct Feedback {
    pub kind: String,
    pub pr_number: Option<i32>,
    pub file_path: Option<String>,
    pub line: Option<i32>,
    pub explanation: String,
}

/// Stores the run's learning-mode explanations.
pub async fn record_feedback(pool: &PgPool, auth: &RunAuth, rows: &[Feedback]) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    for f in rows {
        sqlx::query(
            "INSERT INTO learning_feedback (run_id, repository_id, pr_number, file_path, line, kind, explanation)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(auth.run_id)
        .bind(auth.repository_id)
        .bind(f.pr_number)
        .bind(&f.file_path)
        .bind(f.line)
        .bind(&f.kind)
        .bind(&f.explanation)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// The pull request the run's snapshot recorded, if any.
pub async fn run_pull_request(pool: &PgPool, run: Uuid) -> Result<(Option<i32>, Option<String>), StoreError> {
    let row: Option<(Option<i32>, Option<String>)> =
        sqlx::query_as("SELECT pr_number, pr_url FROM agent_sessions WHERE run_id = $1").bind(run).fetch_optional(pool).await?;
    Ok(row.unwrap_or_default())
}

/// Where the run's status comment lives (the target its first report was owed on) and its
/// locale, if it has one.
pub async fn status_target(db: &mut PgConnection, run: Uuid) -> Result<Option<(Uuid, i32, Locale)>, StoreError> {
    let row: Option<(Uuid, i32, Option<String>)> = sqlx::query_as(
        "SELECT repository_id, target_number, payload->>'locale' FROM github_side_effects
          WHERE run_id = $1 AND kind = 'status_comment' ORDER BY id LIMIT 1",
    )
    .bind(run)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(repo, target, locale)| (repo, target, Locale::parse(locale.as_deref().unwrap_or("ru")))))
}

/// [`owe_status_report`] on a connection of its own.
pub async fn report_status(pool: &PgPool, run: Uuid, correlation_id: &str, state: &StatusState) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    owe_status_report(&mut conn, run, correlation_id, state).await
}

/// Owes a status report of the run (merged into its one status comment by the side-effect
/// executor); a no-op for runs without a status comment. `state` carries only what the report
/// knows.
pub async fn owe_status_report(db: &mut PgConnection, run: Uuid, correlation_id: &str, state: &StatusState) -> Result<bool, StoreError> {
    let Some((repository_id, target, locale)) = status_target(db, run).await? else { return Ok(false) };
    let effect = OwedEffect::status_report(state.clone(), locale);
    let phase = state.phase.map_or("report", |p| p.as_str());
    let key = format!("{run}:status:{phase}:{}", Uuid::new_v4());
    let at =
        crate::ingest::Owed { idempotency_key: &key, correlation_id, run_id: Some(run), repository_id, target_number: i64::from(target) };
    crate::ingest::owe_side_effect(db, at, &effect).await
}

/// How an agent runner's status report was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentReport {
    /// Owed as a new report of the run's status comment.
    Owed,
    /// Merged into the run's report that is still waiting to be carried out (no extra call to
    /// the forge).
    Merged,
    /// The run has no status comment.
    NoComment,
    /// The run has already owed `cap` reports; nothing was stored.
    Exhausted { cap: i64 },
}

/// Owes an agent runner's status report, merged and capped per run: while the run's previous
/// agent report has not been carried out yet the new one is merged into it (so a flood of reports
/// costs the shared bot token one comment edit), and once `cap` reports were owed no more are.
pub async fn report_agent_status(
    pool: &PgPool,
    run: Uuid,
    correlation_id: &str,
    state: &StatusState,
    cap: i64,
) -> Result<AgentReport, StoreError> {
    let mut tx = pool.begin().await?;
    // One report of a run at a time: the count and the merge below see each other's writes.
    sqlx::query("SELECT 1 FROM agent_runs WHERE id = $1 FOR UPDATE").bind(run).execute(&mut *tx).await?;
    let prefix = format!("{run}:status:agent:");
    let waiting: Option<(i64, String, Value)> = sqlx::query_as(
        "SELECT id, kind, payload FROM github_side_effects
          WHERE run_id = $1 AND starts_with(idempotency_key, $2) AND status = 'pending' AND attempts = 0
          ORDER BY id DESC LIMIT 1 FOR UPDATE",
    )
    .bind(run)
    .bind(&prefix)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, kind, payload)) = waiting
        && let Ok(OwedEffect::StatusComment { locale, state: earlier, .. }) = OwedEffect::decode(&kind, &payload)
    {
        let merged = OwedEffect::status_report(earlier.merge(state), locale);
        sqlx::query("UPDATE github_side_effects SET payload = $2 WHERE id = $1").bind(id).bind(merged.to_value()).execute(&mut *tx).await?;
        tx.commit().await?;
        return Ok(AgentReport::Merged);
    }
    let owed: i64 = sqlx::query_scalar("SELECT count(*) FROM github_side_effects WHERE run_id = $1 AND starts_with(idempotency_key, $2)")
        .bind(run)
        .bind(&prefix)
        .fetch_one(&mut *tx)
        .await?;
    if owed >= cap {
        return Ok(AgentReport::Exhausted { cap });
    }
    let Some((repository_id, target, locale)) = status_target(&mut tx, run).await? else { return Ok(AgentReport::NoComment) };
    let key = format!("{prefix}{}", owed + 1);
    let at =
        crate::ingest::Owed { idempotency_key: &key, correlation_id, run_id: Some(run), repository_id, target_number: i64::from(target) };
    crate::ingest::owe_side_effect(&mut tx, at, &OwedEffect::status_report(state.clone(), locale)).await?;
    tx.commit().await?;
    Ok(AgentReport::Owed)
}
