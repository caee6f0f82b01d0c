//! The agent runner's callbacks (`codexk8s.controlplane.v1.AgentCallbacks`, product spec §6.2):
//! every call is authorised by the per-run bearer token (stored as a SHA-256 digest, valid only
//! while its run is pending or running) and acts only on that run. Input is checked for shape and
//! size, and nothing that contains the caller's own token is stored. What a run may name is its
//! own: a pull request only once the forge confirms it is the run's (its URL is then the forge's),
//! a session only of the run's own branch; status reports are merged and capped per run.

use ck8s_domain::agent_run::{
    RunPullFacts, SESSION_STATUSES, canonical_json, check_run_pull, is_agent_event_type, is_plain_name, target_branch,
};
use ck8s_domain::comments::{Phase, StatusState};
use ck8s_domain::forge::{PullRequest, RepoRef};
use ck8s_domain::stage::{Stage, TriggerKind};
use ck8s_effects::Providers;
use ck8s_proto::controlplane::v1::agent_callbacks_server::AgentCallbacks;
use ck8s_proto::controlplane::v1::{
    AppendTokenUsageRequest, AppendTokenUsageResponse, GetCredentialsWithdrawnRequest, GetCredentialsWithdrawnResponse,
    GetLatestAgentSessionRequest, GetLatestAgentSessionResponse, InsertRunFlowEventRequest, InsertRunFlowEventResponse,
    RecordLearningFeedbackRequest, RecordLearningFeedbackResponse, UpsertAgentSessionRequest, UpsertAgentSessionResponse,
    UpsertRunStatusCommentRequest, UpsertRunStatusCommentResponse,
};
use ck8s_store::agent::{self as store, RunAuth, SnapshotWrite};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};
use uuid::Uuid;

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

pub use ck8s_domain::agent_run::MAX_STATUS_REPORTS;
/// Most confirmed pull requests remembered (then the memory starts over).
const MAX_CONFIRMED: usize = 10_000;

/// The service.
pub struct AgentApi {
    pool: ck8s_store::Pool,
    forge: Arc<dyn Providers>,
    bot_login: String,
    /// Pull requests the forge confirmed as a run's, with their forge URL.
    confirmed: Mutex<HashMap<(Uuid, i64), String>>,
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
    /// The service on `pool`, asking the forge through `forge` whether a pull request is a run's
    /// (the bot, `bot_login`, opens every pull request of a run).
    pub fn new(pool: ck8s_store::Pool, forge: Arc<dyn Providers>, bot_login: String) -> Self {
        Self { pool, forge, bot_login, confirmed: Mutex::new(HashMap::new()) }
    }

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

fn forge_error(what: &str, e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "{what}: the forge did not answer");
    Status::unavailable(format!("{what}: the forge could not be asked; retry later"))
}

impl AgentApi {
    /// The forge of the caller's repository and the repository itself.
    async fn forge_of(&self, c: &Caller) -> Result<(Arc<dyn ck8s_domain::forge::RepositoryProvider>, RepoRef), Status> {
        let (Some(id), Some(full)) = (c.run.repository_id, c.run.repository_full_name.as_deref()) else {
            return Err(Status::failed_precondition("the run has no repository"));
        };
        let row = ck8s_store::effects::repository(&self.pool, id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Status::failed_precondition("the run's repository is no longer registered"))?;
        let provider = self.forge.for_repository(&row).map_err(|e| {
            tracing::error!(error = %e, "no forge client for the run's repository");
            Status::failed_precondition("the run's repository cannot be reached with its token; see control-plane logs")
        })?;
        let repo = RepoRef::parse(full).ok_or_else(|| Status::failed_precondition("the run's repository name is malformed"))?;
        Ok((provider, repo))
    }

    /// The branch the run works on, as the runner derives it (`None` for ai-repair, which works on
    /// the base branch).
    fn run_branch(c: &Caller) -> Option<String> {
        let kind = c.run.trigger_kind.as_deref().and_then(|k| TriggerKind::parse(k).ok())?;
        (kind.stage != Stage::AiRepair).then(|| target_branch(None, kind, "", c.run.issue_number.map(i64::from), &c.run.run_id.to_string()))
    }

