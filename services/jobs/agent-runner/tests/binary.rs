//! The agent-runner binary as the worker starts it: settings from the environment, a clear exit
//! code 2 for bad settings, and a run that fails closed when control-plane is unreachable or
//! refuses its token. (A whole run through the binary is in api-gateway's end-to-end test, where
//! the worker launches it.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod common;

use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{ServiceProcess, bin_path, run_to_exit};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-runner");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn bad_or_missing_settings_exit_2_naming_each_setting_without_echoing_secrets() {
    let (code, out) = run_to_exit(
        BIN,
        &env(&[("CODEXK8S_RUN_ID", "not-a-uuid"), ("CODEXK8S_ISSUE_NUMBER", "seven"), ("CODEXK8S_REPOSITORY_FULL_NAME", "no-slash")]),
        &[],
    );
    assert_eq!(code, Some(2), "{out}");
    for var in [
        "CODEXK8S_RUN_ID",
        "CODEXK8S_ISSUE_NUMBER",
        "CODEXK8S_REPOSITORY_FULL_NAME",
        "CODEXK8S_GIT_BOT_TOKEN",
        "CODEXK8S_OPENAI_API_KEY",
        "CODEXK8S_CONTROL_PLANE_GRPC_TARGET",
        "CODEXK8S_RUN_TOKEN",
        "CODEXK8S_RUN_TRIGGER_KIND",
        "CODEXK8S_AGENT_MODEL",
    ] {
        assert!(out.contains(var), "{var} not named:\n{out}");
    }
}

fn base(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut e = env(&[
        ("CODEXK8S_RUN_ID", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
        ("CODEXK8S_REPOSITORY_FULL_NAME", "acme/app"),
        ("CODEXK8S_ISSUE_NUMBER", "1"),
        // What the worker writes for every run.
        ("CODEXK8S_RUN_TRIGGER_KIND", "dev"),
        ("CODEXK8S_AGENT_KEY", "dev"),
        ("CODEXK8S_AGENT_DISPLAY_NAME", "AI Developer"),
        ("CODEXK8S_AGENT_MODEL", "gpt-5.4"),
        ("CODEXK8S_AGENT_REASONING_EFFORT", "high"),
        ("CODEXK8S_GITHUB_API_URL", "http://127.0.0.1:9"),
        ("CODEXK8S_GIT_BOT_TOKEN", "bot-token-canary-77"),
        ("CODEXK8S_OPENAI_API_KEY", "model-key-canary-91"),
        ("CODEXK8S_RUN_TOKEN", "ck8srun_canary_0123456789"),
    ]);
    e.extend(env(extra));
    e
}

fn assert_no_secret(out: &str) {
    for s in ["bot-token-canary-77", "model-key-canary-91", "ck8srun_canary_0123456789"] {
        assert!(!out.contains(s), "{s} in the output:\n{out}");
    }
}

#[test]
fn an_unreachable_control_plane_fails_the_run_saying_which_setting_to_check() {
    let port = ck8s_testkit::process::free_port();
    let target = format!("http://127.0.0.1:{port}");
    let (code, out) = run_to_exit(BIN, &base(&[("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", &target)]), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot reach control-plane") && out.contains("CODEXK8S_CONTROL_PLANE_GRPC_TARGET"), "{out}");
    let failed: Value =
        out.lines().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["event"] == "run.agent.failed")).expect(&out);
    assert_eq!(failed["exit_code"], 1);
    assert_no_secret(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_run_token_stops_the_run_before_it_touches_the_repository() {
    let db = ck8s_testkit::fresh_db().await;
    let cp_env = ck8s_testkit::process::control_plane_env(&db, &[]);
    let forge = tokio::task::spawn_blocking(ForgeSim::start).await.unwrap();
    let (cp, out, exchanges) = tokio::task::spawn_blocking(move || {
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let target = format!("http://{}", cp.addr("grpc"));
        let api = forge.url();
        let out = run_to_exit(BIN, &base(&[("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", &target), ("CODEXK8S_GITHUB_API_URL", &api)]), &[]);
        (cp, out, forge.exchanges())
    })
    .await
    .unwrap();
    let (code, out) = out;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the run token"), "{out}");
    assert_eq!(exchanges.as_array().map(Vec::len), Some(0), "the forge was not called: {exchanges}");
    assert_no_secret(&out);
    assert_no_secret(&cp.output());
}
