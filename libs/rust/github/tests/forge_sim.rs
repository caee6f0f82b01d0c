//! The GitHub adapter against forge-sim: every operation of the port, rate limits, outages and
//! typed errors, and every answer forge-sim gave validated against GitHub's OpenAPI description
//! (npm `@octokit/openapi`) by `tools/fixtures/validate-openapi.mjs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_domain::forge::{
    DeliveryFilter, HookSpec, Label, LineComment, NewPullRequest, NewReview, Permission, ProviderError, PullRequestUpdate, ReactionTarget,
    RepoRef, RepositoryProvider, ReviewEvent,
};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_testkit::forge::ForgeSim;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Sim(ForgeSim);

impl std::ops::Deref for Sim {
    type Target = ForgeSim;
    fn deref(&self) -> &ForgeSim {
        &self.0
    }
}

impl Sim {
    fn start() -> Self {
        Sim(ForgeSim::start())
    }

    fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body))
    }

    fn provider(&self, token: &str, tune: impl FnOnce(&mut GithubSettings)) -> GithubProvider {
        let mut s = GithubSettings::new(self.url(), SecretString::from(token.to_string()));
        s.backoff = Duration::from_millis(50);
        tune(&mut s);
        GithubProvider::new(Github::new(s).unwrap())
    }
}

