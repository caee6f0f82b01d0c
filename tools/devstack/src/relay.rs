//! The webhook relay: brings GitHub's deliveries to a gateway that GitHub cannot reach (a laptop
//! behind NAT) through GitHub's published webhook-deliveries API, with no tunnel and no third
//! party. GitHub records every delivery it attempts, failed ones included, with the payload it
//! sent; the relay lists the repository hook's failed deliveries, reads each new one, and posts
//! its payload to the gateway with the original event name and delivery id, signed with the
//! gateway's webhook secret (`X-Hub-Signature-256`). Ingest deduplicates by delivery id, so a
//! delivery that GitHub did get through, or that the relay forwards twice, is handled once.
//!
//! Deliveries older than the relay's start are not replayed. A gateway that is down (no answer or
//! 5xx) leaves the delivery for the next tick; any other answer settles it. [`start`] runs the
//! relay in the background, a tick every 5 s, and says what it forwards.

use crate::say;
use crate::target::Target;
use ck8s_domain::forge::{DeliveryFilter, RepoRef, RepositoryProvider};
use ck8s_github::GithubProvider;
use secrecy::SecretString;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One delivery the relay passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    /// The gateway's HTTP status (0: no answer).
    pub status: u16,
}

pub struct Relay {
    provider: GithubProvider,
    repo: RepoRef,
    hook_id: i64,
    gateway: std::net::SocketAddr,
    secret: SecretString,
    seen: HashSet<i64>,
}

/// Deliveries looked at per tick (GitHub's page maximum).
const PAGE: usize = 100;

/// How often the relay looks for failed deliveries.
const INTERVAL: Duration = Duration::from_secs(5);

impl Relay {
    pub fn new(provider: GithubProvider, repo: RepoRef, hook_id: i64, gateway: std::net::SocketAddr, secret: SecretString) -> Self {
        Self { provider, repo, hook_id, gateway, secret, seen: HashSet::new() }
    }

    /// Marks every delivery already recorded as seen; returns how many there were.
    pub async fn prime(&mut self) -> Result<usize, ck8s_domain::forge::ProviderError> {
        let existing = self.provider.list_deliveries(&self.repo, self.hook_id, DeliveryFilter::Failed, PAGE).await?;
        self.seen.extend(existing.iter().map(|d| d.id));
        Ok(existing.len())
    }

    /// Forwards the failed deliveries not seen yet, oldest first.
    pub async fn tick(&mut self) -> Result<Vec<Forwarded>, ck8s_domain::forge::ProviderError> {
        let mut new = self.provider.list_deliveries(&self.repo, self.hook_id, DeliveryFilter::Failed, PAGE).await?;
        new.retain(|d| !self.seen.contains(&d.id));
        new.sort_by_key(|d| d.id);
        let mut out = Vec::new();
        for d in new {
            if !header_safe(&d.event) || !header_safe(&d.guid) {
                // Never put what cannot be a header value into one.
                self.seen.insert(d.id);
                out.push(Forwarded {
                    guid: d.guid.escape_default().to_string(),
                    event: d.event.escape_default().to_string(),
                    action: d.action,
                    status: 0,
                });
                continue;
            }
            let full = self.provider.delivery(&self.repo, self.hook_id, d.id).await?;
            let body = serde_json::to_vec(&full.payload).unwrap_or_default();
            let status = post(self.gateway, &d.event, &d.guid, self.hook_id, &self.secret, &body).await;
            if status != 0 && status < 500 {
                self.seen.insert(d.id);
            }
            out.push(Forwarded { guid: d.guid, event: d.event, action: d.action, status });
        }
        Ok(out)
    }
}

/// Starts the relay for `target`'s hook in the background, forwarding to the gateway on port
/// `gateway`; what it forwards is also pushed to `forwarded`. `target.relayed` says it is the only
/// way in (the hook points nowhere) rather than a safety net for a public webhook URL.
pub async fn start(target: &Target, gateway: u16, secret: &str, forwarded: Arc<Mutex<Vec<Forwarded>>>) {
    let mut relay = Relay::new(
        target.owner.clone(),
        target.repo.clone(),
        target.hook_id,
        std::net::SocketAddr::from(([127, 0, 0, 1], gateway)),
        SecretString::from(secret.to_string()),
    );
    match relay.prime().await {
        Ok(n) if target.relayed => say(format!(
            "webhook relay: GitHub cannot reach this machine, so devstack reads the hook's failed deliveries through GitHub's API \
             and forwards new ones to the gateway ({n} older ones left alone)"
        )),
        Ok(n) => say(format!(
            "webhook relay: GitHub delivers to CODEXK8S_GITHUB_WEBHOOK_URL; deliveries it fails to make are forwarded from its API \
             ({n} older failures left alone)"
        )),
        Err(e) => say(format!("webhook relay: cannot list the hook's deliveries yet ({e}); retrying")),
    }
    tokio::spawn(async move {
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(INTERVAL).await;
            match relay.tick().await {
                Ok(done) => {
                    last_error.clear();
                    for f in done {
                        report(&f);
                        if let Ok(mut v) = forwarded.lock() {
                            v.push(f);
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        say(format!("webhook relay: {msg}; retrying every {} s", INTERVAL.as_secs()));
                        last_error = msg;
                    }
                }
            }
        }
    });
}

fn report(f: &Forwarded) {
    say(format!(
        "webhook relay: {} {} (delivery {}) -> gateway answered {}",
        f.event,
        f.action.as_deref().unwrap_or("-"),
        f.guid,
        if f.status == 0 { "nothing (will retry)".to_string() } else { f.status.to_string() }
    ));
}

/// Event names and delivery ids are short tokens: letters, digits, `-`, `_`, `.`.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// POSTs one delivery to the gateway's webhook endpoint as GitHub would; returns the status.
async fn post(gateway: std::net::SocketAddr, event: &str, guid: &str, hook_id: i64, secret: &SecretString, body: &[u8]) -> u16 {
    let signature = ck8s_crypto::github_signature(secret, body);
    let head = format!(
        "POST /api/v1/webhooks/github HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\nUser-Agent: GitHub-Hookshot/codex-k8s-relay\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: {event}\r\nX-GitHub-Delivery: {guid}\r\nX-GitHub-Hook-ID: {hook_id}\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(gateway).await.ok()?;
        s.write_all(head.as_bytes()).await.ok()?;
        s.write_all(body).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    tokio::time::timeout(Duration::from_secs(15), attempt).await.ok().flatten().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_tokens_go_into_headers() {
        assert!(super::header_safe("issues") && super::header_safe("pull_request_review") && super::header_safe("0b7c-11ef.a"));
        for bad in ["", "issues\r\nX-Evil: 1", "a b", &"x".repeat(101)] {
            assert!(!super::header_safe(bad), "{bad:?}");
        }
    }
}
