//! The typed run contract from ingest to agent (product spec §4.3, §5.5, §6.1).
//!
//! [`RunSpec`] is what ingest decides about a run and stores as `agent_runs.run_payload`; the
//! worker decodes it (an unknown version or a missing or malformed field fails the run with a
//! reason naming the field). [`AgentEnv`] is what one run's agent runner needs, and
//! [`PlatformEnv`] the platform settings every job gets; each has one `to_env`/`from_env` pair,
//! used by the worker to write a job's environment and by the agent runner to read it, so the two
//! sides cannot drift apart. [`AgentExit`] is the agent runner's exit code as both ends read it.

use crate::comments::Locale;
use crate::policy::{AccessProfile, RuntimeMode, RuntimePlan, TriggerSource};
use crate::stage::TriggerKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The version of [`RunSpec`] this build writes and reads.
pub const RUN_SPEC_VERSION: u32 = 1;

/// A run as ingest decided it (stored as `agent_runs.run_payload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// [`RUN_SPEC_VERSION`] when written.
    pub version: u32,
    /// The forge that sent the delivery (`github`).
    pub source: String,
    pub delivery_id: String,
    /// `X-GitHub-Event`.
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub action: Option<String>,
    pub correlation_id: String,
    pub repository: RepositorySummary,
    pub installation: Installation,
    pub sender: SenderSummary,
    /// The whole webhook as delivered, kept for the audit trail; no decision reads it.
    pub raw_payload: Value,
    pub project: ProjectBinding,
    pub learning_mode: bool,
    pub discussion_mode: bool,
    /// `None` for deploy runs, which run no agent.
    pub agent: Option<AgentRef>,
    pub issue: Option<IssueSummary>,
    pub pull_request: Option<PullRequestSummary>,
    pub trigger: Trigger,
    pub profile_hints: ProfileHints,
    pub runtime: RuntimePlan,
}

/// The repository of the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositorySummary {
    pub id: Option<i64>,
    pub full_name: String,
    pub name: Option<String>,
    pub private: Option<bool>,
    pub fork: Option<bool>,
}

/// The GitHub App installation, when the delivery came through one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub id: Option<i64>,
}

/// Who sent the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderSummary {
    pub id: Option<i64>,
    pub login: Option<String>,
}

/// The registered project and repository the delivery is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectBinding {
    pub id: Uuid,
    pub repository_id: Uuid,
    /// Path of the repository's `services.yaml`.
    pub services_yaml: Option<String>,
    pub binding_resolved: bool,
}

/// The agent that runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    pub id: Uuid,
    /// `dev`, `reviewer`, `pm`, ...
    pub key: String,
    /// Display name, also the git author name (`AI Developer`).
    pub name: String,
}

/// The issue of the run: from the delivery, or only its number (review runs resolve it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSummary {
    pub number: i64,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    /// Author login.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// The pull request's page when the "issue" is a pull request.
    #[serde(default)]
    pub pull_request: Option<String>,
}

/// A branch reference of a pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRef {
    #[serde(rename = "ref")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

/// The pull request of the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestSummary {
    pub number: i64,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub head: BranchRef,
    #[serde(default)]
    pub base: BranchRef,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// What started the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub source: TriggerSource,
    pub label: Option<String>,
    pub kind: TriggerKind,
}

/// Labels of the latest earlier run of the same issue or pull request, for model and reasoning
/// resolution (spec §2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileHints {
    pub last_run_issue_labels: Vec<String>,
    pub last_run_pull_request_labels: Vec<String>,
}

/// A stored run payload this build cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunSpecError {
    #[error("run payload version {found} is not supported (this build reads version {RUN_SPEC_VERSION})")]
    UnsupportedVersion { found: u64 },
    #[error("run payload field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

impl RunSpecError {
    /// The field the error is about (`version` for an unsupported version).
    pub fn field(&self) -> &str {
        match self {
            RunSpecError::UnsupportedVersion { .. } => "version",
            RunSpecError::Invalid { field, .. } => field,
        }
    }
}

