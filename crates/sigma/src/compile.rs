//! A parsed rule's detection section compiled into a program: named detections as
//! matcher trees, the condition as an expression over their indices. Anything the engine
//! cannot evaluate exactly is refused with the reason, never approximated.

use crate::fields::FieldsView;
use crate::matcher::{EventFields, ItemMatcher, Placeholders, Unsupported, compile_item_with};
use rsigma_parser::{
    ConditionExpr, Detection, Detections, Quantifier, SelectorPattern, detection_name_matches,
};

#[derive(Debug, Clone)]
pub enum DetectionProgram {
    /// Every item matches (a YAML mapping).
    AllOf(Vec<ItemMatcher>),
    /// Any sub-detection matches (a YAML list of mappings).
    AnyOf(Vec<DetectionProgram>),
    And(Vec<DetectionProgram>),
    /// Field-less values: one item over every field.
    Keywords(ItemMatcher),
}

impl DetectionProgram {
    fn matches(&self, event: &dyn EventFields) -> bool {
        match self {
            DetectionProgram::AllOf(items) => items.iter().all(|item| item.matches(event)),
            DetectionProgram::AnyOf(parts) => parts.iter().any(|part| part.matches(event)),
            DetectionProgram::And(parts) => parts.iter().all(|part| part.matches(event)),
            DetectionProgram::Keywords(item) => item.matches(event),
        }
    }

    fn collect_fields(&self, out: &mut Vec<String>) {
        match self {
            DetectionProgram::AllOf(items) => {
                out.extend(items.iter().filter_map(|item| item.field.clone()));
            }
            DetectionProgram::AnyOf(parts) | DetectionProgram::And(parts) => {
                for part in parts {
                    part.collect_fields(out);
                }
            }
            DetectionProgram::Keywords(_) => {}
        }
    }

    /// Sets of literals that all hold whenever this detection matches: for each set, one
    /// of its literals occurs (in its field's value; `None`: any value).
    fn literal_groups(&self) -> Vec<Vec<Literal>> {
        let usable = |item: &ItemMatcher| {
            let group = item.required_literals()?;
            group.iter().all(|l| usable_literal(l)).then(|| {
                group
                    .into_iter()
                    .map(|literal| (item.field.clone(), literal))
                    .collect::<Vec<Literal>>()
            })
        };
        match self {
            DetectionProgram::AllOf(items) => items.iter().filter_map(usable).collect(),
            DetectionProgram::Keywords(item) => usable(item).into_iter().collect(),
            DetectionProgram::And(parts) => parts.iter().flat_map(|p| p.literal_groups()).collect(),
            // Any alternative may match.
            DetectionProgram::AnyOf(parts) => {
                any_of(parts.iter().map(DetectionProgram::literal_groups).collect())
            }
        }
    }

    /// Whole numbers one of which `field` must equal whenever this detection matches.
    fn required_codes(&self, field: &str) -> Option<Vec<u32>> {
        match self {
            DetectionProgram::AllOf(items) => {
                intersect(items.iter().map(|item| item.required_codes(field)))
            }
            DetectionProgram::And(parts) => {
                intersect(parts.iter().map(|part| part.required_codes(field)))
            }
            DetectionProgram::AnyOf(parts) => {
                union(parts.iter().map(|part| part.required_codes(field)))
            }
            DetectionProgram::Keywords(_) => None,
        }
    }
}

/// Whether a literal is worth searching for: two ASCII characters or fewer occur in
/// most values, unless both are punctuation (`^^`, `%%`).
fn usable_literal(literal: &str) -> bool {
    literal.len() >= 3
        || !literal.is_ascii()
        || (literal.len() == 2 && literal.bytes().all(|b| b.is_ascii_punctuation()))
}

/// How unselective a set of alternative literals is (lower: rarer in events). A short
/// literal (`.exe`) occurs in most events however few alternatives the set has, so the
/// shortest literal counts first (up to a length past which literals are rare anyway),
/// then the number of alternatives.
pub fn unselectiveness<T>(group: &[T], len: impl Fn(&T) -> usize) -> (usize, usize) {
    const RARE_LENGTH: usize = 8;
    let shortest = group.iter().map(len).min().unwrap_or(0);
    (RARE_LENGTH - shortest.min(RARE_LENGTH), group.len())
}

fn literal_unselectiveness(group: &[Literal]) -> (usize, usize) {
    unselectiveness(group, |(_, literal)| literal.len())
}

/// Most combined sets [`any_of`] keeps: past it, each alternative gives only its most
/// selective set.
const MAX_COMBINED_GROUPS: usize = 16;

