use super::*;
use crate::webhook::{Issue, PullRequest, Push, Repo, Sender};
use proptest::prelude::*;

fn cfg() -> PolicyConfig {
    let mut runtime = RuntimePolicy::default();
    for k in ["intake", "intake_revise", "self_improve"] {
        runtime.trigger_modes.insert(TriggerKind::parse(k).unwrap(), RuntimeMode::CodeOnly);
    }
    PolicyConfig { labels: LabelCatalog::default(), bot_login: "codex-bot".into(), runtime, platform_namespace: "codex-k8s-prod".into() }
}

fn binding() -> Binding {
    Binding { project_id: Uuid::nil(), repository_id: Uuid::nil(), default_ref: "main".into(), platform: false }
}

fn user(login: &str) -> Option<Sender> {
    Some(Sender { id: 1, login: login.into(), kind: "User".into() })
}

fn labeled(label: &str, existing: &[&str]) -> Event {
    let mut labels: Vec<String> = existing.iter().map(|s| s.to_string()).collect();
    labels.push(label.to_string());
    Event {
        delivery_id: "d-1".into(),
        name: "issues".into(),
        action: Some("labeled".into()),
        repository: Some(Repo { id: 7, full_name: "acme/app".into(), default_branch: Some("main".into()) }),
        sender: user("alice"),
        label: Some(label.into()),
        issue: Some(Issue { number: 12, labels, is_pull_request: false }),
        ..Default::default()
    }
}

fn decide_with(e: &Event, standing: SenderStanding, h: &History, bound: bool) -> Decision {
    let c = cfg();
    let b = binding();
    decide(Input { event: e, binding: bound.then_some(&b), sender: standing, history: h, config: &c })
}

fn member() -> SenderStanding {
    SenderStanding::Member(ProjectRole::ReadWrite)
}

#[test]
fn run_dev_by_a_member_starts_a_dev_run_with_status_comment_and_eyes() {
    let d = decide_with(&labeled("run:dev", &["state:blocked", "[ai-model-gpt-5.2]"]), member(), &History::default(), true);
    assert_eq!(d.outcome, Outcome::Accepted);
    let run = d.run.unwrap();
    assert_eq!((run.kind.to_string().as_str(), run.agent_key.as_deref(), run.correlation_id.as_str()), ("dev", Some("dev"), "d-1"));
    assert_eq!(run.runtime.target_env.as_deref(), Some("ai"));
    assert_eq!(run.runtime.build_ref.as_deref(), Some("main"));
    assert!(d.effects.contains(&Effect::StatusComment { target: 12 }));
    assert!(d.effects.contains(&Effect::Reaction { target: ReactionTarget::Issue(12), content: ReactionContent::Eyes }));
}

#[test]
fn a_second_run_label_is_a_conflict_even_when_the_payload_lags() {
    let d = decide_with(&labeled("run:dev", &["run:plan"]), member(), &History::default(), true);
    assert_eq!(d.reason().as_deref(), Some("issue_trigger_label_conflict"));
    assert!(d.run.is_none());
    assert!(matches!(&d.effects[0], Effect::Comment { template: CommentTemplate::TriggerConflict { labels }, .. } if labels.len() == 2));

    // The payload's label list does not yet include the label just added.
    let mut e = labeled("run:dev", &["run:plan"]);
    e.issue.as_mut().unwrap().labels.retain(|l| l != "run:dev");
    assert_eq!(decide_with(&e, member(), &History::default(), true).reason().as_deref(), Some("issue_trigger_label_conflict"));
}

#[test]
fn non_trigger_labels_never_start_runs() {
    for l in ["state:in-review", "need:input", "need:reviewer", "bug", "[ai-model-gpt-5.4]", "run:debug"] {
        let d = decide_with(&labeled(l, &[]), member(), &History::default(), true);
        assert_eq!(d.reason().as_deref(), Some("issue_event_not_trigger_label"), "{l}");
        assert!(d.run.is_none() && d.effects.is_empty());
    }
}

