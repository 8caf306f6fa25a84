//! `make bench-search`: the analyst's queries on a large case in all-in-one mode, through
//! the real `casescope serve` (release) and its public gRPC API. Builds a case of N
//! synthetic events (10,000,000 by default), tags 100,000 of them, then measures p50/p95
//! of each query shape alone (a timeline page of 100, as the web app asks), the same mix
//! from 8 concurrent clients, and the export rate. The baseline, measured in the same
//! run, is the empty query's page: every figure is also given as a ratio to it. Prints
//! the machine and the index size. Measures; asserts nothing.

use anyhow::{Context, bail};
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, EventId, PageRequest, SortOrder, TimeRange};
use casescope_proto::gateway::v1 as gw;
use casescope_proto::gateway::v1::admin_service_client::AdminServiceClient;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const PASSWORD: &str = "a benchmark password 123";
/// Events per synthetic file (about 1.2 GB each; a file is deleted once uploaded).
const EVENTS_PER_FILE: u64 = 1_000_000;

#[derive(Parser)]
struct Args {
    /// The casescope binary to measure (a release build).
    #[arg(long)]
    binary: PathBuf,
    /// Events in the case.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Timings per query shape (p50/p95 over them).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Concurrent clients of the mixed run.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Events to tag for the tag-filter shape.
    #[arg(long, default_value_t = 100_000)]
    tagged: u64,
}

struct Server {
    child: Child,
    port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

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
        .unwrap_or(17_998)
}

fn start(binary: &Path) -> anyhow::Result<Server> {
    let dir = crate_scratch()?;
    let port = free_port();
    let data = dir.path().join("data");
    let child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .env("CASESCOPE_LOG", "warn")
        .env("CASESCOPE_ADMIN_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start casescope serve")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("casescope serve did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        child,
        port,
        data,
        _dir: dir,
    })
}

fn crate_scratch() -> anyhow::Result<tempfile::TempDir> {
    let root = std::env::temp_dir().join("casescope-bench");
    std::fs::create_dir_all(&root)?;
    Ok(tempfile::Builder::new()
        .prefix("search-")
        .tempdir_in(&root)?)
}

