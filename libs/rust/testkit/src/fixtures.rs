//! Fixtures of the typed run contract: a [`RunSpec`] as ingest would store it, for tests that
//! insert runs directly (worker, store, benchmarks). Tests change the fields they care about.

use ck8s_domain::policy::{RuntimeMode, RuntimePlan, RuntimeSource, TriggerSource};
use ck8s_domain::run_spec::{
    AgentRef, Installation, IssueSummary, ProfileHints, ProjectBinding, RUN_SPEC_VERSION, RepositorySummary, RunSpec, SenderSummary,
    Trigger,
};
use ck8s_domain::stage::TriggerKind;
use uuid::Uuid;

/// A code-only `run:dev` run of issue `issue` (with `labels`) in `acme/app`, by the `dev` agent.
pub fn run_spec(project: Uuid, repository: Uuid, issue: i64, labels: &[&str]) -> RunSpec {
    RunSpec {
        version: RUN_SPEC_VERSION,
        source: "github".into(),
        delivery_id: format!("delivery-{issue}"),
        event_type: "issues".into(),
        received_at: chrono::Utc::now(),
        action: Some("labeled".into()),
        correlation_id: format!("delivery-{issue}"),
        repository: RepositorySummary { id: Some(1), full_name: "acme/app".into(), name: Some("app".into()), ..Default::default() },
        installation: Installation::default(),
        sender: SenderSummary { id: Some(1), login: Some("alice".into()) },
        raw_payload: serde_json::json!({}),
        project: ProjectBinding {
            id: project,
            repository_id: repository,
            services_yaml: Some("services.yaml".into()),
            binding_resolved: true,
        },
        learning_mode: false,
        discussion_mode: false,
        agent: Some(AgentRef { id: Uuid::nil(), key: "dev".into(), name: "AI Developer".into() }),
        issue: Some(IssueSummary { number: issue, labels: labels.iter().map(|l| l.to_string()).collect(), ..Default::default() }),
        pull_request: None,
        trigger: Trigger { source: TriggerSource::IssueLabel, label: Some("run:dev".into()), kind: kind("dev") },
        profile_hints: ProfileHints::default(),
        runtime: RuntimePlan {
            mode: RuntimeMode::CodeOnly,
            source: RuntimeSource::ServicesYaml,
            target_env: None,
            namespace: None,
            build_ref: Some("main".into()),
            deploy_only: false,
            access_profile: None,
        },
    }
}

/// A trigger kind by its spelling (`dev_revise`).
///
/// # Panics
/// If `s` is not a trigger kind: a test wrote a wrong one.
pub fn kind(s: &str) -> TriggerKind {
    TriggerKind::parse(s).unwrap_or_else(|e| panic!("{e}"))
}