    /// Confirms with the forge that pull request `n` is the caller run's; returns its URL there.
    async fn confirm_pull(&self, c: &Caller, n: i32) -> Result<String, Status> {
        let key = (c.run.run_id, i64::from(n));
        if let Some(url) = self.confirmed.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(url.clone());
        }
        let (provider, repo) = self.forge_of(c).await?;
        let pr: PullRequest = match provider.pull(&repo, i64::from(n)).await {
            Ok(pr) => pr,
            Err(ck8s_domain::forge::ProviderError::NotFound(_)) => {
                return Err(Status::permission_denied(format!("pull request #{n} does not exist in the run's repository")));
            }
            Err(e) => return Err(forge_error("confirming the pull request", e)),
        };
        let branch = Self::run_branch(c).unwrap_or_default();
        let facts = RunPullFacts {
            repository: &repo.full_name(),
            bot_login: &self.bot_login,
            branch: &branch,
            trigger_pr: c.run.pr_number.map(i64::from),
        };
        check_run_pull(&pr, &facts).map_err(|why| {
            tracing::warn!(pr = n, %why, "a runner named a pull request that is not its run's");
            Status::permission_denied(format!("pull request #{n} is not this run's: {why}"))
        })?;
        let mut cache = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CONFIRMED {
            cache.clear();
        }
        cache.insert(key, pr.html_url.clone());
        Ok(pr.html_url)
    }

    /// Whether the caller run may read or write sessions of `branch`: its own branch, the head of
    /// the pull request it was started for, or (ai-repair) its repository's default branch.
    async fn own_branch(&self, c: &Caller, branch: &str) -> Result<(), Status> {
        if Self::run_branch(c).as_deref() == Some(branch) {
            return Ok(());
        }
        let refuse =
            || Status::permission_denied(format!("branch {:?} is not this run's branch", branch.chars().take(100).collect::<String>()));
        let ai_repair = c.run.trigger_kind.as_deref().and_then(|k| TriggerKind::parse(k).ok()).is_some_and(|k| k.stage == Stage::AiRepair);
        if !ai_repair && c.run.pr_number.is_none() {
            return Err(refuse());
        }
        let (provider, repo) = self.forge_of(c).await?;
        let head = if ai_repair {
            provider.repository(&repo).await.map_err(|e| forge_error("reading the repository", e))?.default_branch
        } else {
            let n = i64::from(c.run.pr_number.unwrap_or_default());
            let pr = provider.pull(&repo, n).await.map_err(|e| forge_error("reading the run's pull request", e))?;
            if !pr.head_repo.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(&repo.full_name())) {
                return Err(refuse());
            }
            pr.head_ref
        };
        if head == branch { Ok(()) } else { Err(refuse()) }
    }
}

fn plain(what: &str, v: &Option<String>) -> Result<(), Status> {
    match v {
        Some(s) if !is_plain_name(s) => Err(Status::invalid_argument(format!(
            "{what} must be a plain name (letters, digits, `.`, `_`, `-`, `:`, `/`; 1-100 characters)"
        ))),
        _ => Ok(()),
    }
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
        plain("model", &r.model)?;
        plain("reasoning_effort", &r.reasoning_effort)?;
        // The link shown is the forge's, never the runner's.
        let pr_url = match pr_number {
            Some(n) => Some(self.confirm_pull(&c, n).await?),
            None if r.pr_url.is_some() => return Err(Status::invalid_argument("pr_url needs pr_number (the link shown is the forge's)")),
            None => None,
        };
        let state = StatusState {
            phase: Some(phase),
            pr_number: pr_number.map(i64::from),
            pr_url,
            model: r.model,
            reasoning_effort: r.reasoning_effort,
            ..Default::default()
        };
        let owed = match store::report_agent_status(&self.pool, c.run.run_id, &c.run.correlation_id, &state, MAX_STATUS_REPORTS)
            .await
            .map_err(db_error)?
        {
            store::AgentReport::Owed | store::AgentReport::Merged => true,
            store::AgentReport::NoComment => false,
            store::AgentReport::Exhausted { cap } => {
                return Err(Status::resource_exhausted(format!(
                    "this run has owed {cap} status reports, the most a run may; report less often"
                )));
            }
        };
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
        if let Some(branch) = &r.branch_name {
            self.own_branch(&c, branch).await?;
        }
        let pr_number = small_number("pr_number", r.pr_number)?;
        let pr_url = match pr_number {
            Some(n) => Some(self.confirm_pull(&c, n).await?),
            None => None,
        };
        let checksum = ck8s_crypto::sha256_hex(
            canonical_json(&json!({"codex_cli_session_json": codex.clone().unwrap_or(Value::Null), "session_json": session_json}))
                .as_bytes(),
        );
        let snapshot = store::Snapshot {
            status: r.status,
            branch_name: r.branch_name,
            pr_number,
            pr_url,
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
        self.own_branch(&c, &r.branch_name).await?;
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

    #[tracing::instrument(skip_all, fields(rpc = "get_credentials_withdrawn", run_id = tracing::field::Empty, correlation_id = tracing::field::Empty))]
    async fn get_credentials_withdrawn(
        &self,
        req: Request<GetCredentialsWithdrawnRequest>,
    ) -> Result<Response<GetCredentialsWithdrawnResponse>, Status> {
        let c = self.caller(&req).await?;
        Ok(Response::new(GetCredentialsWithdrawnResponse { withdrawn: c.run.credentials_withdrawn }))
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
            let pr_number = small_number("pr_number", f.pr_number)?;
            if let Some(n) = pr_number {
                self.confirm_pull(&c, n).await?;
            }
            rows.push(store::Feedback { kind: f.kind, pr_number, file_path: f.file_path, line: f.line, explanation: f.explanation });
        }
        let n = store::record_feedback(&self.pool, &c.run, &rows).await.map_err(db_error)?;
        Ok(Response::new(RecordLearningFeedbackResponse { stored: n as i32 }))
    }
}