#[test]
fn unbound_repositories_get_a_warning_and_no_run() {
    let d = decide_with(&labeled("run:dev", &[]), member(), &History::default(), false);
    assert_eq!(d.reason().as_deref(), Some("repository_not_bound_for_issue_label"));
    assert!(matches!(&d.effects[..], [Effect::Comment { target: 12, template: CommentTemplate::TriggerWarning { .. } }]));
}

#[test]
fn sender_authorisation_follows_the_spec() {
    let cases = [
        (SenderStanding::Unknown, "sender_not_allowed"),
        (SenderStanding::NotMember, "sender_not_project_member"),
        (SenderStanding::Member(ProjectRole::Read), "sender_role_read_not_permitted"),
    ];
    for (standing, code) in cases {
        assert_eq!(decide_with(&labeled("run:dev", &[]), standing, &History::default(), true).reason().as_deref(), Some(code));
    }
    for ok in [SenderStanding::Owner, SenderStanding::PlatformAdmin, SenderStanding::Member(ProjectRole::Admin)] {
        assert!(decide_with(&labeled("run:dev", &[]), ok, &History::default(), true).run.is_some());
    }
    let mut e = labeled("run:dev", &[]);
    e.sender = Some(Sender { id: 2, login: "codex-bot[bot]".into(), kind: "Bot".into() });
    assert_eq!(
        decide_with(&e, SenderStanding::Owner, &History::default(), true).reason().as_deref(),
        Some("sender_type_bot_not_permitted")
    );
    e.sender = None;
    assert_eq!(decide_with(&e, SenderStanding::Owner, &History::default(), true).reason().as_deref(), Some("sender_login_missing"));
}

#[test]
fn late_stages_route_by_lineage() {
    let d = decide_with(&labeled("run:qa", &[]), member(), &History::default(), true);
    assert_eq!(d.reason().as_deref(), Some("issue_trigger_candidate_not_found"));
    assert_eq!(d.suggested_labels, vec!["run:dev".to_string(), "run:dev:revise".to_string()]);
    assert!(d.effects.contains(&Effect::AddLabel { target: 12, label: "need:input".into() }));

    let h = History {
        candidate: Some(Candidate { pr_number: 40, build_ref: "abc123".into(), namespace: Some("codex-issue-x".into()) }),
        ..Default::default()
    };
    let run = decide_with(&labeled("run:release", &[]), member(), &h, true).run.unwrap();
    assert_eq!(
        (run.runtime.build_ref.as_deref(), run.runtime.namespace.as_deref(), run.pr_number),
        (Some("abc123"), Some("codex-issue-x"), Some(40))
    );
    let run = decide_with(&labeled("run:dev:revise", &[]), member(), &h, true).run.unwrap();
    assert_eq!(run.runtime.build_ref.as_deref(), Some("abc123"));

    let run = decide_with(&labeled("run:ops", &[]), member(), &History::default(), true).run.unwrap();
    assert_eq!(run.runtime.access_profile, Some(AccessProfile::ProductionReadonly));
    assert_eq!(run.runtime.target_env.as_deref(), Some("production"));
    assert_eq!(run.agent_key.as_deref(), Some("sre"));
    // Every run routed to the platform's namespace is read-only there, ai-repair included.
    for label in ["run:postdeploy", "run:ops", "run:ai-repair"] {
        let run = decide_with(&labeled(label, &[]), member(), &History::default(), true).run.unwrap();
        assert_eq!(run.runtime.namespace.as_deref(), Some("codex-k8s-prod"), "{label}");
        assert_eq!(run.runtime.access_profile, Some(AccessProfile::ProductionReadonly), "{label}");
    }

    let run = decide_with(&labeled("run:intake", &[]), member(), &History::default(), true).run.unwrap();
    assert_eq!(run.runtime.mode, RuntimeMode::CodeOnly);
    assert_eq!(run.agent_key.as_deref(), Some("pm"));
}

