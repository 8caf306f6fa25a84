//! Laying a PDF's blocks out on A4 pages and drawing them with krilla.

use super::super::text::visible;
use super::{BODY, Block, LINE, MARGIN, PAGE_H, PAGE_W, PdfFonts};
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
pub(super) fn render(
    fonts: &PdfFonts,
    blocks: &[Block],
    report_id: &str,
) -> Result<Vec<u8>, String> {
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
