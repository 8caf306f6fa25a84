//! The compiled ruleset: the enabled rules of the store (and the rules their enabled
//! correlations reference, evaluated but not reported unless enabled), compiled once per
//! ruleset version on the blocking pool and shared by every run.

use crate::repo::{DetectRepo, RuleRow};
use casescope_db::DbError;
use casescope_sigma::{LogsourceMapping, RuleSet};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;

/// A ruleset ready to evaluate.
pub struct Compiled {
    /// The ruleset version the rows were read at (rows are at least that new).
    pub version: i64,
    pub set: RuleSet,
    /// Per rule of `set`: whether its matches are stored as detections.
    pub report: Vec<bool>,
    /// Per rule of `set`: whether correlations read its matches.
    pub correlated: Vec<bool>,
    /// Per rule of `set`: the event fields its correlations read.
    pub correlation_fields: Vec<Vec<String>>,
    /// Rule id → stored metadata (without YAML), for every rule and correlation.
    pub meta: HashMap<String, Arc<RuleRow>>,
    /// Enabled rule ids in `set` (single-event and correlation).
    pub rule_ids: HashSet<String>,
}

/// Compiles the enabled, loaded rules of `rows` — only those in `only` when given — with
/// every rule an included correlation references.
pub fn compile(
    rows: &[RuleRow],
    only: Option<&HashSet<String>>,
    version: i64,
    mapping: &LogsourceMapping,
) -> Compiled {
    let usable = |row: &RuleRow| row.enabled && row.refusal_reason.is_empty();
    let mut chosen: Vec<&RuleRow> = rows
        .iter()
        .filter(|row| usable(row) && only.is_none_or(|ids| ids.contains(&row.id)))
        .collect();
    let enabled: HashSet<String> = chosen.iter().map(|row| row.id.clone()).collect();
    if only.is_some() {
        // A subset also needs the correlations that read its rules (for their inputs).
        let names: HashSet<&str> = chosen
            .iter()
            .flat_map(|row| std::iter::once(row.id.as_str()).chain(row.name.as_deref()))
            .collect();
        let extra: Vec<&RuleRow> = rows
            .iter()
            .filter(|row| row.is_correlation && usable(row) && !enabled.contains(&row.id))
            .filter(|row| {
                let references: Vec<String> =
                    serde_json::from_str(&row.correlated).unwrap_or_default();
                references.iter().any(|r| names.contains(r.as_str()))
            })
            .collect();
        chosen.extend(extra);
    }
    // Rules referenced by included correlations (by id or name), even when disabled.
    let mut wanted: HashSet<String> = HashSet::new();
    for row in &chosen {
        if row.is_correlation {
            let references: Vec<String> = serde_json::from_str(&row.correlated).unwrap_or_default();
            wanted.extend(references);
        }
    }
    if !wanted.is_empty() {
        for row in rows {
            let named = row.name.as_ref().is_some_and(|name| wanted.contains(name));
            if row.refusal_reason.is_empty()
                && !row.is_correlation
                && (wanted.contains(&row.id) || named)
                && !chosen.iter().any(|c| c.id == row.id)
            {
                chosen.push(row);
            }
        }
    }
    let texts: Vec<(String, String)> = chosen
        .iter()
        .map(|row| (row.source_path.clone(), row.yaml.clone()))
        .collect();
    let set = RuleSet::from_documents(&texts, mapping);
    let report = (0..set.rules.len())
        .map(|i| enabled.contains(&set.rules[i].meta.id) && set.reports_matches(i))
        .collect();
    let correlated = (0..set.rules.len()).map(|i| set.is_correlated(i)).collect();
    let correlation_fields = (0..set.rules.len())
        .map(|i| set.correlation_fields(i))
        .collect();
    let meta = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row.yaml = String::new();
            (row.id.clone(), Arc::new(row))
        })
        .collect();
    Compiled {
        version,
        set,
        report,
        correlated,
        correlation_fields,
        meta,
        rule_ids: enabled,
    }
}

/// The current compiled ruleset, recompiled when the stored version moves.
pub struct RulesetCache {
    repo: DetectRepo,
    mapping: Arc<LogsourceMapping>,
    current: Mutex<Option<Arc<Compiled>>>,
}

impl RulesetCache {
    pub fn new(repo: DetectRepo, mapping: Arc<LogsourceMapping>) -> Self {
        Self {
            repo,
            mapping,
            current: Mutex::new(None),
        }
    }

    /// The ruleset at the stored version (compiling it if this process has not yet).
    pub async fn current(&self) -> Result<Arc<Compiled>, DbError> {
        let mut current = self.current.lock().await;
        // The version first, then the rows: rows are never older than the version.
        let (version, _) = self.repo.ruleset_version().await?;
        if let Some(compiled) = current.as_ref()
            && compiled.version == version
        {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(self.compile(version, None).await?);
        *current = Some(compiled.clone());
        Ok(compiled)
    }

    /// Only the given rules (and what their correlations need), at the stored version.
    pub async fn subset(&self, rule_ids: &HashSet<String>) -> Result<Compiled, DbError> {
        let (version, _) = self.repo.ruleset_version().await?;
        self.compile(version, Some(rule_ids.clone())).await
    }

    async fn compile(
        &self,
        version: i64,
        only: Option<HashSet<String>>,
    ) -> Result<Compiled, DbError> {
        let rows = self.repo.all_rules(true).await?;
        let mapping = self.mapping.clone();
        let started = std::time::Instant::now();
        let compiled =
            tokio::task::spawn_blocking(move || compile(&rows, only.as_ref(), version, &mapping))
                .await
                .map_err(|error| DbError::Query(format!("ruleset compilation crashed: {error}")))?;
        tracing::info!(
            version,
            rules = compiled.set.rules.len(),
            correlations = compiled.set.correlations.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ruleset compiled"
        );
        Ok(compiled)
    }
}
