//! A local server that answers as DFIR-IRIS's REST API (v2.4) does, for the
//! integrations tests: DFIR-IRIS cannot run here (it needs its own PostgreSQL schema,
//! RabbitMQ and a Python web stack), so this reproduces the request and answer shapes of
//! its public documentation and source (docs.dfir-iris.org, `dfir-iris/iris-web`
//! `source/app/blueprints/…`): the `{"status", "message", "data"}` envelope, 200 on
//! success, 400 `Data error` with per-field messages for a refused body, 401 without a
//! valid `Authorization: Bearer` key, case routes scoped by `?cid=`, reference lists
//! whose ids differ from install to install, IOCs de-duplicated by type and value (the
//! add answers the existing one), a second asset of a name refused, timeline events
//! never de-duplicated, `event_date` refused with an offset.
//!
//! Faults for the tests: the next requests answered 429 with `Retry-After`; one event
//! creation stored and then never answered (what a push sees when its worker or the
//! network dies mid-call).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A refusal answered as is (boxed: a response is large).
type Refusal = Box<Response>;

/// Reference list ids: deliberately not IRIS's defaults, so a client that assumes
/// them fails.
pub const CUSTOMER_ID: u64 = 41;
pub const UNSPECIFIED_CATEGORY: u64 = 1007;
pub const WINDOWS_COMPUTER_ASSET_TYPE: u64 = 2009;

#[derive(Default)]
struct Store {
    next_id: u64,
    cases: Vec<Value>,
    iocs: Vec<Value>,
    assets: Vec<Value>,
    events: Vec<Value>,
    requests: Vec<String>,
    throttle: u32,
    retry_after: u32,
    /// Event creations answered before the next one is stored and left unanswered.
    hang_after_events: Option<u64>,
    events_created: u64,
}

#[derive(Clone)]
struct Iris {
    key: Arc<String>,
    store: Arc<Mutex<Store>>,
    ioc_types: Arc<Vec<(u64, &'static str)>>,
}

/// The running server.
pub struct FakeIris {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIris {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok(data: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"status": "success", "message": "", "data": data})),
    )
        .into_response()
}

fn data_error(field: &str, why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "message": "Data error", "data": {field: [why]}})),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "message": format!("Invalid {what} ID for this case"), "data": null})),
    )
        .into_response()
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, no offset (as IRIS's EventSchema parses it).
fn iris_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 19
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    match &b[19..] {
        [] => true,
        [b'.', rest @ ..] => (1..=6).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn text(body: &Value, key: &str) -> String {
    body.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn number(body: &Value, key: &str) -> Option<u64> {
    body.get(key).and_then(Value::as_u64)
}

impl Iris {
    /// Authentication, request log, throttling: `Some(answer)` stops the request.
    fn gate(&self, headers: &HeaderMap, what: String) -> Option<Response> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let mut store = self.store.lock().unwrap();
        store.requests.push(what);
        if bearer != Some(self.key.as_str()) {
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"status": "error", "message": "Authentication required", "data": null})),
                )
                    .into_response(),
            );
        }
        if store.throttle > 0 {
            store.throttle -= 1;
            return Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", store.retry_after.to_string())],
                    "Too Many Requests",
                )
                    .into_response(),
            );
        }
        None
    }
}

fn cid(query: &HashMap<String, String>) -> Option<u64> {
    query.get("cid").and_then(|c| c.parse().ok())
}

