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
//!
//! This file only wires the pieces together, in order: `target` (settings, and where the stack
//! points), `topology` (which services run, their ports and environment), `postgres` (the server
//! and the database), `supervisor` (the child processes), `seed` (the demo on forge-sim),
//! `relay` (GitHub's deliveries) and `demo` (the main job, shown).

mod demo;
mod postgres;
mod relay;
mod seed;
mod supervisor;
mod target;
mod topology;

use anyhow::{Context, Result, bail};
use postgres::Postgres;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use supervisor::Supervisor;
use target::{Model, RealGithub, Settings, Target};
use topology::{Dirs, Env, Svc, Topology};

/// Prints one line of progress, `devstack: …`, at once.
pub(crate) fn say(msg: impl AsRef<str>) {
    println!("devstack: {}", msg.as_ref());
    let _ = std::io::stdout().flush();
}

const USAGE: &str = "usage: devstack [--smoke] [--no-demo] [--kubernetes] [--env-file PATH]
  --smoke           free ports, a throw-away database; show the main job once and stop (the tests run this)
  --kubernetes      run each agent run as a Job in real containers on the test cluster's real node
                    (root; scripts/dev.sh --kubernetes builds agent-runner's image and starts the node)
  --no-demo         start the stack without opening and labelling the demo issue
  --env-file PATH   CODEXK8S_* settings as KEY=VALUE lines (the environment wins over the file)
Real credentials instead of forge-sim and model-sim (see README, \"With real credentials\"):
  CODEXK8S_FIRST_PROJECT_GITHUB_REPO=you/scratch CODEXK8S_GITHUB_PAT=…   GitHub
  CODEXK8S_OPENAI_API_KEY=…                                              OpenAI";

struct Args {
    smoke: bool,
    kubernetes: bool,
    demo: bool,
    env_file: Option<PathBuf>,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut out = Args { smoke: false, kubernetes: false, demo: true, env_file: None };
    let mut args = args;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => out.smoke = true,
            "--kubernetes" => out.kubernetes = true,
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
    let settings = Settings::load(args.env_file.as_deref(), std::env::vars())?;
    let real_github = RealGithub::from(&settings)?;
    let model = Model::from(&settings);
    let dirs = Dirs::locate(&settings)?;
    if args.kubernetes && (real_github.is_some() || model != Model::Sim) {
        // The node's pods reach the host's bridge address and nothing beyond it.
        bail!("--kubernetes runs the demo with forge-sim and model-sim only: the test cluster's pods have no route to GitHub or OpenAI");
    }
    let kubernetes = if args.kubernetes { Some(real_node()?) } else { None };
    let topology = Topology::new(real_github.is_none(), model == Model::Sim, args.smoke, kubernetes);
    topology.check_binaries(&dirs.bin)?;
    let pg = Postgres::start(&dirs.root, args.smoke).await?;
    topology.check_ports()?;
    let env = Env::build(&dirs.state, &settings, &pg)?;

    let mut sup = Supervisor::new(&dirs);
    let sims = topology.sims(&env);
    let target = match prepare(&mut sup, &sims, &topology, &env, real_github.as_ref(), &dirs).await {
        Ok(t) => t,
        Err(e) => {
            sup.terminate(Duration::from_secs(5));
            return Err(e.context(if real_github.is_some() { "setting up the GitHub repository" } else { "setting up forge-sim" }));
        }
    };
    target.announce(&model);
    pg.migrate(&dirs.bin, &env.common).await?;
    let platform = topology.platform(&target, &settings, &env, &dirs);
    if let Err(e) = sup.start_all(&platform, &env.common, Duration::from_secs(60)) {
        sup.terminate(Duration::from_secs(15));
        pg.abandon().await;
        return Err(e);
    }
    topology::print_listening(&pg, &sims.iter().chain(&platform).collect::<Vec<_>>(), &dirs.logs);

    let relayed = Arc::new(Mutex::new(Vec::new()));
    // On GitHub the relay always runs: it is the only way in when the hook points nowhere, and a
    // safety net for deliveries GitHub failed to make to a public URL.
    if target.real {
        relay::start(&target, topology.gateway, &env.webhook_secret, relayed.clone()).await;
    }
    let kubeconfig = topology.kubernetes.as_ref().map(|k| k.kubeconfig.as_path());
    let outcome = run(&args, &target, &relayed, &model, &dirs, kubeconfig, &mut sup).await;
    sup.terminate(Duration::from_secs(15));
    pg.close().await?;
    say("stopped cleanly");
    outcome
}

/// The test cluster with its real node (started if needed) and agent-runner's image imported
/// there: where the runs go with `--kubernetes`.
fn real_node() -> Result<(std::net::IpAddr, topology::Kubernetes)> {
    use ck8s_testkit::cluster;
    say("--kubernetes: starting the test cluster's real node (if needed) and importing agent-runner's image");
    let found = std::panic::catch_unwind(|| {
        let kubeconfig = cluster::real_node().clone();
        (kubeconfig, cluster::real_node_gateway().to_string(), cluster::agent_runner_image().to_string())
    });
    let Ok((kubeconfig, gateway, image)) = found else {
        bail!("the real node or agent-runner's image is not ready (reason above); scripts/dev.sh --kubernetes prepares both, as root")
    };
    let host = gateway.parse().with_context(|| format!("the node's gateway {gateway:?} is not an address"))?;
    say(format!(
        "--kubernetes: runs are Jobs on the real node {} from {image}; forge-sim, model-sim and control-plane listen on {host}",
        cluster::REAL_NODE
    ));
    Ok((host, topology::Kubernetes { kubeconfig, image }))
}

/// Starts the simulators, then readies the repository: the configured GitHub one, or the demo
/// seeded on forge-sim.
async fn prepare(
    sup: &mut Supervisor,
    sims: &[Svc],
    topology: &Topology,
    env: &Env,
    real_github: Option<&RealGithub>,
    dirs: &Dirs,
) -> Result<Target> {
    for s in sims {
        sup.start(s, &env.common, Duration::from_secs(30))?;
    }
    match real_github {
        Some(gh) => {
            say(format!("real GitHub: preparing {} at {} (webhook and labels)", gh.repo.full_name(), gh.api_url));
            target::prepare_real(gh, &env.webhook_secret).await
        }
        None => seed::forge_sim(topology.forge_addr(), topology.gateway, &env.webhook_secret, &dirs.state).await,
    }
}

/// Shows the main job (unless `--no-demo`), then returns at once for `--smoke` or when Ctrl-C,
/// SIGTERM or a service's exit says to stop.
async fn run(
    args: &Args,
    target: &Target,
    relayed: &Arc<Mutex<Vec<relay::Forwarded>>>,
    model: &Model,
    dirs: &Dirs,
    kubeconfig: Option<&std::path::Path>,
    sup: &mut Supervisor,
) -> Result<()> {
    let check = if args.demo {
        demo::show(target, relayed, model, &dirs.state, kubeconfig).await
    } else {
        say(format!("--no-demo: label an issue `run:dev` in {} to start a run", target.repo.full_name()));
        Ok(())
    };
    if let Err(e) = check {
        say(format!("the demo check failed: {e:#}"));
        return Err(anyhow::anyhow!("the demo check failed: {e:#}"));
    }
    if args.smoke {
        say("--smoke: every service answered /readyz; stopping");
        return Ok(());
    }
    say("press Ctrl-C to stop everything");
    sup.wait_for_stop().await
}
