//! No webhook is lost to an outage: with control-plane stopped, forge-sim's deliveries of two
//! labelled issues fail (the gateway answers 503); once control-plane is back, the worker's
//! redelivery loop asks forge-sim to deliver them again, and each issue gets exactly one run —
//! still one after further passes of the loop.

use crate::stack::{Setup, Stack, wait_for};
use serde_json::Value;
use std::time::Duration;

/// The worker's completed redelivery passes (its metric).
fn passes(st: &Stack) -> u64 {
    let (_, body) = ck8s_testkit::process::http_get(st.worker.addr("http"), "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("codexk8s_worker_webhook_redelivery_passes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `(guid, status)` of every delivery forge-sim attempted to the platform's hook.
fn deliveries(st: &Stack) -> Vec<(String, i64)> {
    let (s, hooks) = st.fs.call("GET", "/repos/acme/app/hooks", Some(&st.bot), None);
    assert_eq!(s, 200, "{hooks}");
    let id = hooks[0]["id"].as_i64().unwrap();
    let (s, list) = st.fs.call("GET", &format!("/repos/acme/app/hooks/{id}/deliveries?per_page=100"), Some(&st.bot), None);
    assert_eq!(s, 200, "{list}");
    list.as_array()
        .into_iter()
        .flatten()
        .map(|d: &Value| (d["guid"].as_str().unwrap_or_default().to_string(), d["status_code"].as_i64().unwrap_or(-1)))
        .collect()
}

async fn runs_of(st: &Stack, issue: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE issue_number = $1").bind(issue as i32).fetch_one(&st.db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_sent_while_control_plane_is_down_start_their_runs_exactly_once_when_it_is_back() {
    let mut st = Stack::start("redelivery", Setup { no_launch: true, ..Setup::default() }).await;
    let stopped = st.cp.stop("TERM", Duration::from_secs(20));
    assert!(stopped.is_some(), "control-plane did not stop\n{}", st.diag());

    let first = st.labelled_issue("Add a greeting", "Print hello.", "run:dev");
    let second = st.labelled_issue("Add a farewell", "Print bye.", "run:dev");
    // Every delivery so far failed: the gateway could not reach control-plane (forge-sim delivers
    // in the background; the issues were opened and labelled, four events).
    let diag = || st.diag();
    let failed =
        wait_for("four failed deliveries", Duration::from_secs(30), || async { Some(deliveries(&st)).filter(|d| d.len() >= 4) }, &diag)
            .await;
    assert!(failed.iter().all(|(_, status)| *status == 503), "{failed:?}");
    assert_eq!(runs_of(&st, first).await + runs_of(&st, second).await, 0);

    st.restart_control_plane().await;
    let diag = || st.diag();
    wait_for(
        "both issues' runs after the outage",
        Duration::from_secs(60),
        || async { (runs_of(&st, first).await >= 1 && runs_of(&st, second).await >= 1).then_some(()) },
        &diag,
    )
    .await;

    // Every lost delivery is ingested, and forge-sim saw it answered 2xx.
    let guids: Vec<String> = failed.iter().map(|(g, _)| g.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let all_ingested = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE delivery_id = ANY($1)")
            .bind(&guids)
            .fetch_one(&st.db.pool)
            .await
            .unwrap();
        (n == guids.len() as i64).then_some(())
    };
    wait_for("every lost delivery ingested", Duration::from_secs(60), all_ingested, &diag).await;
    let requests = || async {
        let rows: Vec<(String, i32)> =
            sqlx::query_as("SELECT delivery_guid, requests FROM webhook_redeliveries WHERE delivery_guid = ANY($1) ORDER BY 1")
                .bind(&guids)
                .fetch_all(&st.db.pool)
                .await
                .unwrap();
        rows
    };
    let asked = requests().await;
    assert_eq!(asked.len(), guids.len(), "each lost delivery was asked for: {asked:?}");

    // Two more passes of the loop change nothing: ingested deliveries are not asked for again.
    let seen = passes(&st);
    wait_for("two more redelivery passes", Duration::from_secs(30), || async { (passes(&st) >= seen + 2).then_some(()) }, &diag).await;
    assert_eq!(requests().await, asked);
    assert_eq!((runs_of(&st, first).await, runs_of(&st, second).await), (1, 1), "{}", st.diag());
    let after = deliveries(&st);
    for guid in &guids {
        assert!(after.iter().any(|(g, s)| g == guid && (200..300).contains(s)), "delivery {guid}: {after:?}");
    }
}
