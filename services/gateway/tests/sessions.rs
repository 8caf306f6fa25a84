//! Sessions on both databases (SQLite and a real PostgreSQL): the first administrator,
//! login, refresh-token rotation and reuse detection (including two concurrent
//! refreshes), logout, password change, disabled users, and the sweep of old sessions.

use casescope_db::{Database, DbOptions};
use casescope_gateway::policy::GlobalRole;
use casescope_gateway::tokens::{KeySet, generate_private_pem};
use casescope_gateway::{ALL_MIGRATIONS, AuthError, SessionSettings, Sessions, Users};
use std::sync::Arc;

async fn sessions_on(db: Database) -> Sessions {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let keys = KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap();
    Sessions::new(Users::new(db), Arc::new(keys), SessionSettings::default())
}

async fn sqlite() -> (Sessions, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    (sessions_on(db).await, dir)
}

async fn postgres() -> Sessions {
    let url = casescope_testkit::postgres_url().await;
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    sessions_on(db).await
}

const PASSWORD: &str = "a long enough password";

async fn lifecycle(sessions: Sessions) {
    let users = sessions.users().clone();
    // First run: one administrator with a generated password, shown once.
    let generated = users.ensure_first_admin(None).await.unwrap().unwrap();
    assert_eq!(generated.len(), 24);
    assert_eq!(users.ensure_first_admin(None).await.unwrap(), None);
    let admin = sessions.login("ADMIN", &generated).await.unwrap();
    let (_, who) = sessions.authenticate(&admin.access_token).await.unwrap();
    assert!(who.is_admin && who.username == "admin");

    let alice = users
        .create("alice", "Alice", PASSWORD, GlobalRole::Analyst)
        .await
        .unwrap();
    assert!(
        users
            .create("Alice", "", PASSWORD, GlobalRole::Analyst)
            .await
            .is_err(),
        "case-insensitive"
    );
    assert!(
        users
            .create("bob", "", "short", GlobalRole::Analyst)
            .await
            .is_err(),
        "policy"
    );

    // Wrong password and unknown user: the same answer.
    assert_eq!(
        sessions
            .login("alice", "not the password")
            .await
            .unwrap_err(),
        AuthError::BadCredentials
    );
    assert_eq!(
        sessions.login("nobody", PASSWORD).await.unwrap_err(),
        AuthError::BadCredentials
    );

    // Rotation; reuse of a spent token revokes the family.
    let first = sessions.login("alice", PASSWORD).await.unwrap();
    assert_eq!(first.user_id, alice.id);
    let second = sessions.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(sessions.authenticate(&second.access_token).await.is_ok());
    assert_eq!(
        sessions.refresh(&first.refresh_token).await.unwrap_err(),
        AuthError::Reused
    );
    assert!(matches!(
        sessions.refresh(&second.refresh_token).await,
        Err(AuthError::Revoked(_))
    ));
    assert!(matches!(
        sessions.authenticate(&second.access_token).await,
        Err(AuthError::Revoked(_))
    ));
    assert_eq!(
        sessions.refresh("csr_made-up").await.unwrap_err(),
        AuthError::UnknownToken
    );

    // Two concurrent refreshes of one token: one pair is handed out, the other call is
    // a reuse, and the session is revoked (documented: clients serialise refreshes).
    let session = sessions.login("alice", PASSWORD).await.unwrap();
    let (a, b) = tokio::join!(
        sessions.refresh(&session.refresh_token),
        sessions.refresh(&session.refresh_token)
    );
    let outcomes = [a, b];
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| o.as_ref().err() == Some(&AuthError::Reused))
    );
    assert!(sessions.refresh(&winners[0].refresh_token).await.is_err());

    // Logout ends the session.
    let session = sessions.login("alice", PASSWORD).await.unwrap();
    sessions.logout(&session.refresh_token).await.unwrap();
    assert!(matches!(
        sessions.refresh(&session.refresh_token).await,
        Err(AuthError::Revoked(_))
    ));
    assert!(sessions.authenticate(&session.access_token).await.is_err());

    // A password change keeps the caller's session and revokes the others.
    let here = sessions.login("alice", PASSWORD).await.unwrap();
    let elsewhere = sessions.login("alice", PASSWORD).await.unwrap();
    assert_eq!(
        sessions
            .change_password(
                &alice.id,
                &here.session_id,
                "wrong current",
                "another long password"
            )
            .await
            .unwrap_err(),
        AuthError::BadCredentials
    );
    assert!(matches!(
        sessions
            .change_password(&alice.id, &here.session_id, PASSWORD, "short")
            .await,
        Err(AuthError::Policy(_))
    ));
    sessions
        .change_password(
            &alice.id,
            &here.session_id,
            PASSWORD,
            "another long password",
        )
        .await
        .unwrap();
    assert!(sessions.refresh(&here.refresh_token).await.is_ok());
    assert!(matches!(
        sessions.refresh(&elsewhere.refresh_token).await,
        Err(AuthError::Revoked(_))
    ));
    assert!(sessions.login("alice", PASSWORD).await.is_err());
    let current = sessions
        .login("alice", "another long password")
        .await
        .unwrap();

    // A disabled user cannot log in, refresh or use an access token.
    users.set_disabled(&alice.id, true).await.unwrap();
    assert_eq!(
        sessions
            .login("alice", "another long password")
            .await
            .unwrap_err(),
        AuthError::BadCredentials
    );
    assert_eq!(
        sessions.refresh(&current.refresh_token).await.unwrap_err(),
        AuthError::Disabled
    );
    assert_eq!(
        sessions
            .authenticate(&current.access_token)
            .await
            .unwrap_err(),
        AuthError::Disabled
    );

    // Sessions that ended over a day ago are forgotten, with their refresh tokens.
    let pool = users.db().pool();
    sqlx::query("UPDATE gateway_sessions SET revoked_at = 1 WHERE revoked_at IS NOT NULL")
        .execute(pool)
        .await
        .unwrap();
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_sessions WHERE revoked_at IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(revoked >= 4);
    assert_eq!(sessions.sweep().await.unwrap(), revoked as u64);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM gateway_refresh_tokens t WHERE NOT EXISTS \
         (SELECT 1 FROM gateway_sessions s WHERE s.id = t.session_id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
}

