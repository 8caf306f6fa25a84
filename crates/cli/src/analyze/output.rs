//! How `casescope analyze` prints its timeline: detections, correlations and IOC
//! matches as a table, CSV or JSON lines, in time order.

use super::AnalyzeArgs;
use casescope_sigma::RuleSet;
use std::io::Write;
use std::sync::Arc;

/// What rows point into: the rules, and the IOCs hunted.
pub(super) struct Catalog<'a> {
    pub rules: &'a RuleSet,
    pub iocs: &'a [IocInfo],
}

/// An IOC as rows print it.
pub(super) struct IocInfo {
    pub kind: casescope_ioc::IocType,
    pub value: String,
    /// `type:value`, the rule id column of its rows.
    pub id: String,
}

/// An IOC match as one JSON line.
fn ioc_json(
    row: &Row,
    printed: &Printed<'_>,
    ioc: &IocInfo,
    field: &str,
    matched: &str,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        timestamp: &'a str,
        level: &'static str,
        ioc_type: &'static str,
        ioc_value: &'a str,
        field: &'a str,
        matched: &'a str,
        computer: &'a str,
        channel: &'a str,
        event_id: Option<u32>,
        record_id: Option<u64>,
        file: &'a str,
    }
    serde_json::to_writer(
        &mut *out,
        &Line {
            timestamp: &printed.timestamp,
            level: "ioc",
            ioc_type: ioc.kind.name(),
            ioc_value: &ioc.value,
            field,
            matched,
            computer: &row.computer,
            channel: &row.channel,
            event_id: row.event_id,
            record_id: row.record_id,
            file: row.file(),
        },
    )?;
    out.push(b'\n');
    Ok(())
}

/// One detection in the timeline, compact until printed: the rule by index, texts that
/// repeat (computer, channel, file) shared.
pub(super) struct Row {
    pub(super) micros: i64,
    pub(super) origin: Origin,
    pub(super) computer: Arc<str>,
    pub(super) channel: Arc<str>,
    pub(super) event_id: Option<u32>,
    pub(super) record_id: Option<u64>,
}

pub(super) enum Origin {
    /// A rule's match in the file named here.
    Rule { rule: usize, file: Arc<str> },
    /// A correlation rule's hit, described.
    Correlation { correlation: usize, text: String },
    /// An IOC (by index) found in a field of an event of the file named here.
    Ioc {
        ioc: u32,
        field: Arc<str>,
        matched: Box<str>,
        file: Arc<str>,
    },
}

impl Row {
    /// The file column: the file, or the correlation's description.
    pub(super) fn file(&self) -> &str {
        match &self.origin {
            Origin::Rule { file, .. } | Origin::Ioc { file, .. } => file,
            Origin::Correlation { text, .. } => text,
        }
    }

    /// The rule's id, or the IOC's `type:value`.
    pub(super) fn rule_id<'a>(&self, found: &'a Catalog<'_>) -> &'a str {
        match &self.origin {
            Origin::Rule { rule, .. } => &found.rules.rules[*rule].meta.id,
            Origin::Correlation { correlation, .. } => &found.rules.correlations[*correlation].id,
            Origin::Ioc { ioc, .. } => &found.iocs[*ioc as usize].id,
        }
    }

    fn printed<'a>(&'a self, found: &'a Catalog<'_>) -> Printed<'a> {
        let rules = found.rules;
        let (level, rule_title, rule_content_hash, tactics, techniques) = match &self.origin {
            Origin::Rule { rule, .. } => {
                let meta = &rules.rules[*rule].meta;
                (
                    meta.level.as_deref(),
                    meta.title.as_str(),
                    meta.content_hash.as_str(),
                    meta.tactics.as_slice(),
                    meta.techniques.as_slice(),
                )
            }
            Origin::Correlation { correlation, .. } => {
                let correlation = &rules.correlations[*correlation];
                (
                    correlation.level.as_deref(),
                    correlation.title.as_str(),
                    "",
                    &[][..],
                    &[][..],
                )
            }
            Origin::Ioc { ioc, .. } => (
                Some("ioc"),
                found.iocs[*ioc as usize].id.as_str(),
                "",
                &[][..],
                &[][..],
            ),
        };
        Printed {
            timestamp: time_text(self.micros),
            level: level.unwrap_or_default(),
            rule_title,
            rule_id: self.rule_id(found),
            computer: &self.computer,
            channel: &self.channel,
            event_id: self.event_id,
            record_id: self.record_id,
            file: self.file(),
            rule_content_hash,
            tactics,
            techniques,
        }
    }
}

