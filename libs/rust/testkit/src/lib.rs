//! Test support for codex-k8s: starts (or reuses) the embedded PostgreSQL 18 + pgvector server
//! through `scripts/pg.sh`, keeps one migrated template database per schema version, and gives
//! every test its own fresh database cloned from that template, so tests are isolated and fast.
//!
//! `cluster` does the same for the test Kubernetes cluster (`tools/test-cluster/cluster.sh`).
//!
//! Databases are named `t_<pid>_<n>`; those left behind by finished test processes are dropped
//! the next time a test process creates its template.

// Test support fails loudly: a panic with a message is how it reports a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod codex;
pub mod fixtures;
pub mod forge;
pub mod process;

use ck8s_store::{DbConfig, MIGRATOR};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Executor, PgPool, Row};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The repository root (for scripts and fixtures).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// The running embedded server.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// Loopback port.
    pub port: u16,
}

/// Starts the server once per process (idempotent across processes too) and returns it.
///
/// # Panics
/// If the server cannot be installed or started: the message says why and what to run.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = repo_root().join("scripts/pg.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if !out.status.success() {
            panic!(
                "embedded PostgreSQL did not start ({}):\n{}\nRun `scripts/pg.sh start` to see the full error.",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected URL from pg.sh: {url:?}"));
        PgServer { port }
    })
}

impl PgServer {
    /// Connection settings for `database` on this server.
    pub fn config(&self, database: &str) -> DbConfig {
        DbConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            name: database.into(),
            user: "postgres".into(),
            password: None,
            ssl_mode: PgSslMode::Disable,
            max_connections: 10,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            idle_in_transaction_timeout: Duration::from_secs(300),
        }
    }

    fn options(&self, database: &str) -> PgConnectOptions {
        self.config(database).options()
    }

    /// A single admin connection to the `postgres` database.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(&self.options("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to embedded PostgreSQL on port {}: {e}", self.port))
    }
}

/// A fresh, migrated database that belongs to one test.
pub struct TestDb {
    /// Pool connected to the database.
    pub pool: PgPool,
    /// Database name.
    pub name: String,
    /// Settings that reach it (for services started by the test).
    pub config: DbConfig,
}

impl TestDb {
    /// Environment variables that point a codex-k8s service at this database.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CODEXK8S_DB_HOST".into(), self.config.host.clone()),
            ("CODEXK8S_DB_PORT".into(), self.config.port.to_string()),
            ("CODEXK8S_DB_NAME".into(), self.config.name.clone()),
            ("CODEXK8S_DB_USER".into(), self.config.user.clone()),
            ("CODEXK8S_DB_SSLMODE".into(), "disable".into()),
        ]
    }
}

/// Name of the template for the current set of migrations (changes when any migration does).
pub fn template_name() -> String {
    let mut h = Sha256::new();
    for m in MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    format!("tpl_{}", &hex::encode(h.finalize())[..16])
}

/// An empty database with no migrations applied (for testing the migrations themselves).
pub async fn empty_db() -> TestDb {
    create_db(None).await
}

/// A fresh database with the full schema, cloned from the migrated template.
pub async fn fresh_db() -> TestDb {
    let tpl = ensure_template().await;
    create_db(Some(&tpl)).await
}

async fn create_db(template: Option<&str>) -> TestDb {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let srv = server();
    let name = format!("t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = srv.admin().await;
    let sql = match template {
        Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    // Cloning fails while another session is connected to the template; retry briefly.
    let mut attempt = 0;
    loop {
        match admin.execute(sql.as_str()).await {
            Ok(_) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database {name}: {e}"),
        }
    }
    admin.close().await.ok();
    let config = srv.config(&name);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(config.options())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {name}: {e}"));
    TestDb { pool, name, config }
}

async fn ensure_template() -> String {
    let srv = server();
    let tpl = template_name();
    let mut admin = srv.admin().await;
    // One process at a time creates templates and sweeps leftovers.
    admin.execute("SELECT pg_advisory_lock(727274)").await.expect("advisory lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&tpl)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    if !exists {
        let building = format!("{tpl}_building");
        admin.execute(format!("DROP DATABASE IF EXISTS \"{building}\"").as_str()).await.expect("drop stale template");
        admin.execute(format!("CREATE DATABASE \"{building}\"").as_str()).await.expect("create template");
        {
            let mut c = PgConnection::connect_with(&srv.options(&building)).await.expect("connect to template");
            MIGRATOR.run(&mut c).await.unwrap_or_else(|e| panic!("migrations failed on the template: {e}"));
            c.close().await.ok();
        }
        admin.execute(format!("ALTER DATABASE \"{building}\" RENAME TO \"{tpl}\"").as_str()).await.expect("publish template");
    }
    sweep_leftovers(&mut admin).await;
    admin.execute("SELECT pg_advisory_unlock(727274)").await.ok();
    admin.close().await.ok();
    tpl
}

/// Drops databases of test processes that have ended.
async fn sweep_leftovers(admin: &mut PgConnection) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let rows = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'").fetch_all(&mut *admin).await.unwrap_or_default();
    for row in rows {
        let name: String = row.get(0);
        let pid: Option<u32> = name.split('_').nth(1).and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = admin.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await;
        }
    }
}

pub mod github;

/// Every file under `dir`, recursively, links not followed (an agent may plant a link to `/`;
/// missing directories give none).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) { out.extend(files_under(&p)) } else { out.push(p) }
        }
    }
    out
}

/// Decodes GitHub's base64 file content (which wraps lines).
pub fn decode_base64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.replace('\n', "")).expect("base64 content")
}
