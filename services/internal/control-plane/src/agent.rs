//! The agent runner's callbacks (`codexk8s.controlplane.v1.AgentCallbacks`, product spec §6.2):
//! every call is authorised by the per-run bearer token (stored as a SHA-256 digest, valid only
//! while its run is pending or running) and acts only on that run. Input is checked for shape and
//! size, and nothing that contains the caller's own token is stored.

use ck8s_domain::agent_run::{SESSION_STATUSES, canonical_json, is_agent_event_type};
use ck8s_domain::comments::{Phase, StatusState};
use ck8s_proto::controlplane::v1::agent_callbacks_server::AgentCallbacks;
use ck8s_proto::controlplane::v1::{
    AppendTokenUsageRequest, AppendTokenUsageResponse, GetLatestAgentSessionRequest, GetLatestAgentSessionResponse,
    InsertRunFlowEventRequest, InsertRunFlowEventResponse, RecordLearningFeedbackRequest, RecordLearningFeedbackResponse,
    UpsertAgentSessionRequest, UpsertAgentSessionResponse, UpsertRunStatusCommentRequest, UpsertRunStatusCommentResponse,
};
use ck8s_store::agent::{self as store, RunAuth, SnapshotWrite};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// Largest event payload.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest platform session JSON.
pub const MAX_SESSION_JSON_BYTES: usize = 1024 * 1024;
/// Largest Codex rollout carried in a snapshot.
pub const MAX_CODEX_SESSION_BYTES: usize = 8 * 1024 * 1024;
/// Largest gRPC message the service decodes (the snapshot plus headroom).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
const MAX_ITEMS: usize = 500;
const MAX_TEXT: usize = 64 * 1024;

/// The service.
pub struct AgentApi {
    pub pool: ck8s_store::Pool,
}

/// The caller's run and its raw token (to refuse storing it).
struct Caller {
    run: RunAuth,
    token: String,
}

fn db_error(e: ck8s_store::StoreError) -> Status {
    tracing::error!(error = %ck8s_domain::report::Report(&e), "agent callback failed in the database");
    if e.is_unavailable() {
        Status::unavailable("database unavailable, retry later")
    } else {
        Status::internal("the callback failed; see control-plane logs")
    }
}

/// How long after a cancel the canceled run's token may still store its `cancelled` snapshot:
/// the worker stops the job after marking the run canceled, and the stopped runner saves what
/// its session has so far.
pub const CANCELED_SNAPSHOT_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Which runs a call may act for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allow {
    /// Only a pending or running run.
    Live,
    /// Also a run canceled within the grace (only for a `cancelled` snapshot).
    CanceledSnapshot,
}

impl AgentApi {
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        self.caller_allowing(req, Allow::Live).await
    }

    async fn caller_allowing<T>(&self, req: &Request<T>, allow: Allow) -> Result<Caller, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing run token (authorization: Bearer <CODEXK8S_RUN_TOKEN>)"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| Status::unauthenticated("malformed authorization header: expected `Bearer <run token>`"))?;
        let digest = ck8s_crypto::sha256(token.as_bytes());
        let mut run = store::authorize(&self.pool, &digest).await.map_err(db_error)?;
        if run.is_none() && allow == Allow::CanceledSnapshot {
            run = store::authorize_canceled(&self.pool, &digest, CANCELED_SNAPSHOT_GRACE).await.map_err(db_error)?;
        }
        match run {
            Some(run) => {
                let span = tracing::Span::current();
                span.record("run_id", tracing::field::display(run.run_id));
                span.record("correlation_id", run.correlation_id.as_str());
                Ok(Caller { run, token: token.to_string() })
            }
            None => Err(Status::unauthenticated("run token unknown, expired, or its run has finished")),
        }
    }
}

impl Caller {
    fn actor(&self) -> String {
        format!("agent-runner:{}", self.run.agent_key.as_deref().unwrap_or("agent"))
    }

    /// Refuses any text that carries the caller's token.
    fn clean(&self, what: &str, text: &str) -> Result<(), Status> {
        if text.contains(&self.token) {
            return Err(Status::invalid_argument(format!("{what} contains the run token; redact secrets before reporting")));
        }
        Ok(())
    }
}

