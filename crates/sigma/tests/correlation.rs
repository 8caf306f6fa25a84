//! Correlation rules over matches spread across several files of one case, on event
//! time: each type fires inside its timespan and does not when the same events are
//! spread wider.

use casescope_sigma::{BaseHit, EventRef, LogsourceMapping, RuleSet};
use serde_json::json;

const RULES: &str = r#"
title: Failed logon
id: 11111111-0000-0000-0000-000000000001
name: failed_logon
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID: 4625
    condition: selection
level: low
---
title: Successful logon
id: 11111111-0000-0000-0000-000000000002
name: successful_logon
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID: 4624
    condition: selection
level: low
---
title: Many failed logons from one address
id: 22222222-0000-0000-0000-000000000001
correlation:
    type: event_count
    rules:
        - failed_logon
    group-by:
        - IpAddress
    timespan: 5m
    condition:
        gte: 3
level: medium
---
title: Password spraying
id: 22222222-0000-0000-0000-000000000002
correlation:
    type: value_count
    rules:
        - failed_logon
    group-by:
        - IpAddress
    timespan: 10m
    condition:
        field: TargetUserName
        gte: 3
level: high
---
title: Failures then success, any order
id: 22222222-0000-0000-0000-000000000003
correlation:
    type: temporal
    rules:
        - failed_logon
        - successful_logon
    group-by:
        - Address
    timespan: 2m
    aliases:
        Address:
            failed_logon: IpAddress
            successful_logon: SourceAddress
level: high
---
title: Failure then success, in order
id: 22222222-0000-0000-0000-000000000004
correlation:
    type: temporal_ordered
    rules:
        - failed_logon
        - successful_logon
    group-by:
        - IpAddress
    timespan: 2m
level: high
"#;

fn rule_set() -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let set = RuleSet::load(&[dir.path().to_path_buf()], &LogsourceMapping::built_in());
    assert!(set.refused.is_empty(), "{:?}", set.refused);
    assert_eq!(set.correlations.len(), 4);
    // No correlation says `generate: true`: the base rules' own matches are not reported.
    assert!((0..set.rules.len()).all(|rule| !set.reports_matches(rule)));
    set
}

/// (file, seconds, event id, fields) → the base matches, as a case's files would give.
fn hits(set: &RuleSet, events: &[(&str, i64, u32, serde_json::Value)]) -> Vec<BaseHit> {
    let mut out = Vec::new();
    for (n, (file, seconds, code, fields)) in events.iter().enumerate() {
        let mut fields = fields.as_object().cloned().unwrap_or_default();
        fields.insert("EventID".into(), json!(code));
        let event = EventRef {
            channel: Some("Security"),
            event_code: Some(*code),
            fields: (&fields).into(),
        };
        for rule in set.evaluate(&event) {
            let values = set
                .correlation_fields(rule)
                .into_iter()
                .filter_map(|name| {
                    let value = fields.get(&name)?;
                    Some((
                        name,
                        value
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| value.to_string()),
                    ))
                })
                .collect();
            out.push(BaseHit {
                rule,
                timestamp_micros: 1_700_000_000_000_000 + seconds * 1_000_000,
                event: format!("{file}#{n}"),
                values,
            });
        }
    }
    out
}

fn fired(
    set: &RuleSet,
    events: &[(&str, i64, u32, serde_json::Value)],
) -> Vec<(String, Vec<String>, u64)> {
    let mut out: Vec<_> = set
        .correlate(&hits(set, events))
        .into_iter()
        .map(|hit| {
            (
                set.correlations[hit.correlation].title.clone(),
                hit.group,
                hit.count,
            )
        })
        .collect();
    out.sort();
    out
}

fn failed(ip: &str, user: &str) -> serde_json::Value {
    json!({"IpAddress": ip, "TargetUserName": user})
}

