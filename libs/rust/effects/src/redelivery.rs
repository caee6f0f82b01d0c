//! The webhook redelivery loop (run by the worker): GitHub does not deliver a failed webhook
//! again by itself, so after an outage of control-plane or PostgreSQL the events it sent in the
//! meantime would be lost. Each pass looks, for every bound repository, at the recent deliveries
//! of the webhook that points at the platform (`CODEXK8S_GITHUB_WEBHOOK_URL`), and asks GitHub to
//! deliver again those the domain decides were lost ([`ck8s_domain::redelivery::plan`]). The
//! redelivered request goes through the gateway like any other (signature, size, ingest), and
//! ingest deduplicates by delivery id, so a delivery is never taken twice.

use crate::executor::Providers;
use ck8s_domain::clock::Clock;
use ck8s_domain::forge::{DeliveryFilter, ProviderError, RepoRef};
use ck8s_domain::redelivery::{RedeliveryPolicy, plan};
use ck8s_store::effects::RepositoryRow;
use ck8s_store::{Pool, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Deliveries looked at per repository and pass, newest first (ten of GitHub's pages): enough for
/// an outage of a busy repository, bounded so one pass stays cheap.
const PAGE: usize = 1000;

/// How long GitHub keeps deliveries; requests older than this are forgotten.
const RETENTION: chrono::Duration = chrono::Duration::days(3);

/// The loop's dependencies.
pub struct Redelivery {
    pub pool: Pool,
    pub providers: Arc<dyn Providers>,
    /// The URL the platform's webhooks deliver to; hooks elsewhere are not the platform's.
    pub hook_url: String,
    pub policy: RedeliveryPolicy,
    pub clock: Arc<dyn Clock>,
}

/// Why a pass could not look at a repository (said with what to do; retried every pass).
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("{0}")]
    Setup(String),
    #[error("no webhook delivers to {0}; bind the repository again to create it")]
    NoHook(String),
    #[error("cannot list its webhooks ({0}); the token needs admin:repo_hook")]
    Hooks(ProviderError),
    #[error("cannot list the deliveries of hook {0} ({1})")]
    Deliveries(i64, ProviderError),
    #[error("cannot ask for delivery {0} again ({1})")]
    Redeliver(String, ProviderError),
}

/// One request the pass made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub repository: String,
    pub guid: String,
    pub event: String,
    pub request: u32,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Repositories whose deliveries were read.
    pub looked_at: usize,
    pub requested: Vec<Requested>,
    /// Delivery ids given up on in this pass (said once each).
    pub abandoned: Vec<String>,
    /// Repositories the pass could not look at, each with what to do.
    pub problems: Vec<String>,
}

impl Redelivery {
    /// Looks at every bound repository once.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        for row in ck8s_store::redelivery::repositories(&self.pool).await? {
            if let Err(problem) = self.repository(&row, &mut report).await? {
                report.problems.push(format!("{}/{}: {problem}", row.owner, row.name));
            }
        }
        ck8s_store::redelivery::prune(&self.pool, self.clock.now() - RETENTION).await?;
        Ok(report)
    }

    /// One repository; the inner error is a problem with GitHub or the token, reported and
    /// retried at the next pass, the outer one a store error that ends the pass.
    async fn repository(&self, row: &RepositoryRow, report: &mut PassReport) -> Result<Result<(), Problem>, StoreError> {
        let provider = match self.providers.for_repository(row) {
            Ok(p) => p,
            Err(e) => return Ok(Err(Problem::Setup(e.0))),
        };
        let repo = RepoRef::new(&row.owner, &row.name);
        let hook = match provider.find_webhook(&repo, &self.hook_url).await {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Err(Problem::NoHook(self.hook_url.clone()))),
            Err(e) => return Ok(Err(Problem::Hooks(e))),
        };
        let deliveries = match provider.list_deliveries(&repo, hook.id, DeliveryFilter::All, PAGE).await {
            Ok(d) => d,
            Err(e) => return Ok(Err(Problem::Deliveries(hook.id, e))),
        };
        report.looked_at += 1;
        let mut guids: Vec<String> = deliveries.iter().map(|d| d.guid.clone()).collect();
        guids.sort();
        guids.dedup();
        let ingested = ck8s_store::redelivery::ingested(&self.pool, &guids).await?;
        let requested = ck8s_store::redelivery::requested(&self.pool, row.id, &guids).await?;
        let now = self.clock.now();
        let decided = plan(&deliveries, &ingested, &requested, now, &self.policy);
        for r in decided.redeliver {
            // A request GitHub refused is not counted: the next pass asks again.
            if let Err(e) = provider.redeliver(&repo, hook.id, r.delivery_id).await {
                return Ok(Err(Problem::Redeliver(r.guid, e)));
            }
            ck8s_store::redelivery::record_request(&self.pool, row.id, &r.guid, r.request, now).await?;
            tracing::info!(repository = %repo.full_name(), delivery = %r.guid, event = %r.event, request = r.request, "asked GitHub to deliver a lost webhook again");
            report.requested.push(Requested { repository: repo.full_name(), guid: r.guid, event: r.event, request: r.request });
        }
        for guid in decided.abandoned {
            if ck8s_store::redelivery::abandon(&self.pool, row.id, &guid, now).await? {
                tracing::error!(repository = %repo.full_name(), delivery = %guid, requests = self.policy.max_requests,
                    "a lost webhook delivery was asked for again without success; giving up (redeliver it from the repository's webhook settings once the gateway answers)");
                report.abandoned.push(guid);
            }
        }
        Ok(Ok(()))
    }
}

/// Runs a pass every `interval` until cancelled, handing each report to `on_pass` (metrics);
/// problems are logged once until they change.
pub async fn run(
    redelivery: Redelivery,
    interval: Duration,
    on_pass: impl Fn(&PassReport) + Send,
    token: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut last_problems: Vec<String> = Vec::new();
    loop {
        match redelivery.pass().await {
            Ok(report) => {
                on_pass(&report);
                if report.problems != last_problems {
                    for p in &report.problems {
                        tracing::warn!(problem = %p, "webhook redelivery cannot look at a repository; retrying every pass");
                    }
                    last_problems = report.problems;
                }
            }
            Err(e) => {
                tracing::warn!(error = %ck8s_domain::report::Report(&e), "webhook redelivery pass failed; retrying (is PostgreSQL reachable?)")
            }
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
