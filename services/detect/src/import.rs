//! Rule import: files (YAML or zips of YAML) → documents → stored rule rows. Every
//! document becomes a loaded rule or a refused one with its reason; correlation rules
//! load only when every rule they reference is loaded (in the store or this import).

use crate::repo::RuleRow;
use casescope_sigma::{Inspected, LogsourceMapping, RuleMeta, RuleSet};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Read;

/// Zip members read per archive at most.
const MAX_ZIP_MEMBERS: usize = 20_000;
/// Compression ratio above which a member is refused (a zip bomb).
const MAX_COMPRESSION_RATIO: u64 = 200;

/// A file received by ImportRules.
pub struct ImportFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub source_label: String,
    pub import_disabled: bool,
}

/// A document that did not become a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: String,
    pub title: String,
    pub rule_id: Option<String>,
    pub reason: String,
}

/// The rows an import produces, before they are stored.
#[derive(Debug, Default)]
pub struct Planned {
    pub rules_seen: u32,
    /// Rows to write (new, changed, or unchanged rules whose labels moved).
    pub rows: Vec<RuleRow>,
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    /// Refusals of this import (also stored as rows in `rows`).
    pub refused: Vec<Refused>,
    /// Rules whose evaluation changes (content, state): they are re-evaluated.
    pub changed: Vec<String>,
    /// Whether any correlation rule changed.
    pub correlations_changed: bool,
}