impl RunSpec {
    /// Decodes a stored payload: the version first, then every field, naming the first bad one.
    pub fn decode(v: &Value) -> Result<RunSpec, RunSpecError> {
        match v.get("version") {
            None | Some(Value::Null) => {
                return Err(RunSpecError::Invalid { field: "version".into(), message: "missing field `version`".into() });
            }
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(RUN_SPEC_VERSION)) => {}
            Some(Value::Number(n)) => return Err(RunSpecError::UnsupportedVersion { found: n.as_u64().unwrap_or(0) }),
            Some(_) => return Err(RunSpecError::Invalid { field: "version".into(), message: "expected a number".into() }),
        }
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde names a missing field in its message, one level below the path it reports.
            let field = match inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                Some(missing) if path == "." => missing.to_string(),
                Some(missing) => format!("{path}.{missing}"),
                None => path,
            };
            RunSpecError::Invalid { field, message: inner }
        })
    }

    /// The payload as stored.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The issue number, if the run has an issue.
    pub fn issue_number(&self) -> Option<i64> {
        self.issue.as_ref().map(|i| i.number)
    }

    /// The pull request number of the delivery, if any.
    pub fn pull_request_number(&self) -> Option<i64> {
        self.pull_request.as_ref().map(|p| p.number)
    }

    /// The agent key (`dev` when the run names none).
    pub fn agent_key(&self) -> &str {
        self.agent.as_ref().map_or("dev", |a| a.key.as_str())
    }
}

/// The prefix of every setting.
pub const ENV_PREFIX: &str = "CODEXK8S_";

/// Names of the credentials a job gets only through the runtime's secret channel.
pub mod secret_env {
    /// The bot's forge token.
    pub const GIT_BOT_TOKEN: &str = "CODEXK8S_GIT_BOT_TOKEN";
    /// The model API key.
    pub const OPENAI_API_KEY: &str = "CODEXK8S_OPENAI_API_KEY";
    /// The run's bearer token for its callbacks.
    pub const RUN_TOKEN: &str = "CODEXK8S_RUN_TOKEN";
}

/// One problem with a job's environment, naming the variable (without the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvProblem {
    pub key: &'static str,
    pub message: String,
}

/// Reads typed values from a lookup of unprefixed keys, collecting every problem.
struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<EnvProblem>,
}

impl EnvReader<'_> {
    fn get(&self, key: &'static str) -> Option<String> {
        (self.lookup)(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, key: &'static str, message: impl Into<String>) {
        self.problems.push(EnvProblem { key, message: message.into() });
    }

    fn required(&mut self, key: &'static str, what: &str) -> String {
        self.get(key).unwrap_or_else(|| {
            self.problem(key, format!("missing: {what}"));
            String::new()
        })
    }

    fn optional(&mut self, key: &'static str) -> Option<String> {
        self.get(key)
    }

    fn parsed<T>(&mut self, key: &'static str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let raw = self.get(key)?;
        let v = parse(&raw);
        if v.is_none() {
            self.problem(key, format!("invalid value {raw:?}: expected {what}"));
        }
        v
    }

    fn flag(&mut self, key: &'static str) -> bool {
        self.parsed(key, "true or false", |s| match s.to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<EnvProblem>> {
        if self.problems.is_empty() { Ok(value) } else { Err(self.problems) }
    }
}

fn positive(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0)
}

/// What one run's agent runner needs to know about its run (non-secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnv {
    pub run_id: Uuid,
    pub correlation_id: String,
    pub project_id: Option<Uuid>,
    pub slot_no: Option<i32>,
    pub runtime_mode: RuntimeMode,
    pub target_env: Option<String>,
    pub build_ref: Option<String>,
    pub access_profile: Option<AccessProfile>,
    /// control-plane's gRPC address for the agent callbacks.
    pub control_plane_target: String,
    /// `owner/name`.
    pub repository_full_name: String,
    pub issue_number: Option<i64>,
    /// The pull request of the delivery (reviewer and revise runs).
    pub existing_pr_number: Option<i64>,
    pub trigger_kind: TriggerKind,
    pub trigger_label: Option<String>,
    pub discussion: bool,
    pub agent_key: String,
    pub agent_name: String,
    pub model: String,
    pub reasoning_effort: String,
    pub locale: Locale,
    pub learning_mode: bool,
}

