//! `export` (a timeline selection as CSV, JSON lines or Timesketch JSONL, streamed to a
//! file or stdout with a progress bar; `--resume` continues an interrupted export of
//! the same query) and `export-annotations`.

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, anyhow};
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::CaseId;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    pub case: String,
    /// The timeline query (annotation clauses included); empty = every event.
    #[arg(long, default_value = "")]
    pub query: String,
    /// csv, jsonl or timesketch.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue an interrupted export into --output (reads the cursor file next to it).
    #[arg(long, requires = "output")]
    pub resume: bool,
}

fn cursor_file(output: &std::path::Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".cursor");
    PathBuf::from(name)
}

pub async fn export(server: &ServerArgs, args: ExportArgs) -> anyhow::Result<()> {
    let format = match args.format.as_str() {
        "csv" => pb::ExportFormat::Csv,
        "jsonl" => pb::ExportFormat::Jsonl,
        "timesketch" => pb::ExportFormat::Timesketch,
        other => return Err(anyhow!("--format {other:?}: use csv, jsonl or timesketch")),
    };
    let resume_cursor = match (&args.output, args.resume) {
        (Some(output), true) => std::fs::read_to_string(cursor_file(output))
            .with_context(|| format!("no cursor to resume from next to {}", output.display()))?
            .trim()
            .to_string(),
        _ => String::new(),
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(args.resume)
                .truncate(!args.resume)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let channel = crate::session::connect(server, None).await?;
    let mut client = CasesServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
    let mut stream = client
        .export_timeline(pb::ExportTimelineRequest {
            case_id: Some(CaseId {
                value: args.case.clone(),
            }),
            query: Some(pb::TimelineQuery {
                query: args.query,
                ..Default::default()
            }),
            format: format as i32,
            resume_cursor,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let progress = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} events {per_sec} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = 0;
    while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
        if chunk.total > 0 {
            progress.set_length(chunk.total);
        }
        out.write_all(&chunk.data)
            .context("cannot write the export")?;
        rows = chunk.rows;
        progress.set_position(rows);
        if let Some(output) = &args.output
            && !chunk.cursor.is_empty()
        {
            out.flush().context("cannot write the export")?;
            std::fs::write(cursor_file(output), &chunk.cursor)
                .context("cannot write the export's cursor file")?;
        }
    }
    out.flush().context("cannot write the export")?;
    progress.finish_and_clear();
    if let Some(output) = &args.output {
        let _ = std::fs::remove_file(cursor_file(output));
        eprintln!("exported {rows} events to {}", output.display());
    }
    Ok(())
}

pub async fn export_annotations(
    server: &ServerArgs,
    case: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let channel = crate::session::connect(server, None).await?;
    let mut client = CasesServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
    let mut stream = client
        .export_annotations(pb::ExportAnnotationsRequest {
            case_id: Some(CaseId { value: case }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
        out.write_all(&chunk.data)
            .context("cannot write the export")?;
    }
    out.flush().context("cannot write the export")?;
    Ok(())
}
