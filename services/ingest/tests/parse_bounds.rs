//! One file's parse is bounded in time: a file that takes longer than its limit fails
//! with the limit named and its counts adding up, and the service goes on.

mod common;

use casescope_ingest::IngestSettings;
use casescope_proto::common::v1::FileStatus;
use common::*;
use std::time::Duration;

#[test]
fn the_limit_grows_with_the_file() {
    let mut settings = IngestSettings::new("/nowhere".into());
    settings.parse_time_base = Duration::from_secs(300);
    settings.parse_time_per_mib = Duration::from_secs(1);
    assert_eq!(settings.parse_time_limit(0), Duration::from_secs(300));
    assert_eq!(settings.parse_time_limit(1), Duration::from_secs(301));
    assert_eq!(settings.parse_time_limit(3 << 20), Duration::from_secs(303));
    assert_eq!(
        settings.parse_time_limit(1_184_600_000),
        Duration::from_secs(300 + 1_130)
    );
    assert!(settings.parse_time_limit(u64::MAX) > Duration::from_secs(1 << 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_past_its_time_limit_fails_the_file_not_the_service() {
    let mut h = harness(|settings| {
        // No time at all: the first record read is already past the limit.
        settings.parse_time_base = Duration::ZERO;
        settings.parse_time_per_mib = Duration::ZERO;
    })
    .await;
    let evtx = synth_evtx(h.root.path(), 2_000, 23);
    let id = upload(&mut h, "slow.evtx", &evtx)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_eq!(status_of(&record), FileStatus::Failed, "{record:?}");
    assert!(
        record.error.contains("parsing stopped after 0 s")
            && record.error.contains("0 s + 0 s per MiB"),
        "{}",
        record.error
    );
    assert_counts_add_up(&record);
    // The record read when the limit was found passed is kept: one read, one indexed.
    assert_eq!(
        (record.records_read, record.events_indexed),
        (1, 1),
        "{record:?}"
    );
    // The service still answers and takes the next file (which meets the same limit).
    let other = synth_evtx(h.root.path(), 100, 24);
    let again = upload(&mut h, "other.evtx", &other)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &again).await;
    assert_eq!(status_of(&record), FileStatus::Failed, "{record:?}");
}
