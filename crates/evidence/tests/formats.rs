//! Parsing JSON/JSONL and CSV evidence, good and hostile; EVTX on the shared corpus.

use casescope_evidence::{
    Context, Decoding, Format, Limits, Outcome, Summary, normalize_windows_record, parse_file,
};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

fn context() -> Context {
    Context {
        case_id: "case-1".into(),
        file_id: "file-1".into(),
        evidence_sha256: "ab".repeat(32),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits {
            max_record_bytes: 4096,
            evtx_threads: 2,
        },
    }
}

fn parse(path: &Path, format: Format, context: &Context) -> (Summary, Vec<Outcome>) {
    let mut outcomes = Vec::new();
    let summary = parse_file(path, format, context, &mut |outcome| {
        outcomes.push(outcome);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(summary.records_read, summary.events + summary.rejected);
    assert_eq!(summary.records_read as usize, outcomes.len());
    for outcome in &outcomes {
        if let Outcome::Event(event) = outcome {
            assert_fields_from_raw(event);
        }
    }
    (summary, outcomes)
}

/// An event whose parser says its fields come from its record has exactly the fields
/// and header values `normalize_stored` derives from that record (what an event store
/// that keeps the record once reads back).
fn assert_fields_from_raw(event: &casescope_evidence::Event) {
    assert_eq!(
        event.fields_from_raw,
        !event.raw.is_null(),
        "{}",
        event.locator
    );
    if !event.fields_from_raw {
        return;
    }
    let parts = casescope_evidence::normalize_stored(event.source, event.raw.get()).unwrap();
    assert_eq!(parts.fields, event.fields, "{}", event.locator);
    assert_eq!(parts.event_code, event.event_code, "{}", event.locator);
    assert_eq!(parts.channel, event.channel, "{}", event.locator);
    assert_eq!(parts.provider, event.provider, "{}", event.locator);
    assert_eq!(parts.computer, event.computer, "{}", event.locator);
    assert_eq!(parts.level, event.level, "{}", event.locator);
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn events(outcomes: &[Outcome]) -> Vec<&casescope_evidence::Event> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Event(e) => Some(e.as_ref()),
            Outcome::Rejected(_) => None,
        })
        .collect()
}

fn rejects(outcomes: &[Outcome]) -> Vec<(String, &'static str)> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Rejected(r) => Some((r.locator.clone(), r.reason.as_str())),
            Outcome::Event(_) => None,
        })
        .collect()
}

#[test]
fn jsonl_records_are_normalised_and_bad_lines_rejected_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "{{\"timestamp\": \"2024-01-01T00:00:00Z\", \"x\": \"{}\"}}",
        "a".repeat(5000)
    );
    let body = format!(
        "{}\n\n{}\n{}\n{}\n{}\n{}\n",
        r#"{"@timestamp": "2024-05-01T10:00:00Z", "EventID": 4624, "Computer": "WS1", "user": {"name": "bob", "roles": ["a","b"]}}"#,
        r#"{"timestamp": "garbage", "x": 1}"#,
        r#"{"no_time": 1}"#,
        r#"[1,2]"#,
        r#"{"broken": "#,
        long,
    );
    let path = write(&dir, "e.jsonl", body.as_bytes());
    let (summary, outcomes) = parse(&path, Format::Jsonl, &context());
    assert_eq!(summary.records_read, 6, "the blank line is not a record");
    assert_eq!(summary.events, 1);
    let event = events(&outcomes)[0];
    assert_eq!(event.timestamp_micros, 1_714_557_600_000_000);
    assert_eq!(event.event_code, Some(4624));
    assert_eq!(event.computer.as_deref(), Some("WS1"));
    assert_eq!(event.fields["user.name"], "bob");
    assert_eq!(event.fields["user.roles"], serde_json::json!(["a", "b"]));
    assert_eq!(event.locator, "line:1");
    assert_eq!(event.line, Some(1));
    assert_eq!(
        rejects(&outcomes),
        [
            ("line:3".to_string(), "timestamp_invalid"),
            ("line:4".to_string(), "timestamp_missing"),
            ("line:5".to_string(), "json_not_an_object"),
            ("line:6".to_string(), "invalid_json"),
            ("line:7".to_string(), "record_too_large"),
        ]
    );
    assert_eq!(summary.rejects_by_reason["record_too_large"], 1);
}

