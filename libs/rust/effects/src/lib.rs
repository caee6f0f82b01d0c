//! The GitHub side effects of codex-k8s, on the domain's repository-provider port: the upsert of
//! each run's single status comment (`status`), the executor that carries out the side effects
//! owed by committed ingests (`executor`), with retries, backoff, idempotence under replays and an
//! audit trail in `flow_events`, the webhook redelivery loop (`redelivery`), and the providers
//! built from sealed repository tokens (`sealed`).

pub mod executor;
pub mod redelivery;
pub mod sealed;
pub mod status;

pub use executor::{Executor, ExecutorSettings, ProviderSetupError, Providers, RepositoryRow};
pub use sealed::SealedProviders;
pub use status::{LagPolicy, Target, UpsertError, Upserted, upsert};
