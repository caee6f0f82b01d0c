//! Typed configuration of control-plane.

use crate::bootstrap::{BootstrapConfig, parse_members, parse_repositories};
use crate::ingest::{BatchSettings, IngestSettings};
use ck8s_config::{ConfigError, Layers, Reader};
use ck8s_domain::labels::LabelCatalog;
use ck8s_domain::policy::{PolicyConfig, RuntimeMode, RuntimePolicy};
use ck8s_store::DbConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything control-plane reads at start.
pub struct Config {
    pub db: DbConfig,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Seals tokens at rest; built at start so a bad key fails before anything is served.
    pub sealer: ck8s_crypto::Sealer,
    /// Bearer token every caller of the internal gRPC API must send.
    pub internal_api_token: secrecy::SecretString,
    pub migrate_on_start: bool,
    pub shutdown_timeout: Duration,
    pub ingest: IngestSettings,
    /// Group commit of deliveries.
    pub ingest_batching: BatchSettings,
    pub bootstrap: BootstrapConfig,
    /// GitHub REST API root (api.github.com, GitHub Enterprise, or forge-sim locally).
    pub github_api_url: String,
    /// Whether this instance carries out owed GitHub side effects.
    pub side_effects: bool,
    pub side_effects_interval: Duration,
    /// The staff console's public address, for links in status comments.
    pub console_url: Option<String>,
}

/// Setting names that rename labels, with no prefix.
fn label_settings() -> Vec<String> {
    ck8s_domain::labels::setting_names()
}

