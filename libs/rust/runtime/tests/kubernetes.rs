//! The Kubernetes job runtime against a real API server (`tools/test-cluster`): etcd,
//! kube-apiserver, kube-controller-manager (the Job and namespace controllers) and kube-scheduler,
//! with kwok playing the node. kwok runs nothing; it writes pod status: a Job's pod becomes Running
//! and then finishes after `KWOK_RUN_DURATION`, failed with `KWOK_EXIT_CODE` when that is not 0.
//! The tests named `real_node_…` place their pods on the cluster's real node instead, where they run
//! in containers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_domain::runtime::{JobRef, JobRuntime, JobSpec, JobState, RunEnvironment};
use ck8s_runtime::kubernetes::adapter::FIELD_MANAGER;
use ck8s_runtime::{KubernetesRuntime, KubernetesSettings};
use ck8s_testkit::cluster;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn settings() -> KubernetesSettings {
    KubernetesSettings {
        quota_pods: 4,
        platform_namespace: "codex-k8s-prod".into(),
        platform_ports: vec![9090, 8081],
        placement: Default::default(),
    }
}

async fn runtime() -> (KubernetesRuntime, Client) {
    let client = cluster::client().await;
    (KubernetesRuntime::new(client.clone(), settings()), client)
}

fn environment(ns: &str, profile: Option<&str>) -> RunEnvironment {
    RunEnvironment {
        namespace: ns.into(),
        labels: BTreeMap::from([("codex-k8s.dev/run-id".into(), "run-1".into()), ("codex-k8s.dev/agent-key".into(), "dev".into())]),
        annotations: BTreeMap::from([
            ("codex-k8s.dev/correlation-id".into(), "corr-1".into()),
            ("codex-k8s.dev/namespace-lease-expires-at".into(), "2030-01-01T00:00:00+00:00".into()),
        ]),
        access_profile: profile.map(String::from),
    }
}

fn job_spec(ns: &str, name: &str, env: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        run_id: "run-1".into(),
        correlation_id: "corr-1".into(),
        project_id: "proj-1".into(),
        namespace: ns.into(),
        job_name: name.into(),
        image: "registry.invalid/codex-k8s/agent-runner:test".into(),
        command: vec!["agent-runner".into()],
        agent_command: vec!["agent-runner".into(), "agent-host".into(), "/agent/host".into()],
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        secret_env: BTreeMap::from([("CODEXK8S_RUN_TOKEN".into(), "run-token-canary".into())]),
        active_deadline: Duration::from_secs(600),
        service_account: None,
    }
}

async fn get<K>(client: &Client, ns: Option<&str>, name: &str) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns.unwrap_or("default"));
    api.get(name).await.unwrap_or_else(|e| panic!("{} {name} in {ns:?}: {e}", K::kind(&K::DynamicType::default())))
}

/// Resource versions (the Job's generation) of everything `prepare` and `launch` write in `ns`.
async fn versions(client: &Client, ns: &str, profile_objects: &str, job: &str) -> Vec<(String, String)> {
    let nsobj: Namespace = Api::all(client.clone()).get(ns).await.unwrap();
    let mut out = vec![("namespace".to_string(), nsobj.resource_version().unwrap_or_default())];
    out.push(("serviceaccount".into(), get::<ServiceAccount>(client, Some(ns), profile_objects).await.resource_version().unwrap()));
    out.push(("role".into(), get::<Role>(client, Some(ns), profile_objects).await.resource_version().unwrap()));
    out.push(("rolebinding".into(), get::<RoleBinding>(client, Some(ns), profile_objects).await.resource_version().unwrap()));
    // The quota controller writes the quota's status as pods come and go, so its spec and the time
    // of our last apply stand for it.
    let quota: ResourceQuota = get(client, Some(ns), "codex-run-quota").await;
    out.push(("quota spec".into(), format!("{:?}", quota.spec)));
    out.push(("quota applied at".into(), applied_at(&quota)));
    out.push(("netpol".into(), get::<NetworkPolicy>(client, Some(ns), "codex-run-default-deny").await.resource_version().unwrap()));
    out.push(("secret".into(), get::<Secret>(client, Some(ns), &format!("{job}-credentials")).await.resource_version().unwrap()));
    // The Job's status moves with its pod, so its spec generation stands for it.
    out.push(("job generation".into(), get::<Job>(client, Some(ns), job).await.metadata.generation.unwrap_or_default().to_string()));
    out
}

