//! Authentication of the internal gRPC API: callers send `authorization: Bearer <token>` with the
//! shared internal token (`CODEXK8S_INTERNAL_API_TOKEN`); control-plane compares it in constant
//! time and answers UNAUTHENTICATED otherwise.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Server side: rejects calls without the expected bearer token.
#[derive(Clone)]
pub struct RequireToken {
    expected: std::sync::Arc<Vec<u8>>,
}

impl RequireToken {
    /// Accepts only `Bearer <token>`.
    pub fn new(token: &str) -> Self {
        Self { expected: std::sync::Arc::new(format!("Bearer {token}").into_bytes()) }
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (it is fixed by configuration); the content is compared in constant
    // time (`subtle`).
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get("authorization") {
            Some(v) if ct_eq(v.as_bytes(), &self.expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid internal API token")),
            None => Err(Status::unauthenticated("missing internal API token (authorization: Bearer ...)")),
        }
    }
}

/// A token that cannot travel in a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token must be printable ASCII")]
pub struct BadToken;

/// Client side: adds the bearer token to every call.
#[derive(Clone)]
pub struct SendToken {
    value: MetadataValue<tonic::metadata::Ascii>,
}

impl SendToken {
    /// Fails if the token contains characters not allowed in a header.
    pub fn new(token: &str) -> Result<Self, BadToken> {
        let value = format!("Bearer {token}").parse().map_err(|_| BadToken)?;
        Ok(Self { value })
    }
}

impl Interceptor for SendToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.value.clone());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let mut server = RequireToken::new("s3cret-token-value");
        let mut client = SendToken::new("s3cret-token-value").unwrap();
        let req = client.call(Request::new(())).unwrap();
        assert!(server.call(req).is_ok());
        let req = SendToken::new("wrong").unwrap().call(Request::new(())).unwrap();
        assert_eq!(server.call(req).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(server.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(SendToken::new("bad\ntoken").is_err());
    }
}
