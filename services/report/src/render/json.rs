//! The JSON format: one object, written part by part (so the timeline streams):
//!
//! ```text
//! {"format": "casescope-report/1", "report": {…}, "ai_summary": {…},
//!  "overview": {…}, "files": [{…}, …], "files_total": n,
//!  "detections_by_rule": {…}, "detections_by_technique": {…}, "ioc_matches": {…},
//!  "timeline": {"selected": n, "tags": […], "events": [{…}, …], "shown": n, "left_out": n},
//!  "notes": {…}}
//! ```
//!
//! Sections appear in the order asked for; values are the data as read (JSON escaping
//! only).

use super::Part;
use serde::Serialize;

#[derive(Debug, Default)]
pub struct JsonWriter {
    /// Items written in the array now open.
    items: u64,
}

fn put(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), String> {
    serde_json::to_writer(&mut *out, value).map_err(|e| format!("JSON: {e}"))
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\n\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
}

impl JsonWriter {
    fn item(&mut self, out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), String> {
        if self.items > 0 {
            out.push(b',');
        }
        out.push(b'\n');
        self.items += 1;
        put(out, value)
    }

    pub fn part(&mut self, part: &Part, out: &mut Vec<u8>) -> Result<(), String> {
        match part {
            Part::Begin(meta) => {
                out.extend_from_slice(b"{\"format\": \"casescope-report/1\",\n\"report\": ");
                put(out, meta)
            }
            Part::AiSummary(summary) => {
                key(out, "ai_summary");
                put(out, summary)
            }
            Part::Overview(_, overview) => {
                key(out, "overview");
                put(out, overview)
            }
            Part::FilesBegin => {
                key(out, "files");
                out.push(b'[');
                self.items = 0;
                Ok(())
            }
            Part::File(file) => self.item(out, file),
            Part::FilesEnd(count) => {
                out.extend_from_slice(b"]");
                key(out, "files_total");
                put(out, count)
            }
            Part::DetectionsByRule(d) => {
                key(out, "detections_by_rule");
                put(out, d)
            }
            Part::DetectionsByTechnique(d) => {
                key(out, "detections_by_technique");
                put(out, d)
            }
            Part::IocMatches(m) => {
                key(out, "ioc_matches");
                put(out, m)
            }
            Part::TimelineBegin(total, tags) => {
                key(out, "timeline");
                out.extend_from_slice(b"{\"selected\": ");
                put(out, total)?;
                out.extend_from_slice(b", \"tags\": ");
                put(out, tags)?;
                out.extend_from_slice(b", \"events\": [");
                self.items = 0;
                Ok(())
            }
            Part::TimelineEvent(event) => self.item(out, event),
            Part::TimelineEnd(end) => {
                out.extend_from_slice(b"], \"shown\": ");
                put(out, &end.shown)?;
                out.extend_from_slice(b", \"left_out\": ");
                put(out, &end.left_out)?;
                out.extend_from_slice(b", \"unavailable\": ");
                put(out, &end.unavailable)?;
                out.push(b'}');
                Ok(())
            }
            Part::Notes(notes) => {
                key(out, "notes");
                put(out, notes)
            }
            Part::End(_) => {
                out.extend_from_slice(b"}\n");
                Ok(())
            }
        }
    }
}
