//! The PDF format (krilla): the report's parts are collected as a bounded list of
//! blocks (the timeline and the file table are capped for print, the rest said to be
//! in the other formats), laid out on A4 pages — wrapped text, tables whose header is
//! repeated on each page, page numbers — and written when the report ends. Text is drawn
//! with a TrueType font of the deployment (DejaVu Sans by default); a character the
//! font has no glyph for is shown as `⟨U+XXXX⟩`, never as an empty box or dropped.

mod layout;

use super::Part;
use super::text::clip;
use crate::model::{AiSummary, TimelineEntry};
use layout::render;
use skrifa::FontRef;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Timeline events a PDF shows at most (the other formats show them all).
pub(crate) const MAX_PDF_EVENTS: u64 = 2_000;
/// File rows a PDF shows at most.
const MAX_PDF_FILES: u64 = 5_000;
/// Fields shown per event, and characters per value, in a PDF.
const PDF_FIELDS: usize = 12;
const PDF_VALUE_CHARS: usize = 600;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 42.0;
const BODY: f32 = 8.5;
const LINE: f32 = 1.32;

/// Where the default fonts are looked for (Debian's fonts-dejavu-core, then Liberation).
const DEFAULT_FONTS: &[(&str, &str)] = &[
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ),
];

/// The fonts PDF reports are drawn with.
#[derive(Clone)]
pub struct PdfFonts {
    regular: Arc<Vec<u8>>,
    bold: Arc<Vec<u8>>,
    pub origin: String,
}

impl std::fmt::Debug for PdfFonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PdfFonts({})", self.origin)
    }
}

impl PdfFonts {
    /// The font at `regular` (and `bold`, else the regular one for headings too),
    /// checked to be a usable TrueType/OpenType font.
    pub fn load(regular: &Path, bold: Option<&Path>) -> Result<Self, String> {
        let read = |path: &Path| -> Result<Arc<Vec<u8>>, String> {
            let data = std::fs::read(path)
                .map_err(|e| format!("cannot read the font {}: {e}", path.display()))?;
            FontRef::new(&data)
                .map_err(|e| format!("{} is not a TrueType/OpenType font: {e}", path.display()))?;
            Ok(Arc::new(data))
        };
        let regular_data = read(regular)?;
        let bold_data = match bold {
            Some(path) => read(path)?,
            None => regular_data.clone(),
        };
        Ok(Self {
            regular: regular_data,
            bold: bold_data,
            origin: regular.display().to_string(),
        })
    }

    /// The first default font found on this machine.
    pub fn discover() -> Option<Self> {
        DEFAULT_FONTS.iter().find_map(|(regular, bold)| {
            let bold = PathBuf::from(bold);
            Self::load(Path::new(regular), bold.is_file().then_some(bold.as_path())).ok()
        })
    }
}

/// What a PDF shows, collected as the parts arrive.
#[derive(Debug, Clone)]
enum Block {
    Title(String),
    Muted(String),
    Heading(String),
    Para(String),
    /// Column widths (fractions of the text width), header, rows.
    Table(Vec<f32>, Vec<String>, Vec<Vec<String>>),
    Event(Box<TimelineEntry>),
    Pre(String),
}

pub struct PdfWriter {
    fonts: PdfFonts,
    blocks: Vec<Block>,
    files: u64,
    events: u64,
}

fn n(value: u64) -> String {
    super::text::thousands(minijinja::Value::from(value))
}

/// The AI summary section.
fn summary_blocks(b: &mut Vec<Block>, s: &AiSummary) {
    b.push(Block::Heading("AI summary".into()));
    if s.status != "included" {
        b.push(Block::Muted(format!("Not included: {}.", s.error)));
        return;
    }
    b.push(Block::Muted(format!(
        "Written by the language model {} from {} of {} tagged or starred events, {} \
         detection rules and {} IOCs ({} secret-looking values redacted before sending{}). \
         Each sentence's citations were checked against what was given; check the cited \
         evidence before relying on a sentence.",
        s.model,
        n(s.events_given),
        n(s.events_selected),
        n(s.detections_given),
        n(s.iocs_given),
        n(s.redactions),
        if s.redaction_off {
            "; redaction is off"
        } else {
            ""
        },
    )));
    for sentence in &s.sentences {
        let mark = if sentence.uncited {
            "[uncited: points at no evidence]".to_string()
        } else {
            format!("[{}]", sentence.citations.join(", "))
        };
        b.push(Block::Para(format!("{} {mark}", sentence.text)));
    }
    if s.uncited > 0 {
        b.push(Block::Muted(format!(
            "{} of {} sentences cite no evidence given.",
            s.uncited,
            s.sentences.len()
        )));
    }
    if !s.invented_citations.is_empty() {
        b.push(Block::Muted(format!(
            "The model cited ids that were not given; they were removed: {}.",
            s.invented_citations.join(", ")
        )));
    }
    if s.truncated {
        b.push(Block::Muted("The answer was cut at its size limit.".into()));
    }
    let rows = s
        .sources
        .iter()
        .map(|x| vec![x.id.clone(), x.label.clone(), x.event_id.clone()])
        .collect();
    b.push(Block::Table(
        vec![0.08, 0.62, 0.3],
        vec!["Id".into(), "Evidence given".into(), "Event id".into()],
        rows,
    ));
}

