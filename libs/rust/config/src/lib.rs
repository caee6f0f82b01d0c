//! Layered configuration of every codex-k8s binary: built-in defaults, then an optional file, then `CODEXK8S_*`
//! environment variables, then `--set KEY=VALUE` flags (later layers win).
//!
//! Each binary declares its own typed config struct and fills it through a [`Reader`], which
//! collects *every* problem before failing so an operator fixes them in one go. Messages always
//! name the full variable (`CODEXK8S_DB_PORT`) and never echo the value of a secret.

use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Prefix of every setting of the platform.
pub const PREFIX: &str = "CODEXK8S_";

/// Where a value came from; shown in error messages so the operator knows what to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("--set flag"),
        }
    }
}

/// One configuration problem, tied to the variable that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Full variable name, e.g. `CODEXK8S_DB_PORT`.
    pub var: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Configuration could not be loaded or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file named by `--config` or `CODEXK8S_CONFIG_FILE` could not be read or parsed.
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// A command-line argument was not understood.
    #[error("bad argument {arg:?}: {reason}")]
    Argument { arg: String, reason: String },
    /// One or more settings are missing or invalid.
    #[error("{}", render_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn render_issues(issues: &[ConfigIssue]) -> String {
    let mut out = String::from("invalid configuration:");
    for i in issues {
        out.push_str(&format!("\n  {}: {}", i.var, i.message));
    }
    out
}

#[derive(Debug, Clone)]
struct Layered {
    value: String,
    source: Source,
}

/// The merged layers of raw settings, keyed without the prefix (`DB_PORT`).
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<String, Layered>,
}

impl Layers {
    /// Reads the process environment and command-line arguments.
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_parts(std::env::vars(), std::env::args().skip(1))
    }

    /// Builds the layers from an environment and argument list (for tests and tools).
    ///
    /// Arguments understood: `--config PATH`, `--set KEY=VALUE` (repeatable; `KEY` with or
    /// without the prefix). Anything else is an error, so typos do not pass silently.
    pub fn from_parts(
        env: impl IntoIterator<Item = (String, String)>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let mut config_file = env.get("CODEXK8S_CONFIG_FILE").map(PathBuf::from);
        let mut flags = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" => {
                    let path =
                        args.next().ok_or_else(|| ConfigError::Argument { arg: arg.clone(), reason: "expects a file path".into() })?;
                    config_file = Some(PathBuf::from(path));
                }
                "--set" => {
                    let kv = args.next().ok_or_else(|| ConfigError::Argument { arg: arg.clone(), reason: "expects KEY=VALUE".into() })?;
                    flags.push(split_kv(&kv).ok_or_else(|| ConfigError::Argument { arg: kv.clone(), reason: "expects KEY=VALUE".into() })?);
                }
                other => {
                    return Err(ConfigError::Argument {
                        arg: other.to_string(),
                        reason: "unknown argument (expected --config PATH or --set KEY=VALUE)".into(),
                    });
                }
            }
        }

        let mut layers = Layers::default();
        if let Some(path) = config_file {
            for (k, v) in read_env_file(&path)? {
                layers.insert(&k, v, Source::File(path.clone()));
            }
        }
        for (k, v) in env {
            if k.starts_with(PREFIX) {
                layers.insert(&k, v, Source::Env);
            }
        }
        for (k, v) in flags {
            layers.insert(&k, v, Source::Flag);
        }
        Ok(layers)
    }

    fn insert(&mut self, key: &str, value: String, source: Source) {
        let key = key.strip_prefix(PREFIX).unwrap_or(key).to_string();
        self.values.insert(key, Layered { value, source });
    }

    /// Starts reading typed values; call [`Reader::finish`] at the end.
    pub fn reader(&self) -> Reader<'_> {
        Reader { layers: self, issues: Vec::new(), seen: BTreeSet::new() }
    }

    /// The raw value of a setting, if any layer set it.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|l| l.value.as_str())
    }
}

