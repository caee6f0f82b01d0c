//! The Kubernetes objects of one run (product spec §5.6, §5.8), built as plain values so they can
//! be checked without a cluster: the namespace with its managed labels and lease annotations,
//! service account, Role and RoleBinding per access profile (never `secrets`), ResourceQuota, a
//! default-deny NetworkPolicy with the allowed egress, the per-run credentials Secret, and the Job
//! that references it (credentials never appear as plain env values). The Job's pod splits the run
//! (ADR-0015): the runner container has the Secret; the agent runs in a container of its own
//! with no Secret, no service-account token unless the access profile needs the cluster, and no
//! view of the runner's processes, and the two share only the agent's volume.

use ck8s_domain::runtime::{JobSpec, Placement};
use k8s_openapi::api::batch::v1::{Job, JobSpec as K8sJobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, KeyToPath, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, ProjectedVolumeSource, ResourceQuota, ResourceQuotaSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretEnvSource, SecurityContext, ServiceAccount, ServiceAccountTokenProjection, Toleration, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label marking what the worker manages; deletion refuses namespaces without it.
pub const MANAGED_BY: &str = "codex-k8s.dev/managed-by";
/// Its value.
pub const MANAGED_BY_VALUE: &str = "codex-k8s-worker";
/// Purpose label of run namespaces.
pub const PURPOSE: &str = "codex-k8s.dev/namespace-purpose";
/// Annotation the worker sets on a namespace it creates (value [`MANAGED_BY_VALUE`]). It prepares,
/// lists and deletes only namespaces that carry it: labels alone can be on anything.
pub const CREATED_BY: &str = "codex-k8s.dev/created-by";

/// Access profile of a run's service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessProfile {
    /// dev/qa/release lineage: full control of workloads in its namespace, no secrets.
    Candidate,
    /// postdeploy/ops: read-only, no exec, no secrets.
    ProductionReadonly,
}

impl AccessProfile {
    /// Name of the service account, Role and RoleBinding.
    pub fn object_name(self) -> &'static str {
        match self {
            AccessProfile::Candidate => "codex-runner",
            AccessProfile::ProductionReadonly => "codex-runner-readonly",
        }
    }
}

/// Facts about the run that go on its objects.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub run_id: String,
    pub correlation_id: String,
    pub project_id: String,
    pub issue_number: Option<i64>,
    pub agent_key: String,
    pub runtime_mode: String,
    /// Namespace lease TTL and its expiry (RFC 3339).
    pub lease_ttl: String,
    pub lease_expires_at: String,
    pub lease_updated_at: String,
}

fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>, annotations: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(String::from),
        labels: (!labels.is_empty()).then_some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Pod Security Admission: every pod of a run namespace must meet the `restricted` standard
/// (no privileged or host-namespace pods, no hostPath, non-root, no added capabilities), so a
/// candidate that may create pods still cannot become root on the node.
const POD_SECURITY: [(&str, &str); 4] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
    ("pod-security.kubernetes.io/audit", "restricted"),
    ("pod-security.kubernetes.io/warn", "restricted"),
];

fn run_namespace_labels(labels: &mut BTreeMap<String, String>) {
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    labels.insert(PURPOSE.into(), "run".into());
    for (k, v) in POD_SECURITY {
        labels.insert(k.into(), v.into());
    }
}

/// A run namespace from the labels and annotations the worker chose, plus the managed and Pod
/// Security labels.
pub fn namespace_with(name: &str, labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Namespace {
    let mut labels = labels.clone();
    run_namespace_labels(&mut labels);
    let mut annotations = annotations.clone();
    annotations.insert(CREATED_BY.into(), MANAGED_BY_VALUE.into());
    Namespace { metadata: meta(name, None, labels, annotations), ..Default::default() }
}

/// Whether the worker created this namespace: the managed labels and its creation marker.
pub fn is_owned(metadata: &ObjectMeta) -> bool {
    is_managed(metadata.labels.as_ref())
        && metadata.annotations.as_ref().and_then(|a| a.get(CREATED_BY)).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// The run namespace: managed labels and lease annotations.
pub fn namespace(name: &str, m: &RunMeta) -> Namespace {
    let mut labels = map(&[
        (MANAGED_BY, MANAGED_BY_VALUE),
        (PURPOSE, "run"),
        ("codex-k8s.dev/runtime-mode", &m.runtime_mode),
        ("codex-k8s.dev/project-id", &m.project_id),
        ("codex-k8s.dev/run-id", &m.run_id),
        ("codex-k8s.dev/agent-key", &m.agent_key),
    ]);
    if let Some(i) = m.issue_number {
        labels.insert("codex-k8s.dev/issue-number".into(), i.to_string());
    }
    run_namespace_labels(&mut labels);
    let annotations = map(&[
        ("codex-k8s.dev/correlation-id", &m.correlation_id),
        ("codex-k8s.dev/namespace-lease-ttl", &m.lease_ttl),
        ("codex-k8s.dev/namespace-lease-expires-at", &m.lease_expires_at),
        ("codex-k8s.dev/namespace-lease-updated-at", &m.lease_updated_at),
    ]);
    Namespace { metadata: meta(name, None, labels, annotations), ..Default::default() }
}

/// Whether a namespace carries the labels that allow the worker to delete it.
pub fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE) && l.get(PURPOSE).map(String::as_str) == Some("run")
    })
}

