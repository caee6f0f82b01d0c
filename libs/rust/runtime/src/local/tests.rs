use super::*;
use std::collections::BTreeMap;

fn root(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ck8s-local-runtime-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec(job: &str, script: &str) -> JobSpec {
    JobSpec {
        run_id: "run-1".into(),
        correlation_id: "c-1".into(),
        project_id: "p".into(),
        namespace: "codex-issue-p-i1".into(),
        job_name: job.into(),
        image: "unused".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        agent_command: vec![],
        env: BTreeMap::from([("CODEXK8S_RUN_ID".to_string(), "run-1".to_string())]),
        secret_env: BTreeMap::new(),
        active_deadline: Duration::from_secs(60),
        service_account: None,
    }
}

async fn wait_terminal(rt: &LocalRuntime, job: &JobRef) -> JobState {
    for _ in 0..200 {
        let s = rt.status(job).await.unwrap();
        if s.is_terminal() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job did not finish");
}

#[tokio::test]
async fn a_job_runs_to_success_with_its_env_and_logs() {
    let rt = LocalRuntime::new(root("ok"));
    let mut s = spec("job-ok", "echo started for $CODEXK8S_RUN_ID; test \"$BOT_TOKEN\" = \"t'k en\" && echo secret-visible");
    s.secret_env.insert("BOT_TOKEN".into(), "t'k en".into());
    let job = rt.launch(&s).await.unwrap();
    assert_eq!(wait_terminal(&rt, &job).await, JobState::Succeeded);
    let logs = rt.logs(&job, None).await.unwrap();
    assert!(logs.contains("started for run-1") && logs.contains("secret-visible"), "{logs}");
    let dir = rt.job_dir(&job);
    assert!(!dir.join("secrets.env").exists(), "the wrapper removes the secrets file once read");
    assert!(!std::fs::read_to_string(dir.join("run.sh")).unwrap().contains("t'k en"), "secrets never in the wrapper");
    assert_eq!(rt.logs(&job, Some(1)).await.unwrap(), "secret-visible");
}

#[tokio::test]
async fn failures_carry_the_exit_code_and_deadlines_stop_jobs() {
    let rt = LocalRuntime::new(root("fail"));
    let job = rt.launch(&spec("job-fail", "echo oops >&2; exit 3")).await.unwrap();
    assert_eq!(wait_terminal(&rt, &job).await, JobState::Failed { reason: "exit code 3".into(), exit_code: Some(3) });
    assert!(rt.logs(&job, None).await.unwrap().contains("oops"));

    let mut s = spec("job-slow", "sleep 30");
    s.active_deadline = Duration::from_secs(1);
    let job = rt.launch(&s).await.unwrap();
    assert_eq!(wait_terminal(&rt, &job).await, JobState::Failed { reason: "active deadline exceeded".into(), exit_code: Some(124) });
}

#[tokio::test]
async fn launching_twice_starts_one_process_and_another_worker_sees_the_same_job() {
    let dir = root("idem");
    let rt = LocalRuntime::new(&dir);
    let s = spec("job-once", "echo tick >> ../ticks; sleep 0.3");
    let a = rt.launch(&s).await.unwrap();
    let b = rt.launch(&s).await.unwrap();
    assert_eq!(a, b);
    let other_worker = LocalRuntime::new(&dir);
    assert_eq!(wait_terminal(&other_worker, &a).await, JobState::Succeeded);
    assert_eq!(std::fs::read_to_string(rt.job_dir(&a).join("ticks")).unwrap().lines().count(), 1);
    let missing = JobRef { namespace: "codex-issue-p-i1".into(), job_name: "never-launched".into() };
    assert_eq!(rt.status(&missing).await.unwrap(), JobState::NotFound);
}

#[tokio::test]
async fn cancel_kills_the_whole_group_and_is_idempotent() {
    let rt = LocalRuntime::new(root("cancel"));
    let job = rt.launch(&spec("job-cancel", "sleep 300 & sleep 300; wait")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rt.status(&job).await.unwrap(), JobState::Running);
    let pgid = LocalRuntime::read_i32(&rt.job_dir(&job).join("pid")).unwrap();
    assert!(LocalRuntime::group_alive(pgid));
    rt.cancel(&job).await.unwrap();
    assert!(!LocalRuntime::group_alive(pgid), "no process of the job may survive, grandchildren included");
    assert_eq!(rt.status(&job).await.unwrap(), JobState::Failed { reason: "canceled".into(), exit_code: None });
    rt.cancel(&job).await.unwrap();
    let missing = JobRef { namespace: "codex-issue-p-i1".into(), job_name: "gone".into() };
    rt.cancel(&missing).await.unwrap();
}

#[tokio::test]
async fn bad_names_and_commands_are_rejected() {
    let rt = LocalRuntime::new(root("bad"));
    let mut s = spec("../escape", "true");
    assert!(matches!(rt.launch(&s).await, Err(RuntimeError::Invalid(_))));
    s.job_name = "ok".into();
    s.command.clear();
    assert!(matches!(rt.launch(&s).await, Err(RuntimeError::Invalid(_))));
    let evil = JobRef { namespace: "..".into(), job_name: "x".into() };
    assert!(rt.status(&evil).await.is_err() && rt.logs(&evil, None).await.is_err() && rt.cancel(&evil).await.is_err());
}

#[tokio::test]
async fn a_huge_job_log_is_read_from_its_end_only() {
    let rt = LocalRuntime::new(root("huge-log"));
    let job = JobRef { namespace: "codex-issue-p-i9".into(), job_name: "loud".into() };
    std::fs::create_dir_all(rt.job_dir(&job)).unwrap();
    let mut log = "x".repeat(100).repeat(40_000); // 4 MB of one line
    log.push_str("\nsecond to last\nlast\n");
    std::fs::write(rt.job_dir(&job).join("job.log"), &log).unwrap();
    assert_eq!(rt.logs(&job, Some(2)).await.unwrap(), "second to last\nlast");
    let all = rt.logs(&job, None).await.unwrap();
    assert!(all.len() as u64 <= LOG_READ_CAP && all.ends_with("last\n") && !all.starts_with('x'), "{} bytes", all.len());
}

#[tokio::test]
async fn environments_are_prepared_and_only_managed_ones_deleted() {
    let dir = root("env");
    let rt = LocalRuntime::new(&dir);
    let env = RunEnvironment {
        namespace: "codex-issue-p-i7".into(),
        labels: BTreeMap::from([("codex-k8s.dev/run-id".to_string(), "run-7".to_string())]),
        annotations: BTreeMap::new(),
        access_profile: None,
    };
    rt.prepare(&env).await.unwrap();
    rt.prepare(&env).await.unwrap();
    let mut s = spec("job-in-env", "sleep 300");
    s.namespace = env.namespace.clone();
    let job = rt.launch(&s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pgid = LocalRuntime::read_i32(&rt.job_dir(&job).join("pid")).unwrap();

    let envs = rt.environments().await.unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].metadata["codex-k8s.dev/run-id"], "run-7");
    assert!(envs[0].active, "a live job makes the environment active");

    std::fs::create_dir_all(dir.join("someone-elses")).unwrap();
    assert_eq!(rt.environments().await.unwrap().len(), 1, "unmanaged directories are not listed");
    assert!(matches!(rt.delete_environment("someone-elses").await, Err(RuntimeError::Refused(_))));
    assert!(dir.join("someone-elses").exists());
    let foreign = RunEnvironment { namespace: "someone-elses".into(), ..env.clone() };
    assert!(matches!(rt.prepare(&foreign).await, Err(RuntimeError::Refused(_))), "a directory it did not make is not adopted");
    assert!(!dir.join("someone-elses").join(ENVIRONMENT_FILE).exists());

    rt.delete_environment(&env.namespace).await.unwrap();
    assert!(!dir.join(&env.namespace).exists());
    assert!(!LocalRuntime::group_alive(pgid), "deleting the environment stops its jobs");
    rt.delete_environment(&env.namespace).await.unwrap();
}

#[test]
fn the_runtimes_root_is_its_own_and_private_or_it_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let base = root("open");
    std::fs::create_dir_all(&base).unwrap();
    // Made fresh: 0700.
    let fresh = base.join("runs");
    LocalRuntime::open(&fresh).unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    // An existing one of its own, left open by mistake: closed.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o777)).unwrap();
    LocalRuntime::open(&fresh).unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    // A link planted where the root should be (pointing at a directory its planter controls).
    let planted = base.join("planted");
    std::fs::create_dir_all(base.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(base.join("elsewhere"), &planted).unwrap();
    let err = LocalRuntime::open(&planted).unwrap_err();
    assert!(matches!(&err, RuntimeError::Refused(m) if m.contains("a link") && m.contains("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR")), "{err}");
    // A directory another user made in a shared place.
    let theirs = base.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
    let err = LocalRuntime::open(&theirs).unwrap_err();
    assert!(matches!(&err, RuntimeError::Refused(m) if m.contains("uid 4242")), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}
