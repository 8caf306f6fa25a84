//! SIGMA detection: loads SigmaHQ-format rules (files, directories, zips) so that every
//! document either becomes a rule or is listed with the reason it was refused; compiles
//! each rule's detection into a program (all Sigma field modifiers but the
//! timestamp-part ones and `expand` without configured placeholders); and evaluates
//! events against the rules of their logsource only, found through a documented
//! mapping from Sigma categories and services to channels, event IDs and field names.
//!
//! Parsing of the YAML and of condition expressions is rsigma-parser's; matching is
//! this crate's, and so is the evaluation of correlation rules (event_count,
//! value_count, temporal, temporal_ordered) over the matches of a whole case. Not
//! here: storing detections, the detect stage.

mod compile;
mod correlation;
mod fields;
mod logsource;
mod matcher;
mod ruleset;
mod scan;

pub use correlation::{BaseHit, Correlation, CorrelationHit, Kind as CorrelationKind};
pub use fields::{FieldValue, FieldsView, Lowered, Slot, SlotIndex};
pub use logsource::{LogsourceMapping, Scope, Target};
pub use matcher::base64_offsets;
pub use ruleset::{
    EventRef, Inspected, MAX_RULE_FILE_BYTES, Refusal, Rule, RuleMeta, RuleSet, built_in_texts,
    inspect_document, split_documents,
};