async fn lists(State(iris): State<Iris>, headers: HeaderMap, Path(list): Path<String>) -> Response {
    if let Some(stop) = iris.gate(&headers, format!("GET /manage/{list}/list")) {
        return stop;
    }
    match list.as_str() {
        "customers" => ok(json!([{"customer_id": CUSTOMER_ID, "customer_name": "IrisInitialClient"}])),
        "ioc-types" => ok(Value::Array(
            iris.ioc_types
                .iter()
                .map(|(id, name)| json!({"type_id": id, "type_name": name, "type_description": "", "type_taxonomy": null, "type_validation_regex": null}))
                .collect(),
        )),
        "tlp" => ok(json!([{"tlp_id": 301, "tlp_name": "red", "tlp_bscolor": "danger"},
                            {"tlp_id": 302, "tlp_name": "amber", "tlp_bscolor": "warning"},
                            {"tlp_id": 303, "tlp_name": "green", "tlp_bscolor": "success"},
                            {"tlp_id": 304, "tlp_name": "clear", "tlp_bscolor": "light"},
                            {"tlp_id": 305, "tlp_name": "amber+strict", "tlp_bscolor": "warning"}])),
        "asset-type" => ok(json!([{"asset_id": 2001, "asset_name": "Account", "asset_description": ""},
                                   {"asset_id": WINDOWS_COMPUTER_ASSET_TYPE, "asset_name": "Windows - Computer", "asset_description": ""}])),
        "event-categories" => ok(json!([{"id": 1005, "name": "Lateral Movement"}, {"id": UNSPECIFIED_CATEGORY, "name": "Unspecified"}])),
        "analysis-status" => ok(json!([{"id": 1101, "name": "Unspecified"}, {"id": 1102, "name": "To be done"}])),
        _ => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn ping(State(iris): State<Iris>, headers: HeaderMap) -> Response {
    if let Some(stop) = iris.gate(&headers, "GET /api/ping".into()) {
        return stop;
    }
    ok(json!([]))
}

async fn versions(State(iris): State<Iris>, headers: HeaderMap) -> Response {
    if let Some(stop) = iris.gate(&headers, "GET /api/versions".into()) {
        return stop;
    }
    ok(json!({"iris_current": "v2.4.20", "api_min": "2.0.0", "api_current": "2.0.4"}))
}

async fn case_add(State(iris): State<Iris>, headers: HeaderMap, body: String) -> Response {
    if let Some(stop) = iris.gate(&headers, "POST /manage/cases/add".into()) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    if text(&body, "case_name").chars().count() < 2 {
        return data_error("case_name", "Length must be at least 2.");
    }
    if text(&body, "case_description").chars().count() < 2 {
        return data_error("case_description", "Length must be at least 2.");
    }
    if number(&body, "case_customer") != Some(CUSTOMER_ID) {
        return data_error("case_customer", "Invalid customer ID");
    }
    let mut store = iris.store.lock().unwrap();
    store.next_id += 1;
    let case = json!({
        "case_id": store.next_id,
        "case_name": format!("#{} - {}", store.next_id, text(&body, "case_name")),
        "case_description": text(&body, "case_description"),
        "case_soc_id": text(&body, "case_soc_id"),
        "case_customer": CUSTOMER_ID,
        "classification_id": body.get("classification_id").cloned().unwrap_or(Value::Null),
    });
    store.cases.push(case.clone());
    ok(case)
}

async fn case_update(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: String,
) -> Response {
    if let Some(stop) = iris.gate(&headers, format!("POST /manage/cases/update/{id}")) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut store = iris.store.lock().unwrap();
    let Some(case) = store.cases.iter_mut().find(|c| c["case_id"] == id) else {
        return not_found("case");
    };
    for key in ["case_name", "case_description", "case_soc_id"] {
        if let Some(value) = body.get(key) {
            case[key] = value.clone();
        }
    }
    ok(case.clone())
}

async fn case_filter(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(stop) = iris.gate(&headers, "GET /manage/cases/filter".into()) {
        return stop;
    }
    let store = iris.store.lock().unwrap();
    let soc = query.get("case_soc_id").cloned().unwrap_or_default();
    let cases: Vec<Value> = store
        .cases
        .iter()
        .filter(|c| soc.is_empty() || c["case_soc_id"] == soc.as_str())
        .cloned()
        .collect();
    ok(
        json!({"total": cases.len(), "cases": cases, "last_page": 1, "current_page": 1, "next_page": null}),
    )
}

/// A case-scoped route's case, or the answer IRIS gives without one.
fn scoped(store: &Store, query: &HashMap<String, String>) -> Result<u64, Refusal> {
    match cid(query) {
        Some(id) if store.cases.iter().any(|c| c["case_id"] == id) => Ok(id),
        _ => Err(Box::new(
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "error", "message": "Invalid case ID", "data": null})),
            )
                .into_response(),
        )),
    }
}