impl PdfWriter {
    pub fn new(fonts: PdfFonts) -> Self {
        Self {
            fonts,
            blocks: Vec::new(),
            files: 0,
            events: 0,
        }
    }

    fn table(&mut self) -> Option<&mut Vec<Vec<String>>> {
        match self.blocks.last_mut() {
            Some(Block::Table(_, _, rows)) => Some(rows),
            _ => None,
        }
    }

    /// Takes one part; at the end, writes the whole PDF onto `out`.
    pub fn part(&mut self, part: &Part, out: &mut Vec<u8>) -> Result<(), String> {
        let b = &mut self.blocks;
        match part {
            Part::Begin(m) => {
                b.push(Block::Title(m.title.clone()));
                b.push(Block::Muted(format!(
                    "Case {} · {} · created {}",
                    m.case_name, m.case_state, m.case_created_at
                )));
                b.push(Block::Muted(format!(
                    "Report {} · generated {} for {}",
                    m.id, m.generated_at, m.requested_by
                )));
                if !m.case_description.is_empty() {
                    b.push(Block::Para(m.case_description.clone()));
                }
            }
            Part::AiSummary(summary) => summary_blocks(b, summary),
            Part::Overview(m, o) => {
                b.push(Block::Heading("Overview".into()));
                let opt = |v: Option<u64>| v.map(n).unwrap_or_else(|| "not available".into());
                let rows = vec![
                    vec![
                        "Files".into(),
                        format!("{} ({} bytes)", n(o.files), n(o.bytes)),
                    ],
                    vec!["Files failed".into(), n(o.files_failed)],
                    vec!["Records read".into(), n(o.records_read)],
                    vec!["Events indexed".into(), n(o.events_indexed)],
                    vec!["Records rejected".into(), n(o.records_rejected)],
                    vec!["Duplicates skipped".into(), n(o.duplicates_skipped)],
                    vec!["Detections".into(), opt(o.detections)],
                    vec!["IOC matches".into(), opt(o.ioc_matches)],
                    vec!["Tagged or starred events".into(), opt(o.tagged_events)],
                    vec!["First event".into(), o.first_event.clone()],
                    vec!["Last event".into(), o.last_event.clone()],
                ];
                b.push(Block::Table(vec![0.4, 0.6], vec![], rows));
                b.push(Block::Heading("Members".into()));
                if !m.members_unavailable.is_empty() {
                    b.push(Block::Muted(format!(
                        "Not available: {}.",
                        m.members_unavailable
                    )));
                } else if m.members.is_empty() {
                    b.push(Block::Muted("No one has a role on this case.".into()));
                } else {
                    let rows = m
                        .members
                        .iter()
                        .map(|x| vec![x.name.clone(), x.role.clone(), x.since.clone()])
                        .collect();
                    b.push(Block::Table(
                        vec![0.4, 0.25, 0.35],
                        vec!["User".into(), "Role".into(), "Since (UTC)".into()],
                        rows,
                    ));
                }
            }
            Part::FilesBegin => {
                b.push(Block::Heading("Evidence and chain of custody".into()));
                b.push(Block::Table(
                    vec![0.22, 0.27, 0.17, 0.08, 0.07, 0.095, 0.095],
                    [
                        "File",
                        "SHA-256",
                        "Uploaded (UTC), by",
                        "Status",
                        "Read",
                        "Indexed",
                        "Rejected",
                    ]
                    .map(String::from)
                    .to_vec(),
                    Vec::new(),
                ));
            }
            Part::File(f) => {
                self.files += 1;
                if self.files <= MAX_PDF_FILES
                    && let Some(rows) = self.table()
                {
                    let rejects: Vec<String> = f
                        .rejects
                        .iter()
                        .map(|r| format!("{}: {}", r.reason, n(r.count)))
                        .collect();
                    rows.push(vec![
                        format!("{} ({})", f.name, f.format),
                        f.sha256.clone(),
                        format!("{} {}", f.uploaded_at, f.uploaded_by),
                        if f.error.is_empty() {
                            f.status.clone()
                        } else {
                            format!("{}: {}", f.status, f.error)
                        },
                        n(f.records_read),
                        n(f.events_indexed),
                        if rejects.is_empty() {
                            n(f.records_rejected)
                        } else {
                            format!("{} ({})", n(f.records_rejected), rejects.join(", "))
                        },
                    ]);
                }
            }
            Part::FilesEnd(count) => {
                let more = count.saturating_sub(MAX_PDF_FILES);
                let mut text = format!(
                    "{} files. Read = indexed + rejected + duplicates skipped, for every file.",
                    n(*count)
                );
                if more > 0 {
                    text.push_str(&format!(
                        " {} more files are in the HTML, Markdown and JSON reports.",
                        n(more)
                    ));
                }
                b.push(Block::Muted(text));
            }
            Part::DetectionsByRule(d) => {
                b.push(Block::Heading("Detections by rule".into()));
                if !d.unavailable.is_empty() {
                    b.push(Block::Muted(format!("Not available: {}.", d.unavailable)));
                } else if d.total == 0 {
                    b.push(Block::Para("No detections.".into()));
                } else {
                    let levels: Vec<String> = d
                        .by_level
                        .iter()
                        .map(|l| format!("{} {}", n(l.count), l.name))
                        .collect();
                    b.push(Block::Para(format!(
                        "{} detections: {}.",
                        n(d.total),
                        levels.join(", ")
                    )));
                    let rows = d
                        .by_rule
                        .iter()
                        .map(|r| {
                            vec![
                                format!("{}\n{}", r.title, r.rule_id),
                                r.level.clone(),
                                n(r.count),
                            ]
                        })
                        .collect();
                    b.push(Block::Table(
                        vec![0.7, 0.15, 0.15],
                        ["Rule", "Level", "Detections"].map(String::from).to_vec(),
                        rows,
                    ));
                }
            }
            Part::DetectionsByTechnique(d) => {
                b.push(Block::Heading(
                    "Detections by ATT&CK tactic and technique".into(),
                ));
                if !d.unavailable.is_empty() {
                    b.push(Block::Muted(format!("Not available: {}.", d.unavailable)));
                } else {
                    for (title, list) in [("Tactic", &d.by_tactic), ("Technique", &d.by_technique)]
                    {
                        let rows = list
                            .iter()
                            .map(|c| vec![c.name.clone(), n(c.count)])
                            .collect();
                        b.push(Block::Table(
                            vec![0.7, 0.3],
                            vec![title.into(), "Detections".into()],
                            rows,
                        ));
                    }
                }
            }
            Part::IocMatches(m) => {
                b.push(Block::Heading("IOC matches".into()));
                if !m.unavailable.is_empty() {
                    b.push(Block::Muted(format!("Not available: {}.", m.unavailable)));
                } else if m.total == 0 {
                    b.push(Block::Para("No IOC matched an event.".into()));
                } else {
                    b.push(Block::Para(format!(
                        "{} matches in {} events.",
                        n(m.total),
                        n(m.distinct_events)
                    )));
                    let rows = m
                        .by_ioc
                        .iter()
                        .map(|i| vec![i.ioc_type.clone(), i.value.clone(), n(i.count)])
                        .collect();
                    b.push(Block::Table(
                        vec![0.2, 0.6, 0.2],
                        ["Type", "IOC", "Matches"].map(String::from).to_vec(),
                        rows,
                    ));
                }
            }
            Part::TimelineBegin(selected, tags) => {
                b.push(Block::Heading(
                    "Timeline of tagged and starred events".into(),
                ));
                let which = if tags.is_empty() {
                    "tagged or starred".to_string()
                } else {
                    format!("tagged {}", tags.join(", "))
                };
                b.push(Block::Muted(format!(
                    "{} events {which}, oldest first, with their comments.",
                    n(*selected)
                )));
            }
            Part::TimelineEvent(e) => {
                self.events += 1;
                if self.events <= MAX_PDF_EVENTS {
                    let mut e = e.as_ref().clone();
                    e.fields.truncate(PDF_FIELDS);
                    for field in &mut e.fields {
                        let (value, cut) = clip(&field.value, PDF_VALUE_CHARS);
                        field.value = if cut { format!("{value}…") } else { value };
                    }
                    b.push(Block::Event(Box::new(e)));
                }
            }
            Part::TimelineEnd(t) => {
                if !t.unavailable.is_empty() {
                    b.push(Block::Muted(format!("Not available: {}.", t.unavailable)));
                } else if t.shown == 0 {
                    b.push(Block::Para("No event is tagged or starred.".into()));
                }
                let beyond = self.events.saturating_sub(MAX_PDF_EVENTS) + t.left_out;
                if beyond > 0 {
                    b.push(Block::Para(format!(
                        "{} more events of the selection are not in this PDF (it shows at most {}); \
                         the HTML, Markdown and JSON reports hold up to the report's limit, and the \
                         timeline export holds them all.",
                        n(beyond),
                        n(MAX_PDF_EVENTS)
                    )));
                }
            }
            Part::Notes(notes) => {
                b.push(Block::Heading("Analyst notes".into()));
                if !notes.unavailable.is_empty() {
                    b.push(Block::Muted(format!(
                        "Not available: {}.",
                        notes.unavailable
                    )));
                } else if notes.text.is_empty() {
                    b.push(Block::Muted("The case has no notes.".into()));
                } else {
                    b.push(Block::Muted(format!(
                        "Version {}, saved {}.",
                        notes.version, notes.updated_at
                    )));
                    b.push(Block::Pre(notes.text.clone()));
                }
            }
            Part::End(m) => {
                b.push(Block::Muted(format!(
                    "CaseScope {} · report {} · case {} · generated {}.",
                    m.version, m.id, m.case_id, m.generated_at
                )));
                let bytes = render(&self.fonts, &self.blocks, &m.id)?;
                self.blocks.clear();
                out.extend_from_slice(&bytes);
            }
        }
        Ok(())
    }
}
