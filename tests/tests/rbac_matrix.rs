//! The RBAC matrix, end to end through the gateway in both modes: every RPC of the
//! compiled contract (so a new RPC without a policy entry or a row fails here) called
//! by ten principals — admin, the case's owner, editor and viewer, an analyst who is not
//! a member, an auditor, a disabled user, an expired token, a revoked API token and
//! nobody — must answer as `docs/rbac-matrix.md` says: `allow` (the service answered,
//! whatever it said), `unauth` (UNAUTHENTICATED), `deny` (PERMISSION_DENIED) or `hide`
//! (NOT_FOUND for a case that exists) — the gateway's answers, told apart from a
//! service's own. `CASESCOPE_UPDATE_DOCS=1` rewrites the table from
//! what the all-in-one run observed (review the diff).

use casescope_e2e::deployment::Deployment;
use casescope_e2e::{Server, TEST_ADMIN_PASSWORD};
use casescope_gateway::enforce::{BAD_CREDENTIAL, NO_CREDENTIALS};
use casescope_gateway::policy::{Access, rule_of};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, UserId};
use casescope_proto::gateway::v1 as gw;
use casescope_proto::gateway::v1::admin_service_client::AdminServiceClient;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, ReflectMessage, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const PRINCIPALS: [&str; 10] = [
    "admin",
    "owner",
    "editor",
    "viewer",
    "nonmember",
    "auditor",
    "disabled",
    "expired",
    "revoked",
    "anonymous",
];

const PASSWORD: &str = "a matrix password 123";

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rbac-matrix.md");

