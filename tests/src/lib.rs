//! End-to-end scenarios: the real `casescope` binary, started as OS processes, driven
//! through its CLI and gRPC API, over real NATS and PostgreSQL where the mode needs them.
//! Helpers here start and stop those processes; the scenarios are in `tests/`.

pub mod deployment;
pub mod oidc_provider;
pub mod reports;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `casescope` binary built from this workspace (same target directory as the tests).
pub fn casescope_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let binary = profile_dir.join("casescope");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p casescope-cli` (make test does)",
        binary.display()
    );
    binary
}

/// The first administrator's password every test server is started with.
pub const TEST_ADMIN_PASSWORD: &str = "casescope-test-admin-password";

/// The internal key every test process shares (cluster mode needs one).
pub const TEST_INTERNAL_KEY: &str = "casescope-test-internal-key-0123456789abcdef";

/// A running `casescope serve`, killed when dropped.
///
/// Every CLI call and API call of a test goes through a gateway with a real credential:
/// a server that runs the gateway (all-in-one, or `--service gateway`) is signed into
/// as `admin` when it starts and an API token created; a server running another service
/// alone gets its own gateway process forwarding to it (its `gateway`), since the
/// service answers only calls that come through one.
pub struct Server {
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    /// An API token of `admin` on this server's gateway.
    token: Option<String>,
    /// The gateway in front of a service running alone.
    pub gateway: Option<Box<Server>>,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `casescope serve` with `args` on a free port and waits for /healthz.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        // A port the caller chose (`--listen`, e.g. given to another service first), or
        // a free one.
        let chosen = args
            .iter()
            .position(|a| *a == "--listen")
            .and_then(|i| args.get(i + 1))
            .and_then(|listen| listen.rsplit(':').next())
            .and_then(|port| port.parse::<u16>().ok());
        let port = chosen.unwrap_or_else(casescope_testkit::free_port);
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path().join("serve.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(casescope_binary());
        command.arg("serve");
        if chosen.is_none() {
            command.args(["--listen", &listen]);
        }
        command
            .env("CASESCOPE_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD)
            .env("CASESCOPE_INTERNAL_KEY", TEST_INTERNAL_KEY);
        if !args.contains(&"--data-dir") {
            command.args(["--data-dir"]).arg(dir.path().join("data"));
        }
        command
            .args(args)
            .env(
                "CASESCOPE_LOG",
                std::env::var("CASESCOPE_TEST_LOG").unwrap_or_else(|_| "info,evtx=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        // SAFETY: prctl only affects the forked child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start casescope serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "casescope serve exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if http_get(port, "/healthz").is_some_and(|(code, _)| code == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "casescope serve did not become healthy:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut server = Server {
            child,
            address: format!("http://{listen}"),
            log,
            token: None,
            gateway: None,
            dir,
        };
        let service = args
            .iter()
            .position(|a| *a == "--service")
            .and_then(|i| args.get(i + 1))
            .copied();
        match service {
            None | Some("gateway") => {
                // The administrator's password: the test's own, if it sets one.
                let password = env
                    .iter()
                    .find(|(key, _)| *key == "CASESCOPE_ADMIN_PASSWORD")
                    .map_or(TEST_ADMIN_PASSWORD, |(_, value)| *value);
                server.token = Some(server.sign_in(password));
            }
            Some(name) => server.gateway = Some(Box::new(server.start_gateway(name, args, env))),
        }
        server
    }

    /// Signs in as `admin` and creates an API token for the test's calls.
    fn sign_in(&self, password: &str) -> String {
        let config = self.dir.path().join("config");
        // Unique: a server restarted on the same data already has the earlier ones.
        let token_name = format!("e2e-harness-{}", uuid::Uuid::new_v4().simple());
        let run = |args: &[&str], stdin: &str| {
            let output = self.cli_signed_out(&config, args, stdin);
            assert!(
                output.status.success(),
                "casescope {args:?} failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log_text()
            );
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        };
        run(
            &["login", "--user", "admin", "--password-stdin"],
            &format!("{password}\n"),
        );
        run(&["token", "create", &token_name, "--days", "2"], "")
    }

    /// Runs `casescope <args>` against this server's API with `config` as
    /// XDG_CONFIG_HOME (where `login` keeps sessions), no CASESCOPE_TOKEN, and `input`
    /// on stdin.
    pub fn cli_signed_out(&self, config: &std::path::Path, args: &[&str], input: &str) -> Output {
        self.cli_with(
            &[("XDG_CONFIG_HOME", config.to_str().unwrap())],
            args,
            input,
        )
    }

    /// Runs `casescope <args>` against this server's API with `env` (no CASESCOPE_TOKEN
    /// unless `env` sets one) and `input` on stdin.
    pub fn cli_with(&self, env: &[(&str, &str)], args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut command = Command::new(casescope_binary());
        command
            .args(args)
            .env("CASESCOPE_SERVER", self.api_address())
            .env_remove("CASESCOPE_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("run casescope cli");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A gateway process forwarding to this server, which runs `service` alone (same
    /// NATS and namespace as `args`, a fresh PostgreSQL database).
    fn start_gateway(&self, service: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let value_of = |flag: &str| {
            args.iter()
                .position(|a| *a == flag)
                .and_then(|i| args.get(i + 1))
                .copied()
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let db = runtime.block_on(casescope_testkit::postgres_url());
        drop(runtime);
        let forward = format!("{service}={}", self.address);
        let mut gateway_args = vec![
            "--service",
            "gateway",
            "--database-url",
            db.as_str(),
            "--service-addr",
            forward.as_str(),
        ];
        for flag in ["--nats-url", "--nats-namespace"] {
            if let Some(value) = value_of(flag) {
                gateway_args.extend([flag, value]);
            }
        }
        // The gateway reaches this server by its address, whatever the service uses.
        let mut env = env.to_vec();
        env.push(("CASESCOPE_SERVICE_DISCOVERY", "dns"));
        Server::start(&gateway_args, &env)
    }

    /// Where a test's API calls go: the gateway in front of this server, or itself.
    pub fn api_address(&self) -> &str {
        match &self.gateway {
            Some(gateway) => gateway.api_address(),
            None => &self.address,
        }
    }

    /// The API token for a test's calls (see [`Server::api_address`]).
    pub fn token(&self) -> &str {
        match &self.gateway {
            Some(gateway) => gateway.token(),
            None => self.token.as_deref().expect("a signed-in server"),
        }
    }

    /// A gRPC channel to this server's API (its gateway) carrying the test's credential.
    pub async fn grpc(&self) -> casescope_proto::channel::GrpcChannel {
        use tower::ServiceExt;
        let channel = tonic::transport::Endpoint::from_shared(self.api_address().to_string())
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.api_address()));
        let bearer: http::HeaderValue = format!("Bearer {}", self.token()).parse().unwrap();
        tower::util::BoxCloneSyncService::new(
            casescope_proto::channel::from_transport(channel).map_request(
                move |mut request: http::Request<tonic::body::Body>| {
                    request
                        .headers_mut()
                        .insert("authorization", bearer.clone());
                    request
                },
            ),
        )
    }

    /// The API token this server's own gateway issued to the harness, if it runs one.
    pub fn own_token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `request` with the test's credential.
    pub fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token()).parse().unwrap(),
        );
        request
    }

    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Runs `casescope <args>` against this server (through its gateway, signed in).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(casescope_binary())
            .args(args)
            .env("CASESCOPE_SERVER", self.api_address())
            .env("CASESCOPE_TOKEN", self.token())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .expect("run casescope cli")
    }

    /// Runs `casescope <args>` against this server with no credential at all.
    pub fn cli_anonymous(&self, args: &[&str]) -> Output {
        Command::new(casescope_binary())
            .args(args)
            .env("CASESCOPE_SERVER", self.api_address())
            .env_remove("CASESCOPE_TOKEN")
            .env("XDG_CONFIG_HOME", self.dir.path().join("anonymous"))
            .stdin(Stdio::null())
            .output()
            .expect("run casescope cli")
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // CASESCOPE_TEST_KEEP_LOGS=DIR keeps every server's log (debugging).
        if let Some(dir) = std::env::var_os("CASESCOPE_TEST_KEEP_LOGS") {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(&self.log, dir.join(format!("{}.log", self.port())));
        }
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:`port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// One sample of `server`'s `/metrics` (see [`casescope_testkit::metric_value`]).
pub fn metric(server: &Server, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (code, text) = http_get(server.port(), "/metrics")?;
    assert_eq!(code, 200, "/metrics answered {code}: {text}");
    casescope_testkit::metric_value(&text, name, labels)
}

