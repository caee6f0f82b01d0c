//! The webhook ingest use-case (product spec §4.2): one transaction per delivery that records
//! the delivery (its id is the idempotency key), binds it to a registered repository, gathers
//! what the pure trigger policy needs, applies the decision — flow events, the pending run,
//! owed GitHub side effects, cleanups, cancelled discussions — and wakes the workers on commit.

pub mod github;

use ck8s_domain::comments::Locale;
use ck8s_domain::effects::OwedEffect;
use ck8s_domain::policy::{
    self, Binding, Candidate, Cleanup, CommentTemplate, Decision, Effect, History, Outcome, PolicyConfig, RunPlan, SenderStanding,
};
use ck8s_domain::project::ProjectRole;
use ck8s_domain::run_spec::{
    AgentRef, Installation, IssueSummary, ProfileHints, ProjectBinding, RUN_SPEC_VERSION, RunSpec, SenderSummary, Trigger,
};
use ck8s_domain::webhook::Event;
use ck8s_store::ingest::{self as q, CleanupScope};
use ck8s_store::{Conn, Pool};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Audit actor of webhook-driven events.
const ACTOR: &str = "github-webhook";

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Duplicate,
    Ignored,
}

impl Status {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Duplicate => "duplicate",
            Status::Ignored => "ignored",
        }
    }
}

/// The answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResult {
    pub correlation_id: String,
    pub run_id: Option<Uuid>,
    pub status: Status,
    pub reason: Option<String>,
}

/// Why a delivery could not be ingested. Nothing is recorded in any of these cases, so GitHub's
/// redelivery can succeed once the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the delivery cannot be recorded")]
    Store(#[from] ck8s_store::StoreError),
}

/// Settings of the ingest beyond the policy.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub policy: PolicyConfig,
    /// `CODEXK8S_LEARNING_MODE_DEFAULT`, used when the project sets no default.
    pub learning_mode_default: bool,
    /// Locale of webhook-time comments (`CODEXK8S_AGENT_DEFAULT_LOCALE`).
    pub locale: Locale,
}

/// The ingest use-case.
pub struct Ingestor {
    pub pool: Pool,
    pub settings: IngestSettings,
}

fn standing(rec: &q::SenderRecord) -> SenderStanding {
    if rec.user_id.is_none() {
        return SenderStanding::Unknown;
    }
    if rec.is_owner {
        return SenderStanding::Owner;
    }
    if rec.is_admin {
        return SenderStanding::PlatformAdmin;
    }
    match rec.role.as_deref().and_then(|r| r.parse::<ProjectRole>().ok()) {
        Some(role) => SenderStanding::Member(role),
        None => SenderStanding::NotMember,
    }
}

/// The audit fields every webhook-driven event carries (spec §4.3), extended per event.
struct Audit {
    base: Value,
}

impl Audit {
    fn of(e: &Event) -> Self {
        Self {
            base: json!({
                "delivery_id": e.delivery_id,
                "event": e.name,
                "action": e.action,
                "sender": e.sender.as_ref().map(|s| s.login.clone()),
                "repository": e.repository.as_ref().map(|r| r.full_name.clone()),
                "label": e.label,
                "issue_number": e.issue.as_ref().map(|i| i.number),
                "pull_request_number": e.pull_request.as_ref().map(|p| p.number),
            }),
        }
    }

    fn with(&self, extra: Value) -> Value {
        let mut v = self.base.clone();
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        v
    }
}

