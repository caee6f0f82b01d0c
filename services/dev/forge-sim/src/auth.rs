//! Token authentication of the REST API, as GitHub answers it: the token comes as
//! `Authorization: Bearer <token>` or `token <token>`; no header answers 401 "Requires
//! authentication", a token the forge did not issue 401 "Bad credentials". [`Authenticated`] is the
//! extractor of the handlers that need the caller; [`authenticate`] is the same check for the API
//! middleware, which runs it before any handler reads the request.

use crate::http::error;
use crate::state::{Forge, Shared, User};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A handler panicked while holding the forge.
    #[error("state poisoned")]
    Poisoned,
    #[error("Requires authentication")]
    Missing,
    #[error("Bad credentials")]
    BadCredentials,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Poisoned => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Missing | Self::BadCredentials => StatusCode::UNAUTHORIZED,
        };
        error(status, &self.to_string())
    }
}

/// The user of the request's token.
pub fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<User, AuthError> {
    let forge = s.lock().map_err(|_| AuthError::Poisoned)?;
    user_of(&forge, headers)
}

fn user_of(forge: &Forge, headers: &HeaderMap) -> Result<User, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(AuthError::Missing);
    };
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token ")).unwrap_or("").trim();
    forge.user_of_token(token).ok_or(AuthError::BadCredentials)
}

/// The authenticated caller of a handler; the request is refused with GitHub's 401 without one.
#[derive(Debug)]
pub struct Authenticated(pub User);

impl FromRequestParts<Shared> for Authenticated {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, AuthError> {
        authenticate(s, &parts.headers).map(Self)
    }
}