fn json_object(what: &str, text: &str, max: usize) -> Result<Value, Status> {
    if text.len() > max {
        return Err(Status::invalid_argument(format!("{what} is {} bytes; the limit is {max}", text.len())));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| Status::invalid_argument(format!("{what} is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Status::invalid_argument(format!("{what} must be a JSON object")));
    }
    Ok(v)
}

fn short(what: &str, v: &Option<String>, max: usize) -> Result<(), Status> {
    match v {
        Some(s) if s.len() > max => Err(Status::invalid_argument(format!("{what} is longer than {max} bytes"))),
        _ => Ok(()),
    }
}

fn small_number(what: &str, v: Option<i64>) -> Result<Option<i32>, Status> {
    v.map(|n| i32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| Status::invalid_argument(format!("{what} must be a positive number"))))
        .transpose()
}

#[tonic::async_trait]
impl AgentCallbacks for AgentApi {
    #[tracing::instrument(skip_all, fields(rpc = "insert_run_flow_event", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn insert_run_flow_event(&self, req: Request<InsertRunFlowEventRequest>) -> Result<Response<InsertRunFlowEventResponse>, Status> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        if !is_agent_event_type(&r.event_type) {
            return Err(Status::invalid_argument(format!(
                "event type {:?} is not an agent event (run.agent.*, run.pr.*, run.codex.*, run.revise.*, run.learning.*, run.review.*, run.toolchain.*, run.self_improve.*)",
                r.event_type.chars().take(100).collect::<String>()
            )));
        }
        let payload = json_object("payload_json", &r.payload_json, MAX_EVENT_BYTES)?;
        c.clean("payload_json", &r.payload_json)?;
        store::agent_event(&self.pool, &c.run, &c.actor(), &r.event_type, &payload).await.map_err(db_error)?;
        Ok(Response::new(InsertRunFlowEventResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "upsert_run_status_comment", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn upsert_run_status_comment(
        &self,
        req: Request<UpsertRunStatusCommentRequest>,
    ) -> Result<Response<UpsertRunStatusCommentResponse>, Status> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        let phase = [Phase::Started, Phase::AuthRequired, Phase::AuthResolved, Phase::Ready]
            .into_iter()
            .find(|p| p.as_str() == r.phase)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "phase {:?} cannot be reported by the agent (started, auth_required, auth_resolved, ready)",
                    r.phase.chars().take(40).collect::<String>()
                ))
            })?;
        let pr_number = small_number("pr_number", r.pr_number)?;
        for (what, v) in [("pr_url", &r.pr_url), ("model", &r.model), ("reasoning_effort", &r.reasoning_effort)] {
            short(what, v, 500)?;
            c.clean(what, v.as_deref().unwrap_or(""))?;
        }
        if r.pr_url.as_deref().is_some_and(|u| !u.starts_with("https://") && !u.starts_with("http://")) {
            return Err(Status::invalid_argument("pr_url must be an http(s) URL"));
        }
        let state = StatusState {
            phase: Some(phase),
            pr_number: pr_number.map(i64::from),
            pr_url: r.pr_url,
            model: r.model,
            reasoning_effort: r.reasoning_effort,
            ..Default::default()
        };
        let owed = store::report_status(&self.pool, c.run.run_id, &c.run.correlation_id, &state).await.map_err(db_error)?;
        Ok(Response::new(UpsertRunStatusCommentResponse { owed }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "upsert_agent_session", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn upsert_agent_session(&self, req: Request<UpsertAgentSessionRequest>) -> Result<Response<UpsertAgentSessionResponse>, Status> {
        let allow = if req.get_ref().status == "cancelled" { Allow::CanceledSnapshot } else { Allow::Live };
        let c = self.caller_allowing(&req, allow).await?;
        let r = req.into_inner();
        if !SESSION_STATUSES.contains(&r.status.as_str()) {
            return Err(Status::invalid_argument(format!("status must be one of {}", SESSION_STATUSES.join(", "))));
        }
        if r.expected_version < 0 {
            return Err(Status::invalid_argument("expected_version must be 0 (insert) or the last version seen"));
        }
        let session_json = json_object("session_json", &r.session_json, MAX_SESSION_JSON_BYTES)?;
        c.clean("session_json", &r.session_json)?;
        let codex = match &r.codex_cli_session_json {
            Some(t) => {
                if t.len() > MAX_CODEX_SESSION_BYTES {
                    return Err(Status::invalid_argument(format!(
                        "codex_cli_session_json is {} bytes; the limit is {MAX_CODEX_SESSION_BYTES}",
                        t.len()
                    )));
                }
                c.clean("codex_cli_session_json", t)?;
                if t.contains("\\u0000") {
                    return Err(Status::invalid_argument("codex_cli_session_json contains NUL characters, which PostgreSQL cannot store"));
                }
                Some(
                    serde_json::from_str::<Value>(t)
                        .map_err(|e| Status::invalid_argument(format!("codex_cli_session_json is not valid JSON: {e}")))?,
                )
            }
            None => None,
        };
        for (what, v) in [
            ("branch_name", &r.branch_name),
            ("pr_url", &r.pr_url),
            ("session_id", &r.session_id),
            ("template_kind", &r.template_kind),
            ("template_source", &r.template_source),
            ("template_locale", &r.template_locale),
            ("model", &r.model),
            ("reasoning_effort", &r.reasoning_effort),
            ("codex_cli_session_path", &r.codex_cli_session_path),
        ] {
            short(what, v, 1000)?;
            c.clean(what, v.as_deref().unwrap_or(""))?;
        }
        let checksum = ck8s_crypto::sha256_hex(
            canonical_json(&json!({"codex_cli_session_json": codex.clone().unwrap_or(Value::Null), "session_json": session_json}))
                .as_bytes(),
        );
        let snapshot = store::Snapshot {
            status: r.status,
            branch_name: r.branch_name,
            pr_number: small_number("pr_number", r.pr_number)?,
            pr_url: r.pr_url,
            session_id: r.session_id,
            template_kind: r.template_kind,
            template_source: r.template_source,
            template_locale: r.template_locale,
            model: r.model,
            reasoning_effort: r.reasoning_effort,
            session_json,
            codex_cli_session_path: r.codex_cli_session_path,
            codex_cli_session_json: codex,
            checksum: checksum.clone(),
        };
        match store::upsert_snapshot(&self.pool, &c.run, r.expected_version, &snapshot).await.map_err(db_error)? {
            SnapshotWrite::Stored { version, changed, .. } => Ok(Response::new(UpsertAgentSessionResponse { version, checksum, changed })),
            SnapshotWrite::Conflict { expected, actual } => Err(Status::aborted(format!(
                "snapshot version conflict: expected {expected}, stored {actual}; read the latest snapshot and retry with its version"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(rpc = "get_latest_agent_session", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn get_latest_agent_session(
        &self,
        req: Request<GetLatestAgentSessionRequest>,
    ) -> Result<Response<GetLatestAgentSessionResponse>, Status> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        if r.branch_name.is_empty() || r.branch_name.len() > 255 {
            return Err(Status::invalid_argument("branch_name must be 1-255 characters"));
        }
        let (Some(repo), Some(agent)) = (&c.run.repository_full_name, &c.run.agent_key) else {
            return Ok(Response::new(GetLatestAgentSessionResponse::default()));
        };
        let found = store::latest_session(&self.pool, repo, &r.branch_name, agent, c.run.run_id).await.map_err(db_error)?;
        Ok(Response::new(match found {
            Some(s) => GetLatestAgentSessionResponse {
                found: true,
                run_id: s.run_id.to_string(),
                pr_number: s.pr_number.map(i64::from),
                pr_url: s.pr_url,
                session_id: s.session_id,
                codex_cli_session_path: s.codex_cli_session_path,
                codex_cli_session_json: s.codex_cli_session_json.map(|v| v.to_string()),
                snapshot_version: s.snapshot_version,
            },
            None => GetLatestAgentSessionResponse::default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "append_token_usage", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn append_token_usage(&self, req: Request<AppendTokenUsageRequest>) -> Result<Response<AppendTokenUsageResponse>, Status> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        if r.turns.is_empty() || r.turns.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!("turns must hold 1-{MAX_ITEMS} entries")));
        }
        let mut rows = Vec::with_capacity(r.turns.len());
        for t in r.turns {
            let counts = [t.prompt_tokens, t.cached_prompt_tokens, t.completion_tokens, t.reasoning_tokens, t.total_tokens];
            if counts.iter().any(|n| *n < 0) {
                return Err(Status::invalid_argument("token counts must not be negative"));
            }
            if t.model.is_empty() || t.model.len() > 200 {
                return Err(Status::invalid_argument("model must be 1-200 characters"));
            }
            rows.push(store::Usage {
                model: t.model,
                prompt_tokens: t.prompt_tokens,
                cached_prompt_tokens: t.cached_prompt_tokens,
                completion_tokens: t.completion_tokens,
                reasoning_tokens: t.reasoning_tokens,
                total_tokens: t.total_tokens,
            });
        }
        match store::append_usage(&self.pool, &c.run, &rows).await.map_err(db_error)? {
            Some(n) => Ok(Response::new(AppendTokenUsageResponse { stored: n as i32 })),
            None => Err(Status::failed_precondition("the run has no session yet; upload a snapshot (UpsertAgentSession) first")),
        }
    }

    #[tracing::instrument(skip_all, fields(rpc = "record_learning_feedback", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn record_learning_feedback(
        &self,
        req: Request<RecordLearningFeedbackRequest>,
    ) -> Result<Response<RecordLearningFeedbackResponse>, Status> {
        let c = self.caller(&req).await?;
        let r = req.into_inner();
        if r.items.is_empty() || r.items.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!("items must hold 1-{MAX_ITEMS} entries")));
        }
        let mut rows = Vec::with_capacity(r.items.len());
        for f in r.items {
            if !matches!(f.kind.as_str(), "inline" | "post_pr") {
                return Err(Status::invalid_argument("kind must be inline or post_pr"));
            }
            if f.explanation.trim().is_empty() || f.explanation.len() > MAX_TEXT {
                return Err(Status::invalid_argument(format!("explanation must be 1-{MAX_TEXT} bytes")));
            }
            if f.line.is_some_and(|l| l < 1) {
                return Err(Status::invalid_argument("line must be 1 or more"));
            }
            short("file_path", &f.file_path, 1000)?;
            c.clean("explanation", &f.explanation)?;
            rows.push(store::Feedback {
                kind: f.kind,
                pr_number: small_number("pr_number", f.pr_number)?,
                file_path: f.file_path,
                line: f.line,
                explanation: f.explanation,
            });
        }
        let n = store::record_feedback(&self.pool, &c.run, &rows).await.map_err(db_error)?;
        Ok(Response::new(RecordLearningFeedbackResponse { stored: n as i32 }))
    }
}
