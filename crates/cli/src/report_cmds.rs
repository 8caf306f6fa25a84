//! `report create/list/get/download/delete`: case reports built by the report service.

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, anyhow, bail};
use casescope_proto::common::v1::{CaseId, PageRequest, ReportId};
use casescope_proto::report::v1 as pb;
use casescope_proto::report::v1::report_service_client::ReportServiceClient;
use clap::Subcommand;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Queue a report of a case; --wait waits until it is ready (and --output saves it).
    Create {
        case: String,
        /// html, md (markdown), json or pdf; repeat for several (default: html).
        #[arg(long = "format", value_name = "FORMAT")]
        formats: Vec<String>,
        /// Sections in order (overview, files, detections-by-rule,
        /// detections-by-technique, ioc-matches, timeline, notes); default: all.
        #[arg(long = "section", value_name = "SECTION")]
        sections: Vec<String>,
        /// Title (default: the case name).
        #[arg(long, default_value = "")]
        title: String,
        /// Only events with these tags in the timeline (default: every tag and starred).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Ask for an AI summary (refused when the deployment has no LLM configured).
        #[arg(long)]
        ai: bool,
        /// Wait until the report is ready or failed.
        #[arg(long)]
        wait: bool,
        /// With --wait: save the (first) format here.
        #[arg(long, requires = "wait")]
        output: Option<PathBuf>,
    },
    /// Reports of a case, newest first.
    List {
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// One report: status, error, artefacts with size and SHA-256.
    Get {
        case: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Save a ready report's artefact (checked against its SHA-256); stdout without
    /// --output.
    Download {
        case: String,
        id: String,
        /// html, md, json or pdf; needed when the report has several.
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Delete a report (a queued or running one is cancelled).
    Delete { case: String, id: String },
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

fn report_id(id: &str) -> Option<ReportId> {
    Some(ReportId {
        value: id.to_string(),
    })
}

fn format_of(name: &str) -> anyhow::Result<pb::ReportFormat> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "html" => pb::ReportFormat::Html,
        "md" | "markdown" => pb::ReportFormat::Markdown,
        "json" => pb::ReportFormat::Json,
        "pdf" => pb::ReportFormat::Pdf,
        other => bail!("--format {other:?}: use html, md, json or pdf"),
    })
}

fn section_of(name: &str) -> anyhow::Result<pb::ReportSection> {
    Ok(match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "overview" => pb::ReportSection::Overview,
        "files" => pb::ReportSection::Files,
        "detections-by-rule" => pb::ReportSection::DetectionsByRule,
        "detections-by-technique" => pb::ReportSection::DetectionsByTechnique,
        "ioc-matches" => pb::ReportSection::IocMatches,
        "timeline" | "tagged-timeline" => pb::ReportSection::TaggedTimeline,
        "notes" => pb::ReportSection::Notes,
        other => bail!(
            "--section {other:?}: use overview, files, detections-by-rule, \
             detections-by-technique, ioc-matches, timeline or notes"
        ),
    })
}

fn word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn status_word(report: &pb::Report) -> String {
    pb::ReportStatus::try_from(report.status)
        .map(|s| word(s.as_str_name(), "REPORT_STATUS_"))
        .unwrap_or_default()
}

fn format_word(format: i32) -> String {
    pb::ReportFormat::try_from(format)
        .map(|f| word(f.as_str_name(), "REPORT_FORMAT_"))
        .unwrap_or_default()
}

fn print_report(report: &pb::Report) {
    let id = report.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
    println!("report   {id}");
    println!("title    {}", report.title);
    println!("status   {}", status_word(report));
    if !report.error.is_empty() {
        println!("error    {}", report.error);
    }
    println!("attempts {}", report.attempts);
    if report.include_ai_summary {
        println!("ai       {}", ai_word(report));
    }
    for artefact in &report.artefacts {
        println!(
            "  {:<9} {:>12} bytes  sha256 {}  {}",
            format_word(artefact.format),
            artefact.size_bytes,
            artefact.sha256,
            artefact.file_name
        );
    }
}

/// The AI summary's outcome in words: "included (model)", "failed: why", "pending".
fn ai_word(report: &pb::Report) -> String {
    let status = pb::AiSummaryStatus::try_from(report.ai_summary_status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("AI_SUMMARY_STATUS_")
                .to_ascii_lowercase()
                .replace('_', " ")
        })
        .unwrap_or_else(|_| "unknown".into());
    match (status.as_str(), report.ai_summary_error.is_empty()) {
        ("failed", false) => format!("failed: {}", report.ai_summary_error),
        ("included", _) => format!("included ({})", report.ai_model),
        _ => status,
    }
}

fn report_json(report: &pb::Report) -> serde_json::Value {
    serde_json::json!({
        "ai_summary": report.include_ai_summary.then(|| ai_word(report)),
        "id": report.id.as_ref().map(|i| i.value.clone()),
        "title": report.title,
        "status": status_word(report),
        "error": report.error,
        "attempts": report.attempts,
        "artefacts": report.artefacts.iter().map(|a| serde_json::json!({
            "format": format_word(a.format),
            "file_name": a.file_name,
            "size_bytes": a.size_bytes,
            "sha256": a.sha256,
        })).collect::<Vec<_>>(),
    })
}