/// When our field manager last applied the object.
fn applied_at<K: Resource>(obj: &K) -> String {
    obj.meta()
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply"))
        .and_then(|m| m.time.as_ref())
        .map(|t| format!("{:?}", t.0))
        .unwrap_or_default()
}

async fn wait_state(rt: &KubernetesRuntime, job: &JobRef, done: impl Fn(&JobState) -> bool, within: Duration) -> JobState {
    let started = Instant::now();
    loop {
        let s = rt.status(job).await.unwrap();
        if done(&s) || started.elapsed() > within {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pod of a Job, once the Job controller has made it.
async fn wait_pod(client: &Client, ns: &str, job: &str) -> k8s_openapi::api::core::v1::Pod {
    let started = Instant::now();
    loop {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap();
        if let Some(p) = pods.items.into_iter().next() {
            return p;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the Job controller made no pod for {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prepare_and_launch_create_exactly_the_run_objects_and_repeating_changes_nothing() {
    let (rt, client) = runtime().await;
    for (profile, object) in [("candidate", "codex-runner"), ("production-readonly", "codex-runner-readonly")] {
        let ns = cluster::unique_name("ck8s-prep");
        let env = environment(&ns, Some(profile));
        rt.prepare(&env).await.unwrap();
        let mut spec = job_spec(&ns, "run-job", &[("KWOK_RUN_DURATION", "600s"), ("CODEXK8S_RUN_ID", "run-1")]);
        spec.service_account = Some(object.into());
        rt.launch(&spec).await.unwrap();

        let nsobj: Namespace = Api::all(client.clone()).get(&ns).await.unwrap();
        let labels = nsobj.labels();
        assert_eq!(labels.get("codex-k8s.dev/managed-by").map(String::as_str), Some("codex-k8s-worker"));
        assert_eq!(labels.get("codex-k8s.dev/namespace-purpose").map(String::as_str), Some("run"));
        assert_eq!(labels.get("codex-k8s.dev/run-id").map(String::as_str), Some("run-1"));
        assert_eq!(nsobj.annotations().get("codex-k8s.dev/correlation-id").map(String::as_str), Some("corr-1"));
        assert_eq!(
            nsobj.annotations().get("codex-k8s.dev/namespace-lease-expires-at").map(String::as_str),
            Some("2030-01-01T00:00:00+00:00")
        );
        let managers: Vec<String> =
            nsobj.managed_fields().iter().filter(|m| m.operation.as_deref() == Some("Apply")).filter_map(|m| m.manager.clone()).collect();
        assert_eq!(managers, vec![FIELD_MANAGER.to_string()], "server-side apply under the named field manager");

        // Exactly the expected objects of our own kinds (the controller manager adds the default
        // service account and the root CA config map; those are Kubernetes', not ours).
        let sas: Vec<String> = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels("codex-k8s.dev/managed-by=codex-k8s-worker"))
            .await
            .unwrap()
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        assert_eq!(sas, vec![object.to_string()]);
        let roles: Vec<String> =
            Api::<Role>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().iter().map(|r| r.name_any()).collect();
        assert_eq!(roles, vec![object.to_string()]);
        let rb: RoleBinding = get(&client, Some(&ns), object).await;
        assert_eq!(rb.role_ref.name, object);
        assert_eq!(rb.subjects.unwrap()[0].name, object);
        let quota: ResourceQuota = get(&client, Some(&ns), "codex-run-quota").await;
        assert_eq!(quota.spec.unwrap().hard.unwrap()["pods"].0, "4");
        let np: NetworkPolicy = get(&client, Some(&ns), "codex-run-default-deny").await;
        assert_eq!(np.spec.unwrap().policy_types.unwrap(), vec!["Ingress".to_string(), "Egress".to_string()]);
        let secrets: Vec<String> = Api::<Secret>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .iter()
            .map(|s| s.name_any())
            .collect();
        assert_eq!(secrets, vec!["run-job-credentials".to_string()]);
        let job: Job = get(&client, Some(&ns), "run-job").await;
        let pod_spec = job.spec.clone().unwrap().template.spec.unwrap();
        let container = &pod_spec.containers[0];
        assert!(
            container.env.iter().flatten().all(|e| e.name != "CODEXK8S_RUN_TOKEN"),
            "credentials come through envFrom, never as plain env values"
        );
        assert_eq!(container.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "run-job-credentials");
        assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
        assert_eq!(job.spec.as_ref().unwrap().suspend, Some(false), "released once its Secret exists");
        let secret: Secret = get(&client, Some(&ns), "run-job-credentials").await;
        let owner = &secret.metadata.owner_references.as_ref().expect("owned by the Job")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", job.metadata.uid.as_deref().unwrap()));
        // The pod the Job controller made, as admission left it: the agent's sidecar has no
        // Secret, and only it has a service-account token (the profile needs the cluster); the
        // runner has none.
        let pod = wait_pod(&client, &ns, "run-job").await;
        let pod_spec = pod.spec.unwrap();
        assert_eq!(pod_spec.automount_service_account_token, Some(false));
        let agent = &pod_spec.init_containers.as_ref().expect("the agent's sidecar")[0];
        assert_eq!((agent.name.as_str(), agent.restart_policy.as_deref()), ("agent", Some("Always")));
        assert!(agent.env_from.is_none() && agent.env.iter().flatten().all(|e| !e.name.starts_with("CODEXK8S_")));
        let token_at = |c: &k8s_openapi::api::core::v1::Container| {
            c.volume_mounts.iter().flatten().any(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount")
        };
        assert!(token_at(agent), "the agent may reach the cluster its profile allows");
        assert!(!token_at(&pod_spec.containers[0]), "the runner holds no service-account token");
        let jobs = Api::<Job>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
        assert_eq!(jobs.items.len(), 1);

        // Preparing and launching again is a no-op: no object gets a new resource version.
        let before = versions(&client, &ns, object, "run-job").await;
        rt.prepare(&env).await.unwrap();
        let again = rt.launch(&spec).await.unwrap();
        assert_eq!(again, JobRef { namespace: ns.clone(), job_name: "run-job".into() });
        let after = versions(&client, &ns, object, "run-job").await;
        assert_eq!(before, after, "a second prepare and launch must not change any object");
        rt.cancel(&again).await.unwrap();
        rt.delete_environment(&ns).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_policy_selects_the_platforms_namespace_as_the_cluster_labels_it() {
    let client = cluster::client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The platform's namespace as an installer makes it: no labels of ours at all.
    let platform = cluster::unique_name("ck8s-platform");
    let plain: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": platform}})).unwrap();
    namespaces.create(&PostParams::default(), &plain).await.unwrap();
    let rt = KubernetesRuntime::new(client.clone(), KubernetesSettings { platform_namespace: platform.clone(), ..settings() });
    let ns = cluster::unique_name("ck8s-np");
    rt.prepare(&environment(&ns, None)).await.unwrap();

    // The policy as the API server stored it: its platform peers select exactly that namespace.
    let np: NetworkPolicy = get(&client, Some(&ns), "codex-run-default-deny").await;
    let spec = np.spec.unwrap();
    let egress_peer = spec.egress.unwrap()[1].to.clone().unwrap()[0].namespace_selector.clone().unwrap();
    let ingress_peer = spec.ingress.unwrap()[0].from.clone().unwrap()[0].namespace_selector.clone().unwrap();
    for selector in [egress_peer, ingress_peer] {
        let labels = selector.match_labels.unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let matched: Vec<String> =
            namespaces.list(&ListParams::default().labels(&labels)).await.unwrap().items.iter().map(|n| n.name_any()).collect();
        assert_eq!(matched, vec![platform.clone()], "selector {labels}");
    }
    rt.delete_environment(&ns).await.unwrap();
    namespaces.delete(&platform, &Default::default()).await.unwrap();
}

#[tokio::test]
async fn a_namespace_the_worker_did_not_create_is_never_prepared_listed_or_deleted() {
    let (rt, client) = runtime().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Someone else's namespace — the platform's own, say — even with the run labels on it.
    let ns = cluster::unique_name("ck8s-foreign");
    let foreign: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns, "labels": {
        "codex-k8s.dev/managed-by": "codex-k8s-worker", "codex-k8s.dev/namespace-purpose": "run", "team": "platform"}}}))
    .unwrap();
    namespaces.create(&PostParams::default(), &foreign).await.unwrap();

    match rt.prepare(&environment(&ns, Some("candidate"))).await {
        Err(ck8s_domain::runtime::RuntimeError::Refused(m)) => assert!(m.contains("not created by codex-k8s"), "{m}"),
        other => panic!("a foreign namespace was prepared: {other:?}"),
    }
    let after = namespaces.get(&ns).await.unwrap();
    assert!(
        !after.labels().contains_key("pod-security.kubernetes.io/enforce") && after.labels()["team"] == "platform",
        "its labels are as they were: {:?}",
        after.labels()
    );
    assert!(after.annotations().is_empty(), "no lease, no marker: {:?}", after.annotations());
    assert!(Api::<NetworkPolicy>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().items.is_empty());
    assert!(Api::<ResourceQuota>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().items.is_empty());
    assert!(Api::<Role>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().items.is_empty());

    assert!(rt.environments().await.unwrap().iter().all(|e| e.namespace != ns), "not listed for the sweeper");
    match rt.delete_environment(&ns).await {
        Err(ck8s_domain::runtime::RuntimeError::Refused(m)) => assert!(m.contains("never deleted"), "{m}"),
        other => panic!("a foreign namespace was deleted: {other:?}"),
    }
    assert!(namespaces.get(&ns).await.unwrap().metadata.deletion_timestamp.is_none());
    namespaces.delete(&ns, &Default::default()).await.unwrap();

    // A namespace it created itself is prepared again and deleted as before.
    let own = cluster::unique_name("ck8s-own");
    rt.prepare(&environment(&own, None)).await.unwrap();
    rt.prepare(&environment(&own, None)).await.unwrap();
    assert!(rt.environments().await.unwrap().iter().any(|e| e.namespace == own));
    rt.delete_environment(&own).await.unwrap();
}

async fn allowed(client: &Client, user: &str, ns: &str, verb: &str, group: &str, resource: &str, sub: Option<&str>) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), "system:authenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: sub.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let out = api.create(&PostParams::default(), &review).await.unwrap();
    out.status.unwrap().allowed
}

#[tokio::test(flavor = "multi_thread")]
async fn run_service_accounts_never_read_secrets_and_the_readonly_profile_changes_nothing() {
    let (rt, client) = runtime().await;
    let cand_ns = cluster::unique_name("ck8s-rbac-c");
    let ro_ns = cluster::unique_name("ck8s-rbac-r");
    rt.prepare(&environment(&cand_ns, Some("candidate"))).await.unwrap();
    rt.prepare(&environment(&ro_ns, Some("production-readonly"))).await.unwrap();
    let cand = format!("system:serviceaccount:{cand_ns}:codex-runner");
    let ro = format!("system:serviceaccount:{ro_ns}:codex-runner-readonly");

    // Positive controls: the reviews can say yes.
    assert!(allowed(&client, &cand, &cand_ns, "create", "apps", "deployments", None).await);
    assert!(allowed(&client, &cand, &cand_ns, "create", "", "pods", Some("exec")).await);
    assert!(allowed(&client, &ro, &ro_ns, "list", "", "pods", None).await);
    assert!(allowed(&client, &ro, &ro_ns, "get", "", "pods", Some("log")).await);

    for (user, ns) in [(&cand, &cand_ns), (&ro, &ro_ns)] {
        for verb in ["get", "list", "watch", "create"] {
            assert!(!allowed(&client, user, ns, verb, "", "secrets", None).await, "{user} must not {verb} secrets");
        }
    }
    for (verb, group, resource, sub) in [
        ("create", "", "pods", None),
        ("create", "", "pods", Some("exec")),
        ("delete", "", "pods", None),
        ("create", "apps", "deployments", None),
        ("patch", "apps", "deployments", None),
        ("delete", "batch", "jobs", None),
        ("update", "", "configmaps", None),
    ] {
        assert!(!allowed(&client, &ro, &ro_ns, verb, group, resource, sub).await, "read-only must not {verb} {resource} {sub:?}");
    }
    // The fences of the namespace hold against a candidate too.
    for (verb, group, resource) in [
        ("delete", "networking.k8s.io", "networkpolicies"),
        ("create", "networking.k8s.io", "networkpolicies"),
        ("patch", "", "resourcequotas"),
        ("delete", "", "limitranges"),
        ("create", "rbac.authorization.k8s.io", "roles"),
        ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ] {
        assert!(!allowed(&client, &cand, &cand_ns, verb, group, resource, None).await, "a candidate must not {verb} {resource}");
    }
    // Neither profile reaches another namespace.
    assert!(!allowed(&client, &cand, &ro_ns, "create", "apps", "deployments", None).await);

    // RBAC lets a candidate create pods; Pod Security admission is what stops one that could
    // make it root on the node (`real_node_pod_security_refuses_a_privileged_pod_in_a_run_namespace`).
    rt.delete_environment(&cand_ns).await.unwrap();
    rt.delete_environment(&ro_ns).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_controller_and_kwok_drive_jobs_to_success_and_failure_and_cancel_removes_the_pods() {
    let (rt, client) = runtime().await;
    let ns = cluster::unique_name("ck8s-jobs");
    rt.prepare(&environment(&ns, None)).await.unwrap();

    let ok = rt.launch(&job_spec(&ns, "job-ok", &[("KWOK_RUN_DURATION", "1s")])).await.unwrap();
    let bad = rt.launch(&job_spec(&ns, "job-bad", &[("KWOK_RUN_DURATION", "1s"), ("KWOK_EXIT_CODE", "3")])).await.unwrap();
    let long = rt.launch(&job_spec(&ns, "job-long", &[("KWOK_RUN_DURATION", "600s")])).await.unwrap();

    let running = wait_state(&rt, &long, |s| *s == JobState::Running, Duration::from_secs(60)).await;
    assert_eq!(running, JobState::Running, "a scheduled pod on the kwok node makes the job Running");
    assert_eq!(wait_state(&rt, &ok, JobState::is_terminal, Duration::from_secs(60)).await, JobState::Succeeded);
    match wait_state(&rt, &bad, JobState::is_terminal, Duration::from_secs(60)).await {
        JobState::Failed { exit_code, reason } => {
            assert_eq!(exit_code, Some(3), "the pod's exit code reaches the run ({reason})");
        }
        other => panic!("expected a failed job, got {other:?}"),
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let of_long = ListParams::default().labels("job-name=job-long");
    assert_eq!(pods.list(&of_long).await.unwrap().items.len(), 1);
    // A run without an access profile: no container of its pod holds a service-account token.
    let spec = wait_pod(&client, &ns, "job-long").await.spec.unwrap();
    let mounts: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()))
        .collect();
    assert_eq!(mounts, ["/agent", "/tmp", "/agent", "/runner", "/tmp"], "the shared volume, the runner's own and scratch, no token");
    rt.cancel(&long).await.unwrap();
    rt.cancel(&long).await.unwrap(); // cancelling twice is not an error
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    loop {
        let left = pods.list(&of_long).await.unwrap().items.len();
        let job_gone = rt.status(&long).await.unwrap() == JobState::NotFound;
        // The run's Secret goes with its Job (owner reference, garbage collector).
        let secret_gone = secrets.get_opt("job-long-credentials").await.unwrap().is_none();
        if left == 0 && job_gone && secret_gone {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "cancel must delete the job and its pods ({left} pods left)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rt.delete_environment(&ns).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_refuses_unmanaged_namespaces_and_lists_only_managed_ones() {
    let (rt, client) = runtime().await;
    let managed = cluster::unique_name("ck8s-own");
    let foreign = cluster::unique_name("ck8s-foreign");
    rt.prepare(&environment(&managed, None)).await.unwrap();
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(foreign.clone());
    api.create(&PostParams::default(), &ns).await.unwrap();

    let names: Vec<String> = rt.environments().await.unwrap().into_iter().map(|e| e.namespace).collect();
    assert!(names.contains(&managed));
    assert!(!names.contains(&foreign));
    let err = rt.delete_environment(&foreign).await.unwrap_err();
    assert!(matches!(err, ck8s_domain::runtime::RuntimeError::Refused(_)), "{err:?}");
    assert!(api.get(&foreign).await.unwrap().metadata.deletion_timestamp.is_none());
    rt.delete_environment(&managed).await.unwrap();
    assert!(api.get_opt(&managed).await.unwrap().is_none_or(|n| n.metadata.deletion_timestamp.is_some()));
    rt.delete_environment("ck8s-never-existed").await.unwrap();
    api.delete(&foreign, &Default::default()).await.unwrap();
}

/// A run's pod in real containers: placed on the real node, admitted by the namespace's
/// `restricted` Pod Security, both containers run as the unprivileged user with no capability,
/// no privilege escalation, the runtime's seccomp filter and a read-only root; the Job succeeds
/// when the runner ends (its agent sidecar still running is stopped), and the runner's log comes
/// back through the API server from the kubelet.
#[tokio::test(flavor = "multi_thread")]
async fn real_node_a_run_pod_runs_locked_down_in_real_containers() {
    cluster::real_node();
    let client = cluster::client().await;
    let rt = KubernetesRuntime::new(client.clone(), KubernetesSettings { placement: cluster::real_node_placement(), ..settings() });
    let ns = cluster::unique_name("ck8s-real");
    rt.prepare(&environment(&ns, None)).await.unwrap();
    let mut spec = job_spec(&ns, "probe-job", &[]);
    spec.image = cluster::PROBE_IMAGE.into();
    spec.command = vec!["/probe".into()];
    spec.agent_command = vec!["/probe".into(), "sleep".into()];
    let job = rt.launch(&spec).await.unwrap();

    let state = wait_state(&rt, &job, |s| matches!(s, JobState::Succeeded | JobState::Failed { .. }), Duration::from_secs(90)).await;
    let pod = wait_pod(&client, &ns, "probe-job").await;
    assert_eq!(state, JobState::Succeeded, "pod status: {:?}", pod.status);
    assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some(cluster::REAL_NODE), "it ran on the real node");

    let log = rt.logs(&job, None).await.unwrap();
    for line in ["uid=65532 gid=65532", "CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2", "rootfs=read-only"] {
        assert!(log.contains(line), "the runner's log lacks {line:?}:\n{log}");
    }
    rt.delete_environment(&ns).await.unwrap();
}

/// Without the placement a run's pod never lands on the real node (it is tainted): kwok's node
/// takes it.
#[tokio::test(flavor = "multi_thread")]
async fn real_node_takes_no_pod_that_does_not_ask_for_it() {
    cluster::real_node();
    let (rt, client) = runtime().await;
    let ns = cluster::unique_name("ck8s-notreal");
    rt.prepare(&environment(&ns, None)).await.unwrap();
    let mut spec = job_spec(&ns, "plain-job", &[("KWOK_RUN_DURATION", "1s")]);
    spec.image = cluster::PROBE_IMAGE.into();
    rt.launch(&spec).await.unwrap();
    let started = Instant::now();
    let node = loop {
        let pod = wait_pod(&client, &ns, "plain-job").await;
        if let Some(node) = pod.spec.and_then(|s| s.node_name) {
            break node;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the pod was never scheduled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(node, "kwok-node-0");
    rt.delete_environment(&ns).await.unwrap();
}

/// A runtime that places runs on the real node, and a fresh prepared run namespace.
async fn real_node_namespace(prefix: &str) -> (KubernetesRuntime, Client, String) {
    cluster::real_node();
    let client = cluster::client().await;
    let rt = KubernetesRuntime::new(client.clone(), KubernetesSettings { placement: cluster::real_node_placement(), ..settings() });
    let ns = cluster::unique_name(prefix);
    rt.prepare(&environment(&ns, None)).await.unwrap();
    (rt, client, ns)
}

/// The log of one container of a pod, through the API server from the kubelet.
async fn container_log(client: &Client, ns: &str, pod: &str, container: &str) -> String {
    let params = kube::api::LogParams { container: Some(container.into()), ..Default::default() };
    Api::<Pod>::namespaced(client.clone(), ns).logs(pod, &params).await.unwrap_or_else(|e| panic!("no log of {container}: {e}"))
}

/// The agent container holds no credential and cannot reach the runner's: in real containers the
/// agent sees no other process (no shared process namespace), no environment holding the run's
/// secret, and no runner volume — while the runner, the positive control, finds the secret in
/// its own environment (from the Secret, through `envFrom`).
#[tokio::test(flavor = "multi_thread")]
async fn real_node_the_agent_container_cannot_read_the_runners_credentials() {
    let (rt, client, ns) = real_node_namespace("ck8s-peek").await;
    let mut spec = job_spec(&ns, "peek-job", &[]);
    spec.image = cluster::PROBE_IMAGE.into();
    // The canary is the run token of `job_spec`'s Secret.
    spec.command = vec!["/probe".into(), "peek".into(), "run-token-canary".into(), "/agent".into()];
    spec.agent_command = vec!["/probe".into(), "watch".into(), "run-token-canary".into(), "/runner".into(), "/agent".into()];
    let job = rt.launch(&spec).await.unwrap();
    let state = wait_state(&rt, &job, |s| matches!(s, JobState::Succeeded | JobState::Failed { .. }), Duration::from_secs(90)).await;
    let pod = wait_pod(&client, &ns, "peek-job").await;
    assert_eq!(state, JobState::Succeeded, "pod status: {:?}", pod.status);
    let name = pod.metadata.name.clone().unwrap();

    let runner = container_log(&client, &ns, &name, "run").await;
    assert!(runner.contains("secret-seen=1"), "the runner holds the run token (the check can see one): {runner}");
    assert!(runner.contains("path /agent=present"), "{runner}");
    let agent = container_log(&client, &ns, &name, "agent").await;
    assert!(agent.contains("others=0 secret-seen=0"), "the agent sees no other process and no secret: {agent}");
    assert!(agent.contains("path /runner=absent") && agent.contains("path /agent=present"), "only the shared volume: {agent}");
    rt.delete_environment(&ns).await.unwrap();
}

/// Cancelling a running run stops its containers on the node: the Job goes, its pod goes, and
/// containerd runs none of the pod's containers any more.
#[tokio::test(flavor = "multi_thread")]
async fn real_node_cancel_kills_the_running_containers() {
    let (rt, client, ns) = real_node_namespace("ck8s-cancel").await;
    let mut spec = job_spec(&ns, "cancel-job", &[]);
    spec.image = cluster::PROBE_IMAGE.into();
    spec.command = vec!["/probe".into(), "sleep".into()];
    spec.agent_command = vec!["/probe".into(), "sleep".into()];
    let job = rt.launch(&spec).await.unwrap();
    let state = wait_state(&rt, &job, |s| !matches!(s, JobState::Pending), Duration::from_secs(90)).await;
    assert_eq!(state, JobState::Running);
    let pod = wait_pod(&client, &ns, "cancel-job").await;
    let ids = cluster::container_ids(&pod);
    assert_eq!(ids.len(), 2, "runner and agent run: {:?}", pod.status);
    let running = tokio::task::spawn_blocking(cluster::real_node_tasks).await.unwrap();
    assert!(ids.iter().all(|id| running.contains(id)), "containerd runs both: {ids:?} in {running:?}");

    rt.cancel(&job).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.metadata.name.clone().unwrap();
    let started = Instant::now();
    loop {
        let gone = pods.get_opt(&name).await.unwrap().is_none();
        let tasks = tokio::task::spawn_blocking(cluster::real_node_tasks).await.unwrap();
        if gone && !ids.iter().any(|id| tasks.contains(id)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "after cancel the pod is still there ({}) or runs {:?}", !gone, tasks);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rt.delete_environment(&ns).await.unwrap();
}

/// Pod Security `restricted` guards a run namespace: a pod that breaks it in one way only — the
/// host's process or network namespace, root, an added capability, privilege escalation, a host
/// path, privileged — is refused by the API server's Pod Security admission, while the same pod
/// without that one change is admitted (the positive control).
#[tokio::test(flavor = "multi_thread")]
async fn real_node_pod_security_refuses_a_privileged_pod_in_a_run_namespace() {
    let (rt, client, ns) = real_node_namespace("ck8s-psa").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // A pod `restricted` admits, with one change merged into its container or its spec.
    let pod = |name: &str, container: serde_json::Value, spec: serde_json::Value| -> Pod {
        let mut c = serde_json::json!({"name": "c", "image": cluster::PROBE_IMAGE, "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true, "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}}});
        merge(&mut c, container);
        let mut s = serde_json::json!({"containers": [c], "nodeSelector": {"codex-k8s.io/node": "real"},
            "tolerations": [{"key": cluster::REAL_NODE_TAINT, "operator": "Exists"}]});
        merge(&mut s, spec);
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": s})).unwrap()
    };
    let none = || serde_json::json!({});
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    pods.create(&dry_run, &pod("fine", none(), none())).await.expect("a pod within `restricted` is admitted");
    let cases = [
        // The test cluster's API server allows privileged pods (`--allow-privileged`, as most
        // clusters do): refusing one here is Pod Security's doing.
        (
            "privileged",
            pod("privileged", serde_json::json!({"securityContext": {"privileged": true, "allowPrivilegeEscalation": true}}), none()),
        ),
        ("host-pid", pod("host-pid", none(), serde_json::json!({"hostPID": true}))),
        ("host-network", pod("host-network", none(), serde_json::json!({"hostNetwork": true}))),
        ("root", pod("root", serde_json::json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": false}}), none())),
        ("net-admin", pod("net-admin", serde_json::json!({"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}), none())),
        ("escalation", pod("escalation", serde_json::json!({"securityContext": {"allowPrivilegeEscalation": true}}), none())),
        ("host-path", pod("host-path", none(), serde_json::json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}))),
    ];
    for (what, p) in cases {
        match pods.create(&dry_run, &p).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 403, "{what}: {e:?}");
                assert!(e.message.contains("PodSecurity") && e.message.contains("restricted"), "{what}: {}", e.message);
            }
            other => panic!("a {what} pod was not refused in a run namespace: {other:?}"),
        }
    }
    rt.delete_environment(&ns).await.unwrap();
}

/// Merges the object `extra` into `base`, key by key, objects recursively.
fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}
