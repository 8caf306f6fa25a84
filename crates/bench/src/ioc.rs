//! `make bench-ioc`: IOC hunting of 1,000,000 synthetic events with 10, 10,000 and
//! 100,000 IOCs of mixed types, whole process, through `casescope analyze --iocs`
//! (medians of N runs, peak RSS), against two floors measured in the same run: the
//! evtx crate's parse to JSON, and `analyze` with an empty IOC list (its own reader,
//! every field visited, nothing hunted); then in all-in-one mode (`ioc_server.rs`).
//! Every list holds the same ten IOCs that occur in the events, so every run must find
//! the same matches.

use crate::detect::{median, parse_only, run_measured};
use anyhow::bail;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// IOCs that occur in the synthetic events, in their suspicious few (crates/synth
/// profiles): the runs measure hunting, not printing millions of rows.
const PRESENT: &[(&str, &str)] = &[
    ("ip", "198.51.100.23"),
    ("ip", "203.0.113.140"),
    ("cidr", "198.51.100.200/30"),
    ("file_name", "whoami.exe"),
    ("process_name", "procdump64.exe"),
    ("url", "http://198.51.100.23/payload.exe"),
    ("command_line", "delete shadows"),
    ("file_path", "C:\\Users\\Public\\lsass.dmp"),
    ("user_name", "svc_update"),
    ("other", "DllRegisterServer"),
];

/// A deterministic pseudo-random stream (xorshift), so every run hunts the same lists.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits);
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next()));
        }
        out.truncate(digits);
        out
    }
}

/// The `i`th IOC of the filler: mixed types, none of them in the events.
fn filler(i: u64, rng: &mut Rng) -> (&'static str, String) {
    let r = rng.next();
    match i % 14 {
        0 => (
            "ip",
            format!(
                "100.{}.{}.{}",
                64 + (r % 64),
                (r >> 8) % 256,
                (r >> 16) % 256
            ),
        ),
        1 => (
            "cidr",
            format!("100.{}.{}.0/24", 64 + (r % 64), (r >> 8) % 256),
        ),
        2 => ("domain", format!("n{i}-{:x}.bad-infra.example", r % 65536)),
        3 => ("md5", rng.hex(32)),
        4 => ("sha1", rng.hex(40)),
        5 => ("sha256", rng.hex(64)),
        6 => ("file_name", format!("tool{i}_{:x}.exe", r % 4096)),
        7 => ("command_line", format!("-payload{i}x{:x}", r % 4096)),
        8 => (
            "registry_key",
            format!("HKLM\\Software\\Bad{i}\\Run{:x}", r % 4096),
        ),
        9 => ("user_name", format!("baduser{i}")),
        10 => ("url", format!("http://bad{i}.example/p{:x}", r % 4096)),
        11 => ("named_pipe", format!("\\\\.\\pipe\\badpipe{i}")),
        12 => ("service_name", format!("badsvc{i}")),
        _ => ("other", format!("marker-{i}-{:x}", r % 65536)),
    }
}

pub(crate) fn write_list(path: &Path, count: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "type,value")?;
    let mut written = 0u64;
    for (kind, value) in PRESENT.iter().take(count as usize) {
        writeln!(out, "{kind},{value}")?;
        written += 1;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut i = 0;
    while written < count {
        let (kind, value) = filler(i, &mut rng);
        writeln!(out, "{kind},\"{value}\"")?;
        written += 1;
        i += 1;
    }
    out.flush()?;
    Ok(())
}

pub struct IocBench<'a> {
    pub binary: &'a Path,
    pub events: u64,
    pub runs: usize,
    pub lists: &'a [u64],
}

/// (median wall, median peak RSS KiB, output lines) of `analyze` with `args`.
fn measure(bench: &IocBench<'_>, args: &[String]) -> anyhow::Result<(Duration, u64, usize)> {
    let mut walls = Vec::new();
    let mut rss = Vec::new();
    let mut lines = 0;
    for _ in 0..bench.runs {
        let (wall, peak, out) = run_measured(bench.binary, args)?;
        walls.push(wall);
        rss.push(peak);
        lines = out;
    }
    Ok((median(walls), median(rss), lines))
}

pub fn run(bench: IocBench<'_>) -> anyhow::Result<()> {
    let dir = crate::scratch_dir()?;
    let evidence = dir.path().join("synthetic.evtx");
    let status = Command::new(bench.binary)
        .args([
            "synth",
            "evtx",
            "--events",
            &bench.events.to_string(),
            "--out",
        ])
        .arg(&evidence)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("casescope synth failed");
    }
    let analyze = |list: &PathBuf| -> Vec<String> {
        vec![
            "analyze".into(),
            evidence.display().to_string(),
            "--no-rules".into(),
            "--iocs".into(),
            list.display().to_string(),
            "--json".into(),
        ]
    };
    let mut parse_times = Vec::new();
    let mut records = 0;
    for _ in 0..bench.runs {
        let (n, t) = parse_only(std::slice::from_ref(&evidence));
        records = n;
        parse_times.push(t);
    }
    let parse = median(parse_times);
    let empty = dir.path().join("iocs-0.csv");
    write_list(&empty, 0)?;
    let (floor, floor_rss, _) = measure(&bench, &analyze(&empty))?;
    println!("## {} synthetic events (one EVTX file)", records);
    println!(
        "parse-only, evtx crate to JSON (baseline): median {:.3} s = {:.0} events/s",
        parse.as_secs_f64(),
        records as f64 / parse.as_secs_f64()
    );
    println!(
        "analyze with no IOCs (its reader, every field visited): median {:.3} s = {:.0} events/s; peak RSS {:.0} MiB",
        floor.as_secs_f64(),
        records as f64 / floor.as_secs_f64(),
        floor_rss as f64 / 1024.0
    );
    println!();
    println!("| IOCs | wall (median) | events/s | peak RSS | matches | vs 10 IOCs | vs no IOCs |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut first: Option<(Duration, usize)> = None;
    for &count in bench.lists {
        let list = dir.path().join(format!("iocs-{count}.csv"));
        write_list(&list, count)?;
        let (wall, rss, matches) = measure(&bench, &analyze(&list))?;
        let (base, base_matches) = *first.get_or_insert((wall, matches));
        println!(
            "| {count} | {:.3} s | {:.0} | {:.0} MiB | {matches} | {:.2}x | {:.2}x |",
            wall.as_secs_f64(),
            records as f64 / wall.as_secs_f64(),
            rss as f64 / 1024.0,
            wall.as_secs_f64() / base.as_secs_f64(),
            wall.as_secs_f64() / floor.as_secs_f64(),
        );
        if matches != base_matches {
            println!(
                "WARNING: {matches} matches with {count} IOCs, {base_matches} with the first list: the extra IOCs should match nothing"
            );
        }
    }
    println!();
    crate::ioc_server::run(&bench, &evidence, dir.path())
}
