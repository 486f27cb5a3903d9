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
    AlertAction, AlertEvent, AlertLink, Checked, Each, IntakeError, MAX_SUMMARY, Parsed, Problems,
    Sink, bounded_key, label_fingerprint, labels, note_unknown, nullable, parse_json_seed,
    time::parse_set_datetime, truncate,
};
use crate::incident::Severity;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One posted alert. Beyond Alertmanager's `postableAlert`, fields are kept
/// and reported, not refused: Grafana's Alertmanager contact point posts Go
/// structs with untagged fields (`UpdatedAt`, `Timeout`). Times are read as
/// any ISO 8601 form; Go's zero time is "unset", as amtool sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    #[serde(default, deserialize_with = "labels")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "labels")]
    annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    starts_at: String,
    #[serde(default, deserialize_with = "nullable")]
    ends_at: String,
    #[serde(default, rename = "generatorURL", deserialize_with = "nullable")]
    generator_url: String,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Parses the alert array, with Alertmanager's semantics: an alert whose
/// `endsAt` is set fires until then (and is resolved when it is not after
/// `now`); one without (absent or Go's zero time) fires for
/// `resolve_timeout`. Either way the event's `expires_at` says when the
/// alert resolves unless it is sent again. The only refusal is
/// Alertmanager's own: an alert without labels (tocsin needs an
/// `alertname`, as every Prometheus alert has).
pub fn parse(
    body: &[u8],
    now: DateTime<Utc>,
    resolve_timeout: chrono::Duration,
) -> Result<Parsed, IntakeError> {
    super::collect(check(body, now, resolve_timeout)?, body)
}

/// Reads the whole array once, checking every alert and keeping none.
pub fn check(
    body: &[u8],
    now: DateTime<Utc>,
    resolve_timeout: chrono::Duration,
) -> Result<Box<dyn Checked>, IntakeError> {
    let mut problems = Problems::default();
    let mut unknown = Vec::new();
    parse_json_seed(
        body,
        Each::new(|i, a: PostableAlert| {
            note_unknown(&mut unknown, &format!("[{i}]"), &a.extra);
            if a.labels.get("alertname").is_none_or(|n| n.is_empty()) {
                problems.push(format!("'[{i}].labels.alertname' is missing or empty"));
            }
            Ok(())
        }),
    )?;
    problems.into_result()?;
    Ok(Box::new(Push {
        now,
        resolve_timeout,
        unknown,
    }))
}

/// A checked push: its events come from a second read of the body.
struct Push {
    now: DateTime<Utc>,
    resolve_timeout: chrono::Duration,
    unknown: Vec<String>,
}

impl Checked for Push {
    fn unknown_fields(&self) -> &[String] {
        &self.unknown
    }

    fn stream(self: Box<Self>, body: &[u8], sink: &mut Sink<'_>) -> Result<(), IntakeError> {
        parse_json_seed(body, Each::new(|_, a: PostableAlert| sink(self.event(a))))?;
        Ok(())
    }
}

impl Push {
    fn event(&self, a: PostableAlert) -> AlertEvent {
        let now = self.now;
        let name = a.labels["alertname"].clone();
        let starts_at = parse_set_datetime(&a.starts_at);
        let ends_at = parse_set_datetime(&a.ends_at);
        let firing = ends_at.is_none_or(|end| end > now);
        let expires_at = firing.then(|| ends_at.unwrap_or(now + self.resolve_timeout));
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
        let mut details = json!({
            "annotations": a.annotations,
            "startsAt": starts_at,
            "endsAt": ends_at,
        });
        if !a.extra.is_empty() {
            details["unknown_fields"] = json!(a.extra);
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
            details,
            labels: a.labels,
            links,
            left_out: None,
            expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_support::fixture;

    fn timeout() -> chrono::Duration {
        chrono::Duration::minutes(5)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn firing_is_told_from_resolved_by_ends_at() {
        let body = fixture("prometheus/firing.json");
        let raw: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let ends = at(raw[0]["endsAt"].as_str().unwrap());
        let before = parse(&body, ends - chrono::Duration::seconds(1), timeout())
            .unwrap()
            .events;
        assert_eq!(before[0].action, AlertAction::Trigger);
        let after = parse(&body, ends + chrono::Duration::seconds(1), timeout())
            .unwrap()
            .events;
        assert_eq!(after[0].action, AlertAction::Resolve);
        assert!(before[0].dedup_key.starts_with("prometheus:"));
    }

    #[test]
    fn resolved_fixture_resolves() {
        let body = fixture("prometheus/resolved.json");
        let raw: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let ends = at(raw[0]["endsAt"].as_str().unwrap());
        let events = parse(&body, ends + chrono::Duration::seconds(1), timeout())
            .unwrap()
            .events;
        assert!(events.iter().all(|e| e.action == AlertAction::Resolve));
    }

    #[test]
    fn series_of_one_rule_share_an_incident() {
        let body = br#"[{"labels":{"alertname":"Down","instance":"a"}},
                        {"labels":{"alertname":"Down","instance":"b"}}]"#;
        let e = parse(body, at("2026-11-29T10:00:00Z"), timeout())
            .unwrap()
            .events;
        assert_eq!(e[0].dedup_key, e[1].dedup_key);
        assert_ne!(e[0].fingerprint, e[1].fingerprint);
        assert_eq!(e[0].action, AlertAction::Trigger);
    }

    #[test]
    fn refuses_alerts_without_a_name() {
        let e = parse(
            br#"[{"labels":{"job":"x"}}]"#,
            at("2026-11-29T10:00:00Z"),
            timeout(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[0].labels.alertname"));
        let e = parse(br#"{"labels":{}}"#, at("2026-11-29T10:00:00Z"), timeout()).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
    }

    #[test]
    fn amtools_zero_times_fire_and_go_fields_are_kept() {
        // amtool 0.25 `alert add`: Go's zero time for both ends.
        let body = br#"[{"labels":{"alertname":"Test","severity":"critical"},"annotations":{},
            "startsAt":"0001-01-01T00:00:00.000Z","endsAt":"0001-01-01T00:00:00.000Z","generatorURL":""}]"#;
        let p = parse(body, at("2026-12-01T10:00:00Z"), timeout()).unwrap();
        assert_eq!(p.events[0].action, AlertAction::Trigger);
        assert_eq!(p.events[0].details["endsAt"], Value::Null);
        // Firing for resolve_timeout, unless sent again.
        assert_eq!(p.events[0].expires_at, Some(at("2026-12-01T10:05:00Z")));
        // Grafana's Alertmanager contact point: untagged Go fields.
        let body = br#"[{"labels":{"alertname":"G"},"annotations":null,"startsAt":"2026-12-01T09:59:00+00:00",
            "endsAt":"2026-12-01T10:04:00.123456789+00:00","generatorURL":"http://g",
            "UpdatedAt":"2026-12-01T09:59:00Z","Timeout":false}]"#;
        let p = parse(body, at("2026-12-01T10:00:00Z"), timeout()).unwrap();
        assert_eq!(p.events[0].action, AlertAction::Trigger);
        assert_eq!(p.unknown_fields, ["[0].Timeout", "[0].UpdatedAt"]);
        assert_eq!(p.events[0].details["unknown_fields"]["Timeout"], false);
        // Its own endsAt says until when it fires.
        assert_eq!(
            p.events[0].expires_at,
            Some(at("2026-12-01T10:04:00.123456789Z"))
        );
        let later = parse(body, at("2026-12-01T10:05:00Z"), timeout()).unwrap();
        assert_eq!(later.events[0].action, AlertAction::Resolve);
    }
}
