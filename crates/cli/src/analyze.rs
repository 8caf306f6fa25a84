//! `casescope analyze`: one-shot detection with no server and nothing left behind —
//! parse evidence files, evaluate Sigma rules and hunt IOCs (`--iocs`), print a
//! timeline of what was found (the job Hayabusa and Chainsaw do, in the same shape, so
//! results can be compared).
//!
//! Files are parsed on every core (one file per worker; a single file uses the EVTX
//! parser's own threads). An EVTX record is evaluated on the thread that decoded it,
//! while it is in that core's cache; only its detections travel to the output. Nothing
//! is written but the output.

mod iocs;
mod output;

use anyhow::{Context as _, bail};
use casescope_evidence::{Context, Format, Limits, Outcome, RecordView, inspect_evtx, parse_file};
use casescope_sigma::{BaseHit, EventRef, LogsourceMapping, RuleSet};
use output::{Catalog, Origin, Row, print_rows, shared_name, time_text};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// Evidence files or directories (.evtx, .json, .jsonl, .ndjson, .csv).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Sigma rule files, directories or zips (repeatable); default: the built-in pack.
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
    /// Only rules of this level or above: informational, low, medium, high, critical.
    #[arg(long)]
    pub min_level: Option<String>,
    /// A logsource mapping file replacing the built-in one (same TOML shape).
    #[arg(long)]
    pub logsource_mapping: Option<PathBuf>,
    /// One JSON object per detection.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header row.
    #[arg(long)]
    pub csv: bool,
    /// List every refused rule and IOC with its reason (on stderr).
    #[arg(long)]
    pub show_refused: bool,
    /// IOC files to hunt (repeatable): CSV (DFIR-IRIS or MISP header, or type,value),
    /// a plain list (.txt), a STIX 2.1 bundle or a MISP event (.json).
    #[arg(long = "iocs")]
    pub iocs: Vec<PathBuf>,
    /// No Sigma rules: hunt the IOCs only.
    #[arg(long, requires = "iocs", conflicts_with_all = ["rules", "min_level"])]
    pub no_rules: bool,
}

/// What every event is evaluated against.
struct Engines {
    rules: RuleSet,
    hunter: Option<casescope_ioc::Hunter>,
}

const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

fn level_rank(level: Option<&str>) -> usize {
    level
        .and_then(|l| {
            LEVELS
                .iter()
                .position(|known| known.eq_ignore_ascii_case(l))
        })
        .unwrap_or(0)
}

