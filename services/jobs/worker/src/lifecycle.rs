//! The run lifecycle loop (product spec §5.2): each tick releases stale leases, reconciles the
//! running runs this worker may hold (approval pauses, deadlines, job outcomes), then claims and
//! launches pending runs. Ticks run on `NOTIFY codexk8s_run_pending` and on a polling interval.

use ck8s_domain::labels::LabelCatalog;
use ck8s_domain::profile::{self, ProfileLabels};
use ck8s_domain::runtime::{JobRef, JobRuntime, JobSpec, JobState, RunEnvironment};
use ck8s_store::runs::{self, ClaimSettings, LeaseError, LeasedRun};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the loop.
#[derive(Clone)]
pub struct LifecycleSettings {
    pub worker_id: String,
    pub poll_interval: Duration,
    pub claim_limit: usize,
    pub running_check_limit: i64,
    pub stale_sweep_limit: i64,
    pub claim: ClaimSettings,
    /// Hard limit of a run's job; paused while the run waits on an approval.
    pub run_timeout: Duration,
    pub namespace_prefix: String,
    /// Shell command of the job (the agent-runner), run with `sh -c`.
    pub job_command: String,
    pub job_image: String,
    /// Platform settings every job gets (GitHub API and git URLs, model endpoint, Codex binary).
    pub job_env: BTreeMap<String, String>,
    /// Platform credentials every job gets through the runtime's secret channel (bot token, model
    /// key); never plain environment values of a pod.
    pub job_secret_env: BTreeMap<String, secrecy::SecretString>,
    pub default_model: String,
    pub default_reasoning: String,
    /// `ru` or `en`: language of prompts, PR text and comments.
    pub locale: String,
    pub control_plane_target: String,
    /// How long captured job logs are kept on finished runs.
    pub logs_retention: Duration,
    /// Lease of a run namespace, extended while its run is active.
    pub namespace_ttl: Duration,
    /// Whether this worker deletes expired idle namespaces (`CODEXK8S_WORKER_RUN_NAMESPACE_CLEANUP`).
    pub sweep_namespaces: bool,
}

/// Lines of the job log kept on the run when it finishes.
const LOG_TAIL_LINES: usize = 200;

