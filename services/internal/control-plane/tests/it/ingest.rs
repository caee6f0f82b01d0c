//! The ingest use-case on a real database, fed with GitHub's published webhook examples adjusted
//! only in labels, sender and repository ids.

use ck8s_domain::comments::Locale;
use ck8s_domain::labels::LabelCatalog;
use ck8s_domain::policy::{PolicyConfig, RuntimeMode, RuntimePolicy};
use ck8s_domain::stage::TriggerKind;
use ck8s_testkit::github::{example, with_labels, with_number, with_repo_and_sender};
use control_plane::bootstrap::{self, BootstrapConfig, MemberSeed, RepoSeed};
use control_plane::ingest::{IngestError, IngestSettings, Ingestor, Status};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;

const REPO_ID: i64 = 4242;
const PLATFORM_REPO_ID: i64 = 777;
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn settings() -> IngestSettings {
    let mut runtime = RuntimePolicy::default();
    runtime.trigger_modes.insert(TriggerKind::parse("intake").unwrap(), RuntimeMode::CodeOnly);
    IngestSettings {
        policy: PolicyConfig {
            labels: LabelCatalog::default(),
            bot_login: "codex-bot".into(),
            runtime,
            platform_namespace: "codex-k8s-prod".into(),
        },
        learning_mode_default: false,
        locale: Locale::En,
    }
}

/// A database with an owner, a writer (alice), a reader (bob), a project with `acme/app`, and
/// a platform project with `acme/platform`.
pub async fn setup() -> (ck8s_testkit::TestDb, Ingestor) {
    let db = ck8s_testkit::fresh_db().await;
    let sealer = ck8s_crypto::Sealer::from_hex(&SecretString::from(KEY.to_string())).unwrap();
    let cfg = BootstrapConfig {
        owner_email: Some("owner@example.com".into()),
        owner_github_login: Some("the-owner".into()),
        members: vec![
            MemberSeed { login: "alice".into(), email: "alice@example.com".into(), role: "read_write".into() },
            MemberSeed { login: "bob".into(), email: "bob@example.com".into(), role: "read".into() },
        ],
        allowed_emails: vec!["carol@example.com".into()],
        project_slug: Some("acme".into()),
        repositories: vec![RepoSeed { owner: "acme".into(), name: "app".into(), external_id: REPO_ID }],
        github_token: Some(SecretString::from("ghp_test".to_string())),
        ..Default::default()
    };
    bootstrap::apply(&db.pool, &cfg, &sealer).await.unwrap();
    let platform = BootstrapConfig {
        project_slug: Some("codex-k8s".into()),
        repositories: vec![RepoSeed { owner: "acme".into(), name: "platform".into(), external_id: PLATFORM_REPO_ID }],
        platform_repo: Some("acme/platform".into()),
        github_token: Some(SecretString::from("ghp_test".to_string())),
        ..Default::default()
    };
    bootstrap::apply(&db.pool, &platform, &sealer).await.unwrap();
    // carol is known but not a member; the github login is learnt at her first OAuth login.
    sqlx::query("UPDATE users SET github_login = 'carol' WHERE email = 'carol@example.com'").execute(&db.pool).await.unwrap();
    let ingestor = Ingestor::start(db.pool.clone(), settings());
    (db, ingestor)
}

