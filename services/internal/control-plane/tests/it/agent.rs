//! The agent runner's callbacks over real gRPC to the control-plane binary: authorisation by the
//! per-run token (missing, malformed, unknown, another run's, a finished run's), bad and oversized
//! input, snapshot compare-and-swap, usage, learning feedback and status reports; and the run
//! token's scope: pull requests confirmed with forge-sim, sessions of the run's branch only,
//! status reports merged and capped.

use super::{BIN, env};
use crate::ingest::{issue_labeled, setup};
use ck8s_proto::auth::SendToken;
use ck8s_proto::controlplane::v1::agent_callbacks_client::AgentCallbacksClient;
use ck8s_proto::controlplane::v1::*;
use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::ServiceProcess;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = AgentCallbacksClient<InterceptedService<Channel, SendToken>>;

async fn run_with_token(
    pool: &sqlx::PgPool,
    i: &control_plane::ingest::Ingestor,
    delivery: &str,
    issue_label: &str,
) -> (uuid::Uuid, String) {
    let v = issue_labeled(issue_label, &[issue_label], "alice");
    let r = i.ingest(delivery, "issues", &serde_json::to_vec(&v).unwrap()).await.unwrap();
    let run = r.run_id.unwrap();
    let token = ck8s_crypto::random_token("ck8srun_").expose_secret().to_string();
    let issued =
        ck8s_store::agent::issue_run_token(pool, run, &ck8s_crypto::sha256(token.as_bytes()), Duration::from_secs(3600), "test").await;
    assert!(issued.unwrap());
    (run, token)
}

fn client(channel: &Channel, token: &str) -> Client {
    AgentCallbacksClient::with_interceptor(channel.clone(), SendToken::new(token).unwrap())
}

