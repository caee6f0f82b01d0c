//! The stable error body `{code, message, field?}` of every API error, mapped once here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: the code decides the HTTP status; the message never carries internals.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    pub fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "conflict" | "failed_precondition" => StatusCode::CONFLICT,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a control-plane status to an API error, keeping only safe messages.
    pub fn from_grpc(s: &tonic::Status) -> Self {
        use tonic::Code;
        match s.code() {
            Code::InvalidArgument => Self::new("invalid_argument", s.message()),
            Code::FailedPrecondition => Self::new("failed_precondition", s.message()),
            Code::NotFound => Self::new("not_found", s.message()),
            Code::PermissionDenied => Self::new("forbidden", s.message()),
            Code::Unauthenticated => Self::new("unauthorized", s.message()),
            Code::ResourceExhausted => Self::new("resource_exhausted", "too many requests, retry later"),
            Code::DeadlineExceeded => Self::new("deadline_exceeded", "control-plane did not answer in time; GitHub will redeliver"),
            Code::Unavailable => Self::new("unavailable", "control-plane is unavailable; GitHub will redeliver"),
            _ => Self::new("internal", "internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self)).into_response()
    }
}
