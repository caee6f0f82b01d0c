//! One telemetry setup for every binary: JSON lines on stdout through `tracing`.
//!
//! The filter comes from `RUST_LOG`, else `CODEXK8S_LOG_LEVEL`, else `info`.
//! `CODEXK8S_LOG_FORMAT=pretty` switches to human-readable lines for local work.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(service: &'static str) {
    let filter = std::env::var("RUST_LOG").ok().or_else(|| std::env::var("CODEXK8S_LOG_LEVEL").ok()).unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let pretty = std::env::var("CODEXK8S_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("pretty"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = if pretty {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}
