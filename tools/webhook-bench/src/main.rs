//! webhook-bench: drives the real api-gateway (and through it control-plane and PostgreSQL)
//! with signed GitHub deliveries — a mix of `run:dev` triggers, ignored labels and 30 %
//! duplicates of earlier deliveries spread over the whole run — at increasing concurrency, and
//! prints per level deliveries per second, p50/p95/p99 latency, CPU per delivery of the services
//! (gateway and control-plane) and of PostgreSQL, next to the raw single-row INSERT+COMMIT rate of
//! the same PostgreSQL at the same concurrency, measured in the same run, and the ratio of the two.
//! `--history N` stores N finished runs of the same repository first, to show that the cost of a
//! delivery does not grow with history. Exactly-once is checked at the end: one run per trigger.
//!
//! Then, label → job end to end: with a worker started too (local runtime, jobs that exit at
//! once), `run:dev` deliveries are sent at a steady rate (open loop: each at its own scheduled
//! time, whatever the answers before it took) and every run's latency is taken from the moment
//! its delivery was sent to its job being created (`run.started`), split into the ingest part
//! (sent → run row) and the worker part (run row → job: NOTIFY, claim, namespace, launch).
//!
//! `CODEXK8S_INGEST_BATCH_*` settings in the environment pass through to control-plane.
//!
//! Usage: `cargo run --release -p webhook-bench -- [--deliveries N] [--levels 1,4,16,32] [--history N]
//! [--e2e-rates 10,25,50] [--e2e-seconds 10]` (`--e2e-rates 0` skips the end-to-end part)

use anyhow::{Context, Result, bail};
use ck8s_testkit::github::{example, with_labels, with_number, with_repo_and_sender};
use ck8s_testkit::process::{INTERNAL_TOKEN, ServiceProcess, bin_path, control_plane_env, http_post};
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "bench-webhook-secret-0123";

struct Delivery {
    id: String,
    body: Vec<u8>,
    signature: String,
}

/// splitmix64: a well-spread pseudo-random number from `k` (deterministic, so runs compare).
fn spread(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CPU time (user + system, in clock ticks) a process used, with its reaped children's.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17: indices 11-14 after the state field.
    f.get(11..15).map_or(0, |v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
}

/// The parent of a process (field 4 of its `/proc` stat, after the command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The children of `parent` (PostgreSQL's backends and workers under its postmaster).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter(|pid| parent_of(*pid) == Some(parent)).collect()
}

/// CPU ticks of a PostgreSQL server: its postmaster (with reaped children) and its live children.
fn postgres_ticks(postmaster: u32) -> u64 {
    cpu_ticks(postmaster) + children(postmaster).into_iter().map(cpu_ticks).sum::<u64>()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The `p` quantile of sorted milliseconds (0 when there are none).
fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    sorted_ms[((sorted_ms.len() as f64 - 1.0) * p).round() as usize]
}

/// The delivery mix of one level: 50 % triggers on fresh issues, 20 % ignored labels, 30 %
/// repeats of earlier delivery ids.
fn deliveries(level: usize, n: usize) -> Vec<Delivery> {
    let secret = SecretString::from(SECRET.to_string());
    let base = with_repo_and_sender(example("issues", Some("labeled")), 4242, "acme/app", "alice", "User");
    let mut out: Vec<Delivery> = Vec::with_capacity(n);
    for k in 0..n {
        let slot = k % 10;
        if slot >= 7 && !out.is_empty() {
            // Any earlier delivery, spread over the run (not always the first one).
            let prior = &out[(spread(k as u64) % out.len() as u64) as usize];
            out.push(Delivery { id: prior.id.clone(), body: prior.body.clone(), signature: prior.signature.clone() });
            continue;
        }
        let (label, labels): (&str, Vec<&str>) = if slot < 5 { ("run:dev", vec!["run:dev"]) } else { ("bug", vec!["bug"]) };
        let issue = (level * 1_000_000 + k + 1) as i64;
        let v = with_number(with_labels(base.clone(), Some(label), &labels, "issue"), "issue", issue);
        let body = serde_json::to_vec(&v).unwrap_or_default();
        let signature = ck8s_crypto::github_signature(&secret, &body);
        out.push(Delivery { id: format!("bench-{level}-{k}"), body, signature });
    }
    out
}