pub fn issue_labeled(label: &str, labels: &[&str], sender: &str) -> Value {
    let v = with_repo_and_sender(example("issues", Some("labeled")), REPO_ID, "acme/app", sender, "User");
    with_number(with_labels(v, Some(label), labels, "issue"), "issue", 12)
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn effects(pool: &PgPool, correlation: &str) -> Vec<(String, i32, Value)> {
    sqlx::query_as("SELECT kind, target_number, payload FROM github_side_effects WHERE correlation_id = $1 ORDER BY id")
        .bind(correlation)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn events(pool: &PgPool, correlation: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM flow_events WHERE correlation_id = $1 ORDER BY id")
        .bind(correlation)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn ignored(i: &Ingestor, pool: &PgPool, delivery: &str, event: &str, v: &Value) -> String {
    let r = i.ingest(delivery, event, &body(v)).await.unwrap();
    assert_eq!(r.status, Status::Ignored, "{r:?}");
    assert!(r.run_id.is_none());
    let stored: (String, Option<String>) = sqlx::query_as("SELECT outcome, reason FROM webhook_deliveries WHERE delivery_id = $1")
        .bind(delivery)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(stored, ("ignored".to_string(), r.reason.clone()));
    assert!(events(pool, delivery).await.contains(&"webhook.ignored".to_string()));
    r.reason.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_dev_from_a_member_creates_one_pending_run_with_its_audit_trail_and_owed_effects() {
    let (db, i) = setup().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen(ck8s_store::ingest::RUN_PENDING_CHANNEL).await.unwrap();

    let v = issue_labeled("run:dev", &["run:dev", "state:blocked", "[ai-model-gpt-5.2]"], "alice");
    let r = i.ingest("d-dev", "issues", &body(&v)).await.unwrap();
    assert_eq!((r.status, r.correlation_id.as_str(), r.reason.as_deref()), (Status::Accepted, "d-dev", None));
    let run_id = r.run_id.unwrap();

    let note = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
    assert_eq!(note.payload(), run_id.to_string(), "workers are woken with the run id");

    let (status, kind, agent, issue, mode, payload): (String, String, String, i32, String, Value) =
        sqlx::query_as("SELECT status, trigger_kind, agent_key, issue_number, runtime_mode, run_payload FROM agent_runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), kind.as_str(), agent.as_str(), issue, mode.as_str()), ("pending", "dev", "dev", 12, "full-env"));
    assert_eq!(payload["trigger"]["source"], "issue_label");
    assert_eq!(payload["trigger"]["label"], "run:dev");
    assert_eq!(payload["agent"]["key"], "dev");
    assert_eq!(payload["agent"]["name"], "AI Developer");
    assert_eq!(payload["sender"]["login"], "alice");
    assert_eq!(payload["repository"]["id"], REPO_ID);
    assert_eq!(payload["runtime"]["target_env"], "ai");
    assert_eq!(payload["runtime"]["access_profile"], "candidate");
    assert_eq!(payload["learning_mode"], false);
    assert_eq!(payload["raw_payload"], v, "the whole webhook is kept");
    assert_eq!(payload["issue"]["labels"].as_array().unwrap().len(), 3);

    assert_eq!(events(&db.pool, "d-dev").await, vec!["webhook.received", "run.enqueued"]);
    let fx = effects(&db.pool, "d-dev").await;
    assert_eq!(fx.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(), vec![("status_comment", 12), ("reaction", 12)]);
    assert_eq!(fx[1].2["content"], "eyes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_delivery_is_a_duplicate_without_side_effects() {
    let (db, i) = setup().await;
    let v = issue_labeled("run:dev", &["run:dev"], "alice");
    let first = i.ingest("d-1", "issues", &body(&v)).await.unwrap();
    let runs = count(&db.pool, "SELECT count(*) FROM agent_runs").await;
    let fx = count(&db.pool, "SELECT count(*) FROM github_side_effects").await;
    let again = i.ingest("d-1", "issues", &body(&v)).await.unwrap();
    assert_eq!(again.status, Status::Duplicate);
    assert_eq!((again.correlation_id.as_str(), again.run_id), ("d-1", first.run_id));
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, runs);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM github_side_effects").await, fx);
    assert!(events(&db.pool, "d-1").await.contains(&"webhook.duplicate".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_copies_of_one_delivery_make_one_run_and_one_set_of_side_effects() {
    let (db, i) = setup().await;
    let i = Arc::new(i);
    let v = body(&issue_labeled("run:dev", &["run:dev"], "alice"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (i, v) = (i.clone(), v.clone());
        tasks.push(tokio::spawn(async move { i.ingest("same", "issues", &v).await.unwrap() }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|r| r.status == Status::Accepted).count(), 1);
    assert_eq!(statuses.iter().filter(|r| r.status == Status::Duplicate).count(), 49);
    let run_ids: std::collections::BTreeSet<_> = statuses.iter().map(|r| r.run_id).collect();
    assert_eq!(run_ids.len(), 1, "every answer names the same run");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 1);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM github_side_effects").await, 2);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM flow_events WHERE event_type = 'webhook.received'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_and_non_triggers_are_ignored_with_their_reason() {
    let (db, i) = setup().await;
    let v = issue_labeled("run:dev", &["run:plan", "run:dev"], "alice");
    assert_eq!(ignored(&i, &db.pool, "c-1", "issues", &v).await, "issue_trigger_label_conflict");
    let fx = effects(&db.pool, "c-1").await;
    assert_eq!(fx.len(), 1);
    assert_eq!((fx[0].0.as_str(), fx[0].2["template"].as_str()), ("issue_comment", Some("trigger_conflict")));
    assert_eq!(fx[0].2["labels"], serde_json::json!(["run:plan", "run:dev"]));
    assert!(events(&db.pool, "c-1").await.contains(&"run.trigger.conflict.comment".to_string()));

    let v = issue_labeled("state:in-review", &["state:in-review"], "alice");
    assert_eq!(ignored(&i, &db.pool, "c-2", "issues", &v).await, "issue_event_not_trigger_label");
    assert!(effects(&db.pool, "c-2").await.is_empty());

    let v = issue_labeled("mode:discussion", &["mode:discussion", "run:plan", "run:dev"], "alice");
    assert_eq!(ignored(&i, &db.pool, "c-3", "issues", &v).await, "discussion_mode_trigger_label_conflict");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn senders_must_be_known_writers_and_humans() {
    let (db, i) = setup().await;
    for (delivery, sender, kind, reason) in [
        ("s-1", "mallory", "User", "sender_not_allowed"),
        ("s-2", "bob", "User", "sender_role_read_not_permitted"),
        ("s-3", "carol", "User", "sender_not_project_member"),
        ("s-4", "codex-bot[bot]", "Bot", "sender_type_bot_not_permitted"),
    ] {
        let v = with_repo_and_sender(issue_labeled("run:dev", &["run:dev"], sender), REPO_ID, "acme/app", sender, kind);
        assert_eq!(ignored(&i, &db.pool, delivery, "issues", &v).await, reason, "{sender}");
        let fx = effects(&db.pool, delivery).await;
        assert_eq!(fx[0].2["template"], "trigger_warning", "{sender}");
        assert_eq!(fx[0].2["reason"], reason);
        assert_eq!(fx[0].2["locale"], "en");
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM runtime_errors WHERE level = 'warning'").await, 4);
    // The owner may trigger without membership rows of her own.
    let v = issue_labeled("run:dev", &["run:dev"], "the-owner");
    assert_eq!(i.ingest("s-5", "issues", &body(&v)).await.unwrap().status, Status::Accepted);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbound_repositories_and_missing_lineage_are_ignored() {
    let (db, i) = setup().await;
    let v = with_repo_and_sender(issue_labeled("run:dev", &["run:dev"], "alice"), 999_999, "strangers/repo", "alice", "User");
    assert_eq!(ignored(&i, &db.pool, "u-1", "issues", &v).await, "repository_not_bound_for_issue_label");

    let v = issue_labeled("run:qa", &["run:qa"], "alice");
    assert_eq!(ignored(&i, &db.pool, "u-2", "issues", &v).await, "issue_trigger_candidate_not_found");
    let fx = effects(&db.pool, "u-2").await;
    assert_eq!(fx.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["issue_comment", "add_labels"]);
    assert_eq!(fx[0].2["suggested_labels"], serde_json::json!(["run:dev", "run:dev:revise"]));
    assert_eq!(fx[1].2["labels"], serde_json::json!(["need:input"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn qa_continues_the_candidate_lineage_of_the_issue() {
    let (db, i) = setup().await;
    let r = i.ingest("l-1", "issues", &body(&issue_labeled("run:dev", &["run:dev"], "alice"))).await.unwrap();
    // The dev run opened PR 40 from head abc123 in namespace ns-1 and is running.
    opened_pr(&db.pool, r.run_id.unwrap(), "running", 40, "ns-1", "abc123").await;
    let r = i.ingest("l-2", "issues", &body(&issue_labeled("run:qa", &["run:qa"], "alice"))).await.unwrap();
    let (payload, pr): (Value, Option<i32>) =
        sqlx::query_as("SELECT run_payload, pr_number FROM agent_runs WHERE id = $1").bind(r.run_id).fetch_one(&db.pool).await.unwrap();
    assert_eq!(
        (payload["runtime"]["build_ref"].as_str(), payload["runtime"]["namespace"].as_str(), pr),
        (Some("abc123"), Some("ns-1"), Some(40))
    );
    assert_eq!(payload["trigger"]["kind"], "qa");

    // Once the PR closes the lineage ends.
    let closed = with_number(
        with_repo_and_sender(example("pull_request", Some("closed")), REPO_ID, "acme/app", "alice", "User"),
        "pull_request",
        40,
    );
    assert_eq!(i.ingest("l-3", "pull_request", &body(&closed)).await.unwrap().status, Status::Accepted);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cleanup_requests WHERE scope = 'pull_request_namespaces' AND number = 40").await, 1);
    assert_eq!(
        ignored(&i, &db.pool, "l-4", "issues", &issue_labeled("run:release", &["run:release"], "alice")).await,
        "issue_trigger_candidate_not_found"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_in_the_platforms_namespace_never_becomes_the_candidate() {
    let (db, i) = setup().await;
    // An ops run of the issue opened PR 41 while running in the platform's namespace.
    let r = i.ingest("p-1", "issues", &body(&issue_labeled("run:ops", &["run:ops"], "alice"))).await.unwrap();
    let (target, ns): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT run_payload->'runtime'->>'target_env', run_payload->'runtime'->>'namespace' FROM agent_runs WHERE id = $1")
            .bind(r.run_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((target.as_deref(), ns.as_deref()), (Some("production"), Some("codex-k8s-prod")));
    opened_pr(&db.pool, r.run_id.unwrap(), "succeeded", 41, "codex-k8s-prod", "def456").await;
    // So a qa run finds no candidate, rather than running in production with the candidate Role.
    assert_eq!(
        ignored(&i, &db.pool, "p-2", "issues", &issue_labeled("run:qa", &["run:qa"], "alice")).await,
        "issue_trigger_candidate_not_found"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_body_replayed_under_a_new_delivery_id_starts_nothing() {
    let (db, i) = setup().await;
    let v = body(&issue_labeled("run:dev", &["run:dev"], "alice"));
    let first = i.ingest("orig-1", "issues", &v).await.unwrap();
    assert_eq!(first.status, Status::Accepted);
    for replay in ["replay-1", "replay-2"] {
        let r = i.ingest(replay, "issues", &v).await.unwrap();
        assert_eq!((r.status, r.run_id, r.reason.as_deref()), (Status::Duplicate, first.run_id, Some("replayed_payload")), "{replay}");
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 1);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM webhook_deliveries WHERE reason = 'replayed_payload'").await, 2);
    // A different body (another label event) is a new delivery as before.
    let other = body(&issue_labeled("run:plan", &["run:plan"], "alice"));
    assert_eq!(i.ingest("orig-2", "issues", &other).await.unwrap().status, Status::Accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_comments_on_one_discussion_issue_start_one_run() {
    let (db, i) = setup().await;
    let i = std::sync::Arc::new(i);
    let mut tasks = Vec::new();
    for n in 0..8 {
        let v = issue_comment("alice", &["mode:discussion"], 80_000 + n);
        let i = i.clone();
        tasks.push(tokio::spawn(async move { i.ingest(&format!("race-{n}"), "issue_comment", &body(&v)).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs WHERE (run_payload->>'discussion_mode')::boolean").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_is_known_by_github_id_so_a_taken_over_login_is_not_a_member() {
    let (db, i) = setup().await;
    // alice's first events, on six issues at once, bind her GitHub id to her user; none of them
    // loses the race to another.
    let i = std::sync::Arc::new(i);
    let mut racing = Vec::new();
    for n in 0..6 {
        let v = with_repo_and_sender(example("issues", Some("labeled")), REPO_ID, "acme/app", "alice", "User");
        let v = body(&with_number(with_labels(v, Some("run:dev"), &["run:dev"], "issue"), "issue", 30 + n));
        let i = i.clone();
        racing.push(tokio::spawn(async move { i.ingest(&format!("id-race-{n}"), "issues", &v).await.unwrap() }));
    }
    for r in racing {
        let r = r.await.unwrap();
        assert_eq!(r.status, Status::Accepted, "{r:?}");
    }
    let first = i.ingest("id-1", "issues", &body(&issue_labeled("run:dev", &["run:dev"], "alice"))).await.unwrap();
    assert_eq!(first.status, Status::Accepted);
    let bound: Option<i64> =
        sqlx::query_scalar("SELECT github_user_id FROM users WHERE github_login = 'alice'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(bound, Some(ck8s_testkit::github::user_id("alice")));
    // Someone else now holds the login "alice" (she renamed herself): not a member.
    let mut impostor = issue_labeled("run:plan", &["run:plan"], "alice");
    impostor["sender"]["id"] = serde_json::json!(666);
    assert_eq!(ignored(&i, &db.pool, "id-2", "issues", &impostor).await, "sender_not_allowed");
    // alice under her new login is still herself.
    let mut renamed = issue_labeled("run:qa", &["run:qa"], "alice-renamed");
    renamed["sender"]["id"] = serde_json::json!(ck8s_testkit::github::user_id("alice"));
    assert_ne!(ignored(&i, &db.pool, "id-3", "issues", &renamed).await, "sender_not_allowed");
}

/// A comment by `sender` on issue 12 (labelled `labels`) with comment id `id`.
fn issue_comment(sender: &str, labels: &[&str], id: i64) -> Value {
    let v = with_repo_and_sender(example("issue_comment", Some("created")), REPO_ID, "acme/app", sender, "User");
    let mut v = with_number(with_labels(v, None, labels, "issue"), "issue", 12);
    v["issue"]["pull_request"] = Value::Null;
    v["comment"]["user"]["login"] = Value::String(sender.into());
    v["comment"]["id"] = serde_json::json!(id);
    v
}

/// Records that `run` (now `status`) opened pull request `pr` from head `sha` in `namespace`.
async fn opened_pr(pool: &PgPool, run: uuid::Uuid, status: &str, pr: i32, namespace: &str, sha: &str) {
    sqlx::query(
        "UPDATE agent_runs SET status = $2, started_at = now(), finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END,
                pr_number = $3, namespace = $4,
                run_payload = jsonb_set(run_payload, '{pull_request}', jsonb_build_object('number', $3, 'head', jsonb_build_object('sha', $5::text)))
          WHERE id = $1",
    )
    .bind(run)
    .bind(status)
    .bind(pr)
    .bind(namespace)
    .bind(sha)
    .execute(pool)
    .await
    .unwrap();
}

fn pr_labeled(label: &str, number: i64) -> Value {
    let v = with_repo_and_sender(example("pull_request", Some("labeled")), REPO_ID, "acme/app", "alice", "User");
    with_number(with_labels(v, Some(label), &[label], "pull_request"), "pull_request", number)
}

#[tokio::test(flavor = "multi_thread")]
async fn need_reviewer_on_a_pr_starts_one_reviewer_run_even_across_deliveries() {
    let (db, i) = setup().await;
    let v = pr_labeled("need:reviewer", 40);
    let a = i.ingest("r-1", "pull_request", &body(&v)).await.unwrap();
    assert_eq!(a.status, Status::Accepted);
    assert!(a.correlation_id.starts_with("pr-label-reviewer-"), "{}", a.correlation_id);
    let b = i.ingest("r-2", "pull_request", &body(&v)).await.unwrap();
    assert_eq!((b.status, b.run_id, b.correlation_id.clone()), (Status::Duplicate, a.run_id, a.correlation_id.clone()));
    let (agent, pr, build_ref): (String, i32, Option<String>) =
        sqlx::query_as("SELECT agent_key, pr_number, run_payload->'runtime'->>'build_ref' FROM agent_runs WHERE id = $1")
            .bind(a.run_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((agent.as_str(), pr), ("reviewer", 40));
    assert_eq!(build_ref.as_deref(), v["pull_request"]["head"]["sha"].as_str());
    assert_eq!(count(&db.pool, "SELECT count(*) FROM github_side_effects").await, 2, "side effects only once");

    // Other PR labels start nothing.
    let r = i.ingest("r-3", "pull_request", &body(&pr_labeled("bug", 41))).await.unwrap();
    assert_eq!((r.status, r.run_id), (Status::Accepted, None));
}

fn review_on(pr: i64, pr_labels: &[&str], state: &str) -> Value {
    let mut v = with_repo_and_sender(example("pull_request_review", Some("submitted")), REPO_ID, "acme/app", "alice", "User");
    v["review"]["state"] = Value::String(state.into());
    with_number(with_labels(v, None, pr_labels, "pull_request"), "pull_request", pr)
}

fn review(pr_labels: &[&str], state: &str) -> Value {
    review_on(40, pr_labels, state)
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_requested_starts_the_revise_of_the_resolved_stage_or_asks_for_input() {
    let (db, i) = setup().await;
    let r = i.ingest("v-1", "pull_request_review", &body(&review(&["run:dev"], "changes_requested"))).await.unwrap();
    assert_eq!(r.status, Status::Accepted);
    let (kind, label): (String, String) = sqlx::query_as("SELECT trigger_kind, trigger_label FROM agent_runs WHERE id = $1")
        .bind(r.run_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((kind.as_str(), label.as_str()), ("dev_revise", "run:dev:revise"));
    assert_eq!(
        events(&db.pool, "v-1").await,
        vec!["run.review.changes_requested.received", "run.revise.stage_resolved", "webhook.received", "run.enqueued"]
    );

    assert_eq!(
        ignored(&i, &db.pool, "v-2", "pull_request_review", &review(&["run:dev", "run:qa"], "changes_requested")).await,
        "pull_request_review_stage_label_conflict"
    );
    // A PR with no stage label and no history: nothing to resolve from.
    assert_eq!(
        ignored(&i, &db.pool, "v-3", "pull_request_review", &review_on(41, &[], "changes_requested")).await,
        "pull_request_review_stage_not_resolved"
    );
    let fx = effects(&db.pool, "v-3").await;
    assert_eq!(fx.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(), vec![("issue_comment", 41), ("add_labels", 41)]);
    // The same PR as v-1 without labels resolves from its latest run (chain step 3).
    let r = i.ingest("v-3b", "pull_request_review", &body(&review(&[], "changes_requested"))).await.unwrap();
    let kind: String =
        sqlx::query_scalar("SELECT trigger_kind FROM agent_runs WHERE id = $1").bind(r.run_id).fetch_one(&db.pool).await.unwrap();
    assert_eq!(kind, "dev_revise");

    // Two issues linked to the PR through earlier runs: ambiguous, never a guess.
    for (n, issue) in [(1, 12), (2, 13)] {
        sqlx::query("INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, issue_number, pr_number, trigger_kind, status, started_at, finished_at)
                     SELECT $1, project_id, id, '{}', $2, 40, 'dev', 'succeeded', now(), now() FROM repositories WHERE external_id = $3")
            .bind(format!("hist-{n}"))
            .bind(issue)
            .bind(REPO_ID)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    // (Another review: GitHub gives every review an id of its own, so the body differs from v-3b's.)
    let mut again = review(&[], "changes_requested");
    again["review"]["id"] = serde_json::json!(90_004);
    assert_eq!(ignored(&i, &db.pool, "v-4", "pull_request_review", &again).await, "pull_request_review_stage_ambiguous");

    let r = i.ingest("v-5", "pull_request_review", &body(&review(&["run:dev"], "approved"))).await.unwrap();
    assert_eq!((r.status, r.run_id), (Status::Accepted, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn discussion_comments_start_one_live_run_and_never_fan_out() {
    let (db, i) = setup().await;
    // Every comment has an id of its own (as on GitHub), so no two deliveries carry the same body.
    let next_id = std::sync::atomic::AtomicI64::new(70_000);
    let comment = |sender: &str, labels: &[&str]| issue_comment(sender, labels, next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let r = i.ingest("k-1", "issue_comment", &body(&comment("alice", &["mode:discussion"]))).await.unwrap();
    assert_eq!(r.status, Status::Accepted);
    let discussion: bool = sqlx::query_scalar("SELECT (run_payload->>'discussion_mode')::boolean FROM agent_runs WHERE id = $1")
        .bind(r.run_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(discussion);
    let r = i.ingest("k-2", "issue_comment", &body(&comment("alice", &["mode:discussion"]))).await.unwrap();
    assert_eq!((r.status, r.run_id), (Status::Accepted, None), "the live run picks it up");
    assert_eq!(effects(&db.pool, "k-2").await[0].2["subject"], "issue_comment");
    assert_eq!(ignored(&i, &db.pool, "k-3", "issue_comment", &comment("codex-bot", &["mode:discussion"])).await, "issue_comment_from_bot");
    assert_eq!(ignored(&i, &db.pool, "k-4", "issue_comment", &comment("alice", &[])).await, "issue_comment_not_discussion");
    let v = issue_labeled("mode:discussion", &["mode:discussion"], "alice");
    assert_eq!(ignored(&i, &db.pool, "k-5", "issues", &v).await, "discussion_run_already_live");

    // Deleting (or closing) the issue cancels the discussion and asks for its namespaces to go.
    let mut closed =
        with_number(with_repo_and_sender(example("issues", Some("deleted")), REPO_ID, "acme/app", "alice", "User"), "issue", 12);
    closed["issue"]["labels"] = serde_json::json!([]);
    assert_eq!(i.ingest("k-6", "issues", &body(&closed)).await.unwrap().status, Status::Accepted);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs WHERE status = 'canceled'").await, 1);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM cleanup_requests WHERE scope = 'issue_namespaces' AND number = 12").await, 1);
    assert!(events(&db.pool, "k-1").await.contains(&"run.canceled".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn push_to_main_of_the_platform_is_a_deploy_request_and_ping_is_answered() {
    let (db, i) = setup().await;
    let push = |repo: i64, name: &str, git_ref: &str| {
        let mut v = with_repo_and_sender(example("push", None), repo, name, "alice", "User");
        v["ref"] = Value::String(git_ref.into());
        v["after"] = Value::String("0123abcd".into());
        v["deleted"] = Value::Bool(false);
        v
    };
    let r = i.ingest("p-1", "push", &body(&push(PLATFORM_REPO_ID, "acme/platform", "refs/heads/main"))).await.unwrap();
    assert_eq!(r.status, Status::Accepted);
    let payload: Value =
        sqlx::query_scalar("SELECT run_payload FROM agent_runs WHERE id = $1").bind(r.run_id).fetch_one(&db.pool).await.unwrap();
    assert_eq!(payload["runtime"]["deploy_only"], true);
    assert_eq!(payload["runtime"]["build_ref"], "0123abcd");
    assert_eq!(payload["runtime"]["namespace"], "codex-k8s-prod");
    assert!(effects(&db.pool, "p-1").await.is_empty(), "deploys have no status comment");
    // No agent is ever started for it: it waits as a deploy task, and says so.
    let (task, deploy_only, build_ref): (String, bool, String) =
        sqlx::query_as("SELECT status, deploy_only, build_ref FROM runtime_deploy_tasks WHERE run_id = $1")
            .bind(r.run_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((task.as_str(), deploy_only, build_ref.as_str()), ("pending", true, "0123abcd"));
    assert!(events(&db.pool, "p-1").await.contains(&"run.deploy.waiting".to_string()));

    let r = i.ingest("p-2", "push", &body(&push(REPO_ID, "acme/app", "refs/heads/main"))).await.unwrap();
    assert_eq!((r.status, r.run_id), (Status::Accepted, None));
    assert_eq!(ignored(&i, &db.pool, "p-3", "push", &push(31337, "x/y", "refs/heads/main")).await, "repository_not_bound_for_push_main");

    let ping = example("ping", None);
    assert_eq!(ignored(&i, &db.pool, "p-4", "ping", &ping).await, "ping");
}

#[tokio::test(flavor = "multi_thread")]
async fn learning_mode_follows_member_override_then_project_default() {
    let (db, i) = setup().await;
    let r = i.ingest("lm-1", "issues", &body(&issue_labeled("run:intake", &["run:intake"], "alice"))).await.unwrap();
    let (lm, mode): (bool, String) = sqlx::query_as("SELECT learning_mode, runtime_mode FROM agent_runs WHERE id = $1")
        .bind(r.run_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((lm, mode.as_str()), (false, "code-only"));
    sqlx::query(
        "UPDATE project_members SET learning_mode_override = true WHERE user_id = (SELECT id FROM users WHERE github_login = 'alice')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut v = issue_labeled("run:intake", &["run:intake"], "alice");
    v["issue"]["number"] = Value::from(13);
    let r = i.ingest("lm-2", "issues", &body(&v)).await.unwrap();
    let lm: bool =
        sqlx::query_scalar("SELECT learning_mode FROM agent_runs WHERE id = $1").bind(r.run_id).fetch_one(&db.pool).await.unwrap();
    assert!(lm);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_record_nothing_so_a_redelivery_can_succeed() {
    let (db, i) = setup().await;
    sqlx::query("UPDATE agents SET is_active = false WHERE agent_key = 'dev'").execute(&db.pool).await.unwrap();
    let v = body(&issue_labeled("run:dev", &["run:dev"], "alice"));
    match i.ingest("f-1", "issues", &v).await {
        Err(IngestError::FailedPrecondition(m)) => assert!(m.contains("no active agent"), "{m}"),
        other => panic!("expected a failed precondition, got {other:?}"),
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM webhook_deliveries").await, 0);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM flow_events").await, 0);
    sqlx::query("UPDATE agents SET is_active = true WHERE agent_key = 'dev'").execute(&db.pool).await.unwrap();
    assert_eq!(i.ingest("f-1", "issues", &v).await.unwrap().status, Status::Accepted, "GitHub's redelivery now succeeds");

    for bad in [&b"[1,2,3]"[..], b"not json", b"\"string\""] {
        assert!(matches!(i.ingest("f-2", "issues", bad).await, Err(IngestError::InvalidPayload(_))));
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM webhook_deliveries WHERE delivery_id = 'f-2'").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbound_pull_requests_and_anonymous_senders_are_ignored() {
    let (db, i) = setup().await;
    let v = with_repo_and_sender(pr_labeled("need:reviewer", 40), 31337, "strangers/repo", "alice", "User");
    assert_eq!(ignored(&i, &db.pool, "n-1", "pull_request", &v).await, "repository_not_bound_for_pull_request");
    let mut v = issue_labeled("run:dev", &["run:dev"], "alice");
    v.as_object_mut().unwrap().remove("sender");
    assert_eq!(ignored(&i, &db.pool, "n-2", "issues", &v).await, "sender_login_missing");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn renamed_labels_in_settings_reach_the_policy() {
    let (db, _) = setup().await;
    let layers = ck8s_config::Layers::from_parts(
        [
            ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), KEY.to_string()),
            ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), super::INTERNAL_TOKEN.to_string()),
            ("CODEXK8S_RUN_DEV_LABEL".to_string(), "ai:build".to_string()),
            ("CODEXK8S_AGENT_DEFAULT_LOCALE".to_string(), "ru-RU".to_string()),
            ("CODEXK8S_SERVICES_CONFIG_PATH".to_string(), ck8s_testkit::repo_root().join("services.yaml").display().to_string()),
        ],
        Vec::<String>::new(),
    )
    .unwrap();
    let cfg = control_plane::config::Config::load(&layers).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.ingest.locale, Locale::Ru);
    let i = Ingestor::start(db.pool.clone(), cfg.ingest);
    let r = i.ingest("rn-1", "issues", &body(&issue_labeled("ai:build", &["ai:build"], "alice"))).await.unwrap();
    assert_eq!(r.status, Status::Accepted);
    assert_eq!(
        ignored(&i, &db.pool, "rn-2", "issues", &issue_labeled("run:dev", &["run:dev"], "alice")).await,
        "issue_event_not_trigger_label"
    );
    // The platform's services.yaml makes intake code-only.
    let r = i.ingest("rn-3", "issues", &body(&issue_labeled("run:intake", &["run:intake"], "alice"))).await.unwrap();
    let mode: String =
        sqlx::query_scalar("SELECT runtime_mode FROM agent_runs WHERE id = $1").bind(r.run_id).fetch_one(&db.pool).await.unwrap();
    assert_eq!(mode, "code-only");
    let locale: String =
        sqlx::query_scalar("SELECT payload->>'locale' FROM github_side_effects WHERE correlation_id = 'rn-1' AND kind = 'status_comment'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(locale, "ru");
}

/// Deliveries that arrive together share a transaction, and each still gets its own outcome:
/// triggers on different issues each start their run, a delivery that cannot start its run
/// (no active agent) and one the database refuses fail alone, copies of one delivery and two
/// comments on one discussion issue are kept apart and decide from each other's result.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_arriving_together_share_a_transaction_and_keep_their_own_outcomes() {
    let (db, _) = setup().await;
    let batching = control_plane::ingest::BatchSettings { max_size: 64, window: std::time::Duration::from_millis(300), concurrency: 1 };
    let i = Arc::new(Ingestor::with_batching(db.pool.clone(), settings(), batching, None));
    sqlx::query("UPDATE agents SET is_active = false WHERE agent_key = 'pm'").execute(&db.pool).await.unwrap();
    let mut sends: Vec<(String, &str, Value)> = Vec::new();
    for n in 0..10 {
        sends.push((format!("b-dev-{n}"), "issues", with_number(issue_labeled("run:dev", &["run:dev"], "alice"), "issue", 500 + n)));
    }
    sends.push(("b-intake".into(), "issues", with_number(issue_labeled("run:intake", &["run:intake"], "alice"), "issue", 600)));
    sends.push(("".into(), "issues", with_number(issue_labeled("run:dev", &["run:dev"], "alice"), "issue", 601)));
    for _ in 0..4 {
        sends.push(("b-copy".into(), "issues", with_number(issue_labeled("run:dev", &["run:dev"], "alice"), "issue", 602)));
    }
    for n in 0..2 {
        sends.push((format!("b-talk-{n}"), "issue_comment", issue_comment("alice", &["mode:discussion"], 90_000 + n)));
    }
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|(id, event, v)| {
            let i = i.clone();
            tokio::spawn(async move { (id.clone(), i.ingest(&id, event, &body(&v)).await) })
        })
        .collect();
    let mut outcomes = std::collections::BTreeMap::<String, Vec<Result<Status, String>>>::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        outcomes.entry(id).or_default().push(r.map(|r| r.status).map_err(|e| format!("{e:?}")));
    }
    for n in 0..10 {
        assert_eq!(outcomes[&format!("b-dev-{n}")], [Ok(Status::Accepted)], "b-dev-{n}");
    }
    assert!(matches!(&outcomes["b-intake"][..], [Err(e)] if e.contains("no active agent")), "{:?}", outcomes["b-intake"]);
    assert!(matches!(&outcomes[""][..], [Err(e)] if e.contains("Store")), "{:?}", outcomes[""]);
    let mut copies = outcomes["b-copy"].clone();
    copies.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(copies, [Ok(Status::Accepted), Ok(Status::Duplicate), Ok(Status::Duplicate), Ok(Status::Duplicate)]);
    let discussion = "SELECT count(*) FROM agent_runs WHERE (run_payload->>'discussion_mode')::boolean";
    assert_eq!(count(&db.pool, discussion).await, 1, "the second comment saw the first one's live discussion run");

    assert_eq!(count(&db.pool, "SELECT count(*) FROM agent_runs").await, 12, "ten triggers, one copy, one discussion");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM webhook_deliveries WHERE delivery_id IN ('b-intake', '')").await, 0);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM webhook_deliveries").await, 13, "ten triggers, the copied one, two comments");
    // One transaction stamps its rows with one now(): far fewer stamps than deliveries.
    let stamps = count(&db.pool, "SELECT count(DISTINCT received_at) FROM webhook_deliveries WHERE delivery_id LIKE 'b-dev-%'").await;
    assert!(stamps < 10, "the ten triggers were not batched: {stamps} transactions");
}
