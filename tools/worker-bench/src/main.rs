//! worker-bench: measures the worker binary on a fresh database with the local runtime.
//!
//! 1. Latency from a run becoming `pending` (insert + NOTIFY, as ingest does) to its job being
//!    created (`run.started`), p50/p95, beside the bare LISTEN/NOTIFY round trip of the same
//!    PostgreSQL measured in the same run.
//! 2. The worker's CPU time per minute while it holds N running runs whose jobs are alive but
//!    idle, beside the same worker holding none, measured in the same run.
//!
//! Usage: `cargo run --release -p worker-bench -- [--runs 200] [--held 10000] [--window 30]`

use anyhow::{Context, Result};
use ck8s_testkit::process::{ServiceProcess, bin_path};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> Result<u64> {
    Ok(args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()
        .with_context(|| format!("{name} expects a number"))?
        .unwrap_or(default))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn start_worker(env: Vec<(String, String)>, dir: &std::path::Path, command: &str) -> ServiceProcess {
    let mut e = env;
    e.extend(
        [
            ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("CODEXK8S_WORKER_ID", "bench-worker".to_string()),
            ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR", dir.display().to_string()),
            ("CODEXK8S_WORKER_JOB_COMMAND", command.to_string()),
            ("RUST_LOG", "warn,worker::startup=info".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    ServiceProcess::start(&bin_path("worker"), &e, &["http"])
}

async fn notify_baseline(db: &ck8s_testkit::TestDb, n: usize) -> Result<Vec<f64>> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool).await?;
    listener.listen("bench_baseline").await?;
    let mut out = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query("SELECT pg_notify('bench_baseline', 'x')").execute(&db.pool).await?;
        listener.recv().await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = arg(&args, "--runs", 200)? as usize;
    let held = arg(&args, "--held", 10_000)? as usize;
    let window = Duration::from_secs(arg(&args, "--window", 30)?);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    eprintln!("worker-bench: starting PostgreSQL and a worker on a fresh database");
    let db = ck8s_testkit::fresh_db().await;
    let project: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('bench', 'bench') RETURNING id").fetch_one(&db.pool).await?;
    let dir = std::env::temp_dir().join(format!("ck8s-worker-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // 1. Pending -> job created.
    let (env, d) = (db.env(), dir.clone());
    let worker = tokio::task::spawn_blocking(move || start_worker(env, &d, "true")).await?;
    let payload = ck8s_testkit::fixtures::run_spec(project, uuid::Uuid::nil(), 1, &[]).to_value();
    for i in 0..n {
        let mut tx = db.pool.begin().await?;
        let id: uuid::Uuid = sqlx::query_scalar("INSERT INTO agent_runs (correlation_id, project_id, run_payload, runtime_mode, issue_number) VALUES ($1, $2, $3, 'code-only', 1) RETURNING id")
            .bind(format!("lat-{i}"))
            .bind(project)
            .bind(&payload)
            .fetch_one(&mut *tx)
            .await?;
        ck8s_store::ingest::notify_run_pending(&mut tx, id).await?;
        tx.commit().await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE event_type = 'run.started'").fetch_one(&db.pool).await?;
        if done as usize >= n || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lat: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM e.created_at - r.created_at) * 1000)::float8 FROM agent_runs r
           JOIN flow_events e ON e.run_id = r.id AND e.event_type = 'run.started' WHERE r.correlation_id LIKE 'lat-%'",
    )
    .fetch_all(&db.pool)
    .await?;
    lat.sort_by(f64::total_cmp);
    let base = notify_baseline(&db, n).await?;
    println!("worker-bench ({profile} build, local runtime)");
    println!("pending -> job created ({} runs, NOTIFY wake-up, poll every 5 s as fallback):", lat.len());
    println!("  worker:            p50 {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms", pct(&lat, 0.5), pct(&lat, 0.95), pct(&lat, 1.0));
    println!(
        "  baseline NOTIFY:   p50 {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms  (bare LISTEN/NOTIFY round trip)",
        pct(&base, 0.5),
        pct(&base, 0.95),
        pct(&base, 1.0)
    );
    drop(worker);

    // 2. CPU while holding `held` running runs whose jobs are alive and idle.
    sqlx::query(
        "UPDATE agent_runs SET status = 'succeeded', finished_at = now(), lease_owner = NULL, lease_until = NULL WHERE status = 'running'",
    )
    .execute(&db.pool)
    .await?;
    let (env, d) = (db.env(), dir.clone());
    let worker = tokio::task::spawn_blocking(move || start_worker(env, &d, "true")).await?;
    let pid = worker_pid(&worker).context("worker pid")?;
    let c0 = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let idle = cpu_seconds(pid) - c0;
    drop(worker);

    // One long-lived idle process group stands in for every job.
    let mut sleeper = tokio::process::Command::new("sleep").arg("3600").process_group(0).kill_on_drop(true).spawn()?;
    let sleeper_pid = sleeper.id().context("sleeper pid")?;
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO agent_runs (correlation_id, project_id, run_payload, runtime_mode, status, started_at, namespace, job_name, deadline_at)
         SELECT 'held-' || g, $1, $2, 'code-only', 'running', now(), 'held', 'job-' || g, now() + interval '5 hours' FROM generate_series(1, $3) g",
    )
    .bind(project)
    .bind(&payload)
    .bind(held as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for g in 1..=held {
        let d = dir.join("held").join(format!("job-{g}"));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("pid"), sleeper_pid.to_string())?;
    }
    let (env, d) = (db.env(), dir.clone());
    let worker = tokio::task::spawn_blocking(move || start_worker(env, &d, "true")).await?;
    let pid = worker_pid(&worker).context("worker pid")?;
    let c0 = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let loaded = cpu_seconds(pid) - c0;
    let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE status = 'running' AND lease_owner = 'bench-worker'")
        .fetch_one(&db.pool)
        .await?;
    let still_running: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE status = 'running'").fetch_one(&db.pool).await?;
    let per_min = |s: f64| s * 60.0 / window.as_secs_f64();
    println!("worker CPU over {} s (default limits: 200 running runs reconciled per 5 s tick):", window.as_secs());
    println!(
        "  holding {held:>6} running runs: {:>6.2} CPU-s/min ({leased} leases renewed so far, {still_running} still running)",
        per_min(loaded)
    );
    println!("  baseline, holding none:   {:>6.2} CPU-s/min", per_min(idle));
    drop(worker);
    let _ = sleeper.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn worker_pid(w: &ServiceProcess) -> Option<u32> {
    w.pid()
}
