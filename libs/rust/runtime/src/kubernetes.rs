//! The Kubernetes adapter of the job-runtime port. `specs` builds every object of a run as a
//! plain value (unit-tested here); applying them with server-side apply under a named field
//! manager, reading Job and Pod state, logs and cancellation are tested against a real API
//! server by the Kubernetes issue.

pub mod adapter;
pub mod specs;

pub use adapter::{KubernetesRuntime, KubernetesSettings};
