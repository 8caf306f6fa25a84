//! The `casescope` binary: `serve` runs every service in one process on embedded
//! defaults, or one service per process (`--service NAME`) over NATS JetStream and
//! PostgreSQL; the other commands are the analyst's client for a running server.

mod accept;
mod account_cmds;
mod admin_cmds;
mod analyze;
mod channels;
mod client;
mod detect_cmds;
mod evidence_cmds;
mod export_cmds;
mod integration_cmds;
mod ioc_cmds;
mod oidc_login;
mod report_cmds;
mod searches_cmds;
mod serve;
mod serve_gateway;
mod server_http;
mod session;
mod timeline_cmds;
mod web_ui;

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
    /// Detect with Sigma rules over evidence files, with no server and nothing stored;
    /// prints a detection timeline.
    Analyze(analyze::AnalyzeArgs),
    /// Manage cases on a running server.
    Case {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: client::CaseCommand,
    },
    /// Upload evidence files or directories into a case (resumes interrupted uploads).
    Upload {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// JSON field / CSV column holding the event time (default: common names).
        #[arg(long)]
        timestamp_field: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a case's files with status and counts.
    Files {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// Search a case's events (Lucene-style query, e.g. 'EventID:4624 AND TargetUserName:admin*').
    Search {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(default_value = "")]
        query: String,
        /// Start of the time range (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// End of the time range, exclusive (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Newest first.
        #[arg(long)]
        desc: bool,
        #[arg(long)]
        json: bool,
    },
    /// The case timeline: events with their tags, stars, comments and detections
    /// (the search language plus 'tag:x', '-tag:x', 'starred:true', 'commented:true').
    Timeline {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        args: timeline_cmds::TimelineArgs,
    },
    /// Tag events (at most 100 tags per event; tags are lower-cased): --event ID
    /// (repeatable), or every event of --query (a job; waits for it).
    Tag {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        tag: String,
        #[command(flatten)]
        events: timeline_cmds::Selected,
    },
    /// Remove a tag from events (--event ID… or --query Q).
    Untag {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        tag: String,
        #[command(flatten)]
        events: timeline_cmds::Selected,
    },
    /// Star events (or unstar them with --unstar): --event ID… or --query Q.
    Star {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[command(flatten)]
        events: timeline_cmds::Selected,
        #[arg(long)]
        unstar: bool,
    },
    /// Comment on an event (Markdown; '-' or no text reads it from stdin). Prints its id.
    Comment {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        event: String,
        text: Option<String>,
        /// Answer this comment (threads).
        #[arg(long)]
        reply_to: Option<String>,
    },
    /// The comments of a case (or of one event), oldest first.
    Comments {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export a timeline selection (CSV, JSON lines or Timesketch JSONL), streamed, no
    /// row cap; to stdout or --output (resumable with --resume).
    Export {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        args: export_cmds::ExportArgs,
    },
    /// Export a case's tags, stars, comments, saved searches and notes as JSON.
    ExportAnnotations {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The most frequent values of fields over a timeline selection (exact).
    Facets {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        /// Field names (e.g. Computer EventID TargetUserName), at most 10.
        #[arg(required = true)]
        fields: Vec<String>,
        /// The timeline query (annotation clauses included); empty = every event.
        #[arg(long, default_value = "")]
        query: String,
        #[arg(long, default_value_t = 10)]
        top: u32,
        #[arg(long)]
        json: bool,
    },
    /// The events around one event: --events N before and after, or --seconds N.
    Context {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        event: String,
        #[arg(long, default_value_t = 0)]
        events: u32,
        #[arg(long, default_value_t = 0)]
        seconds: u32,
        /// Only the event's computer.
        #[arg(long)]
        same_host: bool,
        #[arg(long)]
        json: bool,
    },
    /// Saved timeline searches: save, list, delete.
    Searches {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: searches_cmds::SearchesCommand,
    },
    /// Your recent timeline searches in a case, newest first.
    History {
        #[command(flatten)]
        server: client::ServerArgs,
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// The case's notes (Markdown, versioned): show, edit (from stdin), versions.
    Notes {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: searches_cmds::NotesCommand,
    },
    /// Integrations (DFIR-IRIS, OpenCTI, webhooks): add, list, test, delete.
    Integration {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: integration_cmds::IntegrationCommand,
    },
    /// DFIR-IRIS: push a case (IOCs, hosts, tagged timeline with comments).
    Iris {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: integration_cmds::IrisCommand,
    },
    /// OpenCTI: enrich a case's IOCs with what OpenCTI knows.
    Opencti {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: integration_cmds::OpenctiCommand,
    },
    /// The outbound delivery log (pushes, enrichments, webhooks): list, get, retry.
    Deliveries {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: integration_cmds::DeliveriesCommand,
    },
    /// Case reports (HTML, Markdown, JSON): create, list, get, download, delete.
    Report {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: report_cmds::ReportCommand,
    },
    /// Manage Sigma rules on a running server: import, list, enable, disable.
    Rules {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: detect_cmds::RulesCommand,
    },
    /// List a case's detections (or count them with --counts).
    Detections {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(flatten)]
        args: detect_cmds::DetectionsArgs,
    },
    /// Run detection on a running server.
    Detect {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: detect_cmds::DetectCommand,
    },
    /// A case's IOCs on a running server: add, import, export, list, delete, hunt,
    /// matches.
    Ioc {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: ioc_cmds::IocCommand,
    },
    /// Make synthetic evidence (for tests and benchmarks).
    Synth {
        #[command(subcommand)]
        command: SynthCommand,
    },
    /// Sign in to a server; the session is kept (owner-only) under the user's config
    /// directory and refreshed as needed. Automation sets CASESCOPE_TOKEN instead.
    Login {
        #[command(flatten)]
        server: client::ServerArgs,
        /// The user name.
        #[arg(long, required_unless_present = "oidc", conflicts_with = "oidc")]
        user: Option<String>,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Sign in through the server's OpenID Connect provider in a browser instead.
        #[arg(long)]
        oidc: bool,
    },
    /// End the saved session on the server.
    Logout {
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Who the server sees: user, role, how authenticated, case roles.
    Whoami {
        #[command(flatten)]
        server: client::ServerArgs,
        #[arg(long)]
        json: bool,
    },
    /// API tokens for automation.
    Token {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: account_cmds::TokenCommand,
    },
    /// Users (administrators).
    User {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: admin_cmds::UserCommand,
    },
    /// The audit log: list it, verify its hash chain.
    Audit {
        #[command(flatten)]
        server: client::ServerArgs,
        #[command(subcommand)]
        command: admin_cmds::AuditCommand,
    },
}

/// Most bytes read from standard input for a comment or note.
pub const MAX_STDIN_BYTES: u64 = 1024 * 1024;

#[derive(Subcommand)]
enum SynthCommand {
    /// Write a valid EVTX file of realistic Security and Sysmon events.
    Evtx {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
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

/// mimalloc: parsing and indexing allocate and free many small strings per event, on
/// several threads; glibc's allocator spent about a fifth of ingest CPU doing that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the bindings name no constant
/// for it; their numbering of the options around it is the same).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// One-shot analysis: freed memory stays with the process for reuse instead of being
/// given back to the OS and faulted in again. Parser threads allocate each event and
/// evaluator threads free it; with purging on, the kernel zeroed ~9,000 fresh (huge)
/// pages on 200,000 events, 6 % of the CPU time. The process is short-lived and its
/// peak is bounded by the pipeline, so nothing is held that would not be used again.
///
/// And no transparent huge pages: each first touch of one zeroed 2 MiB, so loading the
/// rules (some 60 MiB of heap) took ~150 MiB RSS, and when the kernel had to compact
/// memory to find huge pages, 0.3–0.5 s of system time (measured: 90 MiB and ~0.1 s
/// of system time steadily without them, for the same user time).
fn keep_freed_memory() {
    // SAFETY: mimalloc's documented option API, called before any other thread exists
    // (the options are not synchronised); -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // The allocator has asked for huge pages for its arena by now: the process opts
    // out instead (Linux; elsewhere the call fails and changes nothing).
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and affects only this process.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    // Both ring and aws-lc-rs may be linked; rustls needs one chosen process-wide.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // A client command writing into a closed pipe (`casescope files | head`) ends
        // quietly, as command-line tools do. Never for `serve`: a peer closing a socket
        // must not kill the server.
        // SAFETY: called before any other thread exists; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let cli = match cli.command {
        // CPU work on plain threads: no async runtime is needed or blocked.
        Command::Analyze(args) => {
            keep_freed_memory();
            return match analyze::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        command => Cli { command },
    };
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
            Command::Analyze(_) => Err(anyhow::anyhow!(
                "analyze runs before the async runtime starts"
            )),
            Command::Case { server, command } => client::run_case(&server, command).await,
            Command::Upload {
                server,
                case,
                paths,
                timestamp_field,
                json,
            } => evidence_cmds::upload(&server, case, paths, timestamp_field, json).await,
            Command::Files { server, case, json } => {
                evidence_cmds::files(&server, case, json).await
            }
            Command::Search {
                server,
                case,
                query,
                from,
                to,
                limit,
                desc,
                json,
            } => evidence_cmds::search(&server, case, query, from, to, limit, desc, json).await,
            Command::Timeline { server, args } => timeline_cmds::timeline(&server, args).await,
            Command::Tag {
                server,
                case,
                tag,
                events,
            } => timeline_cmds::tag(&server, case, tag, events, true).await,
            Command::Untag {
                server,
                case,
                tag,
                events,
            } => timeline_cmds::tag(&server, case, tag, events, false).await,
            Command::Star {
                server,
                case,
                events,
                unstar,
            } => timeline_cmds::star(&server, case, events, !unstar).await,
            Command::Comment {
                server,
                case,
                event,
                text,
                reply_to,
            } => timeline_cmds::comment(&server, case, event, text, reply_to).await,
            Command::Comments {
                server,
                case,
                event,
                json,
            } => timeline_cmds::comments(&server, case, event, json).await,
            Command::Export { server, args } => export_cmds::export(&server, args).await,
            Command::ExportAnnotations {
                server,
                case,
                output,
            } => export_cmds::export_annotations(&server, case, output).await,
            Command::Facets {
                server,
                case,
                fields,
                query,
                top,
                json,
            } => timeline_cmds::facets(&server, case, fields, query, top, json).await,
            Command::Context {
                server,
                case,
                event,
                events,
                seconds,
                same_host,
                json,
            } => {
                timeline_cmds::context(&server, case, event, events, seconds, same_host, json).await
            }
            Command::Searches { server, command } => {
                searches_cmds::run_searches(&server, command).await
            }
            Command::History { server, case, json } => {
                searches_cmds::history(&server, case, json).await
            }
            Command::Notes { server, command } => searches_cmds::run_notes(&server, command).await,
            Command::Report { server, command } => report_cmds::run(&server, command).await,
            Command::Integration { server, command } => {
                integration_cmds::run_integration(&server, command).await
            }
            Command::Iris { server, command } => integration_cmds::run_iris(&server, command).await,
            Command::Opencti { server, command } => {
                integration_cmds::run_opencti(&server, command).await
            }
            Command::Deliveries { server, command } => {
                integration_cmds::run_deliveries(&server, command).await
            }
            Command::Rules { server, command } => detect_cmds::run_rules(&server, command).await,
            Command::Detections { server, args } => {
                detect_cmds::run_detections(&server, args).await
            }
            Command::Detect { server, command } => detect_cmds::run_detect(&server, command).await,
            Command::Ioc { server, command } => ioc_cmds::run(&server, command).await,
            Command::Synth {
                command: SynthCommand::Evtx { events, out, seed },
            } => evidence_cmds::synth_evtx(events, &out, seed),
            Command::Login {
                server,
                user,
                password_stdin,
                oidc,
            } => match user {
                Some(user) if !oidc => account_cmds::login(&server, user, password_stdin).await,
                _ => oidc_login::login_oidc(&server).await,
            },
            Command::Logout { server } => account_cmds::logout(&server).await,
            Command::Whoami { server, json } => account_cmds::whoami(&server, json).await,
            Command::Token { server, command } => account_cmds::run_token(&server, command).await,
            Command::User { server, command } => admin_cmds::run_user(&server, command).await,
            Command::Audit { server, command } => admin_cmds::run_audit(&server, command).await,
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
