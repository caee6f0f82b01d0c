//! The webhook ingest use-case (product spec §4.2). Deliveries that arrive together share one
//! transaction (`batch`); for each, the use-case locks its delivery id, body and issue, reads in
//! one statement whether it was recorded before, its repository binding, its sender's standing
//! and its issue's history, asks the pure trigger policy, and records the decision — the delivery
//! (its id is the idempotency key), flow events, the pending run, owed GitHub side effects,
//! cleanups, cancelled discussions — in two more statements for the whole batch, waking the
//! workers on commit.

pub mod batch;
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
use ck8s_domain::runtime::BoxFuture;
use ck8s_domain::webhook::Event;
use ck8s_store::ingest::{self as q, CleanupScope};
use ck8s_store::{Pool, StoreError};
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use batch::BatchSettings;

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
    #[error("the ingest is shutting down; retry the delivery")]
    Closed,
    #[error("the database is unavailable; retry the delivery later")]
    Unavailable,
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

/// The ingest use-case: queues each delivery for the next batch and answers with its outcome.
pub struct Ingestor {
    queue: mpsc::Sender<batch::Job>,
}

/// What a batch needs: the database, the settings, and the batch-size histogram when exported.
pub(crate) struct Core {
    pool: Pool,
    settings: IngestSettings,
    batch_sizes: Option<Histogram>,
}

/// Buckets of `codexk8s_ingest_batch_size`.
pub const BATCH_SIZE_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

impl Ingestor {
    /// Starts the ingest with default batching.
    pub fn start(pool: Pool, settings: IngestSettings) -> Self {
        Self::with_batching(pool, settings, BatchSettings::default(), None)
    }

    /// Starts the ingest; `batch_sizes` observes the size of every batch.
    pub fn with_batching(pool: Pool, settings: IngestSettings, batching: BatchSettings, batch_sizes: Option<Histogram>) -> Self {
        Self { queue: batch::start(Arc::new(Core { pool, settings, batch_sizes }), batching) }
    }

    /// Ingests one delivery whose signature and JSON syntax the gateway already checked.
    #[tracing::instrument(skip_all, fields(delivery_id = %delivery_id, event = %event_name))]
    pub async fn ingest(&self, delivery_id: &str, event_name: &str, body: &[u8]) -> Result<IngestResult, IngestError> {
        let delivery = Delivery::parse(delivery_id, event_name, body)?;
        let (reply, outcome) = oneshot::channel();
        self.queue.send(batch::Job { delivery: Box::new(delivery), reply }).await.map_err(|_| IngestError::Closed)?;
        let result = outcome.await.map_err(|_| IngestError::Closed)??;
        tracing::info!(status = result.status.as_str(), reason = ?result.reason, run_id = ?result.run_id, "delivery ingested");
        Ok(result)
    }
}

/// One parsed delivery.
pub(crate) struct Delivery {
    id: String,
    event_name: String,
    payload: Value,
    event: Event,
    sha: String,
}

impl Delivery {
    fn parse(delivery_id: &str, event_name: &str, body: &[u8]) -> Result<Self, IngestError> {
        let payload: Value = serde_json::from_slice(body).map_err(|e| IngestError::InvalidPayload(format!("body is not JSON: {e}")))?;
        if !payload.is_object() {
            return Err(IngestError::InvalidPayload("body must be a JSON object".into()));
        }
        let event = github::to_event(delivery_id, event_name, &payload);
        let sha = hex::encode(Sha256::digest(body));
        Ok(Self { id: delivery_id.to_string(), event_name: event_name.to_string(), payload, event, sha })
    }

    fn repository_external_id(&self) -> Option<i64> {
        self.event.repository.as_ref().map(|r| r.id).filter(|id| *id > 0)
    }

    fn sender_login(&self) -> Option<&str> {
        self.event.sender.as_ref().map(|s| s.login.as_str())
    }

