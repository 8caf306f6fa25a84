//! Where a rule's logsource is found: channels, event IDs and field renames, from the
//! built-in mapping (`logsources.toml`, documented in docs/detection.md) or a file with
//! the same shape.

use rsigma_parser::LogSource;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const BUILT_IN: &str = include_str!("../logsources.toml");

/// Most values one placeholder may have.
const MAX_PLACEHOLDER_VALUES: usize = 4096;

#[derive(Debug, Deserialize)]
struct SourceSpec {
    channel: String,
    #[serde(default)]
    event_ids: Vec<u32>,
    #[serde(default)]
    fields: Aliases,
}

#[derive(Debug, Deserialize)]
struct CategorySpec {
    name: String,
    sources: Vec<SourceSpec>,
}

#[derive(Debug, Deserialize)]
struct MappingFile {
    #[serde(default)]
    category: Vec<CategorySpec>,
    #[serde(default)]
    services: BTreeMap<String, Vec<String>>,
    /// Values of `expand` placeholders: `name = ["value", …]`.
    #[serde(default)]
    placeholders: BTreeMap<String, Vec<String>>,
}

/// Rule field name → the event's field name, for one logsource (looked up for every
/// field a candidate rule reads, so hashed fast).
pub type Aliases = HashMap<String, String, rustc_hash::FxBuildHasher>;

/// One place a rule applies: a channel, optionally only some event IDs, with renames.
#[derive(Debug, Clone)]
pub struct Target {
    pub channel: String,
    /// Empty = every event of the channel.
    pub event_ids: Vec<u32>,
    /// Rule field name → the event's field name.
    pub aliases: Arc<Aliases>,
}

/// Where a rule is evaluated.
#[derive(Debug, Clone)]
pub enum Scope {
    Targets(Vec<Target>),
    /// A Windows logsource the mapping does not know: every Windows event.
    Everywhere,
}

#[derive(Debug, Clone)]
pub struct LogsourceMapping {
    categories: HashMap<String, Vec<Target>>,
    services: HashMap<String, Vec<String>>,
    /// What `expand` puts in for each placeholder (`%name%`).
    placeholders: crate::matcher::Placeholders,
}

impl LogsourceMapping {
    pub fn built_in() -> Self {
        // The built-in file is tested to parse (see the tests below).
        Self::parse(BUILT_IN).unwrap_or_else(|_| Self {
            categories: HashMap::new(),
            services: HashMap::new(),
            placeholders: HashMap::new(),
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: MappingFile =
            toml::from_str(text).map_err(|e| format!("logsource mapping: {e}"))?;
        let categories = file
            .category
            .into_iter()
            .map(|category| {
                let targets = category
                    .sources
                    .into_iter()
                    .map(|source| Target {
                        channel: source.channel,
                        event_ids: source.event_ids,
                        aliases: Arc::new(source.fields),
                    })
                    .collect();
                (category.name, targets)
            })
            .collect();
        for (name, values) in &file.placeholders {
            if values.len() > MAX_PLACEHOLDER_VALUES {
                return Err(format!(
                    "logsource mapping: placeholder {name:?} has {} values; at most {MAX_PLACEHOLDER_VALUES}",
                    values.len()
                ));
            }
        }
        Ok(Self {
            categories,
            services: file.services.into_iter().collect(),
            placeholders: file.placeholders.into_iter().collect(),
        })
    }

    /// The values `expand` puts in for each placeholder.
    pub fn placeholders(&self) -> &crate::matcher::Placeholders {
        &self.placeholders
    }

    /// Where a rule with `logsource` applies, or why it cannot apply to Windows events.
    pub fn scope(&self, logsource: &LogSource) -> Result<Scope, String> {
        match logsource.product.as_deref() {
            Some(product) if !product.eq_ignore_ascii_case("windows") => {
                return Err(format!(
                    "logsource product {product:?} is not Windows event logs"
                ));
            }
            None if logsource.category.is_none() && logsource.service.is_none() => {
                return Err("the logsource names no product, category or service".into());
            }
            None => {
                return Err(format!(
                    "logsource {} has no product: not Windows event logs",
                    describe(logsource)
                ));
            }
            Some(_) => {}
        }
        let by_category = logsource
            .category
            .as_deref()
            .and_then(|c| self.categories.get(c));
        let by_service = logsource
            .service
            .as_deref()
            .and_then(|s| self.services.get(s))
            .map(|channels| {
                channels
                    .iter()
                    .map(|channel| Target {
                        channel: channel.clone(),
                        event_ids: Vec::new(),
                        aliases: Arc::default(),
                    })
                    .collect::<Vec<_>>()
            });
        Ok(match (by_category, by_service) {
            (Some(targets), Some(channels)) => {
                // Both: the category's sources within the service's channels.
                let narrowed: Vec<Target> = targets
                    .iter()
                    .filter(|t| channels.iter().any(|c| c.channel == t.channel))
                    .cloned()
                    .collect();
                Scope::Targets(if narrowed.is_empty() {
                    targets.clone()
                } else {
                    narrowed
                })
            }
            (Some(targets), None) => Scope::Targets(targets.clone()),
            (None, Some(channels)) => Scope::Targets(channels),
            (None, None) => Scope::Everywhere,
        })
    }
}

pub fn describe(logsource: &LogSource) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("product", &logsource.product),
        ("category", &logsource.category),
        ("service", &logsource.service),
    ] {
        if let Some(value) = value {
            parts.push(format!("{key}: {value}"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_mapping_parses_and_maps_process_creation_twice() {
        let mapping = LogsourceMapping::parse(BUILT_IN).expect("built-in mapping");
        let logsource = LogSource {
            category: Some("process_creation".into()),
            product: Some("windows".into()),
            service: None,
            definition: None,
            custom: HashMap::new(),
        };
        let Ok(Scope::Targets(targets)) = mapping.scope(&logsource) else {
            panic!("process_creation must map to targets");
        };
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].event_ids, [4688]);
        assert_eq!(targets[1].aliases["Image"], "NewProcessName");
        let linux = LogSource {
            product: Some("linux".into()),
            ..logsource.clone()
        };
        assert!(mapping.scope(&linux).unwrap_err().contains("linux"));
    }
}
