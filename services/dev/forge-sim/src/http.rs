//! GitHub-shaped HTTP answers shared by every handler: the error body (`{"message",
//! "documentation_url"}`), 422 validation errors with `errors[]`, `Link` pagination (`per_page` ≤
//! 100, default 30), and [`respond!`], the early return of a handler step. A leaf module: it knows
//! nothing of the forge.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Mutex, MutexGuard};

/// Where GitHub's error bodies point.
pub const DOCS: &str = "https://docs.github.com/rest";

/// Returns the error of a handler step as the handler's response, or the step's value.
macro_rules! respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return axum::response::IntoResponse::into_response(e),
        }
    };
}
pub(crate) use respond;

/// A GitHub-shaped error.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message, "documentation_url": DOCS}))).into_response()
}

/// GitHub's 422 for one invalid field.
pub fn validation(resource: &str, field: &str, code: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Validation Failed", "errors": [{"resource": resource, "field": field, "code": code}], "documentation_url": DOCS})),
    )
        .into_response()
}

/// `per_page` and `page` of list endpoints.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub per_page: Option<usize>,
    pub page: Option<usize>,
}

/// One page of `items` with GitHub's `Link` header.
pub fn paginate(base: &str, path: &str, items: Vec<Value>, p: &Page) -> Response {
    let per = p.per_page.unwrap_or(30).clamp(1, 100);
    let page = p.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let mut links = Vec::new();
    let url = |n: usize| format!("<{base}{path}?per_page={per}&page={n}>");
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
    }
    let mut resp = Json(Value::Array(slice)).into_response();
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

/// Locks the shared state; a lock poisoned by a panicking handler answers 500.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, returned at once
pub fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Response> {
    m.lock().map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned"))
}
