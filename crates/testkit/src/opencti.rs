//! A local server that answers as OpenCTI's GraphQL API does, for the integrations
//! tests (OpenCTI cannot run here: it needs Elasticsearch, Redis, RabbitMQ and MinIO):
//! `POST /graphql` with `Authorization: Bearer <token>` (without it, OpenCTI's
//! `AUTH_REQUIRED` GraphQL error), `{ about { version } }`, and the
//! `stixCyberObservables` query with a FilterGroup (`value`, `hashes.*`; an unknown key
//! is an error, as in OpenCTI since 5.12) and cursor pages (`first` / `after`,
//! `pageInfo`) capped at 200 results per page whatever `first` asks.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Results per page at most, whatever `first` asks (as a server may cap it).
pub const SERVER_PAGE_CAP: usize = 200;

#[derive(Clone)]
struct Cti {
    token: Arc<String>,
    /// Observable value → (entity type, score).
    known: Arc<HashMap<String, (String, i64)>>,
    requests: Arc<AtomicU64>,
    /// Values asked for, per request.
    asked: Arc<Mutex<Vec<usize>>>,
    /// Indicator nodes the `indicators` query answers from.
    indicators: Arc<Vec<Value>>,
}

/// The running server.
pub struct FakeOpenCti {
    url: String,
    cti: Cti,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenCti {
    fn drop(&mut self) {
        self.task.abort();
    }
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

fn error(message: &str, code: Option<&str>) -> (StatusCode, String) {
    let mut error = json!({"message": message});
    if let Some(code) = code {
        error["extensions"] = json!({"code": code});
    }
    (
        StatusCode::OK,
        json!({"errors": [error], "data": null}).to_string(),
    )
}

async fn graphql(State(cti): State<Cti>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    cti.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {}", cti.token))
    {
        return error("You must be logged in to do this.", Some("AUTH_REQUIRED"));
    }
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let query = request["query"].as_str().unwrap_or("");
    if query.contains("about") {
        return (
            StatusCode::OK,
            json!({"data": {"about": {"version": "6.4.2"}}}).to_string(),
        );
    }
    if query.contains("indicators(filters") {
        return indicators(&cti, &request["variables"]);
    }
    if !query.contains("stixCyberObservables") {
        return error("Unknown query", None);
    }
    let variables = &request["variables"];
    let filters = &variables["filters"];
    if filters["mode"] != "or" {
        return error("filters.mode must be or for a lookup", None);
    }
    let mut wanted = Vec::new();
    for filter in filters["filters"].as_array().cloned().unwrap_or_default() {
        let key = filter["key"].as_str().unwrap_or("");
        if key != "value" && !key.starts_with("hashes.") {
            return error(&format!("Unknown filter key {key}"), None);
        }
        if filter["operator"] != "eq" {
            return error("operator must be eq", None);
        }
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

/// The `indicators` query: an AND of filters on `revoked`, `confidence` (gte),
/// `x_opencti_main_observable_type`, `valid_from` (gte); `search` in the name.
fn indicators(cti: &Cti, variables: &Value) -> (StatusCode, String) {
    let filters = &variables["filters"];
    let mut kept: Vec<&Value> = cti.indicators.iter().collect();
    for filter in filters["filters"].as_array().cloned().unwrap_or_default() {
        let key = filter["key"].as_str().unwrap_or("").to_string();
        let values: Vec<String> = filter["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect();
        let operator = filter["operator"].as_str().unwrap_or("eq").to_string();
        kept.retain(|node| match (key.as_str(), operator.as_str()) {
            ("revoked", "eq") => values.iter().any(|v| {
                node["revoked"].as_bool().map(|b| b.to_string()).as_deref() == Some(v.as_str())
            }),
            ("confidence", "gte") => values
                .iter()
                .all(|v| node["confidence"].as_u64().unwrap_or(0) >= v.parse::<u64>().unwrap_or(0)),
            ("x_opencti_main_observable_type", "eq") => values
                .iter()
                .any(|v| node["x_opencti_main_observable_type"].as_str() == Some(v.as_str())),
            ("valid_from", "gte") => values
                .iter()
                .all(|v| node["valid_from"].as_str().unwrap_or("") >= v.as_str()),
            _ => false,
        });
        if !matches!(
            key.as_str(),
            "revoked" | "confidence" | "x_opencti_main_observable_type" | "valid_from"
        ) {
            return error(&format!("Unknown filter key {key}"), None);
        }
    }
    if let Some(search) = variables["search"].as_str() {
        let search = search.to_ascii_lowercase();
        kept.retain(|n| {
            n["name"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains(&search)
        });
    }
    let first = variables["first"].as_u64().unwrap_or(100) as usize;
    let start: usize = variables["after"]
        .as_str()
        .and_then(|c| c.strip_prefix("cur-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = kept
        .iter()
        .skip(start)
        .take(first.min(SERVER_PAGE_CAP))
        .map(|n| json!({"node": n}))
        .collect();
    let end = start + page.len();
    let answer = json!({"data": {"indicators": {"edges": page, "pageInfo": {
        "hasNextPage": end < kept.len(), "endCursor": format!("cur-{end}"), "globalCount": kept.len()}}}});
    (StatusCode::OK, answer.to_string())
}

/// An indicator node as OpenCTI's `indicators` query answers it.
pub fn indicator(
    n: usize,
    pattern: &str,
    observable_type: &str,
    confidence: u64,
    labels: &[&str],
) -> Value {
    json!({
        "id": format!("ind-{n}"),
        "standard_id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
        "name": format!("indicator {n}"),
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-10-01T00:00:00.000Z",
        "valid_until": "2027-10-01T00:00:00.000Z",
        "revoked": false,
        "confidence": confidence,
        "x_opencti_score": confidence,
        "x_opencti_main_observable_type": observable_type,
        "objectLabel": labels.iter().map(|l| json!({"value": l})).collect::<Vec<_>>(),
    })
}

impl FakeOpenCti {
    /// A server on loopback accepting `token`, knowing `known` (value → entity type,
    /// score; hashes lower case).
    pub async fn start(token: &str, known: HashMap<String, (String, i64)>) -> Self {
        Self::with_indicators(token, known, Vec::new()).await
    }

    /// Also answering the `indicators` query from `indicators` (see [`indicator`]).
    pub async fn with_indicators(
        token: &str,
        known: HashMap<String, (String, i64)>,
        indicators: Vec<Value>,
    ) -> Self {
        let cti = Cti {
            token: Arc::new(token.to_string()),
            known: Arc::new(known),
            requests: Arc::new(AtomicU64::new(0)),
            asked: Arc::new(Mutex::new(Vec::new())),
            indicators: Arc::new(indicators),
        };
        let router = Router::new()
            .route("/graphql", post(graphql))
            .with_state(cti.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OpenCTI server");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}"),
            cti,
            task,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Requests received (refused ones included).
    pub fn requests(&self) -> u64 {
        self.cti.requests.load(Ordering::SeqCst)
    }

    /// Values asked for, per lookup request.
    pub fn asked(&self) -> Vec<usize> {
        self.cti.asked.lock().unwrap().clone()
    }
}
