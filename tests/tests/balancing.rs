//! Calls between services are balanced across every ready replica (Kubernetes
//! discovery), with the real binary: cases, two ingest replicas and detect as separate
//! processes over a real nats-server, PostgreSQL and OpenSearch, detect started with
//! `CASESCOPE_SERVICE_DISCOVERY=kubernetes` and a kubeconfig naming a local server that
//! speaks the Kubernetes API's wire format for EndpointSlices (no API server can run
//! here). Each ingest replica is one EndpointSlice of the `casescope-ingest` Service.
//!
//! 1. Both replicas ready: detect's event scans (one `ScanFileEvents` call per file)
//!    reach both replicas, as each replica's `/metrics` counts them.
//! 2. Replica B stops being ready (a watch event): the next files are scanned by
//!    replica A only; B's count does not move.

use casescope_e2e::{Server, json, metric, opensearch_or_skip, stderr, wait_until_detected};
use casescope_testkit::kubernetes::{FakeKubernetes, endpoint_slice, kubeconfig};
use std::sync::Arc;

const NAMESPACE: &str = "dfir";
const SERVICE: &str = "casescope-ingest";
const SCAN: &str = "/casescope.ingest.v1.IngestService/ScanFileEvents";

fn scans(replica: &Server) -> f64 {
    metric(
        replica,
        "casescope_rpc_requests_total",
        &[("rpc_path", SCAN)],
    )
    .unwrap_or(0.0)
}

/// Uploads `count` small synthetic files (seeds from `first_seed`) to `case` through
/// `through`, and waits until all `total` files of the case are evaluated.
fn upload_and_detect(
    cluster: (&Server, &Server, &Server),
    case: &str,
    first_seed: u64,
    count: u64,
    total: usize,
    work: &std::path::Path,
) {
    let (cases, through, detect) = cluster;
    let mut args = vec!["upload".to_string(), case.to_string()];
    for seed in first_seed..first_seed + count {
        let path = work.join(format!("balance-{seed}.evtx"));
        casescope_e2e::synth_evtx(&path, 300, seed);
        args.push(path.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let uploaded = through.cli(&args);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    wait_until_detected(cases, detect, case, total);
}

#[test]
fn detect_calls_reach_every_ready_ingest_replica() {
    let Some(opensearch) = opensearch_or_skip() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let [cases_db, ingest_db, detect_db] =
        [(); 3].map(|_| runtime.block_on(casescope_testkit::postgres_url()));
    let api = Arc::new(FakeKubernetes::default());
    let api_url = runtime.block_on(api.start());
    let work = tempfile::tempdir().unwrap();
    let (namespace, index) = casescope_e2e::fresh_names("bal");
    let env = casescope_e2e::opensearch_env(&opensearch, &index);
    let env = casescope_e2e::env_refs(&env);
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    let shared = work.path().join("shared-evidence");
    let cases_addr = format!("cases={}", cases.address);
    let ingest_extra = [
        "--service-addr",
        &cases_addr,
        "--data-dir",
        shared.to_str().unwrap(),
    ];
    let start_ingest = || {
        casescope_e2e::start_service("ingest", &nats, &ingest_db, &namespace, &ingest_extra, &env)
    };
    let replica_a = start_ingest();
    let replica_b = start_ingest();
    let slice_of = |name: &str, server: &Server, ready: bool| {
        endpoint_slice(
            NAMESPACE,
            SERVICE,
            name,
            &[("127.0.0.1", ready)],
            server.port(),
        )
    };
    api.put(slice_of("ingest-a", &replica_a, true), true);
    api.put(slice_of("ingest-b", &replica_b, true), true);

    // detect knows ingest only by its Service name: nothing resolves it but discovery.
    let config = kubeconfig(&api_url, NAMESPACE, work.path());
    let mut detect_env = env.clone();
    detect_env.push(("CASESCOPE_SERVICE_DISCOVERY", "kubernetes"));
    detect_env.push(("KUBECONFIG", config.to_str().unwrap()));
    let detect = casescope_e2e::start_service(
        "detect",
        &nats,
        &detect_db,
        &namespace,
        &["--service-addr", "ingest=http://casescope-ingest.dfir:7700"],
        &detect_env,
    );
    assert!(
        detect
            .log_text()
            .contains("calls balanced across the Service's ready pods"),
        "{}",
        detect.log_text()
    );
    let rule = work.path().join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("0f0e2a65-51c4-4a4e-9a9e-7f5d1b3c2a10"),
    )
    .unwrap();
    let imported = json(detect.cli(&["rules", "import", rule.to_str().unwrap(), "--json"]));
    assert_eq!(imported["loaded"], 1, "{imported}");
    let created = cases.cli(&["case", "create", "balancing"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case = casescope_e2e::stdout(&created).trim().to_string();

    // 1. Both ready: 16 files, one scan each, spread over both replicas.
    upload_and_detect((&cases, &replica_a, &detect), &case, 1, 16, 16, work.path());
    let (a, b) = (scans(&replica_a), scans(&replica_b));
    eprintln!("16 files, both replicas ready: replica A served {a} scans, replica B {b}");
    assert!(
        a >= 1.0 && b >= 1.0,
        "scans reached both replicas: A {a}, B {b}"
    );
    assert!(a + b >= 16.0, "one scan per file at least: A {a}, B {b}");

    // 2. B not ready: the next 8 files are scanned by A only.
    api.put(slice_of("ingest-b", &replica_b, false), true);
    std::thread::sleep(std::time::Duration::from_secs(1));
    upload_and_detect(
        (&cases, &replica_a, &detect),
        &case,
        101,
        8,
        24,
        work.path(),
    );
    eprintln!(
        "8 more files, B not ready: replica A {}, replica B {}",
        scans(&replica_a),
        scans(&replica_b)
    );
    assert_eq!(
        scans(&replica_b),
        b,
        "no call reached the replica that is not ready"
    );
    assert!(
        scans(&replica_a) >= a + 8.0,
        "replica A scanned the 8 new files: {} after {a}",
        scans(&replica_a)
    );
    assert!(api.lists() >= 1 && api.watches() >= 1);
    drop(runtime);
}
