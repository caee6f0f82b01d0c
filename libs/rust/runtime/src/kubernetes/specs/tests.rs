use super::*;
use std::time::Duration;

fn run_meta() -> RunMeta {
    RunMeta {
        run_id: "8da5122c-ce2c-4eed-b375-1bc5f9bdabe9".into(),
        correlation_id: "delivery-1".into(),
        project_id: "p-1".into(),
        issue_number: Some(12),
        agent_key: "dev".into(),
        runtime_mode: "full-env".into(),
        lease_ttl: "24h".into(),
        lease_expires_at: "2026-11-23T10:00:00Z".into(),
        lease_updated_at: "2026-11-22T10:00:00Z".into(),
    }
}

fn job_spec() -> JobSpec {
    JobSpec {
        run_id: "8da5122c-ce2c-4eed-b375-1bc5f9bdabe9".into(),
        correlation_id: "delivery-1".into(),
        project_id: "p-1".into(),
        namespace: "codex-issue-p1-i12-r8da5122cce2c".into(),
        job_name: "codex-k8s-run-8da5122cce2c".into(),
        image: "registry/codex-k8s/agent-runner:0.1.0".into(),
        command: vec!["/usr/local/bin/agent-runner".into()],
        agent_command: vec!["/usr/local/bin/agent-runner".into(), "agent-host".into(), "/agent/host".into()],
        env: BTreeMap::from([("CODEXK8S_RUN_ID".to_string(), "8da5122c".to_string())]),
        secret_env: BTreeMap::from([("CODEXK8S_GIT_BOT_TOKEN".to_string(), "ghp_top_secret".to_string())]),
        active_deadline: Duration::from_secs(18_000),
        service_account: Some("codex-runner".into()),
    }
}

#[test]
fn the_namespace_carries_managed_labels_and_lease_annotations() {
    let ns = namespace("codex-issue-p1-i12-r8da5122cce2c", &run_meta());
    let labels = ns.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[MANAGED_BY], "codex-k8s-worker");
    assert_eq!(labels[PURPOSE], "run");
    assert_eq!(labels["codex-k8s.dev/issue-number"], "12");
    assert_eq!(labels["codex-k8s.dev/agent-key"], "dev");
    assert_eq!(labels["codex-k8s.dev/runtime-mode"], "full-env");
    let ann = ns.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["codex-k8s.dev/correlation-id"], "delivery-1");
    assert_eq!(ann["codex-k8s.dev/namespace-lease-expires-at"], "2026-11-23T10:00:00Z");
    assert!(is_managed(ns.metadata.labels.as_ref()));
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "no privileged, host or root pods in a run namespace");
    assert!(!is_managed(None));
    assert!(!is_managed(Some(&map(&[(MANAGED_BY, "someone-else"), (PURPOSE, "run")]))));
    assert!(!is_managed(Some(&map(&[(MANAGED_BY, MANAGED_BY_VALUE)]))), "purpose label required too");
}

fn grants(role: &Role, group: &str, resource: &str, verb: &str) -> bool {
    role.rules.iter().flatten().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group || g == "*")
            && r.resources.iter().flatten().any(|x| x == resource || x == "*")
            && r.verbs.iter().any(|v| v == verb || v == "*")
    })
}

#[test]
fn no_profile_may_touch_secrets() {
    for p in [AccessProfile::Candidate, AccessProfile::ProductionReadonly] {
        let r = role("ns", p);
        for verb in ["get", "list", "watch", "create", "update", "delete"] {
            assert!(!grants(&r, "", "secrets", verb), "{p:?} may {verb} secrets");
        }
    }
}

