//! The ingest's read of a batch stays index probes however the tables grow: its generic plan
//! (the one every batch uses, with the ingest's plan settings) never scans the deliveries, the
//! runs or the users — neither when planned on nearly empty tables nor on large ones — and the
//! pages it reads per delivery do not grow with the history stored.

use sqlx::PgPool;

/// The arguments of a batch of two deliveries of repository 4242: an issue event (no pull request)
/// and a pull request event.
const ARGS: &str = "(ARRAY['d-1', 'd-2'], ARRAY[4242, 4242]::bigint[], ARRAY['ab', 'cd'], ARRAY['alice', 'bob'],
                     ARRAY[1, 2]::bigint[], ARRAY[7, NULL]::int[], ARRAY[false, false], ARRAY[NULL, 9]::int[])";

/// A transaction set up as the ingest sets up each batch's (its lock statement applies the plan
/// settings), with the read prepared as `facts`.
async fn prepared(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    ck8s_store::ingest::lock(&mut tx, &[]).await.unwrap();
    sqlx::query(&format!("PREPARE facts AS {}", ck8s_store::ingest::facts_sql())).execute(&mut *tx).await.unwrap();
    tx
}

async fn plan(conn: &mut sqlx::PgConnection) -> String {
    let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE facts{ARGS}")).fetch_all(&mut *conn).await.unwrap();
    lines.join("\n")
}

/// Runs the read once and returns the shared buffers it touched, with its plan for the message.
async fn pages_read(conn: &mut sqlx::PgConnection) -> (u64, String) {
    let lines: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE facts{ARGS}")).fetch_all(&mut *conn).await.unwrap();
    let plan = lines.join("\n");
    let top = lines.iter().find_map(|l| l.trim().strip_prefix("Buffers: shared hit=")).unwrap_or("0");
    let hits = top.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("0").parse().unwrap();
    (hits, plan)
}

/// Stores 50,000 finished runs (ten per issue, some with pull requests) and 50,000 deliveries of
/// repository 4242, and 5,000 users.
async fn store_history(pool: &PgPool) {
    let p = super::project(pool, "history").await;
    let repo: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, default_ref, token_encrypted)
         VALUES ($1, 'github', 4242, 'acme', 'app', 'app', 'main', $2) RETURNING id",
    )
    .bind(p)
    .bind(vec![1u8; 40])
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, event_type, repository_external_id, repository_id, correlation_id, outcome, payload_sha256)
         SELECT 'old-' || g, 'issues', 4242, $1, 'old-' || g, 'accepted', md5(g::text) || md5(g::text) FROM generate_series(1, 50000) g",
    )
    .bind(repo)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, issue_number, pr_number, status, started_at, finished_at)
         SELECT 'run-' || g, $1, $2, '{}', g % 5000 + 1, g % 3000 + 1, 'succeeded', now(), now() FROM generate_series(1, 50000) g",
    )
    .bind(p)
    .bind(repo)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO users (email, github_login) SELECT 'u' || g || '@example.com', 'u' || g FROM generate_series(1, 5000) g")
        .execute(pool)
        .await
        .unwrap();
}

/// Pages one batch of two deliveries may read: a few per index probe, whatever the history.
const PAGE_BUDGET: u64 = 200;

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_read_probes_indexes_however_much_history_is_stored() {
    let db = ck8s_testkit::fresh_db().await;
    store_history(&db.pool).await;
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    let mut conn = prepared(&db.pool).await;
    assert_probes_only(&plan(&mut conn).await);
    let (pages, plan) = pages_read(&mut conn).await;
    assert!(pages <= PAGE_BUDGET, "the read touched {pages} pages (budget {PAGE_BUDGET}):\n{plan}");
}

fn assert_probes_only(plan: &str) {
    for table in ["webhook_deliveries", "agent_runs", "users"] {
        assert!(!plan.contains(&format!("Seq Scan on {table}")), "the read scans {table}:\n{plan}");
    }
}

/// A fresh install: the plan is made while the tables are nearly empty and kept while they grow,
/// and it still reads only a few pages per delivery once they have.
#[tokio::test(flavor = "multi_thread")]
async fn the_batch_read_planned_on_empty_tables_still_probes_indexes() {
    let db = ck8s_testkit::fresh_db().await;
    let mut conn = prepared(&db.pool).await;
    assert_probes_only(&plan(&mut conn).await);
    // The generic plan is cached at its first run, on the empty tables…
    pages_read(&mut conn).await;
    // …and kept after they have grown (no statistics are gathered in between).
    store_history(&db.pool).await;
    let (pages, plan) = pages_read(&mut conn).await;
    assert_probes_only(&plan);
    assert!(pages <= PAGE_BUDGET, "the read touched {pages} pages (budget {PAGE_BUDGET}):\n{plan}");
}
