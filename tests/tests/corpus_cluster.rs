//! The whole EVTX-ATTACK-SAMPLES corpus with SigmaHQ's Windows rules and a list of IOCs,
//! twice: on `casescope serve` (all-in-one: SQLite, tantivy, in-process bus) and on a
//! cluster of separate processes (cases, two ingest replicas sharing one evidence
//! directory, detect, ioc) over a real nats-server, PostgreSQL and OpenSearch. Both must
//! agree exactly: every file's counts (read, indexed, rejected, duplicates), the case's
//! search total, the set of detections and the set of IOC matches (the detect and ioc
//! stages both start from the ingest service's `file.indexed` facts).
//!
//! Detection ids are derived from the case's event ids (`H(case, evidence sha256,
//! record locator)`): the same evidence in two cases gives two sets of ids by design.
//! The detections are therefore compared by what identifies them apart from the case:
//! the evidence file's SHA-256, the rule and its content hash, the record, the event's
//! time, computer and channel, the number of events, and correlation.

use casescope_e2e::{Server, json, opensearch_or_skip, search_total, stderr, stdout};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn shared() -> Option<(PathBuf, PathBuf)> {
    let data = casescope_testkit::shared_data_dir()?;
    let corpus = data.join("evtx-attack-samples");
    let rules = data.join("sigma/rules/windows");
    (corpus.is_dir() && rules.is_dir()).then_some((corpus, rules))
}

/// What one deployment made of the corpus.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Per evidence SHA-256: (records read, indexed, rejected, duplicates skipped).
    counts: BTreeMap<String, (u64, u64, u64, u64)>,
    search_total: u64,
    detections: BTreeSet<String>,
    ioc_matches: BTreeSet<String>,
}

/// IOCs of many types with values found in the corpus (and one found nowhere).
const IOCS: &str = "type,value\n\
ip,10.0.2[.]17\n\
cidr,192.168.56.0/24\n\
sha256,EBE94E294D86C714BED13EF018E70F75C37F8D8259144C0C847637EDC0222ECB\n\
domain,afterburst[.]com\n\
user_name,insecurebank\\Administrator\n\
registry_key,HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\n\
command_line,-nop\n\
process_name,PsExec.exe\n\
named_pipe,\\\\.\\pipe\\svchost-MSEDGEWIN10-8116-stdin\n\
service_name,remotesvc\n\
other,mimikatz\n\
md5,00000000000000000000000000000000\n";

