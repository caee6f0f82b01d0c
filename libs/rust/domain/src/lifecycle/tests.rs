use super::*;
use crate::policy::{AccessProfile, TriggerSource};
use crate::run_spec::{AgentRef, IssueSummary};
use crate::stage::{Stage, TriggerKind};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const NOW: &str = "2026-12-06T12:00:00Z";

fn run() -> RunLease {
    RunLease {
        id: Uuid::parse_str("8da5122c-ce2c-4eed-b375-1bc5f9bdabe9").unwrap(),
        correlation_id: "d-1".into(),
        project_id: Some(Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap()),
        status: RunStatus::Running,
        payload: crate::run_spec::tests::spec().to_value(),
        slot_no: Some(1),
        namespace: None,
        job_name: None,
        stale_reclaim_pending: false,
        deadline_at: None,
        timeout_paused_at: None,
        wait_reason: None,
        namespace_lease_until: None,
        credentials_withdrawn: false,
        created_at: at("2026-12-06T11:59:00Z"),
    }
}

fn launched() -> RunLease {
    RunLease {
        namespace: Some("codex-issue-x".into()),
        job_name: Some("codex-k8s-run-x".into()),
        deadline_at: Some(at("2026-12-06T15:00:00Z")),
        namespace_lease_until: Some(at("2026-12-07T11:00:00Z")),
        ..run()
    }
}

fn settings() -> LaunchSettings {
    LaunchSettings {
        namespace_prefix: "codex-issue".into(),
        default_model: "gpt-5.4".into(),
        default_reasoning: "high".into(),
        locale: Locale::Ru,
        control_plane_target: "http://control-plane:9090".into(),
        run_timeout: Duration::from_secs(18_000),
        namespace_ttl: Duration::from_secs(24 * 3600),
        job_image: "codex-k8s/agent-runner:latest".into(),
        job_command: "/usr/local/bin/agent-runner".into(),
        platform: PlatformEnv::default(),
    }
}

#[test]
fn a_launch_resolves_the_profile_names_the_namespace_and_writes_the_whole_environment() {
    let r = run();
    let mut spec = r.spec().unwrap();
    spec.issue = Some(IssueSummary { number: 12, labels: vec!["run:dev".into(), "[ai-model-gpt-5.2]".into()], ..Default::default() });
    let p = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert_eq!((p.model.value.as_str(), p.model.source), ("gpt-5.2", "issue_label"));
    assert_eq!((p.reasoning.value.as_str(), p.reasoning.source), ("high", "agent_default"));
    assert_eq!(p.namespace, "codex-issue-0f1e2d3c4b5a-i12-r8da5122cce2c");
    assert!(!p.reused);
    assert_eq!(p.job.job_name, "codex-k8s-run-8da5122cce2c");
    assert_eq!(p.job.service_account.as_deref(), Some("codex-runner"));
    assert_eq!(p.job.command, ["sh", "-c", "exec /usr/local/bin/agent-runner"]);
    assert_eq!(
        p.job.agent_command,
        ["sh", "-c", "exec /usr/local/bin/agent-runner agent-host /agent/host"],
        "the agent's container runs the same program as the host of the shared volume"
    );
    assert_eq!(p.job.env["CODEXK8S_AGENT_MODEL"], "gpt-5.2");
    assert_eq!(p.job.env["CODEXK8S_ISSUE_NUMBER"], "12");
    assert_eq!(p.job.env["CODEXK8S_GITHUB_API_URL"], "https://api.github.com", "platform settings go with every job");
    assert!(p.job.secret_env.is_empty(), "credentials are added by the worker through the secret channel only");
    let agent = AgentEnv::from_env(&|k| p.job.env.get(&format!("CODEXK8S_{k}")).cloned()).unwrap();
    assert_eq!((agent.run_id, agent.trigger_kind, agent.locale), (r.id, TriggerKind::work(Stage::Dev), Locale::Ru));
    assert_eq!(p.lease_expires, at("2026-12-07T12:00:00Z"));
    assert_eq!(p.environment.annotations[LEASE_EXPIRES], "2026-12-07T12:00:00+00:00");
    assert_eq!(p.environment.labels["codex-k8s.dev/issue-number"], "12");
    assert_eq!(p.environment.access_profile.as_deref(), Some("candidate"));
}

