//! The worker's decisions (product spec §5.5–5.11) as pure functions of a leased run, its
//! [`RunSpec`], what the runtime reports and `now`: how to launch a run (profile, namespace, job,
//! environment and its lease), what to do next with a running one (launch, query its job, time
//! out, finish with a reason, renew its namespace lease, wait), and which expired namespaces the
//! sweeper may delete. The worker's loop only carries these decisions out.

use crate::comments::{Locale, Phase, StatusState};
use crate::labels::LabelCatalog;
use crate::policy::RuntimeMode;
use crate::profile::{self, ProfileLabels, Resolved};
use crate::run::RunStatus;
use crate::run_spec::{AgentEnv, AgentExit, PlatformEnv, RunSpec, RunSpecError};
use crate::runtime::{AGENT_HOST_DIR, EnvironmentInfo, JobRef, JobSpec, JobState, RunEnvironment};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Annotation: how long a run namespace's lease lasts.
pub const LEASE_TTL: &str = "codex-k8s.dev/namespace-lease-ttl";
/// Annotation: when a run namespace's lease runs out (RFC 3339).
pub const LEASE_EXPIRES: &str = "codex-k8s.dev/namespace-lease-expires-at";
/// Label: the run a namespace belongs to.
pub const RUN_ID_LABEL: &str = "codex-k8s.dev/run-id";

/// A run a worker holds the lease of, as stored.
#[derive(Debug, Clone)]
pub struct RunLease {
    pub id: Uuid,
    pub correlation_id: String,
    pub project_id: Option<Uuid>,
    pub status: RunStatus,
    /// The stored [`RunSpec`], decoded where a decision needs it.
    pub payload: Value,
    pub slot_no: Option<i32>,
    pub namespace: Option<String>,
    pub job_name: Option<String>,
    pub stale_reclaim_pending: bool,
    pub deadline_at: Option<DateTime<Utc>>,
    pub timeout_paused_at: Option<DateTime<Utc>>,
    pub wait_reason: Option<String>,
    pub namespace_lease_until: Option<DateTime<Utc>>,
    /// Whether the run's credentials were withdrawn from its runtime (its Secret deleted).
    pub credentials_withdrawn: bool,
    /// When ingest created the run (in the transaction of its delivery).
    pub created_at: DateTime<Utc>,
}

impl RunLease {
    /// The run's spec.
    pub fn spec(&self) -> Result<RunSpec, RunSpecError> {
        RunSpec::decode(&self.payload)
    }

    /// Whether to withdraw the run's credentials now: its job has started (so its runner has read
    /// them; on Kubernetes a container's environment is fixed when it starts), or already ended,
    /// and they were not withdrawn yet. The runner starts the agent only after they are.
    pub fn withdraw_credentials_now(&self, state: &crate::runtime::JobState) -> bool {
        use crate::runtime::JobState;
        !self.credentials_withdrawn && matches!(state, JobState::Running | JobState::Succeeded | JobState::Failed { .. })
    }

    /// Whether the (pausable) deadline has passed at `now`.
    pub fn deadline_passed(&self, now: DateTime<Utc>) -> bool {
        self.timeout_paused_at.is_none() && self.deadline_at.is_some_and(|d| d < now)
    }
}

/// Why a run failed (`agent_runs.failure_reason`, spec §5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Model or reasoning labels conflict.
    PreconditionFailed,
    /// The stored run cannot be read (an unknown version or a bad field).
    AgentContextResolve,
    /// A revise run found no pull request or branch to continue.
    FailedPrecondition,
    WriteScopeViolation,
    KubernetesJobFailed,
    KubernetesJobNotFound,
    NamespacePrepareFailed,
    LaunchError,
    RunTimeout,
}

impl FailureReason {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::PreconditionFailed => "precondition_failed",
            FailureReason::AgentContextResolve => "agent_context_resolve",
            FailureReason::FailedPrecondition => "failed_precondition",
            FailureReason::WriteScopeViolation => "write_scope_violation",
            FailureReason::KubernetesJobFailed => "kubernetes_job_failed",
            FailureReason::KubernetesJobNotFound => "kubernetes_job_not_found",
            FailureReason::NamespacePrepareFailed => "namespace_prepare_failed",
            FailureReason::LaunchError => "launch_error",
            FailureReason::RunTimeout => "run_timeout",
        }
    }
}

