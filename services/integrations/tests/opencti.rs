//! OpenCTI lookups in batches against a local server that answers the
//! `stixCyberObservables` query as OpenCTI's GraphQL API documents it: FilterGroup
//! filters (`value`, `hashes.*`; an unknown key is an error, as in OpenCTI), cursor
//! pages (`first` / `after`, `pageInfo`), and a server-side page cap of 200.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use casescope_integrations::opencti::{BATCH, lookup};
use casescope_integrations::outbound::breaker::Breaker;
use casescope_integrations::outbound::guard::Guard;
use casescope_integrations::outbound::{Auth, Outbound, OutboundError, OutboundSettings};
use casescope_runtime::config::IpNet;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "0f1e2d3c-canary-opencti-token";
/// Results per page at most, whatever `first` asks (as a server may cap it).
const SERVER_PAGE_CAP: usize = 200;

#[derive(Clone, Default)]
struct Cti {
    /// Observable value → (entity type, score).
    known: Arc<HashMap<String, (String, i64)>>,
    requests: Arc<AtomicU64>,
    /// Values asked for, per request.
    asked: Arc<Mutex<Vec<usize>>>,
}

fn node(value: &str, entity: &str, score: i64) -> Value {
    json!({
        "id": format!("obs--{value}"), "entity_type": entity, "observable_value": value,
        "x_opencti_score": score, "objectLabel": [{"value": "malicious"}, {"value": "c2"}],
        "indicators": {"edges": [{"node": {"id": format!("ind--{value}"), "name": value,
            "pattern": format!("[x:value = '{value}']"), "x_opencti_score": score,
            "valid_until": "2027-01-01T00:00:00.000Z", "revoked": false}}]},
        "stixCoreRelationships": {"edges": [{"node": {"relationship_type": "related-to",
            "to": {"entity_type": "Malware", "id": "malware--1", "name": "Emotet"}}}]},
    })
}

async fn graphql(State(cti): State<Cti>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    cti.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::OK, json!({"errors": [{"message": "You must be logged in to do this.", "extensions": {"code": "AUTH_REQUIRED"}}], "data": null}).to_string());
    }
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(
        request["query"]
            .as_str()
            .unwrap_or("")
            .contains("stixCyberObservables")
    );
    let variables = &request["variables"];
    let filters = &variables["filters"];
    assert_eq!(filters["mode"], "or");
    let mut wanted = Vec::new();
    for filter in filters["filters"].as_array().cloned().unwrap_or_default() {
        let key = filter["key"].as_str().unwrap_or("");
        if key != "value" && !key.starts_with("hashes.") {
            return (
                StatusCode::OK,
                json!({"errors": [{"message": format!("Unknown filter key {key}")}], "data": null})
                    .to_string(),
            );
        }
        assert_eq!(filter["operator"], "eq");
        for value in filter["values"].as_array().cloned().unwrap_or_default() {
            wanted.push(value.as_str().unwrap_or("").to_string());
        }
    }
    cti.asked.lock().unwrap().push(wanted.len());
    let matches: Vec<&String> = wanted
        .iter()
        .filter(|v| cti.known.contains_key(*v))
        .collect();
    let first = variables["first"].as_u64().unwrap_or(100) as usize;
    let start: usize = variables["after"]
        .as_str()
        .and_then(|c| c.strip_prefix("cur-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let size = first.min(SERVER_PAGE_CAP);
    let page: Vec<Value> = matches
        .iter()
        .skip(start)
        .take(size)
        .map(|v| {
            let (entity, score) = &cti.known[*v];
            json!({"node": node(v, entity, *score)})
        })
        .collect();
    let end = start + page.len();
    let answer = json!({"data": {"stixCyberObservables": {"edges": page, "pageInfo": {
        "hasNextPage": end < matches.len(), "endCursor": format!("cur-{end}"), "globalCount": matches.len()}}}});
    (StatusCode::OK, answer.to_string())
}

async fn serve(cti: Cti) -> String {
    let router = Router::new()
        .route("/graphql", post(graphql))
        .with_state(cti);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn outbound(token: &str) -> Outbound {
    Outbound::new(
        Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]),
        OutboundSettings::default(),
        Duration::from_secs(10),
        None,
        Some(Auth::Bearer(token.into())),
        Arc::new(Breaker::new(5, Duration::from_secs(30))),
    )
    .unwrap()
}