fn methods() -> Vec<(String, MethodDescriptor)> {
    let pool = DescriptorPool::decode(casescope_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut all = Vec::new();
    for service in pool.services() {
        if !service.full_name().starts_with("casescope.") {
            continue;
        }
        for method in service.methods() {
            all.push((
                format!("/{}/{}", service.full_name(), method.name()),
                method,
            ));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// `message` with the case id at `path` (e.g. `header.case_id`).
fn with_case(message: &mut DynamicMessage, path: &str, case: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, outer) = parts.split_last().unwrap();
    if outer.is_empty() {
        message.set_field_by_name(
            last,
            Value::Message(case_id_message(message.descriptor(), last, case)),
        );
        return;
    }
    let field = message.descriptor().get_field_by_name(outer[0]).unwrap();
    let mut inner = match message.get_field(&field).into_owned() {
        Value::Message(inner) => inner,
        other => panic!("{path}: {other:?}"),
    };
    with_case(&mut inner, &parts[1..].join("."), case);
    message.set_field(&field, Value::Message(inner));
}

fn case_id_message(
    descriptor: prost_reflect::MessageDescriptor,
    field: &str,
    case: &str,
) -> DynamicMessage {
    let field = descriptor.get_field_by_name(field).unwrap();
    let prost_reflect::Kind::Message(kind) = field.kind() else {
        panic!("{field:?} is not a message");
    };
    let mut id = DynamicMessage::new(kind);
    id.set_field_by_name("value", Value::String(case.to_string()));
    id
}

fn with_token<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Calls `method` with `message` and the optional bearer token; the classification.
async fn call(
    channel: &GrpcChannel,
    method: &MethodDescriptor,
    path: &str,
    message: DynamicMessage,
    token: Option<&str>,
    case: &str,
) -> String {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<DynamicMessage, ()>::default();
    let rpc: http::uri::PathAndQuery = path.parse().unwrap();
    let status = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => grpc
            .unary(with_token(tonic::Request::new(message), token), rpc, codec)
            .await
            .err(),
        (true, false) => grpc
            .client_streaming(
                with_token(
                    tonic::Request::new(futures::stream::iter(vec![message])),
                    token,
                ),
                rpc,
                codec,
            )
            .await
            .err(),
        (false, true) => match grpc
            .server_streaming(with_token(tonic::Request::new(message), token), rpc, codec)
            .await
        {
            Ok(response) => response.into_inner().message().await.err(),
            Err(status) => Some(status),
        },
        (true, true) => panic!("{path}: bidirectional RPCs are not in the contract"),
    };
    match status {
        None => "allow".into(),
        Some(status) => match status.code() {
            // The gateway's refusals; a service's own UNAUTHENTICATED (a wrong current
            // password, an unknown refresh token) is its answer to an allowed call.
            tonic::Code::Unauthenticated
                if [NO_CREDENTIALS, BAD_CREDENTIAL].contains(&status.message()) =>
            {
                "unauth".into()
            }
            tonic::Code::PermissionDenied => "deny".into(),
            tonic::Code::NotFound if status.message() == format!("case {case} does not exist") => {
                "hide".into()
            }
            tonic::Code::ResourceExhausted => panic!("{path}: rate limited: {status:?}"),
            _ => "allow".into(),
        },
    }
}

struct World {
    channel: GrpcChannel,
    admin: AdminServiceClient<GrpcChannel>,
    cases: casescope_proto::cases::v1::cases_service_client::CasesServiceClient<GrpcChannel>,
    tokens: BTreeMap<&'static str, Option<String>>,
    users: BTreeMap<&'static str, String>,
}

async fn login(channel: &GrpcChannel, user: &str, password: &str) -> String {
    AuthServiceClient::new(channel.clone())
        .login(gw::LoginRequest {
            username: user.into(),
            password: password.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e:?}"))
        .into_inner()
        .tokens
        .unwrap()
        .access_token
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn api_token(
    admin: &mut AdminServiceClient<GrpcChannel>,
    admin_token: &str,
    user: &str,
    name: &str,
    lifetime: Duration,
) -> (String, String) {
    let expires = std::time::SystemTime::now() + lifetime;
    let seconds = expires
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let created = admin
        .create_api_token(bearer(
            gw::CreateApiTokenRequest {
                name: name.into(),
                user_id: Some(UserId { value: user.into() }),
                case_ids: Vec::new(),
                read_only: false,
                expires_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            },
            admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    (
        created.token.unwrap().id.unwrap().value,
        created.token_value,
    )
}

async fn world(api: &Server) -> World {
    let endpoint = tonic::transport::Endpoint::from_shared(api.api_address().to_string()).unwrap();
    let channel = casescope_proto::channel::from_transport(endpoint.connect().await.unwrap());
    let admin_token = login(&channel, "admin", TEST_ADMIN_PASSWORD).await;
    let mut admin = AdminServiceClient::new(channel.clone());
    let mut users = BTreeMap::new();
    for (name, role) in [
        ("owner", "analyst"),
        ("editor", "analyst"),
        ("viewer", "viewer"),
        ("nonmember", "analyst"),
        ("auditor", "auditor"),
        ("disabled", "analyst"),
    ] {
        let user = admin
            .create_user(bearer(
                gw::CreateUserRequest {
                    username: name.into(),
                    password: PASSWORD.into(),
                    role: role.into(),
                    ..Default::default()
                },
                &admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        users.insert(name, user.id.unwrap().value);
    }
    let mut tokens: BTreeMap<&'static str, Option<String>> = BTreeMap::new();
    tokens.insert("admin", Some(admin_token.clone()));
    for name in [
        "owner",
        "editor",
        "viewer",
        "nonmember",
        "auditor",
        "disabled",
    ] {
        tokens.insert(name, Some(login(&channel, name, PASSWORD).await));
    }
    let owner = users["owner"].clone();
    let (_, expired) = api_token(
        &mut admin,
        &admin_token,
        &owner,
        "soon expired",
        Duration::from_secs(2),
    )
    .await;
    let (revoked_id, revoked) = api_token(
        &mut admin,
        &admin_token,
        &owner,
        "revoked",
        Duration::from_secs(3600),
    )
    .await;
    admin
        .revoke_api_token(bearer(
            gw::RevokeApiTokenRequest {
                id: Some(gw::ApiTokenId { value: revoked_id }),
            },
            &admin_token,
        ))
        .await
        .unwrap();
    tokens.insert("expired", Some(expired));
    tokens.insert("revoked", Some(revoked));
    tokens.insert("anonymous", None);
    World {
        cases: casescope_proto::cases::v1::cases_service_client::CasesServiceClient::new(
            channel.clone(),
        ),
        channel,
        admin,
        tokens,
        users,
    }
}

impl World {
    fn admin_token(&self) -> String {
        self.tokens["admin"].clone().unwrap()
    }

    /// A case created by admin with the owner, editor, viewer and disabled user's roles.
    async fn case(&mut self) -> String {
        let token = self.admin_token();
        let case = self
            .cases
            .create_case(bearer(
                casescope_proto::cases::v1::CreateCaseRequest {
                    name: "matrix".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .id
            .unwrap()
            .value;
        for (user, role) in [
            ("owner", gw::CaseRole::CaseAdmin),
            ("editor", gw::CaseRole::Analyst),
            ("viewer", gw::CaseRole::Viewer),
            ("disabled", gw::CaseRole::CaseAdmin),
        ] {
            self.admin
                .set_case_role(bearer(
                    gw::SetCaseRoleRequest {
                        user_id: Some(UserId {
                            value: self.users[user].clone(),
                        }),
                        username: String::new(),
                        case_id: Some(CaseId {
                            value: case.clone(),
                        }),
                        role: role as i32,
                    },
                    &token,
                ))
                .await
                .unwrap();
        }
        case
    }

    async fn disable(&mut self, user: &str) {
        let token = self.admin_token();
        let current = self
            .admin
            .get_user(bearer(
                gw::GetUserRequest {
                    id: Some(UserId {
                        value: self.users[user].clone(),
                    }),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        self.admin
            .update_user(bearer(
                gw::UpdateUserRequest {
                    id: current.id,
                    disabled: true,
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["disabled".into()],
                    }),
                    expected_version: current.version,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
    }
}

/// Every RPC × principal, observed.
async fn observe(api: &Server) -> BTreeMap<String, Vec<String>> {
    let mut world = world(api).await;
    let shared = world.case().await;
    let own = world.case().await;
    world.disable("disabled").await;
    // The expired token's two seconds pass.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Listing shows only the caller's cases.
    let listed = |token: String| {
        let mut cases = world.cases.clone();
        async move {
            cases
                .list_cases(bearer(
                    casescope_proto::cases::v1::ListCasesRequest {
                        page: Some(casescope_proto::common::v1::PageRequest {
                            page_size: 1000,
                            cursor: String::new(),
                        }),
                        include_archived: true,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .cases
                .len()
        }
    };
    let everything = listed(world.admin_token()).await;
    assert!(everything >= 2);
    for name in ["owner", "editor", "viewer"] {
        assert_eq!(
            listed(world.tokens[name].clone().unwrap()).await,
            2,
            "{name} lists its two cases"
        );
    }
    assert_eq!(
        listed(world.tokens["nonmember"].clone().unwrap()).await,
        0,
        "a non-member lists no case"
    );
    assert_eq!(
        listed(world.tokens["auditor"].clone().unwrap()).await,
        everything,
        "an auditor lists every case"
    );
    let _ = own;

    let mut observed = BTreeMap::new();
    for (path, method) in methods() {
        let rule = rule_of(&path).unwrap_or_else(|| panic!("{path} has no policy entry"));
        let fresh = rule.mutating && matches!(rule.access, Access::Case(_));
        let mut row = Vec::new();
        for principal in PRINCIPALS {
            // Changes to a case get a case of their own (they may archive or delete it).
            let case = if fresh {
                world.case().await
            } else {
                shared.clone()
            };
            let mut message = DynamicMessage::new(method.input());
            if let Some(field) = rule.case_field {
                with_case(&mut message, field, &case);
            }
            let token = world.tokens[principal].clone();
            row.push(
                call(
                    &world.channel,
                    &method,
                    &path,
                    message,
                    token.as_deref(),
                    &case,
                )
                .await,
            );
        }
        observed.insert(path, row);
    }
    observed
}

fn render(observed: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::from(
        "# The RBAC matrix\n\n\
         What every RPC answers to each kind of caller, through the gateway, in both modes \
         (`tests/tests/rbac_matrix.rs` calls each one and compares with this table; the \
         policy itself is in [rbac.md](rbac.md)). `allow`: the service answered (whatever \
         it said); `unauth`: UNAUTHENTICATED; `deny`: PERMISSION_DENIED; `hide`: NOT_FOUND \
         for a case that exists (each as the gateway answers; a service's own answer to an \
         allowed call, e.g. a wrong current password, counts as `allow`). The case's owner is its `case_admin`, editor its \
         `analyst`, viewer its `viewer` (a global viewer); the non-member is a global \
         analyst without a role on it; the disabled user was its `case_admin`; the \
         expired and revoked tokens are the owner's API tokens.\n\n",
    );
    out.push_str("| RPC |");
    for principal in PRINCIPALS {
        out.push_str(&format!(" {principal} |"));
    }
    out.push_str("\n|---|");
    for _ in PRINCIPALS {
        out.push_str("---|");
    }
    out.push('\n');
    for (path, row) in observed {
        out.push_str(&format!("| `{}` |", path.trim_start_matches('/')));
        for cell in row {
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

fn expected() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(TABLE).unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            (format!("/{}", cells[0]), cells[1..].to_vec())
        })
        .collect()
}

fn check(observed: &BTreeMap<String, Vec<String>>, mode: &str) {
    let expected = expected();
    let mut problems = Vec::new();
    for (path, row) in observed {
        match expected.get(path) {
            None => problems.push(format!("{path}: no row in docs/rbac-matrix.md")),
            Some(want) if want != row => {
                for (i, principal) in PRINCIPALS.iter().enumerate() {
                    if want.get(i) != row.get(i) {
                        problems.push(format!(
                            "{path} as {principal}: expected {:?}, answered {:?}",
                            want.get(i),
                            row[i]
                        ));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for path in expected.keys() {
        if !observed.contains_key(path) {
            problems.push(format!("{path}: a row for an RPC not in the contract"));
        }
    }
    assert!(
        problems.is_empty(),
        "{mode}: the RBAC matrix differs from docs/rbac-matrix.md:\n{}",
        problems.join("\n")
    );
}

fn fast_env() -> Vec<(&'static str, &'static str)> {
    // Hundreds of calls per principal in a few seconds: the per-user rate is not the
    // subject here (the abuse test is).
    vec![("CASESCOPE_RATE_LIMIT_BURST", "100000")]
}

#[test]
fn every_rpc_answers_every_principal_as_the_matrix_says_all_in_one() {
    let work = tempfile::tempdir().unwrap();
    let deployment = Deployment::all_in_one(work.path(), &fast_env());
    let observed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(observe(deployment.api()));
    if std::env::var("CASESCOPE_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(TABLE, render(&observed)).unwrap();
    }
    check(&observed, "all-in-one");
}

#[test]
fn every_rpc_answers_every_principal_as_the_matrix_says_multi_process() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &fast_env(), "rbac") else {
        return;
    };
    let observed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(observe(deployment.api()));
    check(&observed, "multi-process");
}
