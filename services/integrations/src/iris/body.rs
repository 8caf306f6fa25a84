//! What a pushed item looks like in IRIS: the timeline event of one of ours (times in
//! UTC without an offset, as IRIS expects them; our tag in `event_tags`), and the
//! fingerprint that says whether a linked item changed since it was sent.

use super::EVENT_TAG_PREFIX;
use crate::source::EventItem;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub(super) fn fingerprint(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `2026-01-02T03:04:05.123456Z` → `2026-01-02T03:04:05.123456` (UTC, no offset).
pub fn iris_date(datetime: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(datetime).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string(),
    )
}

/// The IRIS timeline event of one of ours.
pub(super) fn event_body(event: &EventItem, category: u64, assets: &[u64]) -> Option<Value> {
    let date = iris_date(&event.datetime)?;
    let mut title = event.provider.clone();
    if let Some(code) = event.event_code {
        title = format!("{title} {code}").trim().to_string();
    }
    if !event.computer.is_empty() {
        title = format!("{title} on {}", event.computer);
    }
    if title.chars().count() < 2 {
        title = format!("Event {}", event.event_id);
    }
    let mut content = String::new();
    if !event.tags.is_empty() {
        content.push_str(&format!("Tags: {}\n", event.tags.join(", ")));
    }
    if event.starred {
        content.push_str("Starred in CaseScope\n");
    }
    if !event.comments.is_empty() {
        content.push_str("\nComments:\n");
        for comment in &event.comments {
            content.push_str(&format!("- {}: {}\n", comment.author, comment.body));
        }
    }
    let mut tags = vec![format!("{EVENT_TAG_PREFIX}{}", event.event_id)];
    tags.extend(event.tags.iter().map(|t| t.replace(',', " ")));
    Some(json!({
        "event_title": clip(&title, 250),
        "event_date": date,
        "event_tz": "+00:00",
        "event_category_id": category,
        "event_assets": assets,
        "event_iocs": [],
        "event_content": clip(&content, 60_000),
        "event_raw": clip(&Value::Object(event.fields.clone()).to_string(), 60_000),
        "event_source": clip(&format!("CaseScope {} {}", event.channel, event.event_id), 250),
        "event_tags": tags.join(","),
        "event_in_summary": event.starred,
        "event_in_graph": true,
        "event_sync_iocs_assets": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_go_without_offset_in_utc() {
        assert_eq!(
            iris_date("2026-01-02T03:04:05.123456Z").as_deref(),
            Some("2026-01-02T03:04:05.123456")
        );
        assert_eq!(
            iris_date("2026-01-02T05:04:05+02:00").as_deref(),
            Some("2026-01-02T03:04:05.000000")
        );
        assert_eq!(iris_date("yesterday"), None);
    }

    #[test]
    fn every_event_carries_our_tag() {
        let event = EventItem {
            event_id: "abc".into(),
            datetime: "2026-01-02T03:04:05Z".into(),
            provider: "Security".into(),
            event_code: Some(4624),
            computer: "WS01".into(),
            tags: vec!["lateral, movement".into()],
            ..Default::default()
        };
        let body = event_body(&event, 3, &[9]).unwrap();
        assert_eq!(body["event_tags"], "casescope:abc,lateral  movement");
        assert_eq!(body["event_title"], "Security 4624 on WS01");
        assert_eq!(body["event_tz"], "+00:00");
        assert_eq!(body["event_assets"], json!([9]));
    }
}