fn session(expected: i32, status: &str, session_json: Value, codex: Option<Value>) -> UpsertAgentSessionRequest {
    UpsertAgentSessionRequest {
        expected_version: expected,
        status: status.into(),
        branch_name: Some("codex/issue-12".into()),
        session_id: Some("thread-1".into()),
        session_json: session_json.to_string(),
        codex_cli_session_json: codex.map(|c| c.to_string()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_callbacks_act_only_for_the_live_run_of_their_token_and_check_every_input() {
    let (db, i) = setup().await;
    let (run, token) = run_with_token(&db.pool, &i, "d-agent-1", "run:dev").await;
    let (other_run, other_token) = run_with_token(&db.pool, &i, "d-agent-2", "run:plan").await;
    let st = forge_stack(&db).await;
    let svc = &st.svc;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", svc.addr("grpc"))).unwrap().connect().await.unwrap();
    let event = |t: &str, p: &str| InsertRunFlowEventRequest { event_type: t.into(), payload_json: p.into() };

    // Unauthenticated: no header, a malformed one, an unknown token, the internal API token.
    let mut none = AgentCallbacksClient::new(channel.clone());
    assert_eq!(none.insert_run_flow_event(event("run.agent.started", "{}")).await.unwrap_err().code(), Code::Unauthenticated);
    for bad in ["ck8srun_unknown", super::INTERNAL_TOKEN] {
        let err = client(&channel, bad).insert_run_flow_event(event("run.agent.started", "{}")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
        assert!(!err.message().contains(bad), "the token is echoed: {}", err.message());
    }

    let mut c = client(&channel, &token);
    c.insert_run_flow_event(event("run.agent.started", r#"{"branch":"codex/issue-12"}"#)).await.unwrap();
    // Unauthorised event families, malformed and oversized payloads, and the token itself.
    for (t, p, code) in [
        ("run.succeeded", "{}", Code::InvalidArgument),
        ("webhook.received", "{}", Code::InvalidArgument),
        ("run.agent.ready", "[1]", Code::InvalidArgument),
        ("run.agent.ready", "{not json", Code::InvalidArgument),
    ] {
        assert_eq!(c.insert_run_flow_event(event(t, p)).await.unwrap_err().code(), code, "{t} {p}");
    }
    let big = json!({"x": "a".repeat(70 * 1024)}).to_string();
    assert_eq!(c.insert_run_flow_event(event("run.agent.ready", &big)).await.unwrap_err().code(), Code::InvalidArgument);
    let leak = json!({"env": format!("TOKEN={token}")}).to_string();
    let err = c.insert_run_flow_event(event("run.agent.ready", &leak)).await.unwrap_err();
    assert!(err.message().contains("contains the run token") && !err.message().contains(&token), "{}", err.message());

    // Snapshots: insert at version 0, idempotent replay, CAS conflict, version moves on change.
    let codex = json!({"file": "rollout-1.jsonl", "lines": [{"type": "session_meta", "id": "thread-1"}]});
    let s1 = session(0, "running", json!({"version": "v1", "status": "running"}), Some(codex.clone()));
    let a = c.upsert_agent_session(s1.clone()).await.unwrap().into_inner();
    assert_eq!((a.version, a.changed), (1, true));
    let replay = c.upsert_agent_session(s1.clone()).await.unwrap().into_inner();
    assert_eq!((replay.version, replay.changed, replay.checksum.clone()), (1, false, a.checksum.clone()));
    let s2 = session(1, "succeeded", json!({"version": "v1", "status": "succeeded"}), Some(codex.clone()));
    let conflict = c.upsert_agent_session(UpsertAgentSessionRequest { expected_version: 0, ..s2.clone() }).await.unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted);
    assert!(conflict.message().contains("expected 0, stored 1"), "{}", conflict.message());
    let b = c.upsert_agent_session(s2.clone()).await.unwrap().into_inner();
    assert_eq!((b.version, b.changed), (2, true));
    assert_ne!(b.checksum, a.checksum);
    // The checksum does not depend on key order.
    let reordered = UpsertAgentSessionRequest { session_json: r#"{"status":"succeeded","version":"v1"}"#.into(), ..s2.clone() };
    assert_eq!(c.upsert_agent_session(reordered).await.unwrap().into_inner().version, 2);
    for bad in [
        UpsertAgentSessionRequest { status: "done".into(), ..s2.clone() },
        UpsertAgentSessionRequest { expected_version: -1, ..s2.clone() },
        UpsertAgentSessionRequest { session_json: "[]".into(), ..s2.clone() },
        UpsertAgentSessionRequest { codex_cli_session_json: Some("{broken".into()), ..s2.clone() },
        UpsertAgentSessionRequest { codex_cli_session_json: Some(json!({"s": "a".repeat(9 << 20)}).to_string()), ..s2.clone() },
        UpsertAgentSessionRequest { branch_name: Some("b".repeat(2000)), ..s2.clone() },
        UpsertAgentSessionRequest { pr_number: Some(-4), ..s2.clone() },
        UpsertAgentSessionRequest { session_json: json!({"leak": token}).to_string(), ..s2.clone() },
    ] {
        assert_eq!(c.upsert_agent_session(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let (version, mirrored): (i32, Value) = sqlx::query_as(
        "SELECT s.snapshot_version, r.agent_logs_json FROM agent_sessions s JOIN agent_runs r ON r.id = s.run_id WHERE s.run_id = $1",
    )
    .bind(run)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((version, mirrored["session"]["status"].as_str()), (2, Some("succeeded")));

    // Resume lookup: the other run (same repository, agent differs by stage) sees nothing of dev's
    // branch for its own agent; a later dev run on the branch would.
    let mut o = client(&channel, &other_token);
    let none = o.get_latest_agent_session(GetLatestAgentSessionRequest { branch_name: "codex/issue-12".into() }).await.unwrap();
    assert!(!none.into_inner().found, "another agent's session must not be offered");
    assert_eq!(
        o.get_latest_agent_session(GetLatestAgentSessionRequest { branch_name: String::new() }).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Usage needs a session; counts are checked.
    let turn = TokenUsage {
        model: "gpt-5.4".into(),
        prompt_tokens: 120,
        cached_prompt_tokens: 20,
        completion_tokens: 30,
        reasoning_tokens: 5,
        total_tokens: 150,
    };
    let err = o.append_token_usage(AppendTokenUsageRequest { turns: vec![turn.clone()] }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        c.append_token_usage(AppendTokenUsageRequest { turns: vec![turn.clone(), turn.clone()] }).await.unwrap().into_inner().stored,
        2
    );
    for bad in [vec![], vec![TokenUsage { prompt_tokens: -1, ..turn.clone() }], vec![TokenUsage { model: String::new(), ..turn.clone() }]] {
        assert_eq!(c.append_token_usage(AppendTokenUsageRequest { turns: bad }).await.unwrap_err().code(), Code::InvalidArgument);
    }

    // Learning feedback.
    let item = LearningFeedback {
        kind: "post_pr".into(),
        pr_number: Some(1),
        file_path: Some("hello.sh".into()),
        line: Some(2),
        explanation: "Why: ...".into(),
    };
    assert_eq!(
        c.record_learning_feedback(RecordLearningFeedbackRequest { items: vec![item.clone()] }).await.unwrap().into_inner().stored,
        1
    );
    for bad in [
        LearningFeedback { kind: "lecture".into(), ..item.clone() },
        LearningFeedback { explanation: " ".into(), ..item.clone() },
        LearningFeedback { line: Some(0), ..item.clone() },
        LearningFeedback { explanation: format!("uses {token}"), ..item.clone() },
    ] {
        assert_eq!(
            c.record_learning_feedback(RecordLearningFeedbackRequest { items: vec![bad] }).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    // Status reports become owed effects of the run's status comment; finished is the worker's.
    let ready = UpsertRunStatusCommentRequest { phase: "ready".into(), model: Some("gpt-5.4".into()), ..Default::default() };
    assert!(c.upsert_run_status_comment(ready.clone()).await.unwrap().into_inner().owed);
    for bad in [
        UpsertRunStatusCommentRequest { phase: "finished".into(), ..ready.clone() },
        UpsertRunStatusCommentRequest { pr_url: Some("javascript:alert(1)".into()), ..ready.clone() },
        UpsertRunStatusCommentRequest { pr_number: Some(0), ..ready.clone() },
    ] {
        assert_eq!(c.upsert_run_status_comment(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let owed: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM github_side_effects WHERE run_id = $1 AND kind = 'status_comment' ORDER BY id")
            .bind(run)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(owed.len(), 2, "the ingest's created report and the agent's ready report");
    assert_eq!(owed[1]["state"]["phase"], "ready");

    // Events are the agent's, on its own run only.
    let actors: Vec<(String, String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT actor_type, actor_id, run_id FROM flow_events WHERE event_type = 'run.agent.started'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(actors, vec![("agent".to_string(), "agent-runner:dev".to_string(), Some(run))]);
    let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(&token)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(leaked, 0);

    // A finished run's token no longer authorises anything.
    sqlx::query("UPDATE agent_runs SET status = 'canceled', finished_at = now() WHERE id = $1")
        .bind(other_run)
        .execute(&db.pool)
        .await
        .unwrap();
    let err = o.insert_run_flow_event(event("run.agent.ready", "{}")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("finished"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_runs_token_may_only_store_its_cancelled_snapshot_and_only_for_a_while() {
    let (db, i) = setup().await;
    let (run, token) = run_with_token(&db.pool, &i, "d-cancel-1", "run:dev").await;
    let e = env(&db);
    let svc = tokio::task::spawn_blocking(move || ServiceProcess::start(BIN, &e, &["http", "grpc"])).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", svc.addr("grpc"))).unwrap().connect().await.unwrap();
    let mut c = client(&channel, &token);
    assert!(matches!(
        ck8s_store::runs::cancel(&db.pool, run, "alice", "not needed").await.unwrap(),
        ck8s_store::runs::Cancel::Canceled { .. }
    ));

    // Everything but the cancelled snapshot is refused at once.
    let event = InsertRunFlowEventRequest { event_type: "run.agent.ready".into(), payload_json: "{}".into() };
    assert_eq!(c.insert_run_flow_event(event).await.unwrap_err().code(), Code::Unauthenticated);
    let stored = session(0, "succeeded", json!({"version": "v1", "status": "succeeded"}), None);
    assert_eq!(c.upsert_agent_session(stored).await.unwrap_err().code(), Code::Unauthenticated);
    let cancelled = session(0, "cancelled", json!({"version": "v1", "status": "cancelled"}), None);
    assert_eq!(c.upsert_agent_session(cancelled.clone()).await.unwrap().into_inner().version, 1);
    let status: String =
        sqlx::query_scalar("SELECT status FROM agent_sessions WHERE run_id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
    assert_eq!(status, "cancelled");

    // After the grace, not even that.
    sqlx::query("UPDATE agent_runs SET finished_at = now() - interval '11 minutes' WHERE id = $1")
        .bind(run)
        .execute(&db.pool)
        .await
        .unwrap();
    let late = session(1, "cancelled", json!({"version": "v1", "status": "cancelled", "late": true}), None);
    assert_eq!(c.upsert_agent_session(late).await.unwrap_err().code(), Code::Unauthenticated);
    drop(svc);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_learns_when_its_credentials_were_withdrawn_and_only_for_its_own_run() {
    let (db, i) = setup().await;
    let (run, token) = run_with_token(&db.pool, &i, "d-withdraw-1", "run:dev").await;
    let (_, other_token) = run_with_token(&db.pool, &i, "d-withdraw-2", "run:plan").await;
    let e = env(&db);
    let svc = tokio::task::spawn_blocking(move || ServiceProcess::start(BIN, &e, &["http", "grpc"])).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", svc.addr("grpc"))).unwrap().connect().await.unwrap();
    let ask = |t: &str| {
        let mut c = client(&channel, t);
        async move { c.get_credentials_withdrawn(GetCredentialsWithdrawnRequest {}).await }
    };
    assert!(!ask(&token).await.unwrap().into_inner().withdrawn);
    assert_eq!(
        AgentCallbacksClient::new(channel.clone()).get_credentials_withdrawn(GetCredentialsWithdrawnRequest {}).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // The worker holding the run's lease withdraws them; another worker cannot record it.
    sqlx::query("UPDATE agent_runs SET lease_owner = 'w1', lease_until = now() + interval '1 hour' WHERE id = $1")
        .bind(run)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(!ck8s_store::runs::mark_credentials_withdrawn(&db.pool, run, "w2").await.unwrap());
    assert!(ck8s_store::runs::mark_credentials_withdrawn(&db.pool, run, "w1").await.unwrap());
    assert!(!ck8s_store::runs::mark_credentials_withdrawn(&db.pool, run, "w1").await.unwrap(), "recorded once");
    assert!(ask(&token).await.unwrap().into_inner().withdrawn);
    assert!(!ask(&other_token).await.unwrap().into_inner().withdrawn, "another run's are not");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE run_id = $1 AND event_type = 'run.credentials.withdrawn'")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    drop(svc);
}

/// forge-sim with `acme/app` owned by the bot `acme` (pull request #1 is the bot's from
/// `codex/issue-12`, the branch of the runs made here), the repository's token in the database
/// replaced by the bot's, and a control-plane that asks forge-sim and carries out no effects.
struct ForgeStack {
    svc: ServiceProcess,
    forge: ForgeSim,
    bot: String,
}

async fn forge_stack(db: &ck8s_testkit::TestDb) -> ForgeStack {
    let forge = tokio::task::spawn_blocking(ForgeSim::start).await.unwrap();
    let bot = forge.user_of_kind("acme", "Bot");
    assert_eq!(forge.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"}))).0, 201);
    let own = json!({"title": "Run's change", "head": "codex/issue-12", "base": "main"});
    assert_eq!(forge.call("POST", "/repos/acme/app/pulls", Some(&bot), Some(own)).1["number"], 1);
    let sealer = ck8s_crypto::Sealer::from_hex(&secrecy::SecretString::from(super::KEY.to_string())).unwrap();
    sqlx::query("UPDATE repositories SET token_encrypted = $1 WHERE owner = 'acme' AND name = 'app'")
        .bind(sealer.seal(&ck8s_crypto::repository_token_context("github", 4242), &bot).unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    let mut e = env(db);
    for (k, v) in [
        ("CODEXK8S_GITHUB_API_URL", forge.url()),
        ("CODEXK8S_GIT_BOT_USERNAME", "acme".to_string()),
        ("CODEXK8S_SIDE_EFFECTS_ENABLED", "false".to_string()),
    ] {
        e.push((k.to_string(), v));
    }
    let svc = tokio::task::spawn_blocking(move || ServiceProcess::start(BIN, &e, &["http", "grpc"])).await.unwrap();
    ForgeStack { svc, forge, bot }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_token_names_only_its_own_pull_request_and_branch_and_its_status_reports_are_merged_and_capped() {
    let (db, i) = setup().await;
    let (run, token) = run_with_token(&db.pool, &i, "d-scope-1", "run:dev").await;
    let st = forge_stack(&db).await;
    let mallory = st.forge.user("mallory");
    // #2: a human's pull request from the run's branch; #3: the bot's pull request of another run.
    let theirs = json!({"title": "Mine", "head": "codex/issue-12", "base": "release"});
    assert_eq!(st.forge.call("POST", "/repos/acme/app/pulls", Some(&mallory), Some(theirs)).1["number"], 2);
    let other = json!({"title": "Other run", "head": "codex/issue-99", "base": "main"});
    assert_eq!(st.forge.call("POST", "/repos/acme/app/pulls", Some(&st.bot), Some(other)).1["number"], 3);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", st.svc.addr("grpc"))).unwrap().connect().await.unwrap();
    let mut c = client(&channel, &token);
    let run_pr = || async {
        sqlx::query_scalar::<_, Option<i32>>("SELECT pr_number FROM agent_runs WHERE id = $1").bind(run).fetch_one(&db.pool).await.unwrap()
    };

    // A foreign pull request is never recorded on the run, through a snapshot or a report.
    let snap = session(0, "running", json!({"version": "v1", "status": "running"}), None);
    for (n, why) in [(2, "not by the platform's bot"), (3, "not the run's branch"), (999, "does not exist")] {
        let err = c.upsert_agent_session(UpsertAgentSessionRequest { pr_number: Some(n), ..snap.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "#{n}: {}", err.message());
        assert!(err.message().contains(why), "#{n}: {}", err.message());
        let report = UpsertRunStatusCommentRequest { phase: "ready".into(), pr_number: Some(n), ..Default::default() };
        assert_eq!(c.upsert_run_status_comment(report).await.unwrap_err().code(), Code::PermissionDenied, "#{n}");
    }
    assert_eq!(run_pr().await, None, "no foreign number reached the run");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_sessions").fetch_one(&db.pool).await.unwrap();
    assert_eq!(sessions, 0);

    // Its own pull request is recorded, with the forge's link in place of the runner's.
    let phishing = UpsertAgentSessionRequest { pr_number: Some(1), pr_url: Some("https://evil.example/login".into()), ..snap.clone() };
    assert_eq!(c.upsert_agent_session(phishing).await.unwrap().into_inner().version, 1);
    assert_eq!(run_pr().await, Some(1));
    let url: String =
        sqlx::query_scalar("SELECT pr_url FROM agent_sessions WHERE run_id = $1").bind(run).fetch_one(&db.pool).await.unwrap();
    let forge_url = st.forge.call("GET", "/repos/acme/app/pulls/1", Some(&st.bot), None).1["html_url"].as_str().unwrap().to_string();
    assert_eq!(url, forge_url);

    // Sessions of another branch can be neither written nor read.
    let elsewhere = UpsertAgentSessionRequest { expected_version: 1, branch_name: Some("codex/issue-99".into()), ..snap.clone() };
    assert_eq!(c.upsert_agent_session(elsewhere).await.unwrap_err().code(), Code::PermissionDenied);
    let err = c.get_latest_agent_session(GetLatestAgentSessionRequest { branch_name: "codex/issue-99".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(c.get_latest_agent_session(GetLatestAgentSessionRequest { branch_name: "codex/issue-12".into() }).await.is_ok());

    // Status reports: the link is the forge's; a link without its number, and names markdown
    // would read, are refused.
    let ready = UpsertRunStatusCommentRequest {
        phase: "ready".into(),
        pr_number: Some(1),
        pr_url: Some("https://evil.example/login".into()),
        model: Some("gpt-5.4".into()),
        ..Default::default()
    };
    assert!(c.upsert_run_status_comment(ready.clone()).await.unwrap().into_inner().owed);
    for bad in [
        UpsertRunStatusCommentRequest { pr_number: None, ..ready.clone() },
        UpsertRunStatusCommentRequest { model: Some("gpt](https://evil.example)".into()), ..ready.clone() },
        UpsertRunStatusCommentRequest { reasoning_effort: Some("high`<img src=x>".into()), ..ready.clone() },
    ] {
        assert_eq!(c.upsert_run_status_comment(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    // A flood while the last report waits is merged into it: one edit of the comment.
    for _ in 0..100 {
        assert!(c.upsert_run_status_comment(ready.clone()).await.unwrap().into_inner().owed);
    }
    let agent_reports = || async {
        sqlx::query_as::<_, (i64, Value)>(
            "SELECT id, payload FROM github_side_effects WHERE run_id = $1 AND idempotency_key LIKE '%:status:agent:%' ORDER BY id",
        )
        .bind(run)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    let owed = agent_reports().await;
    assert_eq!(owed.len(), 1, "101 reports, one owed effect");
    assert_eq!(owed[0].1["state"]["pr_url"].as_str(), Some(url.as_str()), "the forge's link, not the runner's");
    assert!(!owed[0].1.to_string().contains("evil.example"));
    // Once carried out, a report may be owed again, up to the cap.
    for n in 1..=control_plane::agent::MAX_STATUS_REPORTS {
        sqlx::query("UPDATE github_side_effects SET status = 'done', done_at = now() WHERE run_id = $1 AND status = 'pending'")
            .bind(run)
            .execute(&db.pool)
            .await
            .unwrap();
        let answer = c.upsert_run_status_comment(ready.clone()).await;
        if n < control_plane::agent::MAX_STATUS_REPORTS {
            assert!(answer.unwrap().into_inner().owed, "report {n}");
        } else {
            let err = answer.unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
            assert!(err.message().contains("report less often"), "{}", err.message());
        }
    }
    assert_eq!(agent_reports().await.len() as i64, control_plane::agent::MAX_STATUS_REPORTS);

    // Learning feedback may name only the run's pull request too.
    let item = LearningFeedback { kind: "post_pr".into(), pr_number: Some(3), explanation: "Why: ...".into(), ..Default::default() };
    let err = c.record_learning_feedback(RecordLearningFeedbackRequest { items: vec![item] }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