fn evidence_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Format)>> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path)
                .with_context(|| format!("cannot read directory {}", path.display()))?;
            stack.extend(entries.flatten().map(|e| e.path()));
            continue;
        }
        let format = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(Format::from_file_name);
        match format {
            Some(Format::Zip) => eprintln!(
                "skipped {}: analyze reads extracted evidence (unzip it first)",
                path.display()
            ),
            Some(format) => files.push((path, format)),
            None if paths.contains(&path) => {
                bail!(
                    "{}: not an evidence file (.evtx, .json, .jsonl, .ndjson, .csv)",
                    path.display()
                )
            }
            None => {}
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mapping = match &args.logsource_mapping {
        Some(path) => LogsourceMapping::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .map_err(anyhow::Error::msg)?,
        None => LogsourceMapping::built_in(),
    };
    let mut rules = if args.no_rules {
        let mut none = RuleSet::load(&[], &mapping);
        none.retain(|_| false);
        none
    } else if args.rules.is_empty() {
        RuleSet::built_in(&mapping)
    } else {
        for path in &args.rules {
            if !path.exists() {
                bail!("--rules {}: no such file or directory", path.display());
            }
        }
        RuleSet::load(&args.rules, &mapping)
    };
    if let Some(min) = &args.min_level {
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(min)) {
            bail!("--min-level {min:?}: expected one of {}", LEVELS.join(", "));
        }
        let floor = level_rank(Some(min));
        rules.retain(|meta| level_rank(meta.level.as_deref()) >= floor);
    }
    let loaded_in = started.elapsed();
    eprintln!(
        "{} rules loaded, {} refused{} ({:.2} s)",
        rules.rules.len(),
        rules.refused.len(),
        if rules.refused.is_empty() || args.show_refused {
            ""
        } else {
            " (--show-refused lists why)"
        },
        loaded_in.as_secs_f64()
    );
    if args.show_refused {
        for refusal in &rules.refused {
            eprintln!(
                "refused {} [{}]: {}",
                refusal.source,
                refusal.id.as_deref().unwrap_or("no id"),
                refusal.reason
            );
        }
    }

    let loaded = if args.iocs.is_empty() {
        None
    } else {
        Some(iocs::load(&args.iocs, args.show_refused)?)
    };
    let (hunter, ioc_infos) = match loaded {
        Some(loaded) => (Some(loaded.hunter), loaded.iocs),
        None => (None, Vec::new()),
    };
    let engines = Arc::new(Engines { rules, hunter });
    let rules = &engines.rules;
    let files = evidence_files(&args.paths)?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::new());
    let base_hits = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, 0u64, Vec::<String>::new()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, format)) = files.get(index) else {
                        break;
                    };
                    let mut found = Vec::new();
                    let mut correlated = Vec::new();
                    let outcome = analyze_file(
                        &engines,
                        path,
                        *format,
                        workers == 1,
                        &mut found,
                        &mut correlated,
                    );
                    let mut rows = rows.lock().unwrap_or_else(|p| p.into_inner());
                    if rows.is_empty() {
                        // A lone file's rows are kept, not copied.
                        *rows = found;
                    } else {
                        rows.extend(found);
                    }
                    drop(rows);
                    base_hits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(correlated);
                    let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner());
                    match outcome {
                        Ok((read, rejected)) => {
                            totals.0 += read;
                            totals.1 += rejected;
                        }
                        Err(error) => totals.2.push(format!("{}: {error}", path.display())),
                    }
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_else(|p| p.into_inner());
    // Correlation rules, over the matches of every file together, on event time.
    let base_hits = base_hits.into_inner().unwrap_or_else(|p| p.into_inner());
    for hit in rules.correlate(&base_hits) {
        rows.push(Row {
            micros: hit.last_micros,
            origin: Origin::Correlation {
                correlation: hit.correlation,
                text: format!(
                    "correlation: {} events from {} ({}), group [{}]",
                    hit.events.len(),
                    time_text(hit.first_micros),
                    hit.count,
                    hit.group.join(", ")
                ),
            },
            computer: Arc::from(""),
            channel: Arc::from(""),
            event_id: None,
            record_id: None,
        });
    }
    let catalog = Catalog {
        rules,
        iocs: &ioc_infos,
    };
    // By time, file, record and rule id: each only where the ones before it tie (most
    // rows differ in time), and a file shared by both rows is not compared byte by byte.
    rows.sort_by(|a, b| {
        a.micros
            .cmp(&b.micros)
            .then_with(|| {
                let (a, b) = (a.file(), b.file());
                if std::ptr::eq(a, b) {
                    std::cmp::Ordering::Equal
                } else {
                    a.cmp(b)
                }
            })
            .then_with(|| a.record_id.cmp(&b.record_id))
            .then_with(|| a.rule_id(&catalog).cmp(b.rule_id(&catalog)))
    });
    print_rows(&rows, &catalog, &args)?;
    let (read, rejected, failures) = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    let ioc_rows = rows
        .iter()
        .filter(|row| matches!(row.origin, Origin::Ioc { .. }))
        .count();
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "{} files, {read} records read ({rejected} unreadable), {} detections{} in {:.2} s",
        files.len(),
        rows.len() - ioc_rows,
        if engines.hunter.is_some() {
            format!(", {ioc_rows} IOC matches")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    // The process ends now: freeing thousands of compiled rules and every detection row
    // one allocation at a time would only delay the exit (the OS reclaims it at once).
    std::mem::forget(engines);
    std::mem::forget(rows);
    if !failures.is_empty() {
        bail!(
            "{} of {} files could not be read",
            failures.len(),
            files.len()
        );
    }
    Ok(())
}

