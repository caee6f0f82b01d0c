//! The internal gRPC API (`codexk8s.controlplane.v1.ControlPlane`).

use ck8s_proto::controlplane::v1::control_plane_server::ControlPlane;
use ck8s_proto::controlplane::v1::{GetStatusRequest, GetStatusResponse};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

pub struct ControlPlaneApi {
    pub pool: PgPool,
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneApi {
    async fn get_status(&self, _req: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let schema_version: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await.ok();
        Ok(Response::new(GetStatusResponse {
            service: "control-plane".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            database_ready: schema_version.is_some(),
            schema_version: schema_version.unwrap_or(0),
        }))
    }
}
