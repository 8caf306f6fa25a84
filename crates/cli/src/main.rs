//! The `casescope` binary: `serve` runs every service in one process on embedded
//! defaults, or one service per process (`--service NAME`) over NATS JetStream and
//! PostgreSQL; the other commands are the analyst's client for a running server.

mod client;
mod serve;
mod server_http;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "casescope", version, about = "CaseScope: DFIR case platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CaseScope services (all in one process unless --service is given).
    Serve(ServeArgs),
    /// Manage cases on a running server.
    Case {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: client::CaseCommand,
    },
}

/// Flags of `serve`; each overrides the matching CASESCOPE_* variable and config file key.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file (env CASESCOPE_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run only this service: cases, ingest, detect, ioc, report, integrations, gateway.
    #[arg(long)]
    service: Option<String>,
    /// Address to listen on [default: 127.0.0.1:7700].
    #[arg(long)]
    listen: Option<String>,
    /// Directory for embedded storage [default: ./casescope-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL of this service's database (one-service mode).
    #[arg(long)]
    database_url: Option<String>,
    /// NATS URL (one-service mode).
    #[arg(long)]
    nats_url: Option<String>,
    /// Prefix for NATS subjects and stream names (to share a NATS account).
    #[arg(long)]
    nats_namespace: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// gRPC address of another service this one calls, as NAME=URL (repeatable),
    /// e.g. --service-addr cases=http://cases:7700.
    #[arg(long = "service-addr", value_name = "NAME=URL")]
    service_addrs: Vec<String>,
}

fn main() -> ExitCode {
    // Both ring and aws-lc-rs may be linked; rustls needs one chosen process-wide.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Case { server, command } => client::run_case(&server, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
