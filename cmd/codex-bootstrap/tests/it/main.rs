//! The CLI accepts the platform's own services.yaml and rejects broken copies with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_codex-bootstrap");

fn platform() -> (String, std::path::PathBuf) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services.yaml");
    (std::fs::read_to_string(&path).unwrap(), path)
}

fn validate(text: &str, name: &str) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("ck8s-bootstrap-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("services.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(BIN).args(["validate", "--file"]).arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_platform_stack_validates_and_prints_its_deploy_order() {
    let (_, path) = platform();
    let out = Command::new(BIN).args(["validate", "--file"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("valid (project codex-k8s"), "{stdout}");
    let migrate = stdout.find("[migrations] codex-k8s-migrate").unwrap();
    let app = stdout.find("[internal] codex-k8s-app").unwrap();
    let console = stdout.find("[frontend] web-console").unwrap();
    assert!(migrate < app && app < console, "{stdout}");
}

#[test]
fn an_unknown_key_is_rejected_with_its_path() {
    let (text, _) = platform();
    let (code, _, err) = validate(&text.replace("defaultNamespaceTTL: 24h", "defaultNamespaceTtl: 24h"), "unknown");
    assert_eq!(code, 1);
    assert!(err.contains("spec.webhookRuntime") && err.contains("unknown field `defaultNamespaceTtl`"), "{err}");
}

#[test]
fn a_dependency_cycle_is_rejected_naming_the_cycle() {
    let (text, _) = platform();
    let broken = text.replace(
        "      dependsOn: [oauth2-proxy]",
        "      dependsOn: [oauth2-proxy]\n    - name: loop-a\n      dependsOn: [loop-b]\n    - name: loop-b\n      dependsOn: [loop-a]",
    );
    let (code, _, err) = validate(&broken, "cycle");
    assert_eq!(code, 1);
    assert!(err.contains("dependency cycle: loop-a -> loop-b -> loop-a"), "{err}");
}

#[test]
fn a_missing_file_and_bad_arguments_are_reported() {
    let out = Command::new(BIN).args(["validate", "--file", "/nonexistent/services.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/services.yaml"));
    let out = Command::new(BIN).args(["deploy-everything"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