#[test]
fn discussion_mode_starts_one_code_only_run_per_issue() {
    let d = decide_with(&labeled("mode:discussion", &["run:plan"]), member(), &History::default(), true);
    let run = d.run.unwrap();
    assert!(run.discussion);
    assert_eq!((run.agent_key.as_deref(), run.runtime.mode), (Some("em"), RuntimeMode::CodeOnly));

    let live = History { live_discussion_run: true, ..Default::default() };
    assert_eq!(
        decide_with(&labeled("mode:discussion", &[]), member(), &live, true).reason().as_deref(),
        Some("discussion_run_already_live")
    );
    assert_eq!(
        decide_with(&labeled("mode:discussion", &["run:plan", "run:dev"]), member(), &History::default(), true).reason().as_deref(),
        Some("discussion_mode_trigger_label_conflict")
    );
}

fn comment(author: &str, labels: &[&str], on_pr: bool) -> Event {
    Event {
        delivery_id: "c-1".into(),
        name: "issue_comment".into(),
        action: Some("created".into()),
        repository: Some(Repo { id: 7, full_name: "acme/app".into(), default_branch: None }),
        sender: user(author),
        issue: Some(Issue { number: 5, labels: labels.iter().map(|s| s.to_string()).collect(), is_pull_request: on_pr }),
        comment_id: Some(99),
        comment_author: Some(author.into()),
        ..Default::default()
    }
}

#[test]
fn discussion_comments_from_humans_only() {
    let d = decide_with(&comment("alice", &["mode:discussion"], false), member(), &History::default(), true);
    assert!(d.run.as_ref().is_some_and(|r| r.discussion && r.source == TriggerSource::IssueComment));
    assert!(
        d.effects
            .contains(&Effect::Reaction { target: ReactionTarget::IssueComment { issue: 5, comment: 99 }, content: ReactionContent::Eyes })
    );

    assert_eq!(
        decide_with(&comment("Codex-Bot", &["mode:discussion"], false), member(), &History::default(), true).reason().as_deref(),
        Some("issue_comment_from_bot")
    );
    assert_eq!(
        decide_with(&comment("alice", &[], false), member(), &History::default(), true).reason().as_deref(),
        Some("issue_comment_not_discussion")
    );
    assert_eq!(
        decide_with(&comment("alice", &["mode:discussion"], true), member(), &History::default(), true).reason().as_deref(),
        Some("issue_comment_not_discussion")
    );

    let live = History { live_discussion_run: true, ..Default::default() };
    let d = decide_with(&comment("alice", &["mode:discussion"], false), member(), &live, true);
    assert_eq!(d.outcome, Outcome::Accepted);
    assert!(d.run.is_none(), "new comments never fan out");
}

fn pr_event(name: &str, action: &str, pr_labels: &[&str]) -> Event {
    Event {
        delivery_id: "p-1".into(),
        name: name.into(),
        action: Some(action.into()),
        repository: Some(Repo { id: 7, full_name: "Acme/App".into(), default_branch: None }),
        sender: user("alice"),
        pull_request: Some(PullRequest {
            number: 40,
            labels: pr_labels.iter().map(|s| s.to_string()).collect(),
            head_ref: "codex/issue-12".into(),
            head_sha: "feedbeef".into(),
            state: "open".into(),
            updated_at: "2026-11-22T10:00:00Z".into(),
        }),
        ..Default::default()
    }
}

#[test]
fn need_reviewer_on_a_pr_starts_a_reviewer_run_with_a_derived_correlation_id() {
    let mut e = pr_event("pull_request", "labeled", &["need:reviewer"]);
    e.label = Some("need:reviewer".into());
    let a = decide_with(&e, member(), &History::default(), true).run.unwrap();
    e.delivery_id = "another-delivery".into();
    let b = decide_with(&e, member(), &History::default(), true).run.unwrap();
    assert_eq!(a.correlation_id, b.correlation_id, "duplicate deliveries of one labelling collapse");
    assert!(a.correlation_id.starts_with("pr-label-reviewer-"));
    assert_eq!(
        (a.agent_key.as_deref(), a.kind.to_string().as_str(), a.runtime.build_ref.as_deref()),
        (Some("reviewer"), "dev", Some("feedbeef"))
    );
    e.pull_request.as_mut().unwrap().updated_at = "2026-11-22T11:00:00Z".into();
    assert_ne!(decide_with(&e, member(), &History::default(), true).run.unwrap().correlation_id, a.correlation_id);
}

