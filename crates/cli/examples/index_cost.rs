//! What indexing costs, apart from the server: parses an EVTX file into events (timed),
//! then writes them into a fresh on-disk tantivy store and commits, `RUNS` times (3 by
//! default), printing CPU seconds and µs of CPU per event. With `PARSE_ONLY=1` it stops
//! after parsing. Run it under `valgrind --tool=callgrind` (with `RUNS=1`, on a small
//! file from `casescope synth evtx`) for instruction counts per function, which do not
//! vary with the machine's load as timings do:
//!
//! ```text
//! cargo build --release -p casescope-cli --example index_cost
//! casescope synth evtx --events 20000 --out /tmp/20k.evtx
//! RUNS=1 valgrind --tool=callgrind $CARGO_TARGET_DIR/release/examples/index_cost /tmp/20k.evtx
//! ```
use casescope_eventstore::{EventStore, TantivyOptions, TantivyStore};
use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use std::ops::ControlFlow;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: index_cost FILE.evtx"))?;
    let context = Context {
        case_id: "case".into(),
        file_id: "file".into(),
        evidence_sha256: "00".repeat(32),
        timestamp_field: None,
        limits: Limits::default(),
        keep_raw: true,
    };
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut events = Vec::new();
    parse_file(path.as_ref(), Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            events.push(*event);
        }
        ControlFlow::Continue(())
    })?;
    let count = events.len();
    println!(
        "parse: {count} events, {:.2} s wall, {:.2} CPU-s",
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    if std::env::var_os("PARSE_ONLY").is_some() {
        return Ok(());
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut per_event = Vec::new();
    for _ in 0..runs.max(1) {
        let events = events.clone();
        let dir = tempfile::tempdir()?;
        let store = TantivyStore::open(dir.path(), &TantivyOptions::default())?;
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let mut events = events.into_iter();
        loop {
            let batch: Vec<_> = events.by_ref().take(2000).collect();
            if batch.is_empty() {
                break;
            }
            store.write(batch).await?;
        }
        store.flush().await?;
        let used = cpu_seconds() - cpu;
        println!(
            "index + commit: {:.2} s wall, {used:.2} CPU-s = {:.1} µs of CPU per event",
            started.elapsed().as_secs_f64(),
            used * 1e6 / count.max(1) as f64
        );
        per_event.push(used * 1e6 / count.max(1) as f64);
    }
    per_event.sort_by(f64::total_cmp);
    println!(
        "median: {:.1} µs of CPU per event",
        per_event[per_event.len() / 2]
    );
    Ok(())
}
