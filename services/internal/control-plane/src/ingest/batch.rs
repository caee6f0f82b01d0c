//! Group commit of webhook deliveries: deliveries that arrive together share one transaction.
//! A collector takes whatever is queued when an executor is free (at most `max_size`, waiting at
//! most `window` for more), keeps deliveries that share a lock key (the same delivery id, body or
//! issue) out of the same batch — the later one goes first into the next batch, so it decides
//! from the earlier one's committed history — and hands the batch to one of `concurrency`
//! executors. Each delivery still gets its own outcome: when a batch fails as a whole, its halves
//! are tried apart (down to single deliveries), so one that cannot be recorded fails no neighbour.

use super::{Core, Delivery, IngestError, IngestResult};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Bounds of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most deliveries in one transaction (`CODEXK8S_INGEST_BATCH_MAX_SIZE`).
    pub max_size: usize,
    /// Longest a batch waits for more deliveries once it has one (`CODEXK8S_INGEST_BATCH_WINDOW_MS`);
    /// zero takes only what is already queued.
    pub window: Duration,
    /// Batches in flight at once, each on its own connection (`CODEXK8S_INGEST_BATCH_CONCURRENCY`).
    pub concurrency: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self { max_size: 64, window: Duration::ZERO, concurrency: 2 }
    }
}

/// A delivery waiting for its batch, and where its outcome goes.
pub(crate) struct Job {
    pub delivery: Box<Delivery>,
    pub reply: oneshot::Sender<Result<IngestResult, IngestError>>,
}

/// Starts the collector; the returned sender queues jobs. The collector ends, after finishing the
/// batches in flight, once every sender is dropped.
pub(crate) fn start(core: Arc<Core>, settings: BatchSettings) -> mpsc::Sender<Job> {
    let settings = BatchSettings { max_size: settings.max_size.max(1), concurrency: settings.concurrency.max(1), ..settings };
    let (tx, rx) = mpsc::channel(settings.max_size * settings.concurrency * 4);
    tokio::spawn(collect(rx, core, settings));
    tx
}

/// The jobs of one batch and the lock keys they hold.
struct Batch {
    jobs: Vec<Job>,
    keys: HashSet<String>,
    max: usize,
}

impl Batch {
    fn full(&self) -> bool {
        self.jobs.len() >= self.max
    }

    /// Adds `job` unless the batch is full or it shares a lock key with a job already in it.
    fn admit(&mut self, job: Job) -> Result<(), Job> {
        let keys = job.delivery.keys();
        if self.full() || keys.iter().any(|k| self.keys.contains(k)) {
            return Err(job);
        }
        self.keys.extend(keys);
        self.jobs.push(job);
        Ok(())
    }
}

async fn collect(mut rx: mpsc::Receiver<Job>, core: Arc<Core>, s: BatchSettings) {
    let executors = Arc::new(Semaphore::new(s.concurrency));
    // Deliveries kept out of a batch by a shared key: they lead the next one, oldest first.
    let mut carried: VecDeque<Job> = VecDeque::new();
    loop {
        let Ok(permit) = executors.clone().acquire_owned().await else { break };
        let first = match carried.pop_front() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut batch = Batch { jobs: Vec::with_capacity(s.max_size), keys: HashSet::new(), max: s.max_size };
        let mut later = VecDeque::new();
        for job in std::iter::once(first).chain(carried.drain(..)) {
            if let Err(job) = batch.admit(job) {
                later.push_back(job);
            }
        }
        while !batch.full() {
            match rx.try_recv() {
                Ok(job) => {
                    if let Err(job) = batch.admit(job) {
                        later.push_back(job);
                    }
                }
                Err(_) => break,
            }
        }
        if !s.window.is_zero() {
            let deadline = tokio::time::Instant::now() + s.window;
            while !batch.full() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => {
                        if let Err(job) = batch.admit(job) {
                            later.push_back(job);
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        carried = later;
        let core = core.clone();
        tokio::spawn(async move {
            core.run(batch.jobs).await;
            drop(permit);
        });
    }
    // Wait for the batches in flight.
    let _ = executors.acquire_many(s.concurrency as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ck8s_testkit::github::{example, with_labels, with_number, with_repo_and_sender};

    fn job(id: &str, issue: i64, label: &str) -> Job {
        let v = with_repo_and_sender(example("issues", Some("labeled")), 4242, "acme/app", "alice", "User");
        let v = with_number(with_labels(v, Some(label), &[label], "issue"), "issue", issue);
        let body = serde_json::to_vec(&v).unwrap();
        let delivery = Box::new(Delivery::parse(id, "issues", &body).unwrap());
        Job { delivery, reply: oneshot::channel().0 }
    }

    fn batch(max: usize) -> Batch {
        Batch { jobs: Vec::new(), keys: HashSet::new(), max }
    }

    #[test]
    fn deliveries_sharing_an_id_a_body_or_an_issue_never_share_a_batch() {
        let mut b = batch(10);
        assert!(b.admit(job("a", 1, "run:dev")).is_ok());
        assert!(b.admit(job("b", 2, "run:dev")).is_ok(), "another issue joins");
        assert!(b.admit(job("a", 3, "run:qa")).is_err(), "the same delivery id waits for the next batch");
        assert!(b.admit(job("c", 1, "run:qa")).is_err(), "the same issue waits for the next batch");
        let mut replay = job("d", 2, "run:dev");
        replay.delivery.event.issue = None; // only the body is shared now
        assert!(b.admit(replay).is_err(), "the same signed body under a new id waits for the next batch");
        assert_eq!(b.jobs.len(), 2);
    }

    #[test]
    fn a_batch_stops_at_its_size() {
        let mut b = batch(2);
        assert!(b.admit(job("a", 1, "run:dev")).is_ok());
        assert!(b.admit(job("b", 2, "run:dev")).is_ok());
        assert!(b.full());
        assert!(b.admit(job("c", 3, "run:dev")).is_err());
    }
}
