use super::{project, run, user, violated};
use uuid::Uuid;

#[tokio::test]
async fn a_second_owner_is_rejected_but_many_admins_are_fine() {
    let db = ck8s_testkit::fresh_db().await;
    user(&db.pool, "owner@example.com", true).await.unwrap();
    let err = user(&db.pool, "other@example.com", true).await.unwrap_err();
    assert_eq!(violated(err), "users_single_owner");
    user(&db.pool, "admin1@example.com", false).await.unwrap();
    user(&db.pool, "admin2@example.com", false).await.unwrap();
    // Emails are case-insensitive.
    let err = user(&db.pool, "OWNER@example.com", false).await.unwrap_err();
    assert_eq!(violated(err), "users_email_key");
}

#[tokio::test]
async fn duplicate_correlation_ids_are_rejected() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "p1").await;
    run(&db.pool, p, "delivery-1").await.unwrap();
    let err = run(&db.pool, p, "delivery-1").await.unwrap_err();
    assert_eq!(violated(err), "agent_runs_correlation_id_key");
    // The ingest path relies on ON CONFLICT to detect duplicates without an error.
    let inserted = sqlx::query(
        "INSERT INTO agent_runs (correlation_id, project_id, run_payload) VALUES ('delivery-1', $1, '{}')
         ON CONFLICT (correlation_id) DO NOTHING",
    )
    .bind(p)
    .execute(&db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(inserted, 0);
}

#[tokio::test]
async fn run_rows_keep_their_invariants() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "p1").await;
    let id = run(&db.pool, p, "c1").await.unwrap();
    let set = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query(sql).bind(id).execute(&pool).await }
    };
    assert_eq!(
        violated(set("UPDATE agent_runs SET status = 'bogus', started_at = now() WHERE id = $1").await.unwrap_err()),
        "agent_runs_status_check"
    );
    assert_eq!(violated(set("UPDATE agent_runs SET lease_owner = 'w1' WHERE id = $1").await.unwrap_err()), "agent_runs_lease_pair");
    assert_eq!(
        violated(set("UPDATE agent_runs SET status = 'succeeded', started_at = now() WHERE id = $1").await.unwrap_err()),
        "agent_runs_finished_iff_terminal"
    );
    set("UPDATE agent_runs SET status = 'running', started_at = now(), lease_owner = 'w1', lease_until = now() + interval '1 minute' WHERE id = $1")
        .await
        .unwrap();
    set("UPDATE agent_runs SET status = 'succeeded', finished_at = now(), lease_owner = NULL, lease_until = NULL WHERE id = $1")
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_project_cascades_to_everything_it_owns_and_keeps_the_audit_trail() {
    let db = ck8s_testkit::fresh_db().await;
    let pool = &db.pool;
    let p = project(pool, "doomed").await;
    let keep = project(pool, "kept").await;
    let u = user(pool, "member@example.com", false).await.unwrap();
    sqlx::query("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'read_write'), ($3, $2, 'read')")
        .bind(p)
        .bind(u)
        .bind(keep)
        .execute(pool)
        .await
        .unwrap();
    let repo: Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted)
         VALUES ($1, 'github', 42, 'acme', 'app', 'app', $2) RETURNING id",
    )
    .bind(p)
    .bind(vec![7u8; 44])
    .fetch_one(pool)
    .await
    .unwrap();
    let r = run(pool, p, "c-doomed").await.unwrap();
    let kept_run = run(pool, keep, "c-kept").await.unwrap();
    let session: Uuid = sqlx::query_scalar(
        "INSERT INTO agent_sessions (run_id, correlation_id, project_id, repository_full_name, agent_key)
         VALUES ($1, 'c-doomed', $2, 'acme/app', 'dev') RETURNING id",
    )
    .bind(r)
    .bind(p)
    .fetch_one(pool)
    .await
    .unwrap();
    for sql in [
        "INSERT INTO token_usage (session_id, run_id, model, prompt_tokens, completion_tokens, total_tokens) VALUES ($1, $2, 'gpt-5.4', 10, 5, 15)",
        "INSERT INTO mcp_action_requests (correlation_id, run_id, tool_name, action, approval_mode, requested_by) SELECT 'c-doomed', $2, 'secret.sync.k8s', 'apply', 'owner', 'dev' WHERE $1::uuid IS NOT NULL",
        "INSERT INTO learning_feedback (run_id, kind, explanation) SELECT $2, 'post_pr', 'why' WHERE $1::uuid IS NOT NULL",
        "INSERT INTO flow_events (correlation_id, run_id, actor_type, actor_id, event_type) SELECT 'c-doomed', $2, 'system', 'test', 'run.started' WHERE $1::uuid IS NOT NULL",
    ] {
        sqlx::query(sql).bind(session).bind(r).execute(pool).await.unwrap();
    }
    sqlx::query("INSERT INTO slots (project_id, slot_no) VALUES ($1, 1)").bind(p).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO github_side_effects (idempotency_key, correlation_id, run_id, repository_id, kind, target_number)
         VALUES ('k1', 'c-doomed', $1, $2, 'reaction', 1)",
    )
    .bind(r)
    .bind(repo)
    .execute(pool)
    .await
    .unwrap();

    sqlx::query("DELETE FROM projects WHERE id = $1").bind(p).execute(pool).await.unwrap();

    for (table, owned_by) in [
        ("project_members", "project_id = $1"),
        ("repositories", "project_id = $1"),
        ("agent_runs", "project_id = $1"),
        ("agent_sessions", "project_id = $1"),
        ("slots", "project_id = $1"),
        ("token_usage", "run_id = $2"),
        ("mcp_action_requests", "run_id = $2"),
        ("learning_feedback", "run_id = $2"),
        ("github_side_effects", "run_id = $2"),
    ] {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {owned_by}")).bind(p).bind(r).fetch_one(pool).await.unwrap();
        assert_eq!(n, 0, "{table} still has rows of the deleted project");
    }
    // The audit trail is not owned by the project: it survives.
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flow_events WHERE correlation_id = 'c-doomed'").fetch_one(pool).await.unwrap();
    assert_eq!(events, 1);
    // Other projects are untouched, and the user still exists.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM agent_runs WHERE id = $1").bind(kept_run).fetch_one(pool).await.unwrap();
    assert_eq!(kept, 1);
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM project_members WHERE user_id = $1").bind(u).fetch_one(pool).await.unwrap();
    assert_eq!(members, 1);

    // Deleting the user removes the remaining membership.
    sqlx::query("DELETE FROM users WHERE id = $1").bind(u).execute(pool).await.unwrap();
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM project_members").fetch_one(pool).await.unwrap();
    assert_eq!(members, 0);
}

