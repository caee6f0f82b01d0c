//! Errors of the storage layer.

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// A unique or foreign-key constraint rejected the write.
    #[error("constraint {constraint} violated")]
    Constraint {
        /// Name of the violated constraint.
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.constraint().is_some() => {
                StoreError::Constraint { constraint: db.constraint().unwrap_or_default().to_string(), source: e }
            }
            _ => StoreError::Database(e),
        }
    }
}
