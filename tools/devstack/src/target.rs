//! Where the stack points: forge-sim and model-sim on their embedded defaults, or — when real
//! credentials are configured — a GitHub repository and OpenAI (or another Responses API).
//!
//! Settings come from the environment, over an optional `--env-file` (plain `KEY=VALUE` lines,
//! `#` comments on their own line or after an unquoted value, an optional `export `, quotes
//! stripped, no `${VAR}` expansion). Only `CODEXK8S_*`
//! keys are read. Secret values are never printed.

use anyhow::{Context, Result, bail};
use ck8s_domain::forge::{HookSpec, Label, ProviderError, RepoRef, RepositoryProvider};
use ck8s_github::{Github, GithubProvider, GithubSettings};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::Path;

/// `CODEXK8S_*` settings of this invocation.
#[derive(Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// The process environment over the env file, if any.
    pub fn load(env_file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut map = BTreeMap::new();
        if let Some(file) = env_file {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading the env file {}", file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let line = line.strip_prefix("export ").unwrap_or(line);
                let Some((k, v)) = line.split_once('=') else {
                    bail!("{}:{}: expected KEY=VALUE", file.display(), n + 1);
                };
                let v = v.trim();
                let quoted = v.strip_prefix('"').and_then(|x| x.strip_suffix('"'));
                let quoted = quoted.or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')));
                // An unquoted value ends where a ` #` comment starts.
                let v = quoted.unwrap_or_else(|| v.split_once(" #").map(|(x, _)| x.trim_end()).unwrap_or(v));
                map.insert(k.trim().to_string(), v.to_string());
            }
        }
        map.extend(env);
        map.retain(|k, v| k.starts_with("CODEXK8S_") && !v.is_empty());
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every setting, to pass on to the services.
    pub fn all(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone()))
    }
}

/// Which model the agent talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// model-sim, started by devstack, with the local generated key.
    Sim,
    /// A configured endpoint: OpenAI itself when `base_url` is `None`.
    External { base_url: Option<String> },
}

impl Model {
    /// OpenAI when `CODEXK8S_OPENAI_API_KEY` is set, another Responses API endpoint when
    /// `CODEXK8S_MODEL_BASE_URL` is, else model-sim.
    pub fn from(settings: &Settings) -> Self {
        match (settings.get("CODEXK8S_OPENAI_API_KEY"), settings.get("CODEXK8S_MODEL_BASE_URL")) {
            (None, None) => Model::Sim,
            (_, base) => Model::External { base_url: base.map(String::from) },
        }
    }
}

/// A real repository to serve, from `CODEXK8S_FIRST_PROJECT_GITHUB_REPO` and `CODEXK8S_GITHUB_PAT`.
pub struct RealGithub {
    pub repo: RepoRef,
    pub api_url: String,
    pub git_url: String,
    /// Manages the webhook and labels, and opens and labels the demo issue as its user.
    pub pat: SecretString,
    /// Writes comments, pushes and opens pull requests (defaults to the PAT).
    pub bot_token: SecretString,
    /// Where GitHub delivers webhooks; unset, the hook points nowhere and the relay brings them in.
    pub webhook_url: Option<String>,
}

impl RealGithub {
    /// `None` when no repository is configured (the embedded default, forge-sim).
    pub fn from(settings: &Settings) -> Result<Option<Self>> {
        let Some(full) = settings.get("CODEXK8S_FIRST_PROJECT_GITHUB_REPO") else {
            return Ok(None);
        };
        let repo = RepoRef::parse(full)
            .with_context(|| format!("CODEXK8S_FIRST_PROJECT_GITHUB_REPO={full:?} is not owner/name (for example you/scratch)"))?;
        let Some(pat) = settings.get("CODEXK8S_GITHUB_PAT") else {
            bail!(
                "CODEXK8S_FIRST_PROJECT_GITHUB_REPO is set, so CODEXK8S_GITHUB_PAT must be too: a token with repo and webhook rights \
                 on {full} (classic: repo, admin:repo_hook; fine-grained: contents, issues, pull requests and webhooks, read and write)"
            );
        };
        let webhook_url = settings.get("CODEXK8S_GITHUB_WEBHOOK_URL").map(String::from);
        if let Some(u) = &webhook_url
            && !u.starts_with("https://")
            && !u.starts_with("http://")
        {
            bail!(
                "CODEXK8S_GITHUB_WEBHOOK_URL={u:?} is not a URL: give the public https:// address that reaches this gateway, or unset it"
            );
        }
        Ok(Some(Self {
            repo,
            api_url: settings.get("CODEXK8S_GITHUB_API_URL").unwrap_or("https://api.github.com").trim_end_matches('/').to_string(),
            git_url: settings.get("CODEXK8S_GIT_BASE_URL").unwrap_or("https://github.com").trim_end_matches('/').to_string(),
            pat: SecretString::from(pat.to_string()),
            bot_token: SecretString::from(settings.get("CODEXK8S_GIT_BOT_TOKEN").unwrap_or(pat).to_string()),
            webhook_url,
        }))
    }
}

