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

/// `--logsource-mapping` replaces the built-in mapping, and its `[placeholders]` table
/// gives `expand` its values: without them the rule is refused by name, with them it
/// loads and fires on the events its values name.
#[test]
fn analyze_expands_placeholders_from_the_mapping_file() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = synthetic(dir.path(), 2000);
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("tools.yml"),
        "title: Admin tool from a listed place\n\
         id: 0b1c8d2e-5f6a-4b7c-9d8e-1f2a3b4c5d6e\n\
         logsource: {product: windows, category: process_creation}\n\
         detection:\n    tool:\n        Image|endswith|expand: '%tools%'\n    \
         condition: tool\nlevel: high\n",
    )
    .unwrap();
    let run = |mapping: Option<&std::path::Path>| {
        let mut command = Command::new(casescope_e2e::casescope_binary());
        command
            .arg("analyze")
            .arg(&evidence)
            .arg("--rules")
            .arg(&rules);
        command.args(["--json", "--show-refused"]);
        if let Some(mapping) = mapping {
            command.arg("--logsource-mapping").arg(mapping);
        }
        let output = command.output().expect("run casescope analyze");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = run(None);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("0 rules loaded, 1 refused") && stderr.contains("%tools%"),
        "{stderr}"
    );

    let mapping = dir.path().join("mapping.toml");
    let built_in = include_str!("../../crates/sigma/logsources.toml");
    std::fs::write(
        &mapping,
        format!("{built_in}\n[placeholders]\ntools = ['\\\\cmd.exe', '\\\\WHOAMI.exe']\n"),
    )
    .unwrap();
    let (stdout, stderr) = run(Some(&mapping));
    assert!(stderr.contains("1 rules loaded, 0 refused"), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object"))
        .collect();
    assert!(!rows.is_empty(), "{stderr}");
    assert!(
        rows.iter()
            .all(|row| row["rule_title"] == "Admin tool from a listed place")
    );
}

/// `analyze --iocs` hunts IOC files of every format, with or without rules: each match is
/// a timeline row of the hunter's finding in those events.
#[test]
fn analyze_hunts_iocs_from_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = synthetic(dir.path(), 3000);
    let csv = dir.path().join("iocs.csv");
    std::fs::write(
        &csv,
        "ioc_value,ioc_type\nsvchost.exe,filename\nnot-a-hash,sha256\n",
    )
    .unwrap();
    let stix = dir.path().join("feed.json");
    std::fs::write(
        &stix,
        r#"{"type":"bundle","id":"bundle--1","objects":[{"type":"indicator","id":"indicator--1","pattern":"[ipv4-addr:value = '10.0.0[.]5']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    let misp = dir.path().join("event.json");
    std::fs::write(
        &misp,
        r#"{"Event":{"info":"x","Attribute":[{"type":"domain","value":"corp.example.com","to_ids":true}]}}"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let output = Command::new(casescope_e2e::casescope_binary())
            .arg("analyze")
            .arg(&evidence)
            .args([
                "--iocs",
                csv.to_str().unwrap(),
                "--iocs",
                stix.to_str().unwrap(),
            ])
            .args(["--iocs", misp.to_str().unwrap(), "--json"])
            .args(extra)
            .output()
            .expect("run casescope analyze");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (rows, String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (rows, stderr) = run(&["--no-rules"]);
    assert!(stderr.contains("3 IOCs loaded"), "{stderr}");
    assert!(stderr.contains("1 refused"), "{stderr}");
    assert!(
        rows.iter().all(|r| r["level"] == "ioc"),
        "only IOC rows without rules"
    );
    let mut by_type = std::collections::BTreeMap::new();
    for row in &rows {
        *by_type
            .entry(row["ioc_type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        by_type.keys().cloned().collect::<Vec<_>>(),
        vec!["domain", "file_name", "ip"],
        "{by_type:?}"
    );
    // The same events hunted in-process give the same number of matches.
    let list = [
        (casescope_ioc::IocType::FileName, "svchost.exe"),
        (casescope_ioc::IocType::Ip, "10.0.0.5"),
        (casescope_ioc::IocType::Domain, "corp.example.com"),
    ];
    let indicators: Vec<casescope_ioc::Indicator> = list
        .iter()
        .map(|(kind, value)| casescope_ioc::Indicator {
            ioc_type: *kind,
            value: casescope_ioc::canonicalize(*kind, value).unwrap(),
        })
        .collect();
    let hunter = casescope_ioc::Hunter::new(&indicators);
    let context = Context {
        case_id: "x".into(),
        file_id: "x".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: false,
        limits: Limits::default(),
    };
    let mut expected = 0;
    parse_file(&evidence, Format::Evtx, &context, &mut |outcome| {
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
            expected += hits.len();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(rows.len(), expected);
    assert!(expected > 100, "{expected}");
    // With the built-in rules too: the same IOC rows, and detections besides.
    let (with_rules, _) = run(&[]);
    let iocs = with_rules.iter().filter(|r| r["level"] == "ioc").count();
    assert_eq!(iocs, expected);
    assert!(
        with_rules.len() > iocs,
        "detections alongside the IOC matches"
    );
}
