//! Typed configuration of worker.

use ck8s_config::{ConfigError, Layers};
use ck8s_domain::comments::Locale;
use ck8s_domain::lifecycle::LaunchSettings;
use ck8s_domain::run_spec::{PlatformEnv, secret_env};
use ck8s_domain::runtime::PlacementError;
use ck8s_store::DbConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything worker reads at start.
pub struct Config {
    pub db: DbConfig,
    pub http_addr: SocketAddr,
    pub worker_id: String,
    pub namespace: Option<String>,
    pub pod_name: Option<String>,
    pub heartbeat_interval: Duration,
    pub instance_ttl: Duration,
    pub shutdown_timeout: Duration,
    /// Whether this worker claims and launches runs (off until a job command exists locally).
    pub launch_runs: bool,
    pub lifecycle: crate::lifecycle::LifecycleSettings,
    /// Root of run directories of the local runtime.
    pub local_runtime_dir: std::path::PathBuf,
    /// `local` or `kubernetes`.
    pub runtime: String,
    pub kubernetes: ck8s_runtime::KubernetesSettings,
    /// The webhook redelivery loop, when the platform's webhook URL is configured.
    pub redelivery: Option<RedeliverySettings>,
}

/// What the webhook redelivery loop needs (`ck8s_effects::redelivery`).
pub struct RedeliverySettings {
    /// `CODEXK8S_GITHUB_WEBHOOK_URL`: the URL the platform's webhooks deliver to.
    pub hook_url: String,
    pub github_api_url: String,
    pub sealer: std::sync::Arc<ck8s_crypto::Sealer>,
    pub interval: Duration,
    pub policy: ck8s_domain::redelivery::RedeliveryPolicy,
}

/// The redelivery loop's settings; off (with no key needed) when no webhook URL is configured.
fn redelivery(r: &mut ck8s_config::Reader<'_>, layers: &Layers, github_api_url: &str) -> Option<RedeliverySettings> {
    let hook_url = r.opt_string("GITHUB_WEBHOOK_URL")?;
    if !(hook_url.starts_with("https://") || hook_url.starts_with("http://")) {
        r.issue(
            "GITHUB_WEBHOOK_URL",
            "must be the http(s) URL GitHub delivers webhooks to (https://codex.example.com/api/v1/webhooks/github)",
        );
    }
    let sealer =
        ck8s_service::sealing::read_sealer(r, layers, "64 hex characters, the same key as control-plane's (it opens repository tokens)");
    let d = ck8s_domain::redelivery::RedeliveryPolicy::default();
    let max_requests = r.parse("WEBHOOK_REDELIVERY_MAX_REQUESTS", d.max_requests, "a number of requests per delivery");
    if max_requests == 0 {
        r.issue("WEBHOOK_REDELIVERY_MAX_REQUESTS", "must be at least 1");
    }
    Some(RedeliverySettings {
        hook_url,
        github_api_url: github_api_url.to_string(),
        sealer: std::sync::Arc::new(sealer),
        interval: r.duration("WEBHOOK_REDELIVERY_INTERVAL", Duration::from_secs(60)),
        policy: ck8s_domain::redelivery::RedeliveryPolicy {
            max_age: r.duration("WEBHOOK_REDELIVERY_MAX_AGE", d.max_age),
            max_requests,
            first_backoff: r.duration("WEBHOOK_REDELIVERY_BACKOFF", d.first_backoff),
        },
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("worker-{}", std::process::id()))
}

/// Run directories of the local runtime by default: under the worker's home (not a shared
/// temporary directory where another user could make the path first), else the temporary one
/// (which [`ck8s_runtime::LocalRuntime::open`] still refuses if someone else owns it).
fn default_local_runtime_dir() -> std::path::PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => std::path::PathBuf::from(home).join(".cache/codex-k8s/runs"),
        None => std::env::temp_dir().join("codex-k8s-runs"),
    }
}

