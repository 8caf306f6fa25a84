//! A local server speaking the Kubernetes API's wire format for EndpointSlices, for
//! tests of Kubernetes discovery (no API server can run here): list
//! (`GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices?labelSelector=...`,
//! an `EndpointSliceList` with a `resourceVersion`) and watch (`...&watch=true&
//! resourceVersion=N`, newline-delimited `WatchEvent`s after N, kept open). Tests can
//! drop every open watch, answer the next watch with `410 Gone` (an `ERROR` event
//! carrying a `Status` with code 410, as the API server does), and change slices
//! without a watch event (seen only by a new list).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Cluster {
    /// By (namespace, name).
    slices: BTreeMap<(String, String), Value>,
    version: u64,
    /// Changes made in view of watchers: (resourceVersion, namespace, watch event).
    history: Vec<(u64, String, Value)>,
    /// How the next watches are answered: `true` = 410 Gone.
    gone_next: VecDeque<bool>,
}

#[derive(Default)]
pub struct FakeKubernetes {
    cluster: Mutex<Cluster>,
    changed: tokio::sync::Notify,
    drops: tokio::sync::watch::Sender<u64>,
    lists: AtomicUsize,
    watches: AtomicUsize,
}

/// An EndpointSlice of `service` in `namespace` with `pods` (address, ready) on `port`
/// (named `grpc`).
pub fn endpoint_slice(
    namespace: &str,
    service: &str,
    name: &str,
    pods: &[(&str, bool)],
    port: u16,
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": pods.iter().map(|(ip, ready)| json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
    })
}

impl FakeKubernetes {
    /// Starts the server on 127.0.0.1 (on the current tokio runtime); returns its URL.
    pub async fn start(self: &Arc<Self>) -> String {
        let app = axum::Router::new()
            .route(
                "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                axum::routing::get(endpointslices),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}")
    }

    /// Creates or replaces a slice; `watched` = false changes it without a watch event
    /// (as if it happened while no watch was open: only a new list shows it).
    pub fn put(&self, slice: Value, watched: bool) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.version += 1;
        let version = cluster.version;
        let mut slice = slice;
        slice["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = (
            slice["metadata"]["namespace"].as_str().unwrap().to_string(),
            slice["metadata"]["name"].as_str().unwrap().to_string(),
        );
        let kind = if cluster.slices.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        cluster.slices.insert(key.clone(), slice.clone());
        if watched {
            cluster
                .history
                .push((version, key.0, json!({"type": kind, "object": slice})));
        }
        drop(cluster);
        self.changed.notify_waiters();
    }

    /// Ends every open watch, as a dropped connection does.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// The next watch request is answered with 410 Gone.
    pub fn answer_next_watch_gone(&self) {
        self.cluster.lock().unwrap().gone_next.push_back(true);
    }

    /// List requests served so far.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    /// Watch requests served so far.
    pub fn watches(&self) -> usize {
        self.watches.load(Ordering::SeqCst)
    }
}

fn selected(slice: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => slice["metadata"]["labels"][key] == value,
        None => false,
    })
}

async fn endpointslices(
    State(api): State<Arc<FakeKubernetes>>,
    Path(namespace): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let selector = params.get("labelSelector").cloned();
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if !watching {
        api.lists.fetch_add(1, Ordering::SeqCst);
        let cluster = api.cluster.lock().unwrap();
        let items: Vec<Value> = cluster
            .slices
            .iter()
            .filter(|((ns, _), slice)| *ns == namespace && selected(slice, selector.as_ref()))
            .map(|(_, slice)| slice.clone())
            .collect();
        return axum::Json(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": cluster.version.to_string()},
            "items": items,
        }))
        .into_response();
    }
    api.watches.fetch_add(1, Ordering::SeqCst);
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let gone = api.cluster.lock().unwrap().gone_next.pop_front() == Some(true);
    let (lines, body) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    let api = api.clone();
    tokio::spawn(async move {
        if gone {
            let status = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {since}"),
            }});
            let _ = lines.send(Ok(format!("{status}\n"))).await;
            return;
        }
        let mut drops = api.drops.subscribe();
        drops.borrow_and_update();
        let mut sent = since;
        loop {
            let changed = api.changed.notified();
            let events: Vec<(u64, Value)> = api
                .cluster
                .lock()
                .unwrap()
                .history
                .iter()
                .filter(|(version, ns, event)| {
                    *version > sent
                        && *ns == namespace
                        && selected(&event["object"], selector.as_ref())
                })
                .map(|(version, _, event)| (*version, event.clone()))
                .collect();
            for (version, event) in events {
                if lines.send(Ok(format!("{event}\n"))).await.is_err() {
                    return;
                }
                sent = version;
            }
            tokio::select! {
                _ = changed => {}
                _ = drops.changed() => return, // the connection is dropped
            }
        }
    });
    let stream = futures_lite_unfold(body);
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

/// The lines of a watch as a body stream.
fn futures_lite_unfold(
    body: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|line| (line, body))
    })
}

/// A kubeconfig file naming `url` (no TLS, a dummy token) with `namespace` as the
/// context's namespace, for processes started with `KUBECONFIG` pointing at it.
pub fn kubeconfig(url: &str, namespace: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user:\n    token: test\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    path
}
