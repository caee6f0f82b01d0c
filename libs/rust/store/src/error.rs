//! Errors of the storage layer. Each variant's message is short and its cause is its `source()`,
//! so a chain printed with `ck8s_domain::report` names every cause once.

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed")]
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
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_named_once() {
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(e.is_unavailable());
        let shown = ck8s_domain::report::chain(&e);
        assert_eq!(shown.matches("pool timed out").count(), 1, "{shown}");
        assert!(shown.starts_with("database unavailable: "), "{shown}");
    }
}
