//! Integration configurations through the service's API, on SQLite and a real
//! PostgreSQL: create (each kind, refusals naming the field), list (paged by name, by
//! kind), update (field mask, expected version, secrets replaced or cleared), delete;
//! secrets write-only and sealed at rest; `TestIntegration` against local servers that
//! answer as DFIR-IRIS, OpenCTI and a webhook receiver document (neither product runs
//! here), recording the integration's health.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use casescope_db::{Database, DbOptions};
use casescope_integrations::outbound::guard::Guard;
use casescope_integrations::secrets::SecretBox;
use casescope_integrations::webhook::signature;
use casescope_integrations::{ALL_MIGRATIONS, IntegrationsApi, IntegrationsSettings};
use casescope_proto::common::v1::{IntegrationId, PageRequest};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::integrations::v1::integrations_service_server::IntegrationsService;
use casescope_runtime::config::IpNet;
use std::sync::{Arc, Mutex};
use tonic::{Code, Request};

const KEY: &str = "q8d2yJ1m0wYxkqvR3o7nE5b9ZkQ1bXh2c0t6uVw8aYs=";
const IRIS_KEY: &str = "iris-canary-3f9a1c";
const CTI_TOKEN: &str = "b1946ac9-2a67-4ef3-9c5e-canary00cti";
const HOOK_KEY: &str = "hook-canary-77e2";

fn settings() -> IntegrationsSettings {
    IntegrationsSettings {
        guard: Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]),
        secrets: Some(Arc::new(SecretBox::from_text(KEY).unwrap())),
        ..Default::default()
    }
}

async fn api_on(db: Database) -> IntegrationsApi {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    IntegrationsApi::new(db, settings())
}

