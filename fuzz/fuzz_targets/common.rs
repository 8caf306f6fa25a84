//! Shared by the file-format targets: the input written to a per-process scratch file
//! (the parsers read paths, as ingest does), then parsed with counts checked.

use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use std::ops::ControlFlow;
use std::path::PathBuf;

/// A scratch path of this process for `extension`.
pub fn scratch(extension: &str) -> PathBuf {
    std::env::temp_dir().join(format!("casescope-fuzz-{}.{extension}", std::process::id()))
}

/// Parses `data` as `format`: never a panic, and every record read is one event or one
/// reject (the counts add up).
pub fn parse(data: &[u8], format: Format, extension: &str) {
    let path = scratch(extension);
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let context = Context {
        case_id: "case".into(),
        file_id: "file".into(),
        evidence_sha256: "00".repeat(32),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits {
            max_record_bytes: 64 * 1024,
            evtx_threads: 1,
        },
    };
    let (mut events, mut rejected) = (0u64, 0u64);
    let summary = parse_file(&path, format, &context, &mut |outcome| {
        match outcome {
            Outcome::Event(_) => events += 1,
            Outcome::Rejected(_) => rejected += 1,
        }
        ControlFlow::Continue(())
    });
    if let Ok(summary) = summary {
        assert_eq!(summary.events, events);
        assert_eq!(summary.rejected, rejected);
        assert_eq!(summary.records_read, events + rejected);
    }
}