const RUN_ID: &str = "RUN_ID";
const CORRELATION_ID: &str = "CORRELATION_ID";
const PROJECT_ID: &str = "PROJECT_ID";
const SLOT_NO: &str = "SLOT_NO";
const RUNTIME_MODE: &str = "RUNTIME_MODE";
const RUNTIME_TARGET_ENV: &str = "RUNTIME_TARGET_ENV";
const RUNTIME_BUILD_REF: &str = "RUNTIME_BUILD_REF";
const RUNTIME_ACCESS_PROFILE: &str = "RUNTIME_ACCESS_PROFILE";
const CONTROL_PLANE_GRPC_TARGET: &str = "CONTROL_PLANE_GRPC_TARGET";
const REPOSITORY_FULL_NAME: &str = "REPOSITORY_FULL_NAME";
const ISSUE_NUMBER: &str = "ISSUE_NUMBER";
const EXISTING_PR_NUMBER: &str = "EXISTING_PR_NUMBER";
const RUN_TRIGGER_KIND: &str = "RUN_TRIGGER_KIND";
const RUN_TRIGGER_LABEL: &str = "RUN_TRIGGER_LABEL";
const DISCUSSION_MODE: &str = "DISCUSSION_MODE";
const AGENT_KEY: &str = "AGENT_KEY";
const AGENT_DISPLAY_NAME: &str = "AGENT_DISPLAY_NAME";
const AGENT_MODEL: &str = "AGENT_MODEL";
const AGENT_REASONING_EFFORT: &str = "AGENT_REASONING_EFFORT";
const PROMPT_TEMPLATE_LOCALE: &str = "PROMPT_TEMPLATE_LOCALE";
const LEARNING_MODE: &str = "LEARNING_MODE";

fn locale_str(l: Locale) -> &'static str {
    match l {
        Locale::Ru => "ru",
        Locale::En => "en",
    }
}

fn prefixed(pairs: Vec<(&str, Option<String>)>) -> BTreeMap<String, String> {
    pairs.into_iter().filter_map(|(k, v)| v.map(|v| (format!("{ENV_PREFIX}{k}"), v))).collect()
}

impl AgentEnv {
    /// The job environment (`CODEXK8S_*`); absent values are left out.
    pub fn to_env(&self) -> BTreeMap<String, String> {
        prefixed(vec![
            (RUN_ID, Some(self.run_id.to_string())),
            (CORRELATION_ID, Some(self.correlation_id.clone())),
            (PROJECT_ID, self.project_id.map(|p| p.to_string())),
            (SLOT_NO, self.slot_no.map(|n| n.to_string())),
            (RUNTIME_MODE, Some(self.runtime_mode.as_str().into())),
            (RUNTIME_TARGET_ENV, self.target_env.clone()),
            (RUNTIME_BUILD_REF, self.build_ref.clone()),
            (RUNTIME_ACCESS_PROFILE, self.access_profile.map(|p| p.as_str().into())),
            (CONTROL_PLANE_GRPC_TARGET, Some(self.control_plane_target.clone())),
            (REPOSITORY_FULL_NAME, Some(self.repository_full_name.clone())),
            (ISSUE_NUMBER, self.issue_number.map(|n| n.to_string())),
            (EXISTING_PR_NUMBER, self.existing_pr_number.map(|n| n.to_string())),
            (RUN_TRIGGER_KIND, Some(self.trigger_kind.to_string())),
            (RUN_TRIGGER_LABEL, self.trigger_label.clone()),
            (DISCUSSION_MODE, Some(self.discussion.to_string())),
            (AGENT_KEY, Some(self.agent_key.clone())),
            (AGENT_DISPLAY_NAME, Some(self.agent_name.clone())),
            (AGENT_MODEL, Some(self.model.clone())),
            (AGENT_REASONING_EFFORT, Some(self.reasoning_effort.clone())),
            (PROMPT_TEMPLATE_LOCALE, Some(locale_str(self.locale).into())),
            (LEARNING_MODE, Some(self.learning_mode.to_string())),
        ])
    }

