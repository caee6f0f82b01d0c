//! The shape of the local stack: where its files are, which services run (forge-sim and model-sim
//! only on the embedded defaults), the ports they listen on, the environment each gets, and the
//! order they start in. Nothing here starts anything; `supervisor` does.

use crate::postgres::Postgres;
use crate::say;
use crate::seed::DEMO_OWNER_EMAIL;
use crate::target::{Settings, Target};
use anyhow::{Context, Result, bail};
use ck8s_testkit::process::free_ports;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Runs in real containers: the worker on the Kubernetes runtime, placing each run's Job on the
/// test cluster's real node from agent-runner's image (`scripts/dev.sh --kubernetes` prepares both).
pub struct Kubernetes {
    pub kubeconfig: PathBuf,
    pub image: String,
}

/// One service devstack starts: its binary's name, the address and ports it listens on, the
/// environment it gets on top of the common one, and the port whose `/readyz` says it is ready.
pub struct Svc {
    pub name: &'static str,
    pub host: IpAddr,
    pub ports: Vec<(&'static str, u16)>,
    pub env: Vec<(String, String)>,
    pub ready_port: u16,
}

/// Where devstack finds what it runs and keeps what it writes.
pub struct Dirs {
    /// The repository (scripts/pg.sh, services.yaml, the Codex CLI).
    pub root: PathBuf,
    /// The service binaries: the directory of this executable (`cargo build --bins` puts them there).
    pub bin: PathBuf,
    /// Logs, run directories and generated secrets (`CODEXK8S_DEVSTACK_DIR` keeps a second stack apart).
    pub state: PathBuf,
    /// One `<service>.log` per service.
    pub logs: PathBuf,
}

impl Dirs {
    /// Finds the repository from the working directory and creates the log directory.
    pub fn locate(settings: &Settings) -> Result<Self> {
        let root = repo_root()?;
        let bin = std::env::current_exe()?.parent().map(Path::to_path_buf).context("locating binaries")?;
        let state = settings.get("CODEXK8S_DEVSTACK_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".cache/devstack"));
        let logs = state.join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Self { root, bin, state, logs })
    }
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

/// Which services run and on which ports.
pub struct Topology {
    /// forge-sim plays GitHub (no real repository is configured).
    pub forge_sim: bool,
    /// model-sim plays the model (no real model is configured).
    pub model_sim: bool,
    pub gateway: u16,
    /// The gateway's admin port (metrics, detailed readiness).
    pub gateway_admin: u16,
    pub cp_http: u16,
    pub cp_grpc: u16,
    pub worker: u16,
    pub forge: u16,
    pub model: u16,
    /// Where the services a run reaches listen (forge-sim, model-sim, control-plane): loopback,
    /// or the real node's gateway when runs are pods.
    pub host: IpAddr,
    pub kubernetes: Option<Kubernetes>,
}

impl Topology {
    /// The fixed ports of the README, or free ones for `--smoke` (chosen together, so no two
    /// services get the same one).
    pub fn new(forge_sim: bool, model_sim: bool, smoke: bool, kubernetes: Option<(IpAddr, Kubernetes)>) -> Self {
        let [gateway, cp_http, cp_grpc, worker, forge, model, gateway_admin] =
            if smoke { free_ports() } else { [8080, 8081, 9090, 8082, 8090, 8091, 8089] };
        let (host, kubernetes) = match kubernetes {
            Some((host, k)) => (host, Some(k)),
            None => (LOOPBACK, None),
        };
        Self { forge_sim, model_sim, gateway, gateway_admin, cp_http, cp_grpc, worker, forge, model, host, kubernetes }
    }

    /// forge-sim's address.
    pub fn forge_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.forge)
    }

