//! Bootstrap of the owner, users, project and repositories: idempotent, tokens sealed.

use ck8s_testkit::process::run_to_exit;
use control_plane::bootstrap::{self, BootstrapConfig, MemberSeed, RepoSeed};
use secrecy::{ExposeSecret, SecretString};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn cfg(owner: &str) -> BootstrapConfig {
    BootstrapConfig {
        owner_email: Some(owner.into()),
        owner_github_login: Some(owner.split('@').next().unwrap().into()),
        allowed_emails: vec!["allowed@example.com".into()],
        admin_emails: vec!["admin@example.com".into()],
        members: vec![MemberSeed { login: "alice".into(), email: "alice@example.com".into(), role: "read_write".into() }],
        project_slug: Some("acme".into()),
        project_name: Some("Acme".into()),
        repositories: vec![RepoSeed { owner: "acme".into(), name: "app".into(), external_id: 4242 }],
        github_token: Some(SecretString::from("ghp_secret_value".to_string())),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_twice_changes_nothing_and_tokens_are_sealed() {
    let db = ck8s_testkit::fresh_db().await;
    let sealer = ck8s_crypto::Sealer::from_hex(&SecretString::from(KEY.to_string())).unwrap();
    bootstrap::apply(&db.pool, &cfg("owner@example.com"), &sealer).await.unwrap();
    bootstrap::apply(&db.pool, &cfg("owner@example.com"), &sealer).await.unwrap();
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM projects), (SELECT count(*) FROM repositories), (SELECT count(*) FROM project_members)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(counts, (4, 1, 1, 2), "owner, allowed, admin, alice; one project; one repo; owner+alice members");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT token_encrypted FROM repositories").fetch_one(&db.pool).await.unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("ghp_secret_value"), "the token must not be stored in clear");
    let context = ck8s_crypto::repository_token_context("github", 4242);
    assert_eq!(sealer.open(&context, &sealed).unwrap().expose_secret(), "ghp_secret_value");
    assert!(sealer.is_current(&sealed), "sealed with the current key, bound to its row");

    // A new owner email takes the flag; the old owner keeps their account.
    bootstrap::apply(&db.pool, &cfg("new-owner@example.com"), &sealer).await.unwrap();
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT email::text FROM users WHERE is_platform_owner").fetch_all(&db.pool).await.unwrap();
    assert_eq!(owners, vec!["new-owner@example.com".to_string()]);
    let old: bool =
        sqlx::query_scalar("SELECT is_platform_admin FROM users WHERE email = 'owner@example.com'").fetch_one(&db.pool).await.unwrap();
    assert!(old);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_recreated_under_its_name_is_rebound_and_a_second_one_with_the_same_name_gets_its_own_alias() {
    let db = ck8s_testkit::fresh_db().await;
    let sealer = ck8s_crypto::Sealer::from_hex(&SecretString::from(KEY.to_string())).unwrap();
    bootstrap::apply(&db.pool, &cfg("owner@example.com"), &sealer).await.unwrap();
    let first: uuid::Uuid = sqlx::query_scalar("SELECT id FROM repositories").fetch_one(&db.pool).await.unwrap();
    // acme/app deleted and created again on GitHub (or a fresh forge-sim): same name, new id.
    let mut recreated = cfg("owner@example.com");
    recreated.repositories = vec![RepoSeed { owner: "acme".into(), name: "app".into(), external_id: 7 }];
    bootstrap::apply(&db.pool, &recreated, &sealer).await.unwrap();
    let rows: Vec<(uuid::Uuid, i64, String)> =
        sqlx::query_as("SELECT id, external_id, alias FROM repositories").fetch_all(&db.pool).await.unwrap();
    assert_eq!(rows, vec![(first, 7, "app".to_string())], "the binding moved to the new id and kept its row");
    // Another owner's repository with the same name joins the project under owner-name.
    let mut fork = cfg("owner@example.com");
    fork.repositories = vec![
        RepoSeed { owner: "acme".into(), name: "app".into(), external_id: 7 },
        RepoSeed { owner: "bob".into(), name: "app".into(), external_id: 9 },
    ];
    bootstrap::apply(&db.pool, &fork, &sealer).await.unwrap();
    let aliases: Vec<(i64, String)> =
        sqlx::query_as("SELECT external_id, alias FROM repositories ORDER BY external_id").fetch_all(&db.pool).await.unwrap();
    assert_eq!(aliases, vec![(7, "app".to_string()), (9, "bob-app".to_string())]);
}

#[test]
fn malformed_bootstrap_settings_are_named() {
    let e = vec![
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), KEY.to_string()),
        ("CODEXK8S_BOOTSTRAP_REPOSITORIES".to_string(), "acme/app".to_string()),
        ("CODEXK8S_BOOTSTRAP_MEMBERS".to_string(), "alice:alice@example.com:owner".to_string()),
        ("CODEXK8S_BOOTSTRAP_OWNER_EMAIL".to_string(), "not-an-email".to_string()),
        ("CODEXK8S_SERVICES_CONFIG_PATH".to_string(), "/nonexistent/services.yaml".to_string()),
        ("CODEXK8S_GITHUB_API_URL".to_string(), "api.github.com".to_string()),
        ("CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL".to_string(), "soon".to_string()),
        ("CODEXK8S_CONSOLE_URL".to_string(), "console.example.com".to_string()),
    ];
    let (code, out) = run_to_exit(env!("CARGO_BIN_EXE_control-plane"), &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    for var in [
        "CODEXK8S_BOOTSTRAP_REPOSITORIES",
        "CODEXK8S_BOOTSTRAP_MEMBERS",
        "CODEXK8S_BOOTSTRAP_OWNER_EMAIL",
        "CODEXK8S_SERVICES_CONFIG_PATH",
        "CODEXK8S_GITHUB_API_URL",
        "CODEXK8S_SIDE_EFFECTS_POLL_INTERVAL",
        "CODEXK8S_CONSOLE_URL",
    ] {
        assert!(out.contains(var), "{var} not named:\n{out}");
    }
    let e = vec![
        ("CODEXK8S_TOKEN_ENCRYPTION_KEY".to_string(), KEY.to_string()),
        ("CODEXK8S_BOOTSTRAP_REPOSITORIES".to_string(), "acme/app=1".to_string()),
    ];
    let (code, out) = run_to_exit(env!("CARGO_BIN_EXE_control-plane"), &e, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("CODEXK8S_GITHUB_PAT") && out.contains("CODEXK8S_BOOTSTRAP_PROJECT_SLUG"), "{out}");
}
