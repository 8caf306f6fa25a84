//! An export with no cap, at scale: 1,000,000 events ingested in all-in-one mode, the
//! server restarted on the same data (a clean memory baseline), then the whole case
//! exported as JSON lines through the CLI while the server's memory is sampled every
//! 50 ms. Asserts: every event exactly once (row count, and a checksum over the event
//! ids against the ids computed from the evidence itself), in time order, and the
//! server's anonymous resident memory (heap: what the export allocates) stays at or
//! under 256 MiB throughout. The index's file pages the export reads are mapped too
//! (`RssFile`, reclaimable page cache); the test prints them with the peak total RSS.
//!
//! Then the report of the same case, the old system's memory failure: at least 200,000
//! of the events are tagged (by query, as a job), the server is restarted again, and a
//! report in HTML, JSON and PDF is built while the server's memory is sampled: its anonymous
//! RSS grows by at most 256 MiB over the fresh process's, and the JSON report holds
//! every tagged event exactly once.

use casescope_e2e::{Server, json, stderr, stdout};
use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use std::io::BufRead;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EVENTS: u64 = 1_000_000;
const LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// A kB figure from /proc/<pid>/status.
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Order-independent checksum of a set of event ids (sum of their first 64 bits and
/// the XOR of their last 64 bits).
#[derive(Default, PartialEq, Eq, Debug)]
struct Checksum(u64, u64, u64);

impl Checksum {
    fn add(&mut self, id: &str) {
        let high = u64::from_str_radix(&id[..16], 16).unwrap();
        let low = u64::from_str_radix(&id[16..32], 16).unwrap();
        self.0 = self.0.wrapping_add(high);
        self.1 ^= low;
        self.2 += 1;
    }
}

#[test]
fn a_million_events_export_and_report_in_bounded_memory() {
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("million.evtx");
    casescope_e2e::synth_evtx(&evidence, EVENTS, 5);
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let server = Server::start(&["--data-dir", &data_arg], &[]);
    let case = stdout(&server.cli(&["case", "create", "million"]))
        .trim()
        .to_string();
    let uploaded = json(server.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]));
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let sha256 = uploaded[0]["sha256"].as_str().unwrap().to_string();
    let record = casescope_e2e::wait_until_processed(
        &server,
        &case,
        &file_id,
        Duration::from_secs(1200),
        &server,
    );
    assert_eq!(record["events_indexed"], EVENTS, "{record}");

    // The ids the evidence itself gives (event id = hash(case, sha256, locator)).
    let mut expected = Checksum::default();
    let context = Context {
        case_id: case.clone(),
        file_id: file_id.clone(),
        evidence_sha256: sha256,
        timestamp_field: None,
        keep_raw: false,
        limits: Limits::default(),
    };
    parse_file(&evidence, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            expected.add(&event.event_id);
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(expected.2, EVENTS);

    // A fresh process on the same data: the export's memory is measured alone.
    drop(server);
    let server = Server::start(&["--data-dir", &data_arg], &[]);
    let pid = server.child.id();
    let done = Arc::new(AtomicBool::new(false));
    let peak_anon = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak_anon) = (done.clone(), peak_anon.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_anon.fetch_max(status_kb(pid, "RssAnon"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let output = work.path().join("million.jsonl");
    let started = Instant::now();
    let export = server.cli(&[
        "export",
        &case,
        "--format",
        "jsonl",
        "--output",
        output.to_str().unwrap(),
    ]);
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(export.status.success(), "{}", stderr(&export));

    let mut found = Checksum::default();
    let mut last_time = String::new();
    let file = std::io::BufReader::new(std::fs::File::open(&output).unwrap());
    for line in file.lines() {
        let row: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let time = row["datetime"].as_str().unwrap().to_string();
        assert!(time >= last_time, "time order: {last_time} then {time}");
        last_time = time;
        found.add(row["event_id"].as_str().unwrap());
    }
    assert_eq!(found.2, EVENTS, "row count");
    assert_eq!(found, expected, "every event exactly once");

    let peak_anon = peak_anon.load(Ordering::Relaxed) * 1024;
    let peak_total = status_kb(pid, "VmHWM") * 1024;
    let file_pages = status_kb(pid, "RssFile") * 1024;
    eprintln!(
        "exported {EVENTS} events in {elapsed:.1?} ({:.0} events/s); server peak anonymous \
         RSS {:.1} MiB, peak total RSS {:.1} MiB (index file pages mapped now: {:.1} MiB)",
        EVENTS as f64 / elapsed.as_secs_f64(),
        peak_anon as f64 / 1048576.0,
        peak_total as f64 / 1048576.0,
        file_pages as f64 / 1048576.0,
    );
    assert!(
        peak_anon <= LIMIT_BYTES,
        "peak anonymous RSS {peak_anon} bytes is above {LIMIT_BYTES}"
    );
    drop(server);
    report_of_a_large_case(work.path(), &data_arg, &case);
}

/// Samples a process's anonymous RSS (kB → bytes) every 50 ms until stopped.
struct Sampler {
    done: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (done, peak) = (done.clone(), peak.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kb(pid, "RssAnon"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Sampler { done, peak, thread }
    }

    fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed) * 1024
    }
}

fn report_of_a_large_case(work: &std::path::Path, data_arg: &str, case: &str) {
    const TAGGED_AT_LEAST: u64 = 200_000;
    let server = Server::start(&["--data-dir", data_arg], &[]);
    // Tag whole event codes, most frequent first, until at least 200,000 are tagged.
    let facets = json(server.cli(&["facets", case, "EventID", "--top", "100", "--json"]));
    let mut codes = Vec::new();
    let mut selected = 0;
    for value in facets["facets"][0]["values"].as_array().unwrap() {
        if selected >= TAGGED_AT_LEAST {
            break;
        }
        codes.push(format!(
            "EventID:{}",
            value["value"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value["value"].to_string())
        ));
        selected += value["count"].as_u64().unwrap();
    }
    assert!(selected >= TAGGED_AT_LEAST, "{facets}");
    let query = codes.join(" OR ");
    let tagging = server.cli(&["tag", case, "bulk", "--query", &query]);
    assert!(tagging.status.success(), "{}", stderr(&tagging));
    eprintln!(
        "tagged {selected} events ({query}): {}",
        stderr(&tagging).trim()
    );
    drop(server);

    // A fresh process: the report's memory is measured from its baseline.
    let server = Server::start(&["--data-dir", data_arg], &[]);
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.child.id();
    let baseline = status_kb(pid, "RssAnon") * 1024;
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let created = server.cli(&[
        "report", "create", case, "--format", "html", "--format", "json", "--format", "pdf",
        "--tag", "bulk",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    let report = loop {
        let report = json(server.cli(&["report", "get", case, &id, "--json"]));
        match report["status"].as_str().unwrap() {
            "ready" => break report,
            "failed" => panic!("report failed: {report}"),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let elapsed = started.elapsed();
    let peak = sampler.stop();
    let output = work.join("report.json");
    let saved = server.cli(&[
        "report",
        "download",
        case,
        &id,
        "--format",
        "json",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let document: serde_json::Value = serde_json::from_reader(std::io::BufReader::new(
        std::fs::File::open(&output).unwrap(),
    ))
    .unwrap();
    let events = document["timeline"]["events"].as_array().unwrap();
    assert_eq!(events.len() as u64, selected, "every tagged event");
    assert_eq!(document["timeline"]["selected"], selected);
    assert_eq!(document["timeline"]["left_out"], 0);
    let distinct: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(distinct.len() as u64, selected, "each once");
    assert_eq!(document["overview"]["events_indexed"], EVENTS);
    let growth = peak.saturating_sub(baseline);
    let sizes: Vec<String> = report["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {:.1} MiB",
                a["format"].as_str().unwrap(),
                a["size_bytes"].as_f64().unwrap() / 1048576.0
            )
        })
        .collect();
    eprintln!(
        "report of {selected} tagged events of {EVENTS} in {elapsed:.1?} ({}); server anonymous RSS \
         {:.1} MiB before, peak {:.1} MiB (growth {:.1} MiB)",
        sizes.join(", "),
        baseline as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        growth as f64 / 1048576.0,
    );
    assert!(
        growth <= LIMIT_BYTES,
        "the report grew the server's anonymous RSS by {growth} bytes, above {LIMIT_BYTES}"
    );
}
