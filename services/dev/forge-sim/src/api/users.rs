//! The authenticated user: `GET /user` (GitHub's private-user view) and `GET /user/emails`, as
//! the OAuth web flow's token reads them.

use crate::auth::Authenticated;
use crate::http::{lock, respond};
use crate::shapes;
use crate::state::{Shared, now};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `GET /user`: the token's user (GitHub's private-user view).
pub async fn current_user(State(s): State<Shared>, Authenticated(user): Authenticated) -> Response {
    let f = respond!(lock(&s));
    let mut v = shapes::user(&f, &user.login);
    let created = f.created_at.clone().unwrap_or_else(now);
    for (k, val) in [
        ("name", json!(user.login)),
        ("company", Value::Null),
        ("blog", json!("")),
        ("location", Value::Null),
        ("email", json!(user.email)),
        ("hireable", Value::Null),
        ("bio", Value::Null),
        ("public_repos", json!(f.repos.values().filter(|r| r.owner.eq_ignore_ascii_case(&user.login)).count())),
        ("public_gists", json!(0)),
        ("followers", json!(0)),
        ("following", json!(0)),
        ("created_at", json!(created)),
        ("updated_at", json!(created)),
        ("private_gists", json!(0)),
        ("total_private_repos", json!(0)),
        ("owned_private_repos", json!(0)),
        ("disk_usage", json!(0)),
        ("collaborators", json!(0)),
        ("two_factor_authentication", json!(false)),
        ("user_view_type", json!("private")),
    ] {
        v[k] = val;
    }
    Json(v).into_response()
}

/// `GET /user/emails`.
pub async fn emails(Authenticated(user): Authenticated) -> Response {
    Json(json!([{"email": user.email, "primary": true, "verified": true, "visibility": "private"}])).into_response()
}
