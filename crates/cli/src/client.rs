//! Client commands against a running server (`--server`, env CASESCOPE_SERVER).
//! Human-readable output by default, `--json` for scripts; errors go to stderr with a
//! non-zero exit status and the server's explanation.

use anyhow::anyhow;
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, PageRequest};
use casescope_proto::paging::MAX_PAGE_SIZE;
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// CaseScope server to talk to.
    #[arg(
        long,
        global = true,
        env = "CASESCOPE_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub server: String,
}

#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Create a case and print its id.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Skip identical records that appear in several files of the case.
        #[arg(long)]
        deduplicate_events: bool,
    },
    /// List cases, newest first.
    List {
        /// Maximum number of cases to show (at most the server's maximum page size).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous listing (the cursor it printed).
        #[arg(long, default_value = "")]
        cursor: String,
        /// Include archived cases.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one case.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Archive a case: its evidence goes into one archive with SHA-256 sums, its events
    /// and detections leave the hot stores; read-only until restored.
    Archive { id: String },
    /// Restore an archived case.
    Restore { id: String },
    /// Delete a case and, in every service, all of its data: events, evidence blobs,
    /// uploads, detections. Cannot be undone.
    Delete {
        id: String,
        /// Confirm the deletion (required).
        #[arg(long)]
        yes: bool,
    },
    /// Who may work on a case: add, remove, list members and their roles.
    Members {
        #[command(subcommand)]
        command: crate::admin_cmds::MembersCommand,
    },
}

async fn connect(server: &ServerArgs) -> anyhow::Result<CasesServiceClient<GrpcChannel>> {
    let channel = crate::session::connect(server, Some(Duration::from_secs(30))).await?;
    Ok(CasesServiceClient::new(channel))
}

/// The server asked the client to slow down (RESOURCE_EXHAUSTED with `retry-after`).
#[derive(Debug)]
pub struct Throttled {
    pub wait: Duration,
    pub message: String,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server out of resources: {} (retry after {} s)",
            self.message,
            self.wait.as_secs()
        )
    }
}

impl std::error::Error for Throttled {}

pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::ResourceExhausted
        && let Some(seconds) = status
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    {
        return anyhow::Error::new(Throttled {
            wait: Duration::from_secs(seconds.clamp(1, 60)),
            message: status.message().to_string(),
        });
    }
    let code = match status.code() {
        tonic::Code::Unauthenticated => {
            return anyhow!("not signed in: {}", status.message());
        }
        tonic::Code::PermissionDenied => "not allowed",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::FailedPrecondition => "not allowed now",
        tonic::Code::Aborted => "conflict",
        tonic::Code::Unavailable => "server unavailable",
        tonic::Code::Unimplemented => "not implemented",
        tonic::Code::DeadlineExceeded => "timed out",
        tonic::Code::DataLoss => "data loss",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::ResourceExhausted => "server out of resources",
        _ => "server error",
    };
    anyhow!("{code}: {}", status.message())
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

fn timestamp_text(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|ts| {
        chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
    })
    .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .unwrap_or_default()
}

fn state_text(state: i32) -> &'static str {
    match pb::CaseState::try_from(state) {
        Ok(pb::CaseState::Open) => "open",
        Ok(pb::CaseState::Archived) => "archived",
        Ok(pb::CaseState::Restoring) => "restoring",
        _ => "unknown",
    }
}

