//! What every codex-k8s binary shares: layered, typed configuration read from `CODEXK8S_*`
//! settings and validated before any port is bound; JSON logs through `tracing`; a Prometheus
//! registry; the `/healthz`, `/readyz` and `/metrics` endpoints; and a cancellation tree that
//! turns SIGTERM/SIGINT into a graceful drain with a deadline.

pub use ck8s_config as config;
pub mod error;
pub mod health;
pub mod metrics;
pub mod sealing;
pub mod server;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod trace;

pub use config::{ConfigError, Layers, Reader};
pub use error::{BoxError, ServiceError};
pub use health::{ReadinessCheck, health_router, public_probes, with_request_metrics};
pub use metrics::{Metrics, MetricsBuilder};
pub use shutdown::Shutdown;
pub use trace::with_request_trace;
