//! The worker's errors, mapped once: a tick or a step of a run logs them with their cause chain
//! and goes on; only startup errors end the process.

use ck8s_domain::runtime::RuntimeError;
use ck8s_store::StoreError;
use ck8s_store::runs::{LeaseError, LeaseLost};

/// Something the worker could not do.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the database refused or failed")]
    Store(#[from] StoreError),
    #[error(transparent)]
    LeaseLost(#[from] LeaseLost),
    #[error("the job runtime failed")]
    Runtime(#[from] RuntimeError),
    #[error("run {0} is no longer pending or running; not launching it")]
    NotLive(uuid::Uuid),
    #[error("the Kubernetes runtime cannot start; set KUBECONFIG or run in a cluster, or use CODEXK8S_WORKER_RUNTIME=local")]
    KubernetesSetup(#[source] RuntimeError),
    #[error("the local runtime's directory cannot be used")]
    LocalRuntime(#[source] RuntimeError),
    #[error(transparent)]
    Service(#[from] ck8s_service::ServiceError),
}

impl From<LeaseError> for WorkerError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Lost(l) => WorkerError::LeaseLost(l),
            LeaseError::Store(s) => WorkerError::Store(s),
        }
    }
}