fn case_json(case: &pb::Case) -> serde_json::Value {
    let settings = case.settings.unwrap_or_default();
    serde_json::json!({
        "id": case.id.as_ref().map(|id| id.value.clone()).unwrap_or_default(),
        "name": case.name,
        "description": case.description,
        "state": state_text(case.state),
        "version": case.version,
        "file_count": case.file_count,
        "created_at": timestamp_text(case.created_at.as_ref()),
        "updated_at": timestamp_text(case.updated_at.as_ref()),
        "archived_at": case.archived_at.as_ref().map(|ts| timestamp_text(Some(ts))),
        "restore_error": (!case.restore_error.is_empty()).then(|| case.restore_error.clone()),
        "settings": {
            "deduplicate_events": settings.deduplicate_events,
            "search_history_retention_days": settings.search_history_retention_days,
            "evidence_retention_days": settings.evidence_retention_days,
        },
    })
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run_case(server: &ServerArgs, command: CaseCommand) -> anyhow::Result<()> {
    if let CaseCommand::List { limit, .. } = &command
        && *limit > MAX_PAGE_SIZE
    {
        // Refused, not clamped: the caller asked for more than one page can hold.
        return Err(anyhow!(
            "invalid argument: --limit {limit} is above the maximum page size {MAX_PAGE_SIZE}; \
             page with --cursor instead"
        ));
    }
    let mut client = connect(server).await?;
    match command {
        CaseCommand::Create {
            name,
            description,
            deduplicate_events,
        } => {
            let case = client
                .create_case(pb::CreateCaseRequest {
                    name,
                    description,
                    settings: Some(pb::CaseSettings {
                        deduplicate_events,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!("{}", case.id.map(|id| id.value).unwrap_or_default());
        }
        CaseCommand::List {
            limit,
            cursor,
            all,
            json,
        } => {
            let response = client
                .list_cases(pb::ListCasesRequest {
                    page: Some(PageRequest {
                        page_size: limit,
                        cursor,
                    }),
                    include_archived: all,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let next_cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
            if json {
                print_json(&serde_json::json!({
                    "cases": response.cases.iter().map(case_json).collect::<Vec<_>>(),
                    "next_cursor": next_cursor,
                }))?;
            } else {
                println!(
                    "{:<36}  {:<8}  {:>5}  {:<20}  NAME",
                    "ID", "STATE", "FILES", "CREATED"
                );
                for case in &response.cases {
                    println!(
                        "{:<36}  {:<8}  {:>5}  {:<20}  {}",
                        case.id
                            .as_ref()
                            .map(|id| id.value.as_str())
                            .unwrap_or_default(),
                        state_text(case.state),
                        case.file_count,
                        timestamp_text(case.created_at.as_ref()),
                        case.name
                    );
                }
                if !next_cursor.is_empty() {
                    eprintln!("more cases: --cursor {next_cursor}");
                }
            }
        }
        CaseCommand::Show { id, json } => {
            let case = client
                .get_case(pb::GetCaseRequest { id: case_id(&id) })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                print_json(&case_json(&case))?;
            } else {
                let value = case_json(&case);
                for key in [
                    "id",
                    "name",
                    "state",
                    "version",
                    "file_count",
                    "created_at",
                    "updated_at",
                    "archived_at",
                    "restore_error",
                ] {
                    let text = match &value[key] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "-".to_string(),
                        other => other.to_string(),
                    };
                    println!("{key:<12} {text}");
                }
                println!("{:<12} {}", "settings", value["settings"]);
                if !case.description.is_empty() {
                    println!("description\n{}", case.description);
                }
            }
        }
        CaseCommand::Archive { id } => {
            client
                .archive_case(pb::ArchiveCaseRequest { id: case_id(&id) })
                .await
                .map_err(rpc_error)?;
            println!(
                "archiving {id}: its files show status archived when their events and \
                 detections have left the hot stores"
            );
        }
        CaseCommand::Restore { id } => {
            client
                .restore_case(pb::RestoreCaseRequest { id: case_id(&id) })
                .await
                .map_err(rpc_error)?;
            println!(
                "restoring {id}: every SHA-256 of its archive is verified, then its evidence is \
                 re-ingested (`case show` says open, or why the restore was refused)"
            );
        }
        CaseCommand::Members { command } => {
            return crate::admin_cmds::run_members(server, command).await;
        }
        CaseCommand::Delete { id, yes } => {
            if !yes {
                return Err(anyhow!(
                    "deleting case {id} removes its events, evidence files, uploads and \
                     detections for good; add --yes to confirm"
                ));
            }
            client
                .delete_case(pb::DeleteCaseRequest { id: case_id(&id) })
                .await
                .map_err(rpc_error)?;
            println!("deleted {id} (its data is removed from every service in the background)");
        }
    }
    Ok(())
}