/// The literal sets implied by "any of these alternatives matches", from each
/// alternative's sets (all of which hold when it matches): `(A and B) or C` implies
/// `(A or C) and (B or C)`, every way of taking one set from each alternative. Empty
/// (nothing required) when an alternative requires nothing.
fn any_of(mut alternatives: Vec<Vec<Vec<Literal>>>) -> Vec<Vec<Literal>> {
    if alternatives.is_empty() || alternatives.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let combinations = alternatives
        .iter()
        .try_fold(1usize, |product, sets| product.checked_mul(sets.len()))
        .unwrap_or(usize::MAX);
    if combinations > MAX_COMBINED_GROUPS {
        for sets in &mut alternatives {
            sets.sort_by_key(|set| literal_unselectiveness(set));
            sets.truncate(1);
        }
    }
    let mut out: Vec<Vec<Literal>> = vec![Vec::new()];
    for sets in alternatives {
        out = out
            .iter()
            .flat_map(|partial| {
                sets.iter().map(move |set| {
                    let mut combined = partial.clone();
                    combined.extend(set.iter().cloned());
                    combined
                })
            })
            .collect();
    }
    out
}

/// What all of several requirements allow: `None` (anything) only when none of them
/// restricts the value.
fn intersect(sets: impl Iterator<Item = Option<Vec<u32>>>) -> Option<Vec<u32>> {
    sets.flatten().reduce(|kept, set| {
        kept.into_iter()
            .filter(|code| set.binary_search(code).is_ok())
            .collect()
    })
}

/// What any of several alternatives allows: `None` (anything) when one of them does not
/// restrict the value.
fn union(sets: impl Iterator<Item = Option<Vec<u32>>>) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// A literal text (lower-cased) and the field whose value must hold it (`None`: any).
pub type Literal = (Option<String>, String);

/// The condition over detection indices.
#[derive(Debug, Clone)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Detection(usize),
    /// At least `count` of the detections match (`all` = every one).
    AtLeast {
        count: usize,
        of: Vec<usize>,
    },
}