/// Imports the rules, uploads the corpus into a new case and waits until every file
/// is indexed and evaluated; what came out.
fn run(
    cases: &Server,
    ingest: &Server,
    detect: &Server,
    ioc: &Server,
    corpus: &Path,
    rules: &Path,
) -> Outcome {
    let imported = json(detect.cli(&["rules", "import", rules.to_str().unwrap(), "--json"]));
    assert!(imported["loaded"].as_u64().unwrap() > 2000, "{imported}");
    let created = cases.cli(&["case", "create", "corpus"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case = stdout(&created).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("iocs.csv");
    std::fs::write(&list, IOCS).unwrap();
    let imported = json(ioc.cli(&["ioc", "import", &case, list.to_str().unwrap(), "--json"]));
    assert_eq!(imported["created"], 12, "{imported}");
    let uploaded = ingest.cli(&["upload", &case, corpus.to_str().unwrap()]);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));

    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut settled_at = None;
    let files = loop {
        let files = json(cases.cli(&["files", &case, "--json"]));
        let files = files.as_array().unwrap().clone();
        let states = json(detect.cli(&["detect", "status", &case, "--json"]));
        let evaluated = states
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "done" || s["status"] == "failed")
            .count();
        let parsed = files
            .iter()
            .filter(|f| !matches!(f["status"].as_str(), Some("uploaded" | "parsing")))
            .count();
        let indexed = files
            .iter()
            .filter(|f| {
                f["format"] != "zip"
                    && (casescope_e2e::past_ingest(&f["status"])
                        || (f["status"] == "failed" && f["failed_stage"] != "ingest"))
            })
            .count();
        let ready = files
            .iter()
            .all(|f| matches!(f["status"].as_str(), Some("ready" | "failed")));
        let hunts = json(ioc.cli(&["ioc", "states", &case, "--json"]));
        let hunted = hunts["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "done" && s["hunted_version"] == hunts["case_version"])
            .count();
        let stages_done =
            !files.is_empty() && parsed == files.len() && evaluated == indexed && hunted == indexed;
        if stages_done && ready {
            break files;
        }
        if stages_done {
            // The status a file shows must follow its stages promptly.
            let settled = *settled_at.get_or_insert_with(Instant::now);
            let waiting: Vec<_> = files
                .iter()
                .filter(|f| !matches!(f["status"].as_str(), Some("ready" | "failed")))
                .map(|f| format!("{} {}", f["name"], f["status"]))
                .collect();
            assert!(
                settled.elapsed() < Duration::from_secs(120),
                "every stage is done but these files are not ready after 2 minutes: {waiting:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "not processed in 30 minutes: {parsed}/{} parsed, {evaluated}/{indexed} evaluated, {hunted}/{indexed} hunted",
            files.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut counts = BTreeMap::new();
    let mut sha_of = HashMap::new();
    for file in &files {
        let sha = file["sha256"].as_str().unwrap().to_string();
        sha_of.insert(file["file_id"].as_str().unwrap().to_string(), sha.clone());
        let n = |key: &str| file[key].as_u64().unwrap_or(0);
        counts.insert(
            sha,
            (
                n("records_read"),
                n("events_indexed"),
                n("records_rejected"),
                n("duplicates_skipped"),
            ),
        );
    }
    let listed = detect.cli(&["detections", &case, "--limit", "0", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let detections = stdout(&listed)
        .lines()
        .map(|line| {
            let d: serde_json::Value = serde_json::from_str(line).unwrap();
            let file = d["file_id"]
                .as_str()
                .and_then(|id| sha_of.get(id))
                .cloned()
                .unwrap_or_else(|| "case".to_string());
            format!(
                "{file} {} {} rec={} ts={} {} {} events={} corr={} {}",
                d["rule_id"],
                d["rule_content_sha256"],
                d["record_id"],
                d["event_timestamp"],
                d["computer"],
                d["channel"],
                d["event_ids"].as_array().map_or(0, Vec::len),
                d["is_correlation"],
                d["correlated_event_count"],
            )
        })
        .collect();
    let matches = json(ioc.cli(&["ioc", "matches", &case, "--limit", "0", "--json"]));
    let ioc_matches = matches
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let file = m["file_id"]
                .as_str()
                .and_then(|id| sha_of.get(id))
                .cloned()
                .unwrap_or_default();
            format!(
                "{file} {} {} {} {} {}",
                m["type"], m["ioc_value"], m["field"], m["matched_value"], m["time"]
            )
        })
        .collect();
    Outcome {
        counts,
        search_total: search_total(ingest, &case),
        detections,
        ioc_matches,
    }
}

#[test]
fn the_cluster_finds_what_the_all_in_one_server_finds_on_the_corpus() {
    let Some((corpus, rules)) = shared() else {
        eprintln!("skipped: ../shared/data (evtx-attack-samples, sigma rules) not present");
        return;
    };
    let Some(opensearch) = opensearch_or_skip() else {
        return;
    };
    let started = Instant::now();
    let all_in_one = {
        let server = Server::start(&[], &[("CASESCOPE_RECONCILE_PERIOD_SECS", "2")]);
        run(&server, &server, &server, &server, &corpus, &rules)
    };
    let all_in_one_took = started.elapsed();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let [cases_db, ingest_db, detect_db, ioc_db] =
        [(); 4].map(|_| runtime.block_on(casescope_testkit::postgres_url()));
    drop(runtime);
    let (namespace, index) = casescope_e2e::fresh_names("corpus");
    let mut env = casescope_e2e::opensearch_env(&opensearch, &index);
    // The cluster runs both downstream stages: a file is `ready` after both.
    env.push(("CASESCOPE_FILE_STAGES", "detect,ioc_hunt".into()));
    let env = casescope_e2e::env_refs(&env);
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    let work = tempfile::tempdir().unwrap();
    let shared_evidence = work.path().join("shared-evidence");
    let cases_addr = format!("cases={}", cases.address);
    let ingest_extra = [
        "--service-addr",
        &cases_addr,
        "--data-dir",
        shared_evidence.to_str().unwrap(),
    ];
    let replicas = [(); 2].map(|_| {
        casescope_e2e::start_service("ingest", &nats, &ingest_db, &namespace, &ingest_extra, &env)
    });
    let ingest_addr = format!("ingest={}", replicas[0].address);
    let detect = casescope_e2e::start_service(
        "detect",
        &nats,
        &detect_db,
        &namespace,
        &["--service-addr", &ingest_addr],
        &env,
    );
    let ioc = casescope_e2e::start_service(
        "ioc",
        &nats,
        &ioc_db,
        &namespace,
        &["--service-addr", &ingest_addr],
        &env,
    );
    let cluster = run(&cases, &replicas[0], &detect, &ioc, &corpus, &rules);
    let both_parsed = replicas
        .iter()
        .all(|replica| replica.log_text().contains("ingest run finished"));

    assert_eq!(all_in_one.counts.len(), cluster.counts.len());
    for (sha, counts) in &all_in_one.counts {
        assert_eq!(
            cluster.counts.get(sha),
            Some(counts),
            "counts of the file with SHA-256 {sha}"
        );
    }
    assert_eq!(all_in_one.search_total, cluster.search_total);
    let missing: Vec<_> = all_in_one
        .detections
        .difference(&cluster.detections)
        .collect();
    let extra: Vec<_> = cluster
        .detections
        .difference(&all_in_one.detections)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "detections differ: {} only all-in-one, {} only cluster; first: {:?} / {:?}",
        missing.len(),
        extra.len(),
        missing.first(),
        extra.first()
    );
    assert!(!all_in_one.detections.is_empty());
    assert_eq!(
        all_in_one.ioc_matches, cluster.ioc_matches,
        "IOC matches differ between the deployments"
    );
    assert!(
        all_in_one.ioc_matches.len() > 50,
        "{}",
        all_in_one.ioc_matches.len()
    );
    eprintln!(
        "corpus: {} files, {} events, {} detections, {} IOC matches, the same in both \
         deployments (all-in-one {:?}, cluster {:?}; both ingest replicas parsed files: {both_parsed})",
        all_in_one.counts.len(),
        all_in_one.search_total,
        all_in_one.detections.len(),
        all_in_one.ioc_matches.len(),
        all_in_one_took,
        started.elapsed() - all_in_one_took
    );
}