/// Platform settings passed on to every job (the agent runner reads them under the same names).
fn platform_env(r: &mut ck8s_config::Reader<'_>) -> PlatformEnv {
    let d = PlatformEnv::default();
    PlatformEnv {
        github_api_url: r.string("GITHUB_API_URL", &d.github_api_url),
        git_base_url: r.string("GIT_BASE_URL", &d.git_base_url),
        git_bot_username: r.string("GIT_BOT_USERNAME", &d.git_bot_username),
        git_bot_mail: r.string("GIT_BOT_MAIL", &d.git_bot_mail),
        codex_bin: r.string("CODEX_BIN", &d.codex_bin),
        model_base_url: r.opt_string("MODEL_BASE_URL"),
        mcp_url: r.opt_string("CONTROL_PLANE_MCP_URL"),
        in_review_label: r.string("STATE_IN_REVIEW_LABEL", &d.in_review_label),
        agent_token_budget: r.parse("AGENT_TOKEN_BUDGET", d.agent_token_budget, "a number of tokens"),
    }
}

impl Config {
    pub fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let heartbeat_interval = r.duration("WORKER_HEARTBEAT_INTERVAL", Duration::from_secs(15));
        let instance_ttl = r.duration("WORKER_INSTANCE_TTL", Duration::from_secs(60));
        if instance_ttl <= heartbeat_interval {
            r.issue(
                "WORKER_INSTANCE_TTL",
                format!("must be longer than CODEXK8S_WORKER_HEARTBEAT_INTERVAL ({heartbeat_interval:?}), or live workers look dead"),
            );
        }
        let runtime = r.string("WORKER_RUNTIME", "local");
        if runtime != "local" && runtime != "kubernetes" {
            r.issue("WORKER_RUNTIME", format!("unsupported runtime {runtime:?}: expected local or kubernetes"));
        }
        let quota_pods = r.parse("WORKER_RUN_QUOTA_PODS", 20u32, "a number of pods");
        let slots = r.parse("WORKER_SLOTS_PER_PROJECT", 2i32, "a number of slots, 1-100");
        if !(1..=100).contains(&slots) {
            r.issue("WORKER_SLOTS_PER_PROJECT", "must be between 1 and 100");
        }
        let worker_id = r.opt_string("WORKER_ID").unwrap_or_else(hostname);
        let lifecycle = crate::lifecycle::LifecycleSettings {
            worker_id: worker_id.clone(),
            poll_interval: r.duration("WORKER_POLL_INTERVAL", Duration::from_secs(5)),
            claim_limit: r.parse("WORKER_CLAIM_LIMIT", 10usize, "a number of runs per tick"),
            running_check_limit: r.parse("WORKER_RUNNING_CHECK_LIMIT", 200i64, "a number of runs per tick"),
            stale_sweep_limit: r.parse("WORKER_STALE_LEASE_SWEEP_LIMIT", 200i64, "a number of runs per tick"),
            claim: ck8s_store::runs::ClaimSettings {
                run_lease: r.duration("WORKER_RUN_LEASE_TTL", Duration::from_secs(45 * 60)),
                slot_lease: r.duration("WORKER_SLOT_LEASE_TTL", Duration::from_secs(10 * 60)),
                default_slots: slots,
            },
            launch: LaunchSettings {
                namespace_prefix: r.string("WORKER_RUN_NAMESPACE_PREFIX", "codex-issue"),
                default_model: r.string("AGENT_DEFAULT_MODEL", "gpt-5.4"),
                default_reasoning: r.string("AGENT_DEFAULT_REASONING_EFFORT", "high"),
                locale: Locale::parse(&r.string("AGENT_DEFAULT_LOCALE", "ru")),
                control_plane_target: r.string("CONTROL_PLANE_GRPC_TARGET", "http://127.0.0.1:9090"),
                run_timeout: Duration::from_secs(r.parse("WORKER_JOB_ACTIVE_DEADLINE_SECONDS", 18_000u64, "seconds")),
                namespace_ttl: r.duration("WORKER_NAMESPACE_TTL", Duration::from_secs(24 * 3600)),
                job_image: r.string("WORKER_JOB_IMAGE", concat!("codex-k8s/agent-runner:", env!("CARGO_PKG_VERSION"))),
                job_command: r.string("WORKER_JOB_COMMAND", "/usr/local/bin/agent-runner"),
                platform: platform_env(&mut r),
            },
            job_secret_env: [(secret_env::GIT_BOT_TOKEN, "GIT_BOT_TOKEN"), (secret_env::OPENAI_API_KEY, "OPENAI_API_KEY")]
                .into_iter()
                .filter_map(|(name, key)| r.opt_secret(key).map(|v| (name.to_string(), v)))
                .collect(),
            sweep_namespaces: r.bool("WORKER_RUN_NAMESPACE_CLEANUP", true),
            logs_retention: Duration::from_secs(86_400 * r.parse("RUN_AGENT_LOGS_RETENTION_DAYS", 7u64, "a number of days")),
            prepare_window: r.duration("WORKER_PREPARE_RETRY_WINDOW", Duration::from_secs(60)),
        };
        if !ck8s_domain::runtime::image_pinned(&lifecycle.launch.job_image) {
            r.issue(
                "WORKER_JOB_IMAGE",
                "must be pinned: name@sha256:<digest> or a version tag such as :0.1.0 (an untagged, :latest or branch-named image can change under running runs)",
            );
        }
        if !ck8s_domain::lifecycle::single_command(&lifecycle.launch.job_command) {
            r.issue(
                "WORKER_JOB_COMMAND",
                "must be one program and its arguments (it runs with exec, so the runner is its container's first process and gets the stop signal): no ; & | ` $( or line break",
            );
        }
        // The run pod may reach control-plane exactly where the runner dials it: one source.
        let launch = &lifecycle.launch;
        let platform_ports = ck8s_domain::runtime::platform_ports(&launch.control_plane_target, launch.platform.mcp_url.as_deref());
        if platform_ports.is_empty() {
            r.issue("CONTROL_PLANE_GRPC_TARGET", "must be an http(s) URL with a host (http://control-plane:9090)");
        }
        let (selector, tolerations) = (r.string("WORKER_JOB_NODE_SELECTOR", ""), r.string("WORKER_JOB_TOLERATIONS", ""));
        let placement = ck8s_domain::runtime::Placement::parse(&selector, &tolerations).unwrap_or_else(|e| {
            let (key, expected) = match e {
                PlacementError::NodeSelector(_) => ("WORKER_JOB_NODE_SELECTOR", "node labels label=value,…"),
                PlacementError::Toleration(_) => ("WORKER_JOB_TOLERATIONS", "taint keys key,…"),
            };
            r.issue(key, format!("{e}: expected {expected}"));
            Default::default()
        });
        let kubernetes = ck8s_runtime::KubernetesSettings {
            quota_pods,
            platform_namespace: r.string("PRODUCTION_NAMESPACE", "codex-k8s-prod"),
            platform_ports,
            placement,
        };
        let redelivery = redelivery(&mut r, layers, &lifecycle.launch.platform.github_api_url);
        let cfg = Self {
            redelivery,
            launch_runs: r.bool("WORKER_LAUNCH_RUNS", true),
            runtime,
            kubernetes,
            lifecycle,
            local_runtime_dir: r.opt_string("WORKER_LOCAL_RUNTIME_DIR").map(Into::into).unwrap_or_else(default_local_runtime_dir),
            db: DbConfig::read(&mut r),
            http_addr: r.socket_addr("HTTP_ADDR", "0.0.0.0:8082"),
            worker_id,
            namespace: r.opt_string("WORKER_K8S_NAMESPACE"),
            pod_name: r.opt_string("POD_NAME"),
            heartbeat_interval,
            instance_ttl,
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
        };
        ck8s_service::startup::warn_unused(&r);
        r.finish()?;
        Ok(cfg)
    }
}