fn setup() -> (Sim, String, RepoRef) {
    let sim = Sim::start();
    let bot = sim.user("codex-bot");
    assert_eq!(sim.post("/_sim/repos", Some(&bot), json!({"name": "app"})).0, 201);
    (sim, bot, RepoRef::new("codex-bot", "app"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_works_against_forge_sim_and_its_answers_match_githubs_openapi_description() {
    let (sim, bot, repo) = setup();
    let alice = sim.user("alice");
    assert_eq!(sim.post("/_sim/repos/codex-bot/app/collaborators", Some(&bot), json!({"login": "alice", "permission": "write"})).0, 204);
    sim.user("mallory");
    let gh = sim.provider(&bot, |_| {});

    let r = gh.repository(&repo).await.unwrap();
    assert_eq!((r.full_name.as_str(), r.default_branch.as_str()), ("codex-bot/app", "main"));
    assert!(r.clone_url.ends_with("/codex-bot/app.git"));

    // Labels: ensure creates, ensures again without change, updates a changed colour; list pages.
    let run_dev = Label { name: "run:dev".into(), color: "0e8a16".into(), description: Some("Start the developer agent".into()) };
    assert_eq!(gh.ensure_label(&repo, &run_dev).await.unwrap(), run_dev);
    assert_eq!(gh.ensure_label(&repo, &run_dev).await.unwrap(), run_dev);
    let recoloured = Label { color: "d73a4a".into(), ..run_dev.clone() };
    assert_eq!(gh.ensure_label(&repo, &recoloured).await.unwrap().color, "d73a4a");
    for i in 0..105 {
        gh.ensure_label(&repo, &Label { name: format!("bulk-{i:03}"), color: "ededed".into(), description: None }).await.unwrap();
    }
    let labels = gh.list_labels(&repo).await.unwrap();
    assert_eq!(labels.len(), 106, "pagination follows Link rel=next past 100");
    gh.delete_label(&repo, "bulk-000").await.unwrap();
    gh.delete_label(&repo, "bulk-000").await.unwrap(); // a missing label is not an error
    assert_eq!(gh.list_labels(&repo).await.unwrap().len(), 105);

    // An issue opened by alice; comments, reactions, labels.
    let (s, issue) = sim.post("/repos/codex-bot/app/issues", Some(&alice), json!({"title": "Add a greeting", "body": "Please"}));
    assert_eq!(s, 201, "{issue}");
    let n = issue["number"].as_i64().unwrap();
    let i = gh.issue(&repo, n).await.unwrap();
    assert_eq!((i.title.as_str(), i.author.as_str(), i.is_pull_request), ("Add a greeting", "alice", false));
    let c = gh.create_comment(&repo, n, "first").await.unwrap();
    let c = gh.update_comment(&repo, c.id, "first, edited").await.unwrap();
    assert_eq!(c.body, "first, edited");
    assert_eq!(gh.list_comments(&repo, n).await.unwrap().iter().map(|c| c.body.clone()).collect::<Vec<_>>(), vec!["first, edited"]);
    gh.add_reaction(&repo, ReactionTarget::Issue(n), "eyes").await.unwrap();
    gh.add_reaction(&repo, ReactionTarget::Issue(n), "eyes").await.unwrap();
    gh.add_reaction(&repo, ReactionTarget::Comment(c.id), "+1").await.unwrap();
    let after = gh.add_labels(&repo, n, &["run:dev".to_string(), "state:in-review".to_string()]).await.unwrap();
    assert_eq!(after, vec!["run:dev", "state:in-review"]);
    gh.remove_label(&repo, n, "run:dev").await.unwrap();
    gh.remove_label(&repo, n, "run:dev").await.unwrap(); // already gone: not an error
    assert_eq!(gh.issue_labels(&repo, n).await.unwrap(), vec!["state:in-review"]);

    // Pull requests: create, find by head, update, get; reviews and line comments.
    let pr = gh
        .create_pull(
            &repo,
            &NewPullRequest {
                title: "Greeting".into(),
                body: "Closes #1".into(),
                head: "codex/issue-1".into(),
                base: "main".into(),
                draft: false,
            },
        )
        .await
        .unwrap();
    assert_eq!((pr.head_ref.as_str(), pr.base_ref.as_str(), pr.state.as_str()), ("codex/issue-1", "main", "open"));
    assert_eq!(gh.find_pull_by_head(&repo, "codex/issue-1").await.unwrap().map(|p| p.number), Some(pr.number));
    assert_eq!(gh.find_pull_by_head(&repo, "codex/issue-99").await.unwrap(), None);
    let dup = gh
        .create_pull(
            &repo,
            &NewPullRequest { title: "Again".into(), body: String::new(), head: "codex/issue-1".into(), base: "main".into(), draft: false },
        )
        .await
        .unwrap_err();
    assert!(matches!(dup, ProviderError::Validation(ref m) if m.contains("already exists")), "{dup:?}");
    let updated = gh
        .update_pull(&repo, pr.number, &PullRequestUpdate { body: Some("Closes #1\n\nUpdated".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(updated.body.as_deref(), Some("Closes #1\n\nUpdated"));
    assert_eq!(gh.pull(&repo, pr.number).await.unwrap().title, "Greeting");
    assert!(gh.issue(&repo, pr.number).await.unwrap().is_pull_request);
    gh.add_labels(&repo, pr.number, &["state:in-review".to_string()]).await.unwrap();

    let alice_gh = sim.provider(&alice, |_| {});
    let review = alice_gh
        .create_review(
            &repo,
            pr.number,
            &NewReview {
                body: "Please rename".into(),
                event: ReviewEvent::RequestChanges,
                comments: vec![LineComment { path: "src/main.rs".into(), line: 3, body: "call it greet".into() }],
            },
        )
        .await
        .unwrap();
    assert_eq!(review.state, "CHANGES_REQUESTED");
    let reviews = gh.list_reviews(&repo, pr.number).await.unwrap();
    assert_eq!((reviews.len(), reviews[0].author.as_str()), (1, "alice"));
    let rc = gh.list_review_comments(&repo, pr.number).await.unwrap();
    assert_eq!((rc[0].path.as_str(), rc[0].line, rc[0].body.as_str()), ("src/main.rs", Some(3), "call it greet"));
    let reply = gh.reply_to_review_comment(&repo, pr.number, rc[0].id, "Renamed to greet").await.unwrap();
    assert_eq!((reply.in_reply_to, reply.path.as_str(), reply.line), (Some(rc[0].id), "src/main.rs", Some(3)));
    assert!(matches!(gh.reply_to_review_comment(&repo, pr.number, reply.id, "nested").await, Err(ProviderError::Validation(_))));
    assert!(matches!(gh.reply_to_review_comment(&repo, pr.number, 999_999, "x").await, Err(ProviderError::NotFound(_))));
    assert!(matches!(gh.reply_to_review_comment(&repo, pr.number, rc[0].id, " ").await, Err(ProviderError::Validation(_))));
    assert_eq!(gh.list_review_comments(&repo, pr.number).await.unwrap().len(), 2);

    // Files at a ref.
    let files = json!({"ref": "main", "files": {"docs/prompts/dev_work_en.md": "Implement the issue.\n", "README.md": "hello"}});
    assert_eq!(sim.post("/_sim/repos/codex-bot/app/files", Some(&bot), files).0, 204);
    assert_eq!(gh.file(&repo, "docs/prompts/dev_work_en.md", "main").await.unwrap().as_deref(), Some(&b"Implement the issue.\n"[..]));
    assert_eq!(gh.file(&repo, "docs/missing.md", "main").await.unwrap(), None);

    // Webhooks: ensure twice keeps one hook; deliveries and a redelivery; delete.
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", receiver.local_addr().unwrap());
    drop(receiver); // nothing listens: deliveries are recorded as failed (status 0)
    let spec = HookSpec { url: url.clone(), secret: "s3cret".into(), events: vec!["issues".into()] };
    let hook = gh.ensure_webhook(&repo, &spec).await.unwrap();
    let again = gh.ensure_webhook(&repo, &HookSpec { events: vec!["issues".into(), "pull_request".into()], ..spec.clone() }).await.unwrap();
    assert_eq!(hook.id, again.id);
    assert_eq!(again.events, vec!["issues", "pull_request"]);
    gh.add_labels(&repo, n, &["need:input".to_string()]).await.unwrap(); // triggers an issues.labeled delivery
    let started = Instant::now();
    let deliveries = loop {
        let d = gh.list_deliveries(&repo, hook.id, DeliveryFilter::All, 10).await.unwrap();
        if !d.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((deliveries[0].event.as_str(), deliveries[0].action.as_deref()), ("issues", Some("labeled")));
    // The delivery carries the payload that was sent; only failed deliveries are listed as failed.
    let full = gh.delivery(&repo, hook.id, deliveries[0].id).await.unwrap();
    assert_eq!(full.delivery, deliveries[0]);
    assert_eq!((full.payload["action"].as_str(), full.payload["label"]["name"].as_str()), (Some("labeled"), Some("need:input")));
    assert_eq!(full.payload["issue"]["number"].as_i64(), Some(n));
    let failed = gh.list_deliveries(&repo, hook.id, DeliveryFilter::Failed, 10).await.unwrap();
    assert_eq!(deliveries[0].status_code, 0, "nothing listens at the hook's URL");
    assert!(failed.iter().any(|d| d.id == deliveries[0].id), "{failed:?}");
    assert!(matches!(gh.delivery(&repo, hook.id, 999_999).await.unwrap_err(), ProviderError::NotFound(_)));
    gh.redeliver(&repo, hook.id, deliveries[0].id).await.unwrap();
    let started = Instant::now();
    loop {
        let d = gh.list_deliveries(&repo, hook.id, DeliveryFilter::All, 10).await.unwrap();
        if d.iter().any(|x| x.redelivery && x.guid == deliveries[0].guid) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no redelivery recorded: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Permissions.
    assert_eq!(gh.permission(&repo, "codex-bot").await.unwrap(), Permission::Admin);
    assert_eq!(gh.permission(&repo, "alice").await.unwrap(), Permission::Write);
    assert_eq!(gh.permission(&repo, "mallory").await.unwrap(), Permission::Read);
    assert!(matches!(gh.permission(&repo, "nobody").await.unwrap_err(), ProviderError::NotFound(_)));
    gh.delete_webhook(&repo, hook.id).await.unwrap();
    gh.delete_webhook(&repo, hook.id).await.unwrap();

    // Every answer forge-sim gave, against GitHub's published schemas.
    let exchanges = sim.exchanges();
    let report = ck8s_testkit::github::validate_against_openapi(&exchanges);
    assert!(report["failures"].as_array().is_some_and(|f| f.is_empty()), "{report:#}");
    let ops: Vec<String> = report["operations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
    for op in [
        "GET /repos/{owner}/{repo}",
        "GET /repos/{owner}/{repo}/labels",
        "POST /repos/{owner}/{repo}/labels",
        "GET /repos/{owner}/{repo}/labels/{name}",
        "PATCH /repos/{owner}/{repo}/labels/{name}",
        "DELETE /repos/{owner}/{repo}/labels/{name}",
        "GET /repos/{owner}/{repo}/issues/{issue_number}",
        "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/reactions",
        "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        "GET /repos/{owner}/{repo}/issues/{issue_number}/labels",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
        "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
        "POST /repos/{owner}/{repo}/pulls",
        "GET /repos/{owner}/{repo}/pulls",
        "GET /repos/{owner}/{repo}/pulls/{pull_number}",
        "PATCH /repos/{owner}/{repo}/pulls/{pull_number}",
        "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "GET /repos/{owner}/{repo}/pulls/{pull_number}/comments",
        "GET /repos/{owner}/{repo}/contents/{path}",
        "GET /repos/{owner}/{repo}/hooks",
        "POST /repos/{owner}/{repo}/hooks",
        "PATCH /repos/{owner}/{repo}/hooks/{hook_id}",
        "DELETE /repos/{owner}/{repo}/hooks/{hook_id}",
        "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries",
        "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}",
        "POST /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts",
        "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
    ] {
        assert!(ops.contains(&op.to_string()), "{op} was not exercised: {ops:?}");
    }
    drop(sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_within_bounds_and_otherwise_reported() {
    let (sim, bot, repo) = setup();

    // Secondary limit: 403 with Retry-After, twice, then success.
    sim.faults(json!({"rate_limit": 2, "retry_after": 1}));
    let gh = sim.provider(&bot, |_| {});
    let started = Instant::now();
    assert_eq!(gh.repository(&repo).await.unwrap().full_name, "codex-bot/app");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}", started.elapsed());

    // Exhausted primary limit: waits until X-RateLimit-Reset (plus a second), then success.
    sim.faults(json!({"rate_limit": 1, "primary_reset_in": 1}));
    let started = Instant::now();
    gh.repository(&repo).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());

    // A wait longer than allowed is not attempted: a typed error with the wait.
    let impatient = sim.provider(&bot, |s| s.max_wait = Duration::from_secs(5));
    sim.faults(json!({"rate_limit": 1, "retry_after": 3600}));
    let started = Instant::now();
    match impatient.repository(&repo).await.unwrap_err() {
        ProviderError::RateLimited { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(3600))),
        e => panic!("expected RateLimited, got {e:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // More limited answers than attempts: a typed error after the bounded retries.
    let few = sim.provider(&bot, |s| s.max_attempts = 2);
    sim.faults(json!({"rate_limit": 5, "retry_after": 1}));
    assert!(matches!(few.repository(&repo).await.unwrap_err(), ProviderError::RateLimited { .. }));
    sim.faults(json!({}));
    drop(sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_are_retried_for_reads_and_reported_for_writes_and_errors_are_typed() {
    let (sim, bot, repo) = setup();
    let gh = sim.provider(&bot, |_| {});

    sim.faults(json!({"outage": 2}));
    assert_eq!(gh.repository(&repo).await.unwrap().full_name, "codex-bot/app", "a GET is retried through a short outage");

    let (_, issue) = sim.post("/repos/codex-bot/app/issues", Some(&bot), json!({"title": "t"}));
    let n = issue["number"].as_i64().unwrap();
    sim.faults(json!({"outage": 1}));
    let e = gh.create_comment(&repo, n, "hello").await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)) && e.is_retryable(), "a POST is never repeated blindly: {e:?}");
    sim.faults(json!({}));
    assert!(gh.list_comments(&repo, n).await.unwrap().is_empty(), "the failed POST created nothing");

    assert!(matches!(gh.issue(&repo, 999).await.unwrap_err(), ProviderError::NotFound(_)));
    let e = gh.ensure_label(&repo, &Label { name: "bad".into(), color: "not-a-colour".into(), description: None }).await.unwrap_err();
    assert!(matches!(e, ProviderError::Validation(ref m) if m.contains("color")), "{e:?}");
    let stranger = sim.provider("fsim_not_a_token", |_| {});
    let e = stranger.repository(&repo).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("fsim_not_a_token"), "errors never carry the token: {e}");

    // Nothing listens: a transient error naming the request, after bounded retries.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut s = GithubSettings::new(url, SecretString::from("t".to_string()));
    s.backoff = Duration::from_millis(10);
    let e = GithubProvider::new(Github::new(s).unwrap()).repository(&repo).await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient(ref m) if m.contains("/repos/codex-bot/app")), "{e:?}");
    drop(sim);
}
