//! `TestIntegration`: one authenticated, side-effect-free call to the target, and what
//! it says — reachable, credentials accepted, the version it reports.
//! - DFIR-IRIS: `GET /api/ping` (authenticated), then `GET /api/versions` for the
//!   version (`{"status":"success","data":{"iris_current":…}}`).
//! - OpenCTI: `POST /graphql` with `{ about { version } }`.
//! - Webhook: `POST` of a signed `integration.test` message; any 2xx is a pass.

use crate::outbound::{Answer, OutRequest, Outbound, OutboundError, excerpt};
use crate::webhook::signed_request;
use casescope_proto::integrations::v1 as pb;
use reqwest::Url;
use serde_json::{Value, json};

/// The outcome of a test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub ok: bool,
    pub http_status: u32,
    pub message: String,
    pub remote_version: String,
}

fn join(base: &str, path: &str) -> Result<Url, String> {
    Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| format!("the URL cannot be made: {e}"))
}

fn failed(error: OutboundError) -> Probe {
    Probe {
        ok: false,
        http_status: match &error {
            OutboundError::Status { status, .. } => u32::from(*status),
            _ => 0,
        },
        message: error.to_string(),
        remote_version: String::new(),
    }
}

/// What an HTTP error status means for a test.
fn status_message(answer: &Answer) -> String {
    let hint = match answer.status {
        401 => ": check the API key or token",
        403 => ": the key's user lacks the permission",
        404 => ": check the base URL",
        _ => "",
    };
    let body = excerpt(&answer.body, 200);
    if body.is_empty() {
        format!("HTTP {}{hint}", answer.status)
    } else {
        format!("HTTP {}{hint} ({body})", answer.status)
    }
}

fn json_of(answer: &Answer) -> Option<Value> {
    serde_json::from_slice(&answer.body).ok()
}

/// Tests one integration with its outbound client.
pub async fn probe(
    kind: pb::IntegrationKind,
    base_url: &str,
    outbound: &Outbound,
    webhook_key: Option<&str>,
    signature_header: &str,
) -> Probe {
    match kind {
        pb::IntegrationKind::DfirIris => iris(base_url, outbound).await,
        pb::IntegrationKind::Opencti => opencti(base_url, outbound).await,
        pb::IntegrationKind::Webhook => {
            webhook(base_url, outbound, webhook_key, signature_header).await
        }
        _ => Probe {
            message: "this kind cannot be tested".into(),
            ..Default::default()
        },
    }
}

async fn iris(base: &str, outbound: &Outbound) -> Probe {
    let url = match join(base, "/api/ping") {
        Ok(url) => url,
        Err(message) => {
            return Probe {
                message,
                ..Default::default()
            };
        }
    };
    let answer = match outbound.send(&OutRequest::get(url)).await {
        Ok(answer) => answer,
        Err(error) => return failed(error),
    };
    let envelope_ok = json_of(&answer)
        .is_some_and(|v| v.get("status").and_then(Value::as_str) == Some("success"));
    if !(200..300).contains(&answer.status) || !envelope_ok {
        return Probe {
            ok: false,
            http_status: u32::from(answer.status),
            message: if (200..300).contains(&answer.status) {
                "the answer is not DFIR-IRIS's {\"status\": \"success\"} envelope: check the base URL".into()
            } else {
                status_message(&answer)
            },
            remote_version: String::new(),
        };
    }
    let version = match join(base, "/api/versions") {
        Ok(url) => outbound
            .send(&OutRequest::get(url))
            .await
            .ok()
            .and_then(|a| json_of(&a))
            .and_then(|v| {
                v.pointer("/data/iris_current")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Probe {
        ok: true,
        http_status: u32::from(answer.status),
        message: "DFIR-IRIS answered and accepted the API key".into(),
        remote_version: version,
    }
}

async fn opencti(base: &str, outbound: &Outbound) -> Probe {
    let url = match join(base, "/graphql") {
        Ok(url) => url,
        Err(message) => {
            return Probe {
                message,
                ..Default::default()
            };
        }
    };
    let query = json!({"query": "query CaseScopeTest { about { version } }"});
    let answer = match outbound.send(&OutRequest::post_json(url, &query)).await {
        Ok(answer) => answer,
        Err(error) => return failed(error),
    };
    let body = json_of(&answer);
    let version = body
        .as_ref()
        .and_then(|v| v.pointer("/data/about/version"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let graphql_error = body
        .as_ref()
        .and_then(|v| v.pointer("/errors/0/message"))
        .and_then(Value::as_str)
        .map(|m| excerpt(m.as_bytes(), 200));
    match (answer.status, version, graphql_error) {
        (200..=299, Some(version), _) => Probe {
            ok: true,
            http_status: u32::from(answer.status),
            message: "OpenCTI answered and accepted the token".into(),
            remote_version: version,
        },
        (_, _, Some(error)) => Probe {
            ok: false,
            http_status: u32::from(answer.status),
            message: format!("OpenCTI refused the query: {error}"),
            remote_version: String::new(),
        },
        _ => Probe {
            ok: false,
            http_status: u32::from(answer.status),
            message: status_message(&answer),
            remote_version: String::new(),
        },
    }
}

async fn webhook(base: &str, outbound: &Outbound, key: Option<&str>, header: &str) -> Probe {
    let url = match Url::parse(base) {
        Ok(url) => url,
        Err(e) => {
            return Probe {
                message: format!("the URL cannot be used: {e}"),
                ..Default::default()
            };
        }
    };
    let body = json!({"kind": "integration.test", "producer": "casescope"});
    let request = signed_request(url, &body, key, header);
    match outbound.send(&request).await {
        Ok(answer) if (200..300).contains(&answer.status) => Probe {
            ok: true,
            http_status: u32::from(answer.status),
            message: "the webhook accepted a signed test message".into(),
            remote_version: String::new(),
        },
        Ok(answer) => Probe {
            ok: false,
            http_status: u32::from(answer.status),
            message: status_message(&answer),
            remote_version: String::new(),
        },
        Err(error) => failed(error),
    }
}
