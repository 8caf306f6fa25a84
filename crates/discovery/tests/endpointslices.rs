//! Balancing across a Service's ready pods, against a local server that speaks the
//! Kubernetes API's wire format for EndpointSlices (no API server can run here): a list
//! (`EndpointSliceList` with a `resourceVersion`) and a watch (newline-delimited
//! `WatchEvent`s from that version on), a watch the server drops, and a watch answered
//! with `410 Gone` (an `ERROR` event carrying a `Status` with code 410), after which the
//! client must list again. The pods are two real gRPC servers (gRPC health) on
//! 127.0.0.1 and 127.0.0.2, on the same port, telling apart by their answer.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use casescope_discovery::{Target, balanced_channel};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const NAMESPACE: &str = "dfir";
const SERVICE: &str = "casescope-detect";

/// The fake API server's state.
#[derive(Default)]
struct Cluster {
    slices: BTreeMap<String, Value>,
    version: u64,
    /// Every change made in view of watchers: (resourceVersion, watch event).
    history: Vec<(u64, Value)>,
    /// How the next watches are answered: `true` = 410 Gone.
    gone_next: VecDeque<bool>,
}

#[derive(Default)]
struct FakeApi {
    cluster: Mutex<Cluster>,
    changed: tokio::sync::Notify,
    /// Bumped to end every open watch (a dropped connection).
    drops: tokio::sync::watch::Sender<u64>,
    lists: AtomicUsize,
    watches: AtomicUsize,
}

impl FakeApi {
    /// Creates or replaces a slice; `watched` = false changes it without a watch event
    /// (as if it happened while no watch was open: only a new list shows it).
    fn put(&self, slice: Value, watched: bool) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.version += 1;
        let version = cluster.version;
        let mut slice = slice;
        slice["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = slice["metadata"]["name"].as_str().unwrap().to_string();
        let kind = if cluster.slices.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        cluster.slices.insert(name, slice.clone());
        if watched {
            cluster
                .history
                .push((version, json!({"type": kind, "object": slice})));
        }
        drop(cluster);
        self.changed.notify_waiters();
    }

    fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }
}

fn slice(name: &str, pods: &[(&str, bool)], port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": SERVICE},
        },
        "addressType": "IPv4",
        "endpoints": pods.iter().map(|(ip, ready)| json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
    })
}

async fn endpointslices(
    State(api): State<Arc<FakeApi>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(
        params.get("labelSelector").map(String::as_str),
        Some("kubernetes.io/service-name=casescope-detect"),
        "the client selects the Service's slices"
    );
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if !watching {
        api.lists.fetch_add(1, Ordering::SeqCst);
        let cluster = api.cluster.lock().unwrap();
        return axum::Json(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": cluster.version.to_string()},
            "items": cluster.slices.values().cloned().collect::<Vec<_>>(),
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
                .filter(|(version, _)| *version > sent)
                .cloned()
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
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|line| (line, body))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

async fn start_fake_api(api: Arc<FakeApi>) -> String {
    let app = axum::Router::new()
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/dfir/endpointslices",
            axum::routing::get(endpointslices),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// A pod: a gRPC health server on `ip:port` answering SERVING (pod A) or NOT_SERVING
/// (pod B) for the service name "who", so that each answer says which pod gave it.
async fn start_pod(ip: &str, port: u16, serving: bool) -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("who", status).await;
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    address
}

/// Which pod answered each of `n` calls: "a" or "b".
async fn who(client: &mut HealthClient<tonic::transport::Channel>, n: usize) -> Vec<&'static str> {
    let mut answers = Vec::new();
    for _ in 0..n {
        let request = HealthCheckRequest {
            service: "who".into(),
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), client.check(request))
            .await
            .expect("a call answered within 5 s")
            .expect("a pod answered");
        answers.push(if answer.into_inner().status == 1 {
            "a"
        } else {
            "b"
        });
    }
    answers
}

/// Waits (bounded) until `n` calls in a row all go to the pods of `expected`, and each
/// of those pods answered at least one of them.
async fn wait_for_pods(
    client: &mut HealthClient<tonic::transport::Channel>,
    expected: &[&str],
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answers = who(client, 40).await;
        let only_expected = answers.iter().all(|pod| expected.contains(pod));
        let all_seen = expected.iter().all(|pod| answers.contains(pod));
        if only_expected && all_seen {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: calls still went to {answers:?}, expected only and all of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_follow_the_ready_pods_through_watch_drops_and_410_gone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pod_a = start_pod("127.0.0.1", 0, true).await;
    let port = pod_a.port();
    let pod_b = start_pod("127.0.0.2", port, false).await;
    assert_eq!(pod_b.port(), port);

    let api = Arc::new(FakeApi::default());
    api.put(
        slice(
            "detect-1",
            &[("127.0.0.1", true), ("127.0.0.2", false)],
            port,
        ),
        true,
    );
    let url = start_fake_api(api.clone()).await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let target = Target {
        namespace: NAMESPACE.into(),
        service: SERVICE.into(),
        port_name: "grpc".into(),
    };
    let (channel, watcher) = balanced_channel(client, target, |url| {
        Ok(tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2)))
    });
    let mut health = HealthClient::new(channel);

    // 1. Only pod A is ready: every call goes to it.
    wait_for_pods(&mut health, &["a"], "one ready pod").await;
    assert_eq!(api.lists.load(Ordering::SeqCst), 1);

    // 2. Pod B becomes ready (a watch event): calls are spread over both.
    api.put(
        slice(
            "detect-1",
            &[("127.0.0.1", true), ("127.0.0.2", true)],
            port,
        ),
        true,
    );
    wait_for_pods(&mut health, &["a", "b"], "two ready pods").await;

    // 3. The watch connection drops; the client watches again from where it was (no new
    //    list), and sees pod A stop being ready.
    let watches = api.watches.load(Ordering::SeqCst);
    api.drop_watches();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.watches.load(Ordering::SeqCst) == watches {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new watch after a drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.put(
        slice(
            "detect-1",
            &[("127.0.0.1", false), ("127.0.0.2", true)],
            port,
        ),
        true,
    );
    wait_for_pods(&mut health, &["b"], "pod A not ready").await;
    assert_eq!(
        api.lists.load(Ordering::SeqCst),
        1,
        "a dropped watch is resumed, not re-listed"
    );

    // 4. While no watch is open, pod A comes back and pod B goes away; the next watch is
    //    answered 410 Gone: the client lists again and follows the list.
    api.cluster.lock().unwrap().gone_next.push_back(true);
    api.put(slice("detect-1", &[("127.0.0.1", true)], port), false);
    api.drop_watches();
    wait_for_pods(&mut health, &["a"], "after 410 Gone and a new list").await;
    assert_eq!(
        api.lists.load(Ordering::SeqCst),
        2,
        "410 Gone makes the client list again"
    );

    watcher.abort();
}
