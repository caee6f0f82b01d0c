use super::*;
use std::time::Duration;

const PLATFORM: &str = include_str!("../../../../services.yaml");

fn err_of(text: &str) -> String {
    load_str(text, "services.yaml").map(|_| ()).unwrap_err().to_string()
}

#[test]
fn the_platform_file_loads_and_carries_its_runtime_policy() {
    let s = load_str(PLATFORM, "services.yaml").unwrap();
    assert_eq!(s.project(), "codex-k8s");
    for env in ["dev", "ai", "production"] {
        assert!(s.spec.environments.contains_key(env), "{env}");
    }
    assert_eq!(s.runtime_mode("intake"), RuntimeMode::CodeOnly);
    assert_eq!(s.runtime_mode("self_improve_revise"), RuntimeMode::CodeOnly);
    assert_eq!(s.runtime_mode("dev"), RuntimeMode::FullEnv);
    assert_eq!(s.runtime_mode("qa_revise"), RuntimeMode::FullEnv);
    assert_eq!(s.namespace_ttl("dev"), Duration::from_secs(24 * 3600));
    assert_eq!(s.namespace_ttl("unknown-role"), Duration::from_secs(24 * 3600));
}

#[test]
fn the_platform_deploys_infrastructure_then_stateful_migrations_internal_edge_frontend() {
    let s = load_str(PLATFORM, "services.yaml").unwrap();
    let plan = deploy_plan(&s).unwrap();
    let groups: Vec<&str> = plan.iter().map(|p| p.group.as_str()).collect();
    let first_service = groups.iter().position(|g| *g != "infrastructure").unwrap();
    assert!(groups[..first_service].iter().all(|g| *g == "infrastructure"));
    assert_eq!(plan[0].unit, "namespace", "namespace must come first");
    let rank = |g: &str| ["infrastructure", "stateful", "migrations", "internal", "edge", "frontend"].iter().position(|x| *x == g).unwrap();
    assert!(groups.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "{groups:?}");
    let pos = |u: &str| plan.iter().position(|p| p.unit == u).unwrap();
    assert!(pos("codex-k8s-migrate") < pos("codex-k8s-app"));
    assert!(pos("oauth2-proxy") < pos("ingress"));
    assert_eq!(plan.last().unwrap().unit, "web-console");
    // Components fill the group of services that do not name one.
    assert_eq!(s.deploy_group(&s.spec.services[1]).as_deref(), Some("internal"));
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let text = PLATFORM.replace("      dependsOn: [codex-k8s-migrate]", "      dependOn: [codex-k8s-migrate]");
    let e = err_of(&text);
    assert!(e.contains("spec.services[1]") && e.contains("unknown field `dependOn`"), "{e}");

    let text = PLATFORM.replace("  orchestration:\n", "  orchestrashun: {}\n  orchestration:\n");
    let e = err_of(&text);
    assert!(e.contains("spec") && e.contains("orchestrashun"), "{e}");
}

#[test]
fn bad_values_are_rejected_with_their_path() {
    let e = err_of(&PLATFORM.replace("      intake: code-only", "      intake: fast"));
    assert!(e.contains("spec.webhookRuntime.triggerModes.intake") && e.contains("unknown variant `fast`"), "{e}");

    let e = err_of(&PLATFORM.replace("      dev: 24h", "      dev: soon"));
    assert!(e.contains("spec.webhookRuntime.namespaceTTLByRole.dev") && e.contains("soon"), "{e}");

    let e = err_of(&PLATFORM.replace("      qa: 24h", "      qa: 0s"));
    assert!(e.contains("namespaceTTLByRole.qa"), "{e}");

    let e = err_of(&PLATFORM.replace("    triggerModes:\n", "    triggerModes:\n      debug: code-only\n"));
    assert!(e.contains("triggerModes.debug") && e.contains("unknown trigger kind"), "{e}");

    let e = err_of(&PLATFORM.replace("apiVersion: codex-k8s.dev/v1alpha1", "apiVersion: v2"));
    assert!(e.contains("apiVersion"), "{e}");

    let e = err_of(&PLATFORM.replace("      scope: infrastructure-singleton", "      scope: everywhere"));
    assert!(e.contains("spec.services[2].scope"), "{e}");

    let e = err_of("spec: [1, 2");
    assert!(e.contains("services.yaml"), "{e}");
}

#[test]
fn dependency_cycles_are_rejected_naming_the_cycle() {
    let text = PLATFORM.replace(
        "    - name: codex-k8s-migrate\n      deployGroup: migrations\n",
        "    - name: codex-k8s-migrate\n      deployGroup: migrations\n      dependsOn: [codex-k8s-app]\n",
    );
    let e = err_of(&text);
    assert!(e.contains("dependency cycle") && e.contains("codex-k8s-app -> codex-k8s-migrate -> codex-k8s-app"), "{e}");

    let text = PLATFORM
        .replace("    - name: repo-cache\n      dependsOn: [namespace]", "    - name: repo-cache\n      dependsOn: [namespace, postgres]")
        .replace("    - name: postgres\n      dependsOn: [namespace]", "    - name: postgres\n      dependsOn: [repo-cache]");
    let e = err_of(&text);
    assert!(e.contains("dependency cycle"), "{e}");
}

#[test]
fn references_must_resolve() {
    let e = err_of(&PLATFORM.replace("      dependsOn: [oauth2-proxy]", "      dependsOn: [oauth3-proxy]"));
    assert!(e.contains("spec.services[4].dependsOn") && e.contains("oauth3-proxy"), "{e}");

    let e = err_of(&PLATFORM.replace("    ai:\n      from: production", "    ai:\n      from: staging"));
    assert!(e.contains("spec.environments.ai.from") && e.contains("staging"), "{e}");

    let e = err_of(&PLATFORM.replace("      use: [hot-reload-defaults]", "      use: [missing]"));
    assert!(e.contains("unknown component"), "{e}");

    let e = err_of(
        &PLATFORM
            .replace("    dev:\n      namespaceTemplate", "    dev:\n      from: ai\n      namespaceTemplate")
            .replace("    ai:\n      from: production", "    ai:\n      from: dev"),
    );
    assert!(e.contains("inheritance cycle"), "{e}");

    let e = err_of(&PLATFORM.replace("namespaceTemplate: \"{{ .Project }}-prod\"", "namespaceTemplate: \"prod\""));
    assert!(e.contains("production.namespaceTemplate"), "{e}");

    let e = err_of(&PLATFORM.replace("- name: registry-gc", "- name: ingress"));
    assert!(e.contains("duplicate unit name"), "{e}");
}

#[test]
fn several_problems_are_reported_together() {
    let text = PLATFORM.replace("      dev: 24h", "      dev: soon").replace("      dependsOn: [oauth2-proxy]", "      dependsOn: [nope]");
    let e = load_str(&text, "services.yaml").unwrap_err();
    match e {
        StackError::Invalid { problems, .. } => assert_eq!(problems.len(), 2, "{problems:?}"),
        other => panic!("expected Invalid, got {other}"),
    }
}