/// The forge the stack serves, ready for the demo.
pub struct Target {
    pub repo: RepoRef,
    pub repo_id: i64,
    pub api_url: String,
    pub git_url: String,
    /// The bot: the platform's token (comments, pushes, pull requests).
    pub bot_login: String,
    pub bot_token: SecretString,
    /// The human who labels the demo issue (the bootstrap owner).
    pub owner_login: String,
    pub owner: GithubProvider,
    pub owner_api: Github,
    pub hook_id: i64,
    /// Whether webhooks reach the gateway only through the relay.
    pub relayed: bool,
    pub real: bool,
}

impl Target {
    /// Says who plays GitHub and who plays the model.
    pub fn announce(&self, model: &Model) {
        crate::say(format!(
            "{} plays GitHub: repository {} (id {}), bot `{}`, owner `{}`",
            if self.real { self.api_url.as_str() } else { "forge-sim" },
            self.repo.full_name(),
            self.repo_id,
            self.bot_login,
            self.owner_login
        ));
        match model {
            Model::Sim => crate::say("model-sim plays the model (scripted turns; set CODEXK8S_OPENAI_API_KEY for OpenAI)"),
            Model::External { base_url: None } => crate::say("the model is OpenAI (CODEXK8S_OPENAI_API_KEY)"),
            Model::External { base_url: Some(u) } => crate::say(format!("the model is the Responses API at {u}")),
        }
    }
}

/// The hook URL used when GitHub cannot reach this machine: a reserved name that never resolves,
/// so every delivery is recorded as failed and the relay forwards it.
pub const UNREACHABLE_HOOK_URL: &str = "https://codex-k8s-devstack.invalid/api/v1/webhooks/github";

/// The events the platform subscribes to (spec deploy §5.2).
pub const HOOK_EVENTS: [&str; 6] =
    ["push", "pull_request", "issues", "issue_comment", "pull_request_review", "pull_request_review_comment"];