fn review(pr_labels: &[&str]) -> Event {
    let mut e = pr_event("pull_request_review", "submitted", pr_labels);
    e.review_state = Some("changes_requested".into());
    e
}

#[test]
fn changes_requested_resolves_the_stage_through_the_chain() {
    let d = decide_with(&review(&["run:design"]), member(), &History::default(), true);
    let run = d.run.unwrap();
    assert_eq!(
        (run.kind.to_string().as_str(), run.label.as_deref(), run.agent_key.as_deref()),
        ("design_revise", Some("run:design:revise"), Some("sa"))
    );
    assert_eq!(run.runtime.build_ref.as_deref(), Some("feedbeef"));
    assert_eq!(d.audit, vec!["run.review.changes_requested.received", "run.revise.stage_resolved"]);

    let h = History { pr_linked_issues: vec![12], linked_issue_labels: Some(vec!["run:plan".into()]), ..Default::default() };
    let run = decide_with(&review(&[]), member(), &h, true).run.unwrap();
    assert_eq!((run.kind.to_string().as_str(), run.issue_number), ("plan_revise", Some(12)));

    let h = History {
        pr_linked_issues: vec![12],
        pr_last_run_stage: Some(Stage::Qa),
        linked_issue_last_stage: Some(Stage::Dev),
        ..Default::default()
    };
    assert_eq!(decide_with(&review(&[]), member(), &h, true).run.unwrap().kind.to_string(), "qa_revise");
    let h = History { pr_linked_issues: vec![12], linked_issue_last_stage: Some(Stage::Dev), ..Default::default() };
    assert_eq!(decide_with(&review(&[]), member(), &h, true).run.unwrap().kind.to_string(), "dev_revise");
}

#[test]
fn changes_requested_never_best_guesses() {
    let d = decide_with(&review(&["run:dev", "run:qa:revise"]), member(), &History::default(), true);
    assert_eq!(d.reason().as_deref(), Some("pull_request_review_stage_label_conflict"));
    assert!(d.effects.contains(&Effect::AddLabel { target: 40, label: "need:input".into() }));

    let h = History { pr_linked_issues: vec![12, 13], ..Default::default() };
    assert_eq!(decide_with(&review(&[]), member(), &h, true).reason().as_deref(), Some("pull_request_review_stage_ambiguous"));

    let d = decide_with(&review(&[]), member(), &History::default(), true);
    assert_eq!(d.reason().as_deref(), Some("pull_request_review_stage_not_resolved"));
    assert!(d.suggested_labels.contains(&"run:dev:revise".to_string()));
    assert!(d.effects.iter().any(|e| matches!(e, Effect::Comment { target: 40, .. })));

    // Only changes_requested triggers.
    let mut e = review(&["run:dev"]);
    e.review_state = Some("approved".into());
    let d = decide_with(&e, member(), &History::default(), true);
    assert!(d.run.is_none() && d.outcome == Outcome::Accepted);
}

fn push_event(git_ref: &str, after: &str, deleted: bool) -> Event {
    Event {
        delivery_id: "push-1".into(),
        name: "push".into(),
        repository: Some(Repo { id: 7, full_name: "acme/platform".into(), default_branch: None }),
        sender: user("alice"),
        push: Some(Push { git_ref: git_ref.into(), after: after.into(), deleted }),
        ..Default::default()
    }
}