#[test]
fn event_count_and_value_count_fire_within_the_timespan_across_files() {
    let set = rule_set();
    let close = [
        ("a.evtx", 0, 4625, failed("203.0.113.9", "alice")),
        ("b.evtx", 60, 4625, failed("203.0.113.9", "bob")),
        ("c.evtx", 120, 4625, failed("203.0.113.9", "carol")),
        ("a.evtx", 130, 4625, failed("198.51.100.1", "alice")),
    ];
    assert_eq!(
        fired(&set, &close),
        [
            (
                "Many failed logons from one address".to_string(),
                vec!["203.0.113.9".to_string()],
                3
            ),
            (
                "Password spraying".to_string(),
                vec!["203.0.113.9".to_string()],
                3
            ),
        ]
    );
    // The same failures 6 minutes apart: outside event_count's 5 m and value_count's
    // 10 m windows (first to last is 12 m).
    let spread = [
        ("a.evtx", 0, 4625, failed("203.0.113.9", "alice")),
        ("b.evtx", 360, 4625, failed("203.0.113.9", "bob")),
        ("c.evtx", 720, 4625, failed("203.0.113.9", "carol")),
    ];
    assert_eq!(fired(&set, &spread), []);
    // Three failures but only two user names: event_count fires, value_count does not.
    let same_users = [
        ("a.evtx", 0, 4625, failed("203.0.113.9", "alice")),
        ("b.evtx", 10, 4625, failed("203.0.113.9", "alice")),
        ("c.evtx", 20, 4625, failed("203.0.113.9", "bob")),
    ];
    assert_eq!(
        fired(&set, &same_users),
        [(
            "Many failed logons from one address".to_string(),
            vec!["203.0.113.9".to_string()],
            3
        )]
    );
}

#[test]
fn temporal_and_temporal_ordered_follow_order_and_timespan() {
    let set = rule_set();
    let success = json!({"IpAddress": "203.0.113.9", "SourceAddress": "203.0.113.9", "TargetUserName": "alice"});
    // Failure, then success 30 s later in another file: both temporal rules fire.
    let in_order = [
        ("a.evtx", 0, 4625, failed("203.0.113.9", "alice")),
        ("b.evtx", 30, 4624, success.clone()),
    ];
    assert_eq!(
        fired(&set, &in_order),
        [
            (
                "Failure then success, in order".to_string(),
                vec!["203.0.113.9".to_string()],
                2
            ),
            (
                "Failures then success, any order".to_string(),
                vec!["203.0.113.9".to_string()],
                2
            ),
        ]
    );
    // Success first: only the unordered rule fires.
    let reversed = [
        ("b.evtx", 0, 4624, success.clone()),
        ("a.evtx", 30, 4625, failed("203.0.113.9", "alice")),
    ];
    assert_eq!(
        fired(&set, &reversed),
        [(
            "Failures then success, any order".to_string(),
            vec!["203.0.113.9".to_string()],
            2
        )]
    );
    // Five minutes apart: outside the 2 m timespan, nothing fires.
    let far = [
        ("a.evtx", 0, 4625, failed("203.0.113.9", "alice")),
        ("b.evtx", 300, 4624, success),
    ];
    assert_eq!(fired(&set, &far), []);
}

#[test]
fn generate_true_keeps_the_referenced_rules_matches() {
    let dir = tempfile::tempdir().unwrap();
    let text = RULES.replace(
        "title: Many failed logons from one address\nid: 22222222-0000-0000-0000-000000000001\ncorrelation:\n",
        "title: Many failed logons from one address\nid: 22222222-0000-0000-0000-000000000001\ncorrelation:\n    generate: true\n",
    );
    assert_ne!(text, RULES);
    std::fs::write(dir.path().join("rules.yml"), text).unwrap();
    let set = RuleSet::load(&[dir.path().to_path_buf()], &LogsourceMapping::built_in());
    let failed = set
        .rules
        .iter()
        .position(|r| r.meta.title == "Failed logon")
        .unwrap();
    let success = set
        .rules
        .iter()
        .position(|r| r.meta.title == "Successful logon")
        .unwrap();
    assert!(
        set.reports_matches(failed),
        "referenced by a generating correlation"
    );
    assert!(!set.reports_matches(success));
}

#[test]
fn a_correlation_naming_a_missing_rule_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yml"),
        "title: Orphan\nid: 33333333-0000-0000-0000-000000000001\ncorrelation:\n    type: event_count\n    rules:\n        - nowhere\n    timespan: 1h\n    condition:\n        gte: 2\n",
    )
    .unwrap();
    let set = RuleSet::load(&[dir.path().to_path_buf()], &LogsourceMapping::built_in());
    assert!(set.correlations.is_empty());
    assert_eq!(set.refused.len(), 1);
    assert!(
        set.refused[0].reason.contains("\"nowhere\""),
        "{:?}",
        set.refused
    );
}