/// A row as printed.
#[derive(serde::Serialize)]
struct Printed<'a> {
    timestamp: String,
    level: &'a str,
    rule_title: &'a str,
    rule_id: &'a str,
    computer: &'a str,
    channel: &'a str,
    event_id: Option<u32>,
    record_id: Option<u64>,
    file: &'a str,
    /// JSON only: the rule's content hash and ATT&CK mapping.
    rule_content_hash: &'a str,
    tactics: &'a [String],
    techniques: &'a [String],
}

/// Shares each distinct computer or channel name among a thread's rows.
#[derive(Default)]
struct Names(std::collections::HashMap<String, Arc<str>>);

thread_local! {
    static NAMES: std::cell::RefCell<Names> = std::cell::RefCell::new(Names::default());
}

/// `name` shared through this thread's [`Names`].
pub(super) fn shared_name(name: Option<&str>) -> Arc<str> {
    NAMES.with(|names| match names.try_borrow_mut() {
        Ok(mut names) => names.get(name),
        Err(_) => Arc::from(name.unwrap_or_default()),
    })
}

impl Names {
    fn get(&mut self, name: Option<&str>) -> Arc<str> {
        let name = name.unwrap_or_default();
        if let Some(shared) = self.0.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        // Bounded: past this many names, rows simply keep their own copy.
        if self.0.len() < 100_000 {
            self.0.insert(name.to_string(), shared.clone());
        }
        shared
    }
}

/// `2024-03-11T08:00:02.913000Z`: the time in UTC with microseconds (a number of
/// microseconds when out of range). Written field by field: a format string is parsed
/// again for every call, and a timeline prints one per detection.
pub(super) fn time_text(micros: i64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(time) = chrono::DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    if !(0..=9999).contains(&time.year()) {
        return time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    }
    use std::fmt::Write as _;
    let mut text = String::with_capacity(27);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.timestamp_subsec_micros()
    );
    text
}

/// Rows formatted at a time, split among the cores: the output in memory stays bounded.
const PRINT_BLOCK: usize = 8192;

