//! Reporting to control-plane (product spec §6.2) over gRPC with the run's bearer token: flow
//! events, status phases, session snapshots, token usage and learning feedback. Every text sent is
//! redacted of the run's secrets first. Events and phases are best effort (a failure is logged and
//! the run goes on); the snapshot and the resume lookup return their errors.

use ck8s_domain::agent_run::{TurnUsage, redact_all};
use ck8s_proto::auth::SendToken;
use ck8s_proto::controlplane::v1::agent_callbacks_client::AgentCallbacksClient;
use ck8s_proto::controlplane::v1::{
    AppendTokenUsageRequest, GetCredentialsWithdrawnRequest, GetLatestAgentSessionRequest, GetLatestAgentSessionResponse,
    InsertRunFlowEventRequest, LearningFeedback, RecordLearningFeedbackRequest, TokenUsage, UpsertAgentSessionRequest,
    UpsertRunStatusCommentRequest,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

type Client = AgentCallbacksClient<InterceptedService<Channel, SendToken>>;

/// A callback that must succeed did not.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("invalid control-plane address {target:?}; check CODEXK8S_CONTROL_PLANE_GRPC_TARGET")]
    Address {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot reach control-plane at {target}; check CODEXK8S_CONTROL_PLANE_GRPC_TARGET and that control-plane runs")]
    Unreachable {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CODEXK8S_RUN_TOKEN cannot be sent")]
    Token(#[source] ck8s_proto::auth::BadToken),
    #[error(
        "control-plane refused the run token ({0}); the run may have finished or been canceled — the worker issues a new token when it launches a run"
    )]
    Refused(String),
    #[error("control-plane did not accept the start of the run: {0}; check that control-plane is healthy")]
    NotStarted(String),
    #[error("session lookup failed: {0}")]
    Lookup(String),
    #[error("snapshot upload failed: {0}")]
    Snapshot(String),
    #[error(
        "the worker did not withdraw the run's credentials from the cluster within {0:?}, so the agent was not started; check that a worker is running and may delete Secrets in run namespaces"
    )]
    CredentialsNotWithdrawn(Duration),
}

/// The connection to control-plane's agent callbacks.
#[derive(Clone)]
pub struct Callbacks {
    client: Client,
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callbacks")
    }
}

