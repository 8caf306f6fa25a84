//! Sigma correlation rules over the matches of their referenced rules, on event time,
//! across every file given (a whole case): `event_count`, `value_count`, `temporal`
//! and `temporal_ordered`, grouped by `group-by` fields (with `aliases`), within a
//! sliding `timespan`.
//!
//! Semantics (documented in docs/detection.md): matches are grouped, sorted by event
//! time; a window ends at each match and reaches back `timespan`; when the condition
//! holds for a window, one correlation hit is reported for it and the next window starts
//! after it (a burst of 100 logons over a threshold of 10 gives 10 hits, not 91).

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A correlation rule resolved against the loaded rules.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub id: String,
    pub title: String,
    pub level: Option<String>,
    pub kind: Kind,
    /// Indices of the referenced rules (into `RuleSet::rules`), in the rule's order.
    pub rules: Vec<usize>,
    /// Canonical group-by names.
    pub group_by: Vec<String>,
    /// Canonical name → (rule index → the rule's event field name).
    aliases: HashMap<String, HashMap<usize, String>>,
    pub timespan_micros: i64,
    /// Whether the referenced rules also report their own matches (`generate`).
    pub generate: bool,
    predicates: Vec<(ConditionOperator, u64)>,
    /// `value_count`: the field whose distinct values are counted.
    value_field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

/// One match of a referenced rule, with the values its correlations need.
#[derive(Debug, Clone)]
pub struct BaseHit {
    pub rule: usize,
    pub timestamp_micros: i64,
    /// Identifies the event (e.g. file and record).
    pub event: String,
    /// Event field name → value text, for the fields the correlations read.
    pub values: HashMap<String, String>,
}

/// A correlation that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationHit {
    pub correlation: usize,
    /// Group-by values, in `group_by` order.
    pub group: Vec<String>,
    pub first_micros: i64,
    pub last_micros: i64,
    /// Matches in the window (`event_count`), distinct values (`value_count`), or
    /// referenced rules seen (`temporal*`).
    pub count: u64,
    /// The events of the window.
    pub events: Vec<String>,
}

fn holds(predicates: &[(ConditionOperator, u64)], value: u64) -> bool {
    predicates.iter().all(|(op, bound)| match op {
        ConditionOperator::Lt => value < *bound,
        ConditionOperator::Lte => value <= *bound,
        ConditionOperator::Gt => value > *bound,
        ConditionOperator::Gte => value >= *bound,
        ConditionOperator::Eq => value == *bound,
        ConditionOperator::Neq => value != *bound,
    })
}

impl Correlation {
    /// Resolves `rule`'s references by id or name; `names` maps both to rule indices.
    pub fn resolve(
        rule: &CorrelationRule,
        names: &HashMap<String, usize>,
    ) -> Result<Correlation, String> {
        let kind = match rule.correlation_type {
            CorrelationType::EventCount => Kind::EventCount,
            CorrelationType::ValueCount => Kind::ValueCount,
            CorrelationType::Temporal => Kind::Temporal,
            CorrelationType::TemporalOrdered => Kind::TemporalOrdered,
            other => {
                return Err(format!(
                    "correlation type {} is not supported",
                    other.as_str()
                ));
            }
        };
        let mut rules = Vec::new();
        let mut reference_names: HashMap<String, usize> = HashMap::new();
        for reference in &rule.rules {
            let index = *names
                .get(reference)
                .ok_or_else(|| format!("references rule {reference:?}, which is not loaded"))?;
            rules.push(index);
            reference_names.insert(reference.clone(), index);
        }
        if rules.is_empty() {
            return Err("the correlation references no rule".into());
        }
        let mut aliases: HashMap<String, HashMap<usize, String>> = HashMap::new();
        for alias in &rule.aliases {
            let mut per_rule = HashMap::new();
            for (reference, field) in &alias.mapping {
                let index = *names.get(reference).ok_or_else(|| {
                    format!(
                        "alias {} maps rule {reference:?}, which is not loaded",
                        alias.alias
                    )
                })?;
                per_rule.insert(index, field.clone());
            }
            aliases.insert(alias.alias.clone(), per_rule);
        }
        let (predicates, value_field) = match (&rule.condition, kind) {
            // Temporal correlations mean: every referenced rule within the timespan.
            (CorrelationCondition::Threshold { .. }, Kind::Temporal | Kind::TemporalOrdered) => {
                (vec![(ConditionOperator::Gte, rules.len() as u64)], None)
            }
            (
                CorrelationCondition::Threshold {
                    predicates, field, ..
                },
                _,
            ) => (
                predicates.clone(),
                field.as_ref().and_then(|f| f.first().cloned()),
            ),
            (CorrelationCondition::Extended(expr), Kind::Temporal | Kind::TemporalOrdered) => {
                // Supported: a conjunction of all referenced rules (the default meaning).
                let mut named = Vec::new();
                if !conjunction_of_names(expr, &mut named)
                    || named.iter().any(|n| !reference_names.contains_key(n))
                {
                    return Err(format!(
                        "the extended temporal condition {expr} is not supported (only `a and b and …`)"
                    ));
                }
                (vec![(ConditionOperator::Gte, named.len() as u64)], None)
            }
            (CorrelationCondition::Extended(expr), _) => {
                return Err(format!(
                    "an extended condition ({expr}) needs a temporal correlation"
                ));
            }
        };
        if predicates.is_empty() {
            return Err("the correlation has no condition".into());
        }
        if kind == Kind::ValueCount && value_field.is_none() {
            return Err("value_count needs condition.field".into());
        }
        let timespan_micros = i64::try_from(rule.timespan.seconds)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
            .ok_or("the timespan is too long")?;
        Ok(Correlation {
            id: rule
                .id
                .clone()
                .unwrap_or_else(|| format!("title:{}", rule.title)),
            title: rule.title.clone(),
            level: rule.level.map(|l| l.as_str().to_string()),
            kind,
            rules,
            group_by: rule.group_by.clone(),
            aliases,
            timespan_micros,
            generate: rule.generate,
            predicates,
            value_field,
        })
    }

