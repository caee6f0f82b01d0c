//! Adapters of the domain's job-runtime port. `local` runs each job as a child process group in
//! a run directory, for the local stack and tests; the Kubernetes adapter (kube-rs) joins it
//! with the worker's run lifecycle.

pub mod kubernetes;
pub mod local;

pub use kubernetes::{KubernetesRuntime, KubernetesSettings};
pub use local::LocalRuntime;
