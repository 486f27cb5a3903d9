//! Prometheus' alert push (`POST /api/v2/alerts`), the Alertmanager API v2
//! call Prometheus makes, so Prometheus can send to tocsin directly.
//!
//! The body is an array of alerts. Firing and resolved differ only by
//! `endsAt`: Prometheus sets it a few minutes into the future while the
//! alert fires and to the resolve time once it stops, so an alert is
//! resolved when `endsAt` is not after `now`. Example
//! (`tests/fixtures/prometheus/firing.json`):
//!
//! ```json
//! [{"annotations":{"summary":"..."},"endsAt":"2026-11-29T05:20:00Z",
//!   "startsAt":"2026-11-29T05:16:00Z","generatorURL":"http://...",
//!   "labels":{"alertname":"AlwaysFiring","severity":"critical"}}]
//! ```
//!
//! Alerts are grouped by `alertname` (one incident per alert rule, one alert
//! per label set), as Alertmanager's default `group_by: [alertname]` would.

use super::{
    AlertAction, AlertEvent, AlertLink, IntakeError, MAX_SUMMARY, bounded_key, label_fingerprint,
    parse_json, truncate,
};
use crate::incident::Severity;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
}

/// Parses the alert array; `now` decides which alerts are resolved.
pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Vec<AlertEvent>, IntakeError> {
    let alerts: Vec<PostableAlert> = parse_json(body)?;
    let mut errors = Vec::new();
    for (i, a) in alerts.iter().enumerate() {
        if a.labels.get("alertname").is_none_or(|n| n.is_empty()) {
            errors.push(format!("'[{i}].labels.alertname' is missing or empty"));
        }
    }
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    Ok(alerts
        .into_iter()
        .map(|a| {
            let name = a.labels["alertname"].clone();
            let firing = a.ends_at.is_none_or(|end| end > now);
            let summary = a
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_else(|| name.clone());
            let mut links = Vec::new();
            if !a.generator_url.is_empty() {
                links.push(AlertLink {
                    href: a.generator_url.clone(),
                    text: "Source".into(),
                });
            }
            AlertEvent {
                dedup_key: bounded_key(&format!("prometheus:{name}")),
                fingerprint: Some(label_fingerprint(&a.labels)),
                action: if firing {
                    AlertAction::Trigger
                } else {
                    AlertAction::Resolve
                },
                summary: truncate(&summary, MAX_SUMMARY),
                incident_title: Some(truncate(&name, MAX_SUMMARY)),
                source: a
                    .labels
                    .get("instance")
                    .or_else(|| a.labels.get("job"))
                    .cloned()
                    .unwrap_or_else(|| "prometheus".into()),
                severity: a
                    .labels
                    .get("severity")
                    .and_then(|w| Severity::from_sender(w)),
                details: json!({
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": a.ends_at,
                }),
                labels: a.labels,
                links,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_support::fixture;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn firing_is_told_from_resolved_by_ends_at() {
        let body = fixture("prometheus/firing.json");
        let raw: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let ends = at(raw[0]["endsAt"].as_str().unwrap());
        let before = parse(&body, ends - chrono::Duration::seconds(1)).unwrap();
        assert_eq!(before[0].action, AlertAction::Trigger);
        let after = parse(&body, ends + chrono::Duration::seconds(1)).unwrap();
        assert_eq!(after[0].action, AlertAction::Resolve);
        assert!(before[0].dedup_key.starts_with("prometheus:"));
    }

    #[test]
    fn resolved_fixture_resolves() {
        let body = fixture("prometheus/resolved.json");
        let raw: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let ends = at(raw[0]["endsAt"].as_str().unwrap());
        let events = parse(&body, ends + chrono::Duration::seconds(1)).unwrap();
        assert!(events.iter().all(|e| e.action == AlertAction::Resolve));
    }

    #[test]
    fn series_of_one_rule_share_an_incident() {
        let body = br#"[{"labels":{"alertname":"Down","instance":"a"}},
                        {"labels":{"alertname":"Down","instance":"b"}}]"#;
        let e = parse(body, at("2026-11-29T10:00:00Z")).unwrap();
        assert_eq!(e[0].dedup_key, e[1].dedup_key);
        assert_ne!(e[0].fingerprint, e[1].fingerprint);
        assert_eq!(e[0].action, AlertAction::Trigger);
    }

    #[test]
    fn refuses_alerts_without_a_name() {
        let e = parse(br#"[{"labels":{"job":"x"}}]"#, at("2026-11-29T10:00:00Z")).unwrap_err();
        assert!(e.to_string().contains("[0].labels.alertname"));
        let e = parse(br#"{"labels":{}}"#, at("2026-11-29T10:00:00Z")).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
    }
}
