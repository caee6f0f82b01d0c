//! The stable error body `{code, message, field?}` of every API error, mapped once here. The code
//! is an enum: it decides the HTTP status, and its wire spelling is part of the API contract.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The stable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthorized,
    Forbidden,
    NotFound,
    FailedPrecondition,
    PayloadTooLarge,
    ResourceExhausted,
    DeadlineExceeded,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The wire spelling (`invalid_argument`, ...), also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error: the code decides the HTTP status; the message never carries internals.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    pub fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Maps a control-plane status to an API error, keeping only safe messages.
    pub fn from_grpc(s: &tonic::Status) -> Self {
        use tonic::Code;
        match s.code() {
            Code::InvalidArgument => Self::new(ErrorCode::InvalidArgument, s.message()),
            Code::FailedPrecondition => Self::new(ErrorCode::FailedPrecondition, s.message()),
            Code::NotFound => Self::new(ErrorCode::NotFound, s.message()),
            Code::PermissionDenied => Self::new(ErrorCode::Forbidden, s.message()),
            Code::Unauthenticated => Self::new(ErrorCode::Unauthorized, s.message()),
            Code::ResourceExhausted => Self::new(ErrorCode::ResourceExhausted, "too many requests, retry later"),
            Code::DeadlineExceeded => Self::new(ErrorCode::DeadlineExceeded, "control-plane did not answer in time; GitHub will redeliver"),
            Code::Unavailable => Self::new(ErrorCode::Unavailable, "control-plane is unavailable; GitHub will redeliver"),
            _ => Self::new(ErrorCode::Internal, "internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self)).into_response()
    }
}