    /// The event field that holds canonical field `name` for matches of `rule`.
    pub fn field_for(&self, name: &str, rule: usize) -> String {
        self.aliases
            .get(name)
            .and_then(|per_rule| per_rule.get(&rule))
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Event fields this correlation reads from matches of `rule`.
    pub fn fields_read(&self, rule: usize) -> Vec<String> {
        self.group_by
            .iter()
            .chain(self.value_field.iter())
            .map(|name| self.field_for(name, rule))
            .collect()
    }

    /// Evaluates over `hits` (any order; those of other rules are ignored).
    pub fn evaluate(&self, index: usize, hits: &[BaseHit]) -> Vec<CorrelationHit> {
        let mut groups: BTreeMap<Vec<String>, Vec<&BaseHit>> = BTreeMap::new();
        for hit in hits.iter().filter(|h| self.rules.contains(&h.rule)) {
            let key: Option<Vec<String>> = self
                .group_by
                .iter()
                .map(|name| hit.values.get(&self.field_for(name, hit.rule)).cloned())
                .collect();
            // A match without a group-by value cannot be grouped: it is left out.
            if let Some(key) = key {
                groups.entry(key).or_default().push(hit);
            }
        }
        let mut out = Vec::new();
        for (group, mut members) in groups {
            members.sort_by(|a, b| {
                (a.timestamp_micros, &a.event).cmp(&(b.timestamp_micros, &b.event))
            });
            let mut start = 0;
            for end in 0..members.len() {
                let end_time = members[end].timestamp_micros;
                while members[start].timestamp_micros < end_time - self.timespan_micros {
                    start += 1;
                }
                let window = &members[start..=end];
                let count = self.measure(window);
                if holds(&self.predicates, count) {
                    out.push(CorrelationHit {
                        correlation: index,
                        group: group.clone(),
                        first_micros: window[0].timestamp_micros,
                        last_micros: end_time,
                        count,
                        events: window.iter().map(|h| h.event.clone()).collect(),
                    });
                    start = end + 1;
                    if start >= members.len() {
                        break;
                    }
                }
            }
        }
        out
    }

    fn measure(&self, window: &[&BaseHit]) -> u64 {
        match self.kind {
            Kind::EventCount => window.len() as u64,
            Kind::ValueCount => {
                let Some(field) = &self.value_field else {
                    return 0;
                };
                window
                    .iter()
                    .filter_map(|h| h.values.get(&self.field_for(field, h.rule)))
                    .collect::<HashSet<_>>()
                    .len() as u64
            }
            Kind::Temporal => window.iter().map(|h| h.rule).collect::<HashSet<_>>().len() as u64,
            Kind::TemporalOrdered => {
                // How many of the rules, in order, occur one after another.
                let mut next = 0;
                for hit in window {
                    if next < self.rules.len() && hit.rule == self.rules[next] {
                        next += 1;
                    }
                }
                next as u64
            }
        }
    }
}

fn conjunction_of_names(expr: &ConditionExpr, out: &mut Vec<String>) -> bool {
    match expr {
        ConditionExpr::Identifier(name) => {
            out.push(name.clone());
            true
        }
        ConditionExpr::And(parts) => parts.iter().all(|p| conjunction_of_names(p, out)),
        _ => false,
    }
}
