//! `casescope ioc …`: the analyst's client of the ioc service — add, import, export,
//! list and delete a case's IOCs (or a global list's: `list:<name or id>` in place of
//! the case), hunt on demand, read the matches, and manage global lists
//! (`ioc lists …`, in [`lists`]).
//!
//! Values come from threat intelligence and matches from evidence: table cells are
//! printed with control characters escaped; `--json` output is escaped by the encoder.

use crate::client::{ServerArgs, rpc_error};
use crate::detect_cmds::{cell, escaped, ignore_broken_pipe, print_json};
use anyhow::{Context, bail};
use casescope_ioc::IocType;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, FileId, IocId, PageRequest};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::import_iocs_chunk::Part;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Bytes per import message (the server's default chunk limit).
const CHUNK: usize = 1024 * 1024;
const PAGE_SIZE: u32 = 500;
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

mod lists;
mod matches;

pub use matches::MatchesArgs;

#[derive(Subcommand, Debug)]
pub enum IocCommand {
    /// Add one IOC to a case (refanged and canonicalised; its type's rules apply).
    Add(AddArgs),
    /// Import IOCs from a file: CSV (DFIR-IRIS or MISP header, or type,value), a plain
    /// list (one value per line), a STIX 2.1 bundle or a MISP event (JSON).
    Import(ImportArgs),
    /// Export a case's IOCs (or a list's) as CSV, a STIX 2.1 bundle or a MISP event.
    Export {
        /// The case, or `list:<name or id>` for a global list.
        case: String,
        /// csv, stix or misp.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List a case's IOCs, newest first.
    List(ListArgs),
    /// Delete an IOC and its matches (a list's IOC: in every case).
    Delete {
        /// The case, or `list:<name or id>` for a global list.
        case: String,
        id: String,
    },
    /// Hunt the case's files again (all of them, or --file ones) with its IOCs.
    Hunt {
        case: String,
        #[arg(long = "file", value_name = "FILE_ID")]
        files: Vec<String>,
    },
    /// List a case's IOC matches by event time (or count them with --counts).
    Matches(MatchesArgs),
    /// The hunt state of each file of the case.
    States {
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// Global IOC lists, hunted in every case or in chosen cases. Their IOCs are
    /// managed with add/import/export/list/delete given `list:<name or id>` as the case.
    Lists {
        #[command(subcommand)]
        command: lists::ListsCommand,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The case, or `list:<name or id>` for a global list.
    pub case: String,
    /// ip, cidr, domain, hostname, url, email, md5, sha1, sha256, sha512, imphash,
    /// file_name, file_path, registry_key, user_name, command_line, process_name,
    /// service_name, named_pipe, mutex, user_agent or other (MISP names too).
    pub ioc_type: String,
    pub value: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// clear, green, amber (default), amber+strict or red.
    #[arg(long)]
    pub tlp: Option<String>,
    /// 0 to 100 (default 50).
    #[arg(long)]
    pub confidence: Option<u32>,
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Keep it, but do not hunt it.
    #[arg(long)]
    pub disabled: bool,
    /// No longer hunted after this time (RFC 3339).
    #[arg(long)]
    pub expires: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The case, or `list:<name or id>` for a global list.
    pub case: String,
    pub file: PathBuf,
    /// csv, text, stix or misp (default: from the file's name and content).
    #[arg(long)]
    pub format: Option<String>,
    /// Check and count without creating anything.
    #[arg(long)]
    pub dry_run: bool,
    /// MISP: also attributes not marked to_ids.
    #[arg(long)]
    pub all_attributes: bool,
    /// Source recorded on IOCs that do not name one (default: import:<file name>).
    #[arg(long, default_value = "")]
    pub source: String,
    /// TLP of IOCs that do not carry one.
    #[arg(long)]
    pub tlp: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The case, or `list:<name or id>` for a global list.
    pub case: String,
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Case-insensitive part of the value.
    #[arg(long, default_value = "")]
    pub contains: String,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

async fn connect(server: &ServerArgs) -> anyhow::Result<IocServiceClient<GrpcChannel>> {
    let channel = crate::session::connect(server, None).await?;
    Ok(IocServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

/// Whose IOCs a command addresses: a case, or a global list (`list:<name or id>`).
struct Target {
    case_id: Option<CaseId>,
    list_id: String,
}

impl Target {
    fn is_list(&self) -> bool {
        !self.list_id.is_empty()
    }
}

async fn target(client: &mut IocServiceClient<GrpcChannel>, text: &str) -> anyhow::Result<Target> {
    match text.strip_prefix("list:") {
        Some(key) => {
            let list = client
                .get_ioc_list(pb::GetIocListRequest { id: key.into() })
                .await
                .map_err(rpc_error)?
                .into_inner();
            Ok(Target {
                case_id: None,
                list_id: list.id,
            })
        }
        None => Ok(Target {
            case_id: case_id(text),
            list_id: String::new(),
        }),
    }
}

fn wire_type(name: &str) -> anyhow::Result<i32> {
    use casescope_proto::ioc::v1::IocType as W;
    let kind = IocType::from_name(name).with_context(|| format!("unknown IOC type {name:?}"))?;
    let wire = match kind {
        IocType::Ip => W::Ip,
        IocType::Cidr => W::Cidr,
        IocType::Domain => W::Domain,
        IocType::Hostname => W::Hostname,
        IocType::Url => W::Url,
        IocType::Email => W::Email,
        IocType::Md5 => W::Md5,
        IocType::Sha1 => W::Sha1,
        IocType::Sha256 => W::Sha256,
        IocType::Sha512 => W::Sha512,
        IocType::Imphash => W::Imphash,
        IocType::FileName => W::FileName,
        IocType::FilePath => W::FilePath,
        IocType::RegistryKey => W::RegistryKey,
        IocType::UserName => W::UserName,
        IocType::CommandLine => W::CommandLine,
        IocType::ProcessName => W::ProcessName,
        IocType::ServiceName => W::ServiceName,
        IocType::NamedPipe => W::NamedPipe,
        IocType::Mutex => W::Mutex,
        IocType::UserAgent => W::UserAgent,
        IocType::Other => W::Other,
    };
    Ok(wire as i32)
}

fn type_name(wire: i32) -> String {
    pb::IocType::try_from(wire)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("IOC_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn wire_tlp(name: &str) -> anyhow::Result<i32> {
    let tlp = casescope_ioc::Tlp::parse(name).with_context(|| {
        format!("unknown TLP {name:?} (clear, green, amber, amber+strict, red)")
    })?;
    Ok(match tlp {
        casescope_ioc::Tlp::Clear => pb::Tlp::Clear,
        casescope_ioc::Tlp::Green => pb::Tlp::Green,
        casescope_ioc::Tlp::Amber => pb::Tlp::Amber,
        casescope_ioc::Tlp::AmberStrict => pb::Tlp::AmberStrict,
        casescope_ioc::Tlp::Red => pb::Tlp::Red,
    } as i32)
}

fn format_of(name: &str) -> anyhow::Result<pb::IocImportFormat> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "csv" => pb::IocImportFormat::Csv,
        "text" | "txt" | "list" => pb::IocImportFormat::TextLines,
        "stix" | "stix2" => pb::IocImportFormat::Stix2Bundle,
        "misp" => pb::IocImportFormat::MispEvent,
        other => bail!("unknown format {other:?} (csv, text, stix or misp)"),
    })
}

fn ioc_json(ioc: &pb::Ioc) -> serde_json::Value {
    serde_json::json!({
        "id": ioc.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        "type": type_name(ioc.ioc_type),
        "value": ioc.value,
        "normalized_value": ioc.normalized_value,
        "description": ioc.description,
        "source": ioc.source,
        "tlp": pb::Tlp::try_from(ioc.tlp).map(|t| t.as_str_name().trim_start_matches("TLP_").to_ascii_lowercase()).unwrap_or_default(),
        "confidence": ioc.confidence,
        "enabled": ioc.enabled,
        "labels": ioc.labels,
        "match_count": ioc.match_count,
        "version": ioc.version,
        "enrichment": serde_json::from_str::<serde_json::Value>(&ioc.enrichment_json).ok(),
    })
}

pub async fn run(server: &ServerArgs, command: IocCommand) -> anyhow::Result<()> {
    let mut client = connect(server).await?;
    match command {
        IocCommand::Add(args) => add(&mut client, args).await,
        IocCommand::Import(args) => import(&mut client, args).await,
        IocCommand::Export {
            case,
            format,
            output,
        } => export(&mut client, &case, &format, output).await,
        IocCommand::List(args) => list(&mut client, args).await,
        IocCommand::Delete { case, id } => {
            let target = target(&mut client, &case).await?;
            let request = pb::DeleteIocRequest {
                case_id: target.case_id.clone(),
                id: Some(IocId { value: id.clone() }),
                list_id: target.list_id.clone(),
            };
            let response = if target.is_list() {
                client.delete_list_ioc(request).await
            } else {
                client.delete_ioc(request).await
            }
            .map_err(rpc_error)?
            .into_inner();
            println!(
                "deleted IOC {id} and its {} matches",
                response.matches_deleted
            );
            Ok(())
        }
        IocCommand::Hunt { case, files } => {
            let response = if files.is_empty() {
                client
                    .hunt_case(pb::HuntCaseRequest {
                        case_id: case_id(&case),
                    })
                    .await
            } else {
                client
                    .hunt_files(pb::HuntFilesRequest {
                        case_id: case_id(&case),
                        file_ids: files.into_iter().map(|value| FileId { value }).collect(),
                    })
                    .await
            }
            .map_err(rpc_error)?
            .into_inner();
            println!(
                "{} files scheduled for a full hunt with {} enabled IOCs",
                response.files_scheduled, response.enabled_iocs
            );
            Ok(())
        }
        IocCommand::Matches(args) => matches::matches(&mut client, args).await,
        IocCommand::States { case, json } => matches::states(&mut client, &case, json).await,
        IocCommand::Lists { command } => lists::run(&mut client, command).await,
    }
    .or_else(ignore_broken_pipe)
}

async fn add(client: &mut IocServiceClient<GrpcChannel>, args: AddArgs) -> anyhow::Result<()> {
    let expires_at = match &args.expires {
        Some(text) => Some(casescope_proto::time::micros_to_timestamp(
            chrono::DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("--expires {text:?}: not an RFC 3339 time"))?
                .timestamp_micros(),
        )),
        None => None,
    };
    let target = target(client, &args.case).await?;
    let request = pb::CreateIocRequest {
        case_id: target.case_id.clone(),
        list_id: target.list_id.clone(),
        ioc_type: wire_type(&args.ioc_type)?,
        value: args.value,
        description: args.description,
        source: String::new(),
        tlp: args.tlp.as_deref().map(wire_tlp).transpose()?.unwrap_or(0),
        confidence: args.confidence,
        enabled: Some(!args.disabled),
        labels: args.labels,
        first_seen: None,
        last_seen: None,
        expires_at,
    };
    let ioc = if target.is_list() {
        client.create_list_ioc(request).await
    } else {
        client.create_ioc(request).await
    }
    .map_err(rpc_error)?
    .into_inner();
    if args.json {
        return print_json(&ioc_json(&ioc));
    }
    println!(
        "{} {} {}",
        ioc.id.map(|i| i.value).unwrap_or_default(),
        type_name(ioc.ioc_type),
        escaped(&ioc.normalized_value)
    );
    Ok(())
}

async fn import(
    client: &mut IocServiceClient<GrpcChannel>,
    args: ImportArgs,
) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let format = match &args.format {
        Some(format) => format_of(format)?,
        None => {
            let mut head = vec![0u8; 4096];
            let n = file.read(&mut head).unwrap_or(0);
            head.truncate(n);
            file = std::fs::File::open(&args.file)?;
            match casescope_ioc::import::Format::guess(&name, &head) {
                Some(casescope_ioc::import::Format::Csv) => pb::IocImportFormat::Csv,
                Some(casescope_ioc::import::Format::Text) => pb::IocImportFormat::TextLines,
                Some(casescope_ioc::import::Format::Stix) => pb::IocImportFormat::Stix2Bundle,
                Some(casescope_ioc::import::Format::Misp) => pb::IocImportFormat::MispEvent,
                None => bail!(
                    "{}: cannot tell the format; give --format csv|text|stix|misp",
                    args.file.display()
                ),
            }
        }
    };
    let target = target(client, &args.case).await?;
    let header = pb::ImportIocsHeader {
        case_id: target.case_id.clone(),
        list_id: target.list_id.clone(),
        format: format as i32,
        file_name: name,
        size_bytes: size,
        default_source: args.source.clone(),
        default_tlp: args.tlp.as_deref().map(wire_tlp).transpose()?.unwrap_or(0),
        default_confidence: None,
        dry_run: args.dry_run,
        misp_all_attributes: args.all_attributes,
    };
    // The file is sent as it is read (bounded: a few chunks in flight).
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::ImportIocsChunk>(4);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        sender
            .blocking_send(pb::ImportIocsChunk {
                part: Some(Part::Header(header)),
            })
            .ok();
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            if sender
                .blocking_send(pb::ImportIocsChunk {
                    part: Some(Part::Data(buffer[..n].to_vec())),
                })
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let chunks = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let response = if target.is_list() {
        client.import_list_iocs(chunks).await
    } else {
        client.import_iocs(chunks).await
    }
    .map_err(rpc_error);
    reader.await??;
    let response = response?.into_inner();
    if args.json {
        return print_json(&serde_json::json!({
            "records_read": response.records_read,
            "created": response.created,
            "duplicates": response.duplicates,
            "rejected": response.rejected_count,
            "other_objects": response.other_objects,
            "rejections": response.rejected.iter().map(|r| serde_json::json!({
                "locator": r.locator, "value": r.value, "reason": r.reason,
            })).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{} records: {} {}, {} duplicates, {} refused{}",
        response.records_read,
        response.created,
        if args.dry_run {
            "would be created"
        } else {
            "created"
        },
        response.duplicates,
        response.rejected_count,
        if response.other_objects > 0 {
            format!(" ({} other objects skipped)", response.other_objects)
        } else {
            String::new()
        }
    );
    for rejection in &response.rejected {
        println!(
            "  {}: {} ({})",
            escaped(&rejection.locator),
            escaped(&rejection.reason),
            escaped(&rejection.value)
        );
    }
    if response.rejected_count > response.rejected.len() as u64 {
        println!(
            "  … and {} more",
            response.rejected_count - response.rejected.len() as u64
        );
    }
    Ok(())
}

async fn export(
    client: &mut IocServiceClient<GrpcChannel>,
    case: &str,
    format: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let format = format_of(format)?;
    let target = target(client, case).await?;
    let request = pb::ExportIocsRequest {
        case_id: target.case_id.clone(),
        format: format as i32,
        ioc_types: Vec::new(),
        enabled: None,
        list_id: target.list_id.clone(),
    };
    let mut stream = if target.is_list() {
        client.export_list_iocs(request).await
    } else {
        client.export_iocs(request).await
    }
    .map_err(rpc_error)?
    .into_inner();
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
        out.write_all(&chunk.data)?;
    }
    out.flush()?;
    Ok(())
}

async fn list(client: &mut IocServiceClient<GrpcChannel>, args: ListArgs) -> anyhow::Result<()> {
    let types = args
        .types
        .iter()
        .map(|t| wire_type(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = target(client, &args.case).await?;
    let mut cursor = String::new();
    let mut shown = 0u32;
    let mut json = Vec::new();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if !args.json {
        writeln!(
            out,
            "{:<36} {:<13} {:<48} {:<6} {:<8} {:>7}",
            "ID", "TYPE", "VALUE", "TLP", "ENABLED", "MATCHES"
        )?;
    }
    loop {
        let size = if args.limit == 0 {
            PAGE_SIZE
        } else {
            (args.limit - shown).min(PAGE_SIZE)
        };
        if size == 0 {
            break;
        }
        let request = pb::ListIocsRequest {
            case_id: target.case_id.clone(),
            page: Some(PageRequest {
                page_size: size,
                cursor: cursor.clone(),
            }),
            ioc_types: types.clone(),
            enabled: None,
            source: String::new(),
            value_contains: args.contains.clone(),
            list_id: target.list_id.clone(),
        };
        let response = if target.is_list() {
            client.list_list_iocs(request).await
        } else {
            client.list_iocs(request).await
        }
        .map_err(rpc_error)?
        .into_inner();
        for ioc in &response.iocs {
            shown += 1;
            if args.json {
                json.push(ioc_json(ioc));
            } else {
                writeln!(
                    out,
                    "{:<36} {:<13} {:<48} {:<6} {:<8} {:>7}",
                    ioc.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
                    type_name(ioc.ioc_type),
                    cell(&ioc.normalized_value, 48),
                    pb::Tlp::try_from(ioc.tlp)
                        .map(|t| t
                            .as_str_name()
                            .trim_start_matches("TLP_")
                            .to_ascii_lowercase())
                        .unwrap_or_default(),
                    ioc.enabled,
                    ioc.match_count
                )?;
            }
        }
        cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if args.json {
        return print_json(&serde_json::Value::Array(json));
    }
    out.flush()?;
    Ok(())
}
