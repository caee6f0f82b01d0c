//! The product's main job, end to end, with every service running as a process on the local
//! runtime: forge-sim (GitHub), model-sim (the model), the real Codex CLI, api-gateway,
//! control-plane (ingest, side effects, agent callbacks), worker and agent-runner. A `run:dev`
//! label becomes a pull request with one final status comment, labels moved, the full chain of
//! flow events, a session snapshot, token usage and learning-mode explanations; a
//! `changes_requested` review then runs the revise, which resumes the session, updates the same
//! pull request and answers the review comment. Finally a canary scan: no captured log, event,
//! comment or snapshot holds the bot token, the model key or any run token.

use ck8s_domain::comments::{Phase, StatusState};
use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{INTERNAL_TOKEN, ServiceProcess, bin_path, control_plane_env};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "e2e-webhook-secret";
const MODEL_KEY: &str = "sk-model-canary-e2e-4417";

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F, diag: &dyn Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "{what} did not happen within {timeout:?}\n{}", diag());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

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

fn status_comments(comments: &Value) -> Vec<StatusState> {
    comments.as_array().into_iter().flatten().filter_map(|c| StatusState::from_comment(c["body"].as_str().unwrap_or(""))).collect()
}

fn labels(v: &Value) -> Vec<String> {
    v["labels"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_issue_becomes_a_pull_request_and_a_review_becomes_its_revision_end_to_end() {
    let db = ck8s_testkit::fresh_db().await;
    let root = std::env::temp_dir().join(format!("ck8s-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let fs = tokio::task::spawn_blocking(ForgeSim::start).await.unwrap();
    let bot = fs.user_of_kind("acme", "Bot");
    let alice = fs.user("alice");
    let (s, repo) = fs.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"})));
    assert_eq!(s, 201);
    fs.push_main(&bot, "acme/app", &[("README.md", "# app\n")], &root);

    let forge_url = fs.url();
    let repo_id = repo["id"].as_i64().unwrap().to_string();
    let cp_env = control_plane_env(
        &db,
        &[
            ("CODEXK8S_AGENT_DEFAULT_LOCALE", "en"),
            ("CODEXK8S_BOOTSTRAP_REPOSITORIES", &format!("acme/app={repo_id}")),
            ("CODEXK8S_GITHUB_PAT", &bot),
            ("CODEXK8S_GIT_BOT_USERNAME", "acme"),
            ("CODEXK8S_SIDE_EFFECTS_ENABLED", "true"),
            ("CODEXK8S_GITHUB_API_URL", &forge_url),
            ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL", "200ms"),
            ("CODEXK8S_CONSOLE_URL", "https://console.example.com"),
            ("CODEXK8S_LEARNING_MODE_DEFAULT", "true"),
        ],
    );
    let runs_dir = root.join("runs");
    let worker_env = {
        let mut e = db.env();
        let codex = ck8s_testkit::codex::binary().display().to_string();
        e.extend(
            [
                ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
                ("CODEXK8S_WORKER_ID", "e2e-worker".to_string()),
                ("CODEXK8S_WORKER_POLL_INTERVAL", "300ms".to_string()),
                ("CODEXK8S_AGENT_DEFAULT_LOCALE", "en".to_string()),
                ("CODEXK8S_WORKER_JOB_COMMAND", bin_path("agent-runner")),
                ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR", runs_dir.display().to_string()),
                ("CODEXK8S_GITHUB_API_URL", forge_url.clone()),
                ("CODEXK8S_GIT_BASE_URL", format!("{forge_url}/git")),
                ("CODEXK8S_CODEX_BIN", codex),
                ("CODEXK8S_GIT_BOT_TOKEN", bot.clone()),
                ("CODEXK8S_GIT_BOT_USERNAME", "acme".to_string()),
                ("CODEXK8S_GIT_BOT_MAIL", "acme@codex-k8s.local".to_string()),
                ("CODEXK8S_OPENAI_API_KEY", MODEL_KEY.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        e
    };
    let (model, cp, worker, gw) = tokio::task::spawn_blocking(move || {
        let model = ServiceProcess::start(
            &bin_path("model-sim"),
            &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into())],
            &["http"],
        );
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let (status, body) = cp.wait_http_ok("http", "/readyz", Duration::from_secs(20));
        assert_eq!(status, 200, "control-plane not ready: {body}");
        let mut we = worker_env;
        we.push(("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), format!("http://{}", cp.addr("grpc"))));
        we.push(("CODEXK8S_MODEL_BASE_URL".into(), format!("http://{}/v1", model.addr("http"))));
        let worker = ServiceProcess::start(&bin_path("worker"), &we, &["http"]);
        let gw_env = vec![
            ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), format!("http://{}", cp.addr("grpc"))),
            ("CODEXK8S_GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
            ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
        ];
        let gw = ServiceProcess::start(env!("CARGO_BIN_EXE_api-gateway"), &gw_env, &["http"]);
        (model, cp, worker, gw)
    })
    .await
    .unwrap();
    let diag = || format!("control-plane:\n{}\nworker:\n{}", cp.output(), worker.output());

    let hook = json!({"config": {"url": format!("http://{}/api/v1/webhooks/github", gw.addr("http")), "secret": SECRET, "content_type": "json"},
                      "events": ["issues", "pull_request", "pull_request_review", "issue_comment"]});
    assert_eq!(fs.call("POST", "/repos/acme/app/hooks", Some(&bot), Some(hook)).0, 201);
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
    let finished = wait_for(
        "the final status comment",
        Duration::from_secs(30),
        || async {
            let (_, comments) = fs.call("GET", &format!("/repos/acme/app/issues/{n}/comments"), Some(&alice), None);
            let all = status_comments(&comments);
            all.iter().any(|s| s.phase == Some(Phase::Finished)).then_some(all)
        },
        &diag,
    )
    .await;
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
    // not ours to check.)
    let mut captured = vec![cp.output(), worker.output(), gw.output()];
    for table in ["flow_events", "agent_sessions", "agent_runs", "learning_feedback", "github_side_effects", "run_status_comments"] {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t")).fetch_all(&db.pool).await.unwrap();
        captured.push(rows.join("\n"));
    }
    for path in [
        "/repos/acme/app/issues/1/comments",
        &format!("/repos/acme/app/issues/{pr}/comments"),
        &format!("/repos/acme/app/pulls/{pr}/comments"),
        &format!("/repos/acme/app/pulls/{pr}"),
    ] {
        captured.push(fs.call("GET", path, Some(&alice), None).1.to_string());
    }
    captured.extend(
        ck8s_testkit::files_under(&runs_dir)
            .into_iter()
            .filter(|p| !p.components().any(|c| c.as_os_str() == "codex-home"))
            .filter_map(|p| std::fs::read_to_string(p).ok()),
    );
    let all = captured.join("\n");
    assert!(all.contains("[REDACTED]"), "the agent did print its credentials (the canary bait), so redaction had work to do");
    for (name, secret) in [("bot token", bot.as_str()), ("model key", MODEL_KEY)] {
        assert!(!all.contains(secret), "the {name} leaked into captured output");
    }
    let run_token = all
        .match_indices("ck8srun_")
        .map(|(i, _)| &all[i..(i + 72).min(all.len())])
        .find(|t| t[8..].chars().all(|c| c.is_ascii_hexdigit()) && t.len() == 72);
    assert_eq!(run_token, None, "a run token leaked into captured output");
    drop((gw, worker, cp, model));
    let _ = std::fs::remove_dir_all(&root);
}