async fn case_items(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Path((kind, action)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Some(stop) = iris.gate(&headers, format!("/case/{kind}/{action}")) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut store = iris.store.lock().unwrap();
    let cid = match scoped(&store, &query) {
        Ok(cid) => cid,
        Err(answer) => return *answer,
    };
    match (kind.as_str(), action.as_str()) {
        ("ioc", "list") => {
            let iocs: Vec<Value> = store
                .iocs
                .iter()
                .filter(|i| i["case_id"] == cid)
                .cloned()
                .collect();
            ok(json!({"ioc": iocs, "state": {}}))
        }
        ("ioc", "add") => {
            let type_id = number(&body, "ioc_type_id");
            if !type_id.is_some_and(|t| iris.ioc_types.iter().any(|(id, _)| *id == t)) {
                return data_error("ioc_type_id", "Invalid ioc_type ID");
            }
            if !number(&body, "ioc_tlp_id").is_some_and(|t| (301..=305).contains(&t)) {
                return data_error("ioc_tlp_id", "Invalid TLP ID");
            }
            let value = text(&body, "ioc_value");
            if value.is_empty() {
                return data_error("ioc_value", "Field may not be null.");
            }
            if let Some(existing) = store.iocs.iter().find(|i| {
                i["case_id"] == cid
                    && i["ioc_type_id"] == type_id.unwrap()
                    && i["ioc_value"] == value.as_str()
            }) {
                return (
                    StatusCode::OK,
                    axum::Json(json!({"status": "success", "message": "IOC already exists and linked to this case", "data": existing})),
                )
                    .into_response();
            }
            store.next_id += 1;
            let mut ioc = body.clone();
            ioc["ioc_id"] = json!(store.next_id);
            ioc["case_id"] = json!(cid);
            store.iocs.push(ioc.clone());
            ok(ioc)
        }
        ("assets", "list") => {
            let assets: Vec<Value> = store
                .assets
                .iter()
                .filter(|a| a["case_id"] == cid)
                .cloned()
                .collect();
            ok(json!({"assets": assets, "state": {}}))
        }
        ("assets", "add") => {
            let name = text(&body, "asset_name");
            if name.is_empty() {
                return data_error("asset_name", "Field may not be null.");
            }
            if number(&body, "asset_type_id") != Some(WINDOWS_COMPUTER_ASSET_TYPE)
                && number(&body, "asset_type_id") != Some(2001)
            {
                return data_error("asset_type_id", "Invalid asset type ID");
            }
            if !number(&body, "analysis_status_id").is_some_and(|s| s == 1101 || s == 1102) {
                return data_error("analysis_status_id", "Invalid analysis status ID");
            }
            if store.assets.iter().any(|a| {
                a["case_id"] == cid
                    && a["asset_name"]
                        .as_str()
                        .unwrap_or("")
                        .eq_ignore_ascii_case(&name)
            }) {
                return data_error("asset_name", "Asset name already exists in this case");
            }
            store.next_id += 1;
            let mut asset = body.clone();
            asset["asset_id"] = json!(store.next_id);
            asset["case_id"] = json!(cid);
            store.assets.push(asset.clone());
            ok(asset)
        }
        _ => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn case_item_update(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, u64)>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Some(stop) = iris.gate(&headers, format!("/case/{kind}/update")) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut store = iris.store.lock().unwrap();
    let cid = match scoped(&store, &query) {
        Ok(cid) => cid,
        Err(answer) => return *answer,
    };
    let (list, key) = match kind.as_str() {
        "ioc" => (&mut store.iocs, "ioc_id"),
        "assets" => (&mut store.assets, "asset_id"),
        _ => return (StatusCode::NOT_FOUND, "Not Found").into_response(),
    };
    let Some(item) = list
        .iter_mut()
        .find(|i| i[key] == id && i["case_id"] == cid)
    else {
        return not_found(&kind);
    };
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            item[k.as_str()] = v;
        }
    }
    ok(item.clone())
}

/// The required fields of a timeline event (add and update alike).
fn check_event(store: &Store, cid: u64, body: &Value) -> Result<(), Refusal> {
    if text(body, "event_title").chars().count() < 2 {
        return Err(Box::new(data_error(
            "event_title",
            "Length must be at least 2.",
        )));
    }
    if !iris_date(&text(body, "event_date")) {
        return Err(Box::new(data_error("event_date", "Not a valid datetime.")));
    }
    if text(body, "event_tz").is_empty() {
        return Err(Box::new(data_error(
            "event_tz",
            "Missing data for required field.",
        )));
    }
    if number(body, "event_category_id") != Some(UNSPECIFIED_CATEGORY)
        && number(body, "event_category_id") != Some(1005)
    {
        return Err(Box::new(data_error(
            "event_category_id",
            "Invalid event category ID",
        )));
    }
    let Some(assets) = body.get("event_assets").and_then(Value::as_array) else {
        return Err(Box::new(data_error(
            "event_assets",
            "Missing data for required field.",
        )));
    };
    for asset in assets {
        if !store
            .assets
            .iter()
            .any(|a| a["asset_id"] == *asset && a["case_id"] == cid)
        {
            return Err(Box::new(data_error("event_assets", "Invalid asset ID")));
        }
    }
    if body.get("event_iocs").and_then(Value::as_array).is_none() {
        return Err(Box::new(data_error(
            "event_iocs",
            "Missing data for required field.",
        )));
    }
    Ok(())
}

