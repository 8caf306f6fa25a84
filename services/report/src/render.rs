//! Rendering a report, part by part, into each requested format.
//!
//! HTML and Markdown come from templates: one file per format made of macros, one per
//! part of the report (`begin`, `ai_summary`, `overview`, `files_begin`, `file`, `files_end`,
//! `detections_by_rule`, `detections_by_technique`, `ioc_matches`, `timeline_begin`,
//! `timeline_event`, `timeline_end`, `notes`, `end`), called in order as the data
//! arrives — so a report of any size is rendered in bounded memory. Every value a
//! template prints is escaped for its format (HTML entities; Markdown backslash escapes
//! of every ASCII punctuation character, line breaks as `<br>`), and characters that
//! change how the text around them displays (bidi overrides, zero-width characters)
//! are shown as `⟨U+XXXX⟩`; a template cannot forget to escape. JSON is written by
//! [`json`].

mod json;
mod pdf;
mod text;

use crate::model::*;
pub use json::JsonWriter;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error as JinjaError, Output, State};
pub use pdf::{PdfFonts, PdfWriter};
use std::path::Path;
use std::sync::Arc;
pub use text::{clip, visible};

/// The built-in templates.
const HTML_TEMPLATE: &str = include_str!("../templates/report.html.j2");
const MARKDOWN_TEMPLATE: &str = include_str!("../templates/report.md.j2");
/// Template names (the extension chooses the escaping).
const HTML_NAME: &str = "report.html";
const MARKDOWN_NAME: &str = "report.md";
/// Macros every template must define.
pub const MACROS: &[&str] = &[
    "begin",
    "ai_summary",
    "overview",
    "files_begin",
    "file",
    "files_end",
    "detections_by_rule",
    "detections_by_technique",
    "ioc_matches",
    "timeline_begin",
    "timeline_event",
    "timeline_end",
    "notes",
    "end",
];

/// A template that cannot be used, with the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// One part of a report, in the order it is rendered.
#[derive(Debug, Clone)]
pub enum Part {
    Begin(Box<Meta>),
    AiSummary(Box<AiSummary>),
    Overview(Box<Meta>, Box<Overview>),
    FilesBegin,
    File(Box<FileEntry>),
    FilesEnd(u64),
    DetectionsByRule(Box<Detections>),
    DetectionsByTechnique(Box<Detections>),
    IocMatches(Box<IocMatches>),
    TimelineBegin(u64, Vec<String>),
    TimelineEvent(Box<TimelineEntry>),
    TimelineEnd(TimelineEnd),
    Notes(Box<Notes>),
    End(Box<Meta>),
}

/// The HTML and Markdown templates of a deployment.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    /// Where they came from, for messages.
    origin: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.origin)
    }
}

impl Templates {
    pub fn builtin() -> Self {
        Self::from_sources(
            HTML_TEMPLATE.to_string(),
            MARKDOWN_TEMPLATE.to_string(),
            "built in",
        )
        .unwrap_or_else(|error| panic!("the built-in report templates are broken: {error}"))
    }