/// The run's service account.
pub fn service_account(ns: &str, profile: AccessProfile) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(profile.object_name(), Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()),
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Core kinds a candidate may manage. `secrets` is deliberately absent, and so are the quota and
/// limits that bound the namespace (a candidate may read them, not change them).
const CORE_WORKLOAD: [&str; 14] = [
    "pods",
    "pods/exec",
    "pods/attach",
    "pods/log",
    "pods/portforward",
    "services",
    "services/proxy",
    "configmaps",
    "persistentvolumeclaims",
    "events",
    "endpoints",
    "serviceaccounts",
    "replicationcontrollers",
    "podtemplates",
];

const READ: [&str; 3] = ["get", "list", "watch"];
const ALL_VERBS: [&str; 8] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

/// The Role of a profile.
pub fn role(ns: &str, profile: AccessProfile) -> Role {
    let rules = match profile {
        // Workloads, not the fences around them: no NetworkPolicy, quota, limits, RBAC or secrets.
        AccessProfile::Candidate => vec![
            rule(&[""], &CORE_WORKLOAD, &ALL_VERBS),
            rule(&[""], &["resourcequotas", "limitranges"], &READ),
            rule(&["apps", "batch", "autoscaling", "policy"], &["*"], &ALL_VERBS),
            rule(&["networking.k8s.io"], &["ingresses"], &ALL_VERBS),
            rule(&["networking.k8s.io"], &["networkpolicies"], &READ),
        ],
        AccessProfile::ProductionReadonly => vec![
            rule(
                &[""],
                &[
                    "pods",
                    "services",
                    "configmaps",
                    "persistentvolumeclaims",
                    "events",
                    "endpoints",
                    "resourcequotas",
                    "limitranges",
                    "serviceaccounts",
                    "replicationcontrollers",
                ],
                &READ,
            ),
            rule(&[""], &["pods/log"], &["get"]),
            rule(&["apps", "batch"], &["*"], &READ),
            rule(&["autoscaling"], &["horizontalpodautoscalers"], &READ),
            rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], &READ),
            rule(&["events.k8s.io"], &["events"], &READ),
        ],
    };
    Role { metadata: meta(profile.object_name(), Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()), rules: Some(rules) }
}

/// Binds the profile's Role to its service account.
pub fn role_binding(ns: &str, profile: AccessProfile) -> RoleBinding {
    RoleBinding {
        metadata: meta(profile.object_name(), Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: profile.object_name().into() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: profile.object_name().into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    }
}

/// `codex-run-quota`: at most `pods` pods (CPU and memory are deliberately not limited).
pub fn resource_quota(ns: &str, pods: u32) -> ResourceQuota {
    ResourceQuota {
        metadata: meta("codex-run-quota", Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([("pods".to_string(), Quantity(pods.to_string()))])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

/// `codex-run-limits`: what a container of the namespace gets when it asks for nothing, and the
/// most memory one may have, so a candidate's workloads cannot starve the node.
pub fn limit_range(ns: &str) -> LimitRange {
    LimitRange {
        metadata: meta("codex-run-limits", Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
                default: Some(quantities(&[("cpu", "2"), ("memory", "2Gi")])),
                max: Some(quantities(&[("memory", "16Gi")])),
                ..Default::default()
            }],
        }),
    }
}

fn port(protocol: &str, port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.into()), port: Some(IntOrString::Int(port)), ..Default::default() }
}

fn zone_selector(zones: &[&str]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
            key: "codex-k8s.dev/network-zone".into(),
            operator: "In".into(),
            values: Some(zones.iter().map(|z| z.to_string()).collect()),
        }]),
        ..Default::default()
    }
}

