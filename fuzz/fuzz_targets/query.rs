//! The query language parser on arbitrary text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(query) = casescope_query::parse_query(text) {
            let _ = casescope_query::annotations(&query);
        }
    }
});
