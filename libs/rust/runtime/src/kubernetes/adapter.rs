//! `KubernetesRuntime`: the job-runtime port on a real cluster through kube-rs. Every object is
//! written with server-side apply under the field manager `codex-k8s-worker`, so preparing or
//! launching twice changes nothing.

use super::specs::{self, AccessProfile};
use ck8s_domain::runtime::{
    BoxFuture, EnvironmentInfo, JobRef, JobRuntime, JobSpec, JobState, RunEnvironment, RuntimeError, validate_name,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The field manager of every object the worker applies.
pub const FIELD_MANAGER: &str = "codex-k8s-worker";

/// Settings of the adapter.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    pub quota_pods: u32,
    /// The platform's own namespace (`CODEXK8S_PRODUCTION_NAMESPACE`), the one run pods may reach.
    pub platform_namespace: String,
    /// control-plane's ports a run pod may reach (its gRPC callbacks, its MCP endpoint), allowed
    /// by the run's network policy.
    pub platform_ports: Vec<i32>,
    /// Where run pods may be scheduled.
    pub placement: ck8s_domain::runtime::Placement,
}

/// The Kubernetes job runtime.
#[derive(Clone)]
pub struct KubernetesRuntime {
    client: Client,
    settings: KubernetesSettings,
}

fn api_err(e: kube::Error) -> RuntimeError {
    match &e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => RuntimeError::Invalid(s.message.clone()),
        kube::Error::Api(s) if s.code == 403 => RuntimeError::Refused(s.message.clone()),
        // A conflict, throttling or a server error passes: worth another try shortly.
        kube::Error::Api(s) if s.code == 409 || s.code == 429 || s.code >= 500 => {
            RuntimeError::Unavailable(format!("{} ({})", s.message, s.code))
        }
        kube::Error::Api(s) => RuntimeError::Other(format!("{} ({})", s.message, s.code)),
        _ => RuntimeError::Unavailable(e.to_string()),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The state of a Job from its status and its pods (product spec §5.8): success and failure
/// counts decide; a pod stuck pulling its image or failing to create its container fails the
/// run at once instead of waiting for the deadline.
pub fn job_state(job: &Job, pods: &[Pod]) -> JobState {
    const STUCK: [&str; 6] =
        ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"];
    let status = job.status.clone().unwrap_or_default();
    if status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    if status.failed.unwrap_or(0) > 0 {
        let reason = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .and_then(|c| c.reason.or(c.message))
            .unwrap_or_else(|| "job failed".into());
        return JobState::Failed { reason, exit_code: run_exit_code(pods) };
    }
    for pod in pods {
        let Some(ps) = &pod.status else { continue };
        if ps.phase.as_deref() == Some("Failed") {
            // The pod can fail before the Job controller counts it: its exit code is already known.
            let reason = ps.reason.clone().unwrap_or_else(|| "pod failed".into());
            return JobState::Failed { reason, exit_code: run_exit_code(std::slice::from_ref(pod)) };
        }
        // The agent's sidecar is an init container: stuck there is stuck too.
        for cs in ps.container_statuses.iter().flatten().chain(ps.init_container_statuses.iter().flatten()) {
            if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = w.reason.clone().unwrap_or_default();
                if STUCK.contains(&reason.as_str()) || reason.ends_with("BackOff") {
                    return JobState::Failed { reason, exit_code: None };
                }
            }
        }
    }
    // Running once the runner's container has started: it read its credentials from the Secret
    // then, so they may be withdrawn. A pod the Job counts as active may still be creating it.
    if status.active.unwrap_or(0) > 0 && pods.iter().any(runner_started) { JobState::Running } else { JobState::Pending }
}

/// Whether the pod's `run` container has been created and started (running or already ended).
fn runner_started(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == "run")
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
}

/// The exit code of the terminated `run` container of any of `pods`.
fn run_exit_code(pods: &[Pod]) -> Option<i32> {
    pods.iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
        .filter(|c| c.name == "run")
        .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code))
}

impl KubernetesRuntime {
    /// A runtime on the cluster of the current kubeconfig or in-cluster service account.
    pub async fn from_environment(settings: KubernetesSettings) -> Result<Self, RuntimeError> {
        let client =
            Client::try_default().await.map_err(|e| RuntimeError::Unavailable(format!("no Kubernetes client configuration: {e}")))?;
        Ok(Self { client, settings })
    }

    /// A runtime on a given client.
    pub fn new(client: Client, settings: KubernetesSettings) -> Self {
        Self { client, settings }
    }

    async fn apply<K>(&self, api: Api<K>, obj: &K) -> Result<(), RuntimeError>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().ok_or_else(|| RuntimeError::Invalid("object without a name".into()))?;
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await.map_err(api_err)?;
        Ok(())
    }

    async fn pods_of(&self, job: &JobRef) -> Result<Vec<Pod>, RuntimeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace);
        Ok(pods.list(&ListParams::default().labels(&format!("job-name={}", job.job_name))).await.map_err(api_err)?.items)
    }
}

