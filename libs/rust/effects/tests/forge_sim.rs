//! The status comment upsert and the side-effect executor against forge-sim (through the real
//! GitHub adapter) and a real PostgreSQL: a lagging comment list, an outage in the middle of a
//! batch, and replays after a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_domain::comments::{Locale, Phase, StatusState};
use ck8s_domain::forge::{RepoRef, RepositoryProvider};
use ck8s_domain::run::RunStatus;
use ck8s_effects::executor::effect_marker;
use ck8s_effects::status::upsert_within;
use ck8s_effects::{Executor, ExecutorSettings, LagPolicy, ProviderSetupError, Providers, RepositoryRow, Target, UpsertError, upsert};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_testkit::forge::ForgeSim;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

struct Sim {
    forge: ForgeSim,
    token: String,
}

/// forge-sim with the bot `codex-bot`, its repository `codex-bot/app` and issue #1.
fn sim() -> Sim {
    let forge = ForgeSim::start();
    let token = forge.user_of_kind("codex-bot", "Bot");
    assert_eq!(forge.call("POST", "/_sim/repos", Some(&token), Some(json!({"name": "app"}))).0, 201);
    assert_eq!(forge.call("POST", "/repos/codex-bot/app/issues", Some(&token), Some(json!({"title": "Add a greeting"}))).0, 201);
    Sim { forge, token }
}

impl Sim {
    fn faults(&self, f: Value) {
        self.forge.faults(f);
    }

    fn provider(&self) -> GithubProvider {
        let mut s = GithubSettings::new(self.forge.url(), SecretString::from(self.token.clone()));
        s.backoff = Duration::from_millis(20);
        s.max_attempts = 2;
        GithubProvider::new(Github::new(s).unwrap())
    }

    /// Bodies written to issue #1's comments (creates and edits), in order.
    fn written_bodies(&self) -> Vec<String> {
        let all = self.forge.exchanges();
        all.as_array()
            .into_iter()
            .flatten()
            .filter(|x| {
                (x["method"] == "POST" && x["route"] == "/repos/{owner}/{repo}/issues/{issue_number}/comments")
                    || (x["method"] == "PATCH" && x["route"] == "/repos/{owner}/{repo}/issues/comments/{comment_id}")
            })
            .filter(|x| x["status"].as_u64().is_some_and(|s| s < 300))
            .map(|x| x["body"]["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn repository(pool: &PgPool) -> Uuid {
    let project: Uuid =
        sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('acme', 'acme') RETURNING id").fetch_one(pool).await.unwrap();
    sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted) VALUES ($1, 'github', 1, 'codex-bot', 'app', 'app', $2) RETURNING id",
    )
    .bind(project)
    .bind(vec![7u8; 40])
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Issue #1 of `codex-bot/app`, where run-42 reports (as the bot `codex-bot`).
fn target(repository_id: Uuid) -> Target {
    Target {
        correlation_id: "corr-42".into(),
        repository_id,
        repo: RepoRef::new("codex-bot", "app"),
        number: 1,
        bot_login: "codex-bot".into(),
    }
}

fn report(phase: Phase) -> StatusState {
    StatusState { run_id: "run-42".into(), phase: Some(phase), repository: Some("codex-bot/app".into()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_comment_stays_single_and_monotonic_despite_a_lagging_list_and_a_crash() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    sim.faults(json!({"comment_list_lag_ms": 1500}));
    let gh = sim.provider();
    let t = target(repo_id);
    let lag = LagPolicy { attempts: 10, wait: Duration::from_millis(300) };

    let first = upsert(&db.pool, &gh, &t, &report(Phase::Created), Locale::En, lag).await.unwrap();
    assert!(first.created);
    // Concurrent reports of the same run right after the create: the list does not show the
    // comment yet, but the stored id is used and the advisory lock serialises them.
    let (preparing, started) = (report(Phase::PreparingRuntime), report(Phase::Started));
    let (a, b) =
        tokio::join!(upsert(&db.pool, &gh, &t, &preparing, Locale::En, lag), upsert(&db.pool, &gh, &t, &started, Locale::En, lag),);
    assert_eq!((a.unwrap().comment_id, b.unwrap().comment_id), (first.comment_id, first.comment_id));

    // A crash between a create and storing its id: the id is gone, the create flag remains.
    sqlx::query("UPDATE run_status_comments SET comment_id = NULL, create_attempted = true WHERE correlation_id = 'corr-42'")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut finished = report(Phase::Finished);
    finished.run_status = Some(RunStatus::Succeeded);
    finished.pr_url = Some("http://forge-sim/codex-bot/app/pull/2".into());
    let after_crash = upsert(&db.pool, &gh, &t, &finished, Locale::En, lag).await.unwrap();
    assert!(!after_crash.created, "the comment was found through the lagging list, not written again");
    assert_eq!(after_crash.comment_id, first.comment_id);
    // A late report of an earlier phase does not move the comment back.
    let late = upsert(&db.pool, &gh, &t, &report(Phase::Started), Locale::En, lag).await.unwrap();
    assert_eq!(late.state.phase, Some(Phase::Finished));

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let comments = gh.list_comments(&t.repo, 1).await.unwrap();
    let own: Vec<_> = comments.iter().filter(|c| StatusState::from_comment(&c.body).is_some()).collect();
    assert_eq!(own.len(), 1, "exactly one status comment: {comments:#?}");
    let state = StatusState::from_comment(&own[0].body).unwrap();
    assert_eq!((state.phase, state.run_status), (Some(Phase::Finished), Some(RunStatus::Succeeded)));
    assert!(own[0].body.contains("Run finished"), "rendered in the run's locale: {}", own[0].body);

    let phases: Vec<Phase> = sim.written_bodies().iter().filter_map(|b| StatusState::from_comment(b)).filter_map(|s| s.phase).collect();
    assert!(phases.len() >= 5, "{phases:?}");
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "phases written in order: {phases:?}");
    assert_eq!(phases.first(), Some(&Phase::Created));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forge_that_never_answers_holds_the_runs_lock_no_longer_than_the_deadline() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let t = target(repo_id);
    // A forge that accepts connections and never answers (its client would wait ten minutes).
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            open.push(s);
        }
    });
    let mut settings = GithubSettings::new(hole_url, SecretString::from("t".to_string()));
    settings.timeout = Duration::from_secs(600);
    settings.max_attempts = 1;
    let stuck = GithubProvider::new(Github::new(settings).unwrap());
    let lag = LagPolicy { attempts: 1, wait: Duration::from_millis(10) };

