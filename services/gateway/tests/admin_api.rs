//! AdminService through its RPCs, each authorised by the policy: users (admins only,
//! paging, last-admin guard, disabling revokes sessions), case roles (case admins grant
//! on their case; non-members get NOT_FOUND), API tokens (own only, admins for anyone;
//! someone else's token is NOT_FOUND), and the audit log (admins and auditors, paged).

use casescope_db::{Database, DbOptions};
use casescope_gateway::policy::GlobalRole;
use casescope_gateway::tokens::{KeySet, generate_private_pem};
use casescope_gateway::{
    ALL_MIGRATIONS, AdminApi, ApiTokens, AuditLog, AuditRecord, AuthApi, Authenticator, CaseRoles,
    LoginThrottle, SessionSettings, Sessions, Users,
};
use casescope_proto::common::v1::{CaseId, PageRequest, UserId};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::admin_service_server::AdminService;
use casescope_proto::gateway::v1::auth_service_server::AuthService;
use std::sync::Arc;
use tonic::{Code, Request};

const CASE: &str = "01a20545-ff79-73bd-be57-fc0fc36e8375";
const OTHER: &str = "01a20545-ff79-73bd-be57-fc0fc36e8376";
const PASSWORD: &str = "a sufficiently long password";

struct World {
    auth: AuthApi,
    admin: AdminApi,
    audit: AuditLog,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let keys =
        Arc::new(KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap());
    let users = Users::new(db.clone());
    users.ensure_first_admin(Some(PASSWORD)).await.unwrap();
    let sessions = Sessions::new(users.clone(), keys.clone(), SessionSettings::default());
    let tokens = ApiTokens::new(db.clone());
    let roles = CaseRoles::new(db.clone());
    let audit = AuditLog::new(db.clone(), keys);
    let auth = AuthApi::new(
        sessions.clone(),
        LoginThrottle::new(db.clone()),
        Authenticator::new(sessions, tokens.clone()),
        roles.clone(),
    );
    let admin = AdminApi::new(auth.clone(), users, roles, tokens, audit.clone());
    World {
        auth,
        admin,
        audit,
        _dir: dir,
    }
}

