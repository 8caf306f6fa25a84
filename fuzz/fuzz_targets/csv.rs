//! CSV rows on arbitrary bytes.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse(data, casescope_evidence::Format::Csv, "csv");
});
