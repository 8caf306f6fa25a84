//! kill -9 of the ioc worker midway through hunting a large synthetic EVTX, in
//! multi-process mode (cases, ingest and ioc as separate processes over a real
//! nats-server and PostgreSQL): a new ioc process picks the file up again once the dead
//! worker's lease expires, and the file ends with exactly the matches an in-process hunt
//! of the same events finds — none lost, none twice.

use casescope_e2e::{Server, stderr, stdout, wait_for_log, wait_until_processed};
use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use casescope_ioc::{Hunter, Indicator, IocType, canonicalize};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

const LEASE_TTL_SECS: u64 = 4;
const RECONCILE_SECS: u64 = 2;
/// Values the synthetic events hold often (crates/synth profiles).
const IOCS: &[(IocType, &str)] = &[
    (IocType::Cidr, "10.0.0.0/8"),
    (IocType::ProcessName, "svchost.exe"),
    (IocType::UserName, "svc_backup"),
    (IocType::Domain, "corp.example.com"),
];

fn expected_matches(path: &std::path::Path) -> u64 {
    let list: Vec<Indicator> = IOCS
        .iter()
        .map(|(kind, value)| Indicator {
            ioc_type: *kind,
            value: canonicalize(*kind, value).unwrap(),
        })
        .collect();
    let hunter = Hunter::new(&list);
    let context = Context {
        case_id: "x".into(),
        file_id: "x".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: false,
        limits: Limits::default(),
    };
    let mut total = 0u64;
    parse_file(path, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            let mut fields: Vec<(&str, &str)> = event
                .fields
                .iter()
                .filter_map(|(n, v)| v.as_str().map(|t| (n.as_str(), t)))
                .collect();
            if let Some(computer) = event.computer.as_deref()
                && !event.fields.contains_key("Computer")
            {
                fields.push(("Computer", computer));
            }
            let mut hits = Vec::new();
            hunter.hunt(&fields, &mut hits);
            total += hits.len() as u64;
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    total
}

#[test]
fn an_ioc_worker_killed_mid_hunt_leaves_exactly_every_match() {
    let events: u64 = std::env::var("CASESCOPE_TEST_KILL_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let [cases_db, ingest_db, ioc_db] =
        [(); 3].map(|_| runtime.block_on(casescope_testkit::postgres_url()));
    let namespace = format!("killioc{}", uuid::Uuid::new_v4().simple());
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("big.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 7);
    let expected = expected_matches(&evidence);
    assert!(expected > events / 4, "the IOCs match often: {expected}");

    let env_values = [
        ("CASESCOPE_LEASE_TTL_SECS", LEASE_TTL_SECS.to_string()),
        (
            "CASESCOPE_RECONCILE_PERIOD_SECS",
            RECONCILE_SECS.to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env_values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    let cases_addr = format!("cases={}", cases.address);
    let ingest_data = work.path().join("ingest-data");
    let ingest = casescope_e2e::start_service(
        "ingest",
        &nats,
        &ingest_db,
        &namespace,
        &[
            "--service-addr",
            &cases_addr,
            "--data-dir",
            ingest_data.to_str().unwrap(),
        ],
        &env,
    );
    let ingest_addr = format!("ingest={}", ingest.address);
    let ioc_args = [
        "--service",
        "ioc",
        "--nats-url",
        &nats,
        "--database-url",
        &ioc_db,
        "--nats-namespace",
        &namespace,
        "--service-addr",
        &ingest_addr,
    ];
    let mut ioc = Server::start(&ioc_args, &env);

    let created = cases.cli(&["case", "create", "kill -9 ioc"]);
    let case = stdout(&created).trim().to_string();
    let list = work.path().join("iocs.csv");
    let mut csv = String::from("type,value\n");
    for (kind, value) in IOCS {
        csv.push_str(&format!("{kind},{value}\n"));
    }
    std::fs::write(&list, csv).unwrap();
    let imported = ioc.cli(&["ioc", "import", &case, list.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let upload = ingest.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]);
    assert!(upload.status.success(), "{}", stderr(&upload));
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    wait_until_processed(&cases, &case, &file_id, Duration::from_secs(900), &ingest);

    // Kill as soon as the hunt runs.
    assert!(
        wait_for_log(&ioc, "ioc hunt started", 1, Duration::from_secs(120)),
        "the hunt did not start:\n{}",
        ioc.log_text()
    );
    ioc.child.kill().unwrap(); // SIGKILL
    ioc.child.wait().unwrap();
    assert!(
        !ioc.log_text().contains("ioc hunt finished"),
        "the hunt finished before the kill; raise CASESCOPE_TEST_KILL_EVENTS"
    );

    let restarted_at = Instant::now();
    let restarted = Server::start(&ioc_args, &env);
    let bound = Duration::from_secs(LEASE_TTL_SECS + RECONCILE_SECS + 10);
    assert!(
        wait_for_log(&restarted, "ioc hunt started", 1, bound),
        "the file was not hunted again within lease TTL + reconcile period (+10 s start-up slack):\n{}",
        restarted.log_text()
    );
    eprintln!(
        "re-hunt started {:.1?} after the restart",
        restarted_at.elapsed()
    );
    assert!(
        wait_for_log(&restarted, "ioc hunt finished", 1, Duration::from_secs(600)),
        "the re-hunt did not finish:\n{}",
        restarted.log_text()
    );
    let counts = restarted.cli(&["ioc", "matches", &case, "--counts", "--json"]);
    assert!(counts.status.success(), "{}", stderr(&counts));
    let counts: serde_json::Value = serde_json::from_str(&stdout(&counts)).unwrap();
    assert_eq!(
        counts["total"], expected,
        "exactly every match, once: {counts}"
    );
    drop(ioc);
}