pub fn client(api_url: &str, token: &SecretString) -> Result<Github> {
    Github::new(GithubSettings::new(api_url, token.clone())).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn login_of(gh: &Github, what: &str) -> Result<String> {
    let me: serde_json::Value = gh.json(http::Method::GET, "/user", None::<&()>).await.map_err(|e| match e {
        ProviderError::Unauthorized(_) => anyhow::anyhow!("GitHub refused {what} (401): check that it is current and not revoked"),
        e => anyhow::anyhow!("cannot read the user of {what}: {e}"),
    })?;
    me["login"].as_str().map(String::from).with_context(|| format!("GitHub answered /user for {what} without a login"))
}

/// Looks the repository up, ensures the webhook and the labels the demo uses. Read-only on
/// anything else: devstack never pushes to a real repository.
pub async fn prepare_real(gh: &RealGithub, secret: &str) -> Result<Target> {
    let owner_api = client(&gh.api_url, &gh.pat)?;
    let owner = GithubProvider::new(owner_api.clone());
    let owner_login = login_of(&owner_api, "CODEXK8S_GITHUB_PAT").await?;
    let bot_login = login_of(&client(&gh.api_url, &gh.bot_token)?, "CODEXK8S_GIT_BOT_TOKEN").await?;
    let full = gh.repo.full_name();
    let repository = owner.repository(&gh.repo).await.map_err(|e| match e {
        ProviderError::NotFound(_) => {
            anyhow::anyhow!("{full} was not found with CODEXK8S_GITHUB_PAT: check the name and that the token can see it")
        }
        e => anyhow::anyhow!("cannot read {full}: {e}"),
    })?;
    let url = gh.webhook_url.clone().unwrap_or_else(|| UNREACHABLE_HOOK_URL.to_string());
    let spec = HookSpec { url, secret: secret.to_string(), events: HOOK_EVENTS.iter().map(|e| e.to_string()).collect() };
    let hook = owner.ensure_webhook(&gh.repo, &spec).await.map_err(|e| match e {
        ProviderError::NotFound(_) | ProviderError::Forbidden(_) => anyhow::anyhow!(
            "CODEXK8S_GITHUB_PAT cannot manage the webhooks of {full}: it needs admin rights there and the admin:repo_hook scope \
             (fine-grained: Webhooks read and write). GitHub said: {e}"
        ),
        e => anyhow::anyhow!("cannot set up the webhook of {full}: {e}"),
    })?;
    for (name, description) in [
        ("run:dev", "codex-k8s: an agent implements the issue"),
        ("run:dev:revise", "codex-k8s: the agent revises its pull request"),
        ("state:in-review", "codex-k8s: waiting for a human review"),
    ] {
        let label = Label { name: name.into(), color: "1f6feb".into(), description: Some(description.into()) };
        owner.ensure_label(&gh.repo, &label).await.map_err(|e| anyhow::anyhow!("cannot create the label {name} on {full}: {e}"))?;
    }
    Ok(Target {
        repo: gh.repo.clone(),
        repo_id: repository.id,
        api_url: gh.api_url.clone(),
        git_url: gh.git_url.clone(),
        bot_login,
        bot_token: gh.bot_token.clone(),
        owner_login,
        owner,
        owner_api,
        hook_id: hook.id,
        relayed: gh.webhook_url.is_none(),
        real: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::load(None, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap_or_default()
    }

    #[test]
    fn env_files_are_read_under_the_environment_and_only_codexk8s_keys_count() {
        let dir = std::env::temp_dir().join(format!("devstack-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("real.env");
        std::fs::write(
            &file,
            "# comment\nexport CODEXK8S_FIRST_PROJECT_GITHUB_REPO=\"you/scratch\"\nCODEXK8S_GITHUB_PAT='from-file'\nOTHER=x\nCODEXK8S_EMPTY=\n\
             CODEXK8S_OPENAI_API_KEY=sk-1   # unset: model-sim\nCODEXK8S_GIT_BOT_MAIL=\"bot #1 <b@x>\"\n",
        )
        .unwrap_or_default();
        let s = Settings::load(Some(&file), [("CODEXK8S_GITHUB_PAT".to_string(), "from-env".to_string())]).ok();
        let s = s.unwrap_or_default();
        assert_eq!(s.get("CODEXK8S_FIRST_PROJECT_GITHUB_REPO"), Some("you/scratch"));
        assert_eq!(s.get("CODEXK8S_GITHUB_PAT"), Some("from-env"));
        assert_eq!((s.get("OTHER"), s.get("CODEXK8S_EMPTY")), (None, None));
        assert_eq!((s.get("CODEXK8S_OPENAI_API_KEY"), s.get("CODEXK8S_GIT_BOT_MAIL")), (Some("sk-1"), Some("bot #1 <b@x>")));
        std::fs::write(&file, "CODEXK8S_GITHUB_PAT\n").unwrap_or_default();
        let err = Settings::load(Some(&file), []).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("real.env:1: expected KEY=VALUE"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn real_github_needs_a_repository_and_a_token_and_defaults_to_github_com() {
        assert!(RealGithub::from(&settings(&[])).ok().flatten().is_none(), "no repository: forge-sim");
        let err = RealGithub::from(&settings(&[("CODEXK8S_FIRST_PROJECT_GITHUB_REPO", "you/scratch")])).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("CODEXK8S_GITHUB_PAT must be too"));
        let err = RealGithub::from(&settings(&[("CODEXK8S_FIRST_PROJECT_GITHUB_REPO", "scratch"), ("CODEXK8S_GITHUB_PAT", "p")]));
        assert!(err.err().map(|e| e.to_string()).unwrap_or_default().contains("is not owner/name"));
        let bad_url = settings(&[
            ("CODEXK8S_FIRST_PROJECT_GITHUB_REPO", "you/scratch"),
            ("CODEXK8S_GITHUB_PAT", "p"),
            ("CODEXK8S_GITHUB_WEBHOOK_URL", "tunnel.example"),
        ]);
        assert!(RealGithub::from(&bad_url).err().map(|e| e.to_string()).unwrap_or_default().contains("is not a URL"));
        let ok = RealGithub::from(&settings(&[("CODEXK8S_FIRST_PROJECT_GITHUB_REPO", "you/scratch"), ("CODEXK8S_GITHUB_PAT", "p")]));
        let gh = ok.ok().flatten();
        assert_eq!(gh.as_ref().map(|g| (g.api_url.as_str(), g.git_url.as_str())), Some(("https://api.github.com", "https://github.com")));
        assert_eq!(gh.as_ref().map(|g| (g.repo.full_name(), g.webhook_url.is_none())), Some(("you/scratch".to_string(), true)));
    }

    #[test]
    fn the_model_is_model_sim_unless_a_key_or_an_endpoint_is_configured() {
        assert_eq!(Model::from(&settings(&[])), Model::Sim);
        assert_eq!(Model::from(&settings(&[("CODEXK8S_OPENAI_API_KEY", "k")])), Model::External { base_url: None });
        assert_eq!(
            Model::from(&settings(&[("CODEXK8S_MODEL_BASE_URL", "http://127.0.0.1:1/v1")])),
            Model::External { base_url: Some("http://127.0.0.1:1/v1".into()) }
        );
    }
}
