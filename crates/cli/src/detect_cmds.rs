//! `casescope rules …`, `casescope detections` and `casescope detect rerun`: the
//! analyst's client of the detect service (Sigma rules and the detections they produce).
//!
//! Rule text and detection values come from rule authors and from evidence: table cells,
//! rule metadata and YAML are printed with control characters (and invisible
//! bidirectional marks) escaped; `--json` output is escaped by the JSON encoder.

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, anyhow, bail};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, FileId, PageRequest, RuleId, SortOrder, TimeRange};
use casescope_proto::detect::v1 as pb;
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_proto::detect::v1::import_rules_chunk::Part;
use casescope_proto::paging::MAX_PAGE_SIZE;
use clap::{ArgGroup, Args, Subcommand};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of a rule file per `RuleFileData` message (the server's default chunk limit).
const CHUNK: usize = 1024 * 1024;
/// Page size of the listings that page through everything.
const PAGE_SIZE: u32 = 500;
const _: () = assert!(PAGE_SIZE <= MAX_PAGE_SIZE);
/// Largest answer accepted: a page of detections carries attacker-sized field values.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

const LEVELS: [(&str, pb::RuleLevel); 5] = [
    ("informational", pb::RuleLevel::Informational),
    ("low", pb::RuleLevel::Low),
    ("medium", pb::RuleLevel::Medium),
    ("high", pb::RuleLevel::High),
    ("critical", pb::RuleLevel::Critical),
];

const STATUSES: [(&str, pb::RuleStatus); 5] = [
    ("stable", pb::RuleStatus::Stable),
    ("test", pb::RuleStatus::Test),
    ("experimental", pb::RuleStatus::Experimental),
    ("deprecated", pb::RuleStatus::Deprecated),
    ("unsupported", pb::RuleStatus::Unsupported),
];

// ---------------------------------------------------------------------------------------
// Command line

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Import Sigma rules: .yml/.yaml files, .zip archives of them, or directories
    /// (walked recursively; symbolic links and hidden entries inside are skipped).
    Import(ImportArgs),
    /// List rules (loaded and refused), ordered by title.
    List(ListRulesArgs),
    /// Show one rule with its YAML source.
    Show {
        /// The rule id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable the selected rules (refused rules stay disabled).
    Enable(SelectorArgs),
    /// Disable the selected rules.
    Disable(SelectorArgs),
    /// Show the current ruleset version and rule counts.
    Ruleset {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Rule files (.yml, .yaml, .zip) or directories of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Label stored on each imported rule, e.g. "sigmahq r2025-01-01".
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub label: String,
    /// Import new rules disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Validate and report without storing anything.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListRulesArgs {
    /// Only refused rules, with the reason.
    #[arg(long)]
    pub refused: bool,
    /// Only enabled rules.
    #[arg(long, conflicts_with = "disabled")]
    pub enabled: bool,
    /// Only disabled rules.
    #[arg(long)]
    pub disabled: bool,
    /// Only rules of this level (repeatable): informational, low, medium, high, critical.
    #[arg(long = "level", value_name = "LEVEL", value_parser = parse_level)]
    pub levels: Vec<pb::RuleLevel>,
    /// Only rules with this exact tag, e.g. attack.t1059.001.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only rules whose title contains TEXT (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Only correlation rules.
    #[arg(long)]
    pub correlation: bool,
    /// At most N rules [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

/// Which rules `rules enable` / `rules disable` change. Options combine with AND; the
/// values of one repeated option with OR.
#[derive(Args, Debug, Default)]
pub struct SelectorArgs {
    /// Every rule.
    #[arg(long, conflicts_with_all = ["ids", "levels", "statuses", "tags", "product", "category", "service"])]
    pub all: bool,
    /// A rule id (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Rules of this level (repeatable): informational, low, medium, high, critical.
    #[arg(long = "level", value_name = "LEVEL", value_parser = parse_level)]
    pub levels: Vec<pb::RuleLevel>,
    /// Rules of this status (repeatable): stable, test, experimental, deprecated, unsupported.
    #[arg(long = "status", value_name = "STATUS", value_parser = parse_status)]
    pub statuses: Vec<pb::RuleStatus>,
    /// Rules with this exact tag (repeatable), e.g. attack.t1059.001.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Rules whose logsource product is P, e.g. windows.
    #[arg(long, value_name = "P")]
    pub product: Option<String>,
    /// Rules whose logsource category is C, e.g. process_creation.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Rules whose logsource service is S, e.g. security.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
}

#[derive(Args, Debug)]
pub struct DetectionsArgs {
    /// The case id.
    pub case: String,
    /// Print counts by level, rule, tactic and technique instead of the detections.
    #[arg(long, conflicts_with_all = ["limit", "desc"])]
    pub counts: bool,
    #[command(flatten)]
    pub filter: DetectionFilterArgs,
    /// At most N detections (0 = all).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u64,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// JSON (one object per line for detections).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct DetectionFilterArgs {
    /// Only detections of this rule (repeatable).
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,
    /// Only this level (repeatable): informational, low, medium, high, critical.
    #[arg(long = "level", value_name = "LEVEL", value_parser = parse_level)]
    pub levels: Vec<pb::RuleLevel>,
    /// Only this ATT&CK tactic (repeatable), e.g. credential_access.
    #[arg(long = "tactic", value_name = "TACTIC")]
    pub tactics: Vec<String>,
    /// Only this ATT&CK technique and its sub-techniques (repeatable), e.g. T1059.
    #[arg(long = "technique", value_name = "TECHNIQUE")]
    pub techniques: Vec<String>,
    /// Only detections in this file (repeatable).
    #[arg(long = "file", value_name = "FILE_ID")]
    pub files: Vec<String>,
    /// Start of the event time range (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    /// End of the event time range, exclusive (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// Only correlation detections.
    #[arg(long, conflicts_with = "no_correlation")]
    pub correlation: bool,
    /// Only single-event detections.
    #[arg(long)]
    pub no_correlation: bool,
}

#[derive(Subcommand, Debug)]
pub enum DetectCommand {
    /// Run detection again with the current ruleset, for some files of a case or all of
    /// it (asynchronous: returns once the runs are scheduled).
    #[command(group(ArgGroup::new("scope").required(true).args(["files", "all"])))]
    Rerun {
        /// The case id.
        case: String,
        /// A file of the case (repeatable).
        #[arg(long = "file", value_name = "FILE_ID")]
        files: Vec<String>,
        /// Every file of the case, and the case's correlation rules.
        #[arg(long)]
        all: bool,
    },
    /// The detect stage state of each file of a case (status, ruleset version, counts).
    Status {
        /// The case id.
        case: String,
        #[arg(long)]
        json: bool,
    },
}

// ---------------------------------------------------------------------------------------
// Pure parts

/// A `--level` value.
pub fn parse_level(text: &str) -> Result<pb::RuleLevel, String> {
    let text = text.trim();
    LEVELS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, level)| *level)
        .ok_or_else(|| {
            format!(
                "unknown level {:?}; expected one of: {}",
                escaped(text),
                names(&LEVELS)
            )
        })
}

/// A `--status` value.
pub fn parse_status(text: &str) -> Result<pb::RuleStatus, String> {
    let text = text.trim();
    STATUSES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, status)| *status)
        .ok_or_else(|| {
            format!(
                "unknown status {:?}; expected one of: {}",
                escaped(text),
                names(&STATUSES)
            )
        })
}