#[test]
fn candidates_manage_workloads_and_read_only_runs_only_read() {
    let c = role("ns", AccessProfile::Candidate);
    for (g, res, verb) in [
        ("", "pods", "create"),
        ("", "pods/exec", "create"),
        ("apps", "deployments", "patch"),
        ("batch", "jobs", "delete"),
        ("", "configmaps", "update"),
    ] {
        assert!(grants(&c, g, res, verb), "candidate cannot {verb} {g}/{res}");
    }
    let ro = role("ns", AccessProfile::ProductionReadonly);
    assert!(grants(&ro, "", "pods", "list") && grants(&ro, "", "pods/log", "get") && grants(&ro, "apps", "deployments", "watch"));
    for (g, res, verb) in [
        ("", "pods", "create"),
        ("", "pods/exec", "create"),
        ("", "pods/exec", "get"),
        ("apps", "deployments", "delete"),
        ("", "pods/portforward", "create"),
        ("batch", "jobs", "create"),
    ] {
        assert!(!grants(&ro, g, res, verb), "read-only can {verb} {g}/{res}");
    }
    // The fences around the namespace stay: no profile may change its network policy, quota,
    // limits or RBAC, nor read its secrets.
    for p in [AccessProfile::Candidate, AccessProfile::ProductionReadonly] {
        let r = role("ns", p);
        for (g, res, verb) in [
            ("networking.k8s.io", "networkpolicies", "delete"),
            ("networking.k8s.io", "networkpolicies", "create"),
            ("", "resourcequotas", "update"),
            ("", "limitranges", "delete"),
            ("rbac.authorization.k8s.io", "roles", "create"),
            ("rbac.authorization.k8s.io", "rolebindings", "create"),
            ("", "secrets", "get"),
        ] {
            assert!(!grants(&r, g, res, verb), "{p:?} can {verb} {g}/{res}");
        }
    }
    assert!(grants(&c, "networking.k8s.io", "ingresses", "create") && grants(&c, "", "resourcequotas", "get"));
    let rb = role_binding("ns", AccessProfile::ProductionReadonly);
    assert_eq!(rb.role_ref.name, "codex-runner-readonly");
    assert_eq!(rb.subjects.unwrap()[0].name, "codex-runner-readonly");
    assert_eq!(service_account("ns", AccessProfile::Candidate).metadata.name.as_deref(), Some("codex-runner"));
}

