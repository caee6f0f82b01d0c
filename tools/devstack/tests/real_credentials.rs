//! The README's first command with real credentials configured: the same `devstack` serves a
//! GitHub repository and an OpenAI-compatible model instead of its own forge-sim and model-sim.
//! GitHub and OpenAI cannot be reached from here, so forge-sim stands at the configured GitHub API
//! URL (speaking GitHub's published REST contract, webhook deliveries API included) and model-sim
//! at the configured model URL. The repository's webhook points at an address GitHub cannot reach,
//! as on a laptop, so every event comes in through the relay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{ServiceProcess, bin_path, run_to_exit};
use serde_json::{Value, json};

const MODEL_KEY: &str = "sk-devstack-real-mode-canary-3f9a";

fn devstack(env: &[(&str, String)], state: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    // devstack starts the binaries beside it: `cargo test --workspace` (the test command) builds
    // every one of them first.
    let mut e: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    e.push(("HOME".into(), std::env::var("HOME").unwrap_or_else(|_| "/root".into())));
    e.push(("CODEXK8S_DEVSTACK_DIR".into(), state.display().to_string()));
    let mut all = vec!["--smoke"];
    all.extend_from_slice(args);
    run_to_exit(&bin_path("devstack"), &e, &all)
}

#[test]
fn with_real_credentials_the_first_command_serves_the_github_repository_through_the_relay_and_the_configured_model() {
    ck8s_testkit::server(); // PostgreSQL stays up for the other tests: devstack leaves a running server running.
    let state = std::env::temp_dir().join(format!("devstack-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let sim = ForgeSim::start();
    let alice = sim.user("alice");
    assert_eq!(sim.call("POST", "/_sim/repos", Some(&alice), Some(json!({"name": "scratch"}))).0, 201);
    sim.push_main(&alice, "alice/scratch", &[("README.md", "# scratch\n")], &state);
    let model = ServiceProcess::start(
        &bin_path("model-sim"),
        &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into())],
        &["http"],
    );
    let real = |pat: &str| {
        vec![
            ("CODEXK8S_FIRST_PROJECT_GITHUB_REPO", "alice/scratch".to_string()),
            ("CODEXK8S_GITHUB_PAT", pat.to_string()),
            ("CODEXK8S_GITHUB_API_URL", sim.url()),
            ("CODEXK8S_GIT_BASE_URL", format!("{}/git", sim.url())),
            ("CODEXK8S_OPENAI_API_KEY", MODEL_KEY.to_string()),
            ("CODEXK8S_MODEL_BASE_URL", format!("http://{}/v1", model.addr("http"))),
        ]
    };

    // Refused credentials stop it before anything starts, with what to do next.
    let (code, out) = devstack(&real("not-a-token"), &state, &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("GitHub refused CODEXK8S_GITHUB_PAT (401)") && !out.contains("not-a-token"), "{out}");
    let mallory = sim.user("mallory");
    let (code, out) = devstack(&real(&mallory), &state, &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("CODEXK8S_GITHUB_PAT cannot manage the webhooks of alice/scratch") && out.contains("admin:repo_hook"), "{out}");
    assert!(!out.contains(&mallory), "the token is never printed: {out}");

    let (code, out) = devstack(&real(&alice), &state, &[]);
    println!("{out}"); // shown with --nocapture
    assert_eq!(code, Some(0), "{out}");
    // Nothing of forge-sim or model-sim was started by devstack itself.
    assert!(!out.contains("forge-sim stopped") && !out.contains("model-sim stopped"), "{out}");
    assert!(out.contains(&format!("{} plays GitHub: repository alice/scratch", sim.url())), "{out}");
    assert!(out.contains("bot `alice`, owner `alice`"), "{out}");
    assert!(out.contains("the model is the Responses API at http://"), "{out}");
    // The webhook came through the relay and the gateway took it.
    assert!(out.contains("webhook relay: issues labeled (delivery ") && out.contains("-> gateway answered 202"), "{out}");
    assert!(out.contains("the relay forwarded it: gateway answered 202"), "{out}");
    assert!(
        out.contains("pull request #2 by alice: AI Developer: Say hello") && out.contains("issue #1 labels now: state:in-review"),
        "{out}"
    );
    assert!(
        out.contains("final status comment on alice/scratch#1:") && out.contains("learning mode on PR #2: 1 explanation comment(s)"),
        "{out}"
    );
    assert!(out.contains("look next: ") && out.contains("/alice/scratch/issues/1"), "{out}");

    // On the "GitHub" side: one hook at an unreachable address (GitHub could not deliver there),
    // the platform's labels, and the agent's pull request with its change.
    let (_, hooks) = sim.call("GET", "/repos/alice/scratch/hooks", Some(&alice), None);
    let hooks = hooks.as_array().cloned().unwrap_or_default();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["config"]["url"], "https://codex-k8s-devstack.invalid/api/v1/webhooks/github");
    let events: Vec<&str> = hooks[0]["events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for e in ["issues", "issue_comment", "pull_request", "pull_request_review", "push"] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    let (_, deliveries) =
        sim.call("GET", &format!("/repos/alice/scratch/hooks/{}/deliveries?per_page=100", hooks[0]["id"]), Some(&alice), None);
    let deliveries = deliveries.as_array().cloned().unwrap_or_default();
    assert!(deliveries.iter().any(|d| d["action"] == "labeled"), "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d["status_code"] == 0), "GitHub could never reach the gateway directly: {deliveries:?}");
    let (_, labels) = sim.call("GET", "/repos/alice/scratch/labels", Some(&alice), None);
    let names: Vec<&str> = labels.as_array().unwrap().iter().filter_map(|l| l["name"].as_str()).collect();
    for l in ["run:dev", "run:dev:revise", "state:in-review"] {
        assert!(names.contains(&l), "{l} missing from {names:?}");
    }
    let (_, file) = sim.call("GET", "/repos/alice/scratch/contents/hello.sh?ref=codex/issue-1", Some(&alice), None);
    assert!(file["sha"].is_string(), "the agent's change is on its branch: {file}");
    let (_, main_readme) = sim.call("GET", "/repos/alice/scratch/contents/README.md?ref=main", Some(&alice), None);
    assert!(main_readme["sha"].is_string(), "main is untouched");
    let (_, gone) = sim.call("GET", "/repos/alice/scratch/contents/.codex-k8s/prompts/dev-work.md?ref=main", Some(&alice), None);
    assert!(!gone["sha"].is_string(), "devstack pushes nothing to a real repository: {gone}");

    // A second start, configured by an env file written as the README shows, reuses the hook
    // (matched by URL), opens a new issue, and does it again.
    let file = state.join("real.env");
    let lines: String = real(&alice).iter().map(|(k, v)| format!("{k}={v}   # as in the README\n")).collect();
    std::fs::write(&file, format!("# real credentials\n{lines}")).unwrap();
    let (code, out) = devstack(&[], &state, &["--env-file", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("pull request #4 by alice") && out.contains("issue #3 labels now: state:in-review"), "{out}");
    let (_, hooks) = sim.call("GET", "/repos/alice/scratch/hooks", Some(&alice), None);
    assert_eq!(hooks.as_array().map(Vec::len), Some(1), "{hooks}");

    // With a public webhook URL the hook points there; when GitHub fails to deliver to it (nothing
    // listens here), the relay still brings the event in.
    let mut public = real(&alice);
    public.push(("CODEXK8S_GITHUB_WEBHOOK_URL", "http://127.0.0.1:1/api/v1/webhooks/github".to_string()));
    let (code, out) = devstack(&public, &state, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("GitHub delivers to CODEXK8S_GITHUB_WEBHOOK_URL") && out.contains("pull request #6 by alice"), "{out}");
    let (_, hooks) = sim.call("GET", "/repos/alice/scratch/hooks", Some(&alice), None);
    let urls: Vec<&str> = hooks.as_array().unwrap().iter().filter_map(|h| h["config"]["url"].as_str()).collect();
    assert!(urls.contains(&"http://127.0.0.1:1/api/v1/webhooks/github"), "{urls:?}");

    // Canary: neither token reaches what devstack printed, any service's log, or any file the
    // runs left behind (job logs, workspaces; the agent's first command prints its environment).
    let read = |dir: &str| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        ck8s_testkit::files_under(&state.join(dir)).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap_or_default())).collect()
    };
    let files: Vec<_> = read("logs").into_iter().chain(read("runs")).collect();
    assert!(files.iter().any(|(p, _)| p.ends_with("job.log")), "the runs left their job logs");
    for (name, secret) in [("the PAT", alice.as_str()), ("the model key", MODEL_KEY)] {
        assert!(!out.contains(secret), "{name} was printed");
        for (path, bytes) in &files {
            assert!(!String::from_utf8_lossy(bytes).contains(secret), "{name} is in {}", path.display());
        }
    }
    drop(model);
    let _ = std::fs::remove_dir_all(&state);
}
