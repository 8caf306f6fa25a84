//! The conformance suite on the OpenSearch backend, against a real OpenSearch: the
//! single node the testkit starts (OpenSearch 2.19.6 from Maven Central jars, installed
//! by `scripts/install-opensearch.sh`), or the 2.x cluster (2.7 or later) named by
//! `CASESCOPE_TEST_OPENSEARCH_URL`, e.g. `http://localhost:9200`. Optional:
//! `CASESCOPE_TEST_OPENSEARCH_USER`, `CASESCOPE_TEST_OPENSEARCH_PASSWORD`, and
//! `CASESCOPE_TEST_OPENSEARCH_INSECURE=1` to accept a self-signed certificate. On a
//! machine without Java each test says it was skipped; CI sets
//! `CASESCOPE_TEST_REQUIRE_OPENSEARCH=1`, which turns a missing node into a failure.
//!
//! Each test uses its own index (`casescope-test-<process id>-<test>`), deleted at the
//! end, so tests run in parallel and leave nothing behind.

mod conformance;

use casescope_eventstore::{EventStore, OpenSearchOptions, OpenSearchStore, SortOrder};
use std::time::Duration;

fn options(test: &str) -> Option<OpenSearchOptions> {
    let url = casescope_testkit::opensearch_url()?;
    let mut options = OpenSearchOptions::new(url);
    options.index = format!(
        "casescope-test-{}-{}",
        std::process::id(),
        test.replace('_', "-")
    );
    options.username = std::env::var("CASESCOPE_TEST_OPENSEARCH_USER").ok();
    options.password = std::env::var("CASESCOPE_TEST_OPENSEARCH_PASSWORD").ok();
    options.danger_accept_invalid_certs =
        std::env::var("CASESCOPE_TEST_OPENSEARCH_INSECURE").is_ok_and(|v| v == "1");
    options.number_of_shards = Some(2);
    options.number_of_replicas = Some(0);
    options.request_timeout = Duration::from_secs(30);
    Some(options)
}

fn skipped(test: &str) {
    eprintln!(
        "skipped {test}: no OpenSearch (install Java 17 and Maven and run \
         scripts/install-opensearch.sh, or set CASESCOPE_TEST_OPENSEARCH_URL)"
    );
}

/// Removes a test's index (best effort: a failed test must still report its failure).
async fn drop_index(options: &OpenSearchOptions) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(options.danger_accept_invalid_certs)
        .build()
        .unwrap();
    let mut request = client.delete(format!(
        "{}/{}",
        options.url.trim_end_matches('/'),
        options.index
    ));
    if let Some(user) = &options.username {
        request = request.basic_auth(user, options.password.as_deref());
    }
    if let Err(error) = request.send().await {
        eprintln!("could not delete test index {}: {error}", options.index);
    }
}

/// Runs `test` on a fresh store and index, deletes the index, then passes on the
/// test's panic if it had one.
async fn with_store<F, Fut>(name: &str, test: F)
where
    F: FnOnce(OpenSearchStore) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(options) = options(name) else {
        skipped(name);
        return;
    };
    let store = OpenSearchStore::open(options.clone())
        .await
        .unwrap_or_else(|e| panic!("open OpenSearch at {}: {e}", options.url));
    let outcome = tokio::spawn(test(store)).await;
    drop_index(&options).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(#[tokio::test]
        async fn $name() {
            with_store(stringify!($name), |store| async move {
                conformance::$name(&store).await;
            })
            .await;
        })*
    };
}

suite!(
    round_trip_and_counts,
    the_query_language,
    annotation_sets,
    facets,
    filters_and_time_range,
    paging_visits_every_event_once_in_order,
    paging_over_uneven_time,
    paging_is_exact_while_other_files_are_written,
    deleting_a_file_touches_nothing_else,
    deleting_a_case_touches_nothing_else,
    histograms,
    invalid_requests_are_refused,
);

#[tokio::test]
async fn reopening_the_index_keeps_events() {
    let name = "reopening_the_index_keeps_events";
    let Some(options) = options(name) else {
        skipped(name);
        return;
    };
    let case = conformance::unique_case();
    with_store(name, move |store| async move {
        store.write(conformance::sample(&case)).await.unwrap();
        store.flush().await.unwrap();
        let again = OpenSearchStore::open(options).await.unwrap();
        assert_eq!(again.count_file(&case, "file-b").await.unwrap(), 3);
    })
    .await;
}

#[tokio::test]
async fn scanning_a_file_reads_each_event_once_in_order() {
    with_store("scanning_a_file", |store| async move {
        let case = conformance::unique_case();
        let events: Vec<_> = (0..95)
            .map(|n| {
                let mut event = conformance::event(
                    &case,
                    "file-s",
                    n,
                    serde_json::json!({"EventID": 4688, "n": n}),
                );
                event.timestamp_micros = 1_700_000_000_000_000 + (n as i64 / 4) * 1000;
                event
            })
            .collect();
        let mut expected: Vec<(i64, u64)> = events
            .iter()
            .map(|e| {
                (
                    e.timestamp_micros,
                    casescope_eventstore::tiebreak_of(&e.event_id),
                )
            })
            .collect();
        expected.sort();
        let report = store.write(events).await.unwrap();
        assert_eq!(report.written, 95);
        store.flush().await.unwrap();

        let mut scan = store.scan_file(&case, "file-s", 20, None).unwrap();
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(page) = scan.next_page().await.unwrap() {
            pages += 1;
            seen.extend(page.iter().map(|e| {
                (
                    e.timestamp_micros,
                    casescope_eventstore::tiebreak_of(&e.event_id),
                )
            }));
        }
        assert_eq!(pages, 5);
        assert_eq!(seen, expected);

        // Resuming behind a cursor reads the rest.
        let mut first = store.scan_file(&case, "file-s", 30, None).unwrap();
        let page = first.next_page().await.unwrap().unwrap();
        assert_eq!(page.len(), 30);
        let cursor = first.cursor();
        first.close().await.unwrap();
        let mut rest = store.scan_file(&case, "file-s", 1000, cursor).unwrap();
        let remaining = rest.next_page().await.unwrap().unwrap();
        assert_eq!(remaining.len(), 65);
        assert!(rest.next_page().await.unwrap().is_none());

        // The same order as a search.
        let mut request = casescope_eventstore::EventQuery::new(
            &case,
            casescope_eventstore::parse_query("").unwrap(),
        );
        request.sort = SortOrder::Ascending;
        request.page_size = 1;
        let page = store.search(&request).await.unwrap();
        assert_eq!(
            (
                page.events[0].timestamp_micros,
                casescope_eventstore::tiebreak_of(&page.events[0].event_id)
            ),
            expected[0]
        );
    })
    .await;
}
