//! The whole webhook loop through forge-sim: a user labels an issue on the forge, forge-sim
//! delivers the signed webhook to the gateway, control-plane decides and records the run, and its
//! side-effect executor writes the run's status comment back to the forge through the GitHub
//! adapter.

use ck8s_domain::comments::{Phase, StatusState};
use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{INTERNAL_TOKEN, ServiceProcess, bin_path, control_plane_env};
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET: &str = "forge-loop-secret";

#[tokio::test(flavor = "multi_thread")]
async fn a_label_on_forge_sim_becomes_a_pending_run_and_a_status_comment_on_the_issue() {
    let db = ck8s_testkit::fresh_db().await;
    let fs = tokio::task::spawn_blocking(ForgeSim::start).await.unwrap();
    let acme = fs.user("acme");
    let alice = fs.user("alice");
    let (s, repo) = fs.call("POST", "/_sim/repos", Some(&acme), Some(json!({"name": "app"})));
    assert_eq!(s, 201);
    let repo_id = repo["id"].as_i64().unwrap().to_string();

    let forge_url = fs.url();
    let cp_env = control_plane_env(
        &db,
        &[
            ("CODEXK8S_AGENT_DEFAULT_LOCALE", "en"),
            ("CODEXK8S_BOOTSTRAP_REPOSITORIES", &format!("acme/app={repo_id}")),
            ("CODEXK8S_GITHUB_PAT", &acme),
            ("CODEXK8S_SIDE_EFFECTS_ENABLED", "true"),
            ("CODEXK8S_GITHUB_API_URL", &forge_url),
            ("CODEXK8S_GIT_BOT_USERNAME", "acme"),
            ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL", "200ms"),
            ("CODEXK8S_CONSOLE_URL", "https://console.example.com/"),
        ],
    );
    let (cp, gw) = tokio::task::spawn_blocking(move || {
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let (status, body) = cp.wait_http_ok("http", "/readyz", Duration::from_secs(15));
        assert_eq!(status, 200, "control-plane not ready: {body}");
        let env = vec![
            ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("CODEXK8S_ADMIN_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), format!("http://{}", cp.addr("grpc"))),
            ("CODEXK8S_GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
            ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
        ];
        let gw = ServiceProcess::start(env!("CARGO_BIN_EXE_api-gateway"), &env, &["http"]);
        (cp, gw)
    })
    .await
    .unwrap();

    let hook = json!({"config": {"url": format!("http://{}/api/v1/webhooks/github", gw.addr("http")), "secret": SECRET, "content_type": "json"},
                      "events": ["issues"]});
    assert_eq!(fs.call("POST", "/repos/acme/app/hooks", Some(&acme), Some(hook)).0, 201);
    let (s, issue) = fs.call("POST", "/repos/acme/app/issues", Some(&alice), Some(json!({"title": "Say hello"})));
    assert_eq!(s, 201);
    let n = issue["number"].as_i64().unwrap();
    assert_eq!(fs.call("POST", &format!("/repos/acme/app/issues/{n}/labels"), Some(&alice), Some(json!({"labels": ["run:dev"]}))).0, 200);

    let started = Instant::now();
    let status_comment = loop {
        let (_, comments) = fs.call("GET", &format!("/repos/acme/app/issues/{n}/comments"), Some(&alice), None);
        let found = comments.as_array().into_iter().flatten().find_map(|c| StatusState::from_comment(c["body"].as_str().unwrap_or("")));
        if let Some(s) = found {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no status comment appeared; deliveries: {:?}\ncontrol-plane: {}",
            fs.call("GET", "/_sim/deliveries", None, None).1,
            cp.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status_comment.phase, Some(Phase::Created));
    let (run_id, status): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, status FROM agent_runs WHERE issue_number = $1").bind(n as i32).fetch_one(&db.pool).await.unwrap();
    assert_eq!(status, "pending");
    assert_eq!(status_comment.run_id, run_id.to_string());
    assert_eq!(
        status_comment.console_url,
        Some(format!("https://console.example.com/runs/{run_id}")),
        "the comment links to the run's page"
    );

    // Every owed effect (the status comment and the :eyes: reaction) is done, and audited.
    let started = Instant::now();
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM github_side_effects WHERE status <> 'done'").fetch_one(&db.pool).await.unwrap();
        if open == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{open} side effects not done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'github.side_effect.done'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(done >= 2, "{done}");
    let deliveries = fs.call("GET", "/_sim/deliveries", None, None).1;
    assert_eq!(deliveries[0]["status_code"], 202, "{deliveries}");
    drop((cp, gw, fs));
}
