//! Wiring: listener (bound early), pool, loops, drain on shutdown.

use crate::config::Config;
use crate::error::WorkerError;
use crate::heartbeat::Heartbeat;
use crate::metrics::WorkerMetrics;
use ck8s_service::health::{ReadinessCheck, health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};

/// Runs the worker until a signal, then drains.
pub async fn run(cfg: Config) -> Result<(), WorkerError> {
    let http = server::bind(cfg.http_addr, "CODEXK8S_HTTP_ADDR").await?;
    tracing::info!(listener = "http", addr = %server::local_addr(&http, "http")?, worker_id = %cfg.worker_id, "listening");

    let pool = ck8s_store::connect_lazy(&cfg.db);
    let mut shutdown = Shutdown::on_signals();
    let mut metrics = MetricsBuilder::new("worker");
    let worker_metrics = WorkerMetrics::register(metrics.registry());
    let metrics = metrics.build();

    let db = pool.clone();
    let checks = vec![ReadinessCheck::new("postgres", move || {
        let db = db.clone();
        async move { ck8s_store::ping(&db).await }
    })];
    let router =
        ck8s_service::with_request_trace(with_request_metrics(health_router("worker", checks, metrics.clone(), shutdown.token()), metrics));
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));

    let heartbeat = Heartbeat {
        pool: pool.clone(),
        worker_id: cfg.worker_id.clone(),
        namespace: cfg.namespace.clone(),
        pod_name: cfg.pod_name.clone(),
        interval: cfg.heartbeat_interval,
        ttl: cfg.instance_ttl,
        metrics: worker_metrics.clone(),
    };
    let worker_metrics_for_lifecycle = worker_metrics.clone();
    let worker_metrics_for_redelivery = worker_metrics;
    shutdown.spawn("heartbeat", heartbeat.run(shutdown.token()));

    if cfg.launch_runs {
        let runtime: std::sync::Arc<dyn ck8s_domain::runtime::JobRuntime> = if cfg.runtime == "kubernetes" {
            std::sync::Arc::new(
                ck8s_runtime::KubernetesRuntime::from_environment(cfg.kubernetes.clone()).await.map_err(WorkerError::KubernetesSetup)?,
            )
        } else {
            std::sync::Arc::new(ck8s_runtime::LocalRuntime::open(&cfg.local_runtime_dir).map_err(WorkerError::LocalRuntime)?)
        };
        let lifecycle = crate::lifecycle::Lifecycle {
            pool: pool.clone(),
            runtime,
            clock: std::sync::Arc::new(ck8s_domain::clock::SystemClock),
            labels: ck8s_domain::labels::LabelCatalog::default(),
            settings: cfg.lifecycle.clone(),
            skipped: std::sync::Mutex::default(),
            busy: std::sync::Mutex::default(),
            metrics: worker_metrics_for_lifecycle,
        };
        tracing::info!(runtime = %cfg.runtime, "run lifecycle enabled");
        shutdown.spawn("lifecycle", lifecycle.run(shutdown.token()));
    } else {
        tracing::info!("run lifecycle disabled (CODEXK8S_WORKER_LAUNCH_RUNS=false)");
    }

    if let Some(r) = &cfg.redelivery {
        let redelivery = ck8s_effects::redelivery::Redelivery {
            pool: pool.clone(),
            providers: std::sync::Arc::new(ck8s_effects::SealedProviders { sealer: r.sealer.clone(), base_url: r.github_api_url.clone() }),
            hook_url: r.hook_url.clone(),
            policy: r.policy,
            clock: std::sync::Arc::new(ck8s_domain::clock::SystemClock),
        };
        let m = worker_metrics_for_redelivery;
        let on_pass = move |report: &ck8s_effects::redelivery::PassReport| {
            m.redelivery_passes.inc();
            m.redeliveries_requested.inc_by(report.requested.len() as u64);
            m.redeliveries_abandoned.inc_by(report.abandoned.len() as u64);
        };
        tracing::info!(hook_url = %r.hook_url, interval = ?r.interval, "webhook redelivery enabled");
        shutdown.spawn("webhook-redelivery", ck8s_effects::redelivery::run(redelivery, r.interval, on_pass, shutdown.token()));
    } else {
        tracing::info!("webhook redelivery disabled (set CODEXK8S_GITHUB_WEBHOOK_URL to the URL GitHub delivers to)");
    }

    let result = shutdown.run_until_stopped(cfg.shutdown_timeout).await;
    pool.close().await;
    Ok(result?)
}