#[test]
fn push_to_main_of_the_platform_repository_is_a_deploy_request() {
    let c = cfg();
    let platform = Binding { platform: true, ..binding() };
    let h = History::default();
    let go =
        |e: &Event, b: Option<&Binding>| decide(Input { event: e, binding: b, sender: SenderStanding::Unknown, history: &h, config: &c });
    let run = go(&push_event("refs/heads/main", "abc", false), Some(&platform)).run.unwrap();
    assert!(run.runtime.deploy_only);
    assert_eq!(
        (run.runtime.build_ref.as_deref(), run.runtime.namespace.as_deref(), run.agent_key),
        (Some("abc"), Some("codex-k8s-prod"), None)
    );
    assert!(go(&push_event("refs/heads/feature", "abc", false), Some(&platform)).run.is_none());
    assert!(go(&push_event("refs/heads/main", "0000000", false), Some(&platform)).run.is_none());
    assert!(go(&push_event("refs/heads/main", "abc", true), Some(&platform)).run.is_none());
    assert!(go(&push_event("refs/heads/main", "abc", false), Some(&binding())).run.is_none());
    assert_eq!(go(&push_event("refs/heads/main", "abc", false), None).reason().as_deref(), Some("repository_not_bound_for_push_main"));
}

#[test]
fn closing_issues_and_prs_requests_cleanup() {
    let mut e = labeled("run:dev", &[]);
    e.action = Some("closed".into());
    let d = decide_with(&e, member(), &History::default(), true);
    assert_eq!(d.cleanups, vec![Cleanup::CancelDiscussion { issue: 12 }, Cleanup::IssueNamespaces { issue: 12 }]);
    e.action = Some("unlabeled".into());
    e.label = Some("mode:discussion".into());
    assert_eq!(decide_with(&e, member(), &History::default(), true).cleanups, vec![Cleanup::CancelDiscussion { issue: 12 }]);
    let d = decide_with(&pr_event("pull_request", "closed", &[]), member(), &History::default(), true);
    assert_eq!(d.cleanups, vec![Cleanup::PullRequestNamespaces { pr: 40 }]);
}

#[test]
fn only_who_may_start_runs_or_the_bot_may_cancel_or_clean_up_by_closing() {
    let mut closed = labeled("run:dev", &[]);
    closed.action = Some("closed".into());
    let mut unlabeled = labeled("mode:discussion", &[]);
    unlabeled.action = Some("unlabeled".into());
    let pr_closed = pr_event("pull_request", "closed", &[]);
    for e in [&closed, &unlabeled, &pr_closed] {
        for (standing, reason) in [
            (SenderStanding::Unknown, "sender_not_allowed"),
            (SenderStanding::NotMember, "sender_not_project_member"),
            (SenderStanding::Member(ProjectRole::Read), "sender_role_read_not_permitted"),
        ] {
            let d = decide_with(e, standing, &History::default(), true);
            assert!(d.cleanups.is_empty(), "{:?} by {standing:?} cleaned up", e.action);
            assert_eq!(d.reason().as_deref(), Some(reason));
        }
        // The platform's bot closes what it is done with.
        let mut by_bot = e.clone();
        by_bot.sender = Some(Sender { kind: "Bot".into(), ..user("codex-bot").unwrap() });
        assert!(!decide_with(&by_bot, SenderStanding::Unknown, &History::default(), true).cleanups.is_empty(), "{:?}", e.action);
    }
    // Removing a label that steers nothing needs no authority and does nothing.
    let mut other = labeled("bug", &[]);
    other.action = Some("unlabeled".into());
    let d = decide_with(&other, SenderStanding::Unknown, &History::default(), true);
    assert!(d.cleanups.is_empty() && d.reason().is_none());
}

#[test]
fn renamed_labels_are_honoured() {
    let mut o = std::collections::BTreeMap::new();
    o.insert("RUN_DEV_LABEL".to_string(), "ai:build".to_string());
    let c = PolicyConfig { labels: LabelCatalog::with_overrides(&o), ..cfg() };
    let b = binding();
    let h = History::default();
    let run = decide(Input { event: &labeled("ai:build", &[]), binding: Some(&b), sender: member(), history: &h, config: &c }).run.unwrap();
    assert_eq!(run.kind.to_string(), "dev");
    let d = decide(Input { event: &labeled("run:dev", &[]), binding: Some(&b), sender: member(), history: &h, config: &c });
    assert_eq!(d.reason().as_deref(), Some("issue_event_not_trigger_label"));
}

