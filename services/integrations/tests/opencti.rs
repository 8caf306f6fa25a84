//! OpenCTI lookups in batches against a local server that answers the
//! `stixCyberObservables` query as OpenCTI's GraphQL API documents it
//! (casescope_testkit::opencti: FilterGroup filters, cursor pages capped at 200).

use casescope_integrations::opencti::{BATCH, lookup};
use casescope_integrations::outbound::breaker::Breaker;
use casescope_integrations::outbound::guard::Guard;
use casescope_integrations::outbound::{Auth, Outbound, OutboundError, OutboundSettings};
use casescope_runtime::config::IpNet;
use casescope_testkit::opencti::FakeOpenCti;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "0f1e2d3c-canary-opencti-token";

fn outbound(token: &str) -> Outbound {
    Outbound::new(
        Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]),
        OutboundSettings::default(),
        Duration::from_secs(10),
        None,
        Some(Auth::Bearer(token.into())),
        Arc::new(Breaker::new(5, Duration::from_secs(30))),
    )
    .unwrap()
}

fn iocs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match i % 5 {
            0 => ("sha256".to_string(), format!("{:064X}", i)),
            1 => ("domain".to_string(), format!("host{i}.evil.example")),
            2 => (
                "url".to_string(),
                format!("http://host{i}.evil.example/payload"),
            ),
            _ => ("ip".to_string(), format!("203.0.{}.{}", i / 256, i % 256)),
        })
        .collect()
}

#[tokio::test]
async fn five_thousand_iocs_take_ten_requests() {
    let all = iocs(5_000);
    // One value in three is known to OpenCTI (hashes as stored: lower case).
    let known: HashMap<String, (String, i64)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, (kind, value))| {
            let value = if kind == "sha256" {
                value.to_ascii_lowercase()
            } else {
                value.clone()
            };
            (value, ("IPv4-Addr".to_string(), (i % 100) as i64))
        })
        .collect();
    let expected = known.len();
    let cti = FakeOpenCti::start(TOKEN, known).await;
    let found = lookup(&outbound(TOKEN), &cti.url(), &all).await.unwrap();
    assert_eq!(found.requests, 10, "5,000 values in batches of {BATCH}");
    assert_eq!(cti.requests(), 10);
    assert!(cti.asked().iter().all(|n| *n <= BATCH));
    assert_eq!(found.found.len(), expected);
    assert_eq!(found.cut, 0);
    // A hash given in upper case is found under its lower-case form, with what OpenCTI knows.
    let knowledge = &found.found[&format!("{:064x}", 0)];
    assert_eq!(knowledge.labels, vec!["malicious", "c2"]);
    assert_eq!(knowledge.indicators.len(), 1);
    assert!(!knowledge.indicators[0].revoked);
    assert_eq!(knowledge.related, vec!["related-to Malware Emotet"]);
    assert_eq!(knowledge.score, Some(0));
}

#[tokio::test]
async fn a_batch_with_more_matches_than_a_page_follows_the_cursor() {
    let all: Vec<(String, String)> = (0..BATCH)
        .map(|i| ("domain".to_string(), format!("d{i}.example")))
        .collect();
    let known = all
        .iter()
        .map(|(_, v)| (v.clone(), ("Domain-Name".to_string(), 80)))
        .collect();
    let cti = FakeOpenCti::start(TOKEN, known).await;
    let found = lookup(&outbound(TOKEN), &cti.url(), &all).await.unwrap();
    assert_eq!(found.found.len(), BATCH);
    // 500 matches in pages of at most 200.
    assert_eq!(found.requests, 3);
}

#[tokio::test]
async fn graphql_errors_are_reported_without_the_token() {
    let cti = FakeOpenCti::start(TOKEN, HashMap::new()).await;
    let error = lookup(&outbound("wrong-token"), &cti.url(), &iocs(10))
        .await
        .unwrap_err();
    let OutboundError::Status { excerpt, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(excerpt.contains("You must be logged in"), "{excerpt}");
    assert!(!error.to_string().contains(TOKEN) && !error.to_string().contains("wrong-token"));
    // Types OpenCTI cannot look up cost no request.
    let before = cti.requests();
    let none = lookup(
        &outbound(TOKEN),
        &cti.url(),
        &[("command_line".into(), "cmd /c whoami".into())],
    )
    .await
    .unwrap();
    assert_eq!((none.requests, cti.requests() - before), (0, 0));
}