fn names<T>(table: &[(&str, T)]) -> String {
    table
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn level_text(level: i32) -> &'static str {
    LEVELS
        .iter()
        .find(|(_, known)| *known as i32 == level)
        .map_or(if level == 0 { "-" } else { "unknown" }, |(name, _)| name)
}

fn status_text(status: i32) -> &'static str {
    STATUSES
        .iter()
        .find(|(_, known)| *known as i32 == status)
        .map_or(if status == 0 { "-" } else { "unknown" }, |(name, _)| name)
}

fn correlation_text(kind: i32) -> String {
    match pb::CorrelationType::try_from(kind) {
        Ok(pb::CorrelationType::Unspecified) => String::new(),
        Ok(kind) => kind
            .as_str_name()
            .trim_start_matches("CORRELATION_TYPE_")
            .to_lowercase(),
        Err(_) => "unknown".to_string(),
    }
}

/// The value of a text option, refused when empty (an empty value would select nothing
/// or everything, depending on the field).
fn non_empty(value: &str, flag: &str) -> anyhow::Result<String> {
    let value = value.trim();
    if value.is_empty() {
        bail!("{flag} needs a non-empty value");
    }
    Ok(value.to_string())
}

impl SelectorArgs {
    /// The selector, refused locally when it selects nothing: the server refuses an
    /// empty selector too, so nothing is changed wholesale by accident.
    fn to_selector(&self) -> anyhow::Result<pb::RuleSelector> {
        let logsource = pb::LogSource {
            product: self
                .product
                .as_deref()
                .map(|v| non_empty(v, "--product"))
                .transpose()?
                .unwrap_or_default(),
            category: self
                .category
                .as_deref()
                .map(|v| non_empty(v, "--category"))
                .transpose()?
                .unwrap_or_default(),
            service: self
                .service
                .as_deref()
                .map(|v| non_empty(v, "--service"))
                .transpose()?
                .unwrap_or_default(),
        };
        let has_logsource = logsource != pb::LogSource::default();
        let selector = pb::RuleSelector {
            all_rules: self.all,
            rule_ids: self
                .ids
                .iter()
                .map(|id| non_empty(id, "--id").map(|value| RuleId { value }))
                .collect::<anyhow::Result<_>>()?,
            levels: self.levels.iter().map(|level| *level as i32).collect(),
            statuses: self.statuses.iter().map(|status| *status as i32).collect(),
            tags: self
                .tags
                .iter()
                .map(|tag| non_empty(tag, "--tag"))
                .collect::<anyhow::Result<_>>()?,
            logsource: has_logsource.then_some(logsource),
        };
        let narrowed = !selector.rule_ids.is_empty()
            || !selector.levels.is_empty()
            || !selector.statuses.is_empty()
            || !selector.tags.is_empty()
            || selector.logsource.is_some();
        if selector.all_rules && narrowed {
            bail!("--all selects every rule; it cannot be combined with other selections");
        }
        if !selector.all_rules && !narrowed {
            bail!(
                "no rules selected: give --all, or at least one of --id, --level, --status, \
                 --tag, --product, --category, --service"
            );
        }
        Ok(selector)
    }
}

impl DetectionFilterArgs {
    fn to_filter(&self) -> anyhow::Result<pb::DetectionFilter> {
        let start = self
            .from
            .as_deref()
            .map(|t| parse_time(t, "--from"))
            .transpose()?;
        let end = self
            .to
            .as_deref()
            .map(|t| parse_time(t, "--to"))
            .transpose()?;
        if let (Some(start), Some(end)) = (start, end)
            && start >= end
        {
            bail!("--from must be before --to");
        }
        Ok(pb::DetectionFilter {
            rule_ids: self
                .rules
                .iter()
                .map(|id| non_empty(id, "--rule").map(|value| RuleId { value }))
                .collect::<anyhow::Result<_>>()?,
            levels: self.levels.iter().map(|level| *level as i32).collect(),
            tactics: self
                .tactics
                .iter()
                .map(|tactic| non_empty(tactic, "--tactic"))
                .collect::<anyhow::Result<_>>()?,
            techniques: self
                .techniques
                .iter()
                .map(|technique| non_empty(technique, "--technique"))
                .collect::<anyhow::Result<_>>()?,
            file_ids: self
                .files
                .iter()
                .map(|id| non_empty(id, "--file").map(|value| FileId { value }))
                .collect::<anyhow::Result<_>>()?,
            time_range: (start.is_some() || end.is_some()).then_some(TimeRange {
                start_unix_micros: start,
                end_unix_micros: end,
            }),
            event_ids: Vec::new(),
            is_correlation: if self.correlation {
                Some(true)
            } else if self.no_correlation {
                Some(false)
            } else {
                None
            },
        })
    }
}

/// `--from` / `--to`: the same parsing as `casescope search` (RFC 3339; also the other
/// time formats evidence uses).
fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    casescope_evidence::parse_timestamp(&serde_json::Value::String(text.to_string()))
        .map_err(|why| anyhow!("{flag}: {why}"))
}

/// The scope of `detect rerun`: exactly one of some files or the whole case.
fn rerun_scope(files: &[String], all: bool) -> anyhow::Result<pb::rerun_detection_request::Scope> {
    use pb::rerun_detection_request::Scope;
    match (files.is_empty(), all) {
        (true, true) => Ok(Scope::WholeCase(true)),
        (false, false) => {
            if files.len() > MAX_PAGE_SIZE as usize {
                bail!(
                    "{} files given; at most {MAX_PAGE_SIZE} per re-run (or use --all)",
                    files.len()
                );
            }
            Ok(Scope::Files(pb::FileIdList {
                file_ids: files
                    .iter()
                    .map(|id| non_empty(id, "--file").map(|value| FileId { value }))
                    .collect::<anyhow::Result<_>>()?,
            }))
        }
        (false, true) => bail!("give either --file or --all, not both"),
        (true, false) => bail!("give --file FILE_ID (one or more) or --all"),
    }
}

/// A rule file to send, and the path it is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleFile {
    path: PathBuf,
    report_path: String,
}

fn is_rule_file_name(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            ["yml", "yaml", "zip"]
                .iter()
                .any(|known| known.eq_ignore_ascii_case(extension))
        })
}

