//! devstack: starts the local codex-k8s stack — PostgreSQL 18 + pgvector from `scripts/pg.sh`,
//! then control-plane (after `control-plane migrate`), worker and api-gateway as child processes —
//! waits until every `/readyz` answers, prints where each listens, then shows the main job: the
//! owner opens an issue and labels it `run:dev`, the signed webhook comes in, the worker runs the
//! agent (the real Codex CLI), and the pull request, the final status comment and the learning
//! comments are printed. On Ctrl-C (or SIGTERM) it stops them all, waits for them, and stops
//! PostgreSQL if it started it. `--smoke` does the same on free ports and stops at once: the test
//! suite runs it to prove the README's first command works.
//!
//! On its embedded defaults forge-sim plays GitHub (seeded with the demo repository, its bot and
//! owner, and a webhook to the gateway) and model-sim plays the model. With real credentials
//! (`CODEXK8S_FIRST_PROJECT_GITHUB_REPO` + `CODEXK8S_GITHUB_PAT`, and `CODEXK8S_OPENAI_API_KEY`) the
//! same command serves a GitHub repository and OpenAI instead: it ensures the repository's webhook
//! and labels, and — unless `CODEXK8S_GITHUB_WEBHOOK_URL` names a public address that reaches the
//! gateway — brings GitHub's deliveries in through the relay (`relay.rs`, ADR-0013).
//!
//! Binaries are taken from the directory of this executable (`cargo build --bins` puts them
//! there); service logs go to `.cache/devstack/logs/<service>.log`.

mod demo;
mod postgres;
mod relay;
mod seed;
mod target;

use anyhow::{Context, Result, bail};
use postgres::Postgres;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use target::{Model, RealGithub, Settings};
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

