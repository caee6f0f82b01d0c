//! The `services.yaml` deploy contract of codex-k8s: a typed model that rejects unknown keys and
//! bad values with the path of the offending key, semantic validation (environment inheritance,
//! references, dependency cycles, runtime policy), and the deploy order derived from it.
//!
//! Template strings (`{{ .Project }}-dev`, `when:` expressions) are kept verbatim here; rendering
//! them belongs to the manifest renderer.

mod model;
mod plan;
mod validate;

pub use model::*;
pub use plan::{DeployStep, deploy_plan};

use std::path::{Path, PathBuf};

/// `services.yaml` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema; `path` is the key path (`spec.services[2].dependsOn`).
    #[error("{file}: {path}: {message}")]
    Schema { file: String, path: String, message: String },
    /// The document parsed but is inconsistent.
    #[error("{file}: {}", render(.problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

/// One semantic problem and the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `spec.services[1].dependsOn`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn render(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; ")
}

/// Reads and validates a `services.yaml` file.
pub fn load_file(path: &Path) -> Result<ServiceStack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read { path: path.into(), source })?;
    load_str(&text, &path.display().to_string())
}

/// Parses and validates `services.yaml` text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<ServiceStack, StackError> {
    let de = yaml_serde::Deserializer::from_str(text);
    let stack: ServiceStack = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.location() {
            Some(loc) => format!("{} (line {}, column {})", strip_location(&inner.to_string()), loc.line(), loc.column()),
            None => inner.to_string(),
        };
        StackError::Schema { file: file.to_string(), path: if path == "." { "(root)".into() } else { path }, message }
    })?;
    let problems = validate::validate(&stack);
    if problems.is_empty() { Ok(stack) } else { Err(StackError::Invalid { file: file.to_string(), problems }) }
}

fn strip_location(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
