//! The run lifecycle loop (product spec §5.2), as two loops of one task. The claims loop claims
//! pending runs on `NOTIFY codexk8s_run_pending` (and after each housekeeping pass) and launches
//! each as soon as it is claimed, without waiting for the launches before it; the housekeeping
//! loop, at the polling interval, releases stale leases, reconciles the running runs this worker
//! may hold and carries out cleanup requests and the namespace sweep. Every decision — the launch
//! plan, the next step of a running run, whether a namespace may go — is a pure function of
//! `ck8s_domain::lifecycle`; this module only carries it out.

use crate::error::WorkerError;
use ck8s_domain::clock::Clock;
use ck8s_domain::labels::LabelCatalog;
use ck8s_domain::lifecycle::{self as core, FailureReason, Finish, LaunchPlan, LaunchSettings, Next, RunLease, Sweep};
use ck8s_domain::report::Report;
use ck8s_domain::run_spec::{RunSpec, secret_env};
use ck8s_domain::runtime::{JobRef, JobRuntime, RunEnvironment, RuntimeError};
use ck8s_store::Pool;
use ck8s_store::listen::{Listener, RUN_PENDING_CHANNEL};
use ck8s_store::runs::{self, ClaimSettings, CleanupResult, LeaseError};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Running runs reconciled at once in a housekeeping pass.
const RECONCILE_CONCURRENCY: usize = 8;

/// Settings of the loop.
#[derive(Clone)]
pub struct LifecycleSettings {
    pub worker_id: String,
    pub poll_interval: Duration,
    pub claim_limit: usize,
    pub running_check_limit: i64,
    pub stale_sweep_limit: i64,
    pub claim: ClaimSettings,
    /// What shapes every launch (naming, profile defaults, job image and command, platform env).
    pub launch: LaunchSettings,
    /// Platform credentials every job gets through the runtime's secret channel (bot token, model
    /// key); never plain environment values of a pod.
    pub job_secret_env: BTreeMap<String, secrecy::SecretString>,
    /// How long captured job logs are kept on finished runs.
    pub logs_retention: Duration,
    /// Whether this worker deletes expired idle namespaces (`CODEXK8S_WORKER_RUN_NAMESPACE_CLEANUP`).
    pub sweep_namespaces: bool,
    /// How long a transient failure to prepare a run's namespace is retried before the run fails
    /// (`CODEXK8S_WORKER_PREPARE_RETRY_WINDOW`).
    pub prepare_window: Duration,
}