/// The loop and its ports.
pub struct Lifecycle {
    pub pool: PgPool,
    pub runtime: Arc<dyn JobRuntime>,
    pub labels: LabelCatalog,
    pub settings: LifecycleSettings,
    /// Namespaces whose skip was already recorded (one event each, not one per tick).
    pub skipped: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn first12(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect::<String>().to_lowercase()
}

fn sanitize(s: &str) -> String {
    let mut out: String = s.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// The run's environment with a namespace lease of `ttl` from now.
fn environment(run: &LeasedRun, namespace: &str, ttl: Duration) -> (RunEnvironment, chrono::DateTime<chrono::Utc>) {
    let p = &run.payload;
    let s = |v: &Value| v.as_str().map(String::from).unwrap_or_default();
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::hours(24));
    let mut labels: BTreeMap<String, String> = [
        ("codex-k8s.dev/run-id", run.id.to_string()),
        ("codex-k8s.dev/project-id", run.project_id.map(|i| i.to_string()).unwrap_or_default()),
        ("codex-k8s.dev/agent-key", s(&p["agent"]["key"])),
        ("codex-k8s.dev/runtime-mode", s(&p["runtime"]["mode"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(i) = p["issue"]["number"].as_i64() {
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
        access_profile: p["runtime"]["access_profile"].as_str().map(String::from),
    };
    (env, expires)
}

const LEASE_TTL: &str = "codex-k8s.dev/namespace-lease-ttl";
const LEASE_EXPIRES: &str = "codex-k8s.dev/namespace-lease-expires-at";

fn labels_at(payload: &Value, path: &[&str]) -> Vec<String> {
    let mut cur = payload;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_array().map(|a| a.iter().filter_map(|l| l.as_str().map(String::from)).collect()).unwrap_or_default()
}

impl Lifecycle {
    fn worker(&self) -> &str {
        &self.settings.worker_id
    }

    async fn event(&self, run: &LeasedRun, event_type: &str, payload: Value) {
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, event_type, "cannot record flow event"),
        };
        if let Err(e) =
            ck8s_store::ingest::flow_event(&mut conn, &run.correlation_id, Some(run.id), "system", self.worker(), event_type, &payload)
                .await
        {
            tracing::warn!(error = %e, event_type, "cannot record flow event");
        }
    }

    /// Owes a report to the run's status comment (carried out by control-plane's side-effect executor).
    async fn status_report(&self, run: &LeasedRun, state: Value) {
        let result = match self.pool.acquire().await {
            Ok(mut conn) => ck8s_store::agent::owe_status_report(&mut conn, run.id, &run.correlation_id, &state).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(run_id = %run.id, error = %e, phase = %state["phase"], "cannot owe the status report");
        }
    }

    /// Runs ticks until cancelled.
    pub async fn run(self, token: CancellationToken) -> Result<(), String> {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(ck8s_store::ingest::RUN_PENDING_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a LISTEN connection; polling only");
                None
            }
        };
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "tick failed; retrying on the next one");
            }
            let wait = tokio::time::sleep(self.settings.poll_interval);
            tokio::select! {
                _ = token.cancelled() => return Ok(()),
                _ = wait => {}
                n = async { match listener.as_mut() { Some(l) => l.recv().await.map(|_| ()), None => std::future::pending().await } } => {
                    if n.is_err() { listener = None; }
                }
            }
        }
    }

    /// One pass: stale leases, running runs, pending runs.
    pub async fn tick(&self) -> Result<(), String> {
        match runs::purge_old_logs(&self.pool, self.settings.logs_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "purged job logs past retention"),
            Err(e) => tracing::warn!(error = %e, "log retention sweep failed"),
        }
        let released =
            runs::release_stale_leases(&self.pool, self.worker(), self.settings.stale_sweep_limit).await.map_err(|e| e.to_string())?;
        if !released.is_empty() {
            tracing::warn!(count = released.len(), "released leases of dead workers");
        }
        let running = runs::lease_running(
            &self.pool,
            self.worker(),
            self.settings.claim.run_lease,
            self.settings.claim.slot_lease,
            self.settings.running_check_limit,
        )
        .await
        .map_err(|e| e.to_string())?;
        for run in running {
            if let Err(e) = self.reconcile(&run).await {
                tracing::warn!(run_id = %run.id, error = %e, "reconcile failed");
            }
        }
        for (namespace, job_name) in
            runs::recently_canceled_jobs(&self.pool, self.settings.running_check_limit).await.map_err(|e| e.to_string())?
        {
            let job = JobRef { namespace, job_name };
            if let Err(e) = self.runtime.cancel(&job).await {
                tracing::warn!(job = %job.job_name, error = %e, "cannot stop the job of a canceled run");
            }
        }
        if let Err(e) = self.process_cleanups().await {
            tracing::warn!(error = %e, "cleanup requests failed");
        }
        if self.settings.sweep_namespaces
            && let Err(e) = self.sweep_namespaces().await
        {
            tracing::warn!(error = %e, "namespace sweep failed");
        }
        for _ in 0..self.settings.claim_limit {
            let Some(run) = runs::claim_next(&self.pool, self.worker(), self.settings.claim).await.map_err(|e| e.to_string())? else {
                break;
            };
            if let Err(e) = self.launch(&run).await {
                tracing::warn!(run_id = %run.id, error = %e, "launch failed");
            }
        }
        Ok(())
    }

    async fn finish(&self, run: &LeasedRun, status: &str, reason: Option<&str>, message: Option<&str>, event: &str) -> Result<(), String> {
        let payload = json!({"run_id": run.id, "namespace": run.namespace, "job_name": run.job_name, "reason": reason, "message": message});
        match runs::finish(&self.pool, run.id, self.worker(), status, reason, message, event, &payload).await {
            Ok(()) => {
                tracing::info!(run_id = %run.id, status, reason, "run finished");
                let (pr_number, pr_url) = ck8s_store::agent::run_pull_request(&self.pool, run.id).await.unwrap_or_default();
                self.status_report(run, json!({
                    "phase": "finished", "run_status": status, "failure_reason": reason,
                    "trigger_kind": run.payload["trigger"]["kind"].as_str().filter(|s| !s.is_empty()),
                    "pr_number": pr_number.or_else(|| run.payload["pull_request"]["number"].as_i64().map(|n| n as i32)), "pr_url": pr_url,
                })).await;
                Ok(())
            }
            Err(LeaseError::Lost(l)) => Err(l.to_string()),
            Err(LeaseError::Db(e)) => Err(e.to_string()),
        }
    }

    async fn launch(&self, run: &LeasedRun) -> Result<(), String> {
        let p = &run.payload;
        let labels = ProfileLabels {
            pull_request: labels_at(p, &["pull_request", "labels"]),
            issue: labels_at(p, &["issue", "labels"]),
            last_run_issue: labels_at(p, &["profile_hints", "last_run_issue_labels"]),
            last_run_pull_request: labels_at(p, &["profile_hints", "last_run_pull_request_labels"]),
        };
        let review_driven = p["trigger"]["source"] == "pull_request_review";
        let (model, reasoning) =
            match profile::resolve(&self.labels, &labels, review_driven, &self.settings.default_model, &self.settings.default_reasoning) {
                Ok(r) => r,
                Err(e) => {
                    return self.finish(run, "failed", Some("precondition_failed"), Some(&e.to_string()), "run.failed.precondition").await;
                }
            };
        self.event(run, "run.profile.resolved", json!({"model": model.value, "model_source": model.source, "reasoning_effort": reasoning.value, "reasoning_source": reasoning.source})).await;

        let run12 = first12(&run.id.to_string());
        let namespace = match p["runtime"]["namespace"].as_str().filter(|s| !s.is_empty()) {
            Some(ns) => sanitize(ns),
            None => {
                let project12 = first12(&run.project_id.map(|id| id.to_string()).unwrap_or_default());
                match p["issue"]["number"].as_i64() {
                    Some(issue) => sanitize(&format!("{}-{project12}-i{issue}-r{run12}", self.settings.namespace_prefix)),
                    None => sanitize(&format!("{}-run-{run12}", self.settings.namespace_prefix)),
                }
            }
        };
        let reused = self.reusable_namespace(run).await;
        let namespace = reused.clone().unwrap_or(namespace);
        let job_name = sanitize(&format!("codex-k8s-run-{run12}"));
        let s = |v: &Value| v.as_str().map(String::from).unwrap_or_default();
        let num = |v: &Value| v.as_i64().map(|n| n.to_string()).unwrap_or_default();
        let env: BTreeMap<String, String> = [
            ("CODEXK8S_RUN_ID", run.id.to_string()),
            ("CODEXK8S_CORRELATION_ID", run.correlation_id.clone()),
            ("CODEXK8S_PROJECT_ID", run.project_id.map(|i| i.to_string()).unwrap_or_default()),
            ("CODEXK8S_SLOT_NO", run.slot_no.map(|n| n.to_string()).unwrap_or_default()),
            ("CODEXK8S_RUNTIME_MODE", s(&p["runtime"]["mode"])),
            ("CODEXK8S_RUNTIME_TARGET_ENV", s(&p["runtime"]["target_env"])),
            ("CODEXK8S_RUNTIME_BUILD_REF", s(&p["runtime"]["build_ref"])),
            ("CODEXK8S_RUNTIME_ACCESS_PROFILE", s(&p["runtime"]["access_profile"])),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", self.settings.control_plane_target.clone()),
            ("CODEXK8S_REPOSITORY_FULL_NAME", s(&p["repository"]["full_name"])),
            ("CODEXK8S_ISSUE_NUMBER", num(&p["issue"]["number"])),
            ("CODEXK8S_EXISTING_PR_NUMBER", num(&p["pull_request"]["number"])),
            ("CODEXK8S_RUN_TRIGGER_KIND", s(&p["trigger"]["kind"])),
            ("CODEXK8S_RUN_TRIGGER_LABEL", s(&p["trigger"]["label"])),
            ("CODEXK8S_DISCUSSION_MODE", p["discussion_mode"].as_bool().unwrap_or(false).to_string()),
            ("CODEXK8S_AGENT_KEY", s(&p["agent"]["key"])),
            ("CODEXK8S_AGENT_DISPLAY_NAME", s(&p["agent"]["name"])),
            ("CODEXK8S_AGENT_MODEL", model.value.clone()),
            ("CODEXK8S_AGENT_REASONING_EFFORT", reasoning.value.clone()),
            ("CODEXK8S_PROMPT_TEMPLATE_LOCALE", self.settings.locale.clone()),
            ("CODEXK8S_LEARNING_MODE", p["learning_mode"].as_bool().unwrap_or(false).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(self.settings.job_env.clone())
        .collect();
        let mut secret_env: BTreeMap<String, String> =
            self.settings.job_secret_env.iter().map(|(k, v)| (k.clone(), secrecy::ExposeSecret::expose_secret(v).to_string())).collect();
        // The run's own bearer token for its callbacks; only its digest is stored.
        let run_token = ck8s_crypto::random_token("ck8srun_");
        let token = secrecy::ExposeSecret::expose_secret(&run_token).to_string();
        let ttl = (self.settings.run_timeout + Duration::from_secs(3600))
            .clamp(Duration::from_secs(24 * 3600), Duration::from_secs(7 * 24 * 3600));
        match ck8s_store::agent::issue_run_token(&self.pool, run.id, &ck8s_crypto::sha256(token.as_bytes()), ttl, self.worker()).await {
            Ok(true) => {}
            Ok(false) => return Err("the run is no longer pending or running; not launching it".into()),
            Err(e) => return Err(format!("cannot issue the run token: {e}")),
        }
        secret_env.insert("CODEXK8S_RUN_TOKEN".into(), token);
        let spec = JobSpec {
            run_id: run.id.to_string(),
            correlation_id: run.correlation_id.clone(),
            project_id: run.project_id.map(|i| i.to_string()).unwrap_or_default(),
            namespace: namespace.clone(),
            job_name: job_name.clone(),
            image: self.settings.job_image.clone(),
            command: vec!["sh".into(), "-c".into(), self.settings.job_command.clone()],
            env,
            secret_env,
            active_deadline: self.settings.run_timeout,
            service_account: match p["runtime"]["access_profile"].as_str() {
                Some("candidate") => Some("codex-runner".into()),
                Some("production-readonly") => Some("codex-runner-readonly".into()),
                _ => None,
            },
        };
        let (environment, expires) = environment(run, &namespace, self.settings.namespace_ttl);
        if let Err(e) = self.runtime.prepare(&environment).await {
            return self.finish(run, "failed", Some("namespace_prepare_failed"), Some(&e.to_string()), "run.failed.launch_error").await;
        }
        if let Err(e) = runs::set_namespace_lease(&self.pool, run.id, self.worker(), expires).await {
            return Err(e.to_string());
        }
        if reused.is_some() {
            self.event(run, "run.namespace.reuse_fast_path", json!({"namespace": namespace})).await;
            self.event(run, "run.namespace.ttl_extended", json!({"namespace": namespace, "expires_at": expires.to_rfc3339()})).await;
        } else {
            self.event(run, "run.namespace.prepared", json!({"namespace": namespace})).await;
            self.event(run, "run.namespace.ttl_scheduled", json!({"namespace": namespace, "expires_at": expires.to_rfc3339()})).await;
        }

        // Record where the job goes before creating it, so a crash in between is recoverable.
        if let Err(e) = runs::record_launch(
            &self.pool,
            run.id,
            self.worker(),
            &namespace,
            &job_name,
            self.settings.run_timeout,
            &model.value,
            &reasoning.value,
        )
        .await
        {
            return Err(e.to_string());
        }
        match self.runtime.launch(&spec).await {
            Ok(job) => {
                self.event(run, "run.started", json!({"namespace": job.namespace, "job_name": job.job_name, "slot_no": run.slot_no, "model": model.value, "reasoning_effort": reasoning.value, "agent_key": p["agent"]["key"], "trigger_kind": p["trigger"]["kind"]})).await;
                let nonempty = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
                self.status_report(
                    run,
                    json!({
                        "phase": "started", "namespace": job.namespace, "job": format!("{}/{}", job.namespace, job.job_name),
                        "model": model.value, "reasoning_effort": reasoning.value, "trigger_label": nonempty(&p["trigger"]["label"]),
                        "trigger_kind": nonempty(&p["trigger"]["kind"]), "runtime_mode": nonempty(&p["runtime"]["mode"]),
                        "target_env": nonempty(&p["runtime"]["target_env"]), "build_ref": nonempty(&p["runtime"]["build_ref"]),
                        "access_profile": nonempty(&p["runtime"]["access_profile"]),
                    }),
                )
                .await;
                Ok(())
            }
            Err(e) => self.finish(run, "failed", Some("launch_error"), Some(&e.to_string()), "run.failed.launch_error").await,
        }
    }

    /// Keeps the tail of the job log on the run, for the console and the status comment; the full
    /// log stays with the runtime until the job is cleaned up.
    async fn capture_logs(&self, run: &LeasedRun, job: &JobRef) {
        match self.runtime.logs(job, Some(LOG_TAIL_LINES)).await {
            Ok(tail) => {
                let v = json!({"tail": tail, "lines": LOG_TAIL_LINES, "captured_at": chrono::Utc::now().to_rfc3339(), "job": job.job_name, "namespace": job.namespace});
                if let Err(e) = runs::record_logs(&self.pool, run.id, self.worker(), &v).await {
                    tracing::warn!(run_id = %run.id, error = %e, "cannot store the job log");
                }
            }
            Err(e) => tracing::warn!(run_id = %run.id, error = %e, "cannot read the job log"),
        }
    }

    /// A revise run of a full-env issue trigger reuses the live namespace of its issue.
    async fn reusable_namespace(&self, run: &LeasedRun) -> Option<String> {
        let p = &run.payload;
        let revise = p["trigger"]["kind"].as_str().is_some_and(|k| k.ends_with("_revise"));
        if !revise || p["runtime"]["mode"] != "full-env" || p["runtime"]["namespace"].as_str().is_some_and(|n| !n.is_empty()) {
            return None;
        }
        let repo = p["project"]["repository_id"].as_str().and_then(|r| r.parse().ok())?;
        let issue = p["issue"]["number"].as_i64()?;
        let agent = p["agent"]["key"].as_str()?;
        runs::reusable_namespace(&self.pool, run.id, repo, issue, agent).await.ok().flatten()
    }

    /// Keeps the namespace of an active run from expiring: renews its lease once half is used.
    async fn extend_namespace_lease(&self, run: &LeasedRun, namespace: &str) {
        let half = chrono::Duration::from_std(self.settings.namespace_ttl / 2).unwrap_or_else(|_| chrono::Duration::hours(12));
        if run.namespace_lease_until.is_some_and(|until| until - chrono::Utc::now() > half) {
            return;
        }
        let (env, expires) = environment(run, namespace, self.settings.namespace_ttl);
        match self.runtime.prepare(&env).await {
            Ok(()) => {
                if runs::set_namespace_lease(&self.pool, run.id, self.worker(), expires).await.is_ok() {
                    self.event(run, "run.namespace.ttl_extended", json!({"namespace": namespace, "expires_at": expires.to_rfc3339()}))
                        .await;
                }
            }
            Err(e) => tracing::warn!(run_id = %run.id, error = %e, "cannot extend the namespace lease"),
        }
    }

    async fn namespace_event(&self, run_id: uuid::Uuid, correlation_id: &str, event_type: &str, payload: Value) {
        if let Ok(mut conn) = self.pool.acquire().await {
            let _ = ck8s_store::ingest::flow_event(&mut conn, correlation_id, Some(run_id), "system", self.worker(), event_type, &payload)
                .await;
        }
    }

    /// Deletes managed namespaces whose lease expired, whose run is finished and in which nothing
    /// runs any more; everything else is left alone (product spec §5.6).
    pub async fn sweep_namespaces(&self) -> Result<(), String> {
        let now = chrono::Utc::now();
        for env in self.runtime.environments().await.map_err(|e| e.to_string())? {
            let expired = env
                .metadata
                .get(LEASE_EXPIRES)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t.with_timezone(&chrono::Utc) < now);
            if !expired {
                continue;
            }
            let run_id: Option<uuid::Uuid> = env.metadata.get("codex-k8s.dev/run-id").and_then(|r| r.parse().ok());
            let Some(run_id) = run_id else { continue };
            let Some((status, corr)) = runs::status_of(&self.pool, run_id).await.map_err(|e| e.to_string())? else { continue };
            let skip = if !matches!(status.as_str(), "succeeded" | "failed" | "canceled") {
                Some("run_not_terminal")
            } else if env.active {
                Some("active_workload")
            } else {
                None
            };
            if let Some(reason) = skip {
                let first = self.skipped.lock().map(|mut s| s.insert(env.namespace.clone())).unwrap_or(false);
                if first {
                    self.namespace_event(
                        run_id,
                        &corr,
                        "run.namespace.cleanup_skipped",
                        json!({"namespace": env.namespace, "reason": reason}),
                    )
                    .await;
                }
                continue;
            }
            match self.runtime.delete_environment(&env.namespace).await {
                Ok(()) => {
                    self.namespace_event(
                        run_id,
                        &corr,
                        "run.namespace.cleaned",
                        json!({"namespace": env.namespace, "reason": "ttl_expired"}),
                    )
                    .await
                }
                Err(e) => {
                    self.namespace_event(
                        run_id,
                        &corr,
                        "run.namespace.cleanup_failed",
                        json!({"namespace": env.namespace, "error": e.to_string()}),
                    )
                    .await
                }
            }
        }
        Ok(())
    }

    /// Deletes the namespaces of issues and pull requests that closed (recorded by ingest).
    pub async fn process_cleanups(&self) -> Result<(), String> {
        for work in runs::pending_cleanups(&self.pool, 20).await.map_err(|e| e.to_string())? {
            let mut error = None;
            let mut retry = false;
            for (run_id, namespace) in &work.namespaces {
                match self.runtime.delete_environment(namespace).await {
                    Ok(()) => {
                        self.namespace_event(
                            *run_id,
                            &work.correlation_id,
                            "run.namespace.delete_by_system",
                            json!({"namespace": namespace, "reason": "closed"}),
                        )
                        .await
                    }
                    Err(ck8s_domain::runtime::RuntimeError::Unavailable(e)) => {
                        retry = true;
                        error = Some(e);
                    }
                    Err(e) => {
                        self.namespace_event(
                            *run_id,
                            &work.correlation_id,
                            "run.namespace.cleanup_failed",
                            json!({"namespace": namespace, "error": e.to_string()}),
                        )
                        .await;
                        error = Some(e.to_string());
                    }
                }
            }
            if !retry {
                runs::finish_cleanup(&self.pool, work.id, error.is_none(), error.as_deref()).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    async fn reconcile(&self, run: &LeasedRun) -> Result<(), String> {
        if run.stale_reclaim_pending {
            self.event(run, "run.reclaimed_after_stale_lease", json!({"run_id": run.id})).await;
        }
        let (Some(namespace), Some(job_name)) = (&run.namespace, &run.job_name) else {
            // Claimed but never launched (the claimer died in between): launch it now.
            return self.launch(run).await;
        };
        let job = JobRef { namespace: namespace.clone(), job_name: job_name.clone() };
        match runs::sync_wait_pause(&self.pool, run.id, self.worker()).await {
            Ok(Some(e)) => tracing::info!(run_id = %run.id, event = e, "run wait changed"),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if runs::deadline_passed(&self.pool, run.id).await.map_err(|e| e.to_string())? {
            self.runtime.cancel(&job).await.map_err(|e| e.to_string())?;
            return self.finish(run, "failed", Some("run_timeout"), Some("the run exceeded its deadline"), "run.failed").await;
        }
        let state = self.runtime.status(&job).await.map_err(|e| e.to_string())?;
        if matches!(state, JobState::Succeeded | JobState::Failed { .. }) {
            self.capture_logs(run, &job).await;
        }
        match state {
            JobState::Succeeded => self.finish(run, "succeeded", None, None, "run.succeeded").await,
            JobState::Failed { exit_code: Some(42), .. } => {
                let m = "a revise run found no pull request or branch to continue; start the stage with its work label first";
                self.finish(run, "failed", Some("failed_precondition"), Some(m), "run.failed.precondition").await
            }
            JobState::Failed { exit_code: Some(3), .. } => {
                let m = "the agent changed files outside its stage's write scope; nothing was pushed (see the run's log)";
                self.finish(run, "failed", Some("write_scope_violation"), Some(m), "run.failed").await
            }
            JobState::Failed { reason, .. } => self.finish(run, "failed", Some("kubernetes_job_failed"), Some(&reason), "run.failed").await,
            // The previous holder died between recording the job and creating it: create it now.
            JobState::NotFound if run.stale_reclaim_pending => self.launch(run).await,
            JobState::NotFound => {
                self.finish(run, "failed", Some("kubernetes_job_not_found"), Some("the job disappeared"), "run.failed.job_not_found").await
            }
            JobState::Pending | JobState::Running => {
                self.extend_namespace_lease(run, namespace).await;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_safe() {
        assert_eq!(first12("8da5122c-ce2c-4eed-b375-1bc5f9bdabe9"), "8da5122cce2c");
        assert_eq!(sanitize("Codex-Issue_X/1"), "codex-issue-x-1");
        assert!(sanitize(&"a".repeat(100)).len() <= 63);
    }
}
