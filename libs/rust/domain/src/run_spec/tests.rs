use super::*;
use crate::policy::RuntimeSource;
use crate::stage::Stage;
use serde_json::json;

pub(crate) fn spec() -> RunSpec {
    RunSpec {
        version: RUN_SPEC_VERSION,
        source: "github".into(),
        delivery_id: "d-1".into(),
        event_type: "issues".into(),
        received_at: DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&Utc),
        action: Some("labeled".into()),
        correlation_id: "d-1".into(),
        repository: RepositorySummary { id: Some(42), full_name: "acme/app".into(), name: Some("app".into()), ..Default::default() },
        installation: Installation::default(),
        sender: SenderSummary { id: Some(7), login: Some("alice".into()) },
        raw_payload: json!({"action": "labeled"}),
        project: ProjectBinding { id: Uuid::nil(), repository_id: Uuid::nil(), services_yaml: None, binding_resolved: true },
        learning_mode: true,
        discussion_mode: false,
        agent: Some(AgentRef { id: Uuid::nil(), key: "dev".into(), name: "AI Developer".into() }),
        issue: Some(IssueSummary { number: 12, labels: vec!["run:dev".into()], ..Default::default() }),
        pull_request: None,
        trigger: Trigger { source: TriggerSource::IssueLabel, label: Some("run:dev".into()), kind: TriggerKind::work(Stage::Dev) },
        profile_hints: ProfileHints::default(),
        runtime: RuntimePlan {
            mode: RuntimeMode::FullEnv,
            source: RuntimeSource::Routing,
            target_env: Some("ai".into()),
            namespace: None,
            build_ref: Some("main".into()),
            deploy_only: false,
            access_profile: Some(AccessProfile::Candidate),
        },
    }
}

#[test]
fn a_spec_round_trips_through_its_stored_form_with_the_documented_paths() {
    let s = spec();
    let v = s.to_value();
    assert_eq!(RunSpec::decode(&v), Ok(s));
    // The paths the store's SQL and the staff views read (spec §4.3).
    assert_eq!(v["trigger"]["kind"], "dev");
    assert_eq!(v["trigger"]["source"], "issue_label");
    assert_eq!(v["runtime"]["mode"], "full-env");
    assert_eq!(v["runtime"]["access_profile"], "candidate");
    assert_eq!(v["runtime"]["source"], "routing");
    assert_eq!(v["runtime"]["deploy_only"], false);
    assert_eq!(v["issue"]["labels"], json!(["run:dev"]));
    assert_eq!(v["discussion_mode"], false);
    assert_eq!(v["version"], 1);
}

#[test]
fn a_missing_or_malformed_field_is_named() {
    let mut v = spec().to_value();
    v.as_object_mut().unwrap().remove("trigger");
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "trigger");

    let mut v = spec().to_value();
    v["trigger"].as_object_mut().unwrap().remove("kind");
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "trigger.kind");

    let mut v = spec().to_value();
    v["trigger"]["kind"] = json!("dev-ops");
    let e = RunSpec::decode(&v).unwrap_err();
    assert_eq!(e.field(), "trigger.kind");
    assert!(e.to_string().contains("dev-ops"), "{e}");

    let mut v = spec().to_value();
    v["runtime"]["mode"] = json!("sideways");
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "runtime.mode");

    let mut v = spec().to_value();
    v["issue"]["number"] = json!("twelve");
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "issue.number");
}

#[test]
fn only_the_known_version_is_read() {
    let mut v = spec().to_value();
    v["version"] = json!(2);
    assert_eq!(RunSpec::decode(&v), Err(RunSpecError::UnsupportedVersion { found: 2 }));
    v.as_object_mut().unwrap().remove("version");
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "version");
    assert_eq!(RunSpec::decode(&json!({"trigger": {"kind": "dev"}})).unwrap_err().field(), "version");
}

fn agent_env() -> AgentEnv {
    AgentEnv {
        run_id: Uuid::parse_str("8da5122c-ce2c-4eed-b375-1bc5f9bdabe9").unwrap(),
        correlation_id: "d-1".into(),
        project_id: Some(Uuid::nil()),
        slot_no: Some(2),
        runtime_mode: RuntimeMode::FullEnv,
        target_env: Some("ai".into()),
        build_ref: Some("abc123".into()),
        access_profile: Some(AccessProfile::Candidate),
        control_plane_target: "http://127.0.0.1:9090".into(),
        repository_full_name: "acme/app".into(),
        issue_number: Some(12),
        existing_pr_number: None,
        trigger_kind: TriggerKind::revise_of(Stage::DocAudit).unwrap(),
        trigger_label: Some("run:doc-audit:revise".into()),
        discussion: false,
        agent_key: "km".into(),
        agent_name: "AI Knowledge Manager".into(),
        model: "gpt-5.4".into(),
        reasoning_effort: "high".into(),
        locale: Locale::En,
        learning_mode: true,
    }
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| env.get(&format!("{ENV_PREFIX}{k}")).cloned()
}