impl Ingestor {
    /// Ingests one delivery whose signature and JSON syntax the gateway already checked.
    #[tracing::instrument(skip_all, fields(delivery_id = %delivery_id, event = %event_name))]
    pub async fn ingest(&self, delivery_id: &str, event_name: &str, body: &[u8]) -> Result<IngestResult, IngestError> {
        let payload: Value = serde_json::from_slice(body).map_err(|e| IngestError::InvalidPayload(format!("body is not JSON: {e}")))?;
        if !payload.is_object() {
            return Err(IngestError::InvalidPayload("body must be a JSON object".into()));
        }
        let event = github::to_event(delivery_id, event_name, &payload);
        let sha = hex::encode(Sha256::digest(body));

        let mut tx = ck8s_store::begin(&self.pool).await?;
        let repo_ext_id = event.repository.as_ref().map(|r| r.id).filter(|id| *id > 0);
        let sender_login = event.sender.as_ref().map(|s| s.login.as_str());
        if let Some(prior) =
            q::claim_delivery(&mut tx, delivery_id, event_name, event.action.as_deref(), repo_ext_id, sender_login, &sha).await?
        {
            q::flow_event(
                &mut tx,
                &prior.correlation_id,
                prior.run_id,
                "system",
                ACTOR,
                "webhook.duplicate",
                &json!({"delivery_id": delivery_id, "event": event_name}),
            )
            .await?;
            ck8s_store::commit(tx).await?;
            return Ok(IngestResult {
                correlation_id: prior.correlation_id,
                run_id: prior.run_id,
                status: Status::Duplicate,
                reason: None,
            });
        }

        // The signature covers the body only: the same signed body under a new delivery id is a
        // replay, answered like the delivery it copies.
        if let Some(id) = repo_ext_id
            && let Some((original, prior)) = q::prior_payload(&mut tx, id, &sha, delivery_id).await?
        {
            q::finish_delivery(&mut tx, delivery_id, None, &prior.correlation_id, "duplicate", Some("replayed_payload"), prior.run_id)
                .await?;
            let details = json!({"delivery_id": delivery_id, "event": event_name, "replay_of": original});
            q::flow_event(&mut tx, &prior.correlation_id, prior.run_id, "system", ACTOR, "webhook.duplicate", &details).await?;
            ck8s_store::commit(tx).await?;
            return Ok(IngestResult {
                correlation_id: prior.correlation_id,
                run_id: prior.run_id,
                status: Status::Duplicate,
                reason: Some("replayed_payload".into()),
            });
        }
        let bound = match repo_ext_id {
            Some(id) => q::find_binding(&mut tx, "github", id).await?,
            None => None,
        };
        let binding = bound.as_ref().map(|b| Binding {
            project_id: b.project_id,
            repository_id: b.repository_id,
            default_ref: b.default_ref.clone(),
            platform: b.project_is_platform,
        });
        let sender = match (&bound, sender_login) {
            (Some(b), Some(login)) if !login.is_empty() => {
                let id = event.sender.as_ref().map_or(0, |s| s.id);
                q::sender_record(&mut tx, login, id, b.project_id).await?
            }
            _ => q::SenderRecord::default(),
        };
        let history = match &bound {
            Some(b) => self.history(&mut tx, b.repository_id, &event).await?,
            None => History::default(),
        };
        let decision = policy::decide(policy::Input {
            event: &event,
            binding: binding.as_ref(),
            sender: standing(&sender),
            history: &history,
            config: &self.settings.policy,
        });

        let result = self.apply(&mut tx, &event, &payload, bound.as_ref(), &sender, &decision).await?;
        q::finish_delivery(
            &mut tx,
            delivery_id,
            bound.as_ref().map(|b| b.repository_id),
            &result.correlation_id,
            result.status.as_str(),
            result.reason.as_deref(),
            result.run_id,
        )
        .await?;
        ck8s_store::commit(tx).await?;
        tracing::info!(status = result.status.as_str(), reason = ?result.reason, run_id = ?result.run_id, "delivery ingested");
        Ok(result)
    }

    async fn history(&self, db: &mut Conn, repository_id: Uuid, e: &Event) -> Result<History, ck8s_store::StoreError> {
        // One delivery of an issue (or pull request) at a time decides from its history.
        let number = e.issue.as_ref().map(|i| i.number).or(e.pull_request.as_ref().map(|p| p.number)).filter(|n| *n > 0);
        if let Some(n) = number {
            q::lock_issue(db, repository_id, n).await?;
        }
        let mut h = History::default();
        if let Some(issue) = e.issue.as_ref().filter(|i| !i.is_pull_request && i.number > 0) {
            h.live_discussion_run = q::live_discussion_run(db, repository_id, issue.number).await?;
            h.candidate = q::candidate(db, repository_id, issue.number).await?.map(|(pr_number, build_ref, namespace)| Candidate {
                pr_number,
                build_ref,
                namespace,
            });
        }
        if let Some(pr) = e.pull_request.as_ref().filter(|p| p.number > 0) {
            h.pr_linked_issues = q::pr_linked_issues(db, repository_id, pr.number).await?;
            h.pr_last_run_stage = q::pr_last_run_kind(db, repository_id, pr.number).await?.map(|k| k.stage);
            if let [issue] = h.pr_linked_issues.as_slice()
                && let Some(last) = q::last_run(db, repository_id, Some(*issue), None).await?
            {
                h.linked_issue_labels = Some(last.issue_labels);
                h.linked_issue_last_stage = last.trigger_kind.map(|k| k.stage);
            }
        }
        Ok(h)
    }

