//! The CLI's credentials: `CASESCOPE_TOKEN` (an API token, for automation), else the
//! session `casescope login` saved for the server, refreshed when its access token is
//! about to expire. Sessions live in `$XDG_CONFIG_HOME/casescope/sessions.json` (else
//! `~/.config/casescope/…`), readable by the user only; refreshes are serialised across
//! processes with a lock file, since a refresh token is spent on use and a second use
//! would end the session.

use crate::client::ServerArgs;
use anyhow::{Context, anyhow, bail};
use casescope_proto::channel::{self, GrpcChannel};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Endpoint;
use tower::ServiceExt;

/// Refresh when the access token has less than this left (seconds).
const REFRESH_MARGIN_SECS: i64 = 60;

/// One saved session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub username: String,
    pub access_token: String,
    pub access_expires_at: i64,
    pub refresh_token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    /// By server URL.
    servers: BTreeMap<String, Saved>,
}

/// The directory of the CLI's files (created owner-only).
fn config_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the session")?,
        )
        .join(".config"),
    };
    let dir = base.join("casescope");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(dir)
}

fn store_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("sessions.json"))
}

fn load() -> anyhow::Result<Store> {
    let path = store_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is damaged; delete it and log in again", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(error) => Err(anyhow!("cannot read {}: {error}", path.display())),
    }
}

/// Writes the store owner-only, atomically (a temporary file renamed over it).
fn save(store: &Store) -> anyhow::Result<()> {
    let path = store_path()?;
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(&serde_json::to_vec_pretty(store)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// An exclusive lock on the store across processes, released when dropped (closing
/// the file releases the lock).
struct StoreLock(#[allow(dead_code)] std::fs::File);

impl StoreLock {
    fn take() -> anyhow::Result<Self> {
        let path = config_dir()?.join("sessions.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("cannot lock {}", path.display());
            }
        }
        Ok(Self(file))
    }
}

fn key(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A connection to the server, without credentials.
pub async fn raw_channel(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> anyhow::Result<GrpcChannel> {
    let endpoint = Endpoint::from_shared(server.server.clone()).map_err(|_| {
        anyhow!(
            "--server {:?} is not a URL like http://127.0.0.1:7700",
            server.server
        )
    })?;
    let endpoint = channel::with_flow_control(endpoint).connect_timeout(Duration::from_secs(5));
    let endpoint = match timeout {
        Some(timeout) => endpoint.timeout(timeout),
        None => endpoint,
    };
    let connected = endpoint.connect().await.with_context(|| {
        format!(
            "cannot reach the CaseScope server at {} (is `casescope serve` running?)",
            server.server
        )
    })?;
    Ok(channel::from_transport(connected))
}

/// A connection that sends the caller's credential on every call (none when the user
/// has neither logged in nor set `CASESCOPE_TOKEN`: the server then says how to).
pub async fn connect(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> anyhow::Result<GrpcChannel> {
    let raw = raw_channel(server, timeout).await?;
    let Some(token) = bearer(server, &raw).await? else {
        return Ok(raw);
    };
    let value: http::HeaderValue = format!("Bearer {token}")
        .parse()
        .context("the credential holds characters a header cannot carry")?;
    Ok(tower::util::BoxCloneSyncService::new(raw.map_request(
        move |mut request: http::Request<tonic::body::Body>| {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
            request
        },
    )))
}

/// The bearer credential for `server`, refreshing a saved session when needed.
async fn bearer(server: &ServerArgs, channel: &GrpcChannel) -> anyhow::Result<Option<String>> {
    if let Some(token) = std::env::var("CASESCOPE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    let server_key = key(&server.server);
    let Some(saved) = load()?.servers.remove(&server_key) else {
        return Ok(None);
    };
    if saved.access_expires_at - REFRESH_MARGIN_SECS > now() {
        return Ok(Some(saved.access_token));
    }
    // Refresh under the lock; another process may have refreshed meanwhile.
    let _lock = StoreLock::take()?;
    let mut store = load()?;
    let Some(saved) = store.servers.get(&server_key).cloned() else {
        return Ok(None);
    };
    if saved.access_expires_at - REFRESH_MARGIN_SECS > now() {
        return Ok(Some(saved.access_token));
    }
    let refreshed = AuthServiceClient::new(channel.clone())
        .refresh(pb::RefreshRequest {
            refresh_token: saved.refresh_token.clone(),
        })
        .await;
    match refreshed {
        Ok(pair) => {
            let pair = pair.into_inner();
            let renewed = saved_from(&saved.username, &pair);
            let token = renewed.access_token.clone();
            store.servers.insert(server_key, renewed);
            save(&store)?;
            Ok(Some(token))
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            store.servers.remove(&server_key);
            save(&store)?;
            bail!(
                "your session on {} has ended ({}); log in again: casescope login --user {}",
                server.server,
                status.message(),
                saved.username
            )
        }
        Err(status) => Err(crate::client::rpc_error(status)),
    }
}

fn saved_from(username: &str, pair: &pb::TokenPair) -> Saved {
    Saved {
        username: username.to_string(),
        access_token: pair.access_token.clone(),
        access_expires_at: pair
            .access_token_expires_at
            .as_ref()
            .map(|t| t.seconds)
            .unwrap_or_default(),
        refresh_token: pair.refresh_token.clone(),
    }
}

/// Saves the session a login returned for `server`.
pub fn remember(
    server: &ServerArgs,
    username: &str,
    pair: &pb::TokenPair,
) -> anyhow::Result<PathBuf> {
    let _lock = StoreLock::take()?;
    let mut store = load()?;
    store
        .servers
        .insert(key(&server.server), saved_from(username, pair));
    save(&store)?;
    store_path()
}

/// Forgets the session saved for `server`, returning it.
pub fn forget(server: &ServerArgs) -> anyhow::Result<Option<Saved>> {
    let _lock = StoreLock::take()?;
    let mut store = load()?;
    let removed = store.servers.remove(&key(&server.server));
    if removed.is_some() {
        save(&store)?;
    }
    Ok(removed)
}

/// Reads a password: the first line of stdin with `--password-stdin`, else from the
/// terminal without echo.
pub fn read_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    use std::io::BufRead;
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(password);
    }
    #[cfg(unix)]
    {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("stdin is not a terminal: pass the password with --password-stdin");
        }
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        // SAFETY: termios calls on fd 0 with a struct they fill; echo is restored below.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::tcgetattr(0, &mut original) } == 0;
        if got {
            let mut quiet = original;
            quiet.c_lflag &= !libc::ECHO;
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
        }
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if got {
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &original) };
        }
        eprintln!();
        read.context("cannot read the password")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
    #[cfg(not(unix))]
    {
        let _ = prompt;
        bail!("pass the password with --password-stdin")
    }
}