/// Sends all deliveries with `concurrency` client threads; returns (elapsed, latencies, answers by status).
fn drive(addr: std::net::SocketAddr, items: Vec<Delivery>, concurrency: usize) -> (Duration, Vec<Duration>, [usize; 3]) {
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (items, next) = (items.clone(), next.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut counts = [0usize; 3]; // 202, 200, other
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(d) = items.get(i) else { break };
                    let t = Instant::now();
                    let (status, _) = http_post(
                        addr,
                        "/api/v1/webhooks/github",
                        &[("X-GitHub-Delivery", &d.id), ("X-GitHub-Event", "issues"), ("X-Hub-Signature-256", &d.signature)],
                        &d.body,
                    );
                    lat.push(t.elapsed());
                    counts[match status {
                        202 => 0,
                        200 => 1,
                        _ => 2,
                    }] += 1;
                }
                (lat, counts)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut counts = [0usize; 3];
    for h in handles {
        if let Ok((l, c)) = h.join() {
            all.extend(l);
            for i in 0..3 {
                counts[i] += c[i];
            }
        }
    }
    let elapsed = started.elapsed();
    all.sort();
    (elapsed, all, counts)
}

/// Raw single-row INSERT+COMMIT rate with `concurrency` connections, for `window`.
async fn baseline(pool: &sqlx::PgPool, concurrency: usize, rows: usize) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < rows {
                sqlx::query("INSERT INTO bench_baseline (payload) VALUES ('{\"k\": 1}'::jsonb)").execute(&pool).await?;
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The postmaster's pid: the parent of this connection's backend process.
async fn parent_of_backend(pool: &sqlx::PgPool) -> u32 {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.unwrap_or(0);
    u32::try_from(backend).ok().and_then(parent_of).unwrap_or(0)
}

fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Label → job at a steady `rate` for `seconds`: returns the per-run milliseconds of (ingest,
/// worker, total) and how many deliveries were answered with something other than 202.
async fn end_to_end(db: &ck8s_testkit::TestDb, addr: std::net::SocketAddr, rate: u32, seconds: u32) -> Result<(Vec<[f64; 3]>, usize)> {
    let secret = SecretString::from(SECRET.to_string());
    let base = with_repo_and_sender(example("issues", Some("labeled")), 4242, "acme/app", "alice", "User");
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let t0 = tokio::time::Instant::now();
    let mut sends = Vec::with_capacity(total);
    for k in 0..total {
        tokio::time::sleep_until(t0 + interval * k as u32).await;
        let issue = (9_000_000 + rate as usize * 100_000 + k) as i64;
        let v = with_number(with_labels(base.clone(), Some("run:dev"), &["run:dev"], "issue"), "issue", issue);
        let body = serde_json::to_vec(&v)?;
        let signature = ck8s_crypto::github_signature(&secret, &body);
        let id = format!("e2e-{rate}-{k}");
        sends.push(tokio::task::spawn_blocking(move || {
            let sent = SystemTime::now();
            let headers = [("X-GitHub-Delivery", id.as_str()), ("X-GitHub-Event", "issues"), ("X-Hub-Signature-256", signature.as_str())];
            let (status, _) = http_post(addr, "/api/v1/webhooks/github", &headers, &body);
            (id, seconds_since_epoch(sent), status)
        }));
    }
    let mut sent_at = std::collections::HashMap::new();
    let mut refused = 0;
    for s in sends {
        let (id, at, status) = s.await?;
        if status == 202 {
            sent_at.insert(id, at);
        } else {
            refused += 1;
        }
    }
    // Wait (bounded) until every accepted delivery's job exists.
    let prefix = format!("e2e-{rate}-%");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM agent_runs r JOIN flow_events e ON e.run_id = r.id AND e.event_type = 'run.started'
              WHERE r.correlation_id LIKE $1",
        )
        .bind(&prefix)
        .fetch_one(&db.pool)
        .await?;
        if started as usize >= sent_at.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {started} of {} jobs were created within two minutes", sent_at.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, f64, f64)> = sqlx::query_as(
        "SELECT r.correlation_id, extract(epoch FROM r.created_at)::float8, extract(epoch FROM min(e.created_at))::float8
           FROM agent_runs r JOIN flow_events e ON e.run_id = r.id AND e.event_type = 'run.started'
          WHERE r.correlation_id LIKE $1 GROUP BY r.id",
    )
    .bind(&prefix)
    .fetch_all(&db.pool)
    .await?;
    // Exactly once: one run per accepted delivery, one job per run.
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE correlation_id LIKE $1").bind(&prefix).fetch_one(&db.pool).await?;
    let launched_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT e.run_id FROM flow_events e JOIN agent_runs r ON r.id = e.run_id
                                WHERE e.event_type = 'run.started' AND r.correlation_id LIKE $1 GROUP BY e.run_id HAVING count(*) > 1) d",
    )
    .bind(&prefix)
    .fetch_one(&db.pool)
    .await?;
    if runs as usize != sent_at.len() || rows.len() != sent_at.len() || launched_twice != 0 {
        bail!("{} accepted deliveries made {runs} runs and {} jobs ({launched_twice} runs launched twice)", sent_at.len(), rows.len());
    }
    let lat = rows
        .into_iter()
        .filter_map(|(id, created, started)| {
            let sent = sent_at.get(&id)?;
            Some([(created - sent) * 1000.0, (started - created) * 1000.0, (started - sent) * 1000.0])
        })
        .collect();
    Ok((lat, refused))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, "--deliveries").map(|v| v.parse()).transpose().context("--deliveries expects a number")?.unwrap_or(400);
    let levels: Vec<usize> = arg(&args, "--levels")
        .unwrap_or_else(|| "1,4,16,32".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--levels expects numbers such as 1,4,16")?;
    if n == 0 || levels.is_empty() || levels.contains(&0) {
        bail!("--deliveries and every level must be positive");
    }
    let history: i64 = arg(&args, "--history").map(|v| v.parse()).transpose().context("--history expects a number of runs")?.unwrap_or(0);
    let rates: Vec<u32> = arg(&args, "--e2e-rates")
        .unwrap_or_else(|| "10,25,50".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<Vec<u32>, _>>()
        .context("--e2e-rates expects deliveries per second such as 10,25,50")?
        .into_iter()
        .filter(|r| *r > 0)
        .collect();
    let e2e_seconds: u32 =
        arg(&args, "--e2e-seconds").map(|v| v.parse()).transpose().context("--e2e-seconds expects a number")?.unwrap_or(10);

    eprintln!("webhook-bench: starting PostgreSQL, control-plane and api-gateway on a fresh database");
    let db = ck8s_testkit::fresh_db().await;
    let mut cp_env = control_plane_env(&db, &[("CODEXK8S_DB_MAX_CONNECTIONS", "32"), ("RUST_LOG", "warn,control_plane::startup=info")]);
    // Batching settings to compare (CODEXK8S_INGEST_BATCH_*) pass through to control-plane.
    cp_env.extend(std::env::vars().filter(|(k, _)| k.starts_with("CODEXK8S_INGEST_BATCH_")));
    let (cp, gw) = tokio::task::spawn_blocking(move || {
        let cp = ServiceProcess::start(&bin_path("control-plane"), &cp_env, &["http", "grpc"]);
        let _ = cp.wait_http_ok("http", "/readyz", Duration::from_secs(20));
        let gw_env = vec![
            ("CODEXK8S_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("CODEXK8S_ADMIN_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET".to_string(), format!("http://{}", cp.addr("grpc"))),
            ("CODEXK8S_GITHUB_WEBHOOK_SECRET".to_string(), SECRET.to_string()),
            ("CODEXK8S_INTERNAL_API_TOKEN".to_string(), INTERNAL_TOKEN.to_string()),
            ("RUST_LOG".to_string(), "warn,api_gateway::startup=info".to_string()),
        ];
        let gw = ServiceProcess::start(&bin_path("api-gateway"), &gw_env, &["http"]);
        let _ = gw.wait_http_ok("http", "/readyz", Duration::from_secs(20));
        (cp, gw)
    })
    .await?;
    let addr = gw.addr("http");
    if history > 0 {
        eprintln!("webhook-bench: storing {history} finished runs of acme/app first");
        let started = Instant::now();
        sqlx::query(
            "INSERT INTO agent_runs (correlation_id, project_id, repository_id, repository_full_name, run_payload, runtime_mode,
                                     issue_number, status, started_at, finished_at)
             SELECT 'history-' || g, r.project_id, r.id, 'acme/app', '{}'::jsonb, 'code-only', (g % 2000000000)::int + 1,
                    'succeeded', now(), now()
               FROM generate_series(1, $1) g, repositories r WHERE r.owner = 'acme' AND r.name = 'app'",
        )
        .bind(history)
        .execute(&db.pool)
        .await?;
        sqlx::query("ANALYZE agent_runs").execute(&db.pool).await?;
        eprintln!("webhook-bench: stored in {:.1}s", started.elapsed().as_secs_f64());
    }
    let postmaster = parent_of_backend(&db.pool).await;
    let (cp_pid, gw_pid) = (cp.pid().unwrap_or(0), gw.pid().unwrap_or(0));
    let tick = ticks_per_second();
    sqlx::query("CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, payload jsonb NOT NULL)").execute(&db.pool).await?;
    let base_pool = sqlx::postgres::PgPoolOptions::new().max_connections(64).connect_with(db.config.options()).await?;

    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!(
        "webhook-bench ({profile} build, {n} deliveries per level: 50% run:dev triggers, 20% ignored labels, 30% duplicates; {history} runs stored before)"
    );
    println!(
        "{:>11} {:>13} {:>8} {:>8} {:>8} {:>10} {:>7} {:>15} {:>12} {:>12} | {:>26} {:>7}",
        "concurrency",
        "deliveries/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "202/200",
        "errors",
        "svc CPU ms/dlv",
        "pg CPU ms/dlv",
        "(gw/cp/client)",
        "baseline INSERT+COMMIT/s",
        "ratio"
    );
    for &c in &levels {
        let items = deliveries(c, n);
        let me = std::process::id();
        let (gw0, cp0, client0, pg0) = (cpu_ticks(gw_pid), cpu_ticks(cp_pid), cpu_ticks(me), postgres_ticks(postmaster));
        let (elapsed, lat, counts) = tokio::task::spawn_blocking(move || drive(addr, items, c)).await?;
        let lat: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let (gw1, cp1, client1, pg1) = (cpu_ticks(gw_pid), cpu_ticks(cp_pid), cpu_ticks(me), postgres_ticks(postmaster));
        let (svc0, svc1) = (gw0 + cp0, gw1 + cp1);
        let rate = baseline(&base_pool, c, n).await?;
        let per = |ticks: u64| ticks as f64 / tick * 1000.0 / n as f64;
        let throughput = n as f64 / elapsed.as_secs_f64();
        println!(
            "{:>11} {:>13.0} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>7} {:>15.2} {:>12.2} {:>12} | {:>26.0} {:>7.3}",
            c,
            throughput,
            percentile(&lat, 0.50),
            percentile(&lat, 0.95),
            percentile(&lat, 0.99),
            format!("{}/{}", counts[0], counts[1]),
            counts[2],
            per(svc1.saturating_sub(svc0)),
            per(pg1.saturating_sub(pg0)),
            format!("{:.2}/{:.2}/{:.2}", per(gw1.saturating_sub(gw0)), per(cp1.saturating_sub(cp0)), per(client1.saturating_sub(client0))),
            rate,
            throughput / rate
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_runs").fetch_one(&db.pool).await?;
    let runs = stored - history;
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&db.pool).await?;
    // Every level sends ceil-free exact counts: per 10 deliveries, 5 triggers, 2 ignores, 3 repeats.
    let expected_runs: i64 = levels.iter().map(|_| (0..n).filter(|k| k % 10 < 5).count() as i64).sum();
    println!("stored: {deliveries} distinct deliveries, {runs} runs (expected {expected_runs}: one per trigger delivery)");
    if runs != expected_runs {
        bail!("run count mismatch: duplicates created runs or triggers were lost");
    }
    if !rates.is_empty() {
        let dir = std::env::temp_dir().join(format!("ck8s-webhook-bench-{}", std::process::id()));
        let mut env = db.env();
        env.extend(
            [
                ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0".to_string()),
                ("CODEXK8S_WORKER_ID", "bench-worker".to_string()),
                ("CODEXK8S_WORKER_LOCAL_RUNTIME_DIR", dir.display().to_string()),
                // Jobs that exit at once: the launch is measured, not the agent.
                ("CODEXK8S_WORKER_JOB_COMMAND", "true".to_string()),
                ("CODEXK8S_WORKER_SLOTS_PER_PROJECT", "100".to_string()),
                ("CODEXK8S_WORKER_CLAIM_LIMIT", "50".to_string()),
                ("CODEXK8S_WORKER_POLL_INTERVAL", "1s".to_string()),
                ("CODEXK8S_CONTROL_PLANE_GRPC_TARGET", format!("http://{}", cp.addr("grpc"))),
                ("RUST_LOG", "warn,worker::startup=info".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        // Worker settings to compare (CODEXK8S_WORKER_*) pass through, over the ones above.
        env.extend(std::env::vars().filter(|(k, _)| k.starts_with("CODEXK8S_WORKER_")));
        // The runs of the throughput levels are not the worker's business: they are finished first.
        sqlx::query("UPDATE agent_runs SET status = 'succeeded', started_at = now(), finished_at = now() WHERE status = 'pending'")
            .execute(&db.pool)
            .await?;
        let worker = tokio::task::spawn_blocking(move || {
            let w = ServiceProcess::start(&bin_path("worker"), &env, &["http"]);
            let _ = w.wait_http_ok("http", "/readyz", Duration::from_secs(20));
            w
        })
        .await?;
        println!();
        println!(
            "label -> job created, end to end ({e2e_seconds} s of run:dev deliveries at each steady rate; worker on the local runtime):"
        );
        println!(
            "{:>10} {:>6} {:>8} | {:>26} | {:>26} | {:>26}",
            "rate/s", "runs", "non-202", "ingest p50/p95/p99 ms", "worker p50/p95/p99 ms", "total p50/p95/p99 ms"
        );
        for &rate in &rates {
            let (lat, refused) = end_to_end(&db, addr, rate, e2e_seconds).await?;
            let part = |i: usize| {
                let mut v: Vec<f64> = lat.iter().map(|l| l[i]).collect();
                v.sort_by(f64::total_cmp);
                format!("{:>8.1} {:>8.1} {:>8.1}", percentile(&v, 0.5), percentile(&v, 0.95), percentile(&v, 0.99))
            };
            println!("{:>10} {:>6} {:>8} | {} | {} | {}", rate, lat.len(), refused, part(0), part(1), part(2));
        }
        drop(worker);
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop((cp, gw));
    Ok(())
}
