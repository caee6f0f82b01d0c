//! The GitHub REST subset forge-sim serves, one module per resource, with GitHub's shapes, status
//! codes and error bodies. Every route here sits behind the API middleware (`sim::layer`: faults,
//! authentication, recording), and every handler takes its caller through the
//! [`Authenticated`](crate::auth::Authenticated) extractor.

pub mod contents;
pub mod hooks;
pub mod issues;
pub mod pulls;
pub mod repos;
pub mod users;

/// The repository `$o/$r` of the locked forge `$forge` (a clone), or the handler answers 404.
macro_rules! repo_or_404 {
    ($forge:expr, $o:expr, $r:expr) => {
        match $forge.repos.get(&$crate::state::key(&$o, &$r)) {
            Some(r) => r.clone(),
            None => return $crate::http::error(axum::http::StatusCode::NOT_FOUND, "Not Found"),
        }
    };
}
pub(crate) use repo_or_404;
