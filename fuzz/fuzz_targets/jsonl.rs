//! JSON lines (and a whole-file JSON array) on arbitrary bytes.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse(data, casescope_evidence::Format::Jsonl, "jsonl");
    common::parse(data, casescope_evidence::Format::Json, "json");
});
