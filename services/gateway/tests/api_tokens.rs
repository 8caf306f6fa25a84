//! API tokens: the value is usable, shown once (only its hash is stored), scoped,
//! expiring and revocable, with the last use recorded.

use casescope_db::{Database, DbOptions};
use casescope_gateway::policy::GlobalRole;
use casescope_gateway::{ALL_MIGRATIONS, ApiTokens, Users};

#[tokio::test]
async fn api_tokens_are_hashed_scoped_expiring_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let user = Users::new(db.clone())
        .create(
            "robot",
            "SOC automation",
            "a long robot password",
            GlobalRole::Analyst,
        )
        .await
        .unwrap();
    let tokens = ApiTokens::new(db.clone());
    let now = casescope_db::now_micros();
    let day = 24 * 3600 * 1_000_000i64;
    let case = "01a20545-ff79-73bd-be57-fc0fc36e8375".to_string();

    let (row, value) = tokens
        .create(
            &user.id,
            "siem",
            std::slice::from_ref(&case),
            true,
            now + 30 * day,
        )
        .await
        .unwrap();
    assert!(value.starts_with("cst_") && value.starts_with(&row.value_prefix));
    assert_eq!(row.case_ids, std::slice::from_ref(&case));
    assert!(row.read_only);
    // Only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM gateway_api_tokens")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], value);
    assert!(!stored[0].contains(&value[4..]));

    let used = tokens.authenticate(&value).await.unwrap().unwrap();
    assert_eq!(used.id, row.id);
    assert!(
        tokens
            .get(&row.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    );
    assert!(
        tokens
            .authenticate("cst_not-a-token")
            .await
            .unwrap()
            .is_none()
    );

    // Refusals, each naming the field.
    for (name, expires, cases) in [
        ("", now + day, vec![]),
        ("expired", now - 1, vec![]),
        ("too long", now + 400 * day, vec![]),
        ("bad case", now + day, vec!["../x".to_string()]),
    ] {
        assert!(
            tokens
                .create(&user.id, name, &cases, false, expires)
                .await
                .is_err(),
            "{name}"
        );
    }
    assert!(
        tokens
            .create(&user.id, "siem", &[], false, now + day)
            .await
            .is_err(),
        "unique name"
    );

    // Listing, revocation (idempotent), an expired token refused.
    let (other, other_value) = tokens
        .create(&user.id, "backup", &[], false, now + day)
        .await
        .unwrap();
    assert_eq!(tokens.list(&user.id, false, "", 10).await.unwrap().len(), 2);
    let revoked = tokens.revoke(&other.id).await.unwrap().unwrap();
    let at = revoked.revoked_at.unwrap();
    assert_eq!(
        tokens.revoke(&other.id).await.unwrap().unwrap().revoked_at,
        Some(at)
    );
    assert!(tokens.authenticate(&other_value).await.unwrap().is_none());
    assert_eq!(tokens.list(&user.id, false, "", 10).await.unwrap().len(), 1);
    assert_eq!(tokens.list(&user.id, true, "", 10).await.unwrap().len(), 2);
    sqlx::query("UPDATE gateway_api_tokens SET expires_at = 1 WHERE id = $1")
        .bind(&row.id)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(tokens.authenticate(&value).await.unwrap().is_none());
}
