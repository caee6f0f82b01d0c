use sqlx::Row;

/// A deterministic pseudo-random unit-ish vector of 3072 dimensions.
fn embedding(seed: u64) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut parts = Vec::with_capacity(3072);
    for _ in 0..3072 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        parts.push(format!("{:.4}", (x % 2000) as f32 / 1000.0 - 1.0));
    }
    format!("[{}]", parts.join(","))
}

#[tokio::test]
async fn nearest_neighbour_search_on_doc_chunks_uses_the_hnsw_index() {
    let db = ck8s_testkit::fresh_db().await;
    sqlx::query("INSERT INTO docs_meta (doc_id, title, type) VALUES ('adr-1', 'ADR 1', 'adr')").execute(&db.pool).await.unwrap();
    // Enough rows that the planner prefers the index on its own (no enable_seqscan tricks).
    let rows = 1200;
    let mut tx = db.pool.begin().await.unwrap();
    for i in 0..rows {
        sqlx::query("INSERT INTO doc_chunks (doc_id, chunk_no, chunk_text, embedding) VALUES ('adr-1', $1, $2, $3::halfvec(3072))")
            .bind(i)
            .bind(format!("chunk {i}"))
            .bind(embedding(i as u64))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE doc_chunks").execute(&db.pool).await.unwrap();

    let query = embedding(17);
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT chunk_no FROM doc_chunks ORDER BY embedding <=> $1::halfvec(3072) LIMIT 5")
        .bind(&query)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("doc_chunks_embedding_hnsw"), "the HNSW index is not used:\n{plan}");

    // And it finds the exact match first.
    let best = sqlx::query("SELECT chunk_no FROM doc_chunks ORDER BY embedding <=> $1::halfvec(3072) LIMIT 1")
        .bind(&query)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(best.get::<i32, _>(0), 17);

    // 3072 dimensions are enforced.
    let err = sqlx::query(
        "INSERT INTO doc_chunks (doc_id, chunk_no, chunk_text, embedding) VALUES ('adr-1', 99999, 'x', '[1,2,3]'::halfvec(3072))",
    )
    .execute(&db.pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("expected 3072 dimensions"), "{err}");
}
