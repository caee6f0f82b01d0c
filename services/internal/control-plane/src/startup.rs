//! Wiring: pool, listeners (bound early), bootstrap, gRPC and HTTP servers, drain on shutdown.

use crate::config::Config;
use crate::error::ControlPlaneError;
use crate::grpc::ControlPlaneApi;
use crate::ingest::Ingestor;
use ck8s_proto::controlplane::v1::agent_callbacks_server::AgentCallbacksServer;
use ck8s_proto::controlplane::v1::control_plane_server::ControlPlaneServer;
use ck8s_service::health::{ReadinessCheck, health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::transport::server::TcpIncoming;

/// `control-plane migrate`: apply pending migrations and exit.
pub async fn migrate_only(cfg: Config) -> Result<(), ControlPlaneError> {
    let connect = |source| ControlPlaneError::Connect { target: cfg.db.describe(), source };
    let pool = ck8s_store::connect(&cfg.db).await.map_err(connect)?;
    ck8s_store::migrate(&pool).await.map_err(ControlPlaneError::Migrate)?;
    let applied = ck8s_store::schema_version(&pool).await.map_err(connect)?;
    tracing::info!(applied, database = %cfg.db.describe(), "migrations applied");
    Ok(())
}

/// Serves until a signal, then drains.
pub async fn run(cfg: Config) -> Result<(), ControlPlaneError> {
    let http = server::bind(cfg.http_addr, "CODEXK8S_HTTP_ADDR").await?;
    let grpc = server::bind(cfg.grpc_addr, "CODEXK8S_GRPC_ADDR").await?;
    tracing::info!(listener = "http", addr = %server::local_addr(&http, "http")?, "listening");
    tracing::info!(listener = "grpc", addr = %server::local_addr(&grpc, "grpc")?, "listening");

    let pool = ck8s_store::connect_lazy(&cfg.db);
    if cfg.migrate_on_start {
        ck8s_store::migrate(&pool).await.map_err(ControlPlaneError::Migrate)?;
        tracing::info!("migrations applied at start");
    }

    let mut shutdown = Shutdown::on_signals();
    let bootstrapped = Arc::new(AtomicBool::new(false));
    let sealer = Arc::new(cfg.sealer);
    if cfg.side_effects {
        let providers = crate::effects::SealedProviders { sealer: sealer.clone(), base_url: cfg.github_api_url.clone() };
        // Unique per replica (pids repeat across containers): the owner fences the queue's rows.
        let owner = format!("control-plane-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let executor = ck8s_effects::Executor {
            pool: pool.clone(),
            providers: Arc::new(providers),
            settings: crate::effects::settings(owner, cfg.console_url.clone(), cfg.ingest.policy.bot_login.clone()),
        };
        tracing::info!(github_api_url = %cfg.github_api_url, "carrying out owed GitHub side effects");
        shutdown.spawn("side-effects", crate::effects::run(executor, cfg.side_effects_interval, shutdown.token()));
    }
    {
        let (pool, token, done) = (pool.clone(), shutdown.token(), bootstrapped.clone());
        let (bootstrap, sealer) = (cfg.bootstrap.clone(), sealer.clone());
        shutdown.spawn("bootstrap", async move {
            loop {
                match crate::bootstrap::apply(&pool, &bootstrap, &sealer).await {
                    Ok(applied) => {
                        tracing::info!(?applied, "bootstrap applied");
                        done.store(true, Ordering::SeqCst);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %ck8s_domain::report::Report(&e), "bootstrap failed; retrying in 2s (are migrations applied? run `control-plane migrate`)")
                    }
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            // This task's work is done; keep it alive until shutdown so its end is not a failure.
            token.cancelled().await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    let mut metrics = MetricsBuilder::new("control-plane");
    let batch_sizes = prometheus_client::metrics::histogram::Histogram::new(crate::ingest::BATCH_SIZE_BUCKETS);
    metrics.registry().register("ingest_batch_size", "Deliveries ingested per transaction (group commit)", batch_sizes.clone());
    let metrics = metrics.build();
    let db = pool.clone();
    let done = bootstrapped.clone();
    let checks = vec![
        ReadinessCheck::new("postgres", move || {
            let db = db.clone();
            async move { ck8s_store::ping(&db).await }
        }),
        ReadinessCheck::new("bootstrap", move || {
            let ok = done.load(Ordering::SeqCst);
            async move { if ok { Ok(()) } else { Err("bootstrap not applied yet".to_string()) } }
        }),
    ];
    let router = ck8s_service::with_request_trace(with_request_metrics(
        health_router("control-plane", checks, metrics.clone(), shutdown.token()),
        metrics,
    ));
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));

    let ingestor = Arc::new(Ingestor::with_batching(pool.clone(), cfg.ingest.clone(), cfg.ingest_batching, Some(batch_sizes)));
    let token = shutdown.token();
    let auth = ck8s_proto::auth::RequireToken::new(secrecy::ExposeSecret::expose_secret(&cfg.internal_api_token));
    // Whatever body the gateway may accept fits (its cap is the same constant's).
    let api = tonic::service::interceptor::InterceptedService::new(
        ControlPlaneServer::new(ControlPlaneApi { pool: pool.clone(), ingestor })
            .max_decoding_message_size(ck8s_proto::MAX_INTERNAL_MESSAGE_BYTES),
        auth,
    );
    // The agent runner's callbacks authenticate per run (run token), not with the internal token.
    let forge = Arc::new(crate::effects::SealedProviders { sealer: sealer.clone(), base_url: cfg.github_api_url.clone() });
    let agent = AgentCallbacksServer::new(crate::agent::AgentApi::new(pool.clone(), forge, cfg.ingest.policy.bot_login.clone()))
        .max_decoding_message_size(crate::agent::MAX_MESSAGE_BYTES);
    shutdown.spawn("grpc", async move {
        tonic::transport::Server::builder()
            // Bounded calls and streams per connection: a stuck or flooding caller holds no more.
            .timeout(Duration::from_secs(60))
            .concurrency_limit_per_connection(64)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(api)
            .add_service(agent)
            // No Nagle on accepted connections: a small answer waiting for a delayed ACK stalled
            // about one call in thirty by ~40 ms (the builder's own `tcp_nodelay` does not reach
            // connections from an incoming stream).
            .serve_with_incoming_shutdown(TcpIncoming::from(grpc).with_nodelay(Some(true)), token.cancelled())
            .await
            .map_err(ControlPlaneError::Grpc)
    });

    let result = shutdown.run_until_stopped(cfg.shutdown_timeout).await;
    pool.close().await;
    Ok(result?)
}
