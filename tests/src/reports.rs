//! Report helpers of the end-to-end suites: create a report, wait for it, download an
//! artefact, and make a case of synthetic events with some of them annotated.

use crate::deployment::Deployment;
use crate::{Server, json, stderr, stdout};
use std::path::Path;
use std::time::{Duration, Instant};

/// Queues a report of `case` (`extra`: the `report create` options); returns its id.
pub fn create(api: &Server, case: &str, extra: &[&str]) -> String {
    let mut args = vec!["report", "create", case];
    args.extend_from_slice(extra);
    let created = api.cli(&args);
    assert!(created.status.success(), "{}", stderr(&created));
    stdout(&created).trim().to_string()
}

/// Waits until the report is ready (a failed one fails the test); its JSON description.
pub fn wait_ready(api: &Server, case: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let report = json(api.cli(&["report", "get", case, id, "--json"]));
        match report["status"].as_str().unwrap() {
            "ready" => return report,
            "failed" => panic!("report failed: {report}"),
            _ if Instant::now() > deadline => panic!("report not ready: {report}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Saves an artefact with `report download` under `work`; its text.
pub fn download(api: &Server, case: &str, id: &str, format: &str, work: &Path) -> String {
    let path = work.join(format!("{id}.{format}"));
    let saved = api.cli(&[
        "report",
        "download",
        case,
        id,
        "--format",
        format,
        "--output",
        path.to_str().unwrap(),
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    std::fs::read_to_string(&path).unwrap()
}

/// A case named `name` holding one synthetic EVTX of `events` events, processed.
pub fn case_with_events(
    deployment: &Deployment,
    work: &Path,
    name: &str,
    events: u64,
    seed: u64,
) -> String {
    let api = deployment.api();
    let evidence = work.join(format!("{seed}.evtx"));
    crate::synth_evtx(&evidence, events, seed);
    let case = stdout(&api.cli(&["case", "create", name]))
        .trim()
        .to_string();
    let uploaded = json(api.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]));
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    crate::wait_until_processed(
        api,
        &case,
        &file_id,
        Duration::from_secs(180),
        deployment.ingest(),
    );
    case
}

/// Runs `command` (e.g. `["tag", CASE, "suspicious"]` or `["star", CASE]`) on the first
/// `count` events of the case's timeline; their ids.
pub fn annotate_first(api: &Server, case: &str, count: usize, command: &[&str]) -> Vec<String> {
    let page = json(api.cli(&[
        "timeline",
        case,
        "",
        "--limit",
        &count.to_string(),
        "--json",
    ]));
    let ids: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let mut args: Vec<&str> = command.to_vec();
    for id in &ids {
        args.extend(["--event", id.as_str()]);
    }
    let done = api.cli(&args);
    assert!(done.status.success(), "{}", stderr(&done));
    ids
}
