//! The real Codex CLI (npm `@openai/codex`) against model-sim: a scripted scenario makes it run
//! commands that change files, its `--json` events carry the session id, the commands and the
//! token usage, and `codex exec resume` continues the same session with its whole history.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_testkit::process::{ServiceProcess, http_get};
use serde_json::Value;
use std::path::Path;

const KEY: &str = "sim-key-canary-7f3a9c";

fn codex(work: &Path, home: &Path, port: u16, args: &[&str]) -> (bool, Vec<Value>, String) {
    let provider = format!(
        "model_providers.sim={{name=\"sim\", base_url=\"http://127.0.0.1:{port}/v1\", wire_api=\"responses\", env_key=\"OPENAI_API_KEY\"}}"
    );
    let out = std::process::Command::new(ck8s_testkit::codex::binary())
        .arg("exec")
        .args([
            "--json",
            "--skip-git-repo-check",
            "-c",
            "sandbox_mode=\"danger-full-access\"",
            "-c",
            "model_provider=sim",
            "-c",
            "model=gpt-5.4",
        ])
        .args(["-c", &provider])
        .args(args)
        .current_dir(work)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CODEX_HOME", home)
        .env("OPENAI_API_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let events = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.success(), events, format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_codex_cli_runs_a_scripted_scenario_that_changes_files_and_resumes_its_session() {
    let sim = ServiceProcess::start(
        env!("CARGO_BIN_EXE_model-sim"),
        &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), KEY.into())],
        &["http"],
    );
    let port = sim.addr("http").port();
    let root = std::env::temp_dir().join(format!("model-sim-codex-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (work, home) = (root.join("work"), root.join("codex-home"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    assert!(std::process::Command::new("git").args(["init", "-q"]).current_dir(&work).status().unwrap().success());

    let (ok, events, all) = codex(&work, &home, port, &["Issue #1: Say hello. Add a greeting script."]);
    assert!(ok, "codex failed:\n{all}");
    let script = std::fs::read_to_string(work.join("hello.sh")).expect("the scripted command created hello.sh");
    assert!(script.contains("Hello from codex-k8s"), "{script}");

    let kind = |e: &Value| e["type"].as_str().unwrap_or_default().to_string();
    let thread =
        events.iter().find(|e| kind(e) == "thread.started").and_then(|e| e["thread_id"].as_str()).expect("a session id").to_string();
    let commands: Vec<&Value> =
        events.iter().filter(|e| kind(e) == "item.completed" && e["item"]["type"] == "command_execution").map(|e| &e["item"]).collect();
    assert_eq!(commands.len(), 3, "{all}");
    assert!(commands[0]["aggregated_output"].as_str().unwrap().contains(KEY), "the canary bait prints the key: {all}");
    assert_eq!(commands[2]["exit_code"], 0);
    assert!(commands[2]["aggregated_output"].as_str().unwrap().contains("Hello from codex-k8s"), "{all}");
    let message = events.iter().find(|e| kind(e) == "item.completed" && e["item"]["type"] == "agent_message").expect("a final message");
    assert!(message["item"]["text"].as_str().unwrap().contains("hello.sh"));
    let usage = &events.iter().find(|e| kind(e) == "turn.completed").expect("turn.completed")["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() >= 1800 && usage["output_tokens"].as_u64().unwrap() >= 240, "{usage}");

    // The agent runner's reading of the same stream (the domain's parser, on real output).
    let stdout: String = events.iter().map(|e| format!("{e}\n")).collect();
    let t = ck8s_domain::agent_run::read_codex_events(&stdout, &[KEY]);
    assert_eq!(t.session_id.as_deref(), Some(thread.as_str()));
    assert_eq!(t.commands.len(), 3);
    assert!(t.commands[0].output.contains("[REDACTED]") && !stdout_redacted_leaks(&t, KEY), "the reader redacts the key");
    assert!(t.final_message.as_deref().is_some_and(|m| m.contains("hello.sh")));
    assert_eq!(t.turns.len(), 1);
    assert_eq!(t.turns[0].input_tokens, usage["input_tokens"].as_u64().unwrap());

    let (_, text) = http_get(sim.addr("http"), "/_sim/requests");
    let requests: Vec<Value> = serde_json::from_str(&text).unwrap();
    let turns: Vec<u64> = requests.iter().map(|r| r["turn"].as_u64().unwrap()).collect();
    assert_eq!(turns, vec![0, 1, 2, 3], "one scripted turn per request");
    assert!(requests.iter().all(|r| r["scenario"] == "dev-hello"));

    // Resume: the same session, with the earlier tool calls in the history.
    let (ok, events, all) = codex(&work, &home, port, &["resume", &thread, "Please confirm the script still works."]);
    assert!(ok, "resume failed:\n{all}");
    assert!(events.iter().any(|e| kind(e) == "turn.completed"), "{all}");
    let (_, text) = http_get(sim.addr("http"), "/_sim/requests");
    let requests: Vec<Value> = serde_json::from_str(&text).unwrap();
    let last = requests.last().unwrap();
    let history = last["request"]["input"].to_string();
    assert!(history.contains("call_000001") && history.contains("call_000002"), "the resumed request carries the earlier calls");
    // Only the scenario's canary bait (a command that echoes it) shows the key; Codex itself never does.
    assert!(!all.replace(&format!("key={KEY}"), "").contains(KEY), "the model key appears in codex's own output");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn requests_without_the_key_or_with_bad_bodies_get_openai_shaped_errors() {
    use ck8s_testkit::process::http_request;
    let sim = ServiceProcess::start(
        env!("CARGO_BIN_EXE_model-sim"),
        &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), KEY.into())],
        &["http"],
    );
    let addr = sim.addr("http");
    let auth = format!("Bearer {KEY}");
    let body = br#"{"model": "gpt-5.4", "input": "Say hello", "stream": false}"#;
    let (s, _, t) = http_request(addr, "POST", "/v1/responses", &[], Some(body));
    assert_eq!(s, 401);
    assert_eq!(serde_json::from_str::<Value>(&t).unwrap()["error"]["code"], "invalid_api_key");
    let (s, _, t) = http_request(addr, "POST", "/v1/responses", &[("Authorization", "Bearer wrong")], Some(body));
    assert_eq!(s, 401, "{t}");
    for (bad, code) in [(&b"{not json"[..], "invalid_json"), (b"[1]", "invalid_json"), (br#"{"input": "x"}"#, "missing_required_parameter")]
    {
        let (s, _, t) = http_request(addr, "POST", "/v1/responses", &[("Authorization", &auth)], Some(bad));
        assert_eq!((s, serde_json::from_str::<Value>(&t).unwrap()["error"]["code"].as_str()), (400, Some(code)), "{t}");
    }
    let huge = format!(r#"{{"model": "m", "input": "{}"}}"#, "x".repeat(9 << 20));
    let (s, _, _) = http_request(addr, "POST", "/v1/responses", &[("Authorization", &auth)], Some(huge.as_bytes()));
    assert_eq!(s, 413);
    let (s, _, t) = http_request(addr, "POST", "/v1/responses", &[("Authorization", &auth)], Some(body));
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!((v["object"].as_str(), v["output"][0]["type"].as_str()), (Some("response"), Some("function_call")));
    assert_eq!(v["usage"]["total_tokens"], 2040);
    let (_, requests) = http_get(addr, "/_sim/requests");
    assert_eq!(serde_json::from_str::<Value>(&requests).unwrap().as_array().unwrap().len(), 1, "refused requests are not played");
}

fn stdout_redacted_leaks(t: &ck8s_domain::agent_run::CodexTranscript, secret: &str) -> bool {
    t.commands.iter().any(|c| c.output.contains(secret) || c.command.contains(secret))
        || t.final_message.as_deref().is_some_and(|m| m.contains(secret))
}