fn any_label() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "run:dev",
            "run:dev:revise",
            "run:qa",
            "run:plan",
            "run:rethink",
            "run:ai-repair",
            "run:doc-audit",
            "mode:discussion",
            "need:reviewer",
            "need:input",
            "state:in-review",
            "state:blocked",
            "[ai-model-gpt-5.4]",
            "[ai-reasoning-low]",
            "bug",
        ])
        .prop_map(String::from),
        "[a-z:\\-]{1,12}",
    ]
}

fn any_event() -> impl Strategy<Value = Event> {
    (
        proptest::sample::select(vec!["issues", "issue_comment", "pull_request", "pull_request_review", "push", "ping", "release"]),
        proptest::sample::select(vec!["labeled", "unlabeled", "created", "closed", "submitted", "opened"]),
        any_label(),
        proptest::collection::vec(any_label(), 0..5),
        proptest::sample::select(vec!["User", "Bot"]),
        any::<bool>(),
    )
        .prop_map(|(name, action, label, labels, kind, is_pr)| Event {
            delivery_id: "d".into(),
            name: name.into(),
            action: Some(action.into()),
            repository: Some(Repo { id: 1, full_name: "o/r".into(), default_branch: None }),
            sender: Some(Sender { id: 1, login: "alice".into(), kind: kind.into() }),
            label: Some(label),
            issue: Some(Issue { number: 3, labels: labels.clone(), is_pull_request: is_pr }),
            pull_request: Some(PullRequest { number: 4, labels, head_sha: "sha".into(), ..Default::default() }),
            review_state: Some("changes_requested".into()),
            comment_id: Some(1),
            comment_author: Some("alice".into()),
            push: Some(Push { git_ref: "refs/heads/main".into(), after: "abc".into(), deleted: false }),
        })
}

fn any_history() -> impl Strategy<Value = History> {
    (any::<bool>(), proptest::collection::vec(1i64..4, 0..3), any::<bool>()).prop_map(|(live, linked, cand)| History {
        live_discussion_run: live,
        pr_linked_issues: linked,
        pr_last_run_stage: Some(Stage::Dev),
        candidate: cand.then(|| Candidate { pr_number: 4, build_ref: "sha".into(), namespace: None }),
        ..Default::default()
    })
}

proptest! {
    #[test]
    fn a_decision_is_consistent(e in any_event(), h in any_history(), bound in any::<bool>(), role in 0usize..5) {
        let standing = [SenderStanding::Unknown, SenderStanding::Owner, SenderStanding::NotMember,
            SenderStanding::Member(ProjectRole::Read), SenderStanding::Member(ProjectRole::ReadWrite)][role];
        let d = decide_with(&e, standing, &h, bound);
        // At most one run per delivery, and only when accepted.
        if d.run.is_some() { prop_assert_eq!(&d.outcome, &Outcome::Accepted); }
        // An ignored delivery always has a reason code.
        if let Outcome::Ignored(r) = &d.outcome { prop_assert!(!r.code().is_empty()); }
        // A run needs a bound repository, and (except deploys) an authorised human sender.
        if let Some(run) = &d.run {
            prop_assert!(bound);
            if run.source != TriggerSource::PushMain {
                prop_assert!(matches!(standing, SenderStanding::Owner | SenderStanding::Member(ProjectRole::ReadWrite)));
                prop_assert_eq!(e.sender.as_ref().map(|s| s.kind.as_str()), Some("User"));
            }
        }
    }

    #[test]
    fn labels_outside_the_trigger_classes_never_create_runs(label in any_label(), existing in proptest::collection::vec(any_label(), 0..4), on_pr in any::<bool>()) {
        let c = cfg();
        prop_assume!(c.labels.run_label(&label).is_none() && !c.labels.is_discussion(&label) && !c.labels.is_need_reviewer(&label));
        let mut e = labeled(&label, &[]);
        e.issue.as_mut().unwrap().labels.extend(existing.clone());
        if on_pr {
            e.name = "pull_request".into();
            e.pull_request = Some(PullRequest { number: 12, labels: existing, ..Default::default() });
        }
        let d = decide_with(&e, SenderStanding::Owner, &History::default(), true);
        prop_assert!(d.run.is_none());
    }
}
