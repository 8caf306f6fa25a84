//! `casescope analyze --iocs`: IOC lists read for a one-shot hunt, and the hunt of one
//! event.

use super::output::{IocInfo, Origin, Row, shared_name};
use anyhow::Context as _;
use casescope_ioc::Hunter;
use casescope_ioc::import::{self, Format, Item, Options, Seen};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

/// The IOCs of the given files, compiled, and what each is.
pub(super) struct Loaded {
    pub hunter: Hunter,
    pub iocs: Vec<IocInfo>,
}

/// Reads every IOC file (CSV, plain list, STIX 2.1 bundle, MISP event JSON: told by the
/// name and content), reporting counts and refusals on stderr. Disabled and expired
/// IOCs are left out (counted).
pub(super) fn load(paths: &[PathBuf], show_refused: bool) -> anyhow::Result<Loaded> {
    let mut seen = Seen::default();
    let mut indicators = Vec::new();
    let mut iocs = Vec::new();
    let (mut duplicates, mut refused, mut skipped) = (0u64, 0u64, 0u64);
    let now = chrono::Utc::now().timestamp_micros();
    for path in paths {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("--iocs {}: cannot open", path.display()))?;
        let mut head = vec![0u8; 4096];
        let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
        head.truncate(n);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let format = Format::guess(name, &head).unwrap_or(Format::Text);
        let file = std::io::BufReader::new(
            std::fs::File::open(path)
                .with_context(|| format!("--iocs {}: cannot open", path.display()))?,
        );
        let shown = path.display().to_string();
        import::read(format, file, &Options::default(), &mut |entry| {
            match entry.item {
                Item::Ioc(record) => {
                    let kind = record.kind();
                    if !seen.first(kind, &record.normalized) {
                        duplicates += 1;
                    } else if record.enabled == Some(false)
                        || record.expires_at.is_some_and(|t| t < now)
                    {
                        skipped += 1;
                    } else {
                        iocs.push(IocInfo {
                            kind,
                            id: format!("{kind}:{}", record.normalized),
                            value: record.normalized.clone(),
                        });
                        indicators.push(casescope_ioc::Indicator {
                            ioc_type: kind,
                            value: record.normalized,
                        });
                    }
                }
                Item::Refused { value, reason } => {
                    refused += 1;
                    if show_refused {
                        eprintln!("refused IOC {shown} {}: {reason} ({value})", entry.locator);
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| anyhow::anyhow!("--iocs {}: {}", path.display(), e.message))?;
    }
    eprintln!(
        "{} IOCs loaded, {duplicates} duplicates, {skipped} disabled or expired, {refused} refused{}",
        iocs.len(),
        if refused == 0 || show_refused {
            ""
        } else {
            " (--show-refused lists why)"
        }
    );
    Ok(Loaded {
        hunter: Hunter::new(&indicators),
        iocs,
    })
}

/// Hunts one event's fields (and its computer name), adding a row per match.
pub(super) fn hunt_event(
    hunter: &Hunter,
    event: &super::Record<'_>,
    display: &Arc<str>,
    rows: &mut Vec<Row>,
) {
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(event.fields.len() + 1);
    for (name, value) in event.fields.iter() {
        if let Some(text) = value.as_str() {
            fields.push((name, text));
        }
    }
    if let Some(computer) = event.computer
        && !fields.iter().any(|(name, _)| *name == "Computer")
    {
        fields.push(("Computer", computer));
    }
    let mut hits = Vec::new();
    hunter.hunt(&fields, &mut hits);
    for hit in hits {
        rows.push(Row {
            micros: event.timestamp_micros,
            origin: Origin::Ioc {
                ioc: hit.ioc,
                field: shared_name(Some(hit.field)),
                matched: hit
                    .matched
                    .chars()
                    .take(1024)
                    .collect::<String>()
                    .into_boxed_str(),
                file: display.clone(),
            },
            computer: shared_name(event.computer),
            channel: shared_name(event.channel),
            event_id: event.event_code,
            record_id: event.record_id,
        });
    }
}