#[test]
fn only_run_namespaces_of_the_worker_are_prepared_the_platforms_never() {
    assert!(is_run_namespace("codex-issue-0f1e-i12-r8da5", "codex-issue"));
    for other in ["codex-k8s-prod", "codex-issue", "codex-issuer-x", "kube-system", "default", "x-codex-issue-1"] {
        assert!(!is_run_namespace(other, "codex-issue"), "{other}");
    }
    assert!(!is_run_namespace("anything", ""), "an empty prefix claims nothing");
    let r = run();
    let mut spec = r.spec().unwrap();
    let p = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert!(p.prepare, "its own generated namespace");
    spec.runtime.namespace = Some("codex-k8s-prod".into());
    spec.runtime.access_profile = Some(AccessProfile::ProductionReadonly);
    let p = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert_eq!(p.namespace, "codex-k8s-prod");
    assert!(!p.prepare, "the platform's namespace is never prepared, leased or deleted");
    assert_eq!(p.job.service_account.as_deref(), Some("codex-runner-readonly"));
}

#[test]
fn routed_and_reused_namespaces_win_over_the_generated_one() {
    let r = run();
    let mut spec = r.spec().unwrap();
    spec.runtime.namespace = Some("Codex-K8s_Prod".into());
    spec.runtime.access_profile = Some(AccessProfile::ProductionReadonly);
    let p = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert_eq!(p.namespace, "codex-k8s-prod");
    assert_eq!(p.job.service_account.as_deref(), Some("codex-runner-readonly"));
    let p = plan_launch(&r, &spec, Some("codex-issue-earlier".into()), &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert_eq!((p.namespace.as_str(), p.reused), ("codex-issue-earlier", true));
    spec.issue = None;
    spec.runtime.namespace = None;
    spec.runtime.access_profile = None;
    let p = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap();
    assert_eq!(p.namespace, "codex-issue-run-8da5122cce2c");
    assert_eq!(p.job.service_account, None, "code-only runs get no cluster access");
}

#[test]
fn conflicting_model_labels_fail_the_launch_as_a_precondition() {
    let r = run();
    let mut spec = r.spec().unwrap();
    spec.issue =
        Some(IssueSummary { number: 12, labels: vec!["[ai-model-gpt-5.2]".into(), "[ai-model-gpt-5.4]".into()], ..Default::default() });
    let f = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap_err();
    assert_eq!((f.status, f.reason, f.event), (RunStatus::Failed, Some(FailureReason::PreconditionFailed), "run.failed.precondition"));
    assert!(f.message.unwrap().contains("conflicting model labels"));
}

#[test]
fn a_deploy_run_launches_no_agent() {
    let r = run();
    let mut spec = r.spec().unwrap();
    spec.agent = None;
    spec.trigger.kind = TriggerKind::DEPLOY;
    spec.runtime.deploy_only = true;
    spec.runtime.namespace = Some("codex-k8s-prod".into());
    let f = plan_launch(&r, &spec, None, &LabelCatalog::default(), &settings(), at(NOW)).unwrap_err();
    assert_eq!((f.reason, f.event), (Some(FailureReason::AgentContextResolve), "run.failed.precondition"));
    assert!(f.message.unwrap().contains("deploy run starts no agent"));
    // Deploy-only even with an agent named: still nothing is launched.
    let mut named = r.spec().unwrap();
    named.runtime.deploy_only = true;
    assert!(plan_launch(&r, &named, None, &LabelCatalog::default(), &settings(), at(NOW)).is_err());
}

#[test]
fn only_full_env_revise_runs_without_a_routed_namespace_reuse_one() {
    let mut spec = run().spec().unwrap();
    assert_eq!(reuse_key(&spec), None, "a work run starts fresh");
    spec.trigger.kind = TriggerKind::revise_of(Stage::Dev).unwrap();
    assert_eq!(reuse_key(&spec), Some((spec.project.repository_id, 12, "dev".into())));
    spec.runtime.namespace = Some("routed".into());
    assert_eq!(reuse_key(&spec), None);
    spec.runtime.namespace = None;
    spec.runtime.mode = RuntimeMode::CodeOnly;
    assert_eq!(reuse_key(&spec), None);
}

#[test]
fn a_run_without_a_job_is_launched_and_one_past_its_deadline_times_out() {
    let now = at(NOW);
    let ttl = Duration::from_secs(24 * 3600);
    assert_eq!(next_action(&run(), None, now, ttl), Next::Launch);
    assert_eq!(next_action(&launched(), None, now, ttl), Next::QueryJob);
    let late = RunLease { deadline_at: Some(at("2026-12-06T11:59:59Z")), ..launched() };
    let Next::TimeOut(f) = next_action(&late, Some(&JobState::Running), now, ttl) else { panic!("not timed out") };
    assert_eq!((f.reason, f.event), (Some(FailureReason::RunTimeout), "run.failed"));
    // While the run waits on an approval its deadline is paused.
    let waiting = RunLease { timeout_paused_at: Some(at("2026-12-06T11:00:00Z")), ..late };
    assert_eq!(next_action(&waiting, None, now, ttl), Next::QueryJob);
}

#[test]
fn job_outcomes_and_agent_exit_codes_map_to_their_reasons() {
    let (now, ttl, r) = (at(NOW), Duration::from_secs(86_400), launched());
    let finish = |state: JobState| match next_action(&r, Some(&state), now, ttl) {
        Next::Finish(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(finish(JobState::Succeeded), Finish::succeeded());
    let f = finish(JobState::Failed { reason: "exit code 42".into(), exit_code: Some(42) });
    assert_eq!((f.reason, f.event), (Some(FailureReason::FailedPrecondition), "run.failed.precondition"));
    assert!(f.message.unwrap().contains("no pull request"));
    let f = finish(JobState::Failed { reason: "exit code 3".into(), exit_code: Some(3) });
    assert_eq!(f.reason, Some(FailureReason::WriteScopeViolation));
    let f = finish(JobState::Failed { reason: "exit code 1".into(), exit_code: Some(1) });
    assert_eq!((f.reason, f.message.as_deref()), (Some(FailureReason::KubernetesJobFailed), Some("exit code 1")));
    let f = finish(JobState::Failed { reason: "DeadlineExceeded".into(), exit_code: None });
    assert_eq!(f.reason, Some(FailureReason::KubernetesJobFailed));
    let Next::Lost(f) = next_action(&r, Some(&JobState::NotFound), now, ttl) else { panic!("not lost") };
    assert_eq!((f.reason, f.event), (Some(FailureReason::KubernetesJobNotFound), "run.failed.job_not_found"));
}

#[test]
fn a_run_reclaimed_from_a_dead_worker_is_relaunched_only_when_its_job_never_existed() {
    let (now, ttl) = (at(NOW), Duration::from_secs(86_400));
    let reclaimed = RunLease { stale_reclaim_pending: true, ..launched() };
    assert_eq!(next_action(&reclaimed, Some(&JobState::NotFound), now, ttl), Next::Launch);
    for state in [JobState::Pending, JobState::Running] {
        assert_eq!(next_action(&reclaimed, Some(&state), now, ttl), Next::Wait, "a live job is not launched twice");
    }
    assert_eq!(next_action(&reclaimed, Some(&JobState::Succeeded), now, ttl), Next::Finish(Finish::succeeded()));
}

#[test]
fn the_namespace_lease_is_renewed_once_half_of_it_is_used() {
    let ttl = Duration::from_secs(24 * 3600);
    let r = RunLease { deadline_at: Some(at("2026-12-08T00:00:00Z")), ..launched() }; // lease until 2026-12-07T11:00Z
    assert_eq!(next_action(&r, Some(&JobState::Running), at("2026-12-06T22:59:00Z"), ttl), Next::Wait);
    assert_eq!(next_action(&r, Some(&JobState::Running), at("2026-12-06T23:00:00Z"), ttl), Next::ExtendLease);
    let never = RunLease { namespace_lease_until: None, ..launched() };
    assert_eq!(next_action(&never, Some(&JobState::Pending), at(NOW), ttl), Next::ExtendLease);
}

#[test]
fn finished_reports_carry_the_status_reason_kind_and_pull_request() {
    let spec = run().spec().unwrap();
    let f = Finish::failed(FailureReason::KubernetesJobFailed, "exit code 1", "run.failed");
    let r = f.report(Some(&spec), Some(4), Some("https://forge/pull/4".into()));
    assert_eq!(
        (r.phase, r.run_status, r.failure_reason.as_deref()),
        (Some(Phase::Finished), Some(RunStatus::Failed), Some("kubernetes_job_failed"))
    );
    assert_eq!((r.trigger_kind, r.pr_number), (Some(TriggerKind::work(Stage::Dev)), Some(4)));
    let mut review = spec.clone();
    review.trigger.source = TriggerSource::PullRequestReview;
    review.pull_request = Some(crate::run_spec::PullRequestSummary { number: 9, ..Default::default() });
    assert_eq!(
        Finish::succeeded().report(Some(&review), None, None).pr_number,
        Some(9),
        "the delivery's pull request when the run opened none"
    );
    let _ = AgentRef { id: Uuid::nil(), key: String::new(), name: String::new() };
}

#[test]
fn only_expired_finished_idle_namespaces_are_swept() {
    let now = at(NOW);
    let env = |expires: &str, active: bool| EnvironmentInfo {
        namespace: "codex-issue-x".into(),
        metadata: [(LEASE_EXPIRES.to_string(), expires.to_string()), (RUN_ID_LABEL.to_string(), run().id.to_string())].into(),
        active,
    };
    assert_eq!(expired_run(&env("2026-12-06T12:00:01Z", false), now), None, "a live lease keeps the namespace");
    assert_eq!(expired_run(&env("2026-12-06T11:00:00Z", false), now), Some(run().id));
    assert_eq!(expired_run(&env("not a time", false), now), None);
    let no_run = EnvironmentInfo { metadata: [(LEASE_EXPIRES.to_string(), "2020-01-01T00:00:00Z".to_string())].into(), ..env("", false) };
    assert_eq!(expired_run(&no_run, now), None);
    assert_eq!(sweep(&env("", false), RunStatus::Running, "codex-issue"), Sweep::Skip("run_not_terminal"));
    assert_eq!(sweep(&env("", true), RunStatus::Succeeded, "codex-issue"), Sweep::Skip("active_workload"));
    assert_eq!(sweep(&env("", false), RunStatus::Canceled, "codex-issue"), Sweep::Delete);
    // Marked, but not under this worker's prefix (another installation's, or the platform's): kept.
    let foreign = EnvironmentInfo { namespace: "codex-k8s-prod".into(), ..env("", false) };
    assert_eq!(sweep(&foreign, RunStatus::Canceled, "codex-issue"), Sweep::Skip("not_a_run_namespace"));
}

#[test]
fn names_are_dns_safe() {
    assert_eq!(first12("8da5122c-ce2c-4eed-b375-1bc5f9bdabe9"), "8da5122cce2c");
    assert_eq!(sanitize("Codex-Issue_X/1"), "codex-issue-x-1");
    assert!(sanitize(&"a".repeat(100)).len() <= 63);
}

#[test]
fn credentials_are_withdrawn_once_the_job_runs_and_only_once() {
    use crate::runtime::JobState;
    let run = launched();
    assert!(!run.withdraw_credentials_now(&JobState::Pending), "its runner has not read them yet");
    assert!(run.withdraw_credentials_now(&JobState::Running));
    assert!(!RunLease { credentials_withdrawn: true, ..launched() }.withdraw_credentials_now(&JobState::Running));
    // A job that ended before the worker saw it run: nothing needs them any more.
    assert!(run.withdraw_credentials_now(&JobState::Succeeded));
    assert!(run.withdraw_credentials_now(&JobState::Failed { reason: "exit code 1".into(), exit_code: Some(1) }));
    assert!(!run.withdraw_credentials_now(&JobState::NotFound), "no job, no Secret of it to delete");
}

#[test]
fn a_job_command_is_one_program_because_it_runs_with_exec() {
    for ok in ["/usr/local/bin/agent-runner", "/opt/runner --verbose 'quoted arg'", "sleep 3"] {
        assert!(super::single_command(ok), "{ok}");
    }
    for bad in ["sleep 3; echo done", "a && b", "a | b", "a &", "echo `id`", "echo $(id)", "a\nb", "", "   "] {
        assert!(!super::single_command(bad), "{bad:?}");
    }
}