    async fn apply(
        &self,
        db: &mut Conn,
        e: &Event,
        payload: &Value,
        bound: Option<&q::BoundRepository>,
        sender: &q::SenderRecord,
        d: &Decision,
    ) -> Result<IngestResult, IngestError> {
        let audit = Audit::of(e);
        // Cleanups come first: they apply whether or not a run starts.
        if let Some(b) = bound {
            self.apply_cleanups(db, e, b, d, &audit).await?;
        }
        if let Outcome::Ignored(reason) = &d.outcome {
            return self.record_ignored(db, e, bound, d, reason.code(), &audit).await;
        }
        let (Some(plan), Some(b)) = (&d.run, bound) else {
            q::flow_event(db, &e.delivery_id, None, "system", ACTOR, "webhook.received", &audit.base).await?;
            if let Some(b) = bound {
                self.owe_effects(db, &e.delivery_id, None, b.repository_id, &d.effects).await?;
            }
            return Ok(IngestResult { correlation_id: e.delivery_id.clone(), run_id: None, status: Status::Accepted, reason: None });
        };
        let spec = self.run_spec(db, e, payload, b, sender, plan).await?;
        self.start_run(db, b, plan, &spec, d, &audit).await
    }

    async fn apply_cleanups(
        &self,
        db: &mut Conn,
        e: &Event,
        b: &q::BoundRepository,
        d: &Decision,
        audit: &Audit,
    ) -> Result<(), IngestError> {
        for c in &d.cleanups {
            match c {
                Cleanup::CancelDiscussion { issue } => {
                    for (run_id, corr) in q::cancel_discussion_runs(db, b.repository_id, *issue).await? {
                        let details = audit.with(json!({"run_id": run_id, "reason": "discussion_cleanup"}));
                        q::flow_event(db, &corr, Some(run_id), "system", ACTOR, "run.canceled", &details).await?;
                    }
                }
                Cleanup::IssueNamespaces { issue } => {
                    q::request_cleanup(db, b.repository_id, &e.delivery_id, CleanupScope::IssueNamespaces, *issue).await?
                }
                Cleanup::PullRequestNamespaces { pr } => {
                    q::request_cleanup(db, b.repository_id, &e.delivery_id, CleanupScope::PullRequestNamespaces, *pr).await?
                }
            }
        }
        Ok(())
    }

    async fn record_ignored(
        &self,
        db: &mut Conn,
        e: &Event,
        bound: Option<&q::BoundRepository>,
        d: &Decision,
        code: String,
        audit: &Audit,
    ) -> Result<IngestResult, IngestError> {
        let details = audit.with(json!({
            "reason": code,
            "conflicting_labels": d.conflicting_labels,
            "suggested_labels": d.suggested_labels,
        }));
        for extra in &d.audit {
            q::flow_event(db, &e.delivery_id, None, "system", ACTOR, extra, &details).await?;
        }
        q::flow_event(db, &e.delivery_id, None, "system", ACTOR, "webhook.ignored", &details).await?;
        if d.effects.iter().any(|x| matches!(x, Effect::Comment { template: CommentTemplate::TriggerWarning { .. }, .. })) {
            q::runtime_error(db, "webhook.ignored", "warning", &code, &details, Some(&e.delivery_id), bound.map(|b| b.project_id)).await?;
        }
        if let Some(b) = bound {
            self.owe_effects(db, &e.delivery_id, None, b.repository_id, &d.effects).await?;
        }
        Ok(IngestResult { correlation_id: e.delivery_id.clone(), run_id: None, status: Status::Ignored, reason: Some(code) })
    }

    /// The run's spec: the decision's plan, the agent, learning mode and profile hints looked up
    /// in the store, and the summaries of the delivery.
    async fn run_spec(
        &self,
        db: &mut Conn,
        e: &Event,
        payload: &Value,
        b: &q::BoundRepository,
        sender: &q::SenderRecord,
        plan: &RunPlan,
    ) -> Result<RunSpec, IngestError> {
        let agent = match &plan.agent_key {
            Some(key) => match q::agent(db, key, b.project_id).await? {
                Some(a) if a.is_active => Some(a),
                _ => return Err(IngestError::FailedPrecondition(format!("no active agent configured for key {key:?}"))),
            },
            None => None,
        };
        let learning_mode = sender
            .learning_mode_override
            .or_else(|| b.project_settings.get("learning_mode_default").and_then(Value::as_bool))
            .unwrap_or(self.settings.learning_mode_default);
        let last =
            q::last_run(db, b.repository_id, plan.issue_number, if plan.issue_number.is_none() { plan.pr_number } else { None }).await?;
        Ok(RunSpec {
            version: RUN_SPEC_VERSION,
            source: "github".into(),
            delivery_id: e.delivery_id.clone(),
            event_type: e.name.clone(),
            received_at: q::db_now(db).await?,
            action: e.action.clone(),
            correlation_id: plan.correlation_id.clone(),
            repository: github::repository_summary(payload),
            installation: Installation { id: payload.get("installation").and_then(|i| i.get("id")).and_then(Value::as_i64) },
            sender: SenderSummary { id: e.sender.as_ref().map(|s| s.id), login: e.sender.as_ref().map(|s| s.login.clone()) },
            raw_payload: payload.clone(),
            project: ProjectBinding {
                id: b.project_id,
                repository_id: b.repository_id,
                services_yaml: Some(b.services_yaml_path.clone()),
                binding_resolved: true,
            },
            learning_mode,
            discussion_mode: plan.discussion,
            agent: agent.map(|a| AgentRef { id: a.id, key: a.key, name: a.name }),
            issue: github::issue_summary(payload).or_else(|| plan.issue_number.map(|number| IssueSummary { number, ..Default::default() })),
            pull_request: github::pull_request_summary(payload),
            trigger: Trigger { source: plan.source, label: plan.label.clone(), kind: plan.kind },
            profile_hints: last
                .map(|l| ProfileHints { last_run_issue_labels: l.issue_labels, last_run_pull_request_labels: l.pull_request_labels })
                .unwrap_or_default(),
            runtime: plan.runtime.clone(),
        })
    }