/// Addresses the run's web egress never reaches: the cloud metadata service (and all of
/// link-local), and the private and shared ranges where the cluster's pods, services and nodes
/// live; the platform is reached through its own rule.
pub const EGRESS_EXCEPT: [&str; 5] = ["169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/// The platform's namespace, selected by the name label Kubernetes itself sets on every namespace
/// (`kubernetes.io/metadata.name`): nothing has to label it, and no run can forge it.
pub fn platform_namespace_selector(platform_namespace: &str) -> LabelSelector {
    LabelSelector { match_labels: Some(map(&[("kubernetes.io/metadata.name", platform_namespace)])), ..Default::default() }
}

/// Default deny; ingress only from the platform's namespace and namespaces of the platform/system
/// zones; egress to cluster DNS, to the platform's pods on its ports (control-plane's gRPC
/// callbacks and its MCP endpoint: the same settings the runner dials) in the platform's
/// namespace, and TCP 80/443 to the internet outside [`EGRESS_EXCEPT`].
pub fn network_policy(ns: &str, platform_namespace: &str, platform_ports: &[i32]) -> NetworkPolicy {
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(map(&[("kubernetes.io/metadata.name", "kube-system")])),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector { match_labels: Some(map(&[("k8s-app", "kube-dns")])), ..Default::default() }),
            ..Default::default()
        }]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let platform = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(platform_namespace_selector(platform_namespace)),
            pod_selector: Some(LabelSelector { match_labels: Some(map(&[("app.kubernetes.io/name", "codex-k8s")])), ..Default::default() }),
            ..Default::default()
        }]),
        ports: Some(platform_ports.iter().map(|p| port("TCP", *p)).collect()),
    };
    let web = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock { cidr: "0.0.0.0/0".into(), except: Some(EGRESS_EXCEPT.iter().map(|c| c.to_string()).collect()) }),
            ..Default::default()
        }]),
        ports: Some(vec![port("TCP", 80), port("TCP", 443)]),
    };
    NetworkPolicy {
        metadata: meta("codex-run-default-deny", Some(ns), map(&[(MANAGED_BY, MANAGED_BY_VALUE)]), BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer { namespace_selector: Some(platform_namespace_selector(platform_namespace)), ..Default::default() },
                    NetworkPolicyPeer { namespace_selector: Some(zone_selector(&["platform", "system"])), ..Default::default() },
                ]),
                ports: None,
            }]),
            egress: Some(vec![dns, platform, web]),
        }),
    }
}

/// Name of the per-run credentials Secret.
pub fn secret_name(job_name: &str) -> String {
    format!("{job_name}-credentials").chars().take(63).collect()
}

/// The per-run Secret holding the job's credentials (created by the worker, which has the RBAC
/// for it; the run's own service account cannot read secrets). It is owned by its Job (`job_uid`),
/// so it goes when the Job goes: cancelled, or cleaned up after it finished.
pub fn credentials_secret(job: &JobSpec, job_uid: &str) -> Secret {
    let mut metadata = meta(
        &secret_name(&job.job_name),
        Some(&job.namespace),
        map(&[(MANAGED_BY, MANAGED_BY_VALUE), ("codex-k8s.dev/run-id", &job.run_id)]),
        BTreeMap::new(),
    );
    metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.job_name.clone(),
        uid: job_uid.into(),
        ..Default::default()
    }]);
    Secret { metadata, type_: Some("Opaque".into()), string_data: Some(job.secret_env.clone()), ..Default::default() }
}

/// Where the agent's volume (shared by both containers) is mounted: the job's contract.
pub use ck8s_domain::runtime::{AGENT_HOST_DIR, AGENT_VOLUME as AGENT_MOUNT};
/// Where the runner's own volume is mounted.
pub const RUNNER_MOUNT: &str = "/runner";
/// Where the agent container finds a service-account token when its profile needs the cluster
/// (the path Kubernetes clients look at).
pub const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The unprivileged user both containers run as.
pub const RUN_AS: i64 = 65532;

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: read_only.then_some(true), ..Default::default() }
}

fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        read_only_root_filesystem: Some(true),
        ..Default::default()
    }
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    ResourceRequirements { requests: Some(quantities(requests)), limits: Some(quantities(limits)), ..Default::default() }
}

/// The projected service-account token (with the cluster's CA and the namespace) the agent
/// container gets when its access profile needs the cluster: the pod itself mounts none.
fn token_volume() -> Volume {
    Volume {
        name: "agent-token".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), ..Default::default() }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector { field_path: "metadata.namespace".into(), ..Default::default() }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The run's Job: one attempt, a hard deadline, cleaned up after it finishes. Its pod has the