/// How a run ends: its status, reason, message and the terminal flow event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub status: RunStatus,
    pub reason: Option<FailureReason>,
    pub message: Option<String>,
    pub event: &'static str,
}

impl Finish {
    /// The run succeeded.
    pub fn succeeded() -> Self {
        Self { status: RunStatus::Succeeded, reason: None, message: None, event: "run.succeeded" }
    }

    /// The run failed for `reason`.
    pub fn failed(reason: FailureReason, message: impl Into<String>, event: &'static str) -> Self {
        Self { status: RunStatus::Failed, reason: Some(reason), message: Some(message.into()), event }
    }

    /// The run cannot start: its launch precondition failed.
    pub fn precondition(reason: FailureReason, message: impl Into<String>) -> Self {
        Self::failed(reason, message, "run.failed.precondition")
    }

    /// The runtime refused to prepare or launch the run.
    pub fn launch_error(reason: FailureReason, message: impl Into<String>) -> Self {
        Self::failed(reason, message, "run.failed.launch_error")
    }

    /// The terminal event's payload.
    pub fn event_payload(&self, run: &RunLease) -> Value {
        json!({
            "run_id": run.id, "namespace": run.namespace, "job_name": run.job_name,
            "reason": self.reason.map(FailureReason::as_str), "message": self.message,
        })
    }

    /// The `finished` report for the run's status comment.
    pub fn report(&self, spec: Option<&RunSpec>, pr_number: Option<i64>, pr_url: Option<String>) -> StatusState {
        StatusState {
            phase: Some(Phase::Finished),
            run_status: Some(self.status),
            failure_reason: self.reason.map(|r| r.as_str().to_string()),
            trigger_kind: spec.map(|s| s.trigger.kind),
            pr_number: pr_number.or_else(|| spec.and_then(RunSpec::pull_request_number)),
            pr_url,
            ..Default::default()
        }
    }
}

/// The worker's settings that shape a launch.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    pub namespace_prefix: String,
    pub default_model: String,
    pub default_reasoning: String,
    /// Language of prompts, PR text and comments.
    pub locale: Locale,
    pub control_plane_target: String,
    /// Hard limit of a run's job (activeDeadlineSeconds).
    pub run_timeout: Duration,
    /// Lease of a run namespace, extended while its run is active.
    pub namespace_ttl: Duration,
    pub job_image: String,
    /// The job's program and its arguments (the agent runner), run as `sh -c "exec …"`
    /// ([`single_command`] checks it).
    pub job_command: String,
    /// Platform settings every job gets.
    pub platform: PlatformEnv,
}

/// Everything a launch does, decided before any of it happens.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub model: Resolved,
    pub reasoning: Resolved,
    pub namespace: String,
    /// The namespace of an earlier run of the issue is reused (revise fast path).
    pub reused: bool,
    /// The job without its credentials (the worker adds them through the secret channel).
    pub job: JobSpec,
    pub environment: RunEnvironment,
    pub lease_expires: DateTime<Utc>,
    /// Whether the worker prepares and leases the namespace: only a run namespace of its own
    /// ([`is_run_namespace`]); a run routed to the platform's namespace (postdeploy, ops,
    /// ai-repair) runs there as it is, read-only, and the namespace is never labelled, fenced,
    /// leased or deleted.
    pub prepare: bool,
}

/// Whether a job command is one program with its arguments, as `exec` needs it: no shell list,
/// pipe, background job, substitution or second line (the rest would never run).
pub fn single_command(command: &str) -> bool {
    !command.trim().is_empty() && !command.contains([';', '&', '|', '`', '\n', '\r']) && !command.contains("$(")
}

/// Whether `namespace` is one the worker makes for runs (`<prefix>-…`): the only namespaces it
/// prepares, leases, sweeps or deletes. Anything else — the platform's own namespace above all —
/// it never touches, whatever labels it carries.
pub fn is_run_namespace(namespace: &str, prefix: &str) -> bool {
    !prefix.is_empty() && namespace.len() > prefix.len() + 1 && namespace.starts_with(prefix) && namespace[prefix.len()..].starts_with('-')
}

