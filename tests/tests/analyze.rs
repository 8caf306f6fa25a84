//! `casescope analyze` as a user runs it: one-shot detection over files with no server,
//! its output formats, and its answer agrees with evaluating the same events directly.

use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use casescope_sigma::{EventRef, LogsourceMapping, RuleSet};
use std::ops::ControlFlow;
use std::process::Command;

fn synthetic(dir: &std::path::Path, events: u64) -> std::path::PathBuf {
    let path = dir.join("synthetic.evtx");
    let status = Command::new(casescope_e2e::casescope_binary())
        .args(["synth", "evtx", "--events", &events.to_string(), "--out"])
        .arg(&path)
        .status()
        .expect("run casescope synth");
    assert!(status.success());
    path
}

#[test]
fn analyze_prints_the_detections_the_engine_finds_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = synthetic(dir.path(), 3000);
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();

    let output = Command::new(casescope_e2e::casescope_binary())
        .arg("analyze")
        .arg(&evidence)
        .arg("--json")
        .output()
        .expect("run casescope analyze");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
        .collect();

    // The same events evaluated in-process with the built-in pack.
    let rules = RuleSet::built_in(&LogsourceMapping::built_in());
    let context = Context {
        case_id: "x".into(),
        file_id: "x".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits::default(),
    };
    let mut expected = 0;
    parse_file(&evidence, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            expected += rules
                .evaluate(&EventRef {
                    channel: event.channel.as_deref(),
                    event_code: event.event_code,
                    fields: (&event.fields).into(),
                })
                .len();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(expected > 0, "the synthetic events include suspicious ones");
    assert_eq!(rows.len(), expected);
    for row in &rows {
        for key in [
            "timestamp",
            "level",
            "rule_title",
            "rule_id",
            "computer",
            "channel",
            "event_id",
            "record_id",
            "file",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "the timeline is in time order"
    );

    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(before, after, "analyze writes nothing");

    let csv = Command::new(casescope_e2e::casescope_binary())
        .arg("analyze")
        .arg(&evidence)
        .args(["--csv", "--min-level", "high"])
        .output()
        .unwrap();
    assert!(csv.status.success());
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(text.starts_with(
        "timestamp,level,rule_title,rule_id,computer,channel,event_id,record_id,file"
    ));
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.contains(",high,") || l.contains(",critical,")),
        "{text}"
    );
}

#[test]
fn analyze_explains_bad_arguments() {
    let output = Command::new(casescope_e2e::casescope_binary())
        .args([
            "analyze",
            "/nonexistent/evidence.evtx",
            "--rules",
            "/nonexistent/rules",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/rules"), "{stderr}");
    let output = Command::new(casescope_e2e::casescope_binary())
        .args(["analyze", ".", "--min-level", "severe"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("informational, low, medium, high, critical")
    );
}