fn cli(binary: &Path, port: u16, token: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(args)
        .env("CASESCOPE_SERVER", format!("http://127.0.0.1:{port}"))
        .env("CASESCOPE_TOKEN", token)
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

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One query shape: what a timeline request of the web app asks.
#[derive(Clone)]
enum Shape {
    Page(pb::TimelineQuery),
    Histogram(pb::TimelineQuery),
    Facet(pb::TimelineQuery, &'static str),
}

fn query(text: &str) -> pb::TimelineQuery {
    pb::TimelineQuery {
        query: text.into(),
        ..Default::default()
    }
}

type Client = CasesServiceClient<tonic::service::interceptor::InterceptedService<Channel, Auth>>;

#[derive(Clone)]
struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

async fn run_shape(client: &mut Client, case: &str, shape: &Shape) -> anyhow::Result<Duration> {
    let case_id = Some(CaseId {
        value: case.to_string(),
    });
    let started = Instant::now();
    match shape {
        Shape::Page(q) => {
            client
                .search_timeline(pb::SearchTimelineRequest {
                    case_id,
                    query: Some(q.clone()),
                    page: Some(PageRequest {
                        page_size: 100,
                        cursor: String::new(),
                    }),
                    backward: false,
                    include_raw: false,
                })
                .await?;
        }
        Shape::Histogram(q) => {
            client
                .timeline_histogram(pb::TimelineHistogramRequest {
                    case_id,
                    query: Some(q.clone()),
                    interval: None,
                    max_buckets: 200,
                })
                .await?;
        }
        Shape::Facet(q, field) => {
            client
                .timeline_facets(pb::TimelineFacetsRequest {
                    case_id,
                    query: Some(q.clone()),
                    fields: vec![field.to_string()],
                    top: 10,
                })
                .await?;
        }
    }
    Ok(started.elapsed())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |t| t.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let server = start(&args.binary)?;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", server.port))?
        .connect()
        .await?;
    let login = AuthServiceClient::new(channel.clone())
        .login(gw::LoginRequest {
            username: "admin".into(),
            password: PASSWORD.into(),
        })
        .await?
        .into_inner();
    let access = login.tokens.context("no tokens")?.access_token;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {access}").parse()?;
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), Auth(bearer));
    let expires = std::time::SystemTime::now() + Duration::from_secs(2 * 86_400);
    let token = admin
        .create_api_token(gw::CreateApiTokenRequest {
            name: "bench-search".into(),
            expires_at: Some(prost_types::Timestamp::from(expires)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .token_value;
    let auth = Auth(format!("Bearer {token}").parse()?);
    let mut client: Client = CasesServiceClient::with_interceptor(channel.clone(), auth.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let case = cli(
        &args.binary,
        server.port,
        &token,
        &["case", "create", "bench-search"],
    )?
    .trim()
    .to_string();

    // The case: N synthetic events, one file of up to 1,000,000 at a time.
    let started = Instant::now();
    let files = args.events.div_ceil(EVENTS_PER_FILE);
    for n in 0..files {
        let events = EVENTS_PER_FILE.min(args.events - n * EVENTS_PER_FILE);
        let scratch = crate_scratch()?;
        let path = scratch.path().join(format!("synthetic-{n}.evtx"));
        cli(
            &args.binary,
            server.port,
            &token,
            &[
                "synth",
                "evtx",
                "--events",
                &events.to_string(),
                "--seed",
                &(1000 + n).to_string(),
                "--out",
                path.to_str().unwrap_or_default(),
            ],
        )?;
        cli(
            &args.binary,
            server.port,
            &token,
            &["upload", &case, path.to_str().unwrap_or_default()],
        )?;
    }
    loop {
        let listed: serde_json::Value = serde_json::from_str(&cli(
            &args.binary,
            server.port,
            &token,
            &["files", &case, "--json"],
        )?)?;
        let listed = listed.as_array().cloned().unwrap_or_default();
        let processed = listed
            .iter()
            .all(|f| !matches!(f["status"].as_str(), Some("uploaded" | "parsing")));
        if processed && listed.len() as u64 == files {
            if let Some(failed) = listed.iter().find(|f| f["status"] == "failed") {
                bail!("a file failed: {failed}");
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Detection runs after indexing: measured queries must not share the CPU with it.
    loop {
        let states: serde_json::Value = serde_json::from_str(&cli(
            &args.binary,
            server.port,
            &token,
            &["detect", "status", &case, "--json"],
        )?)?;
        let states = states.as_array().cloned().unwrap_or_default();
        if states.len() as u64 == files && states.iter().all(|s| s["status"] == "done") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "case: {} events indexed and detected in {:.0?}; index {:.2} GiB (data directory {:.2} GiB)",
        args.events,
        started.elapsed(),
        dir_size(&server.data.join("index")) as f64 / (1u64 << 30) as f64,
        dir_size(&server.data) as f64 / (1u64 << 30) as f64
    );

    // Tag `tagged` events: the first of the time-ordered case, in bulk requests.
    let tagging = Instant::now();
    let mut cursor = String::new();
    let mut tagged = 0u64;
    while tagged < args.tagged {
        let page = client
            .search_timeline(pb::SearchTimelineRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                query: Some(query("")),
                page: Some(PageRequest {
                    page_size: 1000,
                    cursor: cursor.clone(),
                }),
                backward: false,
                include_raw: false,
            })
            .await?
            .into_inner();
        // Every other event: tagged events spread over the first part of the case.
        let ids: Vec<EventId> = page
            .events
            .iter()
            .step_by(2)
            .filter_map(|e| e.event_id.clone())
            .collect();
        tagged += ids.len() as u64;
        client
            .tag_events(pb::TagEventsRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                event_ids: ids,
                tag: "bench".into(),
                matching: None,
            })
            .await?;
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    println!("tagged {tagged} events in {:.1?}", tagging.elapsed());

    // A time window inside the case (the middle hour of the first file).
    let first = client
        .search_timeline(pb::SearchTimelineRequest {
            case_id: Some(CaseId {
                value: case.clone(),
            }),
            query: Some(query("")),
            page: Some(PageRequest {
                page_size: 1,
                cursor: String::new(),
            }),
            backward: false,
            include_raw: false,
        })
        .await?
        .into_inner();
    let start_micros = first
        .events
        .first()
        .and_then(|e| e.timestamp.as_ref())
        .map(|t| t.seconds * 1_000_000)
        .unwrap_or(0);
    let window = pb::TimelineQuery {
        time_range: Some(TimeRange {
            start_unix_micros: Some(start_micros + 3_600_000_000),
            end_unix_micros: Some(start_micros + 7_200_000_000),
        }),
        sort: SortOrder::Ascending as i32,
        ..Default::default()
    };
    let shapes: Vec<(&str, Shape)> = vec![
        ("empty query (baseline)", Shape::Page(query(""))),
        ("* (everything)", Shape::Page(query("*"))),
        (
            "field term EventID:4624",
            Shape::Page(query("EventID:4624")),
        ),
        (
            "trailing wildcard TargetUserName:adm*",
            Shape::Page(query("TargetUserName:adm*")),
        ),
        (
            "leading wildcard Image:*\\\\whoami.exe",
            Shape::Page(query("Image:*\\\\whoami.exe")),
        ),
        (
            "phrase \"whoami /all\"",
            Shape::Page(query("\"whoami /all\"")),
        ),
        (
            "numeric range EventID:[4624 TO 4634]",
            Shape::Page(query("EventID:[4624 TO 4634]")),
        ),
        ("time-range page of 100", Shape::Page(window)),
        (
            "histogram EventID:4624",
            Shape::Histogram(query("EventID:4624")),
        ),
        ("facet top-10 Computer", Shape::Facet(query(""), "Computer")),
        (
            "facet top-10 TargetUserName, EventID:4624",
            Shape::Facet(query("EventID:4624"), "TargetUserName"),
        ),
        (
            "tag filter tag:bench AND EventID:4624",
            Shape::Page(query("tag:bench AND EventID:4624")),
        ),
    ];
    // Warm-up: each shape once (caches, mmap).
    for (_, shape) in &shapes {
        run_shape(&mut client, &case, shape).await?;
    }
    let mut baseline = Duration::ZERO;
    println!(
        "\nalone ({} runs each): p50, p95, p50 / baseline p50",
        args.runs
    );
    for (name, shape) in &shapes {
        let mut times = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            times.push(run_shape(&mut client, &case, shape).await?);
        }
        times.sort();
        let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
        if baseline.is_zero() {
            baseline = p50;
        }
        println!(
            "  {name:<45} {:>8.1} ms {:>8.1} ms  x{:.2}",
            ms(p50),
            ms(p95),
            p50.as_secs_f64() / baseline.as_secs_f64()
        );
    }

    // The same mix from concurrent clients.
    let mixed = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        let mut client: Client =
            CasesServiceClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(64 * 1024 * 1024);
        let (shapes, case, runs) = (shapes.clone(), case.clone(), args.runs);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for round in 0..runs {
                let (_, shape) = &shapes[(n + round) % shapes.len()];
                times.push(run_shape(&mut client, &case, shape).await?);
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    println!(
        "\n{} clients, the mix ({} queries in {:.1?}): p50 {:.1} ms, p95 {:.1} ms",
        args.clients,
        all.len(),
        mixed.elapsed(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.95))
    );

    // Export: the whole case as JSON lines, to a file, through the CLI.
    let scratch = crate_scratch()?;
    let out = scratch.path().join("export.jsonl");
    let export = Instant::now();
    cli(
        &args.binary,
        server.port,
        &token,
        &[
            "export",
            &case,
            "--format",
            "jsonl",
            "--output",
            out.to_str().unwrap_or_default(),
        ],
    )?;
    let elapsed = export.elapsed();
    println!(
        "export: {} events ({:.2} GiB of JSON lines) in {:.1?}: {:.0} events/s",
        args.events,
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) as f64 / (1u64 << 30) as f64,
        elapsed,
        args.events as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