    /// Reads the run from a lookup of unprefixed keys (`RUN_ID`, ...); every problem is reported,
    /// each naming its variable.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<EnvProblem>> {
        let mut r = EnvReader { lookup, problems: vec![] };
        let run_id = r.required(RUN_ID, "the id of the run this job executes");
        let run_id = if run_id.is_empty() { Uuid::nil() } else { r.parsed(RUN_ID, "a UUID", |s| s.parse().ok()).unwrap_or_default() };
        let repository_full_name = r.required(REPOSITORY_FULL_NAME, "owner/name of the repository");
        if !repository_full_name.is_empty() && crate::forge::RepoRef::parse(&repository_full_name).is_none() {
            r.problem(REPOSITORY_FULL_NAME, format!("invalid value {repository_full_name:?}: expected owner/name"));
        }
        let kind = r.required(RUN_TRIGGER_KIND, "the run's trigger kind (dev, dev_revise, ...)");
        let trigger_kind = match TriggerKind::parse(&kind) {
            Ok(k) => k,
            Err(e) => {
                if !kind.is_empty() {
                    r.problem(RUN_TRIGGER_KIND, e.to_string());
                }
                TriggerKind::DEPLOY
            }
        };
        let runtime_mode = r.parsed(RUNTIME_MODE, "full-env or code-only", RuntimeMode::parse).unwrap_or(RuntimeMode::CodeOnly);
        let env = AgentEnv {
            run_id,
            correlation_id: r.optional(CORRELATION_ID).unwrap_or_default(),
            project_id: r.parsed(PROJECT_ID, "a UUID", |s| s.parse().ok()),
            slot_no: r.parsed(SLOT_NO, "a slot number", |s| s.parse().ok()),
            runtime_mode,
            target_env: r.optional(RUNTIME_TARGET_ENV),
            build_ref: r.optional(RUNTIME_BUILD_REF),
            access_profile: r.parsed(RUNTIME_ACCESS_PROFILE, "candidate or production-readonly", AccessProfile::parse),
            control_plane_target: r.required(CONTROL_PLANE_GRPC_TARGET, "control-plane's gRPC address (the worker sets it)"),
            repository_full_name,
            issue_number: r.parsed(ISSUE_NUMBER, "a positive number", positive),
            existing_pr_number: r.parsed(EXISTING_PR_NUMBER, "a positive number", positive),
            trigger_kind,
            trigger_label: r.optional(RUN_TRIGGER_LABEL),
            discussion: r.flag(DISCUSSION_MODE),
            agent_key: r.required(AGENT_KEY, "the agent's key (dev, reviewer, ...)"),
            agent_name: r.required(AGENT_DISPLAY_NAME, "the agent's display name"),
            model: r.required(AGENT_MODEL, "the model the run uses"),
            reasoning_effort: r.required(AGENT_REASONING_EFFORT, "the reasoning effort"),
            locale: r.optional(PROMPT_TEMPLATE_LOCALE).map_or(Locale::Ru, |l| Locale::parse(&l)),
            learning_mode: r.flag(LEARNING_MODE),
        };
        r.finish(env)
    }
}

/// Platform settings every job gets, the same for every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEnv {
    /// The forge's REST API (`https://api.github.com`, or forge-sim).
    pub github_api_url: String,
    /// Where repositories are cloned from (`https://github.com`).
    pub git_base_url: String,
    /// The bot's login (its own comments are never answered).
    pub git_bot_username: String,
    pub git_bot_mail: String,
    /// The Codex CLI binary.
    pub codex_bin: String,
    /// A Responses API endpoint other than OpenAI's (model-sim).
    pub model_base_url: Option<String>,
    /// The platform's MCP endpoint, when one serves the run.
    pub mcp_url: Option<String>,
    /// The `state:in-review` label's name.
    pub in_review_label: String,
    /// Tokens (input + output) one run may spend; the runner's model proxy refuses beyond it.
    pub agent_token_budget: u64,
}

const GITHUB_API_URL: &str = "GITHUB_API_URL";
const GIT_BASE_URL: &str = "GIT_BASE_URL";
const GIT_BOT_USERNAME: &str = "GIT_BOT_USERNAME";
const GIT_BOT_MAIL: &str = "GIT_BOT_MAIL";
const CODEX_BIN: &str = "CODEX_BIN";
const MODEL_BASE_URL: &str = "MODEL_BASE_URL";
const CONTROL_PLANE_MCP_URL: &str = "CONTROL_PLANE_MCP_URL";
const STATE_IN_REVIEW_LABEL: &str = "STATE_IN_REVIEW_LABEL";
const AGENT_TOKEN_BUDGET: &str = "AGENT_TOKEN_BUDGET";