impl Condition {
    fn eval(&self, results: &mut dyn FnMut(usize) -> bool) -> bool {
        match self {
            Condition::And(parts) => parts.iter().all(|p| p.eval(results)),
            Condition::Or(parts) => parts.iter().any(|p| p.eval(results)),
            Condition::Not(inner) => !inner.eval(results),
            Condition::Detection(index) => results(*index),
            Condition::AtLeast { count, of } => {
                let mut matched = 0;
                for index in of {
                    if results(*index) {
                        matched += 1;
                        if matched >= *count {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }

    /// Whole numbers one of which `field` must equal whenever the condition holds.
    fn required_codes(&self, field: &str, detections: &[DetectionProgram]) -> Option<Vec<u32>> {
        let of = |index: &usize| detections.get(*index)?.required_codes(field);
        match self {
            Condition::And(parts) => {
                intersect(parts.iter().map(|p| p.required_codes(field, detections)))
            }
            Condition::Or(parts) => {
                union(parts.iter().map(|p| p.required_codes(field, detections)))
            }
            Condition::Not(_) => None,
            Condition::Detection(index) => of(index),
            Condition::AtLeast { count: 0, .. } => None,
            Condition::AtLeast { count, of: indices } if *count >= indices.len() => {
                intersect(indices.iter().map(of))
            }
            Condition::AtLeast { of: indices, .. } => union(indices.iter().map(of)),
        }
    }

    /// Literal sets implied by the condition holding: for each, one of its literals
    /// must occur in the event.
    fn literal_groups(&self, detections: &[DetectionProgram], out: &mut Vec<Vec<Literal>>) {
        let every = |index: &usize| {
            detections
                .get(*index)
                .map(|d| d.literal_groups())
                .unwrap_or_default()
        };
        match self {
            Condition::And(parts) => parts.iter().for_each(|p| p.literal_groups(detections, out)),
            Condition::Detection(index) => out.extend(every(index)),
            Condition::AtLeast { count: 0, .. } => {}
            Condition::AtLeast { count, of } if *count == of.len() => {
                out.extend(of.iter().flat_map(every));
            }
            // At least one of them matches.
            Condition::AtLeast { of, .. } => out.extend(any_of(of.iter().map(every).collect())),
            Condition::Or(parts) => out.extend(any_of(
                parts
                    .iter()
                    .map(|part| {
                        let mut sub = Vec::new();
                        part.literal_groups(detections, &mut sub);
                        sub
                    })
                    .collect(),
            )),
            Condition::Not(_) => {}
        }
    }
}

/// A rule's detection logic, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Program {
    detections: Vec<DetectionProgram>,
    condition: Condition,
}

impl Program {
    pub fn matches(&self, event: &FieldsView<'_>) -> bool {
        let mut cache: [Option<bool>; 32] = [None; 32];
        let mut extra: Vec<Option<bool>> = Vec::new();
        let detections = &self.detections;
        let mut results = |index: usize| -> bool {
            let slot = if index < cache.len() {
                &mut cache[index]
            } else {
                if extra.len() <= index - cache.len() {
                    extra.resize(index - cache.len() + 1, None);
                }
                &mut extra[index - cache.len()]
            };
            *slot.get_or_insert_with(|| detections[index].matches(event))
        };
        self.condition.eval(&mut results)
    }

    /// The event fields the detections test, sorted, once each.
    pub fn field_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for detection in &self.detections {
            detection.collect_fields(&mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whole numbers one of which the event's `field` must equal (as
    /// [`crate::fields::FieldValue::number`] reads it) for the rule to match, sorted:
    /// e.g. the event IDs a rule selects. `None`: the rule does not restrict it.
    pub fn required_codes(&self, field: &str) -> Option<Vec<u32>> {
        self.condition.required_codes(field, &self.detections)
    }

    /// Sets of literals of which, for each set, one must occur (lower-cased) in the
    /// event's values for the rule to match: in the value of the literal's field (as the
    /// rule names it), or anywhere for a keyword literal (`None`).
    pub fn required_literals(&self) -> Vec<Vec<Literal>> {
        let mut out = Vec::new();
        self.condition.literal_groups(&self.detections, &mut out);
        for group in &mut out {
            group.sort();
            group.dedup();
        }
        out
    }
}

/// Maps a rule's field name to the name to read (identity, or a configured rename).
pub type FieldNamer<'a> = &'a dyn Fn(&str) -> String;

fn compile_detection(
    detection: &Detection,
    name_field: FieldNamer<'_>,
    placeholders: &Placeholders,
) -> Result<DetectionProgram, Unsupported> {
    Ok(match detection {
        Detection::AllOf(items) => DetectionProgram::AllOf(
            items
                .iter()
                .map(|item| {
                    compile_item_with(
                        item,
                        item.field.name.as_deref().map(name_field),
                        placeholders,
                    )
                })
                .collect::<Result<_, _>>()?,
        ),
        Detection::AnyOf(parts) => DetectionProgram::AnyOf(
            parts
                .iter()
                .map(|p| compile_detection(p, name_field, placeholders))
                .collect::<Result<_, _>>()?,
        ),
        Detection::And(parts) => DetectionProgram::And(
            parts
                .iter()
                .map(|p| compile_detection(p, name_field, placeholders))
                .collect::<Result<_, _>>()?,
        ),
        Detection::Keywords(values) => {
            let item = rsigma_parser::DetectionItem {
                field: rsigma_parser::FieldSpec::new(None, vec![rsigma_parser::Modifier::Contains]),
                values: values.clone(),
            };
            DetectionProgram::Keywords(compile_item_with(&item, None, placeholders)?)
        }
        Detection::ArrayMatch { field, .. } => {
            return Err(Unsupported(format!(
                "array quantifier blocks ({field}[any]/[all]) are not supported"
            )));
        }
        Detection::Conditional { .. } => {
            return Err(Unsupported(
                "conditional array-member blocks are not supported".into(),
            ));
        }
    })
}

fn compile_condition(expr: &ConditionExpr, names: &[String]) -> Result<Condition, Unsupported> {
    Ok(match expr {
        ConditionExpr::And(parts) => Condition::And(
            parts
                .iter()
                .map(|p| compile_condition(p, names))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Or(parts) => Condition::Or(
            parts
                .iter()
                .map(|p| compile_condition(p, names))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Not(inner) => Condition::Not(Box::new(compile_condition(inner, names)?)),
        ConditionExpr::Identifier(name) => {
            Condition::Detection(names.iter().position(|n| n == name).ok_or_else(|| {
                Unsupported(format!(
                    "the condition names {name:?}, which is not defined"
                ))
            })?)
        }
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let of: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, name)| match pattern {
                    SelectorPattern::Them => !name.starts_with('_'),
                    SelectorPattern::Pattern(p) => detection_name_matches(p, name),
                })
                .map(|(index, _)| index)
                .collect();
            if of.is_empty() {
                return Err(Unsupported(format!(
                    "the condition selector {quantifier} of {pattern} matches no detection"
                )));
            }
            let count = match quantifier {
                Quantifier::Any => 1,
                Quantifier::All => of.len(),
                Quantifier::Count(n) => usize::try_from(*n).unwrap_or(usize::MAX),
            };
            Condition::AtLeast { count, of }
        }
    })
}

/// Compiles a rule's detections with field names passed through `name_field`.
pub fn compile(
    detections: &Detections,
    name_field: FieldNamer<'_>,
    placeholders: &Placeholders,
) -> Result<Program, Unsupported> {
    if detections.timeframe.is_some() {
        return Err(Unsupported(
            "the deprecated timeframe aggregation is not supported (use a correlation rule)".into(),
        ));
    }
    let mut names: Vec<String> = detections.named.keys().cloned().collect();
    names.sort();
    let programs = names
        .iter()
        .map(|name| {
            compile_detection(&detections.named[name], name_field, placeholders)
                .map_err(|Unsupported(why)| Unsupported(format!("detection {name}: {why}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let conditions = detections
        .conditions
        .iter()
        .map(|c| compile_condition(c, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let condition = match conditions.len() {
        0 => return Err(Unsupported("the rule has no condition".into())),
        1 => conditions
            .into_iter()
            .next()
            .unwrap_or(Condition::Or(Vec::new())),
        _ => Condition::Or(conditions),
    };
    Ok(Program {
        detections: programs,
        condition,
    })
}
