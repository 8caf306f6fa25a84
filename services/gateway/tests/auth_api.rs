//! The AuthService RPCs: login, who am I, refresh, password change and logout through
//! the gRPC surface, the login throttle (per account and per address, the right
//! password refused too while throttled, a retry hint), and no secret in any answer.

use casescope_db::{Database, DbOptions};
use casescope_gateway::policy::GlobalRole;
use casescope_gateway::tokens::{KeySet, generate_private_pem};
use casescope_gateway::{
    ALL_MIGRATIONS, ApiTokens, AuthApi, Authenticator, CaseRole, CaseRoles, LoginThrottle,
    SessionSettings, Sessions, Users,
};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::auth_service_server::AuthService;
use std::sync::Arc;
use tonic::{Code, Request};

const PASSWORD: &str = "correct horse battery staple";

async fn api() -> (AuthApi, Users, tempfile::TempDir) {
    let (api, users, _, _, dir) = api_with_parts().await;
    (api, users, dir)
}

async fn api_with_parts() -> (AuthApi, Users, ApiTokens, CaseRoles, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let keys = KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap();
    let users = Users::new(db.clone());
    let sessions = Sessions::new(users.clone(), Arc::new(keys), SessionSettings::default());
    let tokens = ApiTokens::new(db.clone());
    let roles = CaseRoles::new(db.clone());
    let api = AuthApi::new(
        sessions.clone(),
        LoginThrottle::new(db),
        Authenticator::new(sessions, tokens.clone()),
        roles.clone(),
    );
    (api, users, tokens, roles, dir)
}

fn login(username: &str, password: &str) -> Request<pb::LoginRequest> {
    Request::new(pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    })
}

fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn login_who_am_i_refresh_change_password_logout() {
    let (api, users, _dir) = api().await;
    users
        .create("carol", "Carol", PASSWORD, GlobalRole::Analyst)
        .await
        .unwrap();

    let refused = api
        .login(login("carol", "wrong password here"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!refused.message().contains("wrong password here"));
    let unknown = api.login(login("nobody", PASSWORD)).await.unwrap_err();
    assert_eq!(unknown.message(), refused.message(), "indistinguishable");

    let tokens = api
        .login(login("carol", PASSWORD))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert!(tokens.refresh_token.starts_with("csr_"));
    let expires = tokens.access_token_expires_at.unwrap().seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expires > now && expires <= now + 15 * 60, "short-lived");

    let me = api
        .who_am_i(with_bearer(pb::WhoAmIRequest {}, &tokens.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.username, "carol");
    assert!(!me.is_admin);
    assert_eq!(me.auth_method, pb::AuthMethod::Session as i32);
    let anonymous = api
        .who_am_i(Request::new(pb::WhoAmIRequest {}))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert!(
        anonymous.message().contains("log in"),
        "{}",
        anonymous.message()
    );
    let garbage = api
        .who_am_i(with_bearer(
            pb::WhoAmIRequest {},
            "eyJhbGciOiJub25lIn0.e30.",
        ))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);

    let next = api
        .refresh(Request::new(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let reused = api
        .refresh(Request::new(pb::RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert!(!reused.message().contains(&tokens.refresh_token));
    // The reuse revoked the family: the newest pair is dead too.
    assert!(
        api.who_am_i(with_bearer(pb::WhoAmIRequest {}, &next.access_token))
            .await
            .is_err()
    );

    let fresh = api
        .login(login("carol", PASSWORD))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let weak = api
        .change_password(with_bearer(
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "short".into(),
            },
            &fresh.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    api.change_password(with_bearer(
        pb::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "a brand new long password".into(),
        },
        &fresh.access_token,
    ))
    .await
    .unwrap();
    assert!(api.login(login("carol", PASSWORD)).await.is_err());
    api.logout(Request::new(pb::LogoutRequest {
        refresh_token: fresh.refresh_token.clone(),
    }))
    .await
    .unwrap();
    assert!(
        api.refresh(Request::new(pb::RefreshRequest {
            refresh_token: fresh.refresh_token,
        }))
        .await
        .is_err()
    );
}

#[tokio::test]
async fn brute_force_is_throttled_per_account_and_per_address() {
    let (api, users, _dir) = api().await;
    users
        .create("dave", "", PASSWORD, GlobalRole::Analyst)
        .await
        .unwrap();
    users
        .create("erin", "", PASSWORD, GlobalRole::Analyst)
        .await
        .unwrap();
    for attempt in 0..5 {
        let status = api
            .login(login("dave", &format!("guess {attempt} is wrong")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    // The sixth attempt is refused before any password check, even the right one.
    let throttled = api.login(login("DAVE", PASSWORD)).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    let retry: u64 = throttled
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    assert!(throttled.message().contains("retry in"));
    // Another account from the same address still logs in (20 failures per address).
    assert!(api.login(login("erin", PASSWORD)).await.is_ok());
    for attempt in 0..14 {
        let _ = api
            .login(login(&format!("user{attempt}"), "nope nope nope"))
            .await;
    }
    // 5 + 14 = 19 failures from this address: one more, then the address is refused.
    let _ = api.login(login("erin", "still wrong password")).await;
    let address_throttled = api.login(login("erin", PASSWORD)).await.unwrap_err();
    assert_eq!(address_throttled.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn who_am_i_with_an_api_token_lists_case_roles_and_cannot_change_the_password() {
    let (api, users, tokens, roles, _dir) = api_with_parts().await;
    let frank = users
        .create("frank", "Frank", PASSWORD, GlobalRole::Analyst)
        .await
        .unwrap();
    let case = "01a20545-ff79-73bd-be57-fc0fc36e8375";
    roles
        .set(&frank.id, case, CaseRole::Analyst, "admin-id")
        .await
        .unwrap();
    let in_a_year = casescope_db::now_micros() + 365 * 24 * 3600 * 1_000_000;
    let (_, value) = tokens
        .create(&frank.id, "ci", &[], true, in_a_year)
        .await
        .unwrap();
    let me = api
        .who_am_i(with_bearer(pb::WhoAmIRequest {}, &value))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.username, "frank");
    assert_eq!(me.auth_method, pb::AuthMethod::ApiToken as i32);
    assert_eq!(me.case_roles.len(), 1);
    assert_eq!(me.case_roles[0].role, pb::CaseRole::Analyst as i32);
    let refused = api
        .change_password(with_bearer(
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "another long password".into(),
            },
            &value,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(roles.remove(&frank.id, case).await.unwrap());
    assert_eq!(roles.role(&frank.id, case).await.unwrap(), None);
    users.set_disabled(&frank.id, true).await.unwrap();
    let disabled = api
        .who_am_i(with_bearer(pb::WhoAmIRequest {}, &value))
        .await
        .unwrap_err();
    assert_eq!(
        disabled.code(),
        Code::Unauthenticated,
        "a disabled user's tokens are refused"
    );
}