async fn sqlite() -> (IntegrationsApi, Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("integrations.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    (api_on(db.clone()).await, db, dir)
}

async fn postgres() -> (IntegrationsApi, Database) {
    let url = casescope_testkit::postgres_url().await;
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    (api_on(db.clone()).await, db)
}

fn value(secret: &str) -> Option<pb::SecretInput> {
    Some(pb::SecretInput {
        source: Some(pb::secret_input::Source::Value(secret.into())),
    })
}

fn iris(name: &str, url: &str, secret: &str) -> pb::CreateIntegrationRequest {
    pb::CreateIntegrationRequest {
        kind: pb::IntegrationKind::DfirIris as i32,
        name: name.into(),
        base_url: url.into(),
        secret: value(secret),
        ..Default::default()
    }
}

fn id(integration: &pb::Integration) -> Option<IntegrationId> {
    integration.id.clone()
}

/// Nothing an answer carries may hold a secret.
fn clean(text: &str) {
    for secret in [IRIS_KEY, CTI_TOKEN, HOOK_KEY, "wrong-key"] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

async fn configurations(api: &IntegrationsApi, db: &Database, prefix: &str) {
    let name = |n: &str| format!("{prefix} {n}");
    let created = api
        .create_integration(Request::new(iris(
            &name("IRIS"),
            "https://iris.example.org/",
            IRIS_KEY,
        )))
        .await
        .unwrap()
        .into_inner();
    clean(&format!("{created:?}"));
    assert!(created.secret_set);
    assert_eq!(created.base_url, "https://iris.example.org");
    assert_eq!(created.max_attempts, 5);
    assert_eq!(created.timeout.unwrap().seconds, 10);
    assert_eq!(created.version, 1);
    // Sealed at rest.
    let stored: String = sqlx::query_scalar("SELECT secret_sealed FROM integrations WHERE id = $1")
        .bind(&created.id.as_ref().unwrap().value)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(IRIS_KEY));

    let taken = api
        .create_integration(Request::new(iris(
            &name("IRIS"),
            "https://other.example.org",
            "x",
        )))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    for (request, field, code) in [
        (
            iris("", "https://a.example", "k"),
            "name",
            Code::InvalidArgument,
        ),
        (
            iris(&name("u"), "https://user:pw@a.example", "k"),
            "credentials in the URL",
            Code::InvalidArgument,
        ),
        (
            iris(&name("m"), "http://169.254.169.254/latest", "k"),
            "the cloud metadata endpoint",
            Code::InvalidArgument,
        ),
        (
            iris(&name("f"), "ftp://a.example", "k"),
            "not http or https",
            Code::InvalidArgument,
        ),
        (
            pb::CreateIntegrationRequest {
                kind: pb::IntegrationKind::NatsExport as i32,
                ..iris(&name("n"), "https://a.example", "k")
            },
            "NATS export is not built",
            Code::InvalidArgument,
        ),
        (
            pb::CreateIntegrationRequest {
                kind: pb::IntegrationKind::Webhook as i32,
                ..iris(&name("w"), "https://a.example", "k")
            },
            "a webhook needs its topics",
            Code::InvalidArgument,
        ),
        (
            pb::CreateIntegrationRequest {
                secret: Some(pb::SecretInput {
                    source: Some(pb::secret_input::Source::Reference(
                        "file:../../etc/passwd".into(),
                    )),
                }),
                ..iris(&name("r"), "https://a.example", "k")
            },
            "secret.reference",
            Code::InvalidArgument,
        ),
        (
            pb::CreateIntegrationRequest {
                timeout: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
                ..iris(&name("t"), "https://a.example", "k")
            },
            "timeout",
            Code::InvalidArgument,
        ),
    ] {
        let refused = api
            .create_integration(Request::new(request))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
        assert!(!refused.message().contains("pw@"), "{}", refused.message());
    }

    // Paged by name, filtered by kind.
    for n in 0..5 {
        api.create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: name(&format!("CTI {n}")),
            base_url: "https://cti.example.org".into(),
            secret: value(CTI_TOKEN),
            ..Default::default()
        }))
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api
            .list_integrations(Request::new(pb::ListIntegrationsRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    cursor: cursor.clone(),
                }),
                kind: pb::IntegrationKind::Opencti as i32,
            }))
            .await
            .unwrap()
            .into_inner();
        clean(&format!("{page:?}"));
        seen.extend(page.integrations.iter().map(|i| i.name.clone()));
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    let mine: Vec<&String> = seen.iter().filter(|n| n.starts_with(prefix)).collect();
    assert_eq!(mine.len(), 5, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "ordered by name: {seen:?}"
    );

    // Update: a field mask, the expected version, the secret replaced then cleared.
    let updated = api
        .update_integration(Request::new(pb::UpdateIntegrationRequest {
            id: id(&created),
            name: name("IRIS prod"),
            enabled: false,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into(), "enabled".into()],
            }),
            expected_version: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.name.as_str(), updated.enabled, updated.version),
        (name("IRIS prod").as_str(), false, 2)
    );
    assert!(updated.secret_set, "the secret is kept");
    let stale = api
        .update_integration(Request::new(pb::UpdateIntegrationRequest {
            id: id(&created),
            enabled: true,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            expected_version: 1,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let cleared = api
        .update_integration(Request::new(pb::UpdateIntegrationRequest {
            id: id(&created),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["secret".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!cleared.secret_set);
    let unknown = api
        .update_integration(Request::new(pb::UpdateIntegrationRequest {
            id: id(&created),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["kind".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);

    api.delete_integration(Request::new(pb::DeleteIntegrationRequest {
        id: id(&created),
    }))
    .await
    .unwrap();
    let gone = api
        .get_integration(Request::new(pb::GetIntegrationRequest { id: id(&created) }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = api
        .delete_integration(Request::new(pb::DeleteIntegrationRequest {
            id: id(&created),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn configurations_on_sqlite() {
    let (api, db, _dir) = sqlite().await;
    configurations(&api, &db, "s").await;
}

#[tokio::test]
async fn configurations_on_postgres() {
    let (api, db) = postgres().await;
    let prefix = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    configurations(&api, &db, &prefix).await;
}

// ---- TestIntegration against local servers speaking the documented APIs ----------

/// A webhook message received: its signature header and body.
type Hook = (String, Vec<u8>);

#[derive(Clone, Default)]
struct Seen {
    hooks: Arc<Mutex<Vec<Hook>>>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

/// DFIR-IRIS: `/api/ping` and `/api/versions` with its `{status, message, data}`
/// envelope; a wrong key is 401 with an error envelope.
fn fake_iris() -> Router {
    let authorized = |headers: &HeaderMap| bearer(headers).as_deref() == Some(IRIS_KEY);
    Router::new()
        .route(
            "/api/ping",
            get(move |headers: HeaderMap| async move {
                if authorized(&headers) {
                    (StatusCode::OK, r#"{"status":"success","message":"pong","data":[]}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, r#"{"status":"error","message":"Authentication required","data":[]}"#)
                }
            }),
        )
        .route(
            "/api/versions",
            get(|| async {
                r#"{"status":"success","message":"","data":{"iris_current":"v2.4.20","api_min":"2.0.0","api_current":"2.0.5"}}"#
            }),
        )
}

/// OpenCTI: `POST /graphql`; `about { version }` with a valid token; otherwise the
/// GraphQL error OpenCTI gives (`AUTH_REQUIRED`).
fn fake_opencti() -> Router {
    Router::new().route(
        "/graphql",
        post(|headers: HeaderMap, body: String| async move {
            let query: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let asks_version = query["query"].as_str().unwrap_or("").contains("about");
            if bearer(&headers).as_deref() != Some(CTI_TOKEN) {
                return (StatusCode::OK, r#"{"errors":[{"message":"You must be logged in to do this.","extensions":{"code":"AUTH_REQUIRED"}}],"data":null}"#.to_string());
            }
            if asks_version {
                (StatusCode::OK, r#"{"data":{"about":{"version":"6.4.2"}}}"#.to_string())
            } else {
                (StatusCode::BAD_REQUEST, "{}".to_string())
            }
        }),
    )
}

fn fake_webhook(seen: Seen) -> Router {
    Router::new()
        .route(
            "/hook",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let signed = headers
                        .get("x-casescope-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.hooks
                        .lock()
                        .unwrap()
                        .push((signed.clone(), body.to_vec()));
                    if signed == signature(HOOK_KEY, &body) {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                },
            ),
        )
        .with_state(seen)
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

async fn test(api: &IntegrationsApi, integration: &pb::Integration) -> pb::TestIntegrationResponse {
    let answer = api
        .test_integration(Request::new(pb::TestIntegrationRequest {
            id: id(integration),
        }))
        .await
        .unwrap()
        .into_inner();
    clean(&format!("{answer:?}"));
    answer
}

#[tokio::test]
async fn tests_reach_iris_opencti_and_a_webhook() {
    let (api, db, _dir) = sqlite().await;
    let iris_url = serve(fake_iris()).await;
    let good = api
        .create_integration(Request::new(iris("IRIS good", &iris_url, IRIS_KEY)))
        .await
        .unwrap()
        .into_inner();
    let answer = test(&api, &good).await;
    assert!(answer.ok, "{answer:?}");
    assert_eq!(
        (answer.http_status, answer.remote_version.as_str()),
        (200, "v2.4.20")
    );

    let bad = api
        .create_integration(Request::new(iris("IRIS bad key", &iris_url, "wrong-key")))
        .await
        .unwrap()
        .into_inner();
    let answer = test(&api, &bad).await;
    assert!(!answer.ok);
    assert_eq!(answer.http_status, 401);
    assert!(answer.message.contains("check the API key"), "{answer:?}");
    let health = api
        .get_integration(Request::new(pb::GetIntegrationRequest { id: id(&bad) }))
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    assert_eq!(health.consecutive_failures, 1);
    assert!(health.last_error.contains("401"), "{health:?}");
    assert!(health.last_failure_at.is_some());
    clean(&format!("{health:?}"));

    let cti_url = serve(fake_opencti()).await;
    let cti = api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: "CTI".into(),
            base_url: cti_url.clone(),
            secret: value(CTI_TOKEN),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let answer = test(&api, &cti).await;
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.remote_version, "6.4.2");
    let no_token = api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: "CTI without token".into(),
            base_url: cti_url,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let answer = test(&api, &no_token).await;
    assert!(!answer.ok);
    assert!(
        answer.message.contains("You must be logged in"),
        "{answer:?}"
    );

    let seen = Seen::default();
    let hook_url = serve(fake_webhook(seen.clone())).await;
    let hook = api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Webhook as i32,
            name: "SOC hook".into(),
            base_url: format!("{hook_url}/hook"),
            secret: value(HOOK_KEY),
            settings: Some(pb::IntegrationSettings {
                kind_settings: Some(pb::integration_settings::KindSettings::Webhook(
                    pb::WebhookSettings {
                        topics: vec![pb::ExportTopic::Detections as i32],
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let answer = test(&api, &hook).await;
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.http_status, 204);
    let hooks = seen.hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].0.starts_with("sha256="));
    assert!(!String::from_utf8_lossy(&hooks[0].1).contains(HOOK_KEY));

    // A target the guard refuses (not allow-listed) fails the test, saying why.
    let guarded = IntegrationsApi::new(
        db.clone(),
        IntegrationsSettings {
            secrets: Some(Arc::new(SecretBox::from_text(KEY).unwrap())),
            ..Default::default()
        },
    );
    let answer = guarded
        .test_integration(Request::new(pb::TestIntegrationRequest { id: id(&good) }))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.ok);
    assert!(answer.message.contains("loopback"), "{answer:?}");
}