async fn events_list(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(stop) = iris.gate(&headers, "GET /case/timeline/events/list".into()) {
        return stop;
    }
    let store = iris.store.lock().unwrap();
    let cid = match scoped(&store, &query) {
        Ok(cid) => cid,
        Err(answer) => return *answer,
    };
    let events: Vec<Value> = store
        .events
        .iter()
        .filter(|e| e["case_id"] == cid)
        .cloned()
        .collect();
    ok(json!({"timeline": events, "state": {}}))
}

async fn event_add(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Some(stop) = iris.gate(&headers, "POST /case/timeline/events/add".into()) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let (event, hang) = {
        let mut store = iris.store.lock().unwrap();
        let cid = match scoped(&store, &query) {
            Ok(cid) => cid,
            Err(answer) => return *answer,
        };
        if let Err(answer) = check_event(&store, cid, &body) {
            return *answer;
        }
        store.next_id += 1;
        let mut event = body.clone();
        event["event_id"] = json!(store.next_id);
        event["case_id"] = json!(cid);
        store.events.push(event.clone());
        store.events_created += 1;
        let hang = store
            .hang_after_events
            .is_some_and(|n| store.events_created == n + 1);
        if hang {
            store.hang_after_events = None;
        }
        (event, hang)
    };
    if hang {
        // Stored, never answered.
        std::future::pending::<()>().await;
    }
    ok(event)
}

async fn event_update(
    State(iris): State<Iris>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Some(stop) = iris.gate(&headers, format!("POST /case/timeline/events/update/{id}")) {
        return stop;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut store = iris.store.lock().unwrap();
    let cid = match scoped(&store, &query) {
        Ok(cid) => cid,
        Err(answer) => return *answer,
    };
    if let Err(answer) = check_event(&store, cid, &body) {
        return *answer;
    }
    let Some(event) = store
        .events
        .iter_mut()
        .find(|e| e["event_id"] == id && e["case_id"] == cid)
    else {
        return not_found("event");
    };
    let mut updated = body;
    updated["event_id"] = json!(id);
    updated["case_id"] = json!(cid);
    *event = updated.clone();
    ok(updated)
}

impl FakeIris {
    /// A server on loopback that accepts `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let store = Arc::new(Mutex::new(Store {
            next_id: 100,
            ..Default::default()
        }));
        let iris = Iris {
            key: Arc::new(api_key.to_string()),
            store: store.clone(),
            ioc_types: Arc::new(vec![
                (3076, "ip-any"),
                (3020, "domain"),
                (3090, "md5"),
                (3113, "sha256"),
                (3047, "filename"),
                (3048, "hostname"),
                (3141, "url"),
                (3096, "other"),
            ]),
        };
        let app = Router::new()
            .route("/api/ping", get(ping))
            .route("/api/versions", get(versions))
            .route("/manage/{list}/list", get(lists))
            .route("/manage/cases/add", post(case_add))
            .route("/manage/cases/update/{id}", post(case_update))
            .route("/manage/cases/filter", get(case_filter))
            .route("/case/timeline/events/list", get(events_list))
            .route("/case/timeline/events/add", post(event_add))
            .route("/case/timeline/events/update/{id}", post(event_update))
            .route("/case/{kind}/update/{id}", post(case_item_update))
            .route("/case/{kind}/{action}", get(case_items).post(case_items))
            .with_state(iris);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the IRIS server");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, store, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` requests are answered 429 with `Retry-After: seconds`.
    pub fn throttle(&self, n: u32, seconds: u32) {
        let mut store = self.store.lock().unwrap();
        store.throttle = n;
        store.retry_after = seconds;
    }

    /// After `n` more event creations, the next is stored and never answered.
    pub fn hang_after_events(&self, n: u64) {
        let mut store = self.store.lock().unwrap();
        store.hang_after_events = Some(store.events_created + n);
    }

    pub fn cases(&self) -> Vec<Value> {
        self.store.lock().unwrap().cases.clone()
    }
    pub fn iocs(&self) -> Vec<Value> {
        self.store.lock().unwrap().iocs.clone()
    }
    pub fn assets(&self) -> Vec<Value> {
        self.store.lock().unwrap().assets.clone()
    }
    pub fn events(&self) -> Vec<Value> {
        self.store.lock().unwrap().events.clone()
    }
    /// Requests received, as `METHOD path` (throttled and refused ones included).
    pub fn requests(&self) -> Vec<String> {
        self.store.lock().unwrap().requests.clone()
    }
}
