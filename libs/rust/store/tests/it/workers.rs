use ck8s_store::workers;
use std::time::Duration;

#[tokio::test]
async fn heartbeats_extend_expiry_and_stop_marks_the_worker_stopped() {
    let db = ck8s_testkit::fresh_db().await;
    let first = workers::heartbeat(&db.pool, "w1", Some("ns"), Some("pod"), Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = workers::heartbeat(&db.pool, "w1", Some("ns"), Some("pod"), Duration::from_secs(60)).await.unwrap();
    assert!(second > first);
    let row = workers::get(&db.pool, "w1").await.unwrap().unwrap();
    assert_eq!(row.status, "active");
    assert!(row.expires_at > row.heartbeat_at + chrono::Duration::seconds(59));

    assert!(workers::mark_stopped(&db.pool, "w1").await.unwrap());
    let row = workers::get(&db.pool, "w1").await.unwrap().unwrap();
    assert_eq!(row.status, "stopped");
    assert!(!workers::mark_stopped(&db.pool, "nobody").await.unwrap());
}
