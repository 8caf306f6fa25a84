//! `make bench-detect`: whole-process figures for `casescope analyze` (parse + Sigma
//! detection, no server), the way Hayabusa and Chainsaw are timed: wall time and peak
//! RSS (medians of N runs), rule loading alone, and the parse-only floor of the same
//! input measured in the same run.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of the binary: (wall time, peak RSS KiB, stdout lines).
pub(crate) fn run_measured(
    binary: &Path,
    args: &[String],
) -> anyhow::Result<(Duration, u64, usize)> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start casescope analyze")?;
    let stdout = child.stdout.take();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        stdout
            .map(|out| std::io::BufReader::new(out).lines().count())
            .unwrap_or(0)
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI; `usage` is written by wait4 before it is read.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if waited != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let lines = lines.join().unwrap_or(0);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("casescope {args:?} failed (status {status})");
    }
    Ok((elapsed, usage.ru_maxrss as u64, lines))
}

pub(crate) fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

/// Parse-only floor in this process: every record of every file through the evtx
/// crate (as JSON), files in parallel like `analyze`.
pub(crate) fn parse_only(files: &[PathBuf]) -> (u64, Duration) {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let single = files.len() == 1;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = files.get(index) else { break };
                    let settings =
                        evtx::ParserSettings::new().num_threads(if single { 0 } else { 1 });
                    if let Ok(parser) = evtx::EvtxParser::from_path(path) {
                        let mut parser = parser.with_configuration(settings);
                        let n = parser.records_json().filter(Result::is_ok).count() as u64;
                        total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (total.into_inner(), started.elapsed())
}

pub struct DetectBench<'a> {
    pub binary: &'a Path,
    pub corpus: Option<&'a Path>,
    pub rules: &'a [PathBuf],
    pub synthetic_events: u64,
    pub runs: usize,
}

fn report(
    bench: &DetectBench<'_>,
    label: &str,
    files: &[PathBuf],
    input: &[PathBuf],
) -> anyhow::Result<()> {
    let mut args = vec!["analyze".to_string()];
    args.extend(input.iter().map(|p| p.display().to_string()));
    for rules in bench.rules {
        args.push("--rules".into());
        args.push(rules.display().to_string());
    }
    args.push("--json".into());
    let mut parse_times = Vec::new();
    let mut records = 0;
    let mut walls = Vec::new();
    let mut rss = Vec::new();
    let mut detections = 0;
    for _ in 0..bench.runs {
        let (n, t) = parse_only(files);
        records = n;
        parse_times.push(t);
        let (wall, peak, lines) = run_measured(bench.binary, &args)?;
        walls.push(wall);
        rss.push(peak);
        detections = lines;
    }
    let parse = median(parse_times);
    let wall = median(walls);
    println!("## {label}");
    println!(
        "input: {} files, {records} records; {detections} detections",
        files.len()
    );
    println!(
        "parse-only (evtx crate to JSON, same parallelism, baseline): median {:.3} s = {:.0} records/s",
        parse.as_secs_f64(),
        records as f64 / parse.as_secs_f64()
    );
    println!(
        "casescope analyze, whole process: median {:.3} s = {:.0} events/s; peak RSS median {:.0} MiB",
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        median(rss) as f64 / 1024.0
    );
    println!(
        "ratio analyze / parse-only: {:.2}x\n",
        wall.as_secs_f64() / parse.as_secs_f64()
    );
    Ok(())
}

pub fn run(bench: DetectBench<'_>) -> anyhow::Result<()> {
    for rules in bench.rules {
        if !rules.exists() {
            println!("skipped: rule folder {} not present", rules.display());
            return Ok(());
        }
    }
    // Rule loading alone: analyze over an empty directory.
    let empty = crate::scratch_dir()?;
    let mut args = vec!["analyze".to_string(), empty.path().display().to_string()];
    for rules in bench.rules {
        args.push("--rules".into());
        args.push(rules.display().to_string());
    }
    let mut loads = Vec::new();
    for _ in 0..bench.runs {
        loads.push(run_measured(bench.binary, &args)?.0);
    }
    println!(
        "## rule loading ({} folders), whole process: median {:.3} s\n",
        bench.rules.len(),
        median(loads).as_secs_f64()
    );
    if let Some(corpus) = bench.corpus {
        if corpus.is_dir() {
            let files = crate::evtx_files(corpus);
            report(
                &bench,
                "EVTX-ATTACK-SAMPLES",
                &files,
                &[corpus.to_path_buf()],
            )?;
        } else {
            println!(
                "## EVTX-ATTACK-SAMPLES\nskipped: {} not present\n",
                corpus.display()
            );
        }
    }
    if bench.synthetic_events > 0 {
        let dir = crate::scratch_dir()?;
        let path = dir.path().join("synthetic.evtx");
        let status = Command::new(bench.binary)
            .args([
                "synth",
                "evtx",
                "--events",
                &bench.synthetic_events.to_string(),
                "--out",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("casescope synth failed");
        }
        report(
            &bench,
            &format!("synthetic EVTX, {} events", bench.synthetic_events),
            std::slice::from_ref(&path),
            std::slice::from_ref(&path),
        )?;
    }
    Ok(())
}
