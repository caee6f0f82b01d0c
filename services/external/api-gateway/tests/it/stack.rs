//! The whole product as processes on the local runtime, for the end-to-end tests: forge-sim
//! (GitHub) with `acme/app` owned by the bot `acme`, model-sim (the model) with extra scenarios,
//! the real Codex CLI, api-gateway (webhooks from forge-sim), control-plane (ingest, side
//! effects, agent callbacks), worker and agent-runner. Also what the canary scans read: every
//! service's output, the database, what the forge holds (API answers and every git object) and
//! every file the runs left.

use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{INTERNAL_TOKEN, ServiceProcess, bin_path, control_plane_env, free_port};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-webhook-secret";
pub const MODEL_KEY: &str = "sk-model-canary-e2e-4417";

/// Waits until `f` gives a value; fails with `diag()` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F, diag: &dyn Fn() -> String) -> T
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

/// What the repository starts with and which scenarios model-sim adds to its own.
#[derive(Default)]
pub struct Setup<'a> {
    /// Files of `main` (`README.md` when empty).
    pub files: &'a [(&'a str, &'a str)],
    /// Symbolic links of `main` (`(path, target)`).
    pub links: &'a [(&'a str, &'a str)],
    /// Scenario templates (`(file name, text)`); `{{FORGE_URL}}`, `{{MODEL_URL}}`,
    /// `{{BOT_TOKEN}}`, `{{MODEL_KEY}}`, `{{MARK_DIR}}`, `{{RUNS_DIR}}` and `{{CP_GRPC}}`
    /// (control-plane's gRPC address) are filled in.
    pub scenarios: &'a [(&'a str, &'a str)],
    /// Whether the platform's MCP server is configured (then the agent holds the run token as
    /// its MCP bearer token).
    pub mcp: bool,
    /// Runs are recorded but never launched (the worker's other loops still run).
    pub no_launch: bool,
    /// The worker runs on the Kubernetes runtime and places the runs' Jobs on the test cluster's
    /// real node (agent-runner's image, real containers); forge-sim, model-sim and control-plane's
    /// gRPC port listen on the node's gateway address, where the pods reach them.
    pub real_node: bool,
}

/// A running stack (stopped when dropped).
pub struct Stack {
    pub db: ck8s_testkit::TestDb,
    pub fs: ForgeSim,
    pub bot: String,
    pub alice: String,
    pub root: PathBuf,
    pub runs_dir: PathBuf,
    /// A directory every user may write (for marks a hostile agent's traps leave).
    pub mark_dir: PathBuf,
    pub model: ServiceProcess,
    pub cp: ServiceProcess,
    /// control-plane's environment, to start it again after a test stopped it.
    pub cp_env: Vec<(String, String)>,
    pub worker: ServiceProcess,
    pub gw: ServiceProcess,
}

