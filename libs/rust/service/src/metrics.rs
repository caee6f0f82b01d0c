//! The Prometheus registry a binary owns, plus the metrics every HTTP server shares.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    service: String,
    version: String,
}

/// Labels of `codexk8s_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template (`/api/v1/webhooks/github`), never the raw path, to bound cardinality.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// A registry being filled at start-up; frozen into [`Metrics`] once every crate registered.
pub struct MetricsBuilder {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
}

impl MetricsBuilder {
    /// Starts a registry with the `codexk8s_` prefix and the build-info gauge.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix("codexk8s");
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { service: service.to_string(), version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "Build information of this binary", build);
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", http_requests.clone());
        Self { registry, http_requests }
    }

    /// The registry, for crates that register their own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Freezes the registry.
    pub fn build(self) -> Metrics {
        Metrics { registry: Arc::new(self.registry), http_requests: self.http_requests }
    }
}

/// The frozen registry, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
}

impl Metrics {
    /// Counts one served HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16) {
        self.http_requests.get_or_create(&HttpLabels { route: route.to_string(), method: method.to_string(), status }).inc();
    }

    /// Renders the registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