/// Parses one file and evaluates every event; returns (records read, rejected).
fn analyze_file(
    rules: &Arc<Engines>,
    path: &Path,
    format: Format,
    only_file: bool,
    rows: &mut Vec<Row>,
    correlated: &mut Vec<BaseHit>,
) -> anyhow::Result<(u64, u64)> {
    if format == Format::Evtx {
        return analyze_evtx(rules, path, only_file, rows, correlated);
    }
    let context = Context {
        case_id: "analyze".into(),
        file_id: "analyze".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: false,
        limits: Limits {
            // One file per worker already uses every core; a lone file uses the
            // parser's own threads.
            evtx_threads: if only_file { 0 } else { 1 },
            ..Limits::default()
        },
    };
    let display: Arc<str> = Arc::from(path.display().to_string());
    let display = &display;
    if !only_file {
        // Other workers keep the other cores busy: evaluate inline.
        let summary = parse_file(path, format, &context, &mut |outcome| {
            if let Outcome::Event(event) = outcome {
                evaluate_event(rules, &Record::of(&event), display, rows, correlated);
            }
            ControlFlow::Continue(())
        })?;
        return Ok((summary.records_read, summary.rejected));
    }
    // A lone file: the parser's threads decode, and every core evaluates batches of
    // events (bounded: at most `QUEUED` batches wait).
    const BATCH: usize = 512;
    const QUEUED: usize = 8;
    let evaluators = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<Vec<casescope_evidence::Event>>(QUEUED);
    let receiver = Mutex::new(receiver);
    let results = Mutex::new((Vec::new(), Vec::new()));
    let summary = std::thread::scope(|scope| {
        for _ in 0..evaluators {
            scope.spawn(|| {
                let (mut found, mut hits) = (Vec::new(), Vec::new());
                loop {
                    let batch = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(batch) = batch else { break };
                    for event in &batch {
                        evaluate_event(rules, &Record::of(event), display, &mut found, &mut hits);
                    }
                }
                let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                results.0.extend(found);
                results.1.extend(hits);
            });
        }
        let mut batch = Vec::with_capacity(BATCH);
        let summary = parse_file(path, format, &context, &mut |outcome| {
            if let Outcome::Event(event) = outcome {
                batch.push(*event);
                if batch.len() >= BATCH
                    && sender
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !batch.is_empty() {
            let _ = sender.send(batch);
        }
        drop(sender);
        summary
    })?;
    let (found, hits) = results.into_inner().unwrap_or_else(|p| p.into_inner());
    rows.extend(found);
    correlated.extend(hits);
    Ok((summary.records_read, summary.rejected))
}

/// An EVTX file: each record is evaluated on the parser thread that decoded it, while it
/// is in that core's cache; only detections travel. A lone file uses every core's
/// parser thread, otherwise (other workers keep the other cores busy) one.
fn analyze_evtx(
    rules: &Arc<Engines>,
    path: &Path,
    only_file: bool,
    rows: &mut Vec<Row>,
    correlated: &mut Vec<BaseHit>,
) -> anyhow::Result<(u64, u64)> {
    let display: Arc<str> = Arc::from(path.display().to_string());
    let evaluate = {
        let rules = Arc::clone(rules);
        move |record: RecordView<'_>| {
            let (mut found, mut hits) = (Vec::new(), Vec::new());
            let parts = record.parts;
            let record = Record {
                channel: parts.channel.as_deref(),
                computer: parts.computer.as_deref(),
                event_code: parts.event_code,
                record_id: Some(record.record_id),
                timestamp_micros: record.timestamp_micros,
                fields: parts.all_fields(),
            };
            evaluate_event(&rules, &record, &display, &mut found, &mut hits);
            (found, hits)
        }
    };
    let (mut read, mut rejected) = (0, 0);
    inspect_evtx(
        path,
        if only_file { 0 } else { 1 },
        evaluate,
        &mut |outcome| {
            read += 1;
            match outcome {
                Ok((found, hits)) => {
                    rows.extend(found);
                    correlated.extend(hits);
                }
                Err(_) => rejected += 1,
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok((read, rejected))
}

/// What evaluating an event reads of it.
struct Record<'a> {
    channel: Option<&'a str>,
    computer: Option<&'a str>,
    event_code: Option<u32>,
    record_id: Option<u64>,
    timestamp_micros: i64,
    fields: casescope_evidence::Fields<'a>,
}

impl<'a> Record<'a> {
    fn of(event: &'a casescope_evidence::Event) -> Self {
        Record {
            channel: event.channel.as_deref(),
            computer: event.computer.as_deref(),
            event_code: event.event_code,
            record_id: event.record_id,
            timestamp_micros: event.timestamp_micros,
            fields: (&event.fields).into(),
        }
    }
}

/// Evaluates one event, adding its detections (and correlation inputs).
fn evaluate_event(
    engines: &Engines,
    event: &Record<'_>,
    display: &Arc<str>,
    rows: &mut Vec<Row>,
    correlated: &mut Vec<BaseHit>,
) {
    if let Some(hunter) = &engines.hunter {
        iocs::hunt_event(hunter, event, display, rows);
    }
    let rules = &engines.rules;
    let view = EventRef {
        channel: event.channel,
        event_code: event.event_code,
        fields: event.fields,
    };
    for index in rules.evaluate(&view) {
        if rules.is_correlated(index) {
            let values = rules
                .correlation_fields(index)
                .into_iter()
                .filter_map(|name| {
                    let value = event.fields.get(&name)?;
                    let text = value
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| value.to_string());
                    Some((name, text))
                })
                .collect();
            correlated.push(BaseHit {
                rule: index,
                timestamp_micros: event.timestamp_micros,
                event: format!("{display}#{}", event.record_id.unwrap_or_default()),
                values,
            });
        }
        if !rules.reports_matches(index) {
            continue;
        }
        rows.push(Row {
            micros: event.timestamp_micros,
            origin: Origin::Rule {
                rule: index,
                file: display.clone(),
            },
            computer: shared_name(event.computer),
            channel: shared_name(event.channel),
            event_id: event.event_code,
            record_id: event.record_id,
        });
    }
}