    /// The templates of `dir`: `report.html.j2` and `report.md.j2`, each optional (the
    /// built-in one is used for a file that is not there). Checked whole: a template
    /// that does not parse or lacks a macro is refused with the file and the reason.
    pub fn from_dir(dir: &Path) -> Result<Self, TemplateError> {
        let read = |name: &str, builtin: &str| -> Result<String, TemplateError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Ok(builtin.to_string())
                }
                Err(error) => Err(TemplateError(format!(
                    "cannot read the report template {}: {error}",
                    path.display()
                ))),
            }
        };
        let html = read("report.html.j2", HTML_TEMPLATE)?;
        let markdown = read("report.md.j2", MARKDOWN_TEMPLATE)?;
        Self::from_sources(html, markdown, &dir.display().to_string())
    }

    fn from_sources(html: String, markdown: String, origin: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else if name.ends_with(".md") {
                AutoEscape::Custom("markdown")
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        env.add_filter("num", text::thousands);
        env.add_filter("bytes", text::bytes);
        env.add_filter("fenced", text::fenced);
        for (name, source, file) in [
            (HTML_NAME, html, "report.html.j2"),
            (MARKDOWN_NAME, markdown, "report.md.j2"),
        ] {
            env.add_template_owned(name, source).map_err(|error| {
                TemplateError(format!("report template {file} ({origin}): {error}"))
            })?;
            let template = env
                .get_template(name)
                .map_err(|error| TemplateError(format!("report template {file}: {error}")))?;
            let captured = template.render_captured(()).map_err(|error| {
                TemplateError(format!("report template {file} ({origin}): {error}"))
            })?;
            for name in MACROS {
                if captured.state().lookup(name).is_none() {
                    return Err(TemplateError(format!(
                        "report template {file} ({origin}) does not define the macro `{name}` \
                         (every template defines: {})",
                        MACROS.join(", ")
                    )));
                }
            }
        }
        Ok(Self {
            env: Arc::new(env),
            origin: origin.to_string(),
        })
    }

    /// Renders `parts` with the template `name` onto `out`.
    fn render(&self, name: &str, parts: &[Part], out: &mut Vec<u8>) -> Result<(), String> {
        let template = self.env.get_template(name).map_err(|e| e.to_string())?;
        let captured = template.render_captured(()).map_err(|e| e.to_string())?;
        let state = captured.state();
        for part in parts {
            let (name, args) = macro_call(part);
            let text = state.call_macro(name, &args).map_err(|error| {
                format!("the {name} part of the {} template: {error}", self.origin)
            })?;
            out.extend_from_slice(text.as_bytes());
        }
        Ok(())
    }
}

fn v<T: serde::Serialize>(value: &T) -> Value {
    Value::from_serialize(value)
}

fn macro_call(part: &Part) -> (&'static str, Vec<Value>) {
    match part {
        Part::Begin(meta) => ("begin", vec![v(meta)]),
        Part::AiSummary(summary) => ("ai_summary", vec![v(summary)]),
        Part::Overview(meta, overview) => ("overview", vec![v(meta), v(overview)]),
        Part::FilesBegin => ("files_begin", vec![]),
        Part::File(file) => ("file", vec![v(file)]),
        Part::FilesEnd(count) => ("files_end", vec![Value::from(*count)]),
        Part::DetectionsByRule(d) => ("detections_by_rule", vec![v(d)]),
        Part::DetectionsByTechnique(d) => ("detections_by_technique", vec![v(d)]),
        Part::IocMatches(m) => ("ioc_matches", vec![v(m)]),
        Part::TimelineBegin(total, tags) => ("timeline_begin", vec![Value::from(*total), v(tags)]),
        Part::TimelineEvent(event) => ("timeline_event", vec![v(event)]),
        Part::TimelineEnd(end) => ("timeline_end", vec![v(end)]),
        Part::Notes(notes) => ("notes", vec![v(notes)]),
        Part::End(meta) => ("end", vec![v(meta)]),
    }
}

/// Prints a value escaped for the template's format.
fn format_value(
    out: &mut Output<'_>,
    state: &State<'_, '_>,
    value: &Value,
) -> Result<(), JinjaError> {
    if value.is_undefined() || value.is_none() {
        return Ok(());
    }
    if value.is_safe() {
        return write!(out, "{value}").map_err(JinjaError::from);
    }
    let shown = match value.as_str() {
        Some(text) => visible(text).into_owned(),
        None => value.to_string(),
    };
    let escaped = match state.auto_escape() {
        AutoEscape::Html => text::html_escape(&shown),
        AutoEscape::Custom("markdown") => text::markdown_escape(&shown),
        _ => shown,
    };
    out.write_str(&escaped).map_err(JinjaError::from)
}

/// A report format being rendered.
pub enum Renderer {
    Html(Templates),
    Markdown(Templates),
    Json(JsonWriter),
    Pdf(Box<PdfWriter>),
}

impl Renderer {
    /// Renders `parts` onto `out`.
    pub fn render(&mut self, parts: &[Part], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Renderer::Html(templates) => templates.render(HTML_NAME, parts, out),
            Renderer::Markdown(templates) => templates.render(MARKDOWN_NAME, parts, out),
            Renderer::Json(writer) => {
                for part in parts {
                    writer.part(part, out)?;
                }
                Ok(())
            }
            Renderer::Pdf(writer) => {
                for part in parts {
                    writer.part(part, out)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
