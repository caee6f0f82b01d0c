//! A labelled issue becomes a pull request: forge-sim (GitHub), model-sim (the model) and the real
//! Codex CLI, driven by the agent runner's pipeline, with learning-mode explanations. Then a revise
//! run resumes the session, changes the code, updates the same pull request and answers the review
//! comment; the reviewer comments without committing; scope violations push nothing; a revise
//! without a branch exits 42.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests: a panic is a failed test

mod common;

use agent_runner::codex::{Codex, Provider};
use agent_runner::pipeline::{RunError, RunInput, run};
use agent_runner::prompt::PromptContext;
use agent_runner::proxy::{ModelProxy, ProxySettings};
use agent_runner::sandbox::{AgentUser, Claim};
use agent_runner::workspace::Identity;
use ck8s_domain::agent_run::WriteScope;
use ck8s_domain::forge::{RepoRef, RepositoryProvider};
use ck8s_domain::run_spec::AgentExit;
use ck8s_github::{Github, GithubProvider, GithubSettings};
use ck8s_testkit::forge::ForgeSim;
use ck8s_testkit::process::{ServiceProcess, bin_path};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::path::Path;

const MODEL_KEY: &str = "model-key-canary-5d1e";

struct World {
    forge: ForgeSim,
    _model: ServiceProcess,
    model_url: String,
    bot: String,
    root: std::path::PathBuf,
    claims: std::sync::Mutex<Vec<Claim>>,
    proxy: std::sync::OnceLock<ModelProxy>,
}