    /// The issue or pull request the delivery is about.
    fn number(&self) -> Option<i64> {
        let e = &self.event;
        e.issue.as_ref().map(|i| i.number).or(e.pull_request.as_ref().map(|p| p.number)).filter(|n| *n > 0)
    }

    /// The advisory locks the delivery's decision holds: its id (a concurrent copy waits), its
    /// body in its repository (a concurrent replay waits) and its issue or pull request (the
    /// deliveries of one issue decide one at a time). Two deliveries sharing one never share a
    /// batch.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys = vec![q::delivery_key(&self.id)];
        if let Some(repo) = self.repository_external_id() {
            keys.push(q::payload_key(repo, &self.sha));
            if let Some(n) = self.number() {
                keys.push(q::issue_key(repo, n));
            }
        }
        keys
    }

    fn query(&self) -> q::FactsQuery<'_> {
        let e = &self.event;
        q::FactsQuery {
            delivery_id: &self.id,
            repository_external_id: self.repository_external_id(),
            payload_sha256: &self.sha,
            sender_login: self.sender_login(),
            sender_github_id: e.sender.as_ref().map_or(0, |s| s.id),
            issue_number: e.issue.as_ref().map(|i| i.number).filter(|n| *n > 0),
            issue_is_pull_request: e.issue.as_ref().is_some_and(|i| i.is_pull_request),
            pr_number: e.pull_request.as_ref().map(|p| p.number).filter(|n| *n > 0),
        }
    }

    /// How the delivery ended, as recorded.
    fn record(&self, repository_id: Option<Uuid>, r: &IngestResult) -> q::DeliveryRecord {
        q::DeliveryRecord {
            delivery_id: self.id.clone(),
            event: self.event_name.clone(),
            action: self.event.action.clone(),
            repository_external_id: self.repository_external_id(),
            repository_id,
            sender_login: self.sender_login().map(String::from),
            correlation_id: r.correlation_id.clone(),
            outcome: r.status.as_str(),
            reason: r.reason.clone(),
            run_id: r.run_id,
            payload_sha256: self.sha.clone(),
        }
    }
}

/// A delivery between its decision and its record.
enum Step {
    /// Its id was recorded before.
    Duplicate(q::PriorDelivery),
    /// Its body was recorded before under another id.
    Replay(String, q::PriorDelivery),
    /// It cannot be ingested now; nothing is recorded.
    Failed(IngestError),
    Decided(Box<Decided>),
}

struct Decided {
    bound: Option<q::BoundRepository>,
    sender: q::SenderRecord,
    decision: Decision,
    /// The run's spec when the decision starts one.
    spec: Option<RunSpec>,
    audit: Audit,
}

fn flow(correlation_id: &str, run_id: Option<Uuid>, actor_id: &'static str, event_type: &str, payload: Value) -> q::NewFlowEvent {
    q::NewFlowEvent {
        correlation_id: correlation_id.to_string(),
        run_id,
        actor_type: "system",
        actor_id,
        event_type: event_type.to_string(),
        payload,
    }
}