type Client = ReportServiceClient<casescope_proto::channel::GrpcChannel>;

/// Saves one artefact to `output` (or stdout), checking its size and SHA-256.
async fn download(
    client: &mut Client,
    case: &str,
    report: &pb::Report,
    format: pb::ReportFormat,
    output: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let id = report
        .id
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let artefact = report
        .artefacts
        .iter()
        .find(|a| format == pb::ReportFormat::Unspecified || a.format == format as i32)
        .ok_or_else(|| anyhow!("report {id} has no such artefact"))?
        .clone();
    let mut stream = client
        .download_report(pb::DownloadReportRequest {
            case_id: case_id(case),
            id: report_id(&id),
            format: artefact.format,
            offset: 0,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
        if chunk.offset != size {
            bail!("the download skipped from byte {size} to {}", chunk.offset);
        }
        hasher.update(&chunk.data);
        size += chunk.data.len() as u64;
        out.write_all(&chunk.data)?;
    }
    out.flush()?;
    let sha256 = hex::encode(hasher.finalize());
    if size != artefact.size_bytes || sha256 != artefact.sha256 {
        bail!(
            "the downloaded {} artefact does not match the report ({size} bytes, sha256 {sha256}; \
             expected {} bytes, sha256 {})",
            format_word(artefact.format),
            artefact.size_bytes,
            artefact.sha256
        );
    }
    if let Some(path) = output {
        eprintln!("saved {} ({size} bytes, sha256 {sha256})", path.display());
    }
    Ok(())
}

pub async fn run(server: &ServerArgs, command: ReportCommand) -> anyhow::Result<()> {
    let channel = crate::session::connect(server, None).await?;
    let mut client = ReportServiceClient::new(channel);
    match command {
        ReportCommand::Create {
            case,
            formats,
            sections,
            title,
            tags,
            ai,
            wait,
            output,
        } => {
            let mut formats = formats
                .iter()
                .map(|f| format_of(f).map(|f| f as i32))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if formats.is_empty() {
                formats.push(pb::ReportFormat::Html as i32);
            }
            let sections = sections
                .iter()
                .map(|s| section_of(s).map(|s| s as i32))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let first = pb::ReportFormat::try_from(formats[0]).unwrap_or(pb::ReportFormat::Html);
            let mut report = client
                .create_report(pb::CreateReportRequest {
                    case_id: case_id(&case),
                    formats,
                    include_ai_summary: ai,
                    sections,
                    title,
                    timeline_tags: tags,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let id = report
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default();
            if !wait {
                println!("{id}");
                return Ok(());
            }
            let mut delay = Duration::from_millis(200);
            loop {
                match pb::ReportStatus::try_from(report.status) {
                    Ok(pb::ReportStatus::Ready) => break,
                    Ok(pb::ReportStatus::Failed) => {
                        bail!("report {id} failed: {}", report.error)
                    }
                    _ => {}
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                report = client
                    .get_report(pb::GetReportRequest {
                        case_id: case_id(&case),
                        id: report_id(&id),
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
            }
            if report.include_ai_summary
                && report.ai_summary_status != pb::AiSummaryStatus::Included as i32
            {
                eprintln!(
                    "warning: the AI summary is not in the report: {}",
                    ai_word(&report)
                );
            }
            match output {
                Some(path) => download(&mut client, &case, &report, first, Some(&path)).await?,
                None => print_report(&report),
            }
        }
        ReportCommand::List { case, json } => {
            let mut cursor = String::new();
            let mut all = Vec::new();
            loop {
                let page = client
                    .list_reports(pb::ListReportsRequest {
                        case_id: case_id(&case),
                        page: Some(PageRequest {
                            page_size: 200,
                            cursor,
                        }),
                        status: 0,
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                all.extend(page.reports);
                cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
                if cursor.is_empty() {
                    break;
                }
            }
            if json {
                let list: Vec<_> = all.iter().map(report_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for report in &all {
                    let formats: Vec<String> =
                        report.formats.iter().map(|f| format_word(*f)).collect();
                    println!(
                        "{}  {:<8} {:<18} {}",
                        report.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
                        status_word(report),
                        formats.join(","),
                        report.title
                    );
                }
            }
        }
        ReportCommand::Get { case, id, json } => {
            let report = client
                .get_report(pb::GetReportRequest {
                    case_id: case_id(&case),
                    id: report_id(&id),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
            } else {
                print_report(&report);
            }
        }
        ReportCommand::Download {
            case,
            id,
            format,
            output,
        } => {
            let report = client
                .get_report(pb::GetReportRequest {
                    case_id: case_id(&case),
                    id: report_id(&id),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let format = match format {
                Some(name) => format_of(&name)?,
                None if report.artefacts.len() == 1 => pb::ReportFormat::Unspecified,
                None => bail!("report {id} has several formats; choose one with --format"),
            };
            download(&mut client, &case, &report, format, output.as_ref()).await?;
        }
        ReportCommand::Delete { case, id } => {
            client
                .delete_report(pb::DeleteReportRequest {
                    case_id: case_id(&case),
                    id: report_id(&id),
                })
                .await
                .map_err(rpc_error)?;
            println!("deleted report {id}");
        }
    }
    Ok(())
}
