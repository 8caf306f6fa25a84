//! A real S3-compatible server for the suites: SeaweedFS (`weed server -s3`), built
//! from the Go module proxy by `scripts/install-seaweedfs.sh` into
//! `~/.cache/casescope-tools/bin/weed` (or `CASESCOPE_TEST_WEED`). One private server
//! per test process on loopback, with one identity (access key and secret below: the
//! suites exercise request signing) and buckets created on first write; every test uses
//! a bucket of its own. Without the binary [`s3`] answers `None` and the caller skips
//! saying so; with `CASESCOPE_TEST_REQUIRE_S3=1` (CI) that fails the test instead.

use crate::{Server, free_port, scratch_dir, spawn_dying_with_us, wait_for_port};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The test server's identity.
pub const ACCESS_KEY_ID: &str = "casescope-test";
pub const SECRET_ACCESS_KEY: &str = "casescope-test-secret";

pub(crate) static S3: OnceLock<Option<Result<Server, String>>> = OnceLock::new();

/// Where the S3 test server is and how to sign in.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
}

impl S3Server {
    /// The `CASESCOPE_*` variables that put an ingest service's evidence in `bucket`.
    pub fn env(&self, bucket: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CASESCOPE_EVIDENCE_STORE", "s3".into()),
            ("CASESCOPE_S3_ENDPOINT", self.endpoint.clone()),
            ("CASESCOPE_S3_BUCKET", bucket.into()),
            ("CASESCOPE_S3_ACCESS_KEY_ID", self.access_key_id.into()),
            (
                "CASESCOPE_S3_SECRET_ACCESS_KEY",
                self.secret_access_key.into(),
            ),
        ]
    }
}

fn required() -> bool {
    std::env::var("CASESCOPE_TEST_REQUIRE_S3").is_ok_and(|value| value == "1")
}

fn weed_binary() -> Option<PathBuf> {
    std::env::var_os("CASESCOPE_TEST_WEED")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/casescope-tools/bin/weed"))
        })
        .filter(|path| path.is_file())
}

fn start() -> Option<Result<Server, String>> {
    let Some(weed) = weed_binary() else {
        if required() {
            return Some(Err(
                "CASESCOPE_TEST_REQUIRE_S3=1 but SeaweedFS is not installed: run \
                 scripts/install-seaweedfs.sh"
                    .into(),
            ));
        }
        return None;
    };
    Some(launch(&weed))
}

fn launch(weed: &std::path::Path) -> Result<Server, String> {
    let dir = scratch_dir("casescope-s3-")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    let config = dir.join("s3.json");
    let identities = serde_json::json!({"identities": [{
        "name": "casescope",
        "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]});
    std::fs::write(&config, identities.to_string())
        .map_err(|e| format!("write {}: {e}", config.display()))?;
    let log = std::fs::File::create(dir.join("weed.log")).map_err(|e| format!("log: {e}"))?;
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let s3_port = ports[6];
    let mut command = Command::new(weed);
    command
        .current_dir(&dir)
        .arg("server")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-master.port={}", ports[0]))
        .arg(format!("-master.port.grpc={}", ports[1]))
        .arg(format!("-volume.port={}", ports[2]))
        .arg(format!("-volume.port.grpc={}", ports[3]))
        .arg(format!("-filer.port={}", ports[4]))
        .arg(format!("-filer.port.grpc={}", ports[5]))
        .arg("-s3")
        .arg(format!("-s3.port={s3_port}"))
        .arg(format!("-s3.port.grpc={}", ports[7]))
        .args([
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket",
        ])
        .arg(format!("-s3.config={}", config.display()))
        .args([
            "-master.telemetry=false",
            "-iam=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| format!("log: {e}"))?)
        .stderr(log);
    let mut child = spawn_dying_with_us(command, libc::SIGKILL)
        .map_err(|e| format!("start {}: {e}", weed.display()))?;
    let log_path = dir.join("weed.log");
    wait_for_port(ports[4], "SeaweedFS filer", &mut child, &log_path)?;
    wait_for_port(s3_port, "SeaweedFS S3", &mut child, &log_path)?;
    // The S3 port listens before the gateway serves (it waits for the filer): wait for
    // an HTTP answer (an unsigned ListBuckets is refused, which is an answer).
    wait_for_http(s3_port, &mut child, &log_path)?;
    Ok(Server {
        url: format!("http://127.0.0.1:{s3_port}"),
        owned: Some((child.id(), dir)),
    })
}

/// Waits (at most 60 s) until `port` answers an HTTP request with a status line.
fn wait_for_http(
    port: u16,
    child: &mut std::process::Child,
    log: &std::path::Path,
) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut head = [0u8; 12];
            if stream
                .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .is_ok()
                && stream.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
            {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "SeaweedFS exited with {status} before serving S3:\n{log}"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!(
        "SeaweedFS S3 on port {port} gave no HTTP answer within 60 s"
    ))
}

/// The S3 test server of this process (see the module docs); `None` when SeaweedFS is
/// not installed and CI did not require it (the caller skips and says so).
pub fn s3() -> Option<S3Server> {
    let _guard = crate::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match S3.get_or_init(start) {
        None => None,
        Some(Ok(server)) => Some(S3Server {
            endpoint: server.url.clone(),
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
        }),
        Some(Err(message)) => panic!("cannot start the S3 test server: {message}"),
    }
}

/// [`s3`], or `None` after printing why the test is skipped.
pub fn s3_or_skip(test: &str) -> Option<S3Server> {
    let server = s3();
    if server.is_none() {
        eprintln!(
            "{test}: skipped, no S3 test server (run scripts/install-seaweedfs.sh; CI sets CASESCOPE_TEST_REQUIRE_S3=1)"
        );
    }
    server
}
