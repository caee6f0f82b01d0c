//! Connection settings, the pool, and the embedded migrations.

use crate::error::StoreError;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Executor, PgPool};
use std::time::Duration;

/// The schema: forward-only SQL files under `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to reach PostgreSQL (`CODEXK8S_DB_*`).
#[derive(Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Option<SecretString>,
    pub ssl_mode: PgSslMode,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// Longest statement, and longest wait for a lock, before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Longest a session may sit idle inside a transaction (holding its locks) before
    /// PostgreSQL ends it.
    pub idle_in_transaction_timeout: Duration,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl DbConfig {
    /// Connection options (the password, if any, goes straight into the driver).
    pub fn options(&self) -> PgConnectOptions {
        let mut o = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&self.user)
            .ssl_mode(self.ssl_mode)
            .application_name("codex-k8s")
            .options([
                ("statement_timeout", self.statement_timeout.as_millis().to_string()),
                ("lock_timeout", self.statement_timeout.as_millis().to_string()),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction_timeout.as_millis().to_string()),
            ]);
        if let Some(p) = &self.password {
            o = o.password(p.expose_secret());
        }
        o
    }

    /// Human-readable target without credentials, for logs.
    pub fn describe(&self) -> String {
        format!("postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.name)
    }
}

/// Parses `disable|allow|prefer|require|verify-ca|verify-full`.
pub fn parse_ssl_mode(s: &str) -> Option<PgSslMode> {
    s.parse().ok()
}

/// Opens a pool. Connections are established lazily except the first, which proves the
/// database is reachable.
pub async fn connect(cfg: &DbConfig) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.connect_timeout)
        .connect_with(cfg.options())
        .await
        .map_err(StoreError::Unavailable)?;
    Ok(pool)
}

/// Applies every pending migration; a second call changes nothing. Migrations may take longer
/// than a statement may (an index on a large table): they run without the statement timeout.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    conn.execute("SET statement_timeout = 0; SET lock_timeout = 0").await?;
    let ran = MIGRATOR.run(&mut *conn).await.map_err(StoreError::Migration);
    // The connection goes back to the pool: give it the pool's limits again.
    conn.execute("RESET statement_timeout; RESET lock_timeout").await?;
    ran
}

/// The connection pool every service holds.
pub type Pool = PgPool;

/// One connection (a transaction derefs to it): what repository functions run on.
pub type Conn = sqlx::PgConnection;

/// A transaction owned by a use case (repository functions run on it and it decides the commit).
pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Starts a transaction.
pub async fn begin(pool: &Pool) -> Result<Tx, StoreError> {
    Ok(pool.begin().await?)
}

/// Commits a transaction.
pub async fn commit(tx: Tx) -> Result<(), StoreError> {
    Ok(tx.commit().await?)
}

/// How many migrations are applied (the schema version `GetStatus` reports).
pub async fn schema_version(pool: &Pool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?)
}

/// Cheap liveness probe of the database, for `/readyz`.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    pool.execute("SELECT 1").await?;
    Ok(())
}

impl DbConfig {
    /// Reads `CODEXK8S_DB_HOST|PORT|NAME|USER|PASSWORD|SSLMODE|MAX_CONNECTIONS|CONNECT_TIMEOUT|
    /// STATEMENT_TIMEOUT|IDLE_IN_TRANSACTION_TIMEOUT`.
    pub fn read(r: &mut ck8s_config::Reader<'_>) -> Self {
        let ssl = r.string("DB_SSLMODE", "prefer");
        let ssl_mode = parse_ssl_mode(&ssl).unwrap_or_else(|| {
            r.issue("DB_SSLMODE", format!("invalid value {ssl:?}: expected disable, allow, prefer, require, verify-ca or verify-full"));
            PgSslMode::Prefer
        });
        let max_connections = r.parse("DB_MAX_CONNECTIONS", 10u32, "a number of connections, 1-1000");
        if !(1..=1000).contains(&max_connections) {
            r.issue("DB_MAX_CONNECTIONS", "must be between 1 and 1000");
        }
        Self {
            host: r.string("DB_HOST", "127.0.0.1"),
            port: r.port("DB_PORT", 5432),
            name: r.string("DB_NAME", "codex_k8s"),
            user: r.string("DB_USER", "codex_k8s"),
            password: r.opt_secret("DB_PASSWORD"),
            ssl_mode,
            max_connections,
            connect_timeout: r.duration("DB_CONNECT_TIMEOUT", Duration::from_secs(5)),
            statement_timeout: r.duration("DB_STATEMENT_TIMEOUT", Duration::from_secs(60)),
            idle_in_transaction_timeout: r.duration("DB_IDLE_IN_TRANSACTION_TIMEOUT", Duration::from_secs(300)),
        }
    }
}

/// A pool that connects on first use, so a service can start (and report not-ready) while the
/// database is still coming up.
pub fn connect_lazy(cfg: &DbConfig) -> PgPool {
    PgPoolOptions::new().max_connections(cfg.max_connections).acquire_timeout(cfg.connect_timeout).connect_lazy_with(cfg.options())
}