#[test]
fn json_arrays_pretty_objects_and_a_configured_time_field() {
    let dir = tempfile::tempdir().unwrap();
    let array = write(
        &dir,
        "a.json",
        br#"[{"when": 1700000000, "a": 1}, {"when": "2023-11-14T22:13:20Z"}, 5]"#,
    );
    let mut context = context();
    context.timestamp_field = Some("when".into());
    let (summary, outcomes) = parse(&array, Format::Json, &context);
    assert_eq!((summary.events, summary.rejected), (2, 1));
    assert!(
        events(&outcomes)
            .iter()
            .all(|e| e.timestamp_micros == 1_700_000_000_000_000)
    );
    assert_eq!(
        rejects(&outcomes),
        [("element:3".to_string(), "json_not_an_object")]
    );

    let pretty = write(
        &dir,
        "p.json",
        b"{\n  \"Event\": {\"System\": {\"EventID\": 1, \"Channel\": \"Microsoft-Windows-Sysmon/Operational\",\n  \"TimeCreated\": {\"#attributes\": {\"SystemTime\": \"2019-03-16T23:37:52Z\"}}},\n  \"EventData\": {\"Image\": \"C:\\\\x.exe\"}}\n}\n",
    );
    let (summary, outcomes) = parse(&pretty, Format::Json, &crate::context());
    assert_eq!(summary.events, 1, "{outcomes:?}");
    let event = events(&outcomes)[0];
    assert_eq!(event.event_code, Some(1));
    assert_eq!(event.fields["Image"], "C:\\x.exe");
    assert_eq!(event.source, "json");

    let truncated_array = write(
        &dir,
        "t.json",
        br#"[{"timestamp": 1700000000}, {"timestamp": "#,
    );
    let error = parse_file(
        &truncated_array,
        Format::Json,
        &crate::context(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(error.to_string().contains("element:2"), "{error}");
}

#[test]
fn a_100_mb_single_line_is_rejected_without_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(b"{\"timestamp\": 1700000000, \"blob\": \"")
        .unwrap();
    let block = vec![b'x'; 1024 * 1024];
    for _ in 0..100 {
        file.write_all(&block).unwrap();
    }
    file.write_all(b"\"}\n{\"timestamp\": 1700000001}\n")
        .unwrap();
    drop(file);
    let mut context = context();
    context.limits.max_record_bytes = 1024 * 1024;
    let (summary, outcomes) = parse(&path, Format::Jsonl, &context);
    assert_eq!((summary.events, summary.rejected), (1, 1));
    assert_eq!(
        rejects(&outcomes),
        [("line:1".to_string(), "record_too_large")]
    );
}

#[test]
fn csv_rows_with_bad_utf8_or_field_counts_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = b"TimeCreated,EventID,Computer,CommandLine,\n".to_vec();
    body.extend_from_slice(b"2024-01-01 10:00:00,4688,WS1,\"cmd.exe /c \"\"whoami\"\"\",x\n");
    body.extend_from_slice(b"2024-01-01 10:00:01,4688,WS1\n");
    body.extend_from_slice(b"2024-01-01 10:00:02,4688,WS1,\xff\xfe,y\n");
    body.extend_from_slice(b"not a time,1,WS2,a,b\n");
    let path = write(&dir, "c.csv", &body);
    let (summary, outcomes) = parse(&path, Format::Csv, &context());
    assert_eq!((summary.records_read, summary.events), (4, 1));
    let event = events(&outcomes)[0];
    assert_eq!(event.fields["CommandLine"], "cmd.exe /c \"whoami\"");
    assert_eq!(event.fields["column_5"], "x", "an empty header gets a name");
    assert_eq!(event.event_code, Some(4688));
    assert_eq!(event.source, "csv");
    assert_eq!(
        rejects(&outcomes),
        [
            ("row:2".to_string(), "csv_field_count"),
            ("row:3".to_string(), "invalid_utf8"),
            ("row:4".to_string(), "timestamp_invalid"),
        ]
    );
    let long_line = write(
        &dir,
        "l.csv",
        format!("a,b\n{}\n", "z".repeat(10_000)).as_bytes(),
    );
    let error = parse_file(&long_line, Format::Csv, &context(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(error.to_string().contains("maximum record size"), "{error}");
}

#[test]
fn the_sink_can_stop_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..10)
        .map(|n| format!("{{\"ts\": {}}}\n", 1_700_000_000 + n))
        .collect();
    let path = write(&dir, "s.jsonl", lines.as_bytes());
    let mut seen = 0;
    let summary = parse_file(&path, Format::Jsonl, &context(), &mut |_| {
        seen += 1;
        if seen == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert!(summary.stopped_early);
    assert_eq!(summary.records_read, 3);
}

#[test]
fn evtx_corpus_counts_match_the_evtx_crate_exactly() {
    let Some(data) = casescope_testkit::shared_data_dir() else {
        eprintln!("skipped: ../shared/data not present (EVTX-ATTACK-SAMPLES)");
        return;
    };
    let root = data.join("evtx-attack-samples");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("evtx"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    assert_eq!(files.len(), 277);
    let (mut total_read, mut total_events) = (0, 0);
    for path in &files {
        let mut direct = evtx::EvtxParser::from_path(path).unwrap();
        let direct_count = direct.records_json_value().count() as u64;
        let mut ids = std::collections::HashSet::new();
        let summary = parse_file(path, Format::Evtx, &context(), &mut |outcome| {
            if let Outcome::Event(event) = outcome {
                assert!(
                    ids.insert(event.event_id.clone()),
                    "duplicate id in {}",
                    path.display()
                );
                assert!(
                    event.event_code.is_some() && event.computer.is_some(),
                    "{}: {}",
                    path.display(),
                    event.raw.to_value()["Event"]["System"]
                );
                // Read straight from the text, the same as through a JSON tree.
                let tree = normalize_windows_record(&event.raw.to_value());
                let at = || format!("{} {}", path.display(), event.locator);
                assert_eq!(event.fields, tree.fields, "{}", at());
                assert_eq!(event.event_code, tree.event_code, "{}", at());
                assert_eq!(event.channel, tree.channel, "{}", at());
                assert_eq!(event.provider, tree.provider, "{}", at());
                assert_eq!(event.computer, tree.computer, "{}", at());
                assert_eq!(event.level, tree.level, "{}", at());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(summary.records_read, direct_count, "{}", path.display());
        assert_eq!(summary.events + summary.rejected, direct_count);
        total_read += summary.records_read;
        total_events += summary.events;
    }
    eprintln!(
        "{} files, {total_read} records, {total_events} events",
        files.len()
    );
    assert_eq!(total_read, 8255, "the corpus README says 8,255 records");
}

#[test]
fn without_raw_records_events_are_the_same_but_for_raw() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write(
        &dir,
        "a.jsonl",
        b"{\"@timestamp\": \"2024-01-01T00:00:00Z\", \"user\": {\"name\": \"bob\"}}\n",
    );
    let mut files = vec![(jsonl, Format::Json)];
    match casescope_testkit::shared_data_dir() {
        Some(data) => files.push((
            data.join("evtx-attack-samples/Credential Access/CA_4624_4625_LogonType2_LogonProc_chrome.evtx"),
            Format::Evtx,
        )),
        None => eprintln!("EVTX part skipped: ../shared/data not present"),
    }
    for (path, format) in files {
        let (_, kept) = parse(&path, format, &context());
        let without = Context {
            keep_raw: false,
            ..context()
        };
        let (_, dropped) = parse(&path, format, &without);
        let (kept, dropped) = (events(&kept), events(&dropped));
        assert!(!kept.is_empty(), "{}", path.display());
        assert_eq!(kept.len(), dropped.len());
        for (kept, dropped) in kept.iter().zip(&dropped) {
            assert_ne!(kept.raw.get(), "null");
            assert_eq!(dropped.raw.get(), "null");
            let mut same = (*kept).clone();
            same.raw = dropped.raw.clone();
            assert_eq!(&same, *dropped);
        }
    }
}

/// `inspect_evtx` (records looked at on the parser threads) sees what `parse_file`
/// makes events of, record by record and in file order, and rejects the same records:
/// on a corpus file, and on a copy with two of its records overwritten.
#[test]
fn inspected_records_are_the_events_parse_file_makes() {
    let Some(data) = casescope_testkit::shared_data_dir() else {
        eprintln!("skipped: ../shared/data not present (EVTX-ATTACK-SAMPLES)");
        return;
    };
    let source = data.join(
        "evtx-attack-samples/Credential Access/CA_4624_4625_LogonType2_LogonProc_chrome.evtx",
    );
    let bytes = std::fs::read(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Records in the middle of the chunk overwritten: those (or the chunk) are rejected.
    let mut damaged = bytes;
    damaged[4096 + 512 + 3000..4096 + 512 + 3400].fill(0x41);
    let damaged = write(&dir, "damaged.evtx", &damaged);
    for (path, threads) in [
        (source.clone(), 0),
        (source, 1),
        (damaged.clone(), 1),
        (damaged, 2),
    ] {
        let context = Context {
            keep_raw: false,
            limits: Limits {
                evtx_threads: threads,
                ..context().limits
            },
            ..context()
        };
        let (_, outcomes) = parse(&path, Format::Evtx, &context);
        let mut inspected = Vec::new();
        casescope_evidence::inspect_evtx(
            &path,
            threads,
            |record| {
                (
                    record.record_id,
                    record.timestamp_micros,
                    record.parts.event_code,
                    record.parts.channel.clone(),
                    record.parts.computer.clone(),
                    record.parts.all_fields().to_map(),
                )
            },
            &mut |item| {
                inspected.push(item);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(inspected.len(), outcomes.len(), "{}", path.display());
        let events = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Event(_)))
            .count();
        let whole = !path.ends_with("damaged.evtx");
        assert!(events > 0 || !whole, "{}", path.display());
        assert!(events < outcomes.len() || whole, "{}", path.display());
        for (outcome, item) in outcomes.iter().zip(&inspected) {
            match (outcome, item) {
                (Outcome::Event(event), Ok(seen)) => assert_eq!(
                    (
                        event.record_id.unwrap(),
                        event.timestamp_micros,
                        event.event_code,
                        event.channel.clone(),
                        event.computer.clone(),
                        event.fields.clone(),
                    ),
                    *seen,
                    "{} {}",
                    path.display(),
                    event.locator
                ),
                (Outcome::Rejected(reject), Err(seen)) => {
                    assert_eq!(reject.locator, seen.locator);
                    assert_eq!(reject.detail, seen.detail);
                }
                _ => panic!(
                    "{}: an event on one side, a reject on the other",
                    path.display()
                ),
            }
        }
    }
}

/// Everything a record decodes to, fields in their order (as JSON text).
type Decoded = (
    u64,
    i64,
    Option<u32>,
    [Option<String>; 3],
    Option<u32>,
    String,
    bool,
);

/// Every record of `path`, on `threads` parser threads.
fn decode_all(
    path: &Path,
    decoding: Decoding,
    threads: usize,
) -> Vec<Result<Decoded, (String, String)>> {
    let mut out = Vec::new();
    casescope_evidence::inspect_decoded(
        path,
        threads,
        decoding,
        |record| {
            let parts = record.parts;
            (
                record.record_id,
                record.timestamp_micros,
                parts.event_code,
                [
                    parts.channel.clone(),
                    parts.provider.clone(),
                    parts.computer.clone(),
                ],
                parts.level,
                serde_json::to_string(&parts.all_fields().to_map()).unwrap(),
                record.from_template,
            )
        },
        &mut |item| {
            out.push(item.map_err(|reject| (reject.locator, reject.detail)));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    out
}

/// Compares the two decodings of `path` record by record (template values on two
/// threads, the chunks' results put back in order; JSON on one); returns (records,
/// records read from their template values).
fn compare_decodings(path: &Path) -> (usize, usize) {
    let fast = decode_all(path, Decoding::TemplateValues, 2);
    let json = decode_all(path, Decoding::JsonOnly, 1);
    assert_eq!(fast.len(), json.len(), "{}", path.display());
    let mut from_template = 0;
    for (index, (fast, json)) in fast.iter().zip(&json).enumerate() {
        let strip = |d: &Result<Decoded, (String, String)>| {
            d.clone().map(|(a, b, c, d, e, f, _)| (a, b, c, d, e, f))
        };
        assert_eq!(
            strip(fast),
            strip(json),
            "{} record #{index}",
            path.display()
        );
        assert!(
            !matches!(json, Ok(d) if d.6),
            "JsonOnly read template values"
        );
        from_template += usize::from(matches!(fast, Ok(d) if d.6));
    }
    (fast.len(), from_template)
}

#[test]
fn template_values_give_the_fields_json_rendering_gives() {
    // Synthetic Security and Sysmon events: every template is programmed.
    let dir = tempfile::tempdir().unwrap();
    let synthetic = dir.path().join("synthetic.evtx");
    casescope_synth::write_evtx_file(&synthetic, casescope_synth::realistic_events(20_000, 7))
        .unwrap();
    let (records, from_template) = compare_decodings(&synthetic);
    assert_eq!(records, 20_000);
    assert_eq!(
        from_template, records,
        "synthetic records read through JSON"
    );

    let Some(data) = casescope_testkit::shared_data_dir() else {
        eprintln!("corpus part skipped: ../shared/data not present (EVTX-ATTACK-SAMPLES)");
        return;
    };
    let mut files: Vec<_> = walk(&data.join("evtx-attack-samples"))
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("evtx"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 270, "corpus incomplete: {}", files.len());
    let (mut records, mut from_template) = (0, 0);
    for file in &files {
        let (n, fast) = compare_decodings(file);
        records += n;
        from_template += fast;
    }
    eprintln!("{from_template} of {records} corpus records read from template values");
    // Most real records are programmed; if this falls, a common shape went back to JSON.
    assert!(
        from_template * 100 >= records * 80,
        "{from_template} of {records} records read from template values"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn template_values_agree_with_json_on_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.evtx");
    casescope_synth::write_evtx_file(&clean, casescope_synth::realistic_events(3_000, 11)).unwrap();
    let bytes = std::fs::read(&clean).unwrap();
    // Byte flips anywhere past the file header: in chunk headers, string and template
    // tables, template definitions, values. Fixed seeds: the same damage every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut both, mut differ_in_kind) = (0, 0);
    for copy in 0..64 {
        let mut damaged = bytes.clone();
        for _ in 0..40 {
            let at = 4096 + (next() as usize) % (damaged.len() - 4096);
            damaged[at] ^= 1 << (next() % 8);
        }
        let path = write(&dir, &format!("damaged-{copy}.evtx"), &damaged);
        let fast = decode_all(&path, Decoding::TemplateValues, 2);
        let json = decode_all(&path, Decoding::JsonOnly, 1);
        assert_eq!(
            fast.len(),
            json.len(),
            "copy {copy}: a record lost or added"
        );
        for (index, (fast, json)) in fast.iter().zip(&json).enumerate() {
            match (fast, json) {
                (Ok(fast), Ok(json)) => {
                    both += 1;
                    assert_eq!(
                        (fast.0, fast.1, fast.2, &fast.3, fast.4, &fast.5),
                        (json.0, json.1, json.2, &json.3, json.4, &json.5),
                        "copy {copy} record #{index}"
                    );
                }
                (Err(fast), Err(json)) => assert_eq!(fast, json, "copy {copy} record #{index}"),
                // The evtx crate renders some damaged records as text that is not JSON
                // (a control character it does not escape): those are read from their
                // values, and counted. Nothing else may differ.
                (Ok(_), Err((_, detail))) if detail.contains("control character") => {
                    differ_in_kind += 1
                }
                (fast, json) => panic!("copy {copy} record #{index}: {fast:?} / {json:?}"),
            }
        }
    }
    eprintln!(
        "{both} damaged-file records read both ways, {differ_in_kind} from their values only"
    );
    assert!(both > 64 * 2_000, "damage hit nearly every record: {both}");
}