/// Waits (bounded) until `server`'s log holds `needle` at least `at_least` times.
pub fn wait_for_log(server: &Server, needle: &str, at_least: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.log_text().matches(needle).count() >= at_least {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The most events an ingest server's log says it has written for a file so far
/// (its `ingest progress … written=N` lines); 0 before the first.
pub fn ingest_progress(server: &Server) -> u64 {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("ingest progress"))
        .filter_map(|l| l.split("written=").nth(1))
        .filter_map(|w| w.split_whitespace().next())
        .filter_map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Number of documents of `case` in the OpenSearch `index` at `url`, asked of OpenSearch
/// directly (plain HTTP/1.0 on loopback).
pub fn opensearch_count(url: &str, index: &str, case: &str) -> u64 {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let body = format!(r#"{{"query":{{"term":{{"case_id":"{case}"}}}}}}"#);
    let mut stream = std::net::TcpStream::connect(address).expect("connect to OpenSearch");
    write!(
        stream,
        "POST /{index}/_count HTTP/1.0\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send _count");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read _count");
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    let value: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("OpenSearch _count answer {response:?}: {e}"));
    value["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {value}"))
}

/// The OpenSearch the testkit provides, or `None` after saying the test is skipped
/// (no Java here; CI requires the node, so there it never skips).
pub fn opensearch_or_skip() -> Option<String> {
    let url = casescope_testkit::opensearch_url();
    if url.is_none() {
        eprintln!(
            "skipped: no OpenSearch (install Java 17 and Maven and run \
             scripts/install-opensearch.sh, or set CASESCOPE_TEST_OPENSEARCH_URL)"
        );
    }
    url
}

/// Polls `casescope files` on the cases server until `file_id` of `case` is past
/// parsing (bounded by `within`); returns its record. `log_of` is shown on a timeout.
pub fn wait_until_processed(
    cases: &Server,
    case: &str,
    file_id: &str,
    within: Duration,
    log_of: &Server,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let files = cases.cli(&["files", case, "--json"]);
        assert!(files.status.success(), "{}", stderr(&files));
        let json: serde_json::Value = serde_json::from_str(&stdout(&files)).expect("files JSON");
        let record = json
            .as_array()
            .and_then(|files| files.iter().find(|f| f["file_id"] == file_id))
            .cloned()
            .unwrap_or_else(|| panic!("file {file_id} not listed: {json}"));
        if !matches!(record["status"].as_str(), Some("uploaded" | "parsing")) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "not processed in time:\n{}",
            log_of.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Writes a synthetic EVTX of `events` records (`casescope synth evtx`, seed `seed`)
/// to `path`.
pub fn synth_evtx(path: &std::path::Path, events: u64, seed: u64) {
    let made = Command::new(casescope_binary())
        .args(["synth", "evtx", "--events", &events.to_string()])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(path)
        .output()
        .expect("run casescope synth");
    assert!(made.status.success(), "{}", stderr(&made));
}

/// Starts the cases service alone over `nats` and the PostgreSQL database `db`.
pub fn start_cases_service(nats: &str, db: &str, namespace: &str, env: &[(&str, &str)]) -> Server {
    start_service("cases", nats, db, namespace, &[], env)
}

/// Starts one service alone (`casescope serve --service NAME`) over `nats` and the
/// PostgreSQL database `db`, with `extra` arguments (e.g. `--service-addr`).
pub fn start_service(
    service: &str,
    nats: &str,
    db: &str,
    namespace: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let mut args = vec![
        "--service",
        service,
        "--nats-url",
        nats,
        "--database-url",
        db,
        "--nats-namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    Server::start(&args, env)
}

/// The environment of cluster processes on the OpenSearch event store: `index` with one
/// shard and no replica, and a 2 s reconciler period.
pub fn opensearch_env(opensearch: &str, index: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CASESCOPE_RECONCILE_PERIOD_SECS", "2".to_string()),
        ("CASESCOPE_EVENT_STORE", "opensearch".to_string()),
        ("CASESCOPE_OPENSEARCH_URL", opensearch.to_string()),
        ("CASESCOPE_OPENSEARCH_INDEX", index.to_string()),
        ("CASESCOPE_OPENSEARCH_SHARDS", "1".to_string()),
        ("CASESCOPE_OPENSEARCH_REPLICAS", "0".to_string()),
    ]
}

/// `env` as the pairs [`Server::start`] takes.
pub fn env_refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A fresh NATS subject namespace and OpenSearch index name for one test.
pub fn fresh_names(prefix: &str) -> (String, String) {
    (
        format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
        format!("casescope-e2e-{}", uuid::Uuid::new_v4().simple()),
    )
}

/// Total hits of a case's events through `casescope search` on `server`.
pub fn search_total(server: &Server, case: &str) -> u64 {
    let search = server.cli(&["search", case, "", "--limit", "1", "--json"]);
    assert!(search.status.success(), "{}", stderr(&search));
    let json: serde_json::Value = serde_json::from_str(&stdout(&search)).expect("search JSON");
    json["total_hits"].as_u64().expect("total_hits")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The JSON a successful CLI command printed.
pub fn json(output: Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// Waits (bounded: 5 minutes) until every one of `files` files of `case` is indexed
/// (asked of `cases`) and evaluated (asked of `detect`); returns the detections.
pub fn wait_until_detected(cases: &Server, detect: &Server, case: &str, files: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = json(cases.cli(&["files", case, "--json"]));
        let indexed = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["status"] != "uploaded" && f["status"] != "parsing")
            .count();
        let states = json(detect.cli(&["detect", "status", case, "--json"]));
        let states = states.as_array().unwrap();
        let done = states.iter().filter(|s| s["status"] == "done").count();
        if indexed == files && done == files {
            return states
                .iter()
                .map(|s| s["detections"].as_u64().unwrap())
                .sum();
        }
        assert!(
            Instant::now() < deadline,
            "case {case} not detected in time: {listed} {states:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Whether a file's status says its ingest is over and it was indexed: `indexed`, or
/// one of the downstream stages' (`detecting`, `hunting`, `ready`).
pub fn past_ingest(status: &serde_json::Value) -> bool {
    matches!(
        status.as_str(),
        Some("indexed" | "detecting" | "hunting" | "ready")
    )
}

/// A Sigma rule (id `id`) that fires on every successful logon (4624) of the synthetic
/// evidence.
pub fn logon_rule(id: &str) -> String {
    format!(
        "title: Logons of the synthetic evidence
id: {id}
status: test
description: Fires on every successful logon of the synthetic evidence.
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4624
  condition: selection
level: low
"
    )
}

/// Renders every page of `pdf` to PNG under `dir` with Poppler's `pdftoppm` (Debian's
/// poppler-utils) and returns, per page, the fraction of its pixels that carry ink
/// (measured on a grey rendering of the same page): a blank page is 0.
pub fn pdf_pages(pdf: &std::path::Path, dir: &std::path::Path) -> Vec<f64> {
    std::fs::create_dir_all(dir).unwrap();
    for (kind, prefix) in [("-png", "page"), ("-gray", "grey")] {
        let status = Command::new("pdftoppm")
            .args([kind, "-r", "50"])
            .arg(pdf)
            .arg(dir.join(prefix))
            .status()
            .expect("run pdftoppm (apt-get install poppler-utils; scripts/install-test-deps.sh)");
        assert!(
            status.success(),
            "pdftoppm {kind} failed on {}",
            pdf.display()
        );
    }
    let mut pages: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    pages.sort();
    let pngs = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, pages.len(), "one PNG per page");
    pages
        .iter()
        .map(|path| {
            // Binary PGM: "P5\n<w> <h>\n<max>\n" then one byte per pixel.
            let bytes = std::fs::read(path).unwrap();
            let mut fields = 0;
            let mut start = 0;
            let mut in_token = false;
            for (i, b) in bytes.iter().enumerate() {
                if b.is_ascii_whitespace() {
                    if in_token {
                        fields += 1;
                        in_token = false;
                        if fields == 4 {
                            start = i + 1;
                            break;
                        }
                    }
                } else {
                    in_token = true;
                }
            }
            let pixels = &bytes[start..];
            let ink = pixels.iter().filter(|p| **p < 160).count();
            ink as f64 / pixels.len().max(1) as f64
        })
        .collect()
}

/// The text of `pdf` as Poppler's `pdftotext` reads it (layout kept).
pub fn pdf_text(pdf: &std::path::Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .output()
        .expect("run pdftotext (apt-get install poppler-utils)");
    assert!(
        output.status.success(),
        "pdftotext failed on {}",
        pdf.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
