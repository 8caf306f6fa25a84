//! One ingest figure: upload start → every event searchable, and → every file's
//! detections ready (the detect stage done with the imported rules), with the
//! parse-only floor of the same run, the server's peak RSS and the index size per event.

use crate::{Server, cli, median, parse_only, peak_rss_kib, poll_interval, start};
use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one end-to-end run measured.
struct Run {
    indexed: u64,
    searchable: Duration,
    /// `None` without rules.
    detected: Option<Duration>,
    rss_kib: u64,
    index_bytes: u64,
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Whether every file of the case is indexed (or failed), and the events indexed.
fn searchable(
    binary: &Path,
    server: &Server,
    case: &str,
    expected: usize,
) -> anyhow::Result<Option<u64>> {
    let files: serde_json::Value =
        serde_json::from_str(&cli(binary, server, &["files", case, "--json"])?)?;
    let files = files.as_array().cloned().unwrap_or_default();
    let done = files
        .iter()
        .all(|f| !matches!(f["status"].as_str(), Some("uploaded" | "parsing")));
    if files.len() < expected || !done {
        return Ok(None);
    }
    if let Some(failed) = files.iter().find(|f| f["status"] == "failed") {
        return Err(anyhow!("a file did not index: {failed}"));
    }
    Ok(Some(
        files
            .iter()
            .map(|f| f["events_indexed"].as_u64().unwrap_or(0))
            .sum(),
    ))
}

/// Whether the detect stage is done for every file of the case. A status answer of
/// UNAVAILABLE ("retry shortly") counts as not yet, `unavailable` times in a row at most.
fn detections_ready(
    binary: &Path,
    server: &Server,
    case: &str,
    expected: usize,
    unavailable: &mut u32,
) -> anyhow::Result<bool> {
    let answer = match cli(binary, server, &["detect", "status", case, "--json"]) {
        Err(error) if error.to_string().contains("server unavailable") && *unavailable < 60 => {
            *unavailable += 1;
            eprintln!("detect status: {error:#} (asked again)");
            return Ok(false);
        }
        answer => answer?,
    };
    *unavailable = 0;
    let states: serde_json::Value = serde_json::from_str(&answer)?;
    let states = states.as_array().cloned().unwrap_or_default();
    if let Some(failed) = states.iter().find(|s| s["status"] == "failed") {
        return Err(anyhow!("detection failed on a file: {failed}"));
    }
    Ok(states.len() >= expected && states.iter().all(|s| s["status"] == "done"))
}

/// One run: a fresh server, the rules imported, then the upload timed.
fn end_to_end(
    binary: &Path,
    paths: &[PathBuf],
    expected_files: usize,
    rules: &[PathBuf],
) -> anyhow::Result<Run> {
    let server = start(binary)?;
    if !rules.is_empty() {
        let mut args = vec!["rules".to_string(), "import".to_string()];
        args.extend(rules.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(binary, &server, &args)?;
    }
    let case = cli(binary, &server, &["case", "create", "bench"])?
        .trim()
        .to_string();
    let started = Instant::now();
    let mut args = vec!["upload".to_string(), case.clone()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(binary, &server, &args)?;
    let (indexed, searchable_at) = loop {
        if let Some(indexed) = searchable(binary, &server, &case, expected_files)? {
            break (indexed, started.elapsed());
        }
        std::thread::sleep(poll_interval(started.elapsed()));
    };
    let index_bytes = dir_bytes(&server.data.join("index"));
    let mut unavailable = 0;
    let detected = match rules.is_empty() {
        true => None,
        false => loop {
            if detections_ready(binary, &server, &case, expected_files, &mut unavailable)? {
                break Some(started.elapsed());
            }
            std::thread::sleep(poll_interval(started.elapsed()));
        },
    };
    Ok(Run {
        indexed,
        searchable: searchable_at,
        detected,
        rss_kib: peak_rss_kib(server.child.id()).unwrap_or(0),
        index_bytes,
    })
}

/// Measures `files` (`distinct_files` of them distinct) `runs` times and prints the
/// medians.
pub(crate) fn report(
    label: &str,
    binary: &Path,
    files: &[PathBuf],
    distinct_files: usize,
    runs: usize,
    rules: &[PathBuf],
) -> anyhow::Result<()> {
    let mut parse_times = Vec::new();
    let mut records = 0;
    for _ in 0..runs {
        let (n, t) = parse_only(files)?;
        records = n;
        parse_times.push(t);
    }
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(end_to_end(binary, files, distinct_files, rules)?);
    }
    let parse = median(parse_times);
    let e2e = median(measured.iter().map(|r| r.searchable).collect());
    let detected: Vec<Duration> = measured.iter().filter_map(|r| r.detected).collect();
    let indexed = measured.last().map_or(0, |r| r.indexed);
    let peak = measured.iter().map(|r| r.rss_kib).max().unwrap_or(0);
    let index_bytes = median_u64(measured.iter().map(|r| r.index_bytes).collect());
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!("## {label}");
    println!(
        "input: {} files, {:.1} MB, {records} records (parse-only count), {indexed} events indexed",
        files.len(),
        bytes as f64 / 1e6
    );
    println!(
        "parse-only (evtx crate, baseline): median {:.3} s = {:.0} records/s",
        parse.as_secs_f64(),
        records as f64 / parse.as_secs_f64()
    );
    println!(
        "end-to-end (upload start -> searchable): median {:.3} s = {:.0} events/s",
        e2e.as_secs_f64(),
        indexed as f64 / e2e.as_secs_f64()
    );
    if detected.is_empty() {
        println!("upload start -> detections ready: not measured (no --ingest-rules)");
    } else {
        let detected = median(detected);
        println!(
            "upload start -> detections ready ({} rule path(s)): median {:.3} s = {:.0} events/s",
            rules.len(),
            detected.as_secs_f64(),
            indexed as f64 / detected.as_secs_f64()
        );
    }
    println!(
        "ratio end-to-end / parse-only: {:.2}x",
        e2e.as_secs_f64() / parse.as_secs_f64()
    );
    println!(
        "server peak RSS: {:.0} MiB (max over {runs} runs)",
        peak as f64 / 1024.0
    );
    println!(
        "index: {:.1} MiB = {:.0} bytes/event (median, when searchable)",
        index_bytes as f64 / (1024.0 * 1024.0),
        index_bytes as f64 / indexed.max(1) as f64
    );
    println!();
    Ok(())
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}