/// The files to import, in order: each argument in turn; a directory's rule files sorted
/// by path. A file is reported under its file name, a directory's files under the
/// directory's name followed by their path inside it (`rules/windows/x.yml`).
fn rule_files(paths: &[PathBuf]) -> anyhow::Result<Vec<RuleFile>> {
    let mut files = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            files.extend(walk(path)?);
        } else if meta.is_file() {
            if !is_rule_file_name(path) {
                bail!("{}: not a rule file (.yml, .yaml or .zip)", path.display());
            }
            let name = path
                .file_name()
                .ok_or_else(|| anyhow!("{}: no file name", path.display()))?;
            files.push(RuleFile {
                path: path.clone(),
                report_path: name.to_string_lossy().into_owned(),
            });
        } else {
            bail!("{}: not a file or a directory", path.display());
        }
    }
    Ok(files)
}

/// Rule files under `root`, sorted by their path inside it. Symbolic links are not
/// followed (a link could lead out of the tree or into a loop) and hidden entries
/// (`.git`, `.github`: CI files are YAML too) are skipped.
fn walk(root: &Path) -> anyhow::Result<Vec<RuleFile>> {
    let prefix = root
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .or_else(|| {
            // "." or "..": the name of the directory it stands for.
            std::fs::canonicalize(root)
                .ok()?
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        });
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let file_type = entry
                .file_type()
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let relative = relative.join(&name);
            if file_type.is_symlink() {
                if is_rule_file_name(&relative) {
                    eprintln!("skipped symbolic link {}", entry.path().display());
                }
            } else if file_type.is_dir() {
                stack.push(relative);
            } else if file_type.is_file() && is_rule_file_name(&relative) {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|relative| RuleFile {
            path: root.join(&relative),
            report_path: report_path(prefix.as_deref(), &relative),
        })
        .collect())
}

