use super::*;
use proptest::prelude::*;

fn state(phase: Phase) -> StatusState {
    StatusState {
        run_id: "8da5122c-ce2c-4eed-b375-1bc5f9bdabe9".into(),
        phase: Some(phase),
        repository: Some("acme/app".into()),
        issue_number: Some(12),
        trigger_label: Some("run:dev".into()),
        runtime_mode: Some(RuntimeMode::FullEnv),
        console_url: Some("https://codex.example/runs/8da5122c".into()),
        ..Default::default()
    }
}

#[test]
fn the_marker_round_trips_and_survives_hostile_values() {
    let mut s = state(Phase::Started);
    s.trigger_label = Some("run:dev --> <!-- injected -->".into());
    s.failure_reason = Some("| table | breaker |\n".into());
    let body = render_status(&s, Locale::En);
    assert_eq!(body.matches("<!-- codex-k8s:run-status ").count(), 1);
    assert_eq!(StatusState::from_comment(&body), Some(s.clone()));
    assert!(!body.contains("--> <!--"), "values cannot close the marker or open markup: {body}");
    assert_eq!(StatusState::from_comment("a human comment"), None);
    assert_eq!(StatusState::from_comment("<!-- codex-k8s:run-status {not json} -->"), None);
}

#[test]
fn reported_values_cannot_leave_their_code_span() {
    let mut s = state(Phase::Ready);
    s.model = Some("gpt` [log in again](https://evil.example) `".into());
    s.reasoning_effort = Some("high`**urgent**".into());
    let body = render_status(&s, Locale::En);
    let row = body.lines().find(|l| l.starts_with("| Model |")).unwrap();
    assert_eq!(row, "| Model | `gpt' [log in again](https://evil.example) '` |", "one code span, the link inert inside it");
    assert!(body.contains("| Reasoning | `high'**urgent**` |"), "{body}");
    let shown = &body[..body.find("<!-- codex-k8s:run-status").unwrap()];
    assert_eq!(shown.matches('`').count() % 2, 0, "every span is closed: {shown}");
}

#[test]
fn phases_only_advance_and_fields_are_kept() {
    let started = state(Phase::Started);
    let late_created = StatusState { run_id: started.run_id.clone(), phase: Some(Phase::Created), ..Default::default() };
    let merged = started.merge(&late_created);
    assert_eq!(merged.phase, Some(Phase::Started), "a late 'created' report cannot move the phase back");
    assert_eq!(merged.trigger_label.as_deref(), Some("run:dev"));
    let finished = StatusState {
        run_id: started.run_id.clone(),
        phase: Some(Phase::Finished),
        run_status: Some(RunStatus::Succeeded),
        ..Default::default()
    };
    assert_eq!(merged.merge(&finished).phase, Some(Phase::Finished));
}

fn any_phase() -> impl Strategy<Value = Phase> {
    proptest::sample::select(vec![
        Phase::Created,
        Phase::PreparingRuntime,
        Phase::Started,
        Phase::AuthRequired,
        Phase::AuthResolved,
        Phase::Ready,
        Phase::Finished,
        Phase::NamespaceDeleted,
    ])
}

proptest! {
    #[test]
    fn any_order_of_reports_ends_at_the_highest_phase(phases in proptest::collection::vec(any_phase(), 1..12)) {
        let mut s = StatusState { run_id: "r".into(), ..Default::default() };
        for p in &phases {
            let before = s.phase;
            s = s.merge(&StatusState { run_id: "r".into(), phase: Some(*p), ..Default::default() });
            prop_assert!(before.is_none_or(|b| s.phase >= Some(b)));
        }
        prop_assert_eq!(s.phase, phases.iter().max().copied());
    }
}

#[test]
fn status_comments_speak_the_run_locale_and_offer_next_steps_when_finished() {
    let mut s = state(Phase::Finished);
    s.run_status = Some(RunStatus::Succeeded);
    s.next_steps = vec![NextStep { label: "run:qa".into(), url: "https://codex.example/?modal=next-step&target_label=run:qa".into() }];
    let ru = render_status(&s, Locale::Ru);
    let en = render_status(&s, Locale::En);
    assert!(ru.contains("Запуск завершён") && ru.contains("Следующие шаги"), "{ru}");
    assert!(en.contains("Run finished") && en.contains("Next steps") && en.contains("[run:qa]"), "{en}");
    let created = render_status(&state(Phase::Created), Locale::En);
    assert!(created.contains("scheduled") && !created.contains("Next steps"));
    s.run_status = Some(RunStatus::Failed);
    s.failure_reason = Some("kubernetes_job_failed".into());
    assert!(render_status(&s, Locale::En).contains("Run failed"));
}