#[test]
fn the_agent_environment_round_trips_through_the_job_environment() {
    let a = agent_env();
    let env = a.to_env();
    assert_eq!(env["CODEXK8S_RUN_TRIGGER_KIND"], "doc_audit_revise");
    assert_eq!(env["CODEXK8S_PROMPT_TEMPLATE_LOCALE"], "en");
    assert!(!env.contains_key("CODEXK8S_EXISTING_PR_NUMBER"), "absent values are left out");
    assert_eq!(AgentEnv::from_env(&lookup(&env)), Ok(a));

    let p = PlatformEnv { model_base_url: Some("http://127.0.0.1:8091/v1".into()), ..Default::default() };
    assert_eq!(PlatformEnv::from_env(&lookup(&p.to_env())), p);
    assert_eq!(PlatformEnv::from_env(&|_| None), PlatformEnv::default());
}

#[test]
fn every_problem_of_an_agent_environment_names_its_variable() {
    let mut env = agent_env().to_env();
    env.remove("CODEXK8S_AGENT_MODEL");
    env.insert("CODEXK8S_RUN_TRIGGER_KIND".into(), "debug".into());
    env.insert("CODEXK8S_ISSUE_NUMBER".into(), "-3".into());
    env.insert("CODEXK8S_REPOSITORY_FULL_NAME".into(), "no-slash".into());
    let problems = AgentEnv::from_env(&lookup(&env)).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["REPOSITORY_FULL_NAME", "RUN_TRIGGER_KIND", "ISSUE_NUMBER", "AGENT_MODEL"], "{problems:?}");
    assert!(problems[1].message.contains("debug"));
}

#[test]
fn exit_codes_mean_the_same_on_both_ends() {
    for e in [AgentExit::Success, AgentExit::Failed, AgentExit::BadSettings, AgentExit::ScopeViolation, AgentExit::NothingToRevise] {
        assert_eq!(AgentExit::from_code(i32::from(e.code())), e);
    }
    assert_eq!(AgentExit::NothingToRevise.code(), 42);
    assert_eq!(AgentExit::ScopeViolation.code(), 3);
    assert_eq!(AgentExit::from_code(137), AgentExit::Failed);
}

/// A payload exactly as the ingest of the build before versioning wrote it.
fn unversioned_payload() -> serde_json::Value {
    json!({
        "source": "github", "delivery_id": "d-1", "event_type": "issues", "received_at": "2026-12-06T10:00:00+00:00",
        "action": "labeled", "correlation_id": "d-1",
        "repository": {"id": 42, "full_name": "acme/app", "name": "app", "private": false, "fork": false},
        "installation": {"id": null},
        "sender": {"id": 7, "login": "alice"},
        "raw_payload": {"action": "labeled"},
        "project": {"id": Uuid::nil(), "repository_id": Uuid::nil(), "services_yaml": "services.yaml", "binding_resolved": true},
        "learning_mode": false, "discussion_mode": false,
        "agent": {"id": Uuid::nil(), "key": "dev", "name": "AI Developer"},
        "issue": {"id": 1, "number": 12, "title": "Say hello", "html_url": "https://github.com/acme/app/issues/12", "state": "open",
                  "user": "alice", "labels": ["run:dev"], "pull_request": null},
        "pull_request": null,
        "trigger": {"source": "issue_label", "label": "run:dev", "kind": "dev"},
        "profile_hints": {"last_run_issue_labels": [], "last_run_pull_request_labels": []},
        "runtime": {"mode": "full-env", "source": "routing", "target_env": "ai", "namespace": null, "build_ref": "main",
                    "deploy_only": false, "access_profile": "candidate"},
    })
}

#[test]
fn a_payload_of_the_build_before_versioning_reads_as_version_1() {
    let mut v = unversioned_payload();
    assert_eq!(RunSpec::decode(&v).unwrap_err().field(), "version", "unmarked, it is refused by name");
    v["version"] = json!(1); // what migration 0012 adds to stored payloads
    let spec = RunSpec::decode(&v).unwrap();
    assert_eq!((spec.issue_number(), spec.agent_key(), spec.trigger.kind), (Some(12), "dev", TriggerKind::work(Stage::Dev)));
    assert_eq!(spec.runtime.access_profile, Some(AccessProfile::Candidate));
}