/// `prefix/relative` with `/` separators whatever the platform.
fn report_path(prefix: Option<&str>, relative: &Path) -> String {
    prefix
        .map(str::to_string)
        .into_iter()
        .chain(
            relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `c` is shown escaped: control characters, and the invisible marks that can
/// make printed text read differently from what it is (bidi overrides, zero-width).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Third-party text made safe for one line of a terminal.
pub(crate) fn escaped(text: &str) -> String {
    escape_with(text, false)
}

/// Third-party text made safe for a terminal, keeping its line breaks and tabs (YAML,
/// descriptions).
fn escaped_multiline(text: &str) -> String {
    escape_with(text, true)
}

fn escape_with(text: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (keep_lines && (c == '\n' || c == '\t')) || !needs_escape(c) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// A table cell: escaped, then cut to `width` characters.
pub(crate) fn cell(text: &str, width: usize) -> String {
    let text = escaped(text);
    if text.chars().count() <= width {
        text
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn timestamp_text(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|ts| {
        chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
    })
    .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .unwrap_or_default()
}

fn timestamp_json(ts: Option<&prost_types::Timestamp>) -> serde_json::Value {
    match timestamp_text(ts) {
        text if text.is_empty() => serde_json::Value::Null,
        text => serde_json::Value::String(text),
    }
}

fn rule_id_text(id: Option<&RuleId>) -> &str {
    id.map(|id| id.value.as_str()).unwrap_or_default()
}

fn rule_json(rule: &pb::Rule) -> serde_json::Value {
    let logsource = rule.logsource.clone().unwrap_or_default();
    serde_json::json!({
        "id": rule_id_text(rule.id.as_ref()),
        "title": rule.title,
        "description": rule.description,
        "status": status_text(rule.status),
        "level": level_text(rule.level),
        "tags": rule.tags,
        "tactics": rule.tactics,
        "techniques": rule.techniques,
        "author": rule.author,
        "references": rule.references,
        "false_positives": rule.false_positives,
        "logsource": {
            "product": logsource.product,
            "category": logsource.category,
            "service": logsource.service,
        },
        "content_sha256": rule.content_sha256,
        "enabled": rule.enabled,
        "refusal_reason": rule.refusal_reason,
        "is_correlation": rule.is_correlation,
        "correlation_type": correlation_text(rule.correlation_type),
        "correlated_rule_ids": rule.correlated_rule_ids.iter().map(|id| id.value.as_str()).collect::<Vec<_>>(),
        "source_path": rule.source_path,
        "source_label": rule.source_label,
        "rule_date": rule.rule_date,
        "rule_modified": rule.rule_modified,
        "yaml": rule.yaml,
        "imported_at": timestamp_json(rule.imported_at.as_ref()),
        "updated_at": timestamp_json(rule.updated_at.as_ref()),
    })
}

fn detection_json(detection: &pb::Detection) -> serde_json::Value {
    serde_json::json!({
        "id": detection.id.as_ref().map(|id| id.value.as_str()),
        "rule_id": detection.rule_id.as_ref().map(|id| id.value.as_str()),
        "rule_content_sha256": detection.rule_content_sha256,
        "rule_title": detection.rule_title,
        "level": level_text(detection.level),
        "case_id": detection.case_id.as_ref().map(|id| id.value.as_str()),
        "file_id": detection.file_id.as_ref().map(|id| id.value.as_str()),
        "event_ids": detection.event_ids.iter().map(|id| id.value.as_str()).collect::<Vec<_>>(),
        "event_timestamp": timestamp_json(detection.event_timestamp.as_ref()),
        "computer": detection.computer,
        "channel": detection.channel,
        "event_code": detection.event_code,
        "record_id": detection.record_id,
        "tactics": detection.tactics,
        "techniques": detection.techniques,
        "matched_fields": detection.matched_fields.iter().map(|m| serde_json::json!({"field": m.field, "value": m.value})).collect::<Vec<_>>(),
        "is_correlation": detection.is_correlation,
        "correlated_event_count": detection.correlated_event_count,
        "first_event_timestamp": timestamp_json(detection.first_event_timestamp.as_ref()),
        "ruleset_version": detection.ruleset_version,
        "detected_at": timestamp_json(detection.detected_at.as_ref()),
    })
}

fn level_counts_json(counts: &[pb::LevelCount]) -> serde_json::Value {
    counts
        .iter()
        .map(|c| serde_json::json!({"level": level_text(c.level), "count": c.count}))
        .collect()
}

fn attack_counts_json(counts: &[pb::AttackCount]) -> serde_json::Value {
    counts
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "count": c.count}))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Server calls

async fn connect(server: &ServerArgs) -> anyhow::Result<DetectServiceClient<GrpcChannel>> {
    // Rule imports stream and re-runs may take long: no total timeout.
    let channel = crate::session::connect(server, None).await?;
    Ok(DetectServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

fn stdout() -> BufWriter<std::io::Stdout> {
    BufWriter::new(std::io::stdout())
}

pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = stdout();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Output cut short by a closed pipe (`casescope detections … | head`) is not an error.
pub(crate) fn ignore_broken_pipe(error: anyhow::Error) -> anyhow::Result<()> {
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe { Ok(()) } else { Err(error) }
}

pub async fn run_rules(server: &ServerArgs, command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Import(args) => import(server, args).await,
        RulesCommand::List(args) => list_rules(server, args).await,
        RulesCommand::Show { id, json } => show_rule(server, &id, json).await,
        RulesCommand::Enable(selector) => set_state(server, &selector, true).await,
        RulesCommand::Disable(selector) => set_state(server, &selector, false).await,
        RulesCommand::Ruleset { json } => ruleset(server, json).await,
    }
    .or_else(ignore_broken_pipe)
}

pub async fn run_detections(server: &ServerArgs, args: DetectionsArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter()?;
    let mut client = connect(server).await?;
    if args.counts {
        count_detections(&mut client, &args, filter).await
    } else {
        list_detections(&mut client, &args, filter).await
    }
    .or_else(ignore_broken_pipe)
}

pub async fn run_detect(server: &ServerArgs, command: DetectCommand) -> anyhow::Result<()> {
    match command {
        DetectCommand::Rerun { case, files, all } => {
            let scope = rerun_scope(&files, all)?;
            let mut client = connect(server).await?;
            let response = client
                .rerun_detection(pb::RerunDetectionRequest {
                    case_id: case_id(&case),
                    scope: Some(scope),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let mut out = stdout();
            writeln!(
                out,
                "{} file(s) scheduled for detection with ruleset version {}",
                response.files_scheduled, response.ruleset_version
            )?;
            out.flush()?;
            Ok(())
        }
        DetectCommand::Status { case, json } => file_states(server, &case, json).await,
    }
    .or_else(ignore_broken_pipe)
}

fn detect_status_text(status: i32) -> &'static str {
    match pb::DetectStatus::try_from(status) {
        Ok(pb::DetectStatus::Pending) => "pending",
        Ok(pb::DetectStatus::Running) => "running",
        Ok(pb::DetectStatus::Done) => "done",
        Ok(pb::DetectStatus::Failed) => "failed",
        _ => "unknown",
    }
}

async fn file_states(server: &ServerArgs, case: &str, json: bool) -> anyhow::Result<()> {
    let mut client = connect(server).await?;
    let mut cursor = String::new();
    let mut states = Vec::new();
    loop {
        let response = client
            .list_file_states(pb::ListFileStatesRequest {
                case_id: case_id(case),
                page: Some(casescope_proto::common::v1::PageRequest {
                    page_size: 500,
                    cursor: cursor.clone(),
                }),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        states.extend(response.files);
        cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if json {
        let list: Vec<serde_json::Value> = states
            .iter()
            .map(|s| {
                serde_json::json!({
                    "file_id": s.file_id.as_ref().map(|f| f.value.clone()).unwrap_or_default(),
                    "status": detect_status_text(s.status),
                    "evaluated_ruleset_version": s.evaluated_ruleset_version,
                    "requested_ruleset_version": s.requested_ruleset_version,
                    "last_mode": s.last_mode,
                    "events_scanned": s.events_scanned,
                    "detections": s.detections,
                    "completed_runs": s.completed_runs,
                    "attempts": s.attempts,
                    "error": s.error,
                    "updated_at": timestamp_json(s.updated_at.as_ref()),
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(list));
    }
    let mut out = stdout();
    writeln!(
        out,
        "{:<36}  {:<8}  {:>7}  {:<5}  {:>10}  {:>10}  ERROR",
        "FILE", "STATUS", "RULESET", "MODE", "EVENTS", "DETECTIONS"
    )?;
    for s in &states {
        writeln!(
            out,
            "{:<36}  {:<8}  {:>7}  {:<5}  {:>10}  {:>10}  {}",
            cell(
                s.file_id
                    .as_ref()
                    .map(|f| f.value.as_str())
                    .unwrap_or_default(),
                36
            ),
            detect_status_text(s.status),
            s.evaluated_ruleset_version,
            s.last_mode,
            s.events_scanned,
            s.detections,
            escaped(&s.error)
        )?;
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// rules import

/// What the file reader hands to the request stream.
enum Feed {
    Chunk(pb::ImportRulesChunk),
    /// Every file was sent whole: the stream may end.
    End,
}

async fn import(server: &ServerArgs, args: ImportArgs) -> anyhow::Result<()> {
    let files = rule_files(&args.paths)?;
    if files.is_empty() {
        bail!("no rule files (.yml, .yaml, .zip) under the given paths");
    }
    let mut client = connect(server).await?;
    if !args.json && std::io::stderr().is_terminal() {
        eprintln!(
            "importing {} rule file(s){}",
            files.len(),
            if args.dry_run { " (dry run)" } else { "" }
        );
    }
    let options = pb::ImportRulesOptions {
        source_label: args.label.clone(),
        import_disabled: args.disabled,
        dry_run: args.dry_run,
    };
    let response = send_rule_files(&mut client, options, files).await?;
    if args.json {
        return print_json(&serde_json::json!({
            "rules_seen": response.rules_seen,
            "loaded": response.loaded,
            "added": response.added,
            "updated": response.updated,
            "unchanged": response.unchanged,
            "refused_count": response.refused_count,
            "refused": response.refused.iter().map(|r| serde_json::json!({
                "path": r.path,
                "title": r.title,
                "rule_id": r.rule_id.as_ref().map(|id| id.value.as_str()),
                "reason": r.reason,
            })).collect::<Vec<_>>(),
            "ruleset_version": response.ruleset_version,
            "dry_run": args.dry_run,
        }));
    }
    let mut out = stdout();
    writeln!(out, "{:<16} {}", "rules seen", response.rules_seen)?;
    writeln!(
        out,
        "{:<16} {} (added {}, updated {}, unchanged {})",
        "loaded", response.loaded, response.added, response.updated, response.unchanged
    )?;
    writeln!(out, "{:<16} {}", "refused", response.refused_count)?;
    writeln!(
        out,
        "{:<16} {}",
        "ruleset version", response.ruleset_version
    )?;
    if args.dry_run {
        writeln!(out, "dry run: nothing was stored")?;
    }
    if !response.refused.is_empty() {
        writeln!(out)?;
        writeln!(out, "{:<60}  {:<40}  REASON", "PATH", "TITLE")?;
        for refusal in &response.refused {
            writeln!(
                out,
                "{:<60}  {:<40}  {}",
                cell(&refusal.path, 60),
                cell(&refusal.title, 40),
                escaped(&refusal.reason)
            )?;
        }
    }
    out.flush()?;
    let unlisted = u64::from(response.refused_count).saturating_sub(response.refused.len() as u64);
    if unlisted > 0 {
        eprintln!("{unlisted} more refused; see `casescope rules list --refused`");
    }
    Ok(())
}

/// Streams the files: options, then per file its header and data. A file that cannot be
/// read whole cancels the call rather than ending the stream, so the server never takes
/// what was sent so far for a complete import.
async fn send_rule_files(
    client: &mut DetectServiceClient<GrpcChannel>,
    options: pb::ImportRulesOptions,
    files: Vec<RuleFile>,
) -> anyhow::Result<pb::ImportRulesResponse> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Feed>(4);
    let mut reader = tokio::task::spawn_blocking(move || read_rule_files(options, &files, &sender));
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Some(Feed::Chunk(chunk)) => Some((chunk, receiver)),
            Some(Feed::End) => None,
            // The reader stopped without finishing: never end the stream.
            None => std::future::pending().await,
        }
    });
    let call = client.import_rules(stream);
    tokio::pin!(call);
    let response = tokio::select! {
        // The server answered (possibly early, with an error).
        response = &mut call => response,
        read = &mut reader => {
            // On a read error the call is dropped, which cancels it.
            read.context("the rule file reader failed")??;
            call.await
        }
    };
    Ok(response.map_err(rpc_error)?.into_inner())
}

/// Runs on a blocking thread: reads each file in chunks of at most [`CHUNK`] bytes.
fn read_rule_files(
    options: pb::ImportRulesOptions,
    files: &[RuleFile],
    sender: &tokio::sync::mpsc::Sender<Feed>,
) -> anyhow::Result<()> {
    // false when the call is over (the server answered early): stop reading.
    let send = |part: Part| {
        sender
            .blocking_send(Feed::Chunk(pb::ImportRulesChunk { part: Some(part) }))
            .is_ok()
    };
    if !send(Part::Options(options)) {
        return Ok(());
    }
    let mut buf = vec![0u8; CHUNK];
    for file in files {
        let shown = file.path.display();
        let mut handle =
            std::fs::File::open(&file.path).with_context(|| format!("cannot open {shown}"))?;
        let size = handle
            .metadata()
            .with_context(|| format!("cannot read {shown}"))?
            .len();
        if !send(Part::File(pb::RuleFileHeader {
            path: file.report_path.clone(),
            size_bytes: size,
        })) {
            return Ok(());
        }
        let mut remaining = size;
        while remaining > 0 {
            let want = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            let read = match handle.read(&mut buf[..want]) {
                Ok(0) => bail!("{shown} shrank while it was being read"),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot read {shown}"));
                }
            };
            remaining -= read as u64;
            if !send(Part::Data(pb::RuleFileData {
                data: buf[..read].to_vec(),
            })) {
                return Ok(());
            }
        }
        if handle
            .read(&mut buf[..1])
            .with_context(|| format!("cannot read {shown}"))?
            != 0
        {
            bail!("{shown} grew while it was being read");
        }
    }
    sender.blocking_send(Feed::End).ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// rules list / show / enable / disable / ruleset

async fn list_rules(server: &ServerArgs, args: ListRulesArgs) -> anyhow::Result<()> {
    let mut client = connect(server).await?;
    let mut request = pb::ListRulesRequest {
        page: None,
        enabled: if args.enabled {
            Some(true)
        } else if args.disabled {
            Some(false)
        } else {
            None
        },
        levels: args.levels.iter().map(|level| *level as i32).collect(),
        statuses: Vec::new(),
        tag: args.tag.clone().unwrap_or_default(),
        logsource: None,
        refused_only: args.refused,
        title_contains: args.title.clone().unwrap_or_default(),
        is_correlation: args.correlation.then_some(true),
    };
    let mut rules: Vec<pb::Rule> = Vec::new();
    let mut total;
    let mut cursor = String::new();
    loop {
        let wanted = args.limit.map_or(u64::from(PAGE_SIZE), |limit| {
            limit
                .saturating_sub(rules.len() as u64)
                .min(u64::from(PAGE_SIZE))
        });
        request.page = Some(PageRequest {
            page_size: u32::try_from(wanted).unwrap_or(PAGE_SIZE),
            cursor: cursor.clone(),
        });
        let page = client
            .list_rules(request.clone())
            .await
            .map_err(rpc_error)?
            .into_inner();
        total = page.total;
        rules.extend(page.rules);
        let next = page.page.map(|p| p.next_cursor).unwrap_or_default();
        let enough = args.limit.is_some_and(|limit| rules.len() as u64 >= limit);
        // An unchanged cursor would page forever.
        if next.is_empty() || next == cursor || enough {
            break;
        }
        cursor = next;
    }
    if let Some(limit) = args.limit {
        rules.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if args.json {
        return print_json(&serde_json::json!({
            "total": total,
            "rules": rules.iter().map(rule_json).collect::<Vec<_>>(),
        }));
    }
    let mut out = stdout();
    if args.refused {
        writeln!(
            out,
            "{:<36}  {:<13}  {:<12}  {:<7}  {:<60}  REASON",
            "ID", "LEVEL", "STATUS", "ENABLED", "TITLE"
        )?;
    } else {
        writeln!(
            out,
            "{:<36}  {:<13}  {:<12}  {:<7}  TITLE",
            "ID", "LEVEL", "STATUS", "ENABLED"
        )?;
    }
    for rule in &rules {
        let enabled = if rule.enabled { "yes" } else { "no" };
        let id = cell(rule_id_text(rule.id.as_ref()), 36);
        if args.refused {
            writeln!(
                out,
                "{id:<36}  {:<13}  {:<12}  {enabled:<7}  {:<60}  {}",
                level_text(rule.level),
                status_text(rule.status),
                cell(&rule.title, 60),
                escaped(&rule.refusal_reason)
            )?;
        } else {
            writeln!(
                out,
                "{id:<36}  {:<13}  {:<12}  {enabled:<7}  {}",
                level_text(rule.level),
                status_text(rule.status),
                escaped(&rule.title)
            )?;
        }
    }
    out.flush()?;
    eprintln!("{} of {total} matching rules", rules.len());
    Ok(())
}

async fn show_rule(server: &ServerArgs, id: &str, json: bool) -> anyhow::Result<()> {
    let mut client = connect(server).await?;
    let rule = client
        .get_rule(pb::GetRuleRequest {
            id: Some(RuleId {
                value: non_empty(id, "the rule id")?,
            }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if json {
        return print_json(&rule_json(&rule));
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|item| escaped(item))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let logsource = rule.logsource.clone().unwrap_or_default();
    let mut fields: Vec<(&str, String)> = vec![
        ("id", escaped(rule_id_text(rule.id.as_ref()))),
        ("title", escaped(&rule.title)),
        ("level", level_text(rule.level).to_string()),
        ("status", status_text(rule.status).to_string()),
        (
            "enabled",
            if rule.enabled { "yes" } else { "no" }.to_string(),
        ),
    ];
    if !rule.refusal_reason.is_empty() {
        fields.push(("refused", escaped(&rule.refusal_reason)));
    }
    if rule.is_correlation {
        fields.push(("correlation", correlation_text(rule.correlation_type)));
        fields.push((
            "correlates",
            rule.correlated_rule_ids
                .iter()
                .map(|id| escaped(&id.value))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    fields.extend([
        (
            "logsource",
            format!(
                "product={} category={} service={}",
                escaped(&logsource.product),
                escaped(&logsource.category),
                escaped(&logsource.service)
            ),
        ),
        ("tags", list(&rule.tags)),
        ("tactics", list(&rule.tactics)),
        ("techniques", list(&rule.techniques)),
        ("author", escaped(&rule.author)),
        ("date", escaped(&rule.rule_date)),
        ("modified", escaped(&rule.rule_modified)),
        ("source", escaped(&rule.source_path)),
        ("source label", escaped(&rule.source_label)),
        ("content sha256", escaped(&rule.content_sha256)),
        ("imported at", timestamp_text(rule.imported_at.as_ref())),
        ("updated at", timestamp_text(rule.updated_at.as_ref())),
    ]);
    let mut out = stdout();
    for (key, value) in &fields {
        writeln!(out, "{key:<15} {value}")?;
    }
    for (key, items) in [
        ("references", &rule.references),
        ("false positives", &rule.false_positives),
    ] {
        if !items.is_empty() {
            writeln!(out, "{key}")?;
            for item in items {
                writeln!(out, "  {}", escaped(item))?;
            }
        }
    }
    if !rule.description.is_empty() {
        writeln!(out, "description")?;
        writeln!(out, "{}", escaped_multiline(rule.description.trim_end()))?;
    }
    writeln!(out, "--- yaml")?;
    writeln!(out, "{}", escaped_multiline(rule.yaml.trim_end()))?;
    out.flush()?;
    Ok(())
}

async fn set_state(
    server: &ServerArgs,
    selector: &SelectorArgs,
    enabled: bool,
) -> anyhow::Result<()> {
    let selector = selector.to_selector()?;
    let mut client = connect(server).await?;
    let response = client
        .set_rule_state(pb::SetRuleStateRequest {
            selector: Some(selector),
            enabled,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut out = stdout();
    writeln!(
        out,
        "{} rule(s) {}",
        response.changed,
        if enabled { "enabled" } else { "disabled" }
    )?;
    if response.skipped_refused > 0 {
        writeln!(
            out,
            "{} refused rule(s) skipped (refused rules stay disabled)",
            response.skipped_refused
        )?;
    }
    writeln!(out, "ruleset version {}", response.ruleset_version)?;
    out.flush()?;
    Ok(())
}

async fn ruleset(server: &ServerArgs, json: bool) -> anyhow::Result<()> {
    let mut client = connect(server).await?;
    let ruleset = client
        .get_ruleset(pb::GetRulesetRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    if json {
        return print_json(&serde_json::json!({
            "version": ruleset.version,
            "total_rules": ruleset.total_rules,
            "loaded_rules": ruleset.loaded_rules,
            "refused_rules": ruleset.refused_rules,
            "enabled_rules": ruleset.enabled_rules,
            "correlation_rules": ruleset.correlation_rules,
            "enabled_by_level": level_counts_json(&ruleset.enabled_by_level),
            "digest": ruleset.digest,
            "updated_at": timestamp_json(ruleset.updated_at.as_ref()),
        }));
    }
    let mut out = stdout();
    for (key, value) in [
        ("version", ruleset.version.to_string()),
        ("total rules", ruleset.total_rules.to_string()),
        ("loaded", ruleset.loaded_rules.to_string()),
        ("refused", ruleset.refused_rules.to_string()),
        ("enabled", ruleset.enabled_rules.to_string()),
        ("correlation", ruleset.correlation_rules.to_string()),
        ("digest", escaped(&ruleset.digest)),
        ("updated at", timestamp_text(ruleset.updated_at.as_ref())),
    ] {
        writeln!(out, "{key:<12} {value}")?;
    }
    if !ruleset.enabled_by_level.is_empty() {
        writeln!(out, "enabled by level")?;
        for count in &ruleset.enabled_by_level {
            writeln!(out, "  {:<13} {}", level_text(count.level), count.count)?;
        }
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// detections

async fn list_detections(
    client: &mut DetectServiceClient<GrpcChannel>,
    args: &DetectionsArgs,
    filter: pb::DetectionFilter,
) -> anyhow::Result<()> {
    let mut out = stdout();
    if !args.json {
        writeln!(
            out,
            "{:<27}  {:<13}  {:<50}  {:<36}  {:<24}  {:<32}  {:>6}  {:>10}  FILE ID",
            "TIME", "LEVEL", "RULE", "RULE ID", "COMPUTER", "CHANNEL", "EVENT", "RECORD"
        )?;
    }
    let mut shown: u64 = 0;
    let mut total;
    let mut cursor = String::new();
    loop {
        let wanted = if args.limit == 0 {
            u64::from(PAGE_SIZE)
        } else {
            (args.limit - shown).min(u64::from(PAGE_SIZE))
        };
        let page = client
            .list_detections(pb::ListDetectionsRequest {
                case_id: case_id(&args.case),
                filter: Some(filter.clone()),
                sort: if args.desc {
                    SortOrder::Descending
                } else {
                    SortOrder::Ascending
                } as i32,
                page: Some(PageRequest {
                    page_size: u32::try_from(wanted).unwrap_or(PAGE_SIZE),
                    cursor: cursor.clone(),
                }),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        total = page.total;
        for detection in &page.detections {
            if args.limit != 0 && shown >= args.limit {
                break;
            }
            shown += 1;
            if args.json {
                serde_json::to_writer(&mut out, &detection_json(detection))?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<27}  {:<13}  {:<50}  {:<36}  {:<24}  {:<32}  {:>6}  {:>10}  {}",
                    timestamp_text(detection.event_timestamp.as_ref()),
                    level_text(detection.level),
                    cell(&detection.rule_title, 50),
                    cell(rule_id_text(detection.rule_id.as_ref()), 36),
                    cell(&detection.computer, 24),
                    cell(&detection.channel, 32),
                    detection
                        .event_code
                        .map(|code| code.to_string())
                        .unwrap_or_default(),
                    detection
                        .record_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    escaped(
                        detection
                            .file_id
                            .as_ref()
                            .map(|id| id.value.as_str())
                            .unwrap_or_default()
                    ),
                )?;
            }
        }
        out.flush()?;
        let next = page.page.map(|p| p.next_cursor).unwrap_or_default();
        let enough = args.limit != 0 && shown >= args.limit;
        if next.is_empty() || next == cursor || enough {
            break;
        }
        cursor = next;
    }
    if !args.json {
        let hint = if shown < total && args.limit != 0 {
            " (raise --limit, or --limit 0 for all)"
        } else {
            ""
        };
        eprintln!("{shown} of {total} matching detections{hint}");
    }
    Ok(())
}

async fn count_detections(
    client: &mut DetectServiceClient<GrpcChannel>,
    args: &DetectionsArgs,
    filter: pb::DetectionFilter,
) -> anyhow::Result<()> {
    let counts = client
        .count_detections(pb::CountDetectionsRequest {
            case_id: case_id(&args.case),
            filter: Some(filter),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if args.json {
        return print_json(&serde_json::json!({
            "total": counts.total,
            "by_level": level_counts_json(&counts.by_level),
            "by_rule": counts.by_rule.iter().map(|r| serde_json::json!({
                "rule_id": r.rule_id.as_ref().map(|id| id.value.as_str()),
                "rule_title": r.rule_title,
                "level": level_text(r.level),
                "count": r.count,
            })).collect::<Vec<_>>(),
            "by_rule_truncated": counts.by_rule_truncated,
            "by_tactic": attack_counts_json(&counts.by_tactic),
            "by_technique": attack_counts_json(&counts.by_technique),
        }));
    }
    let mut out = stdout();
    writeln!(out, "total {}", counts.total)?;
    if !counts.by_level.is_empty() {
        writeln!(out, "\nby level")?;
        for count in &counts.by_level {
            writeln!(out, "  {:<13}  {:>8}", level_text(count.level), count.count)?;
        }
    }
    if !counts.by_rule.is_empty() {
        writeln!(out, "\nby rule")?;
        writeln!(
            out,
            "  {:>8}  {:<13}  {:<60}  RULE ID",
            "COUNT", "LEVEL", "TITLE"
        )?;
        for rule in &counts.by_rule {
            writeln!(
                out,
                "  {:>8}  {:<13}  {:<60}  {}",
                rule.count,
                level_text(rule.level),
                cell(&rule.rule_title, 60),
                escaped(rule_id_text(rule.rule_id.as_ref()))
            )?;
        }
        if counts.by_rule_truncated {
            writeln!(
                out,
                "  (only the {} rules with the most detections are listed)",
                counts.by_rule.len()
            )?;
        }
    }
    for (title, list) in [
        ("by tactic", &counts.by_tactic),
        ("by technique", &counts.by_technique),
    ] {
        if !list.is_empty() {
            writeln!(out, "\n{title}")?;
            for count in list {
                writeln!(out, "  {:<40}  {:>8}", cell(&count.name, 40), count.count)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!(parse_level("high"), Ok(pb::RuleLevel::High));
        assert_eq!(parse_level(" Critical "), Ok(pb::RuleLevel::Critical));
        assert_eq!(
            parse_level("informational"),
            Ok(pb::RuleLevel::Informational)
        );
        let error = parse_level("severe").unwrap_err();
        assert!(error.contains("\"severe\""), "{error}");
        assert!(error.contains("informational, low, medium, high, critical"));
        assert!(parse_level("").is_err());
        assert!(parse_level("unspecified").is_err());
        assert_eq!(level_text(pb::RuleLevel::Medium as i32), "medium");
        assert_eq!(level_text(0), "-");
        assert_eq!(level_text(99), "unknown");
    }

    #[test]
    fn statuses_parse_and_unknown_ones_are_refused() {
        for (name, status) in STATUSES {
            assert_eq!(parse_status(name), Ok(status));
            assert_eq!(status_text(status as i32), name);
        }
        assert_eq!(parse_status("TEST"), Ok(pb::RuleStatus::Test));
        let error = parse_status("beta").unwrap_err();
        assert!(
            error.contains("stable, test, experimental, deprecated, unsupported"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_selector_is_refused_locally() {
        let error = SelectorArgs::default().to_selector().unwrap_err();
        assert!(error.to_string().contains("no rules selected"), "{error}");
    }

    #[test]
    fn all_selects_everything_and_combines_with_nothing() {
        let all = SelectorArgs {
            all: true,
            ..Default::default()
        };
        let selector = all.to_selector().unwrap();
        assert!(selector.all_rules);
        assert!(selector.logsource.is_none());
        let mixed = SelectorArgs {
            all: true,
            levels: vec![pb::RuleLevel::Low],
            ..Default::default()
        };
        assert!(mixed.to_selector().is_err());
    }

    #[test]
    fn selector_options_map_to_the_proto() {
        let args = SelectorArgs {
            ids: vec!["r1".into(), "r2".into()],
            levels: vec![pb::RuleLevel::High, pb::RuleLevel::Critical],
            statuses: vec![pb::RuleStatus::Experimental],
            tags: vec!["attack.t1059.001".into()],
            category: Some("process_creation".into()),
            ..Default::default()
        };
        let selector = args.to_selector().unwrap();
        assert!(!selector.all_rules);
        assert_eq!(
            selector
                .rule_ids
                .iter()
                .map(|id| id.value.as_str())
                .collect::<Vec<_>>(),
            ["r1", "r2"]
        );
        assert_eq!(selector.levels, [4, 5]);
        assert_eq!(selector.statuses, [3]);
        assert_eq!(selector.tags, ["attack.t1059.001"]);
        let logsource = selector.logsource.unwrap();
        assert_eq!(logsource.category, "process_creation");
        assert!(logsource.product.is_empty() && logsource.service.is_empty());

        // A logsource field alone is a selection.
        let product = SelectorArgs {
            product: Some("windows".into()),
            ..Default::default()
        };
        assert!(product.to_selector().is_ok());
        // Empty values select nothing and are refused.
        let empty = SelectorArgs {
            tags: vec!["  ".into()],
            ..Default::default()
        };
        assert!(empty.to_selector().is_err());
    }

    #[test]
    fn rerun_needs_exactly_one_scope() {
        use pb::rerun_detection_request::Scope;
        assert_eq!(rerun_scope(&[], true).unwrap(), Scope::WholeCase(true));
        match rerun_scope(&["f1".into(), "f2".into()], false).unwrap() {
            Scope::Files(list) => assert_eq!(list.file_ids.len(), 2),
            other => panic!("unexpected scope {other:?}"),
        }
        assert!(rerun_scope(&[], false).is_err());
        assert!(rerun_scope(&["f1".into()], true).is_err());
        let too_many: Vec<String> = (0..=MAX_PAGE_SIZE).map(|n| n.to_string()).collect();
        assert!(rerun_scope(&too_many, false).is_err());
    }

    #[test]
    fn detection_filter_parses_times_and_flags() {
        let args = DetectionFilterArgs {
            from: Some("2024-01-01T00:00:00Z".into()),
            to: Some("2024-01-02T00:00:00+01:00".into()),
            no_correlation: true,
            levels: vec![pb::RuleLevel::High],
            ..Default::default()
        };
        let filter = args.to_filter().unwrap();
        let range = filter.time_range.unwrap();
        assert_eq!(range.start_unix_micros, Some(1_704_067_200_000_000));
        assert_eq!(range.end_unix_micros, Some(1_704_150_000_000_000));
        assert_eq!(filter.is_correlation, Some(false));
        assert_eq!(filter.levels, [4]);

        assert!(
            DetectionFilterArgs::default()
                .to_filter()
                .unwrap()
                .time_range
                .is_none()
        );
        let bad = DetectionFilterArgs {
            from: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(
            bad.to_filter()
                .unwrap_err()
                .to_string()
                .starts_with("--from")
        );
        let reversed = DetectionFilterArgs {
            from: Some("2024-01-02T00:00:00Z".into()),
            to: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(reversed.to_filter().is_err());
    }

    #[test]
    fn directory_walk_reports_paths_under_the_directory_name() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("rules");
        std::fs::create_dir_all(root.join("windows/process_creation")).unwrap();
        std::fs::create_dir_all(root.join(".github/workflows")).unwrap();
        std::fs::write(root.join("windows/process_creation/b.yml"), "title: b").unwrap();
        std::fs::write(root.join("windows/a.yaml"), "title: a").unwrap();
        std::fs::write(root.join("pack.ZIP"), "PK").unwrap();
        std::fs::write(root.join("README.md"), "not a rule").unwrap();
        std::fs::write(root.join(".github/workflows/ci.yml"), "on: push").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("windows/a.yaml"), root.join("link.yml")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("windows"), root.join("linked_dir")).unwrap();

        let single = temp.path().join("single.yml");
        std::fs::write(&single, "title: single").unwrap();

        let files = rule_files(&[root.clone(), single.clone()]).unwrap();
        let reported: Vec<&str> = files.iter().map(|f| f.report_path.as_str()).collect();
        assert_eq!(
            reported,
            [
                "rules/pack.ZIP",
                "rules/windows/a.yaml",
                "rules/windows/process_creation/b.yml",
                "single.yml",
            ]
        );
        assert_eq!(files[1].path, root.join("windows").join("a.yaml"));
        assert_eq!(files[3].path, single);

        // A trailing separator does not change the reported names.
        let trailing = PathBuf::from(format!("{}/", root.display()));
        assert_eq!(
            rule_files(&[trailing]).unwrap()[0].report_path,
            "rules/pack.ZIP"
        );
        // A sub-directory argument is reported under its own name.
        let sub = rule_files(&[root.join("windows")]).unwrap();
        assert_eq!(sub[0].report_path, "windows/a.yaml");
    }

    #[test]
    fn a_file_argument_must_be_a_rule_file() {
        let temp = tempfile::tempdir().unwrap();
        let text = temp.path().join("notes.txt");
        std::fs::write(&text, "x").unwrap();
        let error = rule_files(&[text]).unwrap_err();
        assert!(error.to_string().contains("not a rule file"), "{error}");
        assert!(rule_files(&[temp.path().join("missing.yml")]).is_err());
        assert!(rule_files(&[temp.path().to_path_buf()]).unwrap().is_empty());
    }

    #[test]
    fn report_paths_use_slashes() {
        let relative: PathBuf = ["a", "b", "c.yml"].iter().collect();
        assert_eq!(report_path(Some("rules"), &relative), "rules/a/b/c.yml");
        assert_eq!(report_path(None, &relative), "a/b/c.yml");
    }

    #[test]
    fn third_party_text_is_escaped_for_the_terminal() {
        assert_eq!(escaped("plain text"), "plain text");
        assert_eq!(escaped("a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escaped("line\nbreak\r"), "line\\nbreak\\r");
        assert_eq!(escaped("evil\u{202E}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escaped_multiline("a: 1\n\tb: \x07"), "a: 1\n\tb: \\u{7}");
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(cell("abcd", 4), "abcd");
        assert_eq!(cell("\x1b", 10), "\\u{1b}");
    }

    #[test]
    fn rule_files_are_streamed_in_bounded_chunks() {
        let temp = tempfile::tempdir().unwrap();
        let big = temp.path().join("big.zip");
        let size = CHUNK * 2 + 10;
        std::fs::write(&big, vec![7u8; size]).unwrap();
        let small = temp.path().join("small.yml");
        std::fs::write(&small, "title: x").unwrap();
        let files = rule_files(&[big, small]).unwrap();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
        read_rule_files(pb::ImportRulesOptions::default(), &files, &sender).unwrap();
        drop(sender);
        let mut parts = Vec::new();
        let mut ended = false;
        while let Ok(feed) = receiver.try_recv() {
            match feed {
                Feed::Chunk(chunk) => parts.push(chunk.part.unwrap()),
                Feed::End => ended = true,
            }
        }
        assert!(ended);
        assert!(matches!(parts[0], Part::Options(_)));
        let Part::File(header) = &parts[1] else {
            panic!("expected a header")
        };
        assert_eq!(
            (header.path.as_str(), header.size_bytes),
            ("big.zip", size as u64)
        );
        let data: Vec<usize> = parts[2..5]
            .iter()
            .map(|part| match part {
                Part::Data(data) => data.data.len(),
                _ => panic!("expected data"),
            })
            .collect();
        assert_eq!(data, [CHUNK, CHUNK, 10]);
        let Part::File(header) = &parts[5] else {
            panic!("expected a header")
        };
        assert_eq!(header.path, "small.yml");
        assert!(matches!(&parts[6], Part::Data(d) if d.data == b"title: x"));
        assert_eq!(parts.len(), 7);
    }

    fn parse(args: &[&str]) -> Result<crate::Cli, clap::Error> {
        <crate::Cli as clap::Parser>::try_parse_from(
            std::iter::once("casescope").chain(args.iter().copied()),
        )
    }

    #[test]
    fn the_command_line_is_consistent() {
        <crate::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn command_line_options_parse_and_conflict_as_documented() {
        assert!(parse(&["rules", "import", "rules/", "--label", "x", "--dry-run"]).is_ok());
        assert!(parse(&["rules", "import"]).is_err());
        assert!(parse(&["rules", "list", "--level", "high", "--level", "LOW"]).is_ok());
        assert!(parse(&["rules", "list", "--level", "severe"]).is_err());
        assert!(parse(&["rules", "list", "--enabled", "--disabled"]).is_err());
        assert!(parse(&["rules", "list", "--limit", "0"]).is_err());
        assert!(
            parse(&[
                "rules",
                "enable",
                "--status",
                "test",
                "--tag",
                "attack.t1059"
            ])
            .is_ok()
        );
        assert!(parse(&["rules", "disable", "--status", "beta"]).is_err());
        assert!(parse(&["rules", "disable", "--all", "--level", "low"]).is_err());
        assert!(parse(&["rules", "ruleset", "--json"]).is_ok());
        assert!(parse(&["rules", "show", "some-id"]).is_ok());

        assert!(parse(&["detections", "c1"]).is_ok());
        assert!(parse(&["detections", "c1", "--counts", "--level", "high"]).is_ok());
        assert!(parse(&["detections", "c1", "--counts", "--limit", "5"]).is_err());
        assert!(parse(&["detections", "c1", "--correlation", "--no-correlation"]).is_err());
        assert!(
            parse(&[
                "detections",
                "c1",
                "--from",
                "2024-01-01T00:00:00Z",
                "--desc",
                "--json"
            ])
            .is_ok()
        );

        assert!(parse(&["detect", "rerun", "c1"]).is_err());
        assert!(parse(&["detect", "rerun", "c1", "--all"]).is_ok());
        assert!(parse(&["detect", "rerun", "c1", "--file", "f1", "--file", "f2"]).is_ok());
        assert!(parse(&["detect", "rerun", "c1", "--file", "f1", "--all"]).is_err());
    }
}
