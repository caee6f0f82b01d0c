//! `POST /api/v1/webhooks/github`. The order of checks is part of the contract: required
//! headers (400), signature present (401), size (413, without reading past the limit),
//! signature valid (401, constant time, before anything is parsed), JSON syntax (400); then the
//! delivery goes to control-plane over gRPC. 202 for accepted, 200 for duplicate or ignored.

use crate::error::{ApiError, ErrorCode};
use crate::metrics::WebhookMetrics;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ck8s_proto::auth::SendToken;
use ck8s_proto::controlplane::v1::control_plane_client::ControlPlaneClient;
use ck8s_proto::controlplane::v1::{IngestGithubWebhookRequest, IngestStatus};
use secrecy::SecretString;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// What the endpoint needs.
pub struct WebhookState {
    pub secret: SecretString,
    pub max_body_bytes: usize,
    pub control_plane: ControlPlaneClient<InterceptedService<Channel, SendToken>>,
    pub metrics: WebhookMetrics,
}

#[derive(Debug, Serialize)]
struct Answer {
    correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    status: &'static str,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn valid_delivery_id(s: &str) -> bool {
    s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn valid_event(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

pub async fn github(State(s): State<Arc<WebhookState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let event = header(&headers, "x-github-event").unwrap_or_default().to_string();
    let (result, response) = match handle(&s, &headers, body).await {
        Ok((status, answer)) => (answer.status.to_string(), (status, Json(answer)).into_response()),
        Err(e) => (e.code.as_str().to_string(), e.into_response()),
    };
    s.metrics.observe(&result, &event, started.elapsed().as_secs_f64());
    response
}

async fn handle(s: &WebhookState, headers: &HeaderMap, body: Body) -> Result<(StatusCode, Answer), ApiError> {
    let delivery = header(headers, "x-github-delivery")
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "missing X-GitHub-Delivery header").field("X-GitHub-Delivery"))?;
    if !valid_delivery_id(delivery) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "X-GitHub-Delivery must be at most 200 letters, digits, '-', '_', '.' or ':'",
        )
        .field("X-GitHub-Delivery"));
    }
    let event = header(headers, "x-github-event")
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "missing X-GitHub-Event header").field("X-GitHub-Event"))?;
    if !valid_event(event) {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "X-GitHub-Event must be a lowercase event name").field("X-GitHub-Event"));
    }
    let signature = header(headers, "x-hub-signature-256")
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing X-Hub-Signature-256 header").field("X-Hub-Signature-256"))?;

    let too_large = || ApiError::new(ErrorCode::PayloadTooLarge, format!("body exceeds {} bytes", s.max_body_bytes));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
        return Err(too_large());
    }
    // Reading stops at the limit: a body that lies about (or omits) its length is cut off there.
    let bytes = axum::body::to_bytes(body, s.max_body_bytes).await.map_err(|_| too_large())?;

    if !ck8s_crypto::verify_github_signature(&s.secret, &bytes, signature) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "X-Hub-Signature-256 does not match the body").field("X-Hub-Signature-256"));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "body is not valid JSON"));
    }

    let mut req = tonic::Request::new(IngestGithubWebhookRequest {
        delivery_id: delivery.to_string(),
        event: event.to_string(),
        payload: bytes.to_vec(),
    });
    // The edge's request id travels with the call, so control-plane's log names it too.
    if let Some(id) = headers.get(&ck8s_service::trace::REQUEST_ID).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        req.metadata_mut().insert("x-request-id", id);
    }
    let answer = s.control_plane.clone().ingest_github_webhook(req).await.map_err(|e| {
        tracing::warn!(delivery_id = %delivery, code = ?e.code(), "control-plane rejected or missed a delivery");
        ApiError::from_grpc(&e)
    })?;
    let a = answer.into_inner();
    let status = match IngestStatus::try_from(a.status) {
        Ok(IngestStatus::Accepted) => "accepted",
        Ok(IngestStatus::Duplicate) => "duplicate",
        Ok(IngestStatus::Ignored) => "ignored",
        _ => return Err(ApiError::new(ErrorCode::Internal, "unexpected answer from control-plane")),
    };
    let code = if status == "accepted" { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((code, Answer { correlation_id: a.correlation_id, run_id: a.run_id, status, duplicate: status == "duplicate", reason: a.reason }))
}
