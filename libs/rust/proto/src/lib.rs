//! Generated gRPC contracts of codex-k8s. The `.proto` files under `proto/` at the repository
//! root are the single source of truth; they are compiled at build time with protox, so no
//! system `protoc` is needed. Wire types stay here: services convert them at their edges.

#![allow(missing_docs, clippy::all)]

pub mod auth;

/// `codexk8s.controlplane.v1`: the internal API of control-plane.
pub mod controlplane {
    pub mod v1 {
        tonic::include_proto!("codexk8s.controlplane.v1");
    }
}
