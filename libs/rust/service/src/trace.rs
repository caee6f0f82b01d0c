//! The request-id and trace layer of every HTTP edge: each request gets an `x-request-id` (the
//! caller's, or a new UUID), carried back on the response and recorded on a span of the request,
//! so one line of a log ties a webhook delivery, its gRPC call and the run it started together.

use axum::Router;
use axum::http::{HeaderName, Request};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The header that carries the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of a request that went through [`with_request_trace`].
pub fn request_id<B>(req: &Request<B>) -> Option<&str> {
    req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok())
}

/// Wraps `router` so every request has an id and a span (`http_request`, with method, route and
/// request id); the id is echoed on the response.
pub fn with_request_trace(router: Router) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
        let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::info_span!("http_request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    });
    router.layer(PropagateRequestIdLayer::new(REQUEST_ID)).layer(trace).layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_response_carries_the_request_id_given_or_made() {
        let app = with_request_trace(Router::new().route("/x", get(|| async { "ok" })));
        let given = app.clone().oneshot(Request::get("/x").header("x-request-id", "abc-123").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(given.headers()["x-request-id"], "abc-123");
        let made = app.oneshot(Request::get("/x").body(Body::empty()).unwrap()).await.unwrap();
        let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid_like(&id), "{id}");
    }

    fn uuid_like(s: &str) -> bool {
        s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
    }
}