impl Callbacks {
    /// Dials `target` (30 s) with the run token on every call; `secrets` are redacted from all text sent.
    pub async fn connect(target: &str, run_token: &SecretString, secrets: Vec<SecretString>) -> Result<Self, CallbackError> {
        let endpoint = Endpoint::from_shared(target.to_string())
            .map_err(|source| CallbackError::Address { target: target.to_string(), source })?
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(60));
        let channel = endpoint.connect().await.map_err(|source| CallbackError::Unreachable { target: target.to_string(), source })?;
        let auth = SendToken::new(run_token.expose_secret()).map_err(CallbackError::Token)?;
        let mut all = secrets;
        all.push(run_token.clone());
        Ok(Self { client: AgentCallbacksClient::with_interceptor(channel, auth).max_decoding_message_size(16 << 20), secrets: all })
    }

    /// `text` without any of the run's secrets.
    pub fn clean(&self, text: &str) -> String {
        let s: Vec<&str> = self.secrets.iter().map(|s| s.expose_secret()).collect();
        redact_all(text, &s)
    }

    fn clean_json(&self, v: &Value) -> String {
        self.clean(&v.to_string())
    }

    /// Appends the run's first event; unlike later events it must succeed, so a refused token or an
    /// unreachable control-plane stops the run before it touches the repository (fail closed).
    pub async fn started(&self, payload: Value) -> Result<(), CallbackError> {
        let req = InsertRunFlowEventRequest { event_type: "run.agent.started".into(), payload_json: self.clean_json(&payload) };
        match self.client.clone().insert_run_flow_event(req).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == tonic::Code::Unauthenticated => Err(CallbackError::Refused(e.message().to_string())),
            Err(e) => Err(CallbackError::NotStarted(e.message().to_string())),
        }
    }

    /// Appends a flow event (best effort).
    pub async fn event(&self, event_type: &str, payload: Value) {
        let req = InsertRunFlowEventRequest { event_type: event_type.into(), payload_json: self.clean_json(&payload) };
        if let Err(e) = self.client.clone().insert_run_flow_event(req).await {
            tracing::warn!(event_type, code = ?e.code(), error = %e.message(), "cannot report a flow event");
        }
    }

    /// Reports a status-comment phase (best effort).
    pub async fn phase(&self, phase: &str, pr: Option<(i64, String)>, model: Option<&str>, reasoning: Option<&str>) {
        let req = UpsertRunStatusCommentRequest {
            phase: phase.into(),
            pr_number: pr.as_ref().map(|p| p.0),
            pr_url: pr.map(|p| p.1),
            model: model.map(String::from),
            reasoning_effort: reasoning.map(String::from),
        };
        if let Err(e) = self.client.clone().upsert_run_status_comment(req).await {
            tracing::warn!(phase, code = ?e.code(), error = %e.message(), "cannot report the status phase");
        }
    }

    /// Waits until the worker has withdrawn the run's credentials from the cluster (asking every
    /// `every`, at most `within`). In a pod, the agent may be able to create pods in the run's
    /// namespace; it starts only once no Secret of the run is left there to mount.
    pub async fn await_credentials_withdrawn(&self, every: Duration, within: Duration) -> Result<(), CallbackError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.client.clone().get_credentials_withdrawn(GetCredentialsWithdrawnRequest {}).await {
                Ok(r) if r.get_ref().withdrawn => return Ok(()),
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::Unauthenticated => return Err(CallbackError::Refused(e.message().to_string())),
                Err(e) => {
                    tracing::warn!(code = ?e.code(), error = %e.message(), "cannot ask whether the credentials were withdrawn; asking again")
                }
            }
            if started.elapsed() + every > within {
                return Err(CallbackError::CredentialsNotWithdrawn(within));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The newest earlier session of this run's repository and agent on `branch`.
    pub async fn latest_session(&self, branch: &str) -> Result<Option<GetLatestAgentSessionResponse>, CallbackError> {
        let r = self
            .client
            .clone()
            .get_latest_agent_session(GetLatestAgentSessionRequest { branch_name: branch.into() })
            .await
            .map_err(|e| CallbackError::Lookup(e.message().to_string()))?
            .into_inner();
        Ok(r.found.then_some(r))
    }

    /// Uploads the snapshot (text fields redacted); returns the stored version.
    pub async fn save_snapshot(&self, mut req: UpsertAgentSessionRequest) -> Result<i32, CallbackError> {
        req.session_json = self.clean(&req.session_json);
        req.codex_cli_session_json = req.codex_cli_session_json.map(|t| self.clean(&t));
        req.pr_url = req.pr_url.map(|t| self.clean(&t));
        let r = self.client.clone().upsert_agent_session(req).await.map_err(|e| CallbackError::Snapshot(e.message().to_string()))?;
        Ok(r.into_inner().version)
    }

    /// Appends token usage of the run's turns (best effort; needs the snapshot first).
    pub async fn usage(&self, model: &str, turns: &[TurnUsage]) -> usize {
        if turns.is_empty() {
            return 0;
        }
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let turns = turns
            .iter()
            .map(|t| TokenUsage {
                model: model.into(),
                prompt_tokens: as_i64(t.input_tokens),
                cached_prompt_tokens: as_i64(t.cached_input_tokens),
                completion_tokens: as_i64(t.output_tokens),
                reasoning_tokens: as_i64(t.reasoning_output_tokens),
                total_tokens: as_i64(t.total()),
            })
            .collect();
        match self.client.clone().append_token_usage(AppendTokenUsageRequest { turns }).await {
            Ok(r) => r.into_inner().stored as usize,
            Err(e) => {
                tracing::warn!(code = ?e.code(), error = %e.message(), "cannot report token usage");
                0
            }
        }
    }

    /// Stores learning-mode explanations (best effort).
    pub async fn feedback(&self, items: Vec<LearningFeedback>) {
        if items.is_empty() {
            return;
        }
        let items = items.into_iter().map(|f| LearningFeedback { explanation: self.clean(&f.explanation), ..f }).collect();
        if let Err(e) = self.client.clone().record_learning_feedback(RecordLearningFeedbackRequest { items }).await {
            tracing::warn!(code = ?e.code(), error = %e.message(), "cannot store learning feedback");
        }
    }
}