/// runner (`run`: the command, credentials from the Secret through `envFrom`, its own volume for
/// its clone) and the agent (`agent`: a sidecar running the host, which carries out
/// what the runner asks in the shared volume: `agent_command`). The Job ends with the runner;
/// Kubernetes then stops the sidecar. The pod goes where `placement` says.
pub fn job(spec: &JobSpec, placement: &Placement) -> Job {
    let labels = map(&[
        ("app.kubernetes.io/name", "codex-k8s-run"),
        ("app.kubernetes.io/managed-by", MANAGED_BY_VALUE),
        ("codex-k8s.dev/run-id", &spec.run_id),
        ("codex-k8s.dev/project-id", &spec.project_id),
    ]);
    let annotations = map(&[("codex-k8s.dev/correlation-id", &spec.correlation_id)]);
    let var = |k: &str, v: String| EnvVar { name: k.into(), value: Some(v), ..Default::default() };
    let mut env: Vec<EnvVar> = spec.env.iter().map(|(k, v)| var(k, v.clone())).collect();
    env.extend([
        var("CODEXK8S_RUN_WORKDIR", format!("{RUNNER_MOUNT}/run")),
        var("CODEXK8S_AGENT_WORKDIR", format!("{AGENT_MOUNT}/work")),
        var("CODEXK8S_AGENT_HOST_DIR", AGENT_HOST_DIR.to_string()),
    ]);
    let env_from = (!spec.secret_env.is_empty()).then(|| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: secret_name(&spec.job_name), optional: Some(false) }),
            ..Default::default()
        }]
    });
    let runner = Container {
        name: "run".into(),
        image: Some(spec.image.clone()),
        command: Some(spec.command.clone()),
        env: Some(env),
        env_from,
        volume_mounts: Some(vec![
            mount("agent", AGENT_MOUNT, false),
            mount("runner", RUNNER_MOUNT, false),
            mount("runner-tmp", "/tmp", false),
        ]),
        security_context: Some(locked_down()),
        resources: Some(resources(&[("cpu", "100m"), ("memory", "256Mi")], &[("cpu", "2"), ("memory", "2Gi")])),
        ..Default::default()
    };
    let cluster_access = spec.service_account.is_some();
    let mut agent_mounts = vec![mount("agent", AGENT_MOUNT, false), mount("agent-tmp", "/tmp", false)];
    if cluster_access {
        agent_mounts.push(mount("agent-token", TOKEN_MOUNT, true));
    }
    let agent = Container {
        name: "agent".into(),
        image: Some(spec.image.clone()),
        command: Some(spec.agent_command.clone()),
        env: Some(vec![var("HOME", format!("{AGENT_MOUNT}/work"))]),
        // A sidecar: started before the runner, stopped once the runner has ended.
        restart_policy: Some("Always".into()),
        volume_mounts: Some(agent_mounts),
        security_context: Some(locked_down()),
        resources: Some(resources(&[("cpu", "500m"), ("memory", "1Gi")], &[("cpu", "4"), ("memory", "8Gi")])),
        ..Default::default()
    };
    let empty = |name: &str| Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() };
    let mut volumes = vec![empty("agent"), empty("runner"), empty("runner-tmp"), empty("agent-tmp")];
    if cluster_access {
        volumes.push(token_volume());
    }
    Job {
        metadata: meta(&spec.job_name, Some(&spec.namespace), labels.clone(), annotations.clone()),
        spec: Some(K8sJobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(spec.active_deadline.as_secs()).unwrap_or(i64::MAX)),
            // No TTL: a finished Job (its outcome) stays until the worker has read it, however
            // long the workers are down; it goes with its namespace.
            ttl_seconds_after_finished: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), annotations: Some(annotations), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: spec.service_account.clone(),
                    // No container gets a token by default; the agent's is projected above.
                    automount_service_account_token: Some(false),
                    share_process_namespace: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    init_containers: Some(vec![agent]),
                    containers: vec![runner],
                    volumes: Some(volumes),
                    node_selector: (!placement.node_selector.is_empty()).then(|| placement.node_selector.clone()),
                    tolerations: (!placement.tolerated_taints.is_empty()).then(|| {
                        placement
                            .tolerated_taints
                            .iter()
                            .map(|key| Toleration { key: Some(key.clone()), operator: Some("Exists".into()), ..Default::default() })
                            .collect()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