    /// Fails, saying how to build them, when a binary this stack needs is not beside devstack.
    pub fn check_binaries(&self, bin_dir: &Path) -> Result<()> {
        let mut needed = vec!["control-plane", "worker", "api-gateway", "agent-runner"];
        if self.forge_sim {
            needed.push("forge-sim");
        }
        if self.model_sim {
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
        Ok(())
    }

    /// Fails, naming the service, when one of the ports is taken.
    pub fn check_ports(&self) -> Result<()> {
        let mut ports = vec![
            ("api-gateway", self.gateway),
            ("api-gateway admin", self.gateway_admin),
            ("control-plane http", self.cp_http),
            ("control-plane grpc", self.cp_grpc),
            ("worker", self.worker),
        ];
        if self.forge_sim {
            ports.push(("forge-sim", self.forge));
        }
        if self.model_sim {
            ports.push(("model-sim", self.model));
        }
        for (name, p) in ports {
            if !port_free(p) {
                bail!("port {p} for {name} is in use: stop what holds it (perhaps another devstack) and try again");
            }
        }
        Ok(())
    }

    /// The simulators that run, in start order: model-sim, then forge-sim.
    pub fn sims(&self, env: &Env) -> Vec<Svc> {
        let mut sims = Vec::new();
        if self.model_sim {
            sims.push(Svc {
                name: "model-sim",
                host: self.host,
                ports: vec![("http", self.model)],
                env: vec![
                    ("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), SocketAddr::new(self.host, self.model).to_string()),
                    ("CODEXK8S_MODEL_SIM_API_KEY".into(), env.model_key.clone()),
                ],
                ready_port: self.model,
            });
        }
        if self.forge_sim {
            sims.push(Svc {
                name: "forge-sim",
                host: self.host,
                ports: vec![("http", self.forge)],
                env: vec![("CODEXK8S_FORGE_SIM_HTTP_ADDR".into(), self.forge_addr().to_string())],
                ready_port: self.forge,
            });
        }
        sims
    }

    /// The platform, in start order: control-plane, worker, api-gateway.
    pub fn platform(&self, target: &Target, settings: &Settings, env: &Env, dirs: &Dirs) -> Vec<Svc> {
        vec![
            self.control_plane(target, settings, dirs),
            Svc {
                name: "worker",
                host: LOOPBACK,
                ports: vec![("http", self.worker)],
                env: self.worker_env(target, settings, env, dirs),
                ready_port: self.worker,
            },
            Svc {
                name: "api-gateway",
                host: LOOPBACK,
                ports: vec![("http", self.gateway), ("admin", self.gateway_admin)],
                env: vec![
                    ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{}", self.gateway)),
                    ("CODEXK8S_ADMIN_ADDR".into(), format!("127.0.0.1:{}", self.gateway_admin)),
                    ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), self.cp_grpc_url()),
                ],
                ready_port: self.gateway,
            },
        ]
    }

    fn control_plane(&self, target: &Target, settings: &Settings, dirs: &Dirs) -> Svc {
        let (cp_http, cp_grpc) = (self.cp_http, self.cp_grpc);
        Svc {
            name: "control-plane",
            host: self.host,
            ports: vec![("http", cp_http), ("grpc", cp_grpc)],
            env: vec![
                ("CODEXK8S_HTTP_ADDR".into(), SocketAddr::new(self.host, cp_http).to_string()),
                ("CODEXK8S_GRPC_ADDR".into(), SocketAddr::new(self.host, cp_grpc).to_string()),
                ("CODEXK8S_SERVICES_CONFIG_PATH".into(), dirs.root.join("services.yaml").display().to_string()),
                (
                    "CODEXK8S_BOOTSTRAP_OWNER_EMAIL".into(),
                    settings.get("CODEXK8S_BOOTSTRAP_OWNER_EMAIL").unwrap_or(DEMO_OWNER_EMAIL).to_string(),
                ),
                ("CODEXK8S_BOOTSTRAP_OWNER_GITHUB_LOGIN".into(), target.owner_login.clone()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_SLUG".into(), "demo".into()),
                ("CODEXK8S_BOOTSTRAP_PROJECT_NAME".into(), "Demo project".into()),
                ("CODEXK8S_BOOTSTRAP_REPOSITORIES".into(), format!("{}={}", target.repo.full_name(), target.repo_id)),
                // The platform writes comments and labels as the bot.
                ("CODEXK8S_GITHUB_PAT".into(), target.bot_token.expose_secret().to_string()),
                // Pull requests a run names must be the bot's.
                ("CODEXK8S_GIT_BOT_USERNAME".into(), target.bot_login.clone()),
                ("CODEXK8S_GITHUB_API_URL".into(), target.api_url.clone()),
                ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL".into(), "500ms".into()),
                // Status comments link to the run page and the next-step dialog of the console.
                ("CODEXK8S_CONSOLE_URL".into(), format!("http://127.0.0.1:{}", self.gateway)),
                // The demo shows learning mode: the agent explains its change on the pull request.
                ("CODEXK8S_LEARNING_MODE_DEFAULT".into(), "true".into()),
            ],
            ready_port: cp_http,
        }
    }

    /// control-plane's gRPC endpoint, as the gateway, the worker and the runs reach it.
    fn cp_grpc_url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.host, self.cp_grpc))
    }

    fn worker_env(&self, target: &Target, settings: &Settings, env: &Env, dirs: &Dirs) -> Vec<(String, String)> {
        let bot_mail = settings.get("CODEXK8S_GIT_BOT_MAIL").map(String::from).unwrap_or_else(|| {
            if target.real {
                format!("{}@users.noreply.github.com", target.bot_login)
            } else {
                format!("{}@codex-k8s.local", target.bot_login)
            }
        });
        let mut worker_env: Vec<(String, String)> = vec![
            ("CODEXK8S_HTTP_ADDR".into(), format!("127.0.0.1:{}", self.worker)),
            ("CODEXK8S_WORKER_ID".into(), "devstack-worker-1".into()),
            ("CODEXK8S_WORKER_POLL_INTERVAL".into(), "1s".into()),
            // Each run executes the agent runner as a local process, with the real Codex CLI.
            ("CODEXK8S_WORKER_JOB_COMMAND".into(), dirs.bin.join("agent-runner").display().to_string()),
            ("CODEXK8S_GITHUB_API_URL".into(), target.api_url.clone()),
            ("CODEXK8S_GIT_BASE_URL".into(), target.git_url.clone()),
            ("CODEXK8S_CODEX_BIN".into(), codex_bin(&dirs.root)),
            ("CODEXK8S_GIT_BOT_TOKEN".into(), target.bot_token.expose_secret().to_string()),
            ("CODEXK8S_GIT_BOT_MAIL".into(), bot_mail),
            ("CODEXK8S_OPENAI_API_KEY".into(), env.model_key.clone()),
            ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR".into(), dirs.state.join("runs").display().to_string()),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".into(), self.cp_grpc_url()),
            ("CODEXK8S_GIT_BOT_USERNAME".into(), target.bot_login.clone()),
        ];
        if self.model_sim {
            worker_env.push(("CODEXK8S_MODEL_BASE_URL".into(), format!("http://{}/v1", SocketAddr::new(self.host, self.model))));
        }
        if let Some(k) = &self.kubernetes {
            // Each run is a Job on the real node, from agent-runner's image (its Codex CLI).
            ck8s_testkit::cluster::worker_on_real_node(&mut worker_env, &k.image, "codex-devstack");
        }
        worker_env
    }
}

