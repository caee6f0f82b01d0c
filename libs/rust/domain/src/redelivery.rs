//! Which webhook deliveries were lost and must be asked for again. GitHub does not redeliver by
//! itself: a delivery the gateway could not take (no answer, or a 5xx while control-plane or
//! PostgreSQL was down) stays failed until someone asks. The worker's redelivery loop lists each
//! bound repository's recent hook deliveries and asks GitHub to deliver again those this decision
//! names; ingest deduplicates by delivery id, so asking twice never starts a run twice.
//!
//! A delivery (one `X-GitHub-Delivery` id, possibly attempted several times) is lost when none of
//! its attempts was answered with anything but "no answer" or a 5xx, ingest never recorded its id,
//! it is younger than [`RedeliveryPolicy::max_age`], and the platform has not already asked for it
//! [`RedeliveryPolicy::max_requests`] times. Requests for one id back off exponentially, so a
//! gateway that stays down is not flooded. A 4xx settles a delivery: the gateway refused it on its
//! merits (signature, size, shape) and would refuse it again.

use crate::forge::HookDelivery;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How the platform asks for lost deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedeliveryPolicy {
    /// Deliveries older than this are left alone (GitHub keeps them for three days; an event that
    /// old would start work nobody expects any more).
    pub max_age: Duration,
    /// How many times one delivery id is asked for before the platform gives up on it.
    pub max_requests: u32,
    /// The wait after the first request; each later one waits twice as long as the one before.
    pub first_backoff: Duration,
}

impl Default for RedeliveryPolicy {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(24 * 3600), max_requests: 5, first_backoff: Duration::from_secs(30) }
    }
}

/// The platform's earlier requests for one delivery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub count: u32,
    pub last_at: DateTime<Utc>,
}

/// One request to make: deliver attempt `delivery_id` (the newest of `guid`) again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeliver {
    pub delivery_id: i64,
    pub guid: String,
    pub event: String,
    /// This is the platform's request number `request` for `guid` (1 for the first).
    pub request: u32,
}

/// What one look at a hook's deliveries decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Requests to make, oldest delivery first.
    pub redeliver: Vec<Redeliver>,
    /// Lost deliveries the platform has asked for `max_requests` times and now leaves alone.
    pub abandoned: Vec<String>,
}

/// Whether an answer means the receiver was not there to decide (worth asking again).
pub fn transient(status_code: i64) -> bool {
    status_code == 0 || status_code >= 500
}

/// Decides which of `deliveries` (any order, several attempts per id allowed) to ask for again.
/// `ingested` holds the delivery ids ingest recorded; `requested` the platform's earlier requests.
pub fn plan(
    deliveries: &[HookDelivery],
    ingested: &HashSet<String>,
    requested: &HashMap<String, Requested>,
    now: DateTime<Utc>,
    policy: &RedeliveryPolicy,
) -> Plan {
    // Attempts grouped by delivery id; BTreeMap keeps the outcome independent of input order.
    let mut by_guid: BTreeMap<&str, Vec<&HookDelivery>> = BTreeMap::new();
    for d in deliveries {
        by_guid.entry(d.guid.as_str()).or_default().push(d);
    }
    let max_age = chrono::Duration::from_std(policy.max_age).unwrap_or(chrono::Duration::MAX);
    let mut plan = Plan::default();
    let mut lost: Vec<Redeliver> = Vec::new();
    for (guid, attempts) in by_guid {
        if guid.is_empty() || ingested.contains(guid) || attempts.iter().any(|a| !transient(a.status_code)) {
            continue;
        }
        // The first attempt is the event's own time; without one, the age is unknown and the
        // delivery is not trusted to be recent.
        let first_at = attempts.iter().filter_map(|a| a.delivered_at).min();
        if first_at.is_none_or(|t| now - t > max_age) {
            continue;
        }
        let Some(newest) = attempts.iter().max_by_key(|a| a.id) else { continue };
        let earlier = requested.get(guid);
        let count = earlier.map_or(0, |r| r.count);
        if count >= policy.max_requests {
            plan.abandoned.push(guid.to_string());
            continue;
        }
        if let Some(r) = earlier
            && now - r.last_at < backoff(policy.first_backoff, r.count)
        {
            continue;
        }
        lost.push(Redeliver { delivery_id: newest.id, guid: guid.to_string(), event: newest.event.clone(), request: count + 1 });
    }
    // Oldest event first, so runs start in the order their events happened.
    let first_id = |g: &str| deliveries.iter().filter(|d| d.guid == g).map(|d| d.id).min().unwrap_or(i64::MAX);
    lost.sort_by_key(|r| first_id(&r.guid));
    plan.redeliver = lost;
    plan
}

