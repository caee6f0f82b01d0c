//! Real GitHub webhook payloads from the npm package `@octokit/webhooks-examples` (installed into
//! `tools/fixtures` by the test setup, or here on first use), and helpers that adjust only what a
//! scenario needs: labels, sender and repository ids.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

fn index_path() -> PathBuf {
    crate::repo_root().join("tools/fixtures/node_modules/@octokit/webhooks-examples/api.github.com/index.json")
}

/// Every example, by event name.
pub fn examples() -> &'static Vec<Value> {
    static EXAMPLES: OnceLock<Vec<Value>> = OnceLock::new();
    static INSTALL: Mutex<()> = Mutex::new(());
    EXAMPLES.get_or_init(|| {
        let _guard = INSTALL.lock();
        let path = index_path();
        if !path.exists() {
            let dir = crate::repo_root().join("tools/fixtures");
            let status = std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .unwrap_or_else(|e| panic!("cannot run npm to install @octokit/webhooks-examples in {}: {e}", dir.display()));
            assert!(status.success(), "npm install of the webhook examples failed in {}", dir.display());
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    })
}

/// The first example of `event` whose `action` is `action` (`None` for actionless events).
pub fn example(event: &str, action: Option<&str>) -> Value {
    let group = examples().iter().find(|e| e["name"] == event).unwrap_or_else(|| panic!("no examples for event {event}"));
    group["examples"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x.get("action").and_then(Value::as_str) == action)
        .cloned()
        .unwrap_or_else(|| panic!("no {event} example with action {action:?}"))
}

fn label(name: &str) -> Value {
    json!({"id": 1, "node_id": "LA_x", "url": "https://api.github.com/labels/x", "name": name, "color": "ededed", "default": false, "description": null})
}

/// Adjusts an example: repository id and full name, sender login and type.
pub fn with_repo_and_sender(mut v: Value, repo_id: i64, full_name: &str, sender_login: &str, sender_type: &str) -> Value {
    if let Some(r) = v.get_mut("repository").and_then(Value::as_object_mut) {
        r.insert("id".into(), json!(repo_id));
        r.insert("full_name".into(), json!(full_name));
        if let Some((owner, name)) = full_name.split_once('/') {
            r.insert("name".into(), json!(name));
            if let Some(o) = r.get_mut("owner").and_then(Value::as_object_mut) {
                o.insert("login".into(), json!(owner));
            }
        }
    }
    if let Some(s) = v.get_mut("sender").and_then(Value::as_object_mut) {
        s.insert("login".into(), json!(sender_login));
        s.insert("type".into(), json!(sender_type));
        s.insert("id".into(), json!(user_id(sender_login)));
    }
    v
}

/// A stable GitHub user id for a test login (every account has an id of its own, as on GitHub).
pub fn user_id(login: &str) -> i64 {
    let h = login.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    1_000_000 + i64::try_from(h % 1_000_000_000).unwrap_or(0)
}

/// Sets the label of a `labeled`/`unlabeled` action and the labels of the issue or PR.
pub fn with_labels(mut v: Value, added: Option<&str>, labels: &[&str], on: &str) -> Value {
    if let Some(a) = added {
        v["label"] = label(a);
    }
    if let Some(o) = v.get_mut(on).and_then(Value::as_object_mut) {
        o.insert("labels".into(), Value::Array(labels.iter().map(|l| label(l)).collect()));
    }
    v
}

/// Sets the number of the issue or PR.
pub fn with_number(mut v: Value, on: &str, number: i64) -> Value {
    if let Some(o) = v.get_mut(on).and_then(Value::as_object_mut) {
        o.insert("number".into(), json!(number));
    }
    v
}

/// Validates recorded API answers (`[{method, route, status, body}]`, as forge-sim's
/// `/_sim/exchanges` gives them) against GitHub's OpenAPI description (npm `@octokit/openapi`)
/// with `tools/fixtures/validate-openapi.mjs`; returns the validator's report
/// `{validated, operations, failures}`.
///
/// # Panics
/// If node cannot run the validator or its output is not a report.
pub fn validate_against_openapi(exchanges: &Value) -> Value {
    let _ = examples(); // installs tools/fixtures if needed
    let file = std::env::temp_dir().join(format!(
        "ck8s-exchanges-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::write(&file, serde_json::to_vec(exchanges).unwrap()).unwrap();
    let out = std::process::Command::new("node")
        .arg(crate::repo_root().join("tools/fixtures/validate-openapi.mjs"))
        .arg(&file)
        .output()
        .expect("node runs the OpenAPI validator");
    let _ = std::fs::remove_file(&file);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("validator output: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
