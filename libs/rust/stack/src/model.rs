//! The typed model of `services.yaml` (`apiVersion: codex-k8s.dev/v1alpha1`, `kind: ServiceStack`).
//! Every struct denies unknown fields so a typo fails loudly instead of being ignored.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceStack {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// `metadata`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

/// `spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Project name; falls back to `metadata.name`.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub project_docs: Vec<ProjectDoc>,
    #[serde(default)]
    pub role_doc_templates: BTreeMap<String, Vec<DocRef>>,
    #[serde(default)]
    pub versions: BTreeMap<String, Version>,
    #[serde(default)]
    pub imports: Vec<Import>,
    #[serde(default)]
    pub components: Vec<Component>,
    pub environments: BTreeMap<String, Environment>,
    #[serde(default)]
    pub webhook_runtime: Option<WebhookRuntime>,
    #[serde(default)]
    pub secret_resolution: Option<SecretResolution>,
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
    #[serde(default)]
    pub infrastructure: Vec<Unit>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub orchestration: Option<Orchestration>,
}

/// A document given to agents as context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectDoc {
    #[serde(default)]
    pub repository: Option<String>,
    pub path: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub optional: bool,
}

/// A document template of a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocRef {
    pub path: String,
}

/// An image version and the path prefixes whose changes bump it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Version {
    pub value: String,
    #[serde(default)]
    pub bump_on: Vec<String>,
}

/// An import: a glob string or `{path}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Import {
    Path(String),
    Object(ImportObject),
}

/// `{path}` form of an import.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportObject {
    pub path: String,
}

/// Shared defaults pulled into services by `use`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    #[serde(default)]
    pub service_defaults: ServiceDefaults,
}

/// Defaults a component gives its services.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceDefaults {
    #[serde(default)]
    pub code_update_strategy: Option<CodeUpdateStrategy>,
    #[serde(default)]
    pub deploy_group: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// An environment and how its namespace is named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    /// Environment this one inherits from.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub namespace_template: Option<String>,
    #[serde(default)]
    pub domain_template: Option<String>,
    #[serde(default)]
    pub image_pull_policy: Option<ImagePullPolicy>,
}

/// Kubernetes image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Per-trigger runtime mode and namespace TTLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookRuntime {
    #[serde(default = "default_mode")]
    pub default_mode: RuntimeMode,
    #[serde(default)]
    pub trigger_modes: BTreeMap<String, RuntimeMode>,
    #[serde(default, rename = "defaultNamespaceTTL")]
    pub default_namespace_ttl: Option<String>,
    #[serde(default, rename = "namespaceTTLByRole")]
    pub namespace_ttl_by_role: BTreeMap<String, String>,
}

fn default_mode() -> RuntimeMode {
    RuntimeMode::FullEnv
}

/// How a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeMode {
    /// A namespace with the project's stack deployed.
    FullEnv,
    /// Only a clone of the code, no Kubernetes access.
    CodeOnly,
}

/// Per-environment secret overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretResolution {
    #[serde(default)]
    pub environment_aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub key_overrides: Vec<KeyOverride>,
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// One secret key override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyOverride {
    pub key: String,
    pub environment: String,
    pub source_key: String,
}

/// An image: built by the platform, mirrored from outside, or skipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    #[serde(rename = "type")]
    pub kind: ImageKind,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub tag_template: Option<String>,
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
}

/// Image kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    External,
    Build,
    Skip,
}

/// A manifest template reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub path: String,
}

/// An infrastructure unit (applied before every service group).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Unit {
    pub name: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub manifests: Vec<Manifest>,
    /// Template rendering to `true`/`false`; absent means always.
    #[serde(default)]
    pub when: Option<String>,
}

/// A service unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    #[serde(default, rename = "use")]
    pub uses: Vec<String>,
    #[serde(default)]
    pub code_update_strategy: Option<CodeUpdateStrategy>,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub deploy_group: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub manifests: Vec<Manifest>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
}

/// How agents should expect code changes to reach a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeUpdateStrategy {
    HotReload,
    Rebuild,
    Restart,
}

/// Where a service is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// In every environment namespace.
    #[default]
    Environment,
    /// Once, in production's platform namespace.
    InfrastructureSingleton,
}

/// Deploy ordering and cleanup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Orchestration {
    #[serde(default)]
    pub deploy_order: Vec<String>,
    #[serde(default)]
    pub cleanup_policy: Option<CleanupPolicy>,
}

/// Cleanup of idle full-env namespaces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CleanupPolicy {
    #[serde(default, rename = "fullEnvIdleTTL")]
    pub full_env_idle_ttl: Option<String>,
}

/// The API version this loader understands.
pub const API_VERSION: &str = "codex-k8s.dev/v1alpha1";
/// The only document kind.
pub const KIND: &str = "ServiceStack";

impl ServiceStack {
    /// The project name (`spec.project`, else `metadata.name`).
    pub fn project(&self) -> &str {
        self.spec.project.as_deref().unwrap_or(&self.metadata.name)
    }

    /// The runtime mode of a trigger kind (`triggerModes`, else `defaultMode`, else full-env).
    pub fn runtime_mode(&self, trigger_kind: &str) -> RuntimeMode {
        match &self.spec.webhook_runtime {
            Some(w) => w.trigger_modes.get(trigger_kind).copied().unwrap_or(w.default_mode),
            None => RuntimeMode::FullEnv,
        }
    }

    /// Namespace TTL of an agent role: per role, else default, else 24 h.
    pub fn namespace_ttl(&self, role: &str) -> std::time::Duration {
        let parse = |s: &String| ck8s_domain::duration::parse_duration(s);
        self.spec
            .webhook_runtime
            .as_ref()
            .and_then(|w| w.namespace_ttl_by_role.get(role).and_then(parse).or_else(|| w.default_namespace_ttl.as_ref().and_then(parse)))
            .unwrap_or(std::time::Duration::from_secs(24 * 3600))
    }

    /// Resolves a service's deploy group, filling it from its components.
    pub fn deploy_group(&self, service: &Service) -> Option<String> {
        service.deploy_group.clone().or_else(|| {
            service
                .uses
                .iter()
                .find_map(|u| self.spec.components.iter().find(|c| &c.name == u).and_then(|c| c.service_defaults.deploy_group.clone()))
        })
    }

    /// A service's dependencies, including those its components add.
    pub fn service_depends_on(&self, service: &Service) -> Vec<String> {
        if !service.depends_on.is_empty() {
            return service.depends_on.clone();
        }
        service
            .uses
            .iter()
            .filter_map(|u| self.spec.components.iter().find(|c| &c.name == u))
            .flat_map(|c| c.service_defaults.depends_on.iter().cloned())
            .collect()
    }
}