fn iocs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match i % 5 {
            0 => ("sha256".to_string(), format!("{:064X}", i)),
            1 => ("domain".to_string(), format!("host{i}.evil.example")),
            2 => (
                "url".to_string(),
                format!("http://host{i}.evil.example/payload"),
            ),
            _ => ("ip".to_string(), format!("203.0.{}.{}", i / 256, i % 256)),
        })
        .collect()
}

#[tokio::test]
async fn five_thousand_iocs_take_ten_requests() {
    let all = iocs(5_000);
    // One value in three is known to OpenCTI (hashes as stored: lower case).
    let known: HashMap<String, (String, i64)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, (kind, value))| {
            let value = if kind == "sha256" {
                value.to_ascii_lowercase()
            } else {
                value.clone()
            };
            (value, ("IPv4-Addr".to_string(), (i % 100) as i64))
        })
        .collect();
    let expected = known.len();
    let cti = Cti {
        known: Arc::new(known),
        ..Default::default()
    };
    let url = serve(cti.clone()).await;
    let found = lookup(&outbound(TOKEN), &url, &all).await.unwrap();
    assert_eq!(found.requests, 10, "5,000 values in batches of {BATCH}");
    assert_eq!(cti.requests.load(Ordering::SeqCst), 10);
    assert!(cti.asked.lock().unwrap().iter().all(|n| *n <= BATCH));
    assert_eq!(found.found.len(), expected);
    assert_eq!(found.cut, 0);
    // A hash given in upper case is found under its lower-case form, with what OpenCTI knows.
    let knowledge = &found.found[&format!("{:064x}", 0)];
    assert_eq!(knowledge.labels, vec!["malicious", "c2"]);
    assert_eq!(knowledge.indicators.len(), 1);
    assert!(!knowledge.indicators[0].revoked);
    assert_eq!(knowledge.related, vec!["related-to Malware Emotet"]);
    assert_eq!(knowledge.score, Some(0));
}

#[tokio::test]
async fn a_batch_with_more_matches_than_a_page_follows_the_cursor() {
    let all: Vec<(String, String)> = (0..BATCH)
        .map(|i| ("domain".to_string(), format!("d{i}.example")))
        .collect();
    let known = all
        .iter()
        .map(|(_, v)| (v.clone(), ("Domain-Name".to_string(), 80)))
        .collect();
    let cti = Cti {
        known: Arc::new(known),
        ..Default::default()
    };
    let url = serve(cti.clone()).await;
    let found = lookup(&outbound(TOKEN), &url, &all).await.unwrap();
    assert_eq!(found.found.len(), BATCH);
    // 500 matches in pages of at most 200.
    assert_eq!(found.requests, 3);
}

#[tokio::test]
async fn graphql_errors_are_reported_without_the_token() {
    let url = serve(Cti::default()).await;
    let error = lookup(&outbound("wrong-token"), &url, &iocs(10))
        .await
        .unwrap_err();
    let OutboundError::Status { excerpt, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(excerpt.contains("You must be logged in"), "{excerpt}");
    assert!(!error.to_string().contains(TOKEN) && !error.to_string().contains("wrong-token"));
    // Types OpenCTI cannot look up cost no request.
    let cti = Cti::default();
    let url = serve(cti.clone()).await;
    let none = lookup(
        &outbound(TOKEN),
        &url,
        &[("command_line".into(), "cmd /c whoami".into())],
    )
    .await
    .unwrap();
    assert_eq!((none.requests, cti.requests.load(Ordering::SeqCst)), (0, 0));
}