/// The wait after `count` requests: `first`, then doubling (capped at a day).
fn backoff(first: Duration, count: u32) -> chrono::Duration {
    let factor = 1u32 << count.saturating_sub(1).min(16);
    let wait = first.saturating_mul(factor).min(Duration::from_secs(24 * 3600));
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mins_ago: i64) -> DateTime<Utc> {
        now() - chrono::Duration::minutes(mins_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn d(id: i64, guid: &str, status: i64, mins_ago: i64) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            event: "issues".into(),
            action: Some("labeled".into()),
            status_code: status,
            redelivery: false,
            delivered_at: Some(at(mins_ago)),
        }
    }

    fn guids(p: &Plan) -> Vec<(&str, i64, u32)> {
        p.redeliver.iter().map(|r| (r.guid.as_str(), r.delivery_id, r.request)).collect()
    }

    #[test]
    fn only_deliveries_nobody_took_are_asked_for_again_oldest_first() {
        let list = [
            d(9, "late", 503, 1),
            d(1, "down", 0, 10),
            d(2, "ok", 200, 9),
            d(3, "refused", 401, 8),
            d(4, "retried-ok", 503, 7),
            d(5, "retried-ok", 202, 6),
            d(6, "ingested", 503, 5),
            d(7, "down", 502, 4),
        ];
        let ingested = HashSet::from(["ingested".to_string()]);
        let p = plan(&list, &ingested, &HashMap::new(), now(), &RedeliveryPolicy::default());
        // "down" is asked for by its newest attempt, before "late" whose event came later.
        assert_eq!(guids(&p), vec![("down", 7, 1), ("late", 9, 1)]);
        assert!(p.abandoned.is_empty());
    }

    #[test]
    fn old_or_undated_deliveries_are_left_alone() {
        let mut undated = d(2, "undated", 503, 0);
        undated.delivered_at = None;
        let list = [d(1, "old", 503, 25 * 60), undated, d(3, "young", 503, 23 * 60)];
        let p = plan(&list, &HashSet::new(), &HashMap::new(), now(), &RedeliveryPolicy::default());
        assert_eq!(guids(&p), vec![("young", 3, 1)]);
    }

    #[test]
    fn requests_back_off_and_stop_after_the_limit() {
        let policy = RedeliveryPolicy { max_requests: 3, first_backoff: Duration::from_secs(60), ..Default::default() };
        let list = [d(1, "g", 503, 30)];
        let asked = |count, mins_ago| HashMap::from([("g".to_string(), Requested { count, last_at: at(mins_ago) })]);
        // One request 30 s... 59 s ago: wait; after a minute: ask again.
        assert!(plan(&list, &HashSet::new(), &asked(1, 0), now(), &policy).redeliver.is_empty());
        assert_eq!(guids(&plan(&list, &HashSet::new(), &asked(1, 1), now(), &policy)), vec![("g", 1, 2)]);
        // After two requests the wait is two minutes.
        assert!(plan(&list, &HashSet::new(), &asked(2, 1), now(), &policy).redeliver.is_empty());
        assert_eq!(guids(&plan(&list, &HashSet::new(), &asked(2, 2), now(), &policy)), vec![("g", 1, 3)]);
        // After the third, the platform gives up and says so.
        let p = plan(&list, &HashSet::new(), &asked(3, 60), now(), &policy);
        assert!(p.redeliver.is_empty());
        assert_eq!(p.abandoned, vec!["g".to_string()]);
    }

    #[test]
    fn the_answer_does_not_depend_on_the_listing_order() {
        let mut list = vec![d(1, "a", 503, 5), d(2, "b", 0, 4), d(3, "a", 503, 3), d(4, "c", 200, 2)];
        let first = plan(&list, &HashSet::new(), &HashMap::new(), now(), &RedeliveryPolicy::default());
        list.reverse();
        assert_eq!(plan(&list, &HashSet::new(), &HashMap::new(), now(), &RedeliveryPolicy::default()), first);
        assert_eq!(guids(&first), vec![("a", 3, 1), ("b", 2, 1)]);
    }

    #[test]
    fn transient_answers_are_no_answer_and_server_errors() {
        assert!(transient(0) && transient(500) && transient(503));
        assert!(!transient(200) && !transient(202) && !transient(400) && !transient(401) && !transient(413));
    }
}