/// Whether nothing listens on `port`, on loopback or on every address.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// The environment every service gets, and the two secrets devstack itself uses.
pub struct Env {
    /// Generated local secrets, then the operator's settings over them, then the database.
    pub common: Vec<(String, String)>,
    pub webhook_secret: String,
    pub model_key: String,
}

impl Env {
    pub fn build(state: &Path, settings: &Settings, pg: &Postgres) -> Result<Self> {
        let mut merged: BTreeMap<String, String> = local_secrets(state)?;
        merged.extend(settings.all());
        merged.extend(pg.env());
        let webhook_secret = merged.get("CODEXK8S_GITHUB_WEBHOOK_SECRET").cloned().unwrap_or_default();
        let model_key = merged.get("CODEXK8S_OPENAI_API_KEY").cloned().unwrap_or_default();
        Ok(Self { common: merged.into_iter().collect(), webhook_secret, model_key })
    }
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

/// Prints the table of what listens where, once everything is ready.
pub fn print_listening(pg: &Postgres, services: &[&Svc], logs: &Path) {
    say("all services are ready:");
    println!("  {:<15} {:<28} health", "service", "listens on");
    let pg_addr = format!("127.0.0.1:{}", pg.port);
    println!("  {:<15} {pg_addr:<28} database {}", "postgres", pg.db_name);
    for s in services {
        let addrs: Vec<String> = s.ports.iter().map(|(n, p)| format!("{n} {}", SocketAddr::new(s.host, *p))).collect();
        println!("  {:<15} {:<28} http://{}/readyz", s.name, addrs.join(", "), SocketAddr::new(s.host, s.ready_port));
    }
    println!("  logs: {}", logs.display());
}

/// The Codex CLI the runs use: `CODEXK8S_CODEX_BIN` (dev.sh exports it), else the one
/// `scripts/codex.sh` installs where the agent's own user can run it (it prints the path, and
/// installs the pinned CLI first if it is not there yet), else the repository's own `tools/codex`.
fn codex_bin(root: &Path) -> String {
    if let Some(bin) = std::env::var("CODEXK8S_CODEX_BIN").ok().filter(|b| !b.is_empty()) {
        return bin;
    }
    let installed = std::process::Command::new(root.join("scripts/codex.sh"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty());
    installed.unwrap_or_else(|| root.join("tools/codex/node_modules/.bin/codex").display().to_string())
}
