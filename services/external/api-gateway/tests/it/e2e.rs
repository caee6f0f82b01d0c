//! The product's main job, end to end, with every service running as a process on the local
//! runtime: forge-sim (GitHub), model-sim (the model), the real Codex CLI, api-gateway,
//! control-plane (ingest, side effects, agent callbacks), worker and agent-runner. A `run:dev`
//! label becomes a pull request with one final status comment, labels moved, the full chain of
//! flow events, a session snapshot, token usage and learning-mode explanations; a
//! `changes_requested` review then runs the revise, which resumes the session, updates the same
//! pull request and answers the review comment. Finally a canary scan: no captured log, event,
//! comment or snapshot holds the bot token, the model key or any run token.

use crate::stack::{MODEL_KEY, Setup, Stack, assert_no_secret, status_comments, wait_for};
use ck8s_domain::comments::Phase;
use serde_json::{Value, json};
use std::time::Duration;

async fn run_of(pool: &sqlx::PgPool, kind: &str) -> Option<(uuid::Uuid, String, String)> {
    sqlx::query_as("SELECT id, status, correlation_id FROM agent_runs WHERE trigger_kind = $1 ORDER BY created_at DESC LIMIT 1")
        .bind(kind)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn events(pool: &sqlx::PgPool, run: uuid::Uuid, corr: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM flow_events WHERE run_id = $1 OR correlation_id = $2 ORDER BY id")
        .bind(run)
        .bind(corr)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn in_order(events: &[String], chain: &[&str]) {
    let mut at = 0;
    for want in chain {
        match events[at..].iter().position(|e| e == want) {
            Some(i) => at += i + 1,
            None => panic!("{want} missing (or out of order) in {events:?}"),
        }
    }
}

fn labels(v: &Value) -> Vec<String> {
    v["labels"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_issue_becomes_a_pull_request_and_a_review_becomes_its_revision_end_to_end() {
    let stack = Stack::start("e2e", Setup::default()).await;
    let (db, fs, alice) = (&stack.db, &stack.fs, stack.alice.clone());
    let diag = || stack.diag();

    let (s, issue) =
        fs.call("POST", "/repos/acme/app/issues", Some(&alice), Some(json!({"title": "Say hello", "body": "A greeting script, please."})));
    assert_eq!(s, 201);
    let n = issue["number"].as_i64().unwrap();
    assert_eq!(fs.call("POST", &format!("/repos/acme/app/issues/{n}/labels"), Some(&alice), Some(json!({"labels": ["run:dev"]}))).0, 200);

    // 1. The run succeeds and its status comment reaches its final phase.
    let (run1, corr1) = wait_for(
        "the run:dev run to succeed",
        Duration::from_secs(180),
        || async {
            match run_of(&db.pool, "dev").await {
                Some((id, status, corr)) if status == "succeeded" => Some((id, corr)),
                Some((_, status, _)) if status == "failed" => panic!("the run failed\n{}", diag()),
                _ => None,
            }
        },
        &diag,
    )
    .await;
    let finished = stack.final_status_comments(n).await;
    assert_eq!(finished.len(), 1, "exactly one status comment for the run: {finished:?}");
    let st = &finished[0];
    assert_eq!((st.run_id.as_str(), st.run_status.map(|s| s.as_str())), (run1.to_string().as_str(), Some("succeeded")));
    assert_eq!(st.model.as_deref(), Some("gpt-5.4"));
    let pr = st.pr_number.expect("the status comment names the pull request");
    assert!(st.next_steps.iter().any(|s| s.url.contains("target_label=run%3Aqa")), "{:?}", st.next_steps);
    assert!(st.next_steps.iter().any(|s| s.url.contains("need%3Areviewer")), "{:?}", st.next_steps);

    let (_, pull) = fs.call("GET", &format!("/repos/acme/app/pulls/{pr}"), Some(&alice), None);
    assert_eq!((pull["head"]["ref"].as_str(), pull["user"]["login"].as_str()), (Some("codex/issue-1"), Some("acme")));
    assert_eq!(fs.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&alice), None).0, 200, "the scripted change");
    let (_, i) = fs.call("GET", &format!("/repos/acme/app/issues/{n}"), Some(&alice), None);
    let (_, p) = fs.call("GET", &format!("/repos/acme/app/issues/{pr}"), Some(&alice), None);
    assert_eq!((labels(&i), labels(&p)), (vec!["state:in-review".to_string()], vec!["state:in-review".to_string()]));

    let ev1 = events(&db.pool, run1, &corr1).await;
    in_order(
        &ev1,
        &[
            "webhook.received",
            "run.profile.resolved",
            "run.mcp.token.issued",
            "run.started",
            "run.agent.started",
            "run.agent.ready",
            "run.agent.session.saved",
            "run.pr.created",
            "run.learning.feedback_posted",
            "run.succeeded",
        ],
    );
    let (status, version, lines, session_id): (String, i32, i64, Option<String>) = sqlx::query_as(
        "SELECT status, snapshot_version, jsonb_array_length(codex_cli_session_json->'lines')::bigint, session_id FROM agent_sessions WHERE run_id = $1",
    )
    .bind(run1)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), version), ("succeeded", 1));
    assert!(lines > 3 && session_id.is_some(), "the Codex session is in the snapshot ({lines} lines)");
    let usage: Vec<(String, i64, i64)> = sqlx::query_as("SELECT model, prompt_tokens, total_tokens FROM token_usage WHERE run_id = $1")
        .bind(run1)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(!usage.is_empty() && usage.iter().all(|(m, p, t)| m == "gpt-5.4" && *p > 0 && t > p), "{usage:?}");
    let feedback: Vec<(String, Option<String>, Option<i32>)> =
        sqlx::query_as("SELECT kind, file_path, line FROM learning_feedback WHERE run_id = $1 ORDER BY id")
            .bind(run1)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(feedback, vec![("post_pr".into(), None, None), ("post_pr".into(), Some("hello.sh".into()), Some(2))]);
    let (_, pr_comments) = fs.call("GET", &format!("/repos/acme/app/issues/{pr}/comments"), Some(&alice), None);
    assert!(pr_comments.to_string().contains("Learning mode: why this change"), "{pr_comments}");

    // 2. A review asks for changes: the revise run resumes the session, updates the same pull
    //    request and answers the review comment.
    let review = json!({"event": "REQUEST_CHANGES", "body": "Say hello louder", "comments": [{"path": "hello.sh", "line": 2, "body": "Make it louder"}]});
    assert_eq!(fs.call("POST", &format!("/repos/acme/app/pulls/{pr}/reviews"), Some(&alice), Some(review)).0, 200);
    let (run2, corr2) = wait_for(
        "the revise run to succeed",
        Duration::from_secs(180),
        || async {
            match run_of(&db.pool, "dev_revise").await {
                Some((id, status, corr)) if status == "succeeded" => Some((id, corr)),
                Some((_, status, _)) if status == "failed" => panic!("the revise run failed\n{}", diag()),
                _ => None,
            }
        },
        &diag,
    )
    .await;
    let ev2 = events(&db.pool, run2, &corr2).await;
    in_order(
        &ev2,
        &[
            "run.agent.started",
            "run.agent.session.restored",
            "run.agent.resume.used",
            "run.agent.ready",
            "run.agent.session.saved",
            "run.pr.updated",
            "run.review.replied",
            "run.succeeded",
        ],
    );
    let (_, pulls) = fs.call("GET", "/repos/acme/app/pulls?state=all", Some(&alice), None);
    assert_eq!(pulls.as_array().unwrap().len(), 1, "the same pull request, no second one");
    let (_, file) = fs.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&alice), None);
    let content = String::from_utf8(ck8s_testkit::decode_base64(file["content"].as_str().unwrap())).unwrap();
    assert!(content.contains("HELLO FROM CODEX-K8S!"), "{content}");
    let (_, thread) = fs.call("GET", &format!("/repos/acme/app/pulls/{pr}/comments"), Some(&alice), None);
    let replies: Vec<&Value> = thread.as_array().unwrap().iter().filter(|c| c["in_reply_to_id"].is_i64()).collect();
    assert!(replies.iter().any(|r| r["user"]["login"] == "acme" && r["body"].as_str().unwrap().starts_with("Addressed in")), "{thread}");
    let resumed: Value =
        sqlx::query_scalar("SELECT payload FROM flow_events WHERE run_id = $1 AND event_type = 'run.agent.session.restored'")
            .bind(run2)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(resumed["from_run_id"], run1.to_string());
    // The review-driven run reports on the pull request, in its final phase too.
    wait_for(
        "the revise run's final status comment on the pull request",
        Duration::from_secs(30),
        || async {
            let (_, comments) = fs.call("GET", &format!("/repos/acme/app/issues/{pr}/comments"), Some(&alice), None);
            status_comments(&comments).into_iter().find(|s| s.run_id == run2.to_string() && s.phase == Some(Phase::Finished))
        },
        &diag,
    )
    .await;

    // 3. The canary: nothing captured holds a secret.
    // (model-sim plays OpenAI: what the agent prints reaches the model by design, so its own log is
    // not ours to check; the agent's own directories hold what it printed.)
    let all = stack.captured(false).await;
    assert!(all.contains("[REDACTED]"), "the agent did print its credentials (the canary bait), so redaction had work to do");
    assert_no_secret(&all, &[("bot token", stack.bot.as_str()), ("model key", MODEL_KEY)], "captured output");
    let root = stack.root.clone();
    drop(stack);
    let _ = std::fs::remove_dir_all(&root);
}