fn split_kv(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
}

/// Reads a `KEY=VALUE` file (blank lines and `#` comments allowed, optional `export `, values
/// optionally in single or double quotes).
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = split_kv(line)
            .ok_or_else(|| ConfigError::File { path: path.to_path_buf(), reason: format!("line {}: expected KEY=VALUE", n + 1) })?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k, v.to_string()));
    }
    Ok(out)
}

/// Typed access to the layers that records every problem instead of stopping at the first.
pub struct Reader<'a> {
    layers: &'a Layers,
    issues: Vec<ConfigIssue>,
    seen: BTreeSet<String>,
}

impl Reader<'_> {
    fn lookup(&mut self, key: &str) -> Option<&Layered> {
        self.seen.insert(key.to_string());
        self.layers.values.get(key).filter(|l| !l.value.trim().is_empty())
    }

    /// Records a problem with `key`.
    pub fn issue(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue { var: format!("{PREFIX}{key}"), message: message.into() });
    }

    /// A string with a default.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.lookup(key).map(|l| l.value.trim().to_string()).unwrap_or_else(|| default.to_string())
    }

    /// An optional string (unset or blank is `None`).
    pub fn opt_string(&mut self, key: &str) -> Option<String> {
        self.lookup(key).map(|l| l.value.trim().to_string())
    }

    /// A string that must be set.
    pub fn required_string(&mut self, key: &str, what: &str) -> String {
        match self.opt_string(key) {
            Some(v) => v,
            None => {
                self.issue(key, format!("is required ({what})"));
                String::new()
            }
        }
    }

    /// Any `FromStr` value with a default; `expected` describes valid input for the message.
    pub fn parse<T: FromStr>(&mut self, key: &str, default: T, expected: &str) -> T {
        let Some(l) = self.lookup(key) else { return default };
        let (value, source) = (l.value.trim().to_string(), l.source.clone());
        match value.parse() {
            Ok(v) => v,
            Err(_) => {
                self.issue(key, format!("invalid value {value:?} from {source}: expected {expected}"));
                default
            }
        }
    }

    /// A TCP port (1–65535).
    pub fn port(&mut self, key: &str, default: u16) -> u16 {
        let p = self.parse::<u16>(key, default, "a port number 1-65535");
        if p == 0 {
            self.issue(key, "port 0 is not allowed: expected a port number 1-65535");
        }
        p
    }

    /// A socket address such as `0.0.0.0:8080` (port 0 allowed: tests bind ephemeral ports).
    pub fn socket_addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        self.parse(key, fallback, "a socket address such as 0.0.0.0:8080")
    }

    /// A boolean (`true/false/1/0/yes/no/on/off`).
    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        let Some(l) = self.lookup(key) else { return default };
        let v = l.value.trim().to_ascii_lowercase();
        match v.as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.issue(key, format!("invalid value {v:?}: expected true or false"));
                default
            }
        }
    }

    /// A duration such as `500ms`, `15s`, `5m`, `24h` or `1h30m`.
    pub fn duration(&mut self, key: &str, default: Duration) -> Duration {
        let Some(l) = self.lookup(key) else { return default };
        let v = l.value.trim().to_string();
        match parse_duration(&v) {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.issue(key, format!("invalid duration {v:?}: expected e.g. 500ms, 15s, 5m, 24h or 1h30m (> 0)"));
                default
            }
        }
    }

    /// A secret that must be set; its value never appears in messages.
    pub fn required_secret(&mut self, key: &str, what: &str) -> SecretString {
        match self.lookup(key) {
            Some(l) => SecretString::from(l.value.trim().to_string()),
            None => {
                self.issue(key, format!("is required ({what})"));
                SecretString::from(String::new())
            }
        }
    }

    /// An optional secret.
    pub fn opt_secret(&mut self, key: &str) -> Option<SecretString> {
        self.lookup(key).map(|l| SecretString::from(l.value.trim().to_string()))
    }

    /// Fails if any problem was recorded.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.issues.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(self.issues)) }
    }

    /// Settings given in a file or flag that no reader asked for: almost always a typo.
    pub fn unused_explicit(&self) -> Vec<String> {
        self.layers
            .values
            .iter()
            .filter(|(k, l)| l.source != Source::Env && !self.seen.contains(*k))
            .map(|(k, _)| format!("{PREFIX}{k}"))
            .collect()
    }
}

