//! GitHub's OAuth web flow, as the staff console uses it to sign people in:
//!
//! 1. `GET /login/oauth/authorize?client_id&redirect_uri&state&scope` — on GitHub the person signs
//!    in and approves; forge-sim takes the person from `login=<user>` (a simulation parameter) or
//!    shows a page listing users to sign in as, then redirects to `redirect_uri?code&state`;
//! 2. `POST /login/oauth/access_token` (form or JSON: `client_id`, `client_secret`, `code`,
//!    `redirect_uri`) — a single-use code that expires in ten minutes becomes a token; errors
//!    answer 200 with `error` and `error_description`, as GitHub does;
//! 3. `GET /user` and `GET /user/emails` with that token (`api::users`).
//!
//! OAuth apps are registered through `POST /_sim/oauth-apps {client_id, client_secret, redirect_uri}`
//! (`sim`).

use crate::http::{error, lock, respond};
use crate::state::{Grant, Shared, rand_u64};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CODE_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
pub struct Authorize {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    /// forge-sim only: the person who signs in and approves.
    login: Option<String>,
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `GET /login/oauth/authorize`.
pub async fn authorize(State(s): State<Shared>, Query(q): Query<Authorize>) -> Response {
    let mut f = respond!(lock(&s));
    let Some(app) = q.client_id.as_ref().and_then(|c| f.oauth_apps.get(c)).cloned() else {
        return (StatusCode::NOT_FOUND, Html("<h1>404</h1><p>This OAuth application does not exist (unknown client_id).</p>"))
            .into_response();
    };
    let redirect_uri = q.redirect_uri.clone().unwrap_or_else(|| app.redirect_uri.clone());
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let state = q.state.clone().unwrap_or_default();
    if !redirect_uri.starts_with(&app.redirect_uri) {
        let to = format!(
            "{}{}error=redirect_uri_mismatch&error_description={}&state={}",
            app.redirect_uri,
            if app.redirect_uri.contains('?') { '&' } else { '?' },
            enc("The redirect_uri MUST match the registered callback URL for this application."),
            enc(&state)
        );
        return redirect(&to);
    }
    let Some(login) = q.login.clone() else {
        // The sign-in page: pick who signs in.
        let mut page = String::from("<!doctype html><title>Sign in to forge-sim</title><h1>Sign in to forge-sim</h1><ul>");
        for u in f.users.values() {
            page.push_str(&format!(
                "<li><a href=\"/login/oauth/authorize?client_id={}&redirect_uri={}&state={}&scope={}&login={}\">{}</a></li>",
                enc(&app.client_id),
                enc(&redirect_uri),
                enc(&state),
                enc(q.scope.as_deref().unwrap_or("")),
                enc(&u.login),
                html_escape(&u.login)
            ));
        }
        page.push_str("</ul>");
        return Html(page).into_response();
    };
    let Some(user) = f.users.get(&login.to_lowercase()).cloned() else {
        return (StatusCode::NOT_FOUND, Html("<p>No such user.</p>")).into_response();
    };
    let code = format!("{:020x}", rand_u64() as u128 * 7 + 1);
    f.oauth_grants.insert(
        code.clone(),
        Grant {
            client_id: app.client_id,
            login: user.login,
            scope: q.scope.unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            issued: Instant::now(),
        },
    );
    redirect(&format!("{redirect_uri}{sep}code={}&state={}", enc(&code), enc(&state)))
}

#[derive(Debug, Deserialize, Default)]
pub struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
}

fn token_answer(headers: &HeaderMap, v: Value) -> Response {
    let json_wanted = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("json"));
    if json_wanted {
        return Json(v).into_response();
    }
    let form: Vec<String> =
        v.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", enc(v.as_str().unwrap_or_default()))).collect();
    ([(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")], form.join("&")).into_response()
}

fn oauth_error(headers: &HeaderMap, code: &str, description: &str) -> Response {
    token_answer(headers, json!({"error": code, "error_description": description, "error_uri": "https://docs.github.com/apps/oauth"}))
}

/// `POST /login/oauth/access_token`.
pub async fn access_token(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).is_some_and(|c| c.contains("json"));
    let req: TokenRequest = if is_json {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    } else {
        let text = String::from_utf8_lossy(&body);
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(k.to_string(), percent_decode(v));
        }
        TokenRequest {
            client_id: m.remove("client_id"),
            client_secret: m.remove("client_secret"),
            code: m.remove("code"),
            redirect_uri: m.remove("redirect_uri"),
        }
    };
    let mut f = respond!(lock(&s));
    let app = req.client_id.as_ref().and_then(|c| f.oauth_apps.get(c)).cloned();
    let Some(app) = app.filter(|a| Some(&a.client_secret) == req.client_secret.as_ref()) else {
        return oauth_error(&headers, "incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.");
    };
    // A code is used once, whatever happens next.
    let grant = req.code.as_ref().and_then(|c| f.oauth_grants.remove(c));
    let Some(grant) = grant.filter(|g| g.client_id == app.client_id && g.issued.elapsed() < CODE_TTL) else {
        return oauth_error(&headers, "bad_verification_code", "The code passed is incorrect or expired.");
    };
    if req.redirect_uri.as_ref().is_some_and(|r| *r != grant.redirect_uri) {
        return oauth_error(
            &headers,
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    let token = f.issue_token(&grant.login);
    token_answer(&headers, json!({"access_token": token, "token_type": "bearer", "scope": grant.scope}))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