/// Prepares `env`, trying a transient failure again (backing off from half a second, doubling,
/// at most 8 s apart) until `window` has passed; answers the attempts it took, or the last error.
pub async fn prepare_within(runtime: &dyn JobRuntime, env: &RunEnvironment, window: Duration) -> Result<u32, RuntimeError> {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match runtime.prepare(env).await {
            Ok(()) => return Ok(attempts),
            Err(e) if e.is_transient() && started.elapsed() + wait <= window => {
                tracing::warn!(namespace = %env.namespace, attempt = attempts, error = %e, "preparing the namespace failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Lines of the job log kept on the run when it finishes.
const LOG_TAIL_LINES: usize = 200;
/// How long a worker holds a claimed cleanup request.
const CLEANUP_LEASE: Duration = Duration::from_secs(300);

/// The issue a run belongs to: (repository, issue), or the run itself when it names no issue.
type IssueKey = (uuid::Uuid, Option<i64>);

/// The launches of the claims loop: one task per launching run, at most one per issue; the other
/// claimed runs of that issue wait behind it, in the order they were claimed.
#[derive(Default)]
struct Launches {
    tasks: tokio::task::JoinSet<()>,
    /// Each task's issue and run.
    launching: HashMap<tokio::task::Id, (IssueKey, uuid::Uuid)>,
    behind: HashMap<IssueKey, VecDeque<RunLease>>,
}

impl Launches {
    /// Runs launching or waiting to.
    fn len(&self) -> usize {
        self.tasks.len() + self.behind.values().map(VecDeque::len).sum::<usize>()
    }

    fn add(&mut self, lifecycle: &Arc<Lifecycle>, run: RunLease) {
        let key = run.spec().ok().and_then(|spec| Some((spec.project.repository_id, Some(spec.issue_number()?))));
        let key = key.unwrap_or((run.id, None));
        match self.behind.get_mut(&key) {
            Some(queue) => queue.push_back(run),
            None => {
                self.behind.insert(key, VecDeque::new());
                self.spawn(lifecycle, key, run);
            }
        }
    }

    fn spawn(&mut self, lifecycle: &Arc<Lifecycle>, key: IssueKey, run: RunLease) {
        let run_id = run.id;
        let task = self.tasks.spawn(Arc::clone(lifecycle).launch_claimed(run));
        self.launching.insert(task.id(), (key, run_id));
    }

    /// A launch ended (or its task failed): the next run of its issue starts.
    fn ended(&mut self, lifecycle: &Arc<Lifecycle>, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let (id, failed) = match done {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(e)),
        };
        let Some((key, run)) = self.launching.remove(&id) else { return };
        if let Some(e) = failed {
            // The next housekeeping pass reconciles the run (and launches it if no job was recorded).
            tracing::error!(run_id = %run, error = %e, "a launch task failed");
            lifecycle.release(run);
        }
        match self.behind.get_mut(&key).and_then(VecDeque::pop_front) {
            Some(next) => self.spawn(lifecycle, key, next),
            None => {
                self.behind.remove(&key);
            }
        }
    }
}

/// The loop and its ports.
pub struct Lifecycle {
    pub pool: Pool,
    pub runtime: Arc<dyn JobRuntime>,
    pub clock: Arc<dyn Clock>,
    pub labels: LabelCatalog,
    pub settings: LifecycleSettings,
    /// Namespaces whose skip was already recorded (one event each, not one per tick).
    pub skipped: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Runs this worker is launching or reconciling right now: the claims and the housekeeping
    /// each take a run here first and leave it to the other while it is taken.
    pub busy: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
    pub metrics: crate::metrics::WorkerMetrics,
}

fn span(run: &RunLease, step: &'static str) -> tracing::Span {
    tracing::info_span!("run", step, run_id = %run.id, correlation_id = %run.correlation_id)
}

impl Lifecycle {
    fn worker(&self) -> &str {
        &self.settings.worker_id
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Appends a flow event of a run (best effort: the run goes on if the audit write fails).
    async fn event(&self, run_id: uuid::Uuid, correlation_id: &str, event_type: &str, payload: Value) {
        if let Err(e) = runs::record_event(&self.pool, correlation_id, run_id, self.worker(), event_type, &payload).await {
            tracing::warn!(error = %Report(&e), event_type, "cannot record flow event");
        }
    }

    /// Owes a report to the run's status comment (carried out by control-plane's side-effect executor).
    async fn status_report(&self, run: &RunLease, state: ck8s_domain::comments::StatusState) {
        let phase = state.phase.map(|p| p.as_str());
        if let Err(e) = ck8s_store::agent::report_status(&self.pool, run.id, &run.correlation_id, &state).await {
            tracing::warn!(run_id = %run.id, error = %Report(&e), ?phase, "cannot owe the status report");
        }
    }

    /// Runs until cancelled, as two loops of one task: claims of pending runs — on every
    /// notification of one, when the `LISTEN` connection comes back, after each housekeeping
    /// pass (it may have freed slots) and when a launch ends while the claim limit was reached —
    /// and the housekeeping of running runs at the polling interval. A stream of new runs neither
    /// waits for nor repeats the housekeeping, and a run claimed while others launch starts at
    /// once. On cancellation the launches under way, and the runs claimed behind them, finish.
    pub async fn run(self, token: CancellationToken) -> Result<(), WorkerError> {
        let this = Arc::new(self);
        let housekept = tokio::sync::Notify::new();
        let claims = async {
            let mut listener = Listener::new(this.pool.clone(), RUN_PENDING_CHANNEL);
            let mut launches = Launches::default();
            let mut claim = true;
            loop {
                if claim && let Err(e) = this.claim_pending(&mut launches).await {
                    tracing::warn!(error = %Report(&e), "claiming pending runs failed; retrying on the next wake");
                }
                claim = tokio::select! {
                    _ = token.cancelled() => break,
                    _ = housekept.notified() => true,
                    wake = listener.wake() => {
                        tracing::debug!(?wake, "woken");
                        true
                    }
                    Some(done) = launches.tasks.join_next_with_id(), if !launches.tasks.is_empty() => {
                        let was_full = launches.len() >= this.settings.claim_limit;
                        launches.ended(&this, done);
                        was_full
                    }
                };
            }
            while let Some(done) = launches.tasks.join_next_with_id().await {
                launches.ended(&this, done);
            }
        };
        let housekeeping = async {
            loop {
                if let Err(e) = this.housekeeping().await {
                    tracing::warn!(error = %Report(&e), "housekeeping failed; retrying on the next pass");
                }
                housekept.notify_one();
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(this.settings.poll_interval) => {}
                }
            }
        };
        tokio::join!(claims, housekeeping);
        Ok(())
    }

    /// One pass over what is not a new run: logs past retention, stale leases, running runs,
    /// jobs of canceled runs, cleanups and the namespace sweep.
    async fn housekeeping(&self) -> Result<(), WorkerError> {
        match runs::purge_old_logs(&self.pool, self.settings.logs_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "purged job logs past retention"),
            Err(e) => tracing::warn!(error = %Report(&e), "log retention sweep failed"),
        }
        let released = runs::release_stale_leases(&self.pool, self.worker(), self.settings.stale_sweep_limit).await?;
        if !released.is_empty() {
            tracing::warn!(count = released.len(), "released leases of dead workers");
        }
        let s = &self.settings;
        let running = runs::lease_running(&self.pool, self.worker(), s.claim.run_lease, s.claim.slot_lease, s.running_check_limit).await?;
        // Each run holds its own lease: several are checked at once, so a long list of running
        // runs does not hold up the next claim of pending ones.
        futures_util::stream::iter(running)
            .for_each_concurrent(RECONCILE_CONCURRENCY, |run| async move {
                if !self.take(run.id) {
                    return;
                }
                if let Err(e) = self.reconcile(&run).instrument(span(&run, "reconcile")).await {
                    tracing::warn!(run_id = %run.id, error = %Report(&e), "reconcile failed");
                }
                self.release(run.id);
            })
            .await;
        for (namespace, job_name) in runs::recently_canceled_jobs(&self.pool, s.running_check_limit).await? {
            let job = JobRef { namespace, job_name };
            if let Err(e) = self.runtime.cancel(&job).await {
                tracing::warn!(job = %job.job_name, error = %e, "cannot stop the job of a canceled run");
            }
        }
        if let Err(e) = self.process_cleanups().await {
            tracing::warn!(error = %Report(&e), "cleanup requests failed");
        }
        if s.sweep_namespaces
            && let Err(e) = self.sweep_namespaces().await
        {
            tracing::warn!(error = %Report(&e), "namespace sweep failed");
        }
        Ok(())
    }

    /// Claims pending runs until none is left or the claim limit of runs is launching, and
    /// starts each launch as soon as its run is claimed — except that the runs of one issue launch
    /// one after another (they may share its namespace).
    async fn claim_pending(self: &Arc<Self>, launches: &mut Launches) -> Result<(), WorkerError> {
        let s = &self.settings;
        while launches.len() < s.claim_limit {
            let Some(run) = runs::claim_next(&self.pool, self.worker(), s.claim).await? else {
                return Ok(());
            };
            if !self.take(run.id) {
                // The housekeeping found it running first and launches it itself.
                continue;
            }
            launches.add(self, run);
        }
        Ok(())
    }

    /// Launches a claimed run and lets it go.
    async fn launch_claimed(self: Arc<Self>, run: RunLease) {
        if let Err(e) = self.launch(&run).instrument(span(&run, "launch")).await {
            tracing::warn!(run_id = %run.id, error = %Report(&e), "launch failed");
        }
        self.release(run.id);
    }

    /// Marks a run as handled by the caller; `false` when the claims or the housekeeping already
    /// handle it.
    fn take(&self, run: uuid::Uuid) -> bool {
        self.busy.lock().map(|mut busy| busy.insert(run)).unwrap_or(false)
    }

    fn release(&self, run: uuid::Uuid) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&run);
        }
    }

    /// Finishes the run with `f` (lease-checked) and owes its `finished` report.
    async fn finish(&self, run: &RunLease, spec: Option<&RunSpec>, f: Finish) -> Result<(), WorkerError> {
        match runs::finish(&self.pool, run.id, self.worker(), &f, &f.event_payload(run)).await {
            Ok(()) => {
                tracing::info!(status = f.status.as_str(), reason = f.reason.map(FailureReason::as_str), "run finished");
                let (pr_number, pr_url) = ck8s_store::agent::run_pull_request(&self.pool, run.id).await.unwrap_or_default();
                self.status_report(run, f.report(spec, pr_number.map(i64::from), pr_url)).await;
                Ok(())
            }
            Err(LeaseError::Lost(l)) => Err(WorkerError::LeaseLost(l)),
            Err(LeaseError::Store(e)) => Err(e.into()),
        }
    }

    async fn launch(&self, run: &RunLease) -> Result<(), WorkerError> {
        let spec = match run.spec() {
            Ok(s) => s,
            Err(e) => return self.finish(run, None, Finish::precondition(FailureReason::AgentContextResolve, e.to_string())).await,
        };
        let reused = match core::reuse_key(&spec) {
            Some((repo, issue, agent)) => runs::reusable_namespace(&self.pool, run.id, repo, issue, &agent).await.ok().flatten(),
            None => None,
        };
        let plan = match core::plan_launch(run, &spec, reused, &self.labels, &self.settings.launch, self.now()) {
            Ok(p) => p,
            Err(f) => return self.finish(run, Some(&spec), f).await,
        };
        self.event(run.id, &run.correlation_id, "run.profile.resolved", plan.profile_event()).await;
        let mut job = plan.job.clone();
        job.secret_env = self.issue_credentials(run).await?;

        let (ns, expires) = (json!({"namespace": plan.namespace}), plan.lease_expires.to_rfc3339());
        let ttl = json!({"namespace": plan.namespace, "expires_at": expires});
        if !plan.prepare {
            // The platform's namespace: used as it is, never labelled, fenced, leased or deleted.
            let payload =
                json!({"namespace": plan.namespace, "reason": "not a run namespace: used as it is, never prepared, leased or deleted"});
            self.event(run.id, &run.correlation_id, "run.namespace.not_prepared", payload).await;
        } else if let Err(e) = prepare_within(self.runtime.as_ref(), &plan.environment, self.settings.prepare_window).await {
            return self.finish(run, Some(&spec), Finish::launch_error(FailureReason::NamespacePrepareFailed, e.to_string())).await;
        } else {
            runs::set_namespace_lease(&self.pool, run.id, self.worker(), plan.lease_expires).await?;
        }
        if plan.prepare && plan.reused {
            self.event(run.id, &run.correlation_id, "run.namespace.reuse_fast_path", ns).await;
            self.event(run.id, &run.correlation_id, "run.namespace.ttl_extended", ttl).await;
        } else if plan.prepare {
            self.event(run.id, &run.correlation_id, "run.namespace.prepared", ns).await;
            self.event(run.id, &run.correlation_id, "run.namespace.ttl_scheduled", ttl).await;
        }
        // Record where the job goes before creating it, so a crash in between is recoverable.
        let s = &self.settings.launch;
        runs::record_launch(
            &self.pool,
            run.id,
            self.worker(),
            &plan.namespace,
            &job.job_name,
            s.run_timeout,
            &plan.model.value,
            &plan.reasoning.value,
        )
        .await?;
        match self.runtime.launch(&job).await {
            Ok(job) => {
                let since_created = (self.now() - run.created_at).to_std().unwrap_or_default();
                self.metrics.run_start.observe(since_created.as_secs_f64());
                self.started(run, &spec, &plan, &job).await;
                Ok(())
            }
            Err(e) => self.finish(run, Some(&spec), Finish::launch_error(FailureReason::LaunchError, e.to_string())).await,
        }
    }

    async fn started(&self, run: &RunLease, spec: &RunSpec, plan: &LaunchPlan, job: &JobRef) {
        self.event(run.id, &run.correlation_id, "run.started", plan.started_event(run, spec, job)).await;
        self.status_report(run, plan.started_report(spec, job)).await;
    }

    /// The job's credentials: the platform's, plus the run's own bearer token for its callbacks
    /// (only its digest is stored).
    async fn issue_credentials(&self, run: &RunLease) -> Result<BTreeMap<String, String>, WorkerError> {
        let mut secrets: BTreeMap<String, String> =
            self.settings.job_secret_env.iter().map(|(k, v)| (k.clone(), secrecy::ExposeSecret::expose_secret(v).to_string())).collect();
        let run_token = ck8s_crypto::random_token("ck8srun_");
        let token = secrecy::ExposeSecret::expose_secret(&run_token).to_string();
        let ttl = (self.settings.launch.run_timeout + Duration::from_secs(3600))
            .clamp(Duration::from_secs(24 * 3600), Duration::from_secs(7 * 24 * 3600));
        let digest = ck8s_crypto::sha256(token.as_bytes());
        if !ck8s_store::agent::issue_run_token(&self.pool, run.id, &digest, ttl, self.worker()).await? {
            return Err(WorkerError::NotLive(run.id));
        }
        secrets.insert(secret_env::RUN_TOKEN.into(), token);
        Ok(secrets)
    }

    /// Keeps the tail of the job log on the run, for the console and the status comment; the full
    /// log stays with the runtime until the job is cleaned up.
    async fn capture_logs(&self, run: &RunLease, job: &JobRef) {
        match self.runtime.logs(job, Some(LOG_TAIL_LINES)).await {
            Ok(tail) => {
                // The runner redacts what it prints; this is the second line: every platform
                // credential and anything shaped like a token.
                let known: Vec<&str> = self.settings.job_secret_env.values().map(secrecy::ExposeSecret::expose_secret).collect();
                let tail = ck8s_domain::agent_run::redact_all(&tail, &known);
                let v = json!({"tail": tail, "lines": LOG_TAIL_LINES, "captured_at": self.now().to_rfc3339(), "job": job.job_name, "namespace": job.namespace});
                if let Err(e) = runs::record_logs(&self.pool, run.id, self.worker(), &v).await {
                    tracing::warn!(error = %Report(&e), "cannot store the job log");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the job log"),
        }
    }

    /// Renews the namespace lease of an active run.
    async fn extend_namespace_lease(&self, run: &RunLease, namespace: &str) {
        if !core::is_run_namespace(namespace, &self.settings.launch.namespace_prefix) {
            return; // not the worker's to lease
        }
        let spec = match run.spec() {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "cannot renew the namespace lease of a run whose payload cannot be read"),
        };
        let (env, expires) = core::run_environment(run, &spec, namespace, self.settings.launch.namespace_ttl, self.now());
        match self.runtime.prepare(&env).await {
            Ok(()) => {
                if runs::set_namespace_lease(&self.pool, run.id, self.worker(), expires).await.is_ok() {
                    let payload = json!({"namespace": namespace, "expires_at": expires.to_rfc3339()});
                    self.event(run.id, &run.correlation_id, "run.namespace.ttl_extended", payload).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot extend the namespace lease"),
        }
    }

    /// Deletes managed namespaces whose lease expired, whose run is finished and in which nothing
    /// runs any more; everything else is left alone (product spec §5.6).
    pub async fn sweep_namespaces(&self) -> Result<(), WorkerError> {
        let now = self.now();
        for env in self.runtime.environments().await? {
            let Some(run_id) = core::expired_run(&env, now) else { continue };
            let Some((status, corr)) = runs::status_of(&self.pool, run_id).await? else { continue };
            match core::sweep(&env, status, &self.settings.launch.namespace_prefix) {
                Sweep::Skip(reason) => {
                    let first = self.skipped.lock().map(|mut s| s.insert(env.namespace.clone())).unwrap_or(false);
                    if first {
                        let payload = json!({"namespace": env.namespace, "reason": reason});
                        self.event(run_id, &corr, "run.namespace.cleanup_skipped", payload).await;
                    }
                }
                Sweep::Delete => match self.runtime.delete_environment(&env.namespace).await {
                    Ok(()) => {
                        let payload = json!({"namespace": env.namespace, "reason": "ttl_expired"});
                        self.event(run_id, &corr, "run.namespace.cleaned", payload).await;
                    }
                    Err(e) => {
                        let payload = json!({"namespace": env.namespace, "error": e.to_string()});
                        self.event(run_id, &corr, "run.namespace.cleanup_failed", payload).await;
                    }
                },
            }
        }
        Ok(())
    }

    /// Deletes the namespaces of issues and pull requests that closed (recorded by ingest). Each
    /// request is claimed, so one worker replica carries it out.
    pub async fn process_cleanups(&self) -> Result<(), WorkerError> {
        for work in runs::claim_cleanups(&self.pool, self.worker(), CLEANUP_LEASE, 20).await? {
            let mut result = CleanupResult::Done;
            for (run_id, namespace) in &work.namespaces {
                if !core::is_run_namespace(namespace, &self.settings.launch.namespace_prefix) {
                    let payload = json!({"namespace": namespace, "reason": "not a run namespace: the platform never deletes it"});
                    self.event(*run_id, &work.correlation_id, "run.namespace.cleanup_skipped", payload).await;
                    continue;
                }
                match self.runtime.delete_environment(namespace).await {
                    Ok(()) => {
                        let payload = json!({"namespace": namespace, "reason": "closed"});
                        self.event(*run_id, &work.correlation_id, "run.namespace.delete_by_system", payload).await;
                    }
                    Err(RuntimeError::Unavailable(e)) => result = CleanupResult::Retry(e),
                    Err(e) => {
                        let payload = json!({"namespace": namespace, "error": e.to_string()});
                        self.event(*run_id, &work.correlation_id, "run.namespace.cleanup_failed", payload).await;
                        if !matches!(result, CleanupResult::Retry(_)) {
                            result = CleanupResult::Failed(e.to_string());
                        }
                    }
                }
            }
            if !runs::finish_cleanup(&self.pool, &work, self.worker(), &result).await? {
                tracing::warn!(request = work.id, "another worker took the cleanup request over; its outcome stands");
            }
        }
        Ok(())
    }

    /// Deletes the run's credentials from the runtime now that its runner has them, and records
    /// it; the runner waits for that record before it starts the agent.
    async fn withdraw_credentials(&self, run: &RunLease, job: &JobRef) -> Result<(), WorkerError> {
        self.runtime.withdraw_credentials(job).await?;
        if runs::mark_credentials_withdrawn(&self.pool, run.id, self.worker()).await? {
            tracing::info!(run_id = %run.id, "run credentials withdrawn from the runtime");
        }
        Ok(())
    }

    async fn reconcile(&self, run: &RunLease) -> Result<(), WorkerError> {
        if run.stale_reclaim_pending {
            self.event(run.id, &run.correlation_id, "run.reclaimed_after_stale_lease", json!({"run_id": run.id})).await;
        }
        let mut run = run.clone();
        if run.namespace.is_some() && run.job_name.is_some() {
            let wait = runs::sync_wait_pause(&self.pool, run.id, self.worker()).await?;
            if let Some(e) = wait.event {
                tracing::info!(event = e, "run wait changed");
            }
            (run.deadline_at, run.timeout_paused_at) = (wait.deadline_at, wait.timeout_paused_at);
        }
        let ttl = self.settings.launch.namespace_ttl;
        let mut next = core::next_action(&run, None, self.now(), ttl);
        let job = JobRef { namespace: run.namespace.clone().unwrap_or_default(), job_name: run.job_name.clone().unwrap_or_default() };
        if next == Next::QueryJob {
            let state = self.runtime.status(&job).await?;
            if run.withdraw_credentials_now(&state) {
                self.withdraw_credentials(&run, &job).await?;
            }
            next = core::next_action(&run, Some(&state), self.now(), ttl);
        }
        match next {
            // A snapshot without a job may predate a launch that has ended since: launch only if
            // still due. (One with a job is a reclaimed run whose job was never created.)
            Next::Launch if run.job_name.is_none() && runs::job_recorded(&self.pool, run.id).await? => Ok(()),
            Next::Launch => self.launch(&run).await,
            Next::QueryJob | Next::Wait => Ok(()),
            Next::TimeOut(f) => {
                self.runtime.cancel(&job).await?;
                self.finish(&run, run.spec().ok().as_ref(), f).await
            }
            Next::Finish(f) => {
                self.capture_logs(&run, &job).await;
                self.finish(&run, run.spec().ok().as_ref(), f).await
            }
            Next::Lost(f) => self.finish(&run, run.spec().ok().as_ref(), f).await,
            Next::ExtendLease => {
                self.extend_namespace_lease(&run, &job.namespace).await;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prepare_within;
    use ck8s_domain::runtime::{BoxFuture, EnvironmentInfo, JobRef, JobRuntime, JobSpec, JobState, RunEnvironment, RuntimeError};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A runtime whose `prepare` answers from a script, one answer per call.
    struct Scripted(Mutex<Vec<Result<(), RuntimeError>>>);

    impl JobRuntime for Scripted {
        fn prepare<'a>(&'a self, _: &'a RunEnvironment) -> BoxFuture<'a, Result<(), RuntimeError>> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
        fn environments<'a>(&'a self) -> BoxFuture<'a, Result<Vec<EnvironmentInfo>, RuntimeError>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn delete_environment<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
        fn launch<'a>(&'a self, _: &'a JobSpec) -> BoxFuture<'a, Result<JobRef, RuntimeError>> {
            Box::pin(async { Err(RuntimeError::Invalid("not scripted".into())) })
        }
        fn status<'a>(&'a self, _: &'a JobRef) -> BoxFuture<'a, Result<JobState, RuntimeError>> {
            Box::pin(async { Ok(JobState::NotFound) })
        }
        fn logs<'a>(&'a self, _: &'a JobRef, _: Option<usize>) -> BoxFuture<'a, Result<String, RuntimeError>> {
            Box::pin(async { Ok(String::new()) })
        }
        fn cancel<'a>(&'a self, _: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
        fn withdraw_credentials<'a>(&'a self, _: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn env() -> RunEnvironment {
        RunEnvironment {
            namespace: "codex-issue-p-i1".into(),
            labels: Default::default(),
            annotations: Default::default(),
            access_profile: None,
        }
    }

    fn unavailable() -> Result<(), RuntimeError> {
        Err(RuntimeError::Unavailable("connection refused".into()))
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_again_within_the_window() {
        let rt = Scripted(Mutex::new(vec![unavailable(), unavailable(), Ok(())]));
        assert_eq!(prepare_within(&rt, &env(), Duration::from_secs(60)).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_refusal_fails_at_once_and_an_outage_fails_once_the_window_is_spent() {
        let refused = Scripted(Mutex::new(vec![Err(RuntimeError::Refused("not ours".into())), Ok(())]));
        assert!(matches!(prepare_within(&refused, &env(), Duration::from_secs(60)).await, Err(RuntimeError::Refused(_))));
        assert_eq!(refused.0.lock().unwrap().len(), 1, "one attempt");
        // A window of two seconds holds the attempts at 0, 0.5 and 1.5 s; the next wait (2 s) would pass it.
        let down = Scripted(Mutex::new((0..100).map(|_| unavailable()).collect()));
        assert!(matches!(prepare_within(&down, &env(), Duration::from_secs(2)).await, Err(RuntimeError::Unavailable(_))));
        assert_eq!(down.0.lock().unwrap().len(), 97, "three attempts");
    }
}
