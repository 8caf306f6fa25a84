//! ZIP extraction (entry limits, ratios, names) on arbitrary bytes.
#![no_main]

use casescope_evidence::archive::{ArchiveLimits, extract};

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = common::scratch("zip");
    let dest = common::scratch("out");
    if std::fs::write(&path, data).is_err() || std::fs::create_dir_all(&dest).is_err() {
        return;
    }
    let limits = ArchiveLimits {
        max_total_bytes: 8 << 20,
        max_entry_bytes: 4 << 20,
        ..ArchiveLimits::default()
    };
    let _ = extract(&path, &dest, &limits);
    let _ = std::fs::remove_dir_all(&dest);
});
