//! The PDF format (krilla): the report's parts are collected as a bounded list of
//! blocks (the timeline and the file table are capped for print, the rest said to be
//! in the other formats), laid out on A4 pages — wrapped text, tables whose header is
//! repeated on each page, page numbers — and written when the report ends. Text is drawn
//! with a TrueType font of the deployment (DejaVu Sans by default); a character the
//! font has no glyph for is shown as `⟨U+XXXX⟩`, never as an empty box or dropped.

use super::Part;
use super::text::{clip, visible};
use crate::model::TimelineEntry;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule};
use krilla::text::{Font, TextDirection};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};
use std::collections::HashMap;
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
                    vec![0.22, 0.30, 0.14, 0.10, 0.08, 0.08, 0.08],
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

/// One drawing operation on a page (y grows downwards; text at its baseline).
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        grey: u8,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        grey: u8,
    },
}

/// Text measurement with one font's advance widths (per point of size).
struct Face<'a> {
    font: FontRef<'a>,
    widths: HashMap<char, Option<f32>>,
}

impl<'a> Face<'a> {
    fn new(data: &'a [u8]) -> Result<Self, String> {
        Ok(Self {
            font: FontRef::new(data).map_err(|e| format!("PDF font: {e}"))?,
            widths: HashMap::new(),
        })
    }

    /// The advance of `c` at size 1, `None` when the font has no glyph for it.
    fn advance(&mut self, c: char) -> Option<f32> {
        if let Some(width) = self.widths.get(&c) {
            return *width;
        }
        let glyph = self.font.charmap().map(c);
        let width = glyph.and_then(|g| {
            self.font
                .glyph_metrics(Size::new(1.0), LocationRef::default())
                .advance_width(g)
        });
        self.widths.insert(c, width);
        width
    }

