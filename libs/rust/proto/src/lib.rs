//! Generated gRPC contracts of codex-k8s. The `.proto` files under `proto/` at the repository
//! root are the single source of truth; they are compiled at build time with protox, so no
//! system `protoc` is needed. Wire types stay here: services convert them at their edges.

#![allow(missing_docs, clippy::all)]

pub mod auth;

/// The largest webhook body the platform takes: GitHub caps payloads at 25 MB, and the gateway's
/// `CODEXK8S_WEBHOOK_MAX_BODY_BYTES` may not exceed it.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 25 << 20;

/// The largest message control-plane's internal API decodes: a maximal webhook body plus the
/// headers and envelope around it, so what the gateway accepts is never refused on the next hop.
pub const MAX_INTERNAL_MESSAGE_BYTES: usize = MAX_WEBHOOK_BODY_BYTES + (1 << 20);

/// `codexk8s.controlplane.v1`: the internal API of control-plane.
pub mod controlplane {
    pub mod v1 {
        tonic::include_proto!("codexk8s.controlplane.v1");
    }
}
