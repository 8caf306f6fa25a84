//! The tantivy schema: common fields as indexed/fast keyword or numeric fields, the
//! flattened fields in one JSON field (no per-field mapping to explode), and the
//! original record stored (not indexed). There is no catch-all text field: a field-less
//! term is looked up under every field name the store has seen ([`super::paths`]), which
//! halves the tokens indexed per event compared with copying every value into one.
//!
//! The record is stored once: the flattened fields are indexed, not stored, and are
//! derived again from the stored record when an event is read
//! ([`casescope_evidence::normalize_stored`]). An event with no stored record (a caller
//! that kept none) has its fields stored in `stored_fields` instead. Indexes written
//! before 2026-12-08 stored the fields beside the record ([`Layout::FieldsStored`]);
//! they are read (and written) as they are.

use crate::StoreError;
use crate::tokenizer::{VALUE_TOKENIZER, ValueTokenizer};
use casescope_evidence::Event;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};
use tantivy::{Index, TantivyDocument};

pub const TIMESTAMP: &str = "timestamp";
pub const TIEBREAK: &str = "tiebreak";
pub const KEYWORD_TOKENIZER: &str = "casescope_keyword";

/// Where an index keeps an event's fields for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Derived from the stored record; stored (`stored_fields`) only when there is none.
    RecordOnce { stored_fields: Field },
    /// Stored in the indexed JSON field too (indexes written before 2026-12-08).
    FieldsStored,
}

#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub event_id: Field,
    pub case_id: Field,
    pub file_id: Field,
    pub source: Field,
    pub timestamp: Field,
    pub tiebreak: Field,
    pub locator: Field,
    pub record_id: Field,
    pub line: Field,
    pub event_code: Field,
    pub channel: Field,
    pub provider: Field,
    pub computer: Field,
    pub level: Field,
    pub fields: Field,
    pub raw: Field,
    pub layout: Layout,
    /// Not a field: the bound on a field-less wildcard's walk (set from the store's
    /// options; translation reads it with the fields).
    pub wildcard_steps: u64,
}

pub fn build() -> Schema {
    let mut builder = Schema::builder();
    let keyword = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic),
    );
    let values = TextFieldIndexing::default()
        .set_tokenizer(VALUE_TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    builder.add_text_field("event_id", STRING | STORED);
    builder.add_text_field("case_id", STRING);
    builder.add_text_field("file_id", STRING | STORED);
    builder.add_text_field("source", STRING | STORED);
    builder.add_i64_field(TIMESTAMP, INDEXED | FAST | STORED);
    builder.add_u64_field(TIEBREAK, FAST);
    builder.add_text_field("locator", STRING | STORED);
    builder.add_u64_field("record_id", INDEXED | STORED);
    builder.add_u64_field("line", STORED);
    builder.add_u64_field("event_code", INDEXED | STORED);
    builder.add_text_field("channel", keyword.clone());
    builder.add_text_field("provider", keyword.clone());
    builder.add_text_field("computer", keyword);
    builder.add_u64_field("level", INDEXED | STORED);
    builder.add_json_field(
        "fields",
        JsonObjectOptions::default().set_indexing_options(values),
    );
    builder.add_text_field("raw", STORED);
    builder.add_json_field("stored_fields", JsonObjectOptions::default().set_stored());
    builder.build()
}

pub fn register_tokenizers(index: &Index) {
    index.tokenizers().register(
        VALUE_TOKENIZER,
        TextAnalyzer::from(ValueTokenizer::default()),
    );
    index.tokenizers().register(
        KEYWORD_TOKENIZER,
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
}

impl Fields {
    pub fn from_schema(schema: &Schema) -> Result<Fields, StoreError> {
        let unknown = |why: String| {
            StoreError::Internal(format!(
                "the index was written by another CaseScope version ({why}); move the \
                 index directory (DATA_DIR/index) aside and upload the case's files again"
            ))
        };
        let get = |name: &str| {
            schema
                .get_field(name)
                .map_err(|_| unknown(format!("it has no {name} field")))
        };
        let fields = get("fields")?;
        let fields_stored = schema.get_field_entry(fields).is_stored();
        let layout = match (schema.get_field("stored_fields"), fields_stored) {
            (Ok(stored_fields), false) => Layout::RecordOnce { stored_fields },
            (Err(_), true) => Layout::FieldsStored,
            _ => return Err(unknown("its fields are stored in an unknown way".into())),
        };
        Ok(Fields {
            event_id: get("event_id")?,
            case_id: get("case_id")?,
            file_id: get("file_id")?,
            source: get("source")?,
            timestamp: get(TIMESTAMP)?,
            tiebreak: get(TIEBREAK)?,
            locator: get("locator")?,
            record_id: get("record_id")?,
            line: get("line")?,
            event_code: get("event_code")?,
            channel: get("channel")?,
            provider: get("provider")?,
            computer: get("computer")?,
            level: get("level")?,
            fields,
            raw: get("raw")?,
            layout,
            wildcard_steps: super::translate::FIELDLESS_WILDCARD_STEPS,
        })
    }
}

/// The document of one event (consumes it: its fields move into the document).
pub fn to_document(fields: &Fields, event: Event) -> TantivyDocument {
    let mut document = TantivyDocument::default();
    document.add_text(fields.event_id, &event.event_id);
    document.add_text(fields.case_id, &event.case_id);
    document.add_text(fields.file_id, &event.file_id);
    document.add_text(fields.source, event.source);
    document.add_i64(fields.timestamp, event.timestamp_micros);
    document.add_u64(fields.tiebreak, crate::tiebreak_of(&event.event_id));
    document.add_text(fields.locator, &event.locator);
    if let Some(record_id) = event.record_id {
        document.add_u64(fields.record_id, record_id);
    }
    if let Some(line) = event.line {
        document.add_u64(fields.line, line);
    }
    if let Some(code) = event.event_code {
        document.add_u64(fields.event_code, u64::from(code));
    }
    if let Some(level) = event.level {
        document.add_u64(fields.level, u64::from(level));
    }
    for (field, value) in [
        (fields.channel, &event.channel),
        (fields.provider, &event.provider),
        (fields.computer, &event.computer),
    ] {
        if let Some(value) = value {
            document.add_text(field, value);
        }
    }
    let fields_json = serde_json::Value::Object(event.fields);
    if !event.raw.is_null() {
        document.add_text(fields.raw, event.raw.get());
    }
    if let Layout::RecordOnce { stored_fields } = fields.layout
        && (!event.fields_from_raw || event.raw.is_null())
    {
        // Not derivable from a stored record: kept as given.
        document.add_field_value(stored_fields, &fields_json);
    }
    // Straight from the JSON map: converting it to an `OwnedValue` first copied every
    // string once more per event.
    document.add_field_value(fields.fields, &fields_json);
    document
}