#[test]
fn every_ignore_reason_with_a_warning_has_its_own_text_in_both_locales() {
    let generic = warning_text("something_else", Locale::En);
    for reason in [
        "sender_not_allowed",
        "sender_not_project_member",
        "sender_role_read_not_permitted",
        "sender_type_bot_not_permitted",
        "repository_not_bound_for_issue_label",
        "issue_trigger_candidate_not_found",
        "pull_request_review_stage_label_conflict",
        "pull_request_review_stage_ambiguous",
        "pull_request_review_stage_not_resolved",
    ] {
        assert_ne!(warning_text(reason, Locale::En), generic, "{reason} falls back to the generic text");
        assert_ne!(warning_text(reason, Locale::Ru), warning_text(reason, Locale::En), "{reason} is not translated");
    }
    let w = render_warning("issue_trigger_candidate_not_found", &["run:dev".into(), "run:dev:revise".into()], Locale::Ru);
    assert!(w.contains("`run:dev`, `run:dev:revise`") && w.contains("Код причины"), "{w}");
    let c = render_conflict(&["run:plan".into(), "run:dev".into()], Locale::En);
    assert!(c.contains("`run:plan`, `run:dev`") && c.contains("Keep one label"), "{c}");
    assert_eq!(Locale::parse("ru-RU"), Locale::Ru);
    assert_eq!(Locale::parse("de"), Locale::En);
}

fn kind(s: &str) -> TriggerKind {
    TriggerKind::parse(s).unwrap()
}

fn targets(steps: &[NextStep]) -> Vec<String> {
    steps.iter().map(|s| s.url.split("target_label=").nth(1).unwrap().split('&').next().unwrap().replace("%3A", ":")).collect()
}

#[test]
fn next_steps_follow_the_stage_matrix() {
    let dev = next_steps(kind("dev"), "acme/app", Some(7), Some(9), "https://c.example/", Locale::En);
    assert_eq!(targets(&dev), ["run:dev:revise", "run:qa", "need:reviewer", "run:rethink", "run:doc-audit"]);
    let u = &dev[1].url;
    assert!(
        u.starts_with("https://c.example/?modal=next-step&repository_full_name=acme%2Fapp&issue_number=7&pull_request_number=9"),
        "{u}"
    );
    assert!(u.ends_with("&action_kind=issue_stage_transition&target_label=run%3Aqa&display_variant=all_flows"), "{u}");
    assert!(dev[2].url.contains("action_kind=pull_request_label_add"));
    // A revise run offers the same as its stage; no PR, no reviewer.
    let revise = next_steps(kind("dev_revise"), "acme/app", Some(7), None, "https://c.example", Locale::Ru);
    assert_eq!(targets(&revise), ["run:dev:revise", "run:qa", "run:rethink", "run:doc-audit"]);
    assert!(revise[0].label.contains("доработать"), "{}", revise[0].label);
    // Forward targets merge across profiles into one variant.
    let intake = next_steps(kind("intake"), "a/b", Some(1), None, "https://c", Locale::En);
    let variants: Vec<&str> = intake.iter().map(|s| s.url.rsplit("display_variant=").next().unwrap()).collect();
    assert_eq!(targets(&intake), ["run:intake:revise", "run:vision", "run:prd", "run:plan"]);
    assert_eq!(variants, ["revise", "full_flow", "shortened_flow", "very_short_flow"]);
    let design = next_steps(kind("design"), "a/b", Some(1), None, "https://c", Locale::En);
    assert_eq!(targets(&design), ["run:design:revise", "run:plan", "run:dev", "run:rethink"]);
    assert_eq!(
        targets(&next_steps(kind("ops"), "a/b", Some(1), None, "https://c", Locale::En)),
        ["run:ops:revise", "run:rethink", "run:doc-audit", "run:self-improve"]
    );
    assert_eq!(targets(&next_steps(kind("rethink"), "a/b", Some(1), None, "https://c", Locale::En)), ["run:intake", "run:prd", "run:plan"]);
}

#[test]
fn a_partial_report_parses_with_only_the_fields_it_carries() {
    let partial: StatusState =
        serde_json::from_value(serde_json::json!({"phase": "finished", "run_status": "succeeded", "pr_number": 2, "pr_url": null}))
            .unwrap();
    assert_eq!((partial.phase, partial.run_status, partial.pr_number), (Some(Phase::Finished), Some(RunStatus::Succeeded), Some(2)));
    assert!(partial.run_id.is_empty());
}
