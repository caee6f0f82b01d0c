//! The internal gRPC API (`codexk8s.controlplane.v1.ControlPlane`). Handlers convert wire types
//! and map use-case errors to status codes once, here.

use crate::ingest::{IngestError, Ingestor, Status as IngestStatusKind};
use ck8s_proto::controlplane::v1::control_plane_server::ControlPlane;
use ck8s_proto::controlplane::v1::{
    GetStatusRequest, GetStatusResponse, IngestGithubWebhookRequest, IngestGithubWebhookResponse, IngestStatus,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

pub struct ControlPlaneApi {
    pub pool: ck8s_store::Pool,
    pub ingestor: Arc<Ingestor>,
}

const MAX_ID_LEN: usize = 200;

#[tonic::async_trait]
impl ControlPlane for ControlPlaneApi {
    async fn get_status(&self, _req: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let schema_version = ck8s_store::schema_version(&self.pool).await.ok();
        Ok(Response::new(GetStatusResponse {
            service: "control-plane".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            database_ready: schema_version.is_some(),
            schema_version: schema_version.unwrap_or(0),
        }))
    }

    async fn ingest_github_webhook(
        &self,
        req: Request<IngestGithubWebhookRequest>,
    ) -> Result<Response<IngestGithubWebhookResponse>, Status> {
        let request_id =
            req.metadata().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().chars().take(100).collect::<String>();
        let r = req.into_inner();
        let span = tracing::info_span!("ingest_rpc", request_id = %request_id, delivery_id = %r.delivery_id.chars().take(MAX_ID_LEN).collect::<String>());
        self.ingest(r).instrument(span).await
    }
}

impl ControlPlaneApi {
    async fn ingest(&self, r: IngestGithubWebhookRequest) -> Result<Response<IngestGithubWebhookResponse>, Status> {
        if r.delivery_id.is_empty() || r.delivery_id.len() > MAX_ID_LEN {
            return Err(Status::invalid_argument(format!("delivery_id must be 1-{MAX_ID_LEN} characters")));
        }
        if r.event.is_empty() || r.event.len() > 64 {
            return Err(Status::invalid_argument("event must be 1-64 characters"));
        }
        match self.ingestor.ingest(&r.delivery_id, &r.event, &r.payload).await {
            Ok(res) => Ok(Response::new(IngestGithubWebhookResponse {
                correlation_id: res.correlation_id,
                run_id: res.run_id.map(|id| id.to_string()),
                status: match res.status {
                    IngestStatusKind::Accepted => IngestStatus::Accepted,
                    IngestStatusKind::Duplicate => IngestStatus::Duplicate,
                    IngestStatusKind::Ignored => IngestStatus::Ignored,
                } as i32,
                reason: res.reason,
            })),
            Err(IngestError::InvalidPayload(m)) => Err(Status::invalid_argument(m)),
            Err(IngestError::FailedPrecondition(m)) => Err(Status::failed_precondition(m)),
            Err(e @ (IngestError::Closed | IngestError::Unavailable)) => Err(Status::unavailable(e.to_string())),
            Err(IngestError::Store(e)) => {
                tracing::error!(error = %ck8s_domain::report::Report(&e), delivery_id = %r.delivery_id, "ingest failed in the database");
                if e.is_unavailable() {
                    Err(Status::unavailable("database unavailable, retry later"))
                } else {
                    Err(Status::internal("ingest failed"))
                }
            }
        }
    }
}