pub(super) fn print_rows(
    rows: &[Row],
    found: &Catalog<'_>,
    args: &AnalyzeArgs,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.csv {
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record([
            "timestamp",
            "level",
            "rule_title",
            "rule_id",
            "computer",
            "channel",
            "event_id",
            "record_id",
            "file",
        ])?;
        writer.flush()?;
    } else if !args.json {
        writeln!(
            out,
            "{:<27} {:<13} {:<60} {:<36} {:<24} {:<40} {:>6} {:>10}  FILE",
            "TIME", "LEVEL", "RULE", "RULE ID", "COMPUTER", "CHANNEL", "EVENT", "RECORD"
        )?;
    }
    // A timeline of hundreds of thousands of detections is formatted on every core,
    // a block at a time, and written in order.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    for block in rows.chunks(PRINT_BLOCK) {
        let share = block.len().div_ceil(threads).max(1);
        let texts = std::thread::scope(|scope| {
            let handles: Vec<_> = block
                .chunks(share)
                .map(|part| scope.spawn(move || format_rows(part, found, args)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("formatting the output failed")))
                })
                .collect::<anyhow::Result<Vec<Vec<u8>>>>()
        })?;
        for text in texts {
            out.write_all(&text)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `rows` as printed (JSON lines, CSV records or table lines), without a header.
/// JSON lines, as [`Printed`] serialises, with each rule's own fields rendered once
/// (per block of rows) rather than escaped again on every row it matched.
fn json_rows(rows: &[Row], found: &Catalog<'_>, out: &mut Vec<u8>) -> anyhow::Result<()> {
    // (correlation?, index) → the fields between `timestamp` and `computer`, and those
    // after `file` with the closing brace.
    let mut rendered: std::collections::HashMap<(bool, usize), (Vec<u8>, Vec<u8>)> =
        std::collections::HashMap::new();
    for row in rows {
        let printed = row.printed(found);
        let key = match &row.origin {
            Origin::Rule { rule, .. } => (false, *rule),
            Origin::Correlation { correlation, .. } => (true, *correlation),
            Origin::Ioc {
                ioc,
                field,
                matched,
                ..
            } => {
                ioc_json(
                    row,
                    &printed,
                    &found.iocs[*ioc as usize],
                    field,
                    matched,
                    out,
                )?;
                continue;
            }
        };
        let (middle, tail) = match rendered.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let mut middle = b"\"level\":".to_vec();
                serde_json::to_writer(&mut middle, printed.level)?;
                middle.extend_from_slice(b",\"rule_title\":");
                serde_json::to_writer(&mut middle, printed.rule_title)?;
                middle.extend_from_slice(b",\"rule_id\":");
                serde_json::to_writer(&mut middle, printed.rule_id)?;
                let mut tail = b",\"rule_content_hash\":".to_vec();
                serde_json::to_writer(&mut tail, printed.rule_content_hash)?;
                tail.extend_from_slice(b",\"tactics\":");
                serde_json::to_writer(&mut tail, printed.tactics)?;
                tail.extend_from_slice(b",\"techniques\":");
                serde_json::to_writer(&mut tail, printed.techniques)?;
                tail.extend_from_slice(b"}\n");
                entry.insert((middle, tail))
            }
        };
        out.extend_from_slice(b"{\"timestamp\":");
        serde_json::to_writer(&mut *out, &printed.timestamp)?;
        out.push(b',');
        out.extend_from_slice(middle);
        out.extend_from_slice(b",\"computer\":");
        serde_json::to_writer(&mut *out, printed.computer)?;
        out.extend_from_slice(b",\"channel\":");
        serde_json::to_writer(&mut *out, printed.channel)?;
        out.extend_from_slice(b",\"event_id\":");
        serde_json::to_writer(&mut *out, &printed.event_id)?;
        out.extend_from_slice(b",\"record_id\":");
        serde_json::to_writer(&mut *out, &printed.record_id)?;
        out.extend_from_slice(b",\"file\":");
        serde_json::to_writer(&mut *out, printed.file)?;
        out.extend_from_slice(tail);
    }
    Ok(())
}

fn format_rows(rows: &[Row], found: &Catalog<'_>, args: &AnalyzeArgs) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rows.len() * 256);
    if args.json {
        json_rows(rows, found, &mut out)?;
    } else if args.csv {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut out);
        for row in rows {
            let row = row.printed(found);
            writer.write_record([
                row.timestamp.as_str(),
                row.level,
                row.rule_title,
                row.rule_id,
                row.computer,
                row.channel,
                &row.event_id.map(|n| n.to_string()).unwrap_or_default(),
                &row.record_id.map(|n| n.to_string()).unwrap_or_default(),
                row.file,
            ])?;
        }
        writer.flush()?;
    } else {
        for row in rows {
            let row = row.printed(found);
            let title: String = row.rule_title.chars().take(60).collect();
            writeln!(
                out,
                "{:<27} {:<13} {:<60} {:<36} {:<24} {:<40} {:>6} {:>10}  {}",
                row.timestamp,
                row.level,
                title,
                row.rule_id,
                row.computer,
                row.channel,
                row.event_id.map(|n| n.to_string()).unwrap_or_default(),
                row.record_id.map(|n| n.to_string()).unwrap_or_default(),
                row.file
            )?;
        }
    }
    Ok(out)
}