pub use ck8s_domain::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn layers(env: &[(&str, &str)], args: &[&str]) -> Result<Layers, ConfigError> {
        Layers::from_parts(env.iter().map(|(k, v)| (k.to_string(), v.to_string())), args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn env_overrides_defaults_and_flags_override_env() {
        let l = layers(&[("CODEXK8S_DB_PORT", "6000"), ("OTHER", "x")], &["--set", "DB_HOST=db"]).unwrap();
        let mut r = l.reader();
        assert_eq!(r.port("DB_PORT", 5432), 6000);
        assert_eq!(r.string("DB_HOST", "localhost"), "db");
        assert_eq!(r.string("DB_NAME", "codex_k8s"), "codex_k8s");
        r.finish().unwrap();

        let l = layers(&[("CODEXK8S_DB_PORT", "6000")], &["--set", "CODEXK8S_DB_PORT=7000"]).unwrap();
        assert_eq!(l.reader().port("DB_PORT", 1), 7000);
    }

    #[test]
    fn file_is_the_lowest_explicit_layer() {
        let dir = std::env::temp_dir().join(format!("ck8s-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("env");
        std::fs::write(&file, "# comment\nexport CODEXK8S_DB_HOST=\"filehost\"\nDB_PORT=1234\nCODEXK8S_TYPO=1\n").unwrap();
        let f = file.to_str().unwrap();
        let l = layers(&[("CODEXK8S_DB_PORT", "5555")], &["--config", f]).unwrap();
        let mut r = l.reader();
        assert_eq!(r.string("DB_HOST", "x"), "filehost");
        assert_eq!(r.port("DB_PORT", 1), 5555);
        assert_eq!(r.unused_explicit(), vec!["CODEXK8S_TYPO".to_string()]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_problem_is_reported_with_the_variable_name() {
        let l = layers(&[("CODEXK8S_DB_PORT", "abc"), ("CODEXK8S_POLL", "soon"), ("CODEXK8S_FLAG", "maybe")], &[]).unwrap();
        let mut r = l.reader();
        r.port("DB_PORT", 5432);
        r.duration("POLL", Duration::from_secs(5));
        r.bool("FLAG", true);
        r.required_secret("TOKEN", "the API token");
        let err = r.finish().unwrap_err();
        let text = err.to_string();
        for var in ["CODEXK8S_DB_PORT", "CODEXK8S_POLL", "CODEXK8S_FLAG", "CODEXK8S_TOKEN"] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
        assert!(text.contains("\"abc\""));
    }

    #[test]
    fn secrets_are_never_echoed() {
        let l = layers(&[("CODEXK8S_KEY", "s3cr3t-value")], &[]).unwrap();
        let mut r = l.reader();
        let k = r.required_secret("KEY", "key");
        assert_eq!(k.expose_secret(), "s3cr3t-value");
        r.issue("KEY", "must be 64 hex characters");
        let text = r.finish().unwrap_err().to_string();
        assert!(!text.contains("s3cr3t"));
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(matches!(layers(&[], &["--bogus"]), Err(ConfigError::Argument { .. })));
        assert!(matches!(layers(&[], &["--set", "novalue"]), Err(ConfigError::Argument { .. })));
        assert!(matches!(layers(&[], &["--config", "/nonexistent/x"]), Err(ConfigError::File { .. })));
    }
}
