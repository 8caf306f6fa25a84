//! The stored form of an EVTX record rendered from its template values is the evtx
//! crate's JSON of the same record, byte for byte, every time; the events are
//! otherwise those the evtx crate's JSON path makes (ids, header values, fields), on
//! the shared corpus and on synthetic logs. (That most records take the template
//! path is shown by `evtx_chunks`' unit tests.)

use casescope_evidence::{
    Context, Decoding, Event, Format, Limits, Outcome, parse_evtx_decoded, parse_file,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

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

/// Every outcome of `path`, read as `decoding` says (`None`: as ingest reads it).
fn outcomes(path: &Path, decoding: Option<Decoding>) -> Vec<Outcome> {
    let mut all = Vec::new();
    let mut sink = |outcome| {
        all.push(outcome);
        ControlFlow::Continue(())
    };
    match decoding {
        None => parse_file(path, Format::Evtx, &context(), &mut sink).unwrap(),
        Some(decoding) => parse_evtx_decoded(path, &context(), decoding, &mut sink).unwrap(),
    };
    all
}

/// Compares one file both ways; returns its events.
fn compare(path: &Path) -> usize {
    let fast = outcomes(path, None);
    let json = outcomes(path, Some(Decoding::JsonOnly));
    assert_eq!(fast.len(), json.len(), "{}", path.display());
    let again = outcomes(path, None);
    let mut events = 0;
    for ((fast, json), again) in fast.iter().zip(&json).zip(&again) {
        let (fast, json): (&Event, &Event) = match (fast, json) {
            (Outcome::Event(fast), Outcome::Event(json)) => (fast, json),
            (Outcome::Rejected(a), Outcome::Rejected(b)) => {
                assert_eq!(a, b, "{}", path.display());
                continue;
            }
            other => panic!("{}: {other:?}", path.display()),
        };
        let Outcome::Event(again) = again else {
            panic!("{}: not the same outcome twice", path.display())
        };
        let at = || format!("{} {}", path.display(), fast.locator);
        events += 1;
        assert_eq!(fast.raw.get(), again.raw.get(), "not byte-stable: {}", at());
        assert_eq!(fast.event_id, json.event_id, "{}", at());
        assert_eq!(fast.timestamp_micros, json.timestamp_micros, "{}", at());
        assert_eq!(fast.record_id, json.record_id, "{}", at());
        assert_eq!(fast.event_code, json.event_code, "{}", at());
        assert_eq!(fast.channel, json.channel, "{}", at());
        assert_eq!(fast.provider, json.provider, "{}", at());
        assert_eq!(fast.computer, json.computer, "{}", at());
        assert_eq!(fast.level, json.level, "{}", at());
        assert_eq!(fast.fields, json.fields, "{}", at());
        assert_eq!(fast.raw.get(), json.raw.get(), "{}", at());
        // What a store that keeps the record once reads back.
        assert!(fast.fields_from_raw, "{}", at());
        let derived = casescope_evidence::normalize_stored("evtx", fast.raw.get()).unwrap();
        assert_eq!(derived.fields, fast.fields, "{}", at());
        assert_eq!(derived.event_code, fast.event_code, "{}", at());
        assert_eq!(derived.channel, fast.channel, "{}", at());
        assert_eq!(derived.provider, fast.provider, "{}", at());
        assert_eq!(derived.computer, fast.computer, "{}", at());
        assert_eq!(derived.level, fast.level, "{}", at());
    }
    events
}

fn evtx_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
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
    files
}

#[test]
fn synthetic_records_render_as_the_evtx_crate_renders_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.evtx");
    casescope_synth::write_evtx_file(&path, casescope_synth::realistic_events(5_000, 11)).unwrap();
    assert_eq!(compare(&path), 5_000);
}

#[test]
fn corpus_records_render_as_the_evtx_crate_renders_them() {
    let Some(data) = casescope_testkit::shared_data_dir() else {
        eprintln!("skipped: ../shared/data not present (EVTX-ATTACK-SAMPLES)");
        return;
    };
    let files = evtx_files(&data.join("evtx-attack-samples"));
    assert!(files.len() > 250, "{} files", files.len());
    let events: usize = files.iter().map(|path| compare(path)).sum();
    assert_eq!(events, 8_255, "the corpus's records");
}