impl Core {
    /// Ingests a batch and answers every job.
    async fn run(&self, jobs: Vec<batch::Job>) {
        if let Some(h) = &self.batch_sizes {
            h.observe(jobs.len() as f64);
        }
        let (deliveries, replies): (Vec<Delivery>, Vec<_>) = jobs.into_iter().map(|j| (*j.delivery, j.reply)).unzip();
        let results = self.settle(&deliveries).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone (its request timed out); the outcome is recorded anyway.
            let _ = reply.send(result);
        }
    }

    /// The outcome of every delivery. A batch the database refuses as a whole is split in halves
    /// and each half tried again, down to the one delivery that cannot be recorded, so it fails
    /// alone and its neighbours still share transactions. An unreachable database fails them all
    /// at once.
    fn settle<'a>(&'a self, deliveries: &'a [Delivery]) -> BoxFuture<'a, Vec<Result<IngestResult, IngestError>>> {
        Box::pin(async move {
            match self.ingest_batch(deliveries).await {
                Ok(results) => results,
                Err(e) if deliveries.len() == 1 => vec![Err(IngestError::Store(e))],
                Err(e) if e.is_unavailable() => {
                    tracing::error!(error = %ck8s_domain::report::Report(&e), deliveries = deliveries.len(), "the database is unavailable");
                    deliveries.iter().map(|_| Err(IngestError::Unavailable)).collect()
                }
                Err(e) => {
                    tracing::warn!(error = %ck8s_domain::report::Report(&e), deliveries = deliveries.len(), "a batch failed; its halves are tried apart");
                    let (a, b) = deliveries.split_at(deliveries.len() / 2);
                    let mut results = self.settle(a).await;
                    results.extend(self.settle(b).await);
                    results
                }
            }
        })
    }

    /// One transaction for the whole batch: locks, one read, the decisions, two writes, commit.
    async fn ingest_batch(&self, deliveries: &[Delivery]) -> Result<Vec<Result<IngestResult, IngestError>>, StoreError> {
        let mut tx = ck8s_store::begin(&self.pool).await?;
        let keys: Vec<String> = deliveries.iter().flat_map(Delivery::keys).collect();
        q::lock(&mut tx, &keys).await?;
        let queries: Vec<q::FactsQuery<'_>> = deliveries.iter().map(Delivery::query).collect();
        let facts = q::facts(&mut tx, &queries).await?;
        let steps: Vec<Step> = deliveries.iter().zip(&facts).map(|(d, f)| self.decide(d, f)).collect();

        let mut cancel = Vec::new();
        let mut runs = Vec::new();
        for step in &steps {
            let Step::Decided(x) = step else { continue };
            let Some(b) = &x.bound else { continue };
            for c in &x.decision.cleanups {
                if let Cleanup::CancelDiscussion { issue } = c {
                    cancel.push((b.repository_id, *issue));
                }
            }
            if let (Some(plan), Some(spec)) = (&x.decision.run, &x.spec) {
                runs.push(new_run(b, plan, spec));
            }
        }
        let started = q::start_runs(&mut tx, &cancel, &runs).await?;
        drop(runs);

        let mut writes = q::BatchWrites::default();
        let results = deliveries.iter().zip(steps).map(|(d, step)| self.record(d, step, &started, &mut writes)).collect();
        q::record(&mut tx, &writes).await?;
        ck8s_store::commit(tx).await?;
        Ok(results)
    }

    /// The decision of one delivery from its facts (pure but for the clock the facts carry).
    fn decide(&self, d: &Delivery, f: &q::Facts) -> Step {
        if let Some(prior) = &f.prior {
            return Step::Duplicate(prior.clone());
        }
        // The signature covers the body only: the same signed body under a new delivery id is a
        // replay, answered like the delivery it copies.
        if let Some((original, prior)) = &f.replay_of {
            return Step::Replay(original.clone(), prior.clone());
        }
        let e = &d.event;
        let binding = f.binding.as_ref().map(|b| Binding {
            project_id: b.project_id,
            repository_id: b.repository_id,
            default_ref: b.default_ref.clone(),
            platform: b.project_is_platform,
        });
        // The read gives a sender and a history only for a bound repository and a named sender.
        let sender = f.sender.clone();
        let history = history(f);
        let decision = policy::decide(policy::Input {
            event: e,
            binding: binding.as_ref(),
            sender: standing(&sender),
            history: &history,
            config: &self.settings.policy,
        });
        let spec = match (&decision.run, &f.binding) {
            (Some(plan), Some(b)) if !matches!(decision.outcome, Outcome::Ignored(_)) => match self.run_spec(d, f, b, &sender, plan) {
                Ok(spec) => Some(spec),
                Err(err) => return Step::Failed(err),
            },
            _ => None,
        };
        Step::Decided(Box::new(Decided { bound: f.binding.clone(), sender, decision, spec, audit: Audit::of(e) }))
    }

    /// The run's spec: the decision's plan, the agent, learning mode and profile hints from the
    /// facts, and the summaries of the delivery.
    fn run_spec(
        &self,
        d: &Delivery,
        f: &q::Facts,
        b: &q::BoundRepository,
        sender: &q::SenderRecord,
        plan: &RunPlan,
    ) -> Result<RunSpec, IngestError> {
        let (e, payload) = (&d.event, &d.payload);
        let agent = match &plan.agent_key {
            Some(key) => match f.agent(key) {
                Some(a) if a.is_active => Some(a),
                _ => return Err(IngestError::FailedPrecondition(format!("no active agent configured for key {key:?}"))),
            },
            None => None,
        };
        let learning_mode = sender
            .learning_mode_override
            .or_else(|| b.project_settings.get("learning_mode_default").and_then(Value::as_bool))
            .unwrap_or(self.settings.learning_mode_default);
        // The latest run of the plan's issue (or, without one, of its pull request).
        let event_issue = e.issue.as_ref().map(|i| i.number);
        let last = match (plan.issue_number, plan.pr_number) {
            (Some(n), _) if Some(n) == event_issue => f.issue_last_run.as_ref(),
            (Some(n), _) if f.pr_linked_issues == [n] => f.linked_issue_last_run.as_ref(),
            (None, Some(_)) => f.pr_last_run.as_ref(),
            _ => None,
        };
        Ok(RunSpec {
            version: RUN_SPEC_VERSION,
            source: "github".into(),
            delivery_id: e.delivery_id.clone(),
            event_type: e.name.clone(),
            received_at: f.now,
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
            agent: agent.map(|a| AgentRef { id: a.id, key: a.key.clone(), name: a.name.clone() }),
            issue: github::issue_summary(payload).or_else(|| plan.issue_number.map(|number| IssueSummary { number, ..Default::default() })),
            pull_request: github::pull_request_summary(payload),
            trigger: Trigger { source: plan.source, label: plan.label.clone(), kind: plan.kind },
            profile_hints: last
                .map(|l| ProfileHints {
                    last_run_issue_labels: l.issue_labels.clone(),
                    last_run_pull_request_labels: l.pull_request_labels.clone(),
                })
                .unwrap_or_default(),
            runtime: plan.runtime.clone(),
        })
    }

    /// Adds what one delivery records to the batch's writes; answers with its outcome.
    fn record(&self, d: &Delivery, step: Step, started: &q::StartedRuns, w: &mut q::BatchWrites) -> Result<IngestResult, IngestError> {
        match step {
            Step::Failed(err) => Err(err),
            Step::Duplicate(prior) => {
                let duplicate = json!({"delivery_id": d.id, "event": d.event_name});
                w.flow_events.push(flow(&prior.correlation_id, prior.run_id, ACTOR, "webhook.duplicate", duplicate));
                Ok(IngestResult { correlation_id: prior.correlation_id, run_id: prior.run_id, status: Status::Duplicate, reason: None })
            }
            Step::Replay(original, prior) => {
                let details = json!({"delivery_id": d.id, "event": d.event_name, "replay_of": original});
                w.flow_events.push(flow(&prior.correlation_id, prior.run_id, ACTOR, "webhook.duplicate", details));
                let result = IngestResult {
                    correlation_id: prior.correlation_id,
                    run_id: prior.run_id,
                    status: Status::Duplicate,
                    reason: Some("replayed_payload".into()),
                };
                w.deliveries.push(d.record(None, &result));
                Ok(result)
            }
            Step::Decided(x) => {
                let result = self.apply(d, &x, started, w)?;
                if let (true, Some(user)) = (x.sender.bind_github_id, x.sender.user_id) {
                    w.github_ids.push((user, d.event.sender.as_ref().map_or(0, |s| s.id)));
                }
                w.deliveries.push(d.record(x.bound.as_ref().map(|b| b.repository_id), &result));
                Ok(result)
            }
        }
    }

    fn apply(&self, d: &Delivery, x: &Decided, started: &q::StartedRuns, w: &mut q::BatchWrites) -> Result<IngestResult, IngestError> {
        let (e, dec, audit) = (&d.event, &x.decision, &x.audit);
        // Cleanups come first: they apply whether or not a run starts.
        if let Some(b) = &x.bound {
            for c in &dec.cleanups {
                let (scope, number) = match c {
                    Cleanup::CancelDiscussion { issue } => {
                        for run in started.canceled_of(b.repository_id, *issue) {
                            let details = audit.with(json!({"run_id": run.run_id, "reason": "discussion_cleanup"}));
                            w.flow_events.push(flow(&run.correlation_id, Some(run.run_id), ACTOR, "run.canceled", details));
                        }
                        continue;
                    }
                    Cleanup::IssueNamespaces { issue } => (CleanupScope::IssueNamespaces, *issue),
                    Cleanup::PullRequestNamespaces { pr } => (CleanupScope::PullRequestNamespaces, *pr),
                };
                w.cleanups.push(q::NewCleanup { repository_id: b.repository_id, correlation_id: e.delivery_id.clone(), scope, number });
            }
        }
        if let Outcome::Ignored(reason) = &dec.outcome {
            return Ok(self.record_ignored(e, x, reason.code(), w));
        }
        let (Some(plan), Some(b), Some(spec)) = (&dec.run, &x.bound, &x.spec) else {
            w.flow_events.push(flow(&e.delivery_id, None, ACTOR, "webhook.received", audit.base.clone()));
            if let Some(b) = &x.bound {
                self.owe_effects(&e.delivery_id, None, b.repository_id, &dec.effects, w);
            }
            return Ok(IngestResult { correlation_id: e.delivery_id.clone(), run_id: None, status: Status::Accepted, reason: None });
        };
        let (run_id, inserted) = started.require(&plan.correlation_id)?;
        let corr = &plan.correlation_id;
        if !inserted {
            // Another delivery of the same trigger (a derived correlation id) already made the run.
            w.flow_events.push(flow(corr, Some(run_id), ACTOR, "webhook.duplicate", audit.base.clone()));
            return Ok(IngestResult { correlation_id: corr.clone(), run_id: Some(run_id), status: Status::Duplicate, reason: None });
        }
        let details = audit.with(json!({
            "run_id": run_id,
            "kind": plan.kind,
            "trigger_label": plan.label,
            "agent_key": plan.agent_key,
            "resolved_stage": dec.resolved_stage,
            "learning_mode": spec.learning_mode,
        }));
        for extra in &dec.audit {
            w.flow_events.push(flow(corr, Some(run_id), ACTOR, extra, details.clone()));
        }
        w.flow_events.push(flow(corr, Some(run_id), ACTOR, "webhook.received", details.clone()));
        w.flow_events.push(flow(corr, Some(run_id), "control-plane", "run.enqueued", details));
        self.owe_effects(corr, Some(run_id), b.repository_id, &dec.effects, w);
        if spec.runtime.deploy_only {
            // No agent starts for a deploy: it waits as a deploy task until self-deploy exists.
            w.deploy_tasks.push(q::NewDeployTask {
                run_id,
                runtime_mode: spec.runtime.mode,
                namespace: spec.runtime.namespace.clone(),
                target_env: spec.runtime.target_env.clone().unwrap_or_else(|| "production".into()),
                repository_full_name: spec.repository.full_name.clone(),
                build_ref: spec.runtime.build_ref.clone().unwrap_or_default(),
            });
            let waiting = json!({"run_id": run_id, "build_ref": spec.runtime.build_ref, "namespace": spec.runtime.namespace,
                                 "reason": "self-deploy is not available yet: the deploy task waits, and no agent is started"});
            w.flow_events.push(flow(corr, Some(run_id), "control-plane", "run.deploy.waiting", waiting));
        } else {
            w.notify_runs.push(run_id);
        }
        Ok(IngestResult { correlation_id: corr.clone(), run_id: Some(run_id), status: Status::Accepted, reason: None })
    }

    fn record_ignored(&self, e: &Event, x: &Decided, code: String, w: &mut q::BatchWrites) -> IngestResult {
        let d = &x.decision;
        let details = x.audit.with(json!({
            "reason": code,
            "conflicting_labels": d.conflicting_labels,
            "suggested_labels": d.suggested_labels,
        }));
        for extra in &d.audit {
            w.flow_events.push(flow(&e.delivery_id, None, ACTOR, extra, details.clone()));
        }
        w.flow_events.push(flow(&e.delivery_id, None, ACTOR, "webhook.ignored", details.clone()));
        if d.effects.iter().any(|x| matches!(x, Effect::Comment { template: CommentTemplate::TriggerWarning { .. }, .. })) {
            w.runtime_errors.push(q::NewRuntimeError {
                source: "webhook.ignored",
                level: "warning",
                message: code.clone(),
                details,
                correlation_id: Some(e.delivery_id.clone()),
                project_id: x.bound.as_ref().map(|b| b.project_id),
            });
        }
        if let Some(b) = &x.bound {
            self.owe_effects(&e.delivery_id, None, b.repository_id, &d.effects, w);
        }
        IngestResult { correlation_id: e.delivery_id.clone(), run_id: None, status: Status::Ignored, reason: Some(code) }
    }

    fn owe_effects(&self, correlation_id: &str, run_id: Option<Uuid>, repository_id: Uuid, effects: &[Effect], w: &mut q::BatchWrites) {
        for (n, effect) in effects.iter().enumerate() {
            let (target_number, owed) = OwedEffect::from_decision(effect, self.settings.locale);
            w.side_effects.push(q::NewSideEffect {
                idempotency_key: format!("{correlation_id}:{n}:{}", owed.kind()),
                correlation_id: correlation_id.to_string(),
                run_id,
                repository_id,
                target_number,
                effect: owed,
            });
        }
    }
}

