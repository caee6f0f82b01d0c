//! The demo on forge-sim: seeds the demo bot (owner of the repository, whose token the platform
//! uses), the demo owner (a human who administers it), the repository `demo/hello-codex` with a
//! webhook to the gateway, and its first commit (a README and the prompt templates); writes the
//! two tokens to `<state>/forge-tokens.env` (0600) for trying things by hand; and describes the
//! result as the [`Target`] the demo watches.

use crate::target::{self, Target};
use anyhow::{Context, Result, bail};
use ck8s_testkit::process::http_request;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

pub const DEMO_OWNER_EMAIL: &str = "owner@codex-k8s.local";
const DEMO_OWNER_LOGIN: &str = "demo-owner";
const DEMO_BOT: &str = "demo";
const DEMO_REPO: &str = "demo/hello-codex";

/// What devstack created on forge-sim.
struct Seed {
    repo_id: i64,
    hook_id: i64,
    bot_token: String,
    owner_token: String,
}

/// Seeds forge-sim at `fs` for a gateway on port `gw` of loopback, and returns the demo repository.
pub async fn forge_sim(fs: SocketAddr, gw: u16, webhook_secret: &str, state: &Path) -> Result<Target> {
    let seed = seed_forge(fs, gw, webhook_secret, state)?;
    seed_readme(fs, &seed.bot_token, state).await?;
    let tokens = state.join("forge-tokens.env");
    std::fs::write(
        &tokens,
        format!("FORGE_SIM_URL=http://{fs}\nDEMO_BOT_TOKEN={}\nDEMO_OWNER_TOKEN={}\n", seed.bot_token, seed.owner_token),
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
    }
    sim_target(fs, seed)
}

/// One JSON request to forge-sim: status and decoded body.
fn forge_json(
    fs: SocketAddr,
    state: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    let addr = fs;
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, answer) = http_request(addr, method, path, &headers, Some(body.to_string().as_bytes()));
    if status == 0 {
        bail!("forge-sim at {addr} did not answer {method} {path}; see {}", state.join("logs/forge-sim.log").display());
    }
    Ok((status, serde_json::from_str(answer.trim()).unwrap_or(serde_json::Value::Null)))
}

/// Creates the demo bot (owner of the repository, whose token the platform uses), the demo owner
/// (a human), and the repository with a webhook to the gateway.
fn seed_forge(fs: SocketAddr, gw: u16, webhook_secret: &str, state: &Path) -> Result<Seed> {
    let mut tokens = Vec::new();
    for (login, kind) in [(DEMO_BOT, "Bot"), (DEMO_OWNER_LOGIN, "User")] {
        let user = serde_json::json!({"login": login, "email": format!("{login}@codex-k8s.local"), "kind": kind});
        let (s, v) = forge_json(fs, state, "POST", "/_sim/users", None, user)?;
        if s != 201 {
            bail!("forge-sim refused the user {login}: {s} {v}");
        }
        tokens.push(v["token"].as_str().unwrap_or_default().to_string());
    }
    let (bot_token, owner_token) = (tokens[0].clone(), tokens[1].clone());
    let name = DEMO_REPO.split('/').nth(1).unwrap_or("hello-codex");
    let (s, repo) = forge_json(fs, state, "POST", "/_sim/repos", Some(&bot_token), serde_json::json!({"name": name}))?;
    if s != 201 {
        bail!("forge-sim refused the repository: {s} {repo}");
    }
    // The owner administers the repository too (on GitHub, the person who set the platform up).
    let admin = serde_json::json!({"login": DEMO_OWNER_LOGIN, "permission": "admin"});
    let (s, v) = forge_json(fs, state, "POST", &format!("/_sim/repos/{DEMO_REPO}/collaborators"), Some(&bot_token), admin)?;
    if s != 204 && s != 201 && s != 200 {
        bail!("forge-sim refused the owner as a collaborator: {s} {v}");
    }
    let hook = serde_json::json!({
        "config": {"url": format!("http://127.0.0.1:{gw}/api/v1/webhooks/github"), "secret": webhook_secret, "content_type": "json"},
        "events": target::HOOK_EVENTS,
    });
    let (s, v) = forge_json(fs, state, "POST", &format!("/repos/{DEMO_REPO}/hooks"), Some(&bot_token), hook)?;
    if s != 201 {
        bail!("forge-sim refused the webhook: {s} {v}");
    }
    Ok(Seed { repo_id: repo["id"].as_i64().unwrap_or(0), hook_id: v["id"].as_i64().unwrap_or(0), bot_token, owner_token })
}

/// The demo repository on forge-sim, watched through the GitHub adapter like GitHub itself.
fn sim_target(fs: SocketAddr, seed: Seed) -> Result<Target> {
    let api_url = format!("http://{fs}");
    let owner_api = target::client(&api_url, &SecretString::from(seed.owner_token))?;
    Ok(Target {
        repo: ck8s_domain::forge::RepoRef::new(DEMO_REPO.split('/').next().unwrap_or("demo"), DEMO_REPO.split('/').nth(1).unwrap_or("")),
        repo_id: seed.repo_id,
        git_url: format!("{api_url}/git"),
        api_url,
        bot_login: DEMO_BOT.into(),
        bot_token: SecretString::from(seed.bot_token),
        owner_login: DEMO_OWNER_LOGIN.into(),
        owner: ck8s_github::GithubProvider::new(owner_api.clone()),
        owner_api,
        hook_id: seed.hook_id,
        relayed: false,
        real: false,
    })
}

/// Pushes the demo repository's first commit (a README) to forge-sim as the bot, so runs branch
/// from `main` as they would on GitHub.
async fn seed_readme(fs: SocketAddr, bot_token: &str, state: &Path) -> Result<()> {
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
    let url = format!("http://{fs}/git/{DEMO_REPO}.git");
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