    /// Inserts the pending run (a duplicate of a derived correlation id starts nothing), records
    /// its events, owes its effects and wakes the workers on commit.
    async fn start_run(
        &self,
        db: &mut Conn,
        b: &q::BoundRepository,
        plan: &RunPlan,
        spec: &RunSpec,
        d: &Decision,
        audit: &Audit,
    ) -> Result<IngestResult, IngestError> {
        let learning_mode = spec.learning_mode;
        let base = &audit.base;
        let (run_id, inserted) = q::insert_run(
            db,
            &q::NewRun {
                correlation_id: &plan.correlation_id,
                project_id: b.project_id,
                repository_id: b.repository_id,
                agent_id: spec.agent.as_ref().map(|a| a.id),
                spec,
                learning_mode,
                repository_full_name: &spec.repository.full_name,
                issue_number: plan.issue_number,
                pr_number: plan.pr_number,
                trigger_source: plan.source,
                trigger_kind: plan.kind,
                trigger_label: plan.label.as_deref(),
                agent_key: plan.agent_key.as_deref(),
                runtime_mode: plan.runtime.mode,
                namespace: plan.runtime.namespace.as_deref(),
            },
        )
        .await?;
        if !inserted {
            // Another delivery of the same trigger (a derived correlation id) already made the run.
            q::flow_event(db, &plan.correlation_id, Some(run_id), "system", ACTOR, "webhook.duplicate", base).await?;
            return Ok(IngestResult {
                correlation_id: plan.correlation_id.clone(),
                run_id: Some(run_id),
                status: Status::Duplicate,
                reason: None,
            });
        }
        let details = audit.with(json!({
            "run_id": run_id,
            "kind": plan.kind,
            "trigger_label": plan.label,
            "agent_key": plan.agent_key,
            "resolved_stage": d.resolved_stage,
            "learning_mode": learning_mode,
        }));
        for extra in &d.audit {
            q::flow_event(db, &plan.correlation_id, Some(run_id), "system", ACTOR, extra, &details).await?;
        }
        q::flow_event(db, &plan.correlation_id, Some(run_id), "system", ACTOR, "webhook.received", &details).await?;
        q::flow_event(db, &plan.correlation_id, Some(run_id), "system", "control-plane", "run.enqueued", &details).await?;
        self.owe_effects(db, &plan.correlation_id, Some(run_id), b.repository_id, &d.effects).await?;
        if spec.runtime.deploy_only {
            // No agent starts for a deploy: it waits as a deploy task until self-deploy exists.
            q::owe_deploy_task(db, run_id, spec).await?;
            let waiting = json!({"run_id": run_id, "build_ref": spec.runtime.build_ref, "namespace": spec.runtime.namespace,
                                 "reason": "self-deploy is not available yet: the deploy task waits, and no agent is started"});
            q::flow_event(db, &plan.correlation_id, Some(run_id), "system", "control-plane", "run.deploy.waiting", &waiting).await?;
        } else {
            q::notify_run_pending(db, run_id).await?;
        }
        Ok(IngestResult { correlation_id: plan.correlation_id.clone(), run_id: Some(run_id), status: Status::Accepted, reason: None })
    }

    async fn owe_effects(
        &self,
        db: &mut Conn,
        correlation_id: &str,
        run_id: Option<Uuid>,
        repository_id: Uuid,
        effects: &[Effect],
    ) -> Result<(), ck8s_store::StoreError> {
        for (n, effect) in effects.iter().enumerate() {
            let (target_number, owed) = OwedEffect::from_decision(effect, self.settings.locale);
            let key = format!("{correlation_id}:{n}:{}", owed.kind());
            let at = q::Owed { idempotency_key: &key, correlation_id, run_id, repository_id, target_number };
            q::owe_side_effect(db, at, &owed).await?;
        }
        Ok(())
    }
}