fn strip_controls(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The documents of `files`: `(source, yaml)`, and refusals for unreadable files.
pub fn documents(
    files: Vec<ImportFile>,
    max_file_bytes: u64,
) -> (Vec<(String, String)>, Vec<Refused>) {
    let mut docs = Vec::new();
    let mut refused = Vec::new();
    let refuse = |refused: &mut Vec<Refused>, path: &str, reason: String| {
        refused.push(Refused {
            path: path.to_string(),
            title: String::new(),
            rule_id: None,
            reason,
        })
    };
    for file in files {
        let path = strip_controls(&file.path);
        let lower = path.to_lowercase();
        if lower.ends_with(".zip") {
            zip_documents(&path, file.bytes, max_file_bytes, &mut docs, &mut refused);
        } else if lower.ends_with(".yml") || lower.ends_with(".yaml") {
            match String::from_utf8(file.bytes) {
                Ok(text) => push_documents(&path, &text, &mut docs),
                Err(error) => refuse(
                    &mut refused,
                    &path,
                    format!("not UTF-8 text: {}", error.utf8_error()),
                ),
            }
        } else {
            refuse(
                &mut refused,
                &path,
                "not a rule file: the name must end in .yml, .yaml or .zip".into(),
            );
        }
    }
    (docs, refused)
}

fn push_documents(path: &str, text: &str, docs: &mut Vec<(String, String)>) {
    let parts = casescope_sigma::split_documents(text);
    let many = parts.len() > 1;
    for (index, part) in parts.into_iter().enumerate() {
        let source = if many {
            format!("{path}#{}", index + 1)
        } else {
            path.to_string()
        };
        docs.push((source, part));
    }
}

fn zip_documents(
    path: &str,
    bytes: Vec<u8>,
    max_bytes: u64,
    docs: &mut Vec<(String, String)>,
    refused: &mut Vec<Refused>,
) {
    let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
        Ok(archive) => archive,
        Err(error) => {
            refused.push(Refused {
                path: path.into(),
                title: String::new(),
                rule_id: None,
                reason: format!("not a readable zip: {error}"),
            });
            return;
        }
    };
    if archive.len() > MAX_ZIP_MEMBERS {
        refused.push(Refused {
            path: path.into(),
            title: String::new(),
            rule_id: None,
            reason: format!(
                "{} members; rule zips hold at most {MAX_ZIP_MEMBERS}",
                archive.len()
            ),
        });
        return;
    }
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut member = match archive.by_index(index) {
            Ok(member) => member,
            Err(error) => {
                refused.push(Refused {
                    path: format!("{path}!#{index}"),
                    title: String::new(),
                    rule_id: None,
                    reason: format!("unreadable zip member: {error}"),
                });
                continue;
            }
        };
        let name = strip_controls(member.name());
        let lower = name.to_lowercase();
        if member.is_dir() || !(lower.ends_with(".yml") || lower.ends_with(".yaml")) {
            continue;
        }
        let source = format!("{path}!{name}");
        let size = member.size();
        let ratio = size / member.compressed_size().max(1);
        let refusal = if size > max_bytes || total + size > max_bytes {
            Some(format!(
                "the archive's rules exceed {max_bytes} bytes uncompressed"
            ))
        } else if ratio > MAX_COMPRESSION_RATIO {
            Some(format!(
                "compression ratio {ratio}:1 is above {MAX_COMPRESSION_RATIO}:1"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            refused.push(Refused {
                path: source,
                title: String::new(),
                rule_id: None,
                reason,
            });
            continue;
        }
        let mut text = String::new();
        // The declared size may lie: read at most what it promised, plus one byte.
        match (&mut member).take(size + 1).read_to_string(&mut text) {
            Ok(read) if read as u64 <= size => {
                total += read as u64;
                push_documents(&source, &text, docs);
            }
            Ok(_) => refused.push(Refused {
                path: source,
                title: String::new(),
                rule_id: None,
                reason: "the member is larger than its header says".into(),
            }),
            Err(error) => refused.push(Refused {
                path: source,
                title: String::new(),
                rule_id: None,
                reason: format!("not UTF-8 text: {error}"),
            }),
        }
    }
}

/// A stable id for a document without a usable one: UUID-shaped, from its content hash.
pub fn derived_id(hash: &str) -> String {
    let h = format!("{hash:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

fn row_from_meta(meta: &RuleMeta, yaml: &str, options: &ImportOptions, now: i64) -> RuleRow {
    let id = if meta.id.starts_with("title:") {
        derived_id(&meta.content_hash)
    } else {
        meta.id.clone()
    };
    RuleRow {
        id,
        name: meta.name.clone(),
        title: meta.title.clone(),
        description: meta.description.clone().unwrap_or_default(),
        status: meta.status.clone().unwrap_or_default(),
        level: meta.level.clone().unwrap_or_default(),
        tags: json_list(&meta.tags),
        tactics: json_list(&meta.tactics),
        techniques: json_list(&meta.techniques),
        author: meta.author.clone().unwrap_or_default(),
        refs: json_list(&meta.references),
        falsepositives: json_list(&meta.falsepositives),
        ls_product: meta.product.clone().unwrap_or_default(),
        ls_category: meta.category.clone().unwrap_or_default(),
        ls_service: meta.service.clone().unwrap_or_default(),
        content_sha256: sha256(yaml),
        enabled: !options.import_disabled,
        refusal_reason: String::new(),
        is_correlation: false,
        correlation_type: String::new(),
        correlated: "[]".into(),
        source_path: meta.source.clone(),
        source_label: options.source_label.clone(),
        rule_date: meta.date.clone().unwrap_or_default(),
        rule_modified: meta.modified.clone().unwrap_or_default(),
        yaml: yaml.to_string(),
        imported_at: now,
        updated_at: now,
    }
}

fn kind_name(kind: casescope_sigma::CorrelationKind) -> &'static str {
    use casescope_sigma::CorrelationKind as K;
    match kind {
        K::EventCount => "event_count",
        K::ValueCount => "value_count",
        K::Temporal => "temporal",
        K::TemporalOrdered => "temporal_ordered",
    }
}

/// Plans the rows of an import against the stored rules (`existing`, by id, with YAML).
pub fn plan(
    docs: &[(String, String)],
    file_refusals: Vec<Refused>,
    existing: &HashMap<String, RuleRow>,
    options: &ImportOptions,
    mapping: &LogsourceMapping,
    now: i64,
) -> Planned {
    let mut planned = Planned::default();
    let mut rows: Vec<RuleRow> = Vec::new();
    for (source, yaml) in docs {
        for inspected in casescope_sigma::inspect_document(source, yaml, mapping) {
            planned.rules_seen += 1;
            let row = match inspected {
                Inspected::Rule(meta) => row_from_meta(&meta, yaml, options, now),
                Inspected::Correlation {
                    meta,
                    kind,
                    references,
                } => {
                    let mut row = row_from_meta(&meta, yaml, options, now);
                    row.is_correlation = true;
                    row.correlation_type = kind_name(kind).into();
                    row.correlated = json_list(&references);
                    row
                }
                Inspected::Refused(refusal) => {
                    let hash = sha256(yaml);
                    let id = refusal
                        .id
                        .clone()
                        .filter(|id| !id.trim().is_empty() && id.len() <= 128)
                        .unwrap_or_else(|| derived_id(&hash));
                    RuleRow {
                        id,
                        title: refusal.title.clone().unwrap_or_default(),
                        tags: "[]".into(),
                        tactics: "[]".into(),
                        techniques: "[]".into(),
                        refs: "[]".into(),
                        falsepositives: "[]".into(),
                        correlated: "[]".into(),
                        content_sha256: hash,
                        enabled: false,
                        refusal_reason: refusal.reason.clone(),
                        source_path: source.clone(),
                        source_label: options.source_label.clone(),
                        yaml: yaml.clone(),
                        imported_at: now,
                        updated_at: now,
                        ..RuleRow::default()
                    }
                }
            };
            // A later document with the same id replaces an earlier one.
            rows.retain(|r| r.id != row.id);
            rows.push(row);
        }
    }
    validate_correlations(&mut rows, existing, mapping);
    for refusal in file_refusals {
        planned.refused.push(refusal);
    }
    for mut row in rows {
        if !row.refusal_reason.is_empty() {
            planned.refused.push(Refused {
                path: row.source_path.clone(),
                title: row.title.clone(),
                rule_id: Some(row.id.clone()),
                reason: row.refusal_reason.clone(),
            });
        }
        match existing.get(&row.id) {
            None => {
                if row.refusal_reason.is_empty() {
                    planned.added += 1;
                }
                planned.changed.push(row.id.clone());
                planned.correlations_changed |= row.is_correlation;
                planned.rows.push(row);
            }
            Some(old) => {
                // An analyst's enable/disable survives re-imports of a loaded rule.
                if old.refusal_reason.is_empty() && row.refusal_reason.is_empty() {
                    row.enabled = old.enabled;
                }
                row.imported_at = old.imported_at;
                let same_logic = old.content_sha256 == row.content_sha256
                    && old.enabled == row.enabled
                    && old.refusal_reason == row.refusal_reason;
                if same_logic {
                    if row.refusal_reason.is_empty() {
                        planned.unchanged += 1;
                    }
                    if old.source_label != row.source_label || old.source_path != row.source_path {
                        row.updated_at = old.updated_at;
                        planned.rows.push(row);
                    }
                } else {
                    if row.refusal_reason.is_empty() {
                        planned.updated += 1;
                    }
                    planned.changed.push(row.id.clone());
                    planned.correlations_changed |= row.is_correlation || old.is_correlation;
                    planned.rows.push(row);
                }
            }
        }
    }
    planned
}

/// Refuses correlation rows whose references do not resolve to a loaded single-event
/// rule (of this import, or stored and not replaced by a refusal here), or that do not
/// compile together with them.
fn validate_correlations(
    rows: &mut [RuleRow],
    existing: &HashMap<String, RuleRow>,
    mapping: &LogsourceMapping,
) {
    let incoming: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut targets: HashMap<String, RuleRow> = HashMap::new();
    for row in existing
        .values()
        .filter(|r| !incoming.contains(r.id.as_str()))
    {
        if row.refusal_reason.is_empty() && !row.is_correlation {
            targets.insert(row.id.clone(), row.clone());
        }
    }
    for row in rows.iter() {
        if row.refusal_reason.is_empty() && !row.is_correlation {
            targets.insert(row.id.clone(), row.clone());
        }
    }
    let by_name: HashMap<String, String> = targets
        .values()
        .filter_map(|r| r.name.clone().map(|n| (n, r.id.clone())))
        .collect();
    for row in rows.iter_mut().filter(|r| r.is_correlation) {
        let references: Vec<String> = serde_json::from_str(&row.correlated).unwrap_or_default();
        let mut texts = Vec::new();
        let mut missing = None;
        for reference in &references {
            let id = if targets.contains_key(reference) {
                Some(reference.clone())
            } else {
                by_name.get(reference).cloned()
            };
            match id.and_then(|id| targets.get(&id)) {
                Some(target) => texts.push((target.source_path.clone(), target.yaml.clone())),
                None => {
                    missing = Some(reference.clone());
                    break;
                }
            }
        }
        if let Some(reference) = missing {
            row.refusal_reason = format!("references rule {reference:?}, which is not loaded");
        } else {
            texts.push((row.source_path.clone(), row.yaml.clone()));
            let set = RuleSet::from_documents(&texts, mapping);
            if set.correlations.is_empty() {
                row.refusal_reason = set
                    .refused
                    .last()
                    .map(|r| r.reason.clone())
                    .unwrap_or_else(|| "the correlation does not compile".into());
            }
        }
        if !row.refusal_reason.is_empty() {
            row.enabled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: Whoami
id: 0a1b2c3d-0000-4000-8000-000000000001
name: whoami_run
status: test
level: medium
tags: [attack.discovery, attack.t1033]
logsource: {category: process_creation, product: windows}
detection:
  selection: {Image|endswith: '\\\\whoami.exe'}
  condition: selection
";

    const CORRELATION: &str = "title: Many whoami
id: 0a1b2c3d-0000-4000-8000-000000000002
level: high
correlation:
  type: event_count
  rules: [whoami_run]
  group-by: [Computer]
  timespan: 10m
  condition: {gte: 3}
";

    fn plan_of(files: Vec<(&str, &str)>, existing: &HashMap<String, RuleRow>) -> Planned {
        let files = files
            .into_iter()
            .map(|(p, t)| ImportFile {
                path: p.into(),
                bytes: t.as_bytes().to_vec(),
            })
            .collect();
        let (docs, refused) = documents(files, 1 << 20);
        plan(
            &docs,
            refused,
            existing,
            &ImportOptions::default(),
            &LogsourceMapping::built_in(),
            1,
        )
    }

    #[test]
    fn rules_correlations_and_refusals_are_planned() {
        let text = format!("{RULE}---\n{CORRELATION}");
        let planned = plan_of(
            vec![
                ("a.yml", &text),
                ("bad.yml", "title: x\nlogsource: {product: windows}\n"),
                ("notes.txt", "hello"),
            ],
            &HashMap::new(),
        );
        assert_eq!(planned.rules_seen, 3, "{planned:?}");
        assert_eq!(planned.added, 2);
        let reasons: Vec<_> = planned.refused.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            reasons,
            vec!["notes.txt", "bad.yml"],
            "{:?}",
            planned.refused
        );
        let corr = planned.rows.iter().find(|r| r.is_correlation).unwrap();
        assert_eq!(corr.correlation_type, "event_count");
        assert!(corr.refusal_reason.is_empty(), "{}", corr.refusal_reason);
        assert_eq!(corr.source_path, "a.yml#2");
    }

    #[test]
    fn unresolved_correlations_are_refused_and_reimports_are_unchanged() {
        let planned = plan_of(vec![("c.yml", CORRELATION)], &HashMap::new());
        assert_eq!(planned.refused.len(), 1);
        assert!(
            planned.refused[0].reason.contains("whoami_run"),
            "{:?}",
            planned.refused
        );
        let first = plan_of(vec![("r.yml", RULE)], &HashMap::new());
        let existing: HashMap<String, RuleRow> =
            first.rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let again = plan_of(vec![("r.yml", RULE)], &existing);
        assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 1));
        assert!(again.changed.is_empty());
        let edited = RULE.replace("level: medium", "level: high");
        let changed = plan_of(vec![("r.yml", &edited)], &existing);
        assert_eq!(changed.updated, 1);
        assert_eq!(
            changed.changed,
            vec![existing.keys().next().unwrap().clone()]
        );
        // The correlation now resolves against the stored rule.
        let corr = plan_of(vec![("c.yml", CORRELATION)], &existing);
        assert!(corr.refused.is_empty(), "{:?}", corr.refused);
    }

    #[test]
    fn zip_members_are_read_and_bombs_refused() {
        use std::io::Write;
        let mut buffer = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buffer);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("rules/r.yml", options).unwrap();
            zip.write_all(RULE.as_bytes()).unwrap();
            zip.start_file("rules/bomb.yml", options).unwrap();
            zip.write_all(&vec![b'#'; 4 << 20]).unwrap();
            zip.finish().unwrap();
        }
        let (docs, refused) = documents(
            vec![ImportFile {
                path: "pack.zip".into(),
                bytes: buffer.into_inner(),
            }],
            1 << 30,
        );
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].0, "pack.zip!rules/r.yml");
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("compression ratio"),
            "{refused:?}"
        );
    }
}
