//! The ingest's read of a batch stays index probes however the tables grow: its generic plan
//! (the one every batch uses, with the ingest's plan settings) never scans the deliveries, the
//! runs or the users — neither when planned on nearly empty tables nor on large ones.

use sqlx::PgPool;

async fn plan(pool: &PgPool) -> String {
    let mut conn = pool.acquire().await.unwrap();
    for (name, value) in ck8s_store::ingest::PLAN_SETTINGS {
        sqlx::query(&format!("SET {name} = {value}")).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(&format!("PREPARE facts AS {}", ck8s_store::ingest::facts_sql())).execute(&mut *conn).await.unwrap();
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE facts(ARRAY['d-1', 'd-2'], ARRAY[4242, 4242]::bigint[], ARRAY['ab', 'cd'], ARRAY['alice', 'bob'],
                               ARRAY[1, 2]::bigint[], ARRAY[7, NULL]::int[], ARRAY[false, false], ARRAY[NULL, 9]::int[])",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_read_probes_indexes_however_much_history_is_stored() {
    let db = ck8s_testkit::fresh_db().await;
    let p = super::project(&db.pool, "history").await;
    let repo: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, default_ref, token_encrypted)
         VALUES ($1, 'github', 4242, 'acme', 'app', 'app', 'main', $2) RETURNING id",
    )
    .bind(p)
    .bind(vec![1u8; 40])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (delivery_id, event_type, repository_external_id, repository_id, correlation_id, outcome, payload_sha256)
         SELECT 'old-' || g, 'issues', 4242, $1, 'old-' || g, 'accepted', md5(g::text) || md5(g::text) FROM generate_series(1, 50000) g",
    )
    .bind(repo)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO agent_runs (correlation_id, project_id, repository_id, run_payload, issue_number, pr_number, status, started_at, finished_at)
         SELECT 'run-' || g, $1, $2, '{}', g % 5000 + 1, g % 3000 + 1, 'succeeded', now(), now() FROM generate_series(1, 50000) g",
    )
    .bind(p)
    .bind(repo)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO users (email, github_login) SELECT 'u' || g || '@example.com', 'u' || g FROM generate_series(1, 5000) g")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    assert_probes_only(&plan(&db.pool).await);
}

fn assert_probes_only(plan: &str) {
    for table in ["webhook_deliveries", "agent_runs", "users"] {
        assert!(!plan.contains(&format!("Seq Scan on {table}")), "the read scans {table}:\n{plan}");
    }
}

/// A fresh install: the plan is made while the tables are nearly empty and kept while they grow.
#[tokio::test(flavor = "multi_thread")]
async fn the_batch_read_planned_on_empty_tables_still_probes_indexes() {
    let db = ck8s_testkit::fresh_db().await;
    assert_probes_only(&plan(&db.pool).await);
}