    let hold = Duration::from_millis(500);
    let outcome =
        tokio::time::timeout(Duration::from_secs(30), upsert_within(&db.pool, &stuck, &t, &report(Phase::Created), Locale::En, lag, hold))
            .await
            .expect("the upsert outlived its deadline");
    let err = outcome.unwrap_err();
    assert!(matches!(err, UpsertError::Deadline(_)) && err.is_retryable(), "{err}");

    // The lock was given back: the next report of the run goes through at once, on a forge that answers.
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let next =
        tokio::time::timeout(Duration::from_secs(30), upsert(&db.pool, &sim.provider(), &t, &report(Phase::Started), Locale::En, lag))
            .await
            .expect("the run's lock was still held")
            .unwrap();
    assert!(next.created);
    held.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_marker_in_someone_elses_comment_is_never_taken_for_the_runs_status_comment() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let gh = sim.provider();
    // mallory posts a comment carrying run-42's marker, with her own text above it.
    let mallory = sim.forge.user("mallory");
    let forged = format!("[Log in to see the run](https://evil.example)\n\n{}", report(Phase::Started).marker());
    let (s, _) = sim.forge.call("POST", "/repos/codex-bot/app/issues/1/comments", Some(&mallory), Some(json!({"body": forged})));
    assert_eq!(s, 201);
    let t = target(repo_id);
    // As after a crash between a create and storing its id, the upsert looks through the list.
    sqlx::query(
        "INSERT INTO run_status_comments (correlation_id, repository_id, target_number, create_attempted) VALUES ('corr-42', $1, 1, true)",
    )
    .bind(repo_id)
    .execute(&db.pool)
    .await
    .unwrap();
    let lag = LagPolicy { attempts: 1, wait: Duration::from_millis(10) };
    let up = upsert(&db.pool, &gh, &t, &report(Phase::Ready), Locale::En, lag).await.unwrap();
    assert!(up.created, "the bot writes a comment of its own");
    let comments = gh.list_comments(&t.repo, 1).await.unwrap();
    let theirs = comments.iter().find(|c| c.author == "mallory").unwrap();
    assert!(theirs.body.contains("evil.example"), "hers is left as it was");
    assert_ne!(up.comment_id, theirs.id);
    assert_eq!(comments.iter().find(|c| c.id == up.comment_id).unwrap().author, "codex-bot");
}