#[tokio::test]
async fn session_lifecycle_sqlite() {
    let (sessions, _dir) = sqlite().await;
    lifecycle(sessions).await;
}

#[tokio::test]
async fn session_lifecycle_postgres() {
    lifecycle(postgres().await).await;
}

#[tokio::test]
async fn a_given_first_admin_password_is_used_and_checked() {
    let (sessions, _dir) = sqlite().await;
    let users = sessions.users();
    assert!(users.ensure_first_admin(Some("short")).await.is_err());
    assert_eq!(
        users
            .ensure_first_admin(Some("the installer's password"))
            .await
            .unwrap()
            .as_deref(),
        Some("the installer's password")
    );
    assert!(
        sessions
            .login("admin", "the installer's password")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_generated_first_admin_password_is_written_once_owner_only() {
    use casescope_gateway::bootstrap::{FirstAdmin, ensure_first_admin};
    let (sessions, dir) = sqlite().await;
    let outcome = ensure_first_admin(sessions.users(), None, dir.path())
        .await
        .unwrap();
    let FirstAdmin::Generated { password, file } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(sessions.login("admin", &password).await.is_ok());
    assert_eq!(
        ensure_first_admin(sessions.users(), None, dir.path())
            .await
            .unwrap(),
        FirstAdmin::Exists
    );
    let (fresh, fresh_dir) = sqlite().await;
    let refused = ensure_first_admin(fresh.users(), Some("short"), fresh_dir.path())
        .await
        .unwrap_err();
    assert!(refused.contains("administrator password"), "{refused}");
}
