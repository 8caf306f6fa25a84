//! `make bench-ingest`: end-to-end ingestion throughput of the real `casescope` binary
//! (upload start → every event searchable), with the parse-only floor measured in the
//! same run as the baseline, medians of N runs, and the server's peak RSS. Prints the
//! machine it ran on. Not a test: it asserts nothing, it measures.

use anyhow::{Context, bail};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod detect;
mod ingest;
mod ioc;
mod ioc_server;

#[derive(Parser)]
struct Args {
    /// The casescope binary to measure (a release build).
    #[arg(long)]
    binary: PathBuf,
    /// Directory of EVTX files (the shared EVTX-ATTACK-SAMPLES corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Also measure one synthetic EVTX file of this many events (0 = skip).
    #[arg(long, default_value_t = 1_000_000)]
    synthetic_events: u64,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measure detection (`casescope analyze`) with these rule folders instead of
    /// ingestion (repeatable).
    #[arg(long = "detect-rules")]
    detect_rules: Vec<PathBuf>,
    /// Measure IOC hunting (`casescope analyze --iocs`) over the synthetic events with
    /// lists of these many IOCs (repeatable; e.g. 10, 10000, 100000).
    #[arg(long = "ioc-list")]
    ioc_lists: Vec<u64>,
    /// Ingestion: import these Sigma rule folders first and also time upload start →
    /// detections ready (repeatable).
    #[arg(long = "ingest-rules")]
    ingest_rules: Vec<PathBuf>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {memory}")
}

fn evtx_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("evtx"))
                {
                    files.push(path);
                }
            }
        } else if dir.is_file() {
            files.push(dir);
        }
    }
    files.sort();
    files
}

/// Parse-only floor: every record rendered to JSON by the evtx crate, all cores.
pub(crate) fn parse_only(files: &[PathBuf]) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut records = 0;
    for path in files {
        let mut parser = evtx::EvtxParser::from_path(path)?;
        records += parser.records_json_value().filter(Result::is_ok).count() as u64;
    }
    Ok((records, started.elapsed()))
}

pub(crate) fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Where every benchmark directory goes: one parent, so a run killed before it could
/// clean up (its server data and a 1.2 GB synthetic file) is removed by the next run
/// instead of filling the disk.
fn bench_root() -> PathBuf {
    std::env::temp_dir().join("casescope-bench")
}

/// A new directory for this run under [`bench_root`], removed when dropped.
pub(crate) fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let root = bench_root();
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&root)
        .with_context(|| format!("create a directory in {}", root.display()))
}

/// Removes what runs older than `age` left under [`bench_root`] (no run takes that long,
/// so a concurrent run's directories are kept).
fn remove_stale_runs(age: Duration) {
    let Ok(entries) = std::fs::read_dir(bench_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => println!(
                    "removed a stale benchmark directory: {}",
                    entry.path().display()
                ),
                Err(error) => println!("cannot remove {}: {error}", entry.path().display()),
            }
        }
    }
}

pub(crate) struct Server {
    pub(crate) child: Child,
    address: String,
    /// Where the CLI keeps the session signed in as `admin` (XDG_CONFIG_HOME).
    config: PathBuf,
    /// The server's data directory.
    data: PathBuf,
    _dir: tempfile::TempDir,
}

/// The bootstrap admin's password of benchmark servers (their data is thrown away).
const ADMIN_PASSWORD: &str = "bench-admin-password-0123456789";

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(17_999)
}

pub(crate) fn start(binary: &Path) -> anyhow::Result<Server> {
    let dir = scratch_dir()?;
    let port = free_port();
    let child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("CASESCOPE_LOG", "warn")
        .env("CASESCOPE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start casescope serve")?;
    let address = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("casescope serve did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = dir.path().join("config");
    let server = Server {
        child,
        address,
        config,
        data: dir.path().join("data"),
        _dir: dir,
    };
    // Every RPC passes the gateway: sign in once, the CLI keeps the session.
    let mut login = Command::new(binary)
        .args(["login", "--user", "admin", "--password-stdin"])
        .env("CASESCOPE_SERVER", &server.address)
        .env("XDG_CONFIG_HOME", &server.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start casescope login")?;
    if let Some(mut stdin) = login.stdin.take() {
        use std::io::Write;
        stdin.write_all(ADMIN_PASSWORD.as_bytes())?;
    }
    let output = login.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "casescope login: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(server)
}

pub(crate) fn cli(binary: &Path, server: &Server, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(args)
        .env("CASESCOPE_SERVER", &server.address)
        .env("XDG_CONFIG_HOME", &server.config)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        bail!(
            "casescope {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// How long to wait between two status polls: 2 % of the time so far, between 100 ms
/// and 1 s. Each poll starts a client process (~9 ms of CPU), so polling a minute-long
/// run every 100 ms took ~5 % of this 2-core machine away from the server; this keeps
/// the end time within 2 % (the corpus run, ~10 s, is still polled every 200 ms).
pub(crate) fn poll_interval(elapsed: Duration) -> Duration {
    (elapsed / 50).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    remove_stale_runs(Duration::from_secs(6 * 3600));
    if !args.ioc_lists.is_empty() {
        println!("# CaseScope IOC hunting benchmark");
        println!("machine: {}", machine());
        println!("binary: {}", args.binary.display());
        println!("runs per figure: {} (medians)\n", args.runs);
        return ioc::run(ioc::IocBench {
            binary: &args.binary,
            events: args.synthetic_events,
            runs: args.runs,
            lists: &args.ioc_lists,
        });
    }
    if !args.detect_rules.is_empty() {
        println!("# CaseScope detection benchmark");
        println!("machine: {}", machine());
        println!("binary: {}", args.binary.display());
        println!("runs per figure: {} (medians)\n", args.runs);
        return detect::run(detect::DetectBench {
            binary: &args.binary,
            corpus: args.corpus.as_deref(),
            rules: &args.detect_rules,
            synthetic_events: args.synthetic_events,
            runs: args.runs,
        });
    }
    println!("# CaseScope ingest benchmark");
    println!("machine: {}", machine());
    println!("binary: {}", args.binary.display());
    println!("runs per figure: {} (medians)\n", args.runs);
    if let Some(corpus) = &args.corpus {
        if corpus.is_dir() {
            let files = evtx_files(corpus);
            // Identical files are one file of a case.
            let mut hashes = std::collections::HashSet::new();
            for f in &files {
                use sha2::Digest;
                hashes.insert(hex::encode(sha2::Sha256::digest(std::fs::read(f)?)));
            }
            ingest::report(
                "EVTX-ATTACK-SAMPLES",
                &args.binary,
                &files,
                hashes.len(),
                args.runs,
                &args.ingest_rules,
            )?;
        } else {
            println!(
                "## EVTX-ATTACK-SAMPLES\nskipped: {} not present\n",
                corpus.display()
            );
        }
    }
    if args.synthetic_events > 0 {
        let dir = scratch_dir()?;
        let path = dir.path().join("synthetic.evtx");
        let status = Command::new(&args.binary)
            .args([
                "synth",
                "evtx",
                "--events",
                &args.synthetic_events.to_string(),
                "--out",
            ])
            .arg(&path)
            .status()?;
        if !status.success() {
            bail!("casescope synth failed");
        }
        ingest::report(
            &format!("synthetic EVTX, {} events", args.synthetic_events),
            &args.binary,
            &[path],
            1,
            args.runs,
            &args.ingest_rules,
        )?;
    }
    Ok(())
}