/// The history the policy needs, from the facts of a bound delivery.
fn history(f: &q::Facts) -> History {
    let linked = f.linked_issue_last_run.as_ref().filter(|_| f.pr_linked_issues.len() == 1);
    History {
        live_discussion_run: f.live_discussion_run,
        pr_linked_issues: f.pr_linked_issues.clone(),
        pr_last_run_stage: f.pr_last_run_kind.map(|k| k.stage),
        linked_issue_labels: linked.map(|l| l.issue_labels.clone()),
        linked_issue_last_stage: linked.and_then(|l| l.trigger_kind.map(|k| k.stage)),
        candidate: f.candidate.as_ref().map(|c| Candidate {
            pr_number: c.pr_number,
            build_ref: c.build_ref.clone(),
            namespace: c.namespace.clone(),
        }),
    }
}

fn new_run<'a>(b: &q::BoundRepository, plan: &'a RunPlan, spec: &'a RunSpec) -> q::NewRun<'a> {
    q::NewRun {
        correlation_id: &plan.correlation_id,
        project_id: b.project_id,
        repository_id: b.repository_id,
        agent_id: spec.agent.as_ref().map(|a| a.id),
        spec,
        learning_mode: spec.learning_mode,
        repository_full_name: &spec.repository.full_name,
        issue_number: plan.issue_number,
        pr_number: plan.pr_number,
        trigger_source: plan.source,
        trigger_kind: plan.kind,
        trigger_label: plan.label.as_deref(),
        agent_key: plan.agent_key.as_deref(),
        runtime_mode: plan.runtime.mode,
        namespace: plan.runtime.namespace.as_deref(),
    }
}