impl JobRuntime for KubernetesRuntime {
    fn prepare<'a>(&'a self, env: &'a RunEnvironment) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &env.namespace)?;
            let ns = env.namespace.as_str();
            // Only a namespace it creates itself: an existing one without the worker's marker
            // (the platform's own, anyone's) is never labelled, fenced or leased.
            let wanted = specs::namespace_with(ns, &env.labels, &env.annotations);
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            let existing = match namespaces.get(ns).await {
                Ok(found) => Some(found),
                Err(e) if is_not_found(&e) => match namespaces.create(&kube::api::PostParams::default(), &wanted).await {
                    Ok(_) => None,
                    Err(kube::Error::Api(s)) if s.code == 409 => Some(namespaces.get(ns).await.map_err(api_err)?),
                    Err(e) => return Err(api_err(e)),
                },
                Err(e) => return Err(api_err(e)),
            };
            if existing.is_some_and(|found| !specs::is_owned(&found.metadata)) {
                return Err(RuntimeError::Refused(format!(
                    "namespace {ns} exists and was not created by codex-k8s; it is left untouched (runs get namespaces of their own)"
                )));
            }
            self.apply(namespaces, &wanted).await?;
            let profile = match env.access_profile.as_deref() {
                Some("candidate") => Some(AccessProfile::Candidate),
                Some("production-readonly") => Some(AccessProfile::ProductionReadonly),
                _ => None,
            };
            if let Some(p) = profile {
                self.apply(Api::<ServiceAccount>::namespaced(self.client.clone(), ns), &specs::service_account(ns, p)).await?;
                self.apply(Api::<Role>::namespaced(self.client.clone(), ns), &specs::role(ns, p)).await?;
                self.apply(Api::<RoleBinding>::namespaced(self.client.clone(), ns), &specs::role_binding(ns, p)).await?;
            }
            self.apply(Api::<ResourceQuota>::namespaced(self.client.clone(), ns), &specs::resource_quota(ns, self.settings.quota_pods))
                .await?;
            self.apply(Api::<LimitRange>::namespaced(self.client.clone(), ns), &specs::limit_range(ns)).await?;
            self.apply(
                Api::<NetworkPolicy>::namespaced(self.client.clone(), ns),
                &specs::network_policy(ns, &self.settings.platform_namespace, &self.settings.platform_ports),
            )
            .await
        })
    }

    fn environments<'a>(&'a self) -> BoxFuture<'a, Result<Vec<EnvironmentInfo>, RuntimeError>> {
        Box::pin(async move {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let selector = format!("{}={},{}=run", specs::MANAGED_BY, specs::MANAGED_BY_VALUE, specs::PURPOSE);
            let mut out = Vec::new();
            for ns in api.list(&ListParams::default().labels(&selector)).await.map_err(api_err)?.items {
                let name = ns.metadata.name.clone().unwrap_or_default();
                if ns.metadata.deletion_timestamp.is_some() || !specs::is_owned(&ns.metadata) {
                    continue; // already terminating, or labelled by someone else
                }
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &name);
                let active_pod = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(api_err)?
                    .items
                    .iter()
                    .any(|p| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running" | "Pending")));
                let jobs: Api<Job> = Api::namespaced(self.client.clone(), &name);
                let active_job = jobs
                    .list(&ListParams::default())
                    .await
                    .map_err(api_err)?
                    .items
                    .iter()
                    .any(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0);
                let mut metadata = ns.metadata.labels.clone().unwrap_or_default();
                metadata.extend(ns.metadata.annotations.clone().unwrap_or_default());
                out.push(EnvironmentInfo { namespace: name, metadata, active: active_pod || active_job });
            }
            Ok(out)
        })
    }

    fn delete_environment<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", namespace)?;
            let api: Api<Namespace> = Api::all(self.client.clone());
            let ns = match api.get(namespace).await {
                Ok(ns) => ns,
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(api_err(e)),
            };
            if !specs::is_owned(&ns.metadata) {
                return Err(RuntimeError::Refused(format!("namespace {namespace} was not created by codex-k8s; it is never deleted")));
            }
            match api.delete(namespace, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(api_err(e)),
            }
        })
    }

    fn launch<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<JobRef, RuntimeError>> {
        Box::pin(async move {
            validate_name("namespace", &spec.namespace)?;
            validate_name("job name", &spec.job_name)?;
            // The Job first, suspended (no pod yet), so the Secret can name it as its owner and go
            // with it; then the Job is released. A Job found suspended was left so by a launch that
            // stopped half-way: it is finished now. One found running was launched already.
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), &spec.namespace);
            let mut job = specs::job(spec, &self.settings.placement);
            let existing = jobs.get_opt(&spec.job_name).await.map_err(api_err)?;
            if existing.as_ref().is_some_and(|j| j.spec.as_ref().and_then(|s| s.suspend) != Some(true)) {
                return Ok(JobRef { namespace: spec.namespace.clone(), job_name: spec.job_name.clone() });
            }
            if existing.is_none() {
                if let Some(s) = job.spec.as_mut() {
                    s.suspend = Some(true);
                }
                self.apply(jobs.clone(), &job).await?;
            }
            let uid = jobs.get(&spec.job_name).await.map_err(api_err)?.metadata.uid.unwrap_or_default();
            if !spec.secret_env.is_empty() {
                self.apply(Api::<Secret>::namespaced(self.client.clone(), &spec.namespace), &specs::credentials_secret(spec, &uid)).await?;
            }
            if let Some(s) = job.spec.as_mut() {
                s.suspend = Some(false);
            }
            self.apply(jobs, &job).await?;
            Ok(JobRef { namespace: spec.namespace.clone(), job_name: spec.job_name.clone() })
        })
    }

    fn status<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<JobState, RuntimeError>> {
        Box::pin(async move {
            let api: Api<Job> = Api::namespaced(self.client.clone(), &job.namespace);
            let j = match api.get(&job.job_name).await {
                Ok(j) => j,
                Err(e) if is_not_found(&e) => return Ok(JobState::NotFound),
                Err(e) => return Err(api_err(e)),
            };
            Ok(job_state(&j, &self.pods_of(job).await?))
        })
    }

    fn logs<'a>(&'a self, job: &'a JobRef, tail_lines: Option<usize>) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let Some(pod) = self.pods_of(job).await?.into_iter().next() else { return Ok(String::new()) };
            let name = pod.metadata.name.unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace);
            // Bounded like the local runtime's read: the end of the runner's log, at most 1 MiB.
            let params = LogParams {
                container: Some("run".into()),
                tail_lines: tail_lines.map(|n| n as i64),
                limit_bytes: Some(i64::try_from(crate::local::LOG_READ_CAP).unwrap_or(i64::MAX)),
                ..Default::default()
            };
            api.logs(&name, &params).await.map_err(api_err)
        })
    }

    fn withdraw_credentials<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &job.namespace);
            match api.delete(&specs::secret_name(&job.job_name), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(api_err(e)),
            }
        })
    }

    fn cancel<'a>(&'a self, job: &'a JobRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let api: Api<Job> = Api::namespaced(self.client.clone(), &job.namespace);
            let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
            match api.delete(&job.job_name, &params).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(api_err(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus};

    fn job_with(status: JobStatus) -> Job {
        Job { status: Some(status), ..Default::default() }
    }

    fn pod_waiting(reason: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "run".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: None }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn job_status_maps_to_run_outcomes() {
        assert_eq!(job_state(&job_with(JobStatus { succeeded: Some(1), ..Default::default() }), &[]), JobState::Succeeded);
        let active = job_with(JobStatus { active: Some(1), ..Default::default() });
        assert_eq!(job_state(&active, &[pod_running()]), JobState::Running);
        assert_eq!(job_state(&job_with(JobStatus::default()), &[]), JobState::Pending);

        let failed = JobStatus {
            failed: Some(1),
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("DeadlineExceeded".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let pod = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "run".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated { exit_code: 42, ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            job_state(&job_with(failed), std::slice::from_ref(&pod)),
            JobState::Failed { reason: "DeadlineExceeded".into(), exit_code: Some(42) }
        );

        // The pod failed before the Job controller counted it: the exit code is known already.
        let mut failed_pod = pod;
        if let Some(ps) = failed_pod.status.as_mut() {
            ps.phase = Some("Failed".into());
        }
        let still_active = job_with(JobStatus { active: Some(1), ..Default::default() });
        assert_eq!(job_state(&still_active, &[failed_pod]), JobState::Failed { reason: "pod failed".into(), exit_code: Some(42) });
    }

    #[test]
    fn pods_stuck_on_images_or_containers_fail_at_once() {
        let active = job_with(JobStatus { active: Some(1), ..Default::default() });
        for reason in ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff"] {
            assert_eq!(job_state(&active, &[pod_waiting(reason)]), JobState::Failed { reason: reason.into(), exit_code: None }, "{reason}");
        }
        assert_eq!(job_state(&active, &[pod_waiting("ContainerCreating")]), JobState::Pending);
    }

    /// Active is not running: the Job counts its pod from creation on, but the runner reads its
    /// credentials only when its container is created, so until it has started the run is
    /// pending (and its credentials are not withdrawn). A real node showed the difference.
    #[test]
    fn a_job_runs_once_its_runner_container_has_started_not_when_its_pod_exists() {
        let active = job_with(JobStatus { active: Some(1), ..Default::default() });
        assert_eq!(job_state(&active, &[]), JobState::Pending, "no pod yet");
        let mut sidecar_only = pod_running();
        if let Some(ps) = sidecar_only.status.as_mut() {
            ps.init_container_statuses = ps.container_statuses.take().map(|mut c| {
                c[0].name = "agent".into();
                c
            });
        }
        assert_eq!(job_state(&active, &[sidecar_only]), JobState::Pending, "only the agent's sidecar runs");
        assert_eq!(job_state(&active, &[pod_running()]), JobState::Running);
    }

    fn pod_running() -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "run".into(),
                    state: Some(ContainerState { running: Some(Default::default()), ..Default::default() }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
