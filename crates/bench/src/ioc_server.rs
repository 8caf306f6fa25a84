//! `make bench-ioc`, all-in-one part: the same 1,000,000 synthetic events indexed once
//! by `casescope serve`, then hunted in full (`HuntCase`) with the case holding 10,
//! 10,000 and 100,000 IOCs (each list a prefix of the next: an import brings only the
//! new ones): the time from the request to the file's hunt state `done` (medians of N
//! runs), against the 10-IOC hunt of the same run.

use crate::detect::median;
use crate::ioc::{IocBench, write_list};
use crate::{Server, cli, peak_rss_kib, poll_interval, start};
use anyhow::{Context, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// (case IOC version, completed runs, status, events scanned, matches) of the file.
fn state(
    binary: &Path,
    server: &Server,
    case: &str,
) -> anyhow::Result<(i64, u64, String, u64, u64, i64)> {
    let states: serde_json::Value =
        serde_json::from_str(&cli(binary, server, &["ioc", "states", case, "--json"])?)?;
    let file = states["files"]
        .as_array()
        .and_then(|files| files.first())
        .context("no hunt state yet")?;
    Ok((
        states["case_version"].as_i64().unwrap_or(0),
        file["completed_runs"].as_u64().unwrap_or(0),
        file["status"].as_str().unwrap_or("").to_string(),
        file["events_scanned"].as_u64().unwrap_or(0),
        file["matches"].as_u64().unwrap_or(0),
        file["hunted_version"].as_i64().unwrap_or(-1),
    ))
}

/// Waits until the file is hunted at the case's version with more than `runs` runs.
fn wait_hunted(
    binary: &Path,
    server: &Server,
    case: &str,
    runs: u64,
) -> anyhow::Result<(u64, u64, u64)> {
    let started = Instant::now();
    loop {
        if let Ok((version, completed, status, scanned, matches, hunted)) =
            state(binary, server, case)
        {
            if status == "failed" {
                bail!("the hunt failed");
            }
            if status == "done" && hunted == version && completed > runs {
                return Ok((completed, scanned, matches));
            }
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the hunt did not finish within an hour");
        }
        std::thread::sleep(poll_interval(started.elapsed()));
    }
}

pub fn run(bench: &IocBench<'_>, evidence: &Path, dir: &Path) -> anyhow::Result<()> {
    let server = start(bench.binary)?;
    let case = cli(bench.binary, &server, &["case", "create", "ioc bench"])?
        .trim()
        .to_string();
    let started = Instant::now();
    cli(
        bench.binary,
        &server,
        &["upload", &case, &evidence.display().to_string()],
    )?;
    let (mut runs, _, _) = wait_hunted(bench.binary, &server, &case, 0)?;
    let files: serde_json::Value =
        serde_json::from_str(&cli(bench.binary, &server, &["files", &case, "--json"])?)?;
    let events: u64 = files
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| f["events_indexed"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    println!(
        "## all-in-one (`casescope serve`): {events} events indexed and hunted with no IOCs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| IOCs | import | full hunt (median) | events/s | matches | vs 10 IOCs |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut first: Option<Duration> = None;
    for &count in bench.lists {
        let list = dir.join(format!("server-iocs-{count}.csv"));
        write_list(&list, count)?;
        let imported = Instant::now();
        cli(
            bench.binary,
            &server,
            &["ioc", "import", &case, &list.display().to_string()],
        )?;
        let import = imported.elapsed();
        // The import's own (delta) hunt first.
        (runs, _, _) = wait_hunted(bench.binary, &server, &case, runs)?;
        let mut times = Vec::new();
        let mut matches = 0;
        for _ in 0..bench.runs {
            let requested = Instant::now();
            cli(bench.binary, &server, &["ioc", "hunt", &case])?;
            let (done, scanned, found) = wait_hunted(bench.binary, &server, &case, runs)?;
            times.push(requested.elapsed());
            runs = done;
            matches = found;
            if scanned != events {
                bail!("a full hunt scanned {scanned} of {events} events");
            }
        }
        let took = median(times);
        let base = *first.get_or_insert(took);
        println!(
            "| {count} | {:.1} s | {:.3} s | {:.0} | {matches} | {:.2}x |",
            import.as_secs_f64(),
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            took.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!(
        "\nserver peak RSS {:.0} MiB\n",
        peak_rss_kib(server.child.id()).unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}
