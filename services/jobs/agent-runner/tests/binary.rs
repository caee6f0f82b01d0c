//! The agent-runner binary as the worker starts it: settings from the environment, a clear exit
//! code 2 for bad settings, and a whole run against forge-sim and model-sim.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod common;

use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{ServiceProcess, bin_path, run_to_exit};
use serde_json::{Value, json};

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
    for var in
        ["CODEXK8S_RUN_ID", "CODEXK8S_ISSUE_NUMBER", "CODEXK8S_REPOSITORY_FULL_NAME", "CODEXK8S_GIT_BOT_TOKEN", "CODEXK8S_OPENAI_API_KEY"]
    {
        assert!(out.contains(var), "{var} not named:\n{out}");
    }
}

#[test]
fn a_whole_run_from_the_environment_opens_a_pull_request() {
    let forge = ForgeSim::start();
    let model = ServiceProcess::start(
        &bin_path("model-sim"),
        &env(&[("CODEXK8S_MODEL_SIM_HTTP_ADDR", "127.0.0.1:0"), ("CODEXK8S_MODEL_SIM_API_KEY", "model-key-canary-91")]),
        &["http"],
    );
    let bot = forge.user_of_kind("acme", "Bot");
    assert_eq!(forge.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"}))).0, 201);
    let root = std::env::temp_dir().join(format!("ck8s-runner-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    common::seed(&forge, &bot, "acme/app", &root);
    assert_eq!(
        forge.call("POST", "/repos/acme/app/issues", Some(&bot), Some(json!({"title": "Say hello", "body": "A greeting, please."}))).0,
        201
    );

    let run_id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
    let codex = ck8s_testkit::codex::binary().display().to_string();
    let model_url = format!("http://{}/v1", model.addr("http"));
    let git_base = format!("{}/git", forge.url());
    let workdir = root.join("run").display().to_string();
    let forge_url = forge.url();
    let (code, out) = run_to_exit(
        BIN,
        &env(&[
            ("CODEXK8S_RUN_ID", run_id),
            ("CODEXK8S_REPOSITORY_FULL_NAME", "acme/app"),
            ("CODEXK8S_ISSUE_NUMBER", "1"),
            ("CODEXK8S_RUN_TRIGGER_KIND", "dev"),
            ("CODEXK8S_PROMPT_TEMPLATE_LOCALE", "en"),
            ("CODEXK8S_GITHUB_API_URL", &forge_url),
            ("CODEXK8S_GIT_BASE_URL", &git_base),
            ("CODEXK8S_MODEL_BASE_URL", &model_url),
            ("CODEXK8S_CODEX_BIN", &codex),
            ("CODEXK8S_GIT_BOT_TOKEN", &bot),
            ("CODEXK8S_OPENAI_API_KEY", "model-key-canary-91"),
            ("CODEXK8S_RUN_WORKDIR", &workdir),
            ("HOME", &workdir),
        ]),
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    let result: Value =
        out.lines().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["event"] == "run.agent.finished")).expect(&out);
    assert_eq!((result["pr_number"].as_i64(), result["pr_created"].as_bool()), (Some(2), Some(true)), "{result}");
    assert_eq!(result["changed_paths"], json!(["hello.sh"]));
    assert!(!out.contains(&bot) && !out.contains("model-key-canary-91"), "no secret in the runner's output:\n{out}");
    let (_, pr) = forge.call("GET", "/repos/acme/app/pulls/2", Some(&bot), None);
    assert_eq!(pr["head"]["ref"], "codex/issue-1");
    let _ = std::fs::remove_dir_all(&root);
}
