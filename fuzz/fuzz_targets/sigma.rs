//! Sigma rule loading (YAML, detection conditions, modifiers, correlations) on
//! arbitrary text.
#![no_main]

use casescope_sigma::{LogsourceMapping, RuleSet};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mapping = LogsourceMapping::built_in();
    let _ = RuleSet::from_documents(&[("fuzz.yml".to_string(), text.to_string())], &mapping);
});
