//! `casescope login --oidc`: sign in through the server's OpenID Connect provider. The
//! CLI listens on a loopback port (RFC 8252 §7.3), asks the server to begin a sign-in
//! returning there, prints the provider's address for the user's browser, takes the
//! one redirect that comes back with the code, and has the server finish the sign-in.

use crate::client::{ServerArgs, rpc_error};
use crate::session;
use anyhow::{Context, anyhow, bail};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
/// How long the user has to sign in at the provider (the server forgets sooner).
const SIGN_IN_WITHIN: Duration = Duration::from_secs(600);
/// Largest request head read from the browser.
const MAX_HEAD: usize = 16 * 1024;

pub async fn login_oidc(server: &ServerArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port for the provider's redirect")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let channel = session::raw_channel(server, TIMEOUT).await?;
    let mut client = AuthServiceClient::new(channel);
    let begun = client
        .begin_oidc_login(pb::BeginOidcLoginRequest { redirect_uri })
        .await
        .map_err(rpc_error)?
        .into_inner();
    eprintln!(
        "Open this address in a browser to sign in (waiting up to {} minutes):\n\n    {}\n",
        SIGN_IN_WITHIN.as_secs() / 60,
        begun.authorization_url
    );
    let code = tokio::time::timeout(SIGN_IN_WITHIN, callback(&listener, &begun.state))
        .await
        .map_err(|_| {
            anyhow!(
                "no sign-in came back within {} minutes",
                SIGN_IN_WITHIN.as_secs() / 60
            )
        })??;
    let response = client
        .complete_oidc_login(pb::CompleteOidcLoginRequest {
            state: begun.state,
            code,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let Some(pair) = response.tokens else {
        bail!("the server answered the sign-in without tokens");
    };
    let mut whoami = tonic::Request::new(pb::WhoAmIRequest {});
    whoami.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", pair.access_token)
            .parse()
            .context("the access token holds characters a header cannot carry")?,
    );
    let principal = client
        .who_am_i(whoami)
        .await
        .map_err(rpc_error)?
        .into_inner();
    let path = session::remember(server, &principal.username, &pair)?;
    eprintln!(
        "logged in to {} as {} (session kept in {})",
        server.server,
        principal.username,
        path.display()
    );
    Ok(())
}

/// The code of the first redirect to `/callback` carrying `state`.
async fn callback(listener: &TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let target = match read_target(&mut stream).await {
            Ok(target) => target,
            Err(_) => continue,
        };
        let Some(query) = target
            .strip_prefix("/callback")
            .and_then(|rest| rest.strip_prefix('?'))
        else {
            respond(&mut stream, "404 Not Found", "Not the sign-in address.").await;
            continue;
        };
        let param = |name: &str| {
            query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| casescope_runtime::percent::decode(value, true))
            })
        };
        if param("state").as_deref() != Some(state) {
            respond(
                &mut stream,
                "400 Bad Request",
                "This is not the sign-in this command began.",
            )
            .await;
            continue;
        }
        if let Some(error) = param("error") {
            respond(
                &mut stream,
                "200 OK",
                "The sign-in was refused; see the terminal.",
            )
            .await;
            bail!("the identity provider refused the sign-in: {error}");
        }
        let Some(code) = param("code").filter(|c| !c.is_empty()) else {
            respond(
                &mut stream,
                "400 Bad Request",
                "The redirect carries no code.",
            )
            .await;
            bail!("the identity provider sent no code back");
        };
        respond(
            &mut stream,
            "200 OK",
            "Signed in to CaseScope; you can close this window.",
        )
        .await;
        return Ok(code);
    }
}

/// The request target of an HTTP/1 request head.
async fn read_target(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await??;
        if read == 0 || head.len() + read > MAX_HEAD {
            bail!("not an HTTP request");
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => Ok(target.to_string()),
        _ => bail!("not a GET request"),
    }
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body =
        format!("<!doctype html><meta charset=utf-8><title>CaseScope</title><p>{text}</p>\n");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nreferrer-policy: no-referrer\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