struct Fixed(Arc<dyn RepositoryProvider>);

impl Providers for Fixed {
    fn for_repository(&self, _repo: &RepositoryRow) -> Result<Arc<dyn RepositoryProvider>, ProviderSetupError> {
        Ok(self.0.clone())
    }
}

async fn owe(pool: &PgPool, repo: Uuid, key: &str, kind: &str, payload: Value) {
    sqlx::query(
        "INSERT INTO github_side_effects (idempotency_key, correlation_id, repository_id, kind, target_number, payload) VALUES ($1, 'corr-7', $2, $3, 1, $4)",
    )
    .bind(key)
    .bind(repo)
    .bind(kind)
    .bind(payload)
    .execute(pool)
    .await
    .unwrap();
}

async fn statuses(pool: &PgPool) -> Vec<(String, String, i32)> {
    sqlx::query_as("SELECT idempotency_key, status, attempts FROM github_side_effects ORDER BY id").fetch_all(pool).await.unwrap()
}

async fn drain_until_settled(ex: &Executor, pool: &PgPool) {
    let started = Instant::now();
    loop {
        ex.drain().await.unwrap();
        let open = statuses(pool).await.iter().filter(|s| s.1 == "pending" || s.1 == "in_progress").count();
        if open == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "effects never settled: {:?}", statuses(pool).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn owed_effects_survive_an_outage_midway_and_replays_and_are_carried_out_exactly_once() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let gh: Arc<dyn RepositoryProvider> = Arc::new(sim.provider());

    owe(&db.pool, repo_id, "corr-7:0:status_comment", "status_comment", json!({"phase": "created", "locale": "ru"})).await;
    owe(&db.pool, repo_id, "corr-7:1:reaction", "reaction", json!({"subject": "issue", "content": "eyes"})).await;
    for (i, reason) in ["no_stage_label", "sender_not_member", "unknown_run_label"].iter().enumerate() {
        let payload = json!({"template": "trigger_warning", "reason": reason, "suggested_labels": ["run:dev"], "locale": "en"});
        owe(&db.pool, repo_id, &format!("corr-7:{}:issue_comment", i + 2), "issue_comment", payload).await;
    }
    let conflict = json!({"template": "trigger_conflict", "labels": ["run:dev", "run:qa"], "locale": "ru"});
    owe(&db.pool, repo_id, "corr-7:5:issue_comment", "issue_comment", conflict).await;
    owe(&db.pool, repo_id, "corr-7:6:add_labels", "add_labels", json!({"labels": ["need:input"]})).await;
    owe(&db.pool, repo_id, "corr-7:7:remove_label", "remove_label", json!({"label": "run:dev"})).await;

    let settings = ExecutorSettings {
        batch: 1,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        lag: LagPolicy { attempts: 3, wait: Duration::from_millis(200) },
        ..Default::default()
    };
    let ex = Executor { pool: db.pool.clone(), providers: Arc::new(Fixed(gh.clone())), settings };
    assert_eq!(ex.tick().await.unwrap(), 1);
    assert_eq!(ex.tick().await.unwrap(), 1);
    // The forge goes down in the middle of the batch.
    sim.faults(json!({"outage": 9}));
    drain_until_settled(&ex, &db.pool).await;
    let st = statuses(&db.pool).await;
    assert!(st.iter().all(|s| s.1 == "done"), "every effect done: {st:?}");
    assert!(st.iter().any(|s| s.2 > 1), "some effects needed retries: {st:?}");

    // A replay: a comment effect whose done mark was lost (the process died after writing it).
    sqlx::query("UPDATE github_side_effects SET status = 'pending', done_at = NULL, next_attempt_at = now() WHERE idempotency_key = 'corr-7:3:issue_comment'")
        .execute(&db.pool)
        .await
        .unwrap();
    drain_until_settled(&ex, &db.pool).await;

    let repo = RepoRef::new("codex-bot", "app");
    let comments = gh.list_comments(&repo, 1).await.unwrap();
    for key in ["corr-7:2:issue_comment", "corr-7:3:issue_comment", "corr-7:4:issue_comment", "corr-7:5:issue_comment"] {
        let n = comments.iter().filter(|c| c.body.contains(&effect_marker(key))).count();
        assert_eq!(n, 1, "{key} written exactly once");
    }
    assert!(comments.iter().any(|c| c.body.contains("Конфликт меток запуска")), "the conflict comment in its own locale");
    assert_eq!(comments.iter().filter(|c| StatusState::from_comment(&c.body).is_some()).count(), 1, "one status comment");
    assert_eq!(comments.len(), 5);
    assert_eq!(gh.issue_labels(&repo, 1).await.unwrap(), vec!["need:input"]);

    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM flow_events WHERE correlation_id = 'corr-7' AND event_type LIKE 'github.side_effect.%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let count = |t: &str| events.iter().find(|e| e.0 == t).map(|e| e.1).unwrap_or(0);
    assert_eq!(count("github.side_effect.done"), 9, "{events:?}"); // 8 effects + the replay
    assert!(count("github.side_effect.retry_scheduled") >= 1, "{events:?}");
    assert_eq!(count("github.side_effect.failed"), 0, "{events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn effects_that_cannot_succeed_fail_with_the_reason_and_are_not_retried() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let gh: Arc<dyn RepositoryProvider> = Arc::new(sim.provider());
    owe(&db.pool, repo_id, "bad:0:reaction", "reaction", json!({"subject": "issue", "content": "not-an-emoji"})).await;
    owe(&db.pool, repo_id, "bad:1:issue_comment", "issue_comment", json!({"template": "no_such_template"})).await;
    owe(&db.pool, repo_id, "bad:2:reaction", "reaction", json!({"subject": "issue_comment", "comment_id": 987_654, "content": "eyes"}))
        .await;
    let ex = Executor { pool: db.pool.clone(), providers: Arc::new(Fixed(gh)), settings: ExecutorSettings::default() };
    ex.drain().await.unwrap();
    let rows: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT status, attempts, last_error FROM github_side_effects ORDER BY id").fetch_all(&db.pool).await.unwrap();
    // A value the platform cannot have written is refused before the forge is asked, naming it.
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("failed", 1));
    assert!(rows[0].2.as_deref().unwrap().contains("not-an-emoji"), "{rows:?}");
    assert_eq!((rows[1].0.as_str(), rows[1].1), ("failed", 1));
    assert!(rows[1].2.as_deref().unwrap().contains("no_such_template"), "{rows:?}");
    // What the forge refuses for good is recorded with its reason and not retried either.
    assert_eq!((rows[2].0.as_str(), rows[2].1), ("failed", 1));
    assert!(rows[2].2.as_deref().unwrap().to_lowercase().contains("not found"), "{rows:?}");
}

/// A provider factory that holds the executor inside its attempt until the test lets it go, then
/// fails it: a replica that stalled past its lease.
struct Stalled {
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Providers for Stalled {
    fn for_repository(&self, _repo: &RepositoryRow) -> Result<Arc<dyn RepositoryProvider>, ProviderSetupError> {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
        // Hand the worker thread's queued tasks to others while this one stalls.
        tokio::task::block_in_place(|| {
            let _ = self.release.lock().unwrap().recv();
        });
        Err(ProviderSetupError("the slow replica gave up".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_slow_executor_cannot_overwrite_the_outcome_of_the_one_that_took_its_effect_over() {
    let db = ck8s_testkit::fresh_db().await;
    let repo_id = repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let gh: Arc<dyn RepositoryProvider> = Arc::new(sim.provider());
    owe(&db.pool, repo_id, "race:0:add_labels", "add_labels", json!({"labels": ["state:in-review"]})).await;

    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let stalled = Stalled { entered: std::sync::Mutex::new(Some(entered_tx)), release: std::sync::Mutex::new(release_rx) };
    let slow = Executor {
        pool: db.pool.clone(),
        providers: Arc::new(stalled),
        settings: ExecutorSettings { owner: "replica-a".into(), ..Default::default() },
    };
    let slow = tokio::spawn(async move { slow.tick().await.unwrap() });
    tokio::task::spawn_blocking(move || entered.recv().unwrap()).await.unwrap();

    // Replica A's lease runs out while it is stuck; replica B takes the effect over and does it.
    sqlx::query("UPDATE github_side_effects SET lease_until = now() - interval '1 second'").execute(&db.pool).await.unwrap();
    let fast = Executor {
        pool: db.pool.clone(),
        providers: Arc::new(Fixed(gh.clone())),
        settings: ExecutorSettings { owner: "replica-b".into(), ..Default::default() },
    };
    assert_eq!(fast.tick().await.unwrap(), 1);
    release.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), 1, "replica A finished its attempt too");

    let (status, attempts, last_error, result): (String, i32, Option<String>, Option<Value>) =
        sqlx::query_as("SELECT status, attempts, last_error, result FROM github_side_effects").fetch_one(&db.pool).await.unwrap();
    assert_eq!((status.as_str(), attempts, last_error), ("done", 2, None), "B's outcome stands");
    assert_eq!(result.unwrap()["labels"], json!(["state:in-review"]));
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT event_type, actor_id FROM flow_events WHERE event_type LIKE 'github.side_effect.%' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(events, vec![("github.side_effect.done".to_string(), "replica-b".to_string())], "A recorded nothing");
    assert_eq!(gh.issue_labels(&RepoRef::new("codex-bot", "app"), 1).await.unwrap(), vec!["state:in-review"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_says_what_stops_it_and_asks_only_for_deliveries_nobody_took() {
    use ck8s_effects::redelivery::Redelivery;
    let db = ck8s_testkit::fresh_db().await;
    repository(&db.pool).await;
    let sim = tokio::task::spawn_blocking(sim).await.unwrap();
    let gh: Arc<dyn RepositoryProvider> = Arc::new(sim.provider());
    // A hook that points at nothing that listens: every delivery to it fails to connect.
    let dead = format!("http://127.0.0.1:{}/api/v1/webhooks/github", ck8s_testkit::process::free_port());
    let loop_for = |hook_url: &str, providers: Arc<dyn Providers>| Redelivery {
        pool: db.pool.clone(),
        providers,
        hook_url: hook_url.to_string(),
        policy: Default::default(),
        clock: Arc::new(ck8s_domain::clock::SystemClock),
    };

    // No webhook delivers to the platform's URL yet: said, with what to do.
    let report = loop_for(&dead, Arc::new(Fixed(gh.clone()))).pass().await.unwrap();
    assert_eq!(report.looked_at, 0);
    assert!(report.problems[0].contains("codex-bot/app: no webhook delivers to"), "{:?}", report.problems);
    // A token that cannot be opened: said, and the other checks never reach GitHub.
    let sealer = Arc::new(ck8s_crypto::Sealer::from_hex(&SecretString::from("ab".repeat(32))).unwrap());
    let sealed = ck8s_effects::SealedProviders { sealer, base_url: sim.forge.url() };
    let report = loop_for(&dead, Arc::new(sealed)).pass().await.unwrap();
    assert!(report.problems[0].contains("cannot be opened; check CODEXK8S_TOKEN_ENCRYPTION_KEY"), "{:?}", report.problems);

    // The hook exists now, and an event could not be delivered through it.
    let hook = json!({"config": {"url": dead, "secret": "s3cret-s3cret-s3cret", "content_type": "json"}, "events": ["issues"]});
    assert_eq!(sim.forge.call("POST", "/repos/codex-bot/app/hooks", Some(&sim.token), Some(hook)).0, 201);
    assert_eq!(sim.forge.call("POST", "/repos/codex-bot/app/issues", Some(&sim.token), Some(json!({"title": "Lost"}))).0, 201);
    let lost = first_delivery(&*gh, &dead).await;
    let report = loop_for(&dead, Arc::new(Fixed(gh.clone()))).pass().await.unwrap();
    assert_eq!((report.looked_at, report.problems.len()), (1, 0), "{report:?}");
    assert_eq!(report.requested.iter().map(|r| (r.guid.as_str(), r.request)).collect::<Vec<_>>(), vec![(lost.as_str(), 1)]);
    // At once again: the request waits out its backoff, so nothing is asked twice.
    let again = loop_for(&dead, Arc::new(Fixed(gh.clone()))).pass().await.unwrap();
    assert!(again.requested.is_empty(), "{again:?}");
}

/// The guid of the first delivery forge-sim recorded for the hook of `codex-bot/app` that
/// delivers to `url` (deliveries are made in the background).
async fn first_delivery(gh: &dyn RepositoryProvider, url: &str) -> String {
    let repo = RepoRef::new("codex-bot", "app");
    let hook = gh.find_webhook(&repo, url).await.unwrap().expect("the hook");
    let started = Instant::now();
    loop {
        let all = gh.list_deliveries(&repo, hook.id, ck8s_domain::forge::DeliveryFilter::All, 100).await.unwrap();
        if let Some(d) = all.first() {
            assert_eq!(d.status_code, 0, "nothing listens there: {d:?}");
            return d.guid.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "forge-sim recorded no delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