#[test]
fn quota_and_network_policy() {
    let q = resource_quota("ns", 20);
    assert_eq!(q.spec.unwrap().hard.unwrap()["pods"], Quantity("20".into()));
    let np = network_policy("ns", "codex-k8s-prod", &[9090, 8081]).spec.unwrap();
    assert_eq!(np.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
    assert_eq!(np.pod_selector, Some(LabelSelector::default()), "applies to every pod of the namespace");
    let egress = np.egress.unwrap();
    let ports: Vec<(String, i32)> = egress
        .iter()
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .map(|p| {
            (
                p.protocol.unwrap(),
                match p.port.unwrap() {
                    IntOrString::Int(i) => i,
                    IntOrString::String(_) => -1,
                },
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![("UDP".into(), 53), ("TCP".into(), 53), ("TCP".into(), 9090), ("TCP".into(), 8081), ("TCP".into(), 80), ("TCP".into(), 443)],
        "control-plane's gRPC callbacks and MCP ports, then the web"
    );
    let web = egress[2].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
    let except = web.except.clone().unwrap();
    assert!(except.contains(&"169.254.0.0/16".to_string()), "never the cloud metadata address: {except:?}");
    assert!(except.contains(&"10.0.0.0/8".to_string()) && except.contains(&"172.16.0.0/12".to_string()), "nor the cluster's ranges");
    let lr = limit_range("ns").spec.unwrap();
    assert_eq!(lr.limits[0].max.as_ref().unwrap()["memory"], Quantity("16Gi".into()));
    assert!(lr.limits[0].default_request.is_some() && lr.limits[0].default.is_some());
    assert!(
        egress[1].to.as_ref().unwrap()[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"]
            == "codex-k8s"
    );
    // The platform is found by the name label Kubernetes sets, not by a label someone must add.
    let platform = egress[1].to.as_ref().unwrap()[0].namespace_selector.clone().unwrap();
    assert_eq!(platform.match_labels.unwrap()["kubernetes.io/metadata.name"], "codex-k8s-prod");
    assert!(platform.match_expressions.is_none());
}

#[test]
fn the_job_runs_once_with_a_deadline_and_takes_credentials_from_its_secret() {
    let spec = job_spec();
    let j = job(&spec, &Placement::default());
    let s = j.spec.as_ref().unwrap();
    // No TTL: the outcome of a Job that finished while every worker was down is still there to read.
    assert_eq!((s.backoff_limit, s.active_deadline_seconds, s.ttl_seconds_after_finished), (Some(0), Some(18_000), None));
    let pod = s.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("codex-runner"));
    let c = &pod.containers[0];
    assert_eq!(c.name, "run");
    assert_eq!(c.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "codex-k8s-run-8da5122cce2c-credentials");
    let whole = serde_json::to_string(&j).unwrap();
    assert!(!whole.contains("ghp_top_secret"), "credentials must never be plain env values: {whole}");
    assert!(c.env.as_ref().unwrap().iter().all(|e| e.name != "CODEXK8S_GIT_BOT_TOKEN"));
    let labels = j.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["codex-k8s.dev/run-id"], spec.run_id);
    assert_eq!(j.metadata.annotations.as_ref().unwrap()["codex-k8s.dev/correlation-id"], "delivery-1");

    let secret = credentials_secret(&spec, "job-uid-1");
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Job", spec.job_name.as_str(), "job-uid-1"),
        "it goes with its Job"
    );
    assert_eq!(secret.metadata.namespace.as_deref(), Some(spec.namespace.as_str()));
    assert_eq!(secret.string_data.unwrap()["CODEXK8S_GIT_BOT_TOKEN"], "ghp_top_secret");
}

#[test]
fn the_agent_runs_in_a_container_of_its_own_without_the_secret_or_a_token_it_does_not_need() {
    let mut spec = job_spec();
    let j = job(&spec, &Placement::default());
    let pod = j.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false), "no container gets a token by default");
    assert_eq!(pod.share_process_namespace, Some(false), "the agent cannot see the runner's processes");
    let agent = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!((agent.name.as_str(), agent.restart_policy.as_deref()), ("agent", Some("Always")), "a sidecar");
    assert_eq!(agent.command.as_deref().unwrap(), ["/usr/local/bin/agent-runner", "agent-host", "/agent/host"]);
    assert!(agent.env_from.is_none(), "the agent gets no Secret");
    let agent_json = serde_json::to_string(agent).unwrap();
    assert!(!agent_json.contains("CODEXK8S_") && !agent_json.contains("credentials"), "{agent_json}");
    let mounts = |c: &Container| c.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone())).collect::<Vec<_>>();
    // The profile needs the cluster: the agent, and only the agent, gets a projected token.
    assert_eq!(
        mounts(agent),
        vec![("agent".into(), "/agent".into()), ("agent-tmp".into(), "/tmp".into()), ("agent-token".into(), TOKEN_MOUNT.into())]
    );
    let runner = &pod.containers[0];
    assert_eq!(
        mounts(runner),
        vec![("agent".into(), "/agent".into()), ("runner".into(), "/runner".into()), ("runner-tmp".into(), "/tmp".into())],
        "its clone is its own"
    );
    let env: BTreeMap<String, String> =
        runner.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
    assert_eq!(env["CODEXK8S_AGENT_HOST_DIR"], "/agent/host");
    assert_eq!(env["CODEXK8S_AGENT_WORKDIR"], "/agent/work");
    assert_eq!(env["CODEXK8S_RUN_WORKDIR"], "/runner/run");
    for c in [agent, runner] {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    }
    for c in [agent, runner] {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{} writes only to its volumes", c.name);
        assert!(mounts(c).contains(&(format!("{}-tmp", if c.name == "run" { "runner" } else { "agent" }), "/tmp".into())));
        let r = c.resources.as_ref().unwrap();
        assert!(r.requests.as_ref().unwrap().contains_key("memory") && r.limits.as_ref().unwrap().contains_key("memory"));
    }
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let volumes: Vec<String> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["agent", "runner", "runner-tmp", "agent-tmp", "agent-token"]);

    // Without a profile there is no token at all.
    spec.service_account = None;
    let pod = job(&spec, &Placement::default()).spec.unwrap().template.spec.unwrap();
    assert_eq!(mounts(&pod.init_containers.unwrap()[0]), vec![("agent".into(), "/agent".into()), ("agent-tmp".into(), "/tmp".into())]);
    assert!(!pod.volumes.unwrap().iter().any(|v| v.projected.is_some()));
}

#[test]
fn namespaces_from_the_worker_always_get_the_managed_labels() {
    let ns = namespace_with("codex-issue-x", &map(&[("codex-k8s.dev/run-id", "r1"), (MANAGED_BY, "spoofed")]), &BTreeMap::new());
    assert!(is_managed(ns.metadata.labels.as_ref()));
    assert_eq!(ns.metadata.labels.unwrap()["codex-k8s.dev/run-id"], "r1");
}

#[test]
fn the_pod_goes_where_the_placement_says_and_anywhere_untainted_without_one() {
    let spec = job_spec();
    let pod = job(&spec, &Placement::default()).spec.unwrap().template.spec.unwrap();
    assert_eq!((pod.node_selector, pod.tolerations), (None, None));

    let placement = Placement::parse("codex-k8s.io/node=real", "codex-k8s.io/real-node").unwrap();
    let pod = job(&spec, &placement).spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.node_selector.unwrap()["codex-k8s.io/node"], "real");
    let t = &pod.tolerations.unwrap()[0];
    assert_eq!((t.key.as_deref(), t.operator.as_deref(), t.effect.as_deref()), (Some("codex-k8s.io/real-node"), Some("Exists"), None));
}