fn world(name: &str) -> World {
    let forge = ForgeSim::start();
    let model = ServiceProcess::start(
        &bin_path("model-sim"),
        &[("CODEXK8S_MODEL_SIM_HTTP_ADDR".into(), "127.0.0.1:0".into()), ("CODEXK8S_MODEL_SIM_API_KEY".into(), MODEL_KEY.into())],
        &["http"],
    );
    let model_url = format!("http://{}/v1", model.addr("http"));
    let bot = forge.user_of_kind("acme", "Bot");
    forge.user("alice");
    assert_eq!(forge.call("POST", "/_sim/repos", Some(&bot), Some(json!({"name": "app"}))).0, 201);
    let root = std::env::temp_dir().join(format!("ck8s-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    common::seed(&forge, &bot, "acme/app", &root);
    World { forge, _model: model, model_url, bot, root, claims: Default::default(), proxy: Default::default() }
}

impl World {
    fn provider(&self) -> GithubProvider {
        GithubProvider::new(Github::new(GithubSettings::new(self.forge.url(), SecretString::from(self.bot.clone()))).unwrap())
    }

    /// The model proxy the agents talk to (the runner's, holding model-sim's key).
    fn proxy(&self) -> &ModelProxy {
        self.proxy.get().expect("started")
    }

    async fn start_proxy(&self) {
        let settings = ProxySettings {
            upstream: self.model_url.clone(),
            api_key: SecretString::from(MODEL_KEY.to_string()),
            budget_tokens: 10_000_000,
        };
        let _ = self.proxy.set(ModelProxy::start(settings).await.unwrap());
    }

    /// The agent user of a run (held until the world ends).
    fn claim(&self, run: &str) -> Option<AgentUser> {
        let claim = AgentUser::claim(&format!("{run}-{}", std::process::id())).unwrap()?;
        let user = claim.user;
        self.claims.lock().unwrap().push(claim);
        Some(user)
    }

    fn codex(&self, home: &str) -> Codex {
        Codex {
            binary: ck8s_testkit::codex::binary().clone(),
            home: self.root.join(home),
            model: "gpt-5.4".into(),
            reasoning_effort: "high".into(),
            provider: Some(Provider { base_url: self.proxy().base_url() }),
            mcp: None,
            api_key: self.proxy().agent_key(),
            mcp_token: None,
            output_schema: true,
            agent: self.claim(home),
            host: None,
        }
    }

    fn input(&self, dir: &str, issue: i64, title: &str, scope: WriteScope, revise: bool) -> RunInput {
        RunInput {
            repo: RepoRef::new("acme", "app"),
            clone_url: format!("{}/git/acme/app.git", self.forge.url()),
            bot_token: SecretString::from(self.bot.clone()),
            identity: Identity { name: "AI Developer".into(), email: "acme@example.com".into() },
            workdir: self.root.join(dir),
            agent_dir: self.root.join(dir).join("agent"),
            prompt: PromptContext {
                repository: "acme/app".into(),
                run_id: format!("run-{dir}"),
                issue_number: Some(issue),
                issue_title: title.into(),
                issue_body: "Please add a greeting script.".into(),
                agent_name: "AI Developer".into(),
                stage: "dev".into(),
                role: "dev".into(),
                kind: if revise { "revise".into() } else { "work".into() },
                trigger_label: if revise { "run:dev:revise".into() } else { "run:dev".into() },
                base_branch: "main".into(),
                target_branch: format!("codex/issue-{issue}"),
                locale: "en".into(),
                existing_pr: None,
                learning_mode: false,
                review_notes: vec![],
            },
            scope,
            wants_pr: true,
            revise,
            resume_session: None,
            in_review_label: "state:in-review".into(),
            review_comments: vec![],
            review_pr: None,
            bot_login: "acme".into(),
            secrets: vec![SecretString::from(MODEL_KEY.to_string())],
        }
    }

    fn issue(&self, title: &str) -> i64 {
        let (s, v) = self.forge.call("POST", "/repos/acme/app/issues", Some(&self.bot), Some(json!({"title": title})));
        assert_eq!(s, 201);
        let n = v["number"].as_i64().unwrap();
        assert_eq!(
            self.forge.call("POST", &format!("/repos/acme/app/issues/{n}/labels"), Some(&self.bot), Some(json!({"labels": ["run:dev"]}))).0,
            200
        );
        n
    }
}

fn labels(v: &Value) -> Vec<String> {
    v["labels"].as_array().into_iter().flatten().map(|l| l["name"].as_str().unwrap().to_string()).collect()
}

fn no_canary(root: &Path, secrets: &[&str]) {
    // Nothing the run left on disk outside Codex's own home holds a secret in clear.
    for entry in ck8s_testkit::files_under(root) {
        if entry.components().any(|c| c.as_os_str() == "codex-home" || c.as_os_str() == "codex-home-2") {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&entry) {
            for s in secrets {
                assert!(!text.contains(s), "{} contains a secret", entry.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_dev_issue_becomes_a_pull_request_and_a_revise_resumes_and_updates_it() {
    let w = tokio::task::spawn_blocking(|| world("e2e")).await.unwrap();
    w.start_proxy().await;
    let gh = w.provider();
    let n = w.issue("Say hello");

    let mut first = w.input("r1", n, "Say hello", WriteScope::Unrestricted, false);
    first.prompt.learning_mode = true;
    let codex = w.codex("codex-home");
    let out = run(first, &codex, &gh).await.unwrap();
    assert!(out.pr_created);
    let pr = out.pr_number.unwrap();
    assert!(out.report.summary.starts_with("Added `hello.sh`"), "the JSON report is read: {:?}", out.report);
    // Learning mode: one explanation comment and a line comment on the changed script.
    assert_eq!(out.learning.len(), 2, "{:?}", out.learning);
    assert_eq!((out.learning[1].file_path.as_deref(), out.learning[1].line), (Some("hello.sh"), Some(2)));
    let (_, comments) = w.forge.call("GET", &format!("/repos/acme/app/issues/{pr}/comments"), Some(&w.bot), None);
    let explained: Vec<&str> =
        comments.as_array().unwrap().iter().filter_map(|c| c["body"].as_str()).filter(|b| b.contains("Learning mode")).collect();
    assert_eq!(explained.len(), 1);
    assert!(explained[0].contains("Alternatives rejected"), "{}", explained[0]);
    assert_eq!(out.changed_paths, vec!["hello.sh"]);
    if let Some(agent) = codex.agent {
        use std::os::unix::fs::MetadataExt;
        let made = std::fs::metadata(w.root.join("r1/agent/repo/hello.sh")).unwrap();
        assert_eq!((made.uid(), made.gid()), (agent.uid, agent.gid), "Codex ran as the agent's own user");
        let private = std::fs::metadata(w.root.join("r1/runner")).unwrap();
        assert_eq!((private.uid(), private.mode() & 0o777), (0, 0o700), "the runner's clone is its own");
    }
    let session = out.transcript.session_id.clone().expect("a Codex session");
    assert!(out.transcript.turns.iter().any(|t| t.input_tokens > 0), "Codex saw the usage too");
    let counted = w.proxy().usage();
    assert_eq!(counted.len(), 4, "the proxy counted every answer of the scenario: {counted:?}");
    assert!(counted.iter().all(|t| t.input_tokens > 0), "token usage for token_usage rows");
    let (_, pull) = w.forge.call("GET", &format!("/repos/acme/app/pulls/{pr}"), Some(&w.bot), None);
    assert_eq!((pull["head"]["ref"].as_str(), pull["base"]["ref"].as_str()), (Some("codex/issue-1"), Some("main")));
    assert!(pull["body"].as_str().unwrap().contains(&format!("Closes #{n}")));
    let (s, file) = w.forge.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&w.bot), None);
    assert_eq!(s, 200, "the scripted change is on the PR's branch: {file}");
    let (_, issue) = w.forge.call("GET", &format!("/repos/acme/app/issues/{n}"), Some(&w.bot), None);
    assert_eq!(labels(&issue), vec!["state:in-review"], "trigger label off, in-review on");
    let (_, pr_issue) = w.forge.call("GET", &format!("/repos/acme/app/issues/{pr}"), Some(&w.bot), None);
    assert_eq!(labels(&pr_issue), vec!["state:in-review"]);

    // A review asks for changes; the revise run resumes the session and updates the same PR.
    let (s, _) = w.forge.call(
        "POST",
        &format!("/repos/acme/app/pulls/{pr}/reviews"),
        Some(&w.forge.user("reviewer-bob")),
        Some(json!({"event": "REQUEST_CHANGES", "body": "Say hello louder", "comments": [{"path": "hello.sh", "line": 2, "body": "Make it louder"}]})),
    );
    assert_eq!(s, 200);
    let repo = RepoRef::new("acme", "app");
    let mut revise = w.input("r2", n, "Say hello", WriteScope::Unrestricted, true);
    revise.resume_session = Some(session);
    revise.review_comments = gh.list_review_comments(&repo, pr).await.unwrap();
    revise.prompt.review_notes = vec!["reviewer-bob: Say hello louder".into()];
    let out2 = run(revise, &w.codex("codex-home"), &gh).await.unwrap();
    assert!(!out2.pr_created);
    assert_eq!(out2.pr_number, Some(pr), "the same pull request");
    assert!(out2.commit.is_some(), "the revision changed the script");
    let (_, pull) = w.forge.call("GET", &format!("/repos/acme/app/pulls/{pr}"), Some(&w.bot), None);
    assert!(pull["body"].as_str().unwrap().contains("### Revision"), "{pull}");
    let (_, file) = w.forge.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&w.bot), None);
    let content = String::from_utf8(ck8s_testkit::decode_base64(file["content"].as_str().unwrap())).unwrap();
    assert!(content.contains("HELLO FROM CODEX-K8S!"), "{content}");
    // The review comment is answered once, in its thread.
    assert_eq!(out2.replies, 1);
    let thread = gh.list_review_comments(&repo, pr).await.unwrap();
    let reply = thread.iter().find(|c| c.in_reply_to.is_some()).expect("a reply");
    assert!(reply.author == "acme" && reply.body.starts_with("Addressed in "), "{reply:?}");

    // The reviewer reads the pull request and comments without committing anything.
    let head_before = gh.pull(&repo, pr).await.unwrap().head_sha;
    let mut review = w.input("r3", n, "Say hello", WriteScope::Nothing, true);
    review.prompt.role = "reviewer".into();
    review.prompt.kind = "work".into();
    review.wants_pr = false;
    review.review_pr = Some(pr);
    let out3 = run(review, &w.codex("codex-home-2"), &gh).await.unwrap();
    assert!(out3.commit.is_none() && out3.changed_paths.is_empty());
    assert_eq!(out3.prompt_source, "builtin:role-reviewer-work.md");
    let reviews = gh.list_reviews(&repo, pr).await.unwrap();
    let posted = reviews.iter().find(|r| Some(r.id) == out3.review_id).expect("the reviewer's review");
    assert_eq!((posted.author.as_str(), posted.state.as_str()), ("acme", "COMMENTED"));
    assert!(posted.body.as_deref().unwrap().contains("Verdict"), "{posted:?}");
    assert_eq!(gh.pull(&repo, pr).await.unwrap().head_sha, head_before, "nothing was pushed");
    no_canary(&w.root, &[&w.bot, MODEL_KEY]);
    let _ = std::fs::remove_dir_all(&w.root);
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_violations_push_nothing_and_a_revise_without_a_branch_exits_42() {
    let w = tokio::task::spawn_blocking(|| world("scope")).await.unwrap();
    w.start_proxy().await;
    let gh = w.provider();
    let n = w.issue("Say hello");

    // A document stage may not add a script: the run fails before any push.
    let err = run(w.input("s1", n, "Say hello", WriteScope::MarkdownOnly, false), &w.codex("codex-home"), &gh).await.unwrap_err();
    assert!(matches!(err, RunError::Scope(ref v) if v.paths == vec!["hello.sh".to_string()]), "{err}");
    assert_eq!((err.exit(), err.exit().code()), (AgentExit::ScopeViolation, 3));
    assert!(err.to_string().starts_with("failed_precondition"));
    let (s, _) = w.forge.call("GET", "/repos/acme/app/contents/hello.sh?ref=codex/issue-1", Some(&w.bot), None);
    assert_eq!(s, 404, "nothing was pushed");
    assert_eq!(gh.find_pull_by_head(&RepoRef::new("acme", "app"), "codex/issue-1").await.unwrap(), None);

    // The reviewer changes nothing: its changes fail the run too.
    let err = run(w.input("s2", n, "Say hello", WriteScope::Nothing, false), &w.codex("codex-home-2"), &gh).await.unwrap_err();
    assert!(matches!(err, RunError::Scope(_)), "{err}");

    // A revise run for an issue whose branch never existed.
    let err = run(w.input("s3", 99, "Say hello", WriteScope::Unrestricted, true), &w.codex("codex-home"), &gh).await.unwrap_err();
    assert_eq!((err.exit(), err.exit().code()), (AgentExit::NothingToRevise, 42), "{err}");
    let _ = std::fs::remove_dir_all(&w.root);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_pod_the_agent_runs_in_a_container_of_its_own_reached_only_through_the_shared_directory() {
    let w = tokio::task::spawn_blocking(|| world("pod")).await.unwrap();
    w.start_proxy().await;
    let gh = w.provider();
    let n = w.issue("Say hello");
    // The agent's container: the host on the shared volume, with no credential in its
    // environment (the pod gives it no Secret).
    let shared = w.root.join("shared");
    let host_dir = shared.join("host");
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .arg("agent-host")
        .arg(&host_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .spawn()
        .unwrap();
    let mut input = w.input("private", n, "Say hello", WriteScope::Unrestricted, false);
    input.agent_dir = shared.join("work");
    let mut codex = w.codex("unused-home");
    codex.home = shared.join("work/codex-home");
    codex.agent = None;
    codex.host = Some(host_dir.clone());
    let out = run(input, &codex, &gh).await.unwrap();
    assert!(out.pr_created, "{out:?}");
    assert_eq!(out.changed_paths, vec!["hello.sh"]);
    assert!(out.report.summary.starts_with("Added `hello.sh`"), "{:?}", out.report);
    // Codex ran in the host: its output and exit are in the shared directory.
    let files: Vec<String> =
        std::fs::read_dir(&host_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.iter().filter(|f| f.ends_with(".exit")).count(), 1, "{files:?}");
    assert!(!w.root.join("private/agent").exists(), "the agent's tree is on the shared volume, not beside the runner's clone");
    assert!(shared.join("work/repo/hello.sh").exists());
    let _ = host.kill();
    let _ = host.wait();
    no_canary(&shared, &[&w.bot, MODEL_KEY]);
}
