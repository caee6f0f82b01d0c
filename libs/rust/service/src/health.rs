//! `/healthz` (alive), `/readyz` (dependencies reachable) and `/metrics`, plus the
//! `/health/livez` and `/health/readyz` aliases the deploy manifests probe. A service with a
//! public port serves these on its admin port ([`health_router`]) and only the bare probes on
//! the public one ([`public_probes`]: no metrics, no check names).

use crate::error::BoxError;
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The future a readiness check returns: `Err` carries a short, secret-free reason (its cause
/// chain is shown).
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// One named dependency check run by `/readyz`.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    /// A check called `name` (e.g. `postgres`).
    pub fn new<F, Fut, E>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let f = Arc::new(f);
        Self {
            name,
            check: Arc::new(move || {
                let f = f.clone();
                Box::pin(async move { f().await.map_err(Into::into) })
            }),
        }
    }
}

#[derive(Clone)]
struct HealthState {
    service: &'static str,
    checks: Arc<Vec<ReadinessCheck>>,
    shutting_down: CancellationToken,
    /// Whether `/readyz` names the checks (admin port) or only says ready or not (public port).
    detailed: bool,
}

/// The health and metrics routes. `/readyz` fails once `shutting_down` is cancelled so load
/// balancers stop sending traffic while the process drains.
pub fn health_router(service: &'static str, checks: Vec<ReadinessCheck>, metrics: Metrics, shutting_down: CancellationToken) -> Router {
    let state = HealthState { service, checks: Arc::new(checks), shutting_down, detailed: true };
    Router::new()
        .route("/healthz", get(live))
        .route("/health/livez", get(live))
        .route("/readyz", get(ready))
        .route("/health/readyz", get(ready))
        .with_state(state)
        .merge(Router::new().route("/metrics", get(metrics_handler)).with_state(metrics))
}

/// The probes of a public port: `/healthz` and `/readyz` answer only alive, ready or not ready
/// (the same checks run; which one fails is for the admin port and the log), and there is no
/// `/metrics`.
pub fn public_probes(service: &'static str, checks: Vec<ReadinessCheck>, shutting_down: CancellationToken) -> Router {
    let state = HealthState { service, checks: Arc::new(checks), shutting_down, detailed: false };
    Router::new().route("/healthz", get(live)).route("/readyz", get(ready)).with_state(state)
}

/// The method as a metrics label: the standard ones by name, anything invented as `other`, so a
/// client sending made-up methods cannot grow the label set (and memory) without end.
fn method_label(m: &axum::http::Method) -> String {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if KNOWN.contains(m) { m.as_str().to_string() } else { "other".to_string() }
}

/// Middleware counting every request by route template, method and status.
pub fn with_request_metrics(router: Router, metrics: Metrics) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let metrics = metrics.clone();
        async move {
            let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".to_string());
            let method = method_label(req.method());
            let resp = next.run(req).await;
            metrics.observe_http(&route, &method, resp.status().as_u16());
            resp
        }
    }))
}

async fn live(State(s): State<HealthState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "alive", "service": s.service}))
}

async fn ready(State(s): State<HealthState>) -> Response {
    if s.shutting_down.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "shutting_down", "service": s.service})))
            .into_response();
    }
    let mut results = serde_json::Map::new();
    let mut ok = true;
    for c in s.checks.iter() {
        let outcome = tokio::time::timeout(Duration::from_secs(3), (c.check)()).await;
        // The answer names the failing check only: its reason (addresses, hosts) goes to the log,
        // not to whoever can reach the port.
        let text = match outcome {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                ok = false;
                tracing::warn!(check = c.name, error = %ck8s_domain::report::chain(e.as_ref()), "readiness check failing");
                "failing"
            }
            Err(_) => {
                ok = false;
                tracing::warn!(check = c.name, "readiness check timed out after 3s");
                "timed_out"
            }
        };
        results.insert(c.name.to_string(), serde_json::Value::String(text.to_string()));
    }
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !s.detailed {
        return (status, Json(serde_json::json!({"status": if ok { "ready" } else { "not_ready" }}))).into_response();
    }
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not_ready" },
        "service": s.service,
        "checks": results,
    });
    (status, Json(body)).into_response()
}

async fn metrics_handler(State(metrics): State<Metrics>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsBuilder;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> (StatusCode, String) {
        let resp = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    #[tokio::test]
    async fn readiness_reflects_checks_and_shutdown() {
        let metrics = MetricsBuilder::new("t").build();
        let token = CancellationToken::new();
        let good = ReadinessCheck::new("db", || async { Ok::<(), std::io::Error>(()) });
        let bad = ReadinessCheck::new("peer", || async { Err(std::io::Error::other("connection refused")) });

        let r = health_router("t", vec![good.clone()], metrics.clone(), token.clone());
        assert_eq!(get_status(r.clone(), "/readyz").await.0, StatusCode::OK);
        assert_eq!(get_status(r.clone(), "/healthz").await.0, StatusCode::OK);
        token.cancel();
        assert_eq!(get_status(r.clone(), "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get_status(r, "/healthz").await.0, StatusCode::OK);

        let r = health_router("t", vec![good, bad], metrics, CancellationToken::new());
        let (status, body) = get_status(r, "/health/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"peer\":\"failing\"") && body.contains("\"db\":\"ok\""), "{body}");
        assert!(!body.contains("connection refused"), "reasons stay in the log: {body}");
    }

    #[tokio::test]
    async fn public_probes_say_only_ready_or_not_and_serve_no_metrics() {
        let bad = ReadinessCheck::new("postgres", || async { Err(std::io::Error::other("db.internal:5432 refused")) });
        let r = public_probes("t", vec![bad], CancellationToken::new());
        let (status, body) = get_status(r.clone(), "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not_ready"}"#));
        assert_eq!(get_status(r.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(get_status(r, "/metrics").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_count_requests_by_route() {
        let metrics = MetricsBuilder::new("svc").build();
        let r = with_request_metrics(health_router("svc", vec![], metrics.clone(), CancellationToken::new()), metrics.clone());
        get_status(r.clone(), "/healthz").await;
        let (_, body) = get_status(r, "/metrics").await;
        assert!(body.contains("codexk8s_build_info{service=\"svc\""), "{body}");
        assert!(body.contains("codexk8s_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"), "{body}");
    }

    #[tokio::test]
    async fn invented_methods_share_one_label() {
        use tower::ServiceExt;
        let metrics = MetricsBuilder::new("svc").build();
        let r = with_request_metrics(health_router("svc", vec![], metrics.clone(), CancellationToken::new()), metrics.clone());
        for i in 0..50 {
            let method = axum::http::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
            let req = axum::http::Request::builder().method(method).uri("/healthz").body(axum::body::Body::empty()).unwrap();
            r.clone().oneshot(req).await.unwrap();
        }
        let (_, body) = get_status(r, "/metrics").await;
        assert!(!body.contains("INVENTED"), "{body}");
        assert!(body.contains("method=\"other\""), "{body}");
    }
}