impl Stack {
    pub async fn start(name: &str, setup: Setup<'_>) -> Stack {
        let db = ck8s_testkit::fresh_db().await;
        let root = std::env::temp_dir().join(format!("ck8s-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mark_dir = root.join("marks");
        std::fs::create_dir_all(&mark_dir).unwrap();
        std::fs::set_permissions(&mark_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        // Where the agent's side reaches the host services: loopback for local runs, the node's
        // gateway for pods.
        let host = if setup.real_node {
            tokio::task::spawn_blocking(ck8s_testkit::cluster::real_node_gateway).await.unwrap()
        } else {
            "127.0.0.1"
        };
        let fs = tokio::task::spawn_blocking(move || ForgeSim::start_on(host)).await.unwrap();
        let bot = fs.user_of_kind("acme", "Bot");
        let alice = fs.user("alice");
        let (s, repo) = fs.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"})));
        assert_eq!(s, 201);
        let files: &[(&str, &str)] = if setup.files.is_empty() { &[("README.md", "# app\n")] } else { setup.files };
        fs.push_main_with_links(&bot, "acme/app", files, setup.links, &root);

        // model-sim's and control-plane's ports are chosen first: the scenarios name them.
        let model_addr = format!("{host}:{}", free_port());
        let cp_grpc = format!("{host}:{}", free_port());
        let scenarios_dir = root.join("scenarios");
        std::fs::create_dir_all(&scenarios_dir).unwrap();
        for (file, template) in setup.scenarios {
            let text = template
                .replace("{{FORGE_URL}}", &fs.url())
                .replace("{{MODEL_URL}}", &format!("http://{model_addr}/v1"))
                .replace("{{BOT_TOKEN}}", &bot)
                .replace("{{MODEL_KEY}}", MODEL_KEY)
                .replace("{{MARK_DIR}}", &mark_dir.display().to_string())
                .replace("{{RUNS_DIR}}", &root.join("runs").display().to_string())
                .replace("{{CP_GRPC}}", &cp_grpc);
            std::fs::write(scenarios_dir.join(file), text).unwrap();
        }

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
                ("CODEXK8S_GRPC_ADDR", &cp_grpc),
            ],
        );
        let runs_dir = root.join("runs");
        // The gateway's port is chosen first too: the worker's redelivery loop finds the
        // platform's webhook by the URL it delivers to.
        let gw_addr = format!("127.0.0.1:{}", free_port());
        let hook_url = format!("http://{gw_addr}/api/v1/webhooks/github");
        let key = cp_env.iter().find(|(k, _)| k == "CODEXK8S_TOKEN_ENCRYPTION_KEY").map(|(_, v)| v.clone()).unwrap_or_default();
        let mut worker_env = db.env();
        worker_env.extend(
            [
                ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
                ("CODEXK8S_WORKER_ID", format!("{name}-worker")),
                ("CODEXK8S_WORKER_POLL_INTERVAL", "300ms".to_string()),
                ("CODEXK8S_AGENT_DEFAULT_LOCALE", "en".to_string()),
                ("CODEXK8S_WORKER_JOB_COMMAND", bin_path("agent-runner")),
                ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR", runs_dir.display().to_string()),
                ("CODEXK8S_GITHUB_API_URL", forge_url.clone()),
                ("CODEXK8S_GIT_BASE_URL", format!("{forge_url}/git")),
                ("CODEXK8S_CODEX_BIN", ck8s_testkit::codex::binary().display().to_string()),
                ("CODEXK8S_GIT_BOT_TOKEN", bot.clone()),
                ("CODEXK8S_GIT_BOT_USERNAME", "acme".to_string()),
                ("CODEXK8S_GIT_BOT_MAIL", "acme@codex-k8s.local".to_string()),
                ("CODEXK8S_OPENAI_API_KEY", MODEL_KEY.to_string()),
                ("CODEXK8S_MODEL_BASE_URL", format!("http://{model_addr}/v1")),
                ("CODEXK8S_GITHUB_WEBHOOK_URL", hook_url.clone()),
                ("CODEXK8S_TOKEN_ENCRYPTION_KEY", key),
                ("CODEXK8S_WEBHOOK_REDELIVERY_INTERVAL", "300ms".to_string()),
                ("CODEXK8S_WEBHOOK_REDELIVERY_BACKOFF", "2s".to_string()),
                ("CODEXK8S_WORKER_LAUNCH_RUNS", (!setup.no_launch).to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        if setup.real_node {
            let image = tokio::task::spawn_blocking(ck8s_testkit::cluster::agent_runner_image).await.unwrap();
            ck8s_testkit::cluster::worker_on_real_node(
                &mut worker_env,
                image,
                &ck8s_testkit::cluster::unique_name(&format!("ck8s-{name}")),
            );
        }
        if setup.mcp {
            worker_env.push(("CODEXK8S_CONTROL_PLANE_MCP_URL".into(), format!("http://{cp_grpc}/mcp")));
        }
        let cp_env_kept = cp_env.clone();
        let (model, cp, worker, gw) = tokio::task::spawn_blocking(move || {
            let model = ServiceProcess::start(
                &bin_path("model-sim"),
                &[
                    ("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), model_addr),
                    ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into()),
                    ("CODEXK8S_MODEL_SIM_SCENARIOS_DIR".into(), scenarios_dir.display().to_string()),
                ],
                &["http"],
            );
            let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
            let (status, body) = cp.wait_http_ok("http", "/readyz", Duration::from_secs(20));
            assert_eq!(status, 200, "control-plane not ready: {body}");
            worker_env.push(("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), format!("http://{}", cp.addr("grpc"))));
            let worker = ServiceProcess::start(&bin_path("worker"), &worker_env, &["http"]);
            let gw_env = vec![
                ("CODEXK8S_HTTP_ADDR".to_string(), gw_addr),
                ("CODEXK8S_ADMIN_ADDR".to_string(), "127.0.0.1:0".to_string()),
                ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), format!("http://{}", cp.addr("grpc"))),
                ("CODEXK8S_GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
                ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
            ];
            let gw = ServiceProcess::start(env!("CARGO_BIN_EXE_api-gateway"), &gw_env, &["http"]);
            (model, cp, worker, gw)
        })
        .await
        .unwrap();
        let hook = json!({"config": {"url": hook_url, "secret": SECRET, "content_type": "json"},
                          "events": ["issues", "pull_request", "pull_request_review", "issue_comment"]});
        assert_eq!(fs.call("POST", "/repos/acme/app/hooks", Some(&bot), Some(hook)).0, 201);
        Stack { db, fs, bot, alice, root, runs_dir, mark_dir, model, cp, cp_env: cp_env_kept, worker, gw }
    }

    /// Starts control-plane again (after a test stopped it) on the same gRPC address.
    pub async fn restart_control_plane(&mut self) {
        let env = self.cp_env.clone();
        let cp = tokio::task::spawn_blocking(move || {
            let cp = ServiceProcess::start(&bin_path("control-plane"), &env, &["http", "grpc"]);
            let (status, body) = cp.wait_http_ok("http", "/readyz", Duration::from_secs(20));
            assert_eq!(status, 200, "control-plane not ready again: {body}");
            cp
        })
        .await
        .unwrap();
        self.cp = cp;
    }

    /// The services' output, for failure messages.
    pub fn diag(&self) -> String {
        format!("control-plane:\n{}\nworker:\n{}", self.cp.output(), self.worker.output())
    }

    /// Opens an issue as alice and labels it; returns its number.
    pub fn labelled_issue(&self, title: &str, body: &str, label: &str) -> i64 {
        let (s, issue) = self.fs.call("POST", "/repos/acme/app/issues", Some(&self.alice), Some(json!({"title": title, "body": body})));
        assert_eq!(s, 201, "{issue}");
        let n = issue["number"].as_i64().unwrap();
        let labels = json!({"labels": [label]});
        assert_eq!(self.fs.call("POST", &format!("/repos/acme/app/issues/{n}/labels"), Some(&self.alice), Some(labels)).0, 200);
        n
    }

    /// The status comments on issue `n` once one of them has reached its final phase.
    pub async fn final_status_comments(&self, n: i64) -> Vec<ck8s_domain::comments::StatusState> {
        let diag = || self.diag();
        wait_for(
            "the final status comment",
            Duration::from_secs(30),
            || async {
                let (_, comments) = self.fs.call("GET", &format!("/repos/acme/app/issues/{n}/comments"), Some(&self.alice), None);
                let all = status_comments(&comments);
                all.iter().any(|s| s.phase == Some(ck8s_domain::comments::Phase::Finished)).then_some(all)
            },
            &diag,
        )
        .await
    }

    /// The newest run of `kind` once it has finished: (id, status, correlation id).
    pub async fn finished_run(&self, kind: &str, issue: Option<i64>, timeout: Duration) -> (uuid::Uuid, String, String) {
        let diag = || self.diag();
        wait_for(
            &format!("a {kind} run to finish"),
            timeout,
            || async {
                let row: Option<(uuid::Uuid, String, String)> = sqlx::query_as(
                    "SELECT id, status, correlation_id FROM agent_runs
                      WHERE trigger_kind = $1 AND ($2::int IS NULL OR issue_number = $2) ORDER BY created_at DESC LIMIT 1",
                )
                .bind(kind)
                .bind(issue.map(|n| n as i32))
                .fetch_optional(&self.db.pool)
                .await
                .unwrap();
                row.filter(|(_, status, _)| matches!(status.as_str(), "succeeded" | "failed" | "canceled"))
            },
            &diag,
        )
        .await
    }

    /// Everything the platform kept or sent: every service's output, every row of every table,
    /// every answer the forge gave, every commit and blob of the repository, and every file the
    /// runs left (the agent's own directories included unless `agent_dirs` is false).
    pub async fn captured(&self, agent_dirs: bool) -> String {
        let mut captured = vec![self.cp.output(), self.worker.output(), self.gw.output()];
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t")).fetch_all(&self.db.pool).await.unwrap();
            captured.push(rows.join("\n"));
        }
        captured.push(self.fs.exchanges().to_string());
        captured.push(self.git_history());
        // The runs' work directories (the runner's default, under the temporary directory).
        let runs: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM agent_runs").fetch_all(&self.db.pool).await.unwrap();
        let workdirs = runs.iter().map(|id| std::env::temp_dir().join(format!("codex-k8s-run-{id}")));
        captured.extend(
            std::iter::once(self.runs_dir.clone())
                .chain(workdirs)
                .flat_map(|d| ck8s_testkit::files_under(&d))
                .filter(|p| agent_dirs || !p.components().any(|c| c.as_os_str() == "agent"))
                .filter_map(|p| std::fs::read(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        );
        captured.join("\n")
    }

    /// Every commit (message and patch) of every branch of `acme/app`, as git prints them.
    pub fn git_history(&self) -> String {
        let dir = self.root.join("history.git");
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("{}/git/acme/app.git", self.fs.url());
        let header = ck8s_testkit::forge::git_auth(&self.bot);
        let ok =
            std::process::Command::new("git").args(["-c", &header, "clone", "-q", "--mirror", &url]).arg(&dir).status().unwrap().success();
        assert!(ok, "cannot clone {url}");
        let out = std::process::Command::new("git").arg("-C").arg(&dir).args(["log", "--all", "-p", "--format=fuller"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every request model-sim received for `scenario`.
    pub fn model_requests(&self, scenario: &str) -> Vec<Value> {
        let (_, _, body) = ck8s_testkit::process::http_request(self.model.addr("http"), "GET", "/_sim/requests", &[], None);
        let all: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        all.as_array().into_iter().flatten().filter(|r| r["scenario"] == scenario).cloned().collect()
    }
}

/// The status comments among `comments` (a forge's list of issue comments).
pub fn status_comments(comments: &Value) -> Vec<ck8s_domain::comments::StatusState> {
    comments
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| ck8s_domain::comments::StatusState::from_comment(c["body"].as_str().unwrap_or("")))
        .collect()
}

/// Fails naming the secret when `text` holds any of `secrets` or a run token's shape.
pub fn assert_no_secret(text: &str, secrets: &[(&str, &str)], what: &str) {
    for (name, secret) in secrets {
        assert!(!text.contains(secret), "the {name} leaked into {what}");
    }
    let run_token = text
        .match_indices("ck8srun_")
        .map(|(i, _)| &text[i..(i + 72).min(text.len())])
        .find(|t| t.len() == 72 && t[8..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(run_token, None, "a run token leaked into {what}");
}