pub(crate) fn say(msg: impl AsRef<str>) {
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

const USAGE: &str = "usage: devstack [--smoke] [--no-demo] [--env-file PATH]
  --smoke           free ports, a throw-away database; show the main job once and stop (the tests run this)
  --no-demo         start the stack without opening and labelling the demo issue
  --env-file PATH   CODEXK8S_* settings as KEY=VALUE lines (the environment wins over the file)
Real credentials instead of forge-sim and model-sim (see README, \"With real credentials\"):
  CODEXK8S_FIRST_PROJECT_GITHUB_REPO=you/scratch CODEXK8S_GITHUB_PAT=…   GitHub
  CODEXK8S_OPENAI_API_KEY=…                                              OpenAI";

struct Args {
    smoke: bool,
    demo: bool,
    env_file: Option<PathBuf>,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut out = Args { smoke: false, demo: true, env_file: None };
    let mut args = args;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => out.smoke = true,
            "--no-demo" => out.demo = false,
            "--env-file" => out.env_file = Some(args.next().context("--env-file needs a path")?.into()),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(out))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let smoke = args.smoke;
    let settings = Settings::load(args.env_file.as_deref(), std::env::vars())?;
    let real_github = RealGithub::from(&settings)?;
    let model = Model::from(&settings);
    let root = repo_root()?;
    let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).context("locating binaries")?;
    // Logs, run directories and generated secrets (`CODEXK8S_DEVSTACK_DIR` keeps a second stack apart).
    let state = settings.get("CODEXK8S_DEVSTACK_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".cache/devstack"));
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs)?;

    let mut needed = vec!["control-plane", "worker", "api-gateway", "agent-runner"];
    if real_github.is_none() {
        needed.push("forge-sim");
    }
    if model == Model::Sim {
        needed.push("model-sim");
    }
    for b in needed {
        if !bin_dir.join(b).exists() {
            bail!(
                "{} is missing: build the binaries first with `cargo build --bins` (scripts/dev.sh does this)",
                bin_dir.join(b).display()
            );
        }
    }

    let pg = Postgres::start(&root, smoke).await?;

    let port = |default: u16| if smoke { free_port() } else { default };
    let (gw, cp_http, cp_grpc, wk, fs, ms) = (port(8080), port(8081), port(9090), port(8082), port(8090), port(8091));
    let mut ports = vec![("api-gateway", gw), ("control-plane http", cp_http), ("control-plane grpc", cp_grpc), ("worker", wk)];
    if real_github.is_none() {
        ports.push(("forge-sim", fs));
    }
    if model == Model::Sim {
        ports.push(("model-sim", ms));
    }
    for (name, p) in ports {
        if !port_free(p) {
            bail!("port {p} for {name} is in use: stop what holds it (perhaps another devstack) and try again");
        }
    }

    // Generated local secrets, then the operator's settings over them, then the database.
    let mut merged: BTreeMap<String, String> = local_secrets(&state)?;
    merged.extend(settings.all());
    merged.extend(pg.env());
    let webhook_secret = merged.get("CODEXK8S_GITHUB_WEBHOOK_SECRET").cloned().unwrap_or_default();
    let model_key = merged.get("CODEXK8S_OPENAI_API_KEY").cloned().unwrap_or_default();
    let common: Vec<(String, String)> = merged.into_iter().collect();

    let forge_svc = Svc {
        name: "forge-sim",
        ports: vec![("http", fs)],
        env: vec![("CODEXK8S_FORGE_SIM_HTTP_ADDR".into(), format!("127.0.0.1:{fs}"))],
        ready_port: fs,
    };
    let model_svc = Svc {
        name: "model-sim",
        ports: vec![("http", ms)],
        env: vec![
            ("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), format!("127.0.0.1:{ms}")),
            ("CODEXK8S_MODEL_SIM_API_KEY".into(), model_key.clone()),
        ],
        ready_port: ms,
    };
    let mut running: Vec<Running> = Vec::new();
    let mut sims: Vec<&Svc> = Vec::new();
    let prepared = async {
        if model == Model::Sim {
            running.push(spawn(&bin_dir, &logs, &model_svc, &common)?);
            wait_ready(&model_svc, &mut running, &logs, Instant::now() + Duration::from_secs(30)).await?;
            sims.push(&model_svc);
        }
        match &real_github {
            Some(gh) => {
                say(format!("real GitHub: preparing {} at {} (webhook and labels)", gh.repo.full_name(), gh.api_url));
                target::prepare_real(gh, &webhook_secret).await
            }
            None => {
                running.push(spawn(&bin_dir, &logs, &forge_svc, &common)?);
                wait_ready(&forge_svc, &mut running, &logs, Instant::now() + Duration::from_secs(30)).await?;
                sims.push(&forge_svc);
                seed::forge_sim(fs, gw, &webhook_secret, &state).await
            }
        }
    }
    .await;
    let target = match prepared {
        Ok(t) => t,
        Err(e) => {
            terminate(&mut running, Duration::from_secs(5)).await;
            return Err(e.context(if real_github.is_some() { "setting up the GitHub repository" } else { "setting up forge-sim" }));
        }
    };
    let full = target.repo.full_name();
    target.announce(&model);

    pg.migrate(&bin_dir, &common).await?;

    let bot_token = target.bot_token.expose_secret().to_string();
    let bot_mail = settings.get("CODEXK8S_GIT_BOT_MAIL").map(String::from).unwrap_or_else(|| {
        if target.real { format!("{}@users.noreply.github.com", target.bot_login) } else { format!("{}@codex-k8s.local", target.bot_login) }
    });
    let mut worker_env: Vec<(String, String)> = vec![
        ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{wk}")),
        ("CODEXK8S_WORKER_ID".into(), "devstack-worker-1".into()),
        ("CODEXK8S_WORKER_POLL_INTERVAL".into(), "1s".into()),
        // Each run executes the agent runner as a local process, with the real Codex CLI.
        ("CODEXK8S_WORKER_JOB_COMMAND".into(), bin_dir.join("agent-runner").display().to_string()),
        ("CODEXK8S_GITHUB_API_URL".into(), target.api_url.clone()),
        ("CODEXK8S_GIT_BASE_URL".into(), target.git_url.clone()),
        ("CODEXK8S_CODEX_BIN".into(), root.join("tools/codex/node_modules/.bin/codex").display().to_string()),
        ("CODEXK8S_GIT_BOT_TOKEN".into(), bot_token.clone()),
        ("CODEXK8S_GIT_BOT_MAIL".into(), bot_mail),
        ("CODEXK8S_OPENAI_API_KEY".into(), model_key.clone()),
        ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR".into(), state.join("runs").display().to_string()),
        ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), format!("http://127.0.0.1:{cp_grpc}")),
        ("CODEXK8S_GIT_BOT_USERNAME".into(), target.bot_login.clone()),
    ];
    if model == Model::Sim {
        worker_env.push(("CODEXK8S_MODEL_BASE_URL".into(), format!("http://127.0.0.1:{ms}/v1")));
    }
    let svcs = vec![
        Svc {
            name: "control-plane",
            ports: vec![("http", cp_http), ("grpc", cp_grpc)],
            env: vec![
                ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{cp_http}")),
                ("CODEXK8S_GRPC_ADDR".into(), format!("127.0.0.1:{cp_grpc}")),
                ("CODEXK8S_SERVICES_CONFIG_PATH".into(), root.join("services.yaml").display().to_string()),
                (
                    "CODEXK8S_BOOTSTRAP_OWNER_EMAIL".into(),
                    settings.get("CODEXK8S_BOOTSTRAP_OWNER_EMAIL").unwrap_or(seed::DEMO_OWNER_EMAIL).to_string(),
                ),
                ("CODEXK8S_BOOTSTRAP_OWNER_GITHUB_LOGIN".into(), target.owner_login.clone()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_SLUG".into(), "demo".into()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_NAME".into(), "Demo project".into()),
                ("CODEXK8S_BOOTSTRAP_REPOSITORIES".into(), format!("{full}={}", target.repo_id)),
                // The platform writes comments and labels as the bot.
                ("CODEXK8S_GITHUB_PAT".into(), bot_token),
                ("CODEXK8S_GITHUB_API_URL".into(), target.api_url.clone()),
                ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL".into(), "500ms".into()),
                // Status comments link to the run page and the next-step dialog of the console.
                ("CODEXK8S_CONSOLE_URL".into(), format!("http://127.0.0.1:{gw}")),
                // The demo shows learning mode: the agent explains its change on the pull request.
                ("CODEXK8S_LEARNING_MODE_DEFAULT".into(), "true".into()),
            ],
            ready_port: cp_http,
        },
        Svc { name: "worker", ports: vec![("http", wk)], env: worker_env, ready_port: wk },
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
        pg.abandon().await;
        return Err(e);
    }

    say("all services are ready:");
    println!("  {:<15} {:<28} health", "service", "listens on");
    let pg_addr = format!("127.0.0.1:{}", pg.port);
    println!("  {:<15} {pg_addr:<28} database {}", "postgres", pg.db_name);
    for s in sims.iter().copied().chain(svcs.iter()) {
        let addrs: Vec<String> = s.ports.iter().map(|(n, p)| format!("{n} 127.0.0.1:{p}")).collect();
        println!("  {:<15} {:<28} http://127.0.0.1:{}/readyz", s.name, addrs.join(", "), s.ready_port);
    }
    println!("  logs: {}", logs.display());

    let relayed = Arc::new(Mutex::new(Vec::new()));
    // On GitHub the relay always runs: it is the only way in when the hook points nowhere, and a
    // safety net for deliveries GitHub failed to make to a public URL.
    if target.real {
        relay::start(&target, gw, &webhook_secret, relayed.clone()).await;
    }

    let check = if args.demo {
        demo::show(&target, &relayed, &model, &state).await
    } else {
        say(format!("--no-demo: label an issue `run:dev` in {full} to start a run"));
        Ok(())
    };
    if let Err(e) = &check {
        say(format!("the demo check failed: {e:#}"));
    }

    let outcome = if let Err(e) = check {
        Err(anyhow::anyhow!("the demo check failed: {e:#}"))
    } else if smoke {
        say("--smoke: every service answered /readyz; stopping");
        Ok(())
    } else {
        say("press Ctrl-C to stop everything");
        wait_for_stop(&mut running, &logs).await
    };

    terminate(&mut running, Duration::from_secs(15)).await;
    pg.close().await?;
    say("stopped cleanly");
    outcome
}

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

async fn wait_for_stop(running: &mut [Running], logs: &Path) -> Result<()> {
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
                        bail!("{} exited unexpectedly ({status}); stopping the rest (see {})", r.name, logs.join(format!("{}.log", r.name)).display());
                    }
                }
            }
        }
    }
}