#[tokio::test]
async fn deleting_a_repository_detaches_its_runs_instead_of_deleting_them() {
    let db = ck8s_testkit::fresh_db().await;
    let p = project(&db.pool, "p").await;
    let repo: Uuid = sqlx::query_scalar(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted)
         VALUES ($1, 'github', 7, 'Acme', 'App', 'app', $2) RETURNING id",
    )
    .bind(p)
    .bind(vec![1u8; 44])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Owner/name are case-insensitive within a project.
    let err = sqlx::query(
        "INSERT INTO repositories (project_id, provider, external_id, owner, name, alias, token_encrypted)
         VALUES ($1, 'github', 8, 'acme', 'app', 'app2', $2)",
    )
    .bind(p)
    .bind(vec![1u8; 44])
    .execute(&db.pool)
    .await
    .unwrap_err();
    assert_eq!(violated(err), "repositories_project_full_name");
    let r = run(&db.pool, p, "c1").await.unwrap();
    sqlx::query("UPDATE agent_runs SET repository_id = $1 WHERE id = $2").bind(repo).bind(r).execute(&db.pool).await.unwrap();
    sqlx::query("DELETE FROM repositories WHERE id = $1").bind(repo).execute(&db.pool).await.unwrap();
    let still: Option<Uuid> =
        sqlx::query_scalar("SELECT repository_id FROM agent_runs WHERE id = $1").bind(r).fetch_one(&db.pool).await.unwrap();
    assert_eq!(still, None);
}

#[tokio::test]
async fn audit_tables_are_append_only() {
    let db = ck8s_testkit::fresh_db().await;
    sqlx::query(
        "INSERT INTO flow_events (correlation_id, actor_type, actor_id, event_type) VALUES ('c', 'system', 'x', 'webhook.received')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    for sql in ["UPDATE flow_events SET actor_id = 'y'", "DELETE FROM flow_events", "TRUNCATE flow_events"] {
        let err = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let err =
        sqlx::query("INSERT INTO flow_events (correlation_id, actor_type, actor_id, event_type) VALUES ('c', 'robot', 'x', 'run.started')")
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(violated(err), "flow_events_actor_type_check");
}