fn as_user<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn login(world: &World, username: &str) -> String {
    world
        .auth
        .login(Request::new(pb::LoginRequest {
            username: username.into(),
            password: PASSWORD.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token
}

async fn create(world: &World, admin: &str, name: &str, role: GlobalRole) -> String {
    world
        .admin
        .create_user(as_user(
            pb::CreateUserRequest {
                username: name.into(),
                password: PASSWORD.into(),
                role: role.as_str().into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap()
        .value
}

fn case(value: &str) -> Option<CaseId> {
    Some(CaseId {
        value: value.into(),
    })
}

fn user(value: &str) -> Option<UserId> {
    Some(UserId {
        value: value.into(),
    })
}

#[tokio::test]
async fn users_roles_tokens_and_audit_are_authorised() {
    let world = world().await;
    let admin = login(&world, "admin").await;
    let ana = create(&world, &admin, "ana", GlobalRole::Analyst).await;
    let vic = create(&world, &admin, "vic", GlobalRole::Viewer).await;
    let _aud = create(&world, &admin, "aud", GlobalRole::Auditor).await;
    let bob = create(&world, &admin, "bob", GlobalRole::Analyst).await;
    let (ana_t, vic_t, aud_t, bob_t) = (
        login(&world, "ana").await,
        login(&world, "vic").await,
        login(&world, "aud").await,
        login(&world, "bob").await,
    );

    // Users: admins only; duplicates and bad roles refused; paging.
    let duplicate = world
        .admin
        .create_user(as_user(
            pb::CreateUserRequest {
                username: "ANA".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let bad_role = world
        .admin
        .create_user(as_user(
            pb::CreateUserRequest {
                username: "zed".into(),
                password: PASSWORD.into(),
                role: "root".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_role.code(), Code::InvalidArgument);
    let by_analyst = world
        .admin
        .list_users(as_user(pb::ListUsersRequest::default(), &ana_t))
        .await
        .unwrap_err();
    assert_eq!(by_analyst.code(), Code::PermissionDenied);
    let anonymous = world
        .admin
        .list_users(Request::new(pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = world
            .admin
            .list_users(as_user(
                pb::ListUsersRequest {
                    page: Some(PageRequest {
                        page_size: 2,
                        cursor: cursor.clone(),
                    }),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.users.iter().map(|u| u.username.clone()));
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(names, ["admin", "ana", "aud", "bob", "vic"]);

    // Case roles: the admin makes ana case admin; ana grants vic; vic cannot grant;
    // ana has no role on OTHER (NOT_FOUND); bob, a non-member, cannot see CASE's grants.
    let grant = |token: &str, who: &str, on: &str, role: pb::CaseRole| {
        world.admin.set_case_role(as_user(
            pb::SetCaseRoleRequest {
                user_id: user(who),
                username: String::new(),
                case_id: case(on),
                role: role as i32,
            },
            token,
        ))
    };
    grant(&admin, &ana, CASE, pb::CaseRole::CaseAdmin)
        .await
        .unwrap();
    grant(&ana_t, &vic, CASE, pb::CaseRole::Viewer)
        .await
        .unwrap();
    assert_eq!(
        grant(&vic_t, &bob, CASE, pb::CaseRole::Viewer)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        grant(&ana_t, &vic, OTHER, pb::CaseRole::Viewer)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let list_roles = |token: &str| {
        world.admin.list_case_roles(as_user(
            pb::ListCaseRolesRequest {
                case_id: case(CASE),
                ..Default::default()
            },
            token,
        ))
    };
    assert_eq!(
        list_roles(&vic_t).await.unwrap().into_inner().grants.len(),
        2
    );
    assert_eq!(
        list_roles(&aud_t).await.unwrap().into_inner().grants.len(),
        2
    );
    assert_eq!(list_roles(&bob_t).await.unwrap_err().code(), Code::NotFound);
    let me = world
        .auth
        .who_am_i(as_user(pb::WhoAmIRequest {}, &vic_t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.case_roles.len(), 1);

    // API tokens: own, or anyone's for admins; someone else's is not found.
    let in_a_month = prost_types::Timestamp {
        seconds: (casescope_db::now_micros() / 1_000_000) + 30 * 24 * 3600,
        nanos: 0,
    };
    let created = world
        .admin
        .create_api_token(as_user(
            pb::CreateApiTokenRequest {
                name: "siem".into(),
                read_only: true,
                expires_at: Some(in_a_month),
                ..Default::default()
            },
            &vic_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.token_value.starts_with("cst_"));
    let for_someone_else = world
        .admin
        .create_api_token(as_user(
            pb::CreateApiTokenRequest {
                name: "x".into(),
                user_id: user(&ana),
                expires_at: Some(in_a_month),
                ..Default::default()
            },
            &vic_t,
        ))
        .await
        .unwrap_err();
    assert_eq!(for_someone_else.code(), Code::PermissionDenied);
    let token_id = created.token.unwrap().id;
    let revoke = |token: &str| {
        world.admin.revoke_api_token(as_user(
            pb::RevokeApiTokenRequest {
                id: token_id.clone(),
            },
            token,
        ))
    };
    assert_eq!(revoke(&ana_t).await.unwrap_err().code(), Code::NotFound);
    assert!(
        revoke(&vic_t)
            .await
            .unwrap()
            .into_inner()
            .revoked_at
            .is_some()
    );

    // The audit log: admins and auditors; paged newest first.
    for n in 0..3 {
        world
            .audit
            .append(&AuditRecord {
                at: casescope_db::now_micros(),
                method: format!("/test/{n}"),
                outcome: "succeeded".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let first = world
        .admin
        .list_audit_log(as_user(
            pb::ListAuditLogRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    cursor: String::new(),
                }),
                ..Default::default()
            },
            &aud_t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [3, 2]
    );
    assert_eq!(first.page.unwrap().next_cursor, "2");
    assert_eq!(
        world
            .admin
            .list_audit_log(as_user(pb::ListAuditLogRequest::default(), &vic_t))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // Disabling a user revokes their sessions; the last admin cannot be demoted.
    world
        .admin
        .update_user(as_user(
            pb::UpdateUserRequest {
                id: user(&bob),
                disabled: true,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["disabled".into()],
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert!(
        world
            .auth
            .who_am_i(as_user(pb::WhoAmIRequest {}, &bob_t))
            .await
            .is_err()
    );
    let admin_id = world
        .auth
        .who_am_i(as_user(pb::WhoAmIRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .user_id;
    let last_admin = world
        .admin
        .update_user(as_user(
            pb::UpdateUserRequest {
                id: admin_id,
                role: "analyst".into(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role".into()],
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(last_admin.code(), Code::FailedPrecondition);
    world
        .admin
        .delete_user(as_user(pb::DeleteUserRequest { id: user(&bob) }, &admin))
        .await
        .unwrap();
    assert_eq!(
        world
            .admin
            .get_user(as_user(pb::GetUserRequest { id: user(&bob) }, &admin))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
