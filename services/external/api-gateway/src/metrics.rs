//! Metrics of the webhook endpoint.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// accepted, duplicate, ignored, or the error code.
    pub result: String,
    /// A subscribed event name, or `other` (bounded cardinality).
    pub event: String,
}

#[derive(Clone)]
pub struct WebhookMetrics {
    pub requests: Family<WebhookLabels, Counter>,
    pub duration: Histogram,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self { requests: Family::default(), duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)) };
        registry.register("webhook_requests", "GitHub webhook deliveries by result and event", m.requests.clone());
        registry.register("webhook_duration_seconds", "Time to answer a webhook delivery", m.duration.clone());
        m
    }

    pub fn observe(&self, result: &str, event: &str, seconds: f64) {
        const KNOWN: [&str; 7] =
            ["push", "pull_request", "issues", "issue_comment", "pull_request_review", "pull_request_review_comment", "ping"];
        let event = if KNOWN.contains(&event) { event } else { "other" };
        self.requests.get_or_create(&WebhookLabels { result: result.into(), event: event.into() }).inc();
        self.duration.observe(seconds);
    }
}
