use ck8s_store::{MIGRATOR, migrate};
use sqlx::PgPool;

async fn schema_fingerprint(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
           FROM information_schema.columns WHERE table_schema = 'public'
         UNION ALL
         SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
         UNION ALL
         SELECT 'constraint ' || conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
         UNION ALL
         SELECT 'agents ' || count(*) FROM agents
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_a_second_run_changes_nothing() {
    let db = ck8s_testkit::empty_db().await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(before, 0, "the database must start empty");

    migrate(&db.pool).await.unwrap();
    let first = schema_fingerprint(&db.pool).await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&db.pool).await.unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());

    migrate(&db.pool).await.unwrap();
    let second = schema_fingerprint(&db.pool).await;
    assert_eq!(first, second, "a second migration run must change nothing");
    assert!(first.len() > 200, "schema looks too small: {} items", first.len());
}

#[tokio::test]
async fn every_table_of_the_data_model_exists() {
    let db = ck8s_testkit::fresh_db().await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").fetch_all(&db.pool).await.unwrap();
    for t in [
        "users",
        "projects",
        "project_members",
        "repositories",
        "platform_github_tokens",
        "project_github_tokens",
        "agents",
        "agent_runs",
        "worker_instances",
        "slots",
        "flow_events",
        "agent_sessions",
        "mcp_action_requests",
        "project_databases",
        "learning_feedback",
        "runtime_deploy_tasks",
        "runtime_errors",
        "repository_preflight_locks",
        "token_usage",
        "links",
        "docs_meta",
        "doc_chunks",
        "webhook_deliveries",
        "github_side_effects",
        "staff_refresh_tokens",
        "cleanup_requests",
    ] {
        assert!(tables.iter().any(|x| x == t), "missing table {t}");
    }
    let exts: Vec<String> = sqlx::query_scalar("SELECT extname::text FROM pg_extension").fetch_all(&db.pool).await.unwrap();
    assert!(exts.contains(&"vector".to_string()) && exts.contains(&"citext".to_string()), "{exts:?}");
}

#[tokio::test]
async fn the_eight_system_agents_are_seeded_as_the_domain_defines_them() {
    let db = ck8s_testkit::fresh_db().await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT agent_key, name, role_kind FROM agents WHERE project_id IS NULL ORDER BY agent_key")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut expected: Vec<(String, String, String)> = ck8s_domain::agent::SystemAgent::ALL
        .iter()
        .map(|a| (a.key().to_string(), a.display_name().to_string(), "system".to_string()))
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn runs_queued_before_the_upgrade_get_their_payload_version() {
    // Migrate up to 0011, queue a run the way the build before versioning did, then apply the rest.
    let db = ck8s_testkit::empty_db().await;
    for m in MIGRATOR.iter().filter(|m| m.version < 20260101000012) {
        sqlx::raw_sql(&m.sql).execute(&db.pool).await.unwrap();
    }
    let project: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO projects (slug, name) VALUES ('acme', 'acme') RETURNING id").fetch_one(&db.pool).await.unwrap();
    let old =
        serde_json::json!({"trigger": {"source": "issue_label", "label": "run:dev", "kind": "dev"}, "runtime": {"deploy_only": false}});
    let versioned = serde_json::json!({"version": 1, "trigger": {"kind": "dev"}});
    for (corr, payload) in [("old", &old), ("new", &versioned)] {
        sqlx::query("INSERT INTO agent_runs (correlation_id, project_id, run_payload) VALUES ($1, $2, $3)")
            .bind(corr)
            .bind(project)
            .bind(payload)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let last = MIGRATOR.iter().find(|m| m.version == 20260101000012).expect("migration 0012");
    sqlx::raw_sql(&last.sql).execute(&db.pool).await.unwrap();
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT correlation_id, run_payload FROM agent_runs ORDER BY correlation_id").fetch_all(&db.pool).await.unwrap();
    assert_eq!(rows[0].1, serde_json::json!({"version": 1, "trigger": {"kind": "dev"}}), "a versioned payload is left as it was");
    let mut expected = old.clone();
    expected["version"] = serde_json::json!(1);
    assert_eq!(rows[1].1, expected, "the old payload keeps every field and gains its version");
}