/// The first 12 alphanumerics of an id, lowercased (names of namespaces and jobs).
pub fn first12(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect::<String>().to_lowercase()
}

/// A DNS label: lowercase alphanumerics and `-`, at most 63, no `-` at the ends.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// The earlier run whose live namespace a revise run may reuse: (repository, issue, agent), for
/// full-env `:revise` runs without a routed namespace.
pub fn reuse_key(spec: &RunSpec) -> Option<(Uuid, i64, String)> {
    let routed = spec.runtime.namespace.as_deref().is_some_and(|n| !n.is_empty());
    if !spec.trigger.kind.revise || spec.runtime.mode != RuntimeMode::FullEnv || routed {
        return None;
    }
    Some((spec.project.repository_id, spec.issue_number()?, spec.agent.as_ref()?.key.clone()))
}

/// The run's environment with a namespace lease of `ttl` from `now`.
pub fn run_environment(
    run: &RunLease,
    spec: &RunSpec,
    namespace: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> (RunEnvironment, DateTime<Utc>) {
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::hours(24));
    let mut labels: BTreeMap<String, String> = [
        (RUN_ID_LABEL, run.id.to_string()),
        ("codex-k8s.dev/project-id", run.project_id.map(|i| i.to_string()).unwrap_or_default()),
        ("codex-k8s.dev/agent-key", spec.agent.as_ref().map(|a| a.key.clone()).unwrap_or_default()),
        ("codex-k8s.dev/runtime-mode", spec.runtime.mode.as_str().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(i) = spec.issue_number() {
        labels.insert("codex-k8s.dev/issue-number".into(), i.to_string());
    }
    let annotations = [
        ("codex-k8s.dev/correlation-id", run.correlation_id.clone()),
        (LEASE_TTL, format!("{}s", ttl.as_secs())),
        (LEASE_EXPIRES, expires.to_rfc3339()),
        ("codex-k8s.dev/namespace-lease-updated-at", now.to_rfc3339()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let env = RunEnvironment {
        namespace: namespace.to_string(),
        labels,
        annotations,
        access_profile: spec.runtime.access_profile.map(|p| p.as_str().to_string()),
    };
    (env, expires)
}

/// Decides a launch: the profile (conflicting labels fail the run), the namespace (routed,
/// reused or generated), the job and its environment.
pub fn plan_launch(
    run: &RunLease,
    spec: &RunSpec,
    reused_namespace: Option<String>,
    labels: &LabelCatalog,
    s: &LaunchSettings,
    now: DateTime<Utc>,
) -> Result<LaunchPlan, Finish> {
    let profile_labels = ProfileLabels {
        pull_request: spec.pull_request.as_ref().map(|p| p.labels.clone()).unwrap_or_default(),
        issue: spec.issue.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
        last_run_issue: spec.profile_hints.last_run_issue_labels.clone(),
        last_run_pull_request: spec.profile_hints.last_run_pull_request_labels.clone(),
    };
    // The platform's deploy runs (push to main) name no agent: none may start, least of all in
    // the production namespace they are routed to. Until self-deploy exists they fail here.
    let Some(agent) = spec.agent.as_ref().filter(|_| !spec.runtime.deploy_only) else {
        return Err(Finish::precondition(
            FailureReason::AgentContextResolve,
            "a deploy run starts no agent, and self-deploy is not available yet; nothing was launched",
        ));
    };
    let review_driven = spec.trigger.source == crate::policy::TriggerSource::PullRequestReview;
    let (model, reasoning) = profile::resolve(labels, &profile_labels, review_driven, &s.default_model, &s.default_reasoning)
        .map_err(|e| Finish::precondition(FailureReason::PreconditionFailed, e.to_string()))?;

    let run12 = first12(&run.id.to_string());
    let generated = match spec.runtime.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => sanitize(ns),
        None => {
            let project12 = first12(&run.project_id.map(|id| id.to_string()).unwrap_or_default());
            match spec.issue_number() {
                Some(issue) => sanitize(&format!("{}-{project12}-i{issue}-r{run12}", s.namespace_prefix)),
                None => sanitize(&format!("{}-run-{run12}", s.namespace_prefix)),
            }
        }
    };
    let reused = reused_namespace.is_some();
    let namespace = reused_namespace.unwrap_or(generated);
    let job_name = sanitize(&format!("codex-k8s-run-{run12}"));
    let agent = AgentEnv {
        run_id: run.id,
        correlation_id: run.correlation_id.clone(),
        project_id: run.project_id,
        slot_no: run.slot_no,
        runtime_mode: spec.runtime.mode,
        target_env: spec.runtime.target_env.clone(),
        build_ref: spec.runtime.build_ref.clone(),
        access_profile: spec.runtime.access_profile,
        control_plane_target: s.control_plane_target.clone(),
        repository_full_name: spec.repository.full_name.clone(),
        issue_number: spec.issue_number(),
        existing_pr_number: spec.pull_request_number(),
        trigger_kind: spec.trigger.kind,
        trigger_label: spec.trigger.label.clone(),
        discussion: spec.discussion_mode,
        agent_key: agent.key.clone(),
        agent_name: agent.name.clone(),
        model: model.value.clone(),
        reasoning_effort: reasoning.value.clone(),
        locale: s.locale,
        learning_mode: spec.learning_mode,
    };
    let mut env = agent.to_env();
    env.extend(s.platform.to_env());
    let job = JobSpec {
        run_id: run.id.to_string(),
        correlation_id: run.correlation_id.clone(),
        project_id: run.project_id.map(|i| i.to_string()).unwrap_or_default(),
        namespace: namespace.clone(),
        job_name,
        image: s.job_image.clone(),
        // `exec`: the runner is the container's first process, so the stop signal reaches it (a
        // shell there would ignore it, and the runner would be killed without saving its session).
        command: vec!["sh".into(), "-c".into(), format!("exec {}", s.job_command)],
        // The same program in the agent's container, as the host of the shared volume.
        agent_command: vec!["sh".into(), "-c".into(), format!("exec {} agent-host {AGENT_HOST_DIR}", s.job_command)],
        env,
        secret_env: BTreeMap::new(),
        active_deadline: s.run_timeout,
        service_account: spec.runtime.access_profile.map(|p| p.service_account().to_string()),
    };
    let (environment, lease_expires) = run_environment(run, spec, &namespace, s.namespace_ttl, now);
    let prepare = is_run_namespace(&namespace, &s.namespace_prefix);
    Ok(LaunchPlan { model, reasoning, namespace, reused, job, environment, lease_expires, prepare })
}

impl LaunchPlan {
    /// `run.profile.resolved`'s payload.
    pub fn profile_event(&self) -> Value {
        json!({"model": self.model.value, "model_source": self.model.source, "reasoning_effort": self.reasoning.value, "reasoning_source": self.reasoning.source})
    }

    /// `run.started`'s payload.
    pub fn started_event(&self, run: &RunLease, spec: &RunSpec, job: &JobRef) -> Value {
        json!({
            "namespace": job.namespace, "job_name": job.job_name, "slot_no": run.slot_no, "model": self.model.value,
            "reasoning_effort": self.reasoning.value, "agent_key": spec.agent.as_ref().map(|a| a.key.clone()),
            "trigger_kind": spec.trigger.kind,
        })
    }

    /// The `started` report for the run's status comment.
    pub fn started_report(&self, spec: &RunSpec, job: &JobRef) -> StatusState {
        StatusState {
            phase: Some(Phase::Started),
            namespace: Some(job.namespace.clone()),
            job: Some(format!("{}/{}", job.namespace, job.job_name)),
            model: Some(self.model.value.clone()),
            reasoning_effort: Some(self.reasoning.value.clone()),
            trigger_label: spec.trigger.label.clone().filter(|l| !l.is_empty()),
            trigger_kind: Some(spec.trigger.kind),
            runtime_mode: Some(spec.runtime.mode),
            target_env: spec.runtime.target_env.clone().filter(|t| !t.is_empty()),
            build_ref: spec.runtime.build_ref.clone().filter(|b| !b.is_empty()),
            access_profile: spec.runtime.access_profile,
            ..Default::default()
        }
    }
}

/// What to do next with a running run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Claimed but never launched, or its job was lost while its holder died: launch it.
    Launch,
    /// Ask the runtime about the job, then decide again with its state.
    QueryJob,
    /// The deadline passed: stop the job, then finish the run.
    TimeOut(Finish),
    /// The job ended: keep its log tail, then finish the run.
    Finish(Finish),
    /// The job ended without a trace: finish the run.
    Lost(Finish),
    /// Still running and half its namespace lease is used: renew the lease.
    ExtendLease,
    /// Still running; nothing to do.
    Wait,
}

/// The next step for a running run, given its job's state when known.
pub fn next_action(run: &RunLease, job: Option<&JobState>, now: DateTime<Utc>, namespace_ttl: Duration) -> Next {
    if run.namespace.is_none() || run.job_name.is_none() {
        return Next::Launch;
    }
    if run.deadline_passed(now) {
        return Next::TimeOut(Finish::failed(FailureReason::RunTimeout, "the run exceeded its deadline", "run.failed"));
    }
    let Some(job) = job else { return Next::QueryJob };
    match job {
        JobState::Succeeded => Next::Finish(Finish::succeeded()),
        JobState::Failed { exit_code: Some(code), reason } => Next::Finish(match AgentExit::from_code(*code) {
            AgentExit::NothingToRevise => Finish::precondition(
                FailureReason::FailedPrecondition,
                "a revise run found no pull request or branch to continue; start the stage with its work label first",
            ),
            AgentExit::ScopeViolation => Finish::failed(
                FailureReason::WriteScopeViolation,
                "the agent's change was refused: files outside its stage's write scope, or a platform secret in it; nothing was pushed (the run's log names the files)",
                "run.failed",
            ),
            _ => Finish::failed(FailureReason::KubernetesJobFailed, reason.clone(), "run.failed"),
        }),
        JobState::Failed { reason, exit_code: None } => {
            Next::Finish(Finish::failed(FailureReason::KubernetesJobFailed, reason.clone(), "run.failed"))
        }
        // The previous holder died between recording the job and creating it: create it now.
        JobState::NotFound if run.stale_reclaim_pending => Next::Launch,
        JobState::NotFound => {
            Next::Lost(Finish::failed(FailureReason::KubernetesJobNotFound, "the job disappeared", "run.failed.job_not_found"))
        }
        JobState::Pending | JobState::Running => {
            let half = chrono::Duration::from_std(namespace_ttl / 2).unwrap_or_else(|_| chrono::Duration::hours(12));
            if run.namespace_lease_until.is_some_and(|until| until - now > half) { Next::Wait } else { Next::ExtendLease }
        }
    }
}

/// What the sweeper does with an expired managed namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Leave it, and record why once.
    Skip(&'static str),
    Delete,
}

/// The run of a managed namespace whose lease has run out at `now`, if it names one.
pub fn expired_run(env: &EnvironmentInfo, now: DateTime<Utc>) -> Option<Uuid> {
    let expired =
        env.metadata.get(LEASE_EXPIRES).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| t.with_timezone(&Utc) < now);
    if !expired {
        return None;
    }
    env.metadata.get(RUN_ID_LABEL).and_then(|r| r.parse().ok())
}

/// Whether an expired namespace may go (spec §5.6): only a run namespace of this worker (its
/// `prefix`; the runtime already checked its created-by marker), once its run is finished and
/// nothing runs in it any more.
pub fn sweep(env: &EnvironmentInfo, run_status: RunStatus, prefix: &str) -> Sweep {
    if !is_run_namespace(&env.namespace, prefix) {
        Sweep::Skip("not_a_run_namespace")
    } else if !run_status.is_terminal() {
        Sweep::Skip("run_not_terminal")
    } else if env.active {
        Sweep::Skip("active_workload")
    } else {
        Sweep::Delete
    }
}

#[cfg(test)]
mod tests;