impl Default for PlatformEnv {
    fn default() -> Self {
        Self {
            github_api_url: "https://api.github.com".into(),
            git_base_url: "https://github.com".into(),
            git_bot_username: "codex-bot".into(),
            git_bot_mail: "codex-bot@users.noreply.github.com".into(),
            codex_bin: "codex".into(),
            model_base_url: None,
            mcp_url: None,
            in_review_label: "state:in-review".into(),
            agent_token_budget: 5_000_000,
        }
    }
}

impl PlatformEnv {
    /// The unprefixed keys, for readers that must mark them as used.
    pub const KEYS: [&'static str; 9] = [
        GITHUB_API_URL,
        GIT_BASE_URL,
        GIT_BOT_USERNAME,
        GIT_BOT_MAIL,
        CODEX_BIN,
        MODEL_BASE_URL,
        CONTROL_PLANE_MCP_URL,
        STATE_IN_REVIEW_LABEL,
        AGENT_TOKEN_BUDGET,
    ];

    /// The job environment (`CODEXK8S_*`).
    pub fn to_env(&self) -> BTreeMap<String, String> {
        prefixed(vec![
            (GITHUB_API_URL, Some(self.github_api_url.clone())),
            (GIT_BASE_URL, Some(self.git_base_url.clone())),
            (GIT_BOT_USERNAME, Some(self.git_bot_username.clone())),
            (GIT_BOT_MAIL, Some(self.git_bot_mail.clone())),
            (CODEX_BIN, Some(self.codex_bin.clone())),
            (MODEL_BASE_URL, self.model_base_url.clone()),
            (CONTROL_PLANE_MCP_URL, self.mcp_url.clone()),
            (STATE_IN_REVIEW_LABEL, Some(self.in_review_label.clone())),
            (AGENT_TOKEN_BUDGET, Some(self.agent_token_budget.to_string())),
        ])
    }

    /// Reads the settings from a lookup of unprefixed keys; absent ones keep their defaults.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let d = Self::default();
        Self {
            github_api_url: get(GITHUB_API_URL).unwrap_or(d.github_api_url),
            git_base_url: get(GIT_BASE_URL).unwrap_or(d.git_base_url),
            git_bot_username: get(GIT_BOT_USERNAME).unwrap_or(d.git_bot_username),
            git_bot_mail: get(GIT_BOT_MAIL).unwrap_or(d.git_bot_mail),
            codex_bin: get(CODEX_BIN).unwrap_or(d.codex_bin),
            model_base_url: get(MODEL_BASE_URL),
            mcp_url: get(CONTROL_PLANE_MCP_URL),
            in_review_label: get(STATE_IN_REVIEW_LABEL).unwrap_or(d.in_review_label),
            agent_token_budget: get(AGENT_TOKEN_BUDGET).and_then(|v| v.parse().ok()).unwrap_or(d.agent_token_budget),
        }
    }
}

/// How the agent runner ends, as its process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentExit {
    /// The run did its work.
    Success,
    /// Anything else went wrong (see the job log).
    Failed,
    /// The job's settings were invalid.
    BadSettings,
    /// The agent's change was refused (outside its stage's write scope, or holding a platform
    /// secret); nothing was pushed.
    ScopeViolation,
    /// A revise run found no pull request or branch to continue.
    NothingToRevise,
}

impl AgentExit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            AgentExit::Success => 0,
            AgentExit::Failed => 1,
            AgentExit::BadSettings => 2,
            AgentExit::ScopeViolation => 3,
            AgentExit::NothingToRevise => 42,
        }
    }

    /// The exit this code stands for; unknown non-zero codes are failures.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => AgentExit::Success,
            2 => AgentExit::BadSettings,
            3 => AgentExit::ScopeViolation,
            42 => AgentExit::NothingToRevise,
            _ => AgentExit::Failed,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