fn list(r: &mut Reader<'_>, key: &str) -> Vec<String> {
    r.opt_string(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default()
}

fn runtime_policy(r: &mut Reader<'_>) -> RuntimePolicy {
    let explicit = r.opt_string("SERVICES_CONFIG_PATH");
    let path = PathBuf::from(explicit.clone().unwrap_or_else(|| "services.yaml".into()));
    if !path.exists() && explicit.is_none() {
        // No policy file: every trigger is full-env (product spec §2.1).
        return RuntimePolicy::default();
    }
    match ck8s_stack::load_file(&path) {
        Ok(stack) => {
            let convert = |m: ck8s_stack::RuntimeMode| match m {
                ck8s_stack::RuntimeMode::FullEnv => RuntimeMode::FullEnv,
                ck8s_stack::RuntimeMode::CodeOnly => RuntimeMode::CodeOnly,
            };
            match &stack.spec.webhook_runtime {
                Some(w) => RuntimePolicy {
                    default_mode: convert(w.default_mode),
                    // The loader already refused unknown kinds.
                    trigger_modes: w
                        .trigger_modes
                        .iter()
                        .filter_map(|(k, v)| ck8s_domain::stage::TriggerKind::parse(k).ok().map(|k| (k, convert(*v))))
                        .collect(),
                },
                None => RuntimePolicy::default(),
            }
        }
        Err(e) => {
            r.issue("SERVICES_CONFIG_PATH", format!("cannot load the runtime policy: {e}"));
            RuntimePolicy::default()
        }
    }
}

/// Reads the bounds of ingest batches; a window of `0` (the default) takes only what is queued.
fn batching(r: &mut Reader<'_>) -> BatchSettings {
    let d = BatchSettings::default();
    let max_size = r.parse("INGEST_BATCH_MAX_SIZE", d.max_size, "a number of deliveries from 1 to 1000");
    if !(1..=1000).contains(&max_size) {
        r.issue("INGEST_BATCH_MAX_SIZE", "must be from 1 to 1000");
    }
    let concurrency = r.parse("INGEST_BATCH_CONCURRENCY", d.concurrency, "a number of batches from 1 to 64");
    if !(1..=64).contains(&concurrency) {
        r.issue(
            "INGEST_BATCH_CONCURRENCY",
            "must be from 1 to 64 (each batch in flight holds one of the CODEXK8S_DB_MAX_CONNECTIONS connections)",
        );
    }
    let window_ms: u64 = r.parse("INGEST_BATCH_WINDOW_MS", d.window.as_millis() as u64, "milliseconds from 0 to 100");
    if window_ms > 100 {
        r.issue("INGEST_BATCH_WINDOW_MS", "must be from 0 to 100: a longer window only delays deliveries");
    }
    BatchSettings { max_size, window: Duration::from_millis(window_ms), concurrency }
}

/// Reads `CODEXK8S_INTERNAL_API_TOKEN`: at least 32 printable characters.
pub fn internal_token(r: &mut Reader<'_>) -> secrecy::SecretString {
    use secrecy::ExposeSecret;
    let t = r.required_secret("INTERNAL_API_TOKEN", "shared by the platform's services; generate one with `openssl rand -hex 32`");
    let v = t.expose_secret();
    if !v.is_empty() && (v.len() < 32 || !v.bytes().all(|b| b.is_ascii_graphic())) {
        r.issue("INTERNAL_API_TOKEN", "must be at least 32 printable ASCII characters without spaces");
    }
    t
}

impl Config {
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let sealer = ck8s_service::sealing::read_sealer(&mut r, layers, "64 hex characters; generate one with `openssl rand -hex 32`");

        let mut overrides = BTreeMap::new();
        for k in label_settings() {
            if let Some(v) = r.opt_string(&k) {
                overrides.insert(k, v);
            }
        }
        let labels = LabelCatalog::with_overrides(&overrides);
        let locale = ck8s_domain::comments::Locale::parse(&r.string("AGENT_DEFAULT_LOCALE", "ru"));
        let learning_mode_default = r.bool("LEARNING_MODE_DEFAULT", false);
        let ingest = IngestSettings {
            policy: PolicyConfig {
                labels,
                bot_login: r.string("GIT_BOT_USERNAME", "codex-bot"),
                runtime: runtime_policy(&mut r),
                platform_namespace: r.string("PRODUCTION_NAMESPACE", "codex-k8s-prod"),
            },
            learning_mode_default,
            locale,
        };

        let repositories = r.opt_string("BOOTSTRAP_REPOSITORIES").map(|v| parse_repositories(&v)).transpose().unwrap_or_else(|e| {
            r.issue("BOOTSTRAP_REPOSITORIES", e.to_string());
            None
        });
        let members = r.opt_string("BOOTSTRAP_MEMBERS").map(|v| parse_members(&v)).transpose().unwrap_or_else(|e| {
            r.issue("BOOTSTRAP_MEMBERS", e.to_string());
            None
        });
        let owner_email = r.opt_string("BOOTSTRAP_OWNER_EMAIL");
        if owner_email.as_ref().is_some_and(|e| !e.contains('@')) {
            r.issue("BOOTSTRAP_OWNER_EMAIL", "must be an email address");
        }
        let bootstrap = BootstrapConfig {
            owner_email,
            owner_github_login: r.opt_string("BOOTSTRAP_OWNER_GITHUB_LOGIN"),
            allowed_emails: list(&mut r, "BOOTSTRAP_ALLOWED_EMAILS"),
            admin_emails: list(&mut r, "BOOTSTRAP_PLATFORM_ADMIN_EMAILS"),
            members: members.unwrap_or_default(),
            project_slug: r.opt_string("BOOTSTRAP_PROJECT_SLUG"),
            project_name: r.opt_string("BOOTSTRAP_PROJECT_NAME"),
            repositories: repositories.unwrap_or_default(),
            platform_repo: r.opt_string("GITHUB_REPO"),
            github_token: r.opt_secret("GITHUB_PAT"),
            learning_mode_default,
        };
        if !bootstrap.repositories.is_empty() {
            if bootstrap.project_slug.is_none() {
                r.issue("BOOTSTRAP_PROJECT_SLUG", "is required when CODEXK8S_BOOTSTRAP_REPOSITORIES is set");
            }
            if bootstrap.github_token.is_none() {
                r.issue(
                    "GITHUB_PAT",
                    "is required when CODEXK8S_BOOTSTRAP_REPOSITORIES is set (it is sealed and stored with each repository)",
                );
            }
        }

        let github_api_url = r.string("GITHUB_API_URL", "https://api.github.com");
        if !(github_api_url.starts_with("https://") || github_api_url.starts_with("http://")) {
            r.issue("GITHUB_API_URL", "must be an http(s) URL such as https://api.github.com");
        }
        let console_url = r.opt_string("CONSOLE_URL").map(|u| u.trim_end_matches('/').to_string());
        if console_url.as_ref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            r.issue("CONSOLE_URL", "must be an http(s) URL such as https://codex.example.com");
        }
        let cfg = Self {
            github_api_url: github_api_url.trim_end_matches('/').to_string(),
            side_effects: r.bool("SIDE_EFFECTS_ENABLED", true),
            side_effects_interval: r.duration("SIDE_EFFECTS_POLL_INTERVAL", Duration::from_secs(2)),
            console_url,
            db: DbConfig::read(&mut r),
            grpc_addr: r.socket_addr("GRPC_ADDR", "0.0.0.0:9090"),
            http_addr: r.socket_addr("HTTP_ADDR", "0.0.0.0:8081"),
            sealer,
            internal_api_token: internal_token(&mut r),
            migrate_on_start: r.bool("MIGRATE_ON_START", false),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
            ingest,
            ingest_batching: batching(&mut r),
            bootstrap,
        };
        ck8s_service::startup::warn_unused(&r);
        r.finish()?;
        Ok(cfg)
    }
}
