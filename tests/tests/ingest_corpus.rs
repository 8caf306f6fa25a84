//! The shared EVTX-ATTACK-SAMPLES corpus (277 files) uploaded into one case in
//! all-in-one mode: every file's indexed + rejected equals what the evtx crate reads
//! from it directly; searching works by channel, event code and a flattened field;
//! uploading again adds nothing.

use casescope_e2e::{Server, stderr, stdout};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus() -> Option<PathBuf> {
    let dir = casescope_testkit::shared_data_dir()?.join("evtx-attack-samples");
    dir.is_dir().then_some(dir)
}

fn evtx_files(root: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "evtx") {
                files.push(path);
            }
        }
    }
    files
}

fn files_json(server: &Server, case: &str) -> Vec<serde_json::Value> {
    let output = server.cli(&["files", case, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str::<serde_json::Value>(&stdout(&output))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn wait_until_processed(server: &Server, case: &str, expected: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let files = files_json(server, case);
        let busy = files
            .iter()
            .filter(|f| matches!(f["status"].as_str(), Some("uploaded" | "parsing")))
            .count();
        if files.len() == expected && busy == 0 {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{busy} of {} files still processing after 300 s\n{}",
            files.len(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_record_of_the_corpus_is_indexed_exactly_once() {
    let Some(root) = corpus() else {
        eprintln!("skipped: ../shared/data/evtx-attack-samples not present");
        return;
    };
    let files = evtx_files(&root);
    assert_eq!(files.len(), 277);
    // What the evtx crate reads from each file directly, by content hash.
    let mut direct: HashMap<String, (u64, String)> = HashMap::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let count = evtx::EvtxParser::from_path(path)
            .unwrap()
            .records_json_value()
            .count() as u64;
        direct.insert(sha, (count, path.display().to_string()));
    }
    let distinct_total: u64 = direct.values().map(|(n, _)| n).sum();

    let server = Server::start(&[], &[]);
    let created = server.cli(&["case", "create", "EVTX-ATTACK-SAMPLES"]);
    let case = stdout(&created).trim().to_string();
    let upload = server.cli(&["upload", &case, root.to_str().unwrap()]);
    assert!(upload.status.success(), "{}", stderr(&upload));

    // Identical files in the corpus are one file of the case.
    let listed = wait_until_processed(&server, &case, direct.len());
    let mut total_indexed = 0;
    for file in &listed {
        let sha = file["sha256"].as_str().unwrap();
        let (expected, path) = &direct[sha];
        let read = file["records_read"].as_u64().unwrap();
        let indexed = file["events_indexed"].as_u64().unwrap();
        let rejected = file["records_rejected"].as_u64().unwrap();
        assert!(
            casescope_e2e::past_ingest(&file["status"]),
            "{path}: {file}"
        );
        assert_eq!(read, *expected, "{path}: records read vs the evtx crate");
        assert_eq!(indexed + rejected, *expected, "{path}: indexed + rejected");
        total_indexed += indexed;
    }
    assert_eq!(
        total_indexed, distinct_total,
        "the case total matches the corpus"
    );

    let count = |query: &str| -> u64 {
        let output = server.cli(&["search", &case, query, "--limit", "5", "--json"]);
        assert!(output.status.success(), "{query}: {}", stderr(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        json["total_hits"].as_u64().unwrap()
    };
    let security = count("Channel:Security");
    let logons = count("EventID:4624");
    let sysmon_lsass = count(r"TargetImage:*\\lsass.exe");
    assert!(security > 100, "Channel:Security found {security}");
    assert!(logons > 10, "EventID:4624 found {logons}");
    assert!(
        sysmon_lsass > 10,
        "TargetImage:*lsass.exe found {sysmon_lsass}"
    );
    assert_eq!(count("EventID:4624 AND NOT Channel:Security"), 0);

    // Uploading the same evidence again adds zero events.
    let again = server.cli(&["upload", &case, root.to_str().unwrap(), "--json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let results: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["already_present"] == true)
    );
    assert_eq!(count(""), distinct_total);
    report_of_the_corpus(&server, &case, distinct_total);
}

/// The case's report in every format once every file is ready: LSASS access tagged,
/// two events starred, one commented; the PDF's pages rendered to PNG (with
/// CASESCOPE_SCREENSHOTS=DIR, its first page is kept as DIR/report-pdf.png).
fn report_of_the_corpus(server: &Server, case: &str, events: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while files_json(server, case)
        .iter()
        .any(|f| f["status"] != "ready" && f["status"] != "failed")
    {
        assert!(std::time::Instant::now() < deadline, "files not ready");
        std::thread::sleep(Duration::from_millis(500));
    }
    let tagged = server.cli(&[
        "tag",
        case,
        "credential access",
        "--query",
        r"TargetImage:*\\lsass.exe",
    ]);
    assert!(tagged.status.success(), "{}", stderr(&tagged));
    let page: serde_json::Value = serde_json::from_str(&stdout(&server.cli(&[
        "timeline",
        case,
        "EventID:4624",
        "--limit",
        "2",
        "--json",
    ])))
    .unwrap();
    let logons: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let mut star = vec!["star", case];
    for id in &logons {
        star.extend(["--event", id]);
    }
    assert!(server.cli(&star).status.success());
    let comment = server.cli(&[
        "comment",
        case,
        logons[0],
        "First logon of the intrusion window; check the source workstation.",
    ]);
    assert!(comment.status.success(), "{}", stderr(&comment));

    let created = server.cli(&[
        "report",
        "create",
        case,
        "--format",
        "html",
        "--format",
        "md",
        "--format",
        "json",
        "--format",
        "pdf",
        "--title",
        "EVTX-ATTACK-SAMPLES — case report",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    let report = loop {
        let report: serde_json::Value = serde_json::from_str(&stdout(
            &server.cli(&["report", "get", case, &id, "--json"]),
        ))
        .unwrap();
        match report["status"].as_str().unwrap() {
            "ready" => break report,
            "failed" => panic!("report failed: {report}"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    let work = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for format in ["html", "md", "json", "pdf"] {
        let path = work.path().join(format!("report.{format}"));
        let saved = server.cli(&[
            "report",
            "download",
            case,
            &id,
            "--format",
            format,
            "--output",
            path.to_str().unwrap(),
        ]);
        assert!(saved.status.success(), "{}", stderr(&saved));
        sizes.push(format!(
            "{format} {} bytes",
            std::fs::metadata(&path).unwrap().len()
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["overview"]["events_indexed"], events);
    assert!(
        json["detections_by_rule"]["total"].as_u64().unwrap() > 0,
        "the corpus has detections"
    );
    let shown = json["timeline"]["events"].as_array().unwrap().len() as u64;
    assert!(shown > 10, "LSASS access and the starred logons: {shown}");
    let pdf = work.path().join("report.pdf");
    let pages = casescope_e2e::pdf_pages(&pdf, &work.path().join("pages"));
    assert!(pages.len() > 1, "a report of the corpus spans pages");
    assert!(
        pages.iter().all(|ink| *ink > 0.002),
        "no blank page: {pages:?}"
    );
    let text = casescope_e2e::pdf_text(&pdf);
    assert!(text.contains("Detections by rule"), "{text}");
    eprintln!(
        "report of the corpus ({} artefacts: {}); PDF {} pages",
        report["artefacts"].as_array().unwrap().len(),
        sizes.join(", "),
        pages.len()
    );
    if let Some(dir) = std::env::var_os("CASESCOPE_SCREENSHOTS") {
        let status = std::process::Command::new("pdftoppm")
            .args(["-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile"])
            .arg(&pdf)
            .arg(std::path::Path::new(&dir).join("report-pdf"))
            .status()
            .unwrap();
        assert!(status.success());
    }
}