    /// `text` with what the font cannot draw shown as `⟨U+XXXX⟩` (or `[U+XXXX]`).
    fn drawable(&mut self, text: &str) -> String {
        let text = visible(text);
        let brackets = self.advance('⟨').is_some() && self.advance('⟩').is_some();
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let c = if c == '\t' { ' ' } else { c };
            if self.advance(c).is_some() || c == '\n' {
                out.push(c);
            } else if brackets {
                out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
            } else {
                out.push_str(&format!("[U+{:04X}]", c as u32));
            }
        }
        out
    }

    fn width(&mut self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| self.advance(c).unwrap_or(0.5))
            .sum::<f32>()
            * size
    }

    /// `text` (already drawable) wrapped to `width` at `size`: words kept whole where
    /// they fit, longer ones cut; line breaks kept.
    fn wrap(&mut self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split(' ') {
                let candidate = if line.is_empty() {
                    word.to_string()
                } else {
                    format!("{line} {word}")
                };
                if self.width(&candidate, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // The word alone: cut it where it overflows.
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, size) > width {
                        line.pop();
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// Lays the blocks out on pages.
struct Layout<'a> {
    regular: Face<'a>,
    bold: Face<'a>,
    pages: Vec<Vec<Op>>,
    y: f32,
}

const WIDTH: f32 = PAGE_W - 2.0 * MARGIN;
const BOTTOM: f32 = PAGE_H - MARGIN - 14.0;

impl Layout<'_> {
    fn page(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
        self.pages.last_mut().expect("a page")
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN;
    }

    fn ensure(&mut self, height: f32) {
        self.page();
        if self.y + height > BOTTOM && self.y > MARGIN {
            self.new_page();
        }
    }

    /// Wrapped text at `x` within `width`, advancing the cursor.
    fn text(&mut self, text: &str, x: f32, width: f32, size: f32, bold: bool, grey: u8) {
        let face = if bold {
            &mut self.bold
        } else {
            &mut self.regular
        };
        let text = face.drawable(text);
        let lines = face.wrap(&text, size, width);
        let step = size * LINE;
        for line in lines {
            self.ensure(step);
            let y = self.y + size;
            self.page().push(Op::Text {
                x,
                y,
                size,
                bold,
                grey,
                text: line,
            });
            self.y += step;
        }
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }

    fn table(&mut self, widths: &[f32], header: &[String], rows: &[Vec<String>]) {
        let size = BODY;
        let step = size * LINE;
        let pad = 3.0;
        let columns: Vec<(f32, f32)> = {
            let mut x = MARGIN;
            widths
                .iter()
                .map(|w| {
                    let column = (x, w * WIDTH);
                    x += w * WIDTH;
                    column
                })
                .collect()
        };
        let draw_row = |layout: &mut Self, cells: &[String], bold: bool, shade: bool| {
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(&columns)
                .map(|(cell, (_, w))| {
                    let face = if bold {
                        &mut layout.bold
                    } else {
                        &mut layout.regular
                    };
                    let text = face.drawable(cell);
                    face.wrap(&text, size, w - 2.0 * pad)
                })
                .collect();
            let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
            let height = lines as f32 * step + 2.0 * pad;
            let fresh_page = layout.y + height > BOTTOM && layout.y > MARGIN;
            layout.ensure(height);
            let top = layout.y;
            if shade {
                layout.page().push(Op::Rect {
                    x: MARGIN,
                    y: top,
                    w: WIDTH,
                    h: height,
                    grey: 236,
                });
            }
            for (cell, (x, _)) in wrapped.iter().zip(&columns) {
                for (i, line) in cell.iter().enumerate() {
                    let y = top + pad + size + i as f32 * step;
                    layout.page().push(Op::Text {
                        x: x + pad,
                        y,
                        size,
                        bold,
                        grey: 20,
                        text: line.clone(),
                    });
                }
            }
            layout.page().push(Op::Rect {
                x: MARGIN,
                y: top + height,
                w: WIDTH,
                h: 0.4,
                grey: 200,
            });
            layout.y = top + height;
            fresh_page
        };
        if !header.is_empty() {
            draw_row(self, header, true, true);
        }
        for row in rows {
            if draw_row(self, row, false, false) && !header.is_empty() {
                // The row opened a page: repeat the header above it.
                let last = self.pages.pop().expect("the new page");
                self.new_page();
                draw_row(self, header, true, true);
                let offset = self.y - MARGIN;
                let page = self.page();
                for op in last {
                    page.push(match op {
                        Op::Text {
                            x,
                            y,
                            size,
                            bold,
                            grey,
                            text,
                        } => Op::Text {
                            x,
                            y: y + offset,
                            size,
                            bold,
                            grey,
                            text,
                        },
                        Op::Rect { x, y, w, h, grey } => Op::Rect {
                            x,
                            y: y + offset,
                            w,
                            h,
                            grey,
                        },
                    });
                }
                self.y += offset;
            }
        }
        self.gap(6.0);
    }

    fn event(&mut self, e: &TimelineEntry) {
        self.ensure(BODY * LINE * 4.0);
        self.gap(4.0);
        let mut head = format!("{}  {}", e.datetime, e.computer);
        if e.starred {
            head.push_str("  ★ starred");
        }
        self.text(&head, MARGIN, WIDTH, BODY + 0.5, true, 20);
        let mut sub = e.channel.clone();
        if let Some(code) = e.event_code {
            sub.push_str(&format!(" · event {code}"));
        }
        if !e.provider.is_empty() {
            sub.push_str(&format!(" · {}", e.provider));
        }
        if !e.tags.is_empty() {
            sub.push_str(&format!(" · tags: {}", e.tags.join(", ")));
        }
        sub.push_str(&format!(" · event {}", e.event_id));
        self.text(&sub, MARGIN, WIDTH, BODY - 0.5, false, 100);
        for comment in &e.comments {
            let mut body = format!("{}: {}", comment.author, comment.body);
            if comment.truncated {
                body.push_str(" [cut]");
            }
            self.text(&body, MARGIN + 10.0, WIDTH - 10.0, BODY, false, 30);
        }
        let rows: Vec<Vec<String>> = e
            .fields
            .iter()
            .map(|f| vec![f.name.clone(), f.value.clone()])
            .collect();
        if !rows.is_empty() {
            self.table(&[0.3, 0.7], &[], &rows);
        }
        if e.more_fields > 0 {
            self.text(
                &format!("{} more fields in the event.", e.more_fields),
                MARGIN,
                WIDTH,
                BODY - 0.5,
                false,
                110,
            );
        }
    }
}

/// Lays out and draws `blocks` as a PDF.
fn render(fonts: &PdfFonts, blocks: &[Block], report_id: &str) -> Result<Vec<u8>, String> {
    let mut layout = Layout {
        regular: Face::new(&fonts.regular)?,
        bold: Face::new(&fonts.bold)?,
        pages: Vec::new(),
        y: MARGIN,
    };
    for block in blocks {
        match block {
            Block::Title(text) => {
                layout.text(text, MARGIN, WIDTH, 17.0, true, 10);
                layout.gap(2.0);
            }
            Block::Muted(text) => layout.text(text, MARGIN, WIDTH, BODY, false, 100),
            Block::Heading(text) => {
                layout.ensure(60.0);
                layout.gap(10.0);
                layout.text(text, MARGIN, WIDTH, 12.5, true, 10);
                let y = layout.y + 1.0;
                layout.page().push(Op::Rect {
                    x: MARGIN,
                    y,
                    w: WIDTH,
                    h: 0.8,
                    grey: 170,
                });
                layout.gap(5.0);
            }
            Block::Para(text) => {
                layout.text(text, MARGIN, WIDTH, BODY + 0.5, false, 20);
                layout.gap(3.0);
            }
            Block::Table(widths, header, rows) => layout.table(widths, header, rows),
            Block::Event(event) => layout.event(event),
            Block::Pre(text) => layout.text(text, MARGIN + 6.0, WIDTH - 12.0, BODY, false, 20),
        }
    }
    layout.page();
    let regular = Font::new(fonts.regular.clone().into(), 0).ok_or("PDF font: unusable")?;
    let bold = Font::new(fonts.bold.clone().into(), 0).ok_or("PDF bold font: unusable")?;
    let mut document = Document::new();
    let total = layout.pages.len();
    for (index, ops) in layout.pages.into_iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H).ok_or("page size")?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        let fill = |grey: u8| Fill {
            paint: rgb::Color::new(grey, grey, grey).into(),
            opacity: NormalizedF32::ONE,
            rule: FillRule::NonZero,
        };
        let footer = format!(
            "CaseScope report {report_id} · page {} of {total}",
            index + 1
        );
        let ops = ops.into_iter().chain(std::iter::once(Op::Text {
            x: MARGIN,
            y: PAGE_H - MARGIN + 6.0,
            size: 7.0,
            bold: false,
            grey: 120,
            text: footer,
        }));
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold: heavy,
                    grey,
                    text,
                } => {
                    surface.set_fill(Some(fill(grey)));
                    surface.draw_text(
                        Point::from_xy(x, y),
                        if heavy { bold.clone() } else { regular.clone() },
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect { x, y, w, h, grey } => {
                    let Some(rect) = Rect::from_xywh(x, y, w, h) else {
                        continue;
                    };
                    let mut path = PathBuilder::new();
                    path.push_rect(rect);
                    if let Some(path) = path.finish() {
                        surface.set_fill(Some(fill(grey)));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| format!("the PDF could not be written: {e:?}"))
}
