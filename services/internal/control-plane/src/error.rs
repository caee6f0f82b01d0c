//! control-plane's process-level errors: what ends `control-plane` or `control-plane migrate`,
//! each saying what to check. Use-case errors (`IngestError`) are mapped to gRPC statuses at the
//! edge instead.

use ck8s_store::StoreError;

/// control-plane cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("cannot reach PostgreSQL at {target}; check CODEXK8S_DB_* and that PostgreSQL is running")]
    Connect {
        target: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot apply migrations; check CODEXK8S_DB_* or run `control-plane migrate` separately")]
    Migrate(#[source] StoreError),
    #[error("the gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    #[error(transparent)]
    Service(#[from] ck8s_service::ServiceError),
}
