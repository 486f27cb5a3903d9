//! Alertmanager webhook, version 4 (`POST /hooks/{key}`), which Grafana's
//! unified alerting webhook extends.
//!
//! One notification is one group: the incident's dedup key is `groupKey`,
//! each alert in it is keyed by `fingerprint`. A firing alert carries
//! `endsAt: "0001-01-01T00:00:00Z"`; `status` says firing or resolved.
//! Example (Alertmanager 0.25, `tests/fixtures/alertmanager/firing.json`):
//!
//! ```json
//! {"receiver":"tocsin","status":"firing","alerts":[{"status":"firing",
//!   "labels":{"alertname":"HighErrorRate","instance":"api-1","service":"api",
//!   "severity":"critical"},"annotations":{"summary":"..."},
//!   "startsAt":"...","endsAt":"0001-01-01T00:00:00Z","generatorURL":"...",
//!   "fingerprint":"..."}],"groupLabels":{...},"commonLabels":{...},
//!   "commonAnnotations":{...},"externalURL":"...","version":"4",
//!   "groupKey":"{}:{alertname=\"HighErrorRate\", service=\"api\"}",
//!   "truncatedAlerts":0}
//! ```

use super::{
    AlertAction, AlertEvent, AlertLink, Checked, Each, IntakeError, MAX_SUMMARY, Parsed, Problems,
    Sink, bounded_key, label_fingerprint, labels, note_unknown, nullable, parse_json,
    parse_json_seed, truncate,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A webhook notification. Unknown fields are tolerated (and reported) on
/// purpose: Alertmanager and Grafana add fields between versions, and
/// refusing a notification would drop a page. `null` stands for absent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    pub version: Option<String>,
    pub group_key: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub receiver: String,
    #[serde(default, deserialize_with = "labels")]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "labels")]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "labels")]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL", deserialize_with = "nullable")]
    pub external_url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub truncated_alerts: u64,
    /// Read through and checked, not kept: the events come from a second
    /// read ([`Group::stream`]).
    pub alerts: Option<AlertsCheck>,
    /// Grafana only.
    pub title: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One alert in a notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alert {
    pub status: Option<String>,
    #[serde(default, deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "labels")]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL", deserialize_with = "nullable")]
    pub generator_url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub fingerprint: String,
    /// Grafana only.
    #[serde(default, rename = "dashboardURL", deserialize_with = "nullable")]
    pub dashboard_url: String,
    /// Grafana only.
    #[serde(default, rename = "panelURL", deserialize_with = "nullable")]
    pub panel_url: String,
    /// Grafana only.
    #[serde(default, rename = "silenceURL", deserialize_with = "nullable")]
    pub silence_url: String,
    /// Grafana only.
    #[serde(default, deserialize_with = "nullable")]
    pub value_string: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Per-alert fields Grafana adds that tocsin keeps in the details without
/// reading them (so they are not reported as unknown).
const KNOWN_ALERT_EXTRAS: &[&str] = &["values", "imageURL", "orgId"];

/// Parses an Alertmanager webhook. Alertmanager sends version 4; a body
/// without a version, or with another one, is read the same way (and the
/// version kept), since its shape has not changed since version 4.
pub fn parse(body: &[u8]) -> Result<Parsed, IntakeError> {
    super::collect(check(body, &[], None)?, body)
}

/// How long a held resolve waits for a contradiction: from `now`, for
/// `after` (see [`Checked`] for groups, and `held_resolve_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// When the notification arrived.
    pub now: chrono::DateTime<chrono::Utc>,
    /// How long the resolve is held.
    pub after: chrono::Duration,
}

/// Reads a group notification (Alertmanager, or Grafana unified with its
/// own top-level fields `known`) once, checking it and every alert in it,
/// keeping only the group's fields.
pub fn check(
    body: &[u8],
    known: &[&str],
    hold: Option<Hold>,
) -> Result<Box<dyn Checked>, IntakeError> {
    let mut n: Notification = parse_json(body)?;
    n.extra.retain(|k, _| !known.contains(&k.as_str()));
    let mut problems = Problems::default();
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &n.extra);
    let group_key = match n.group_key.as_deref() {
        Some(k) if !k.is_empty() => bounded_key(k),
        _ => {
            problems.push("'groupKey' is missing or empty".to_string());
            String::new()
        }
    };
    let Some(alerts) = n.alerts.take() else {
        problems.push("'alerts' is missing".to_string());
        problems.into_result()?;
        unreachable!("a problem was pushed");
    };
    for p in alerts.problems {
        problems.push(p);
    }
    for u in alerts.unknown {
        if unknown.len() < super::MAX_REPORTED_UNKNOWN && !unknown.contains(&u) {
            unknown.push(u);
        }
    }
    let group_resolved = match n.status.as_deref() {
        Some("firing") => false,
        Some("resolved") => true,
        // Not said: resolved when every listed alert is.
        None => alerts.count > 0 && alerts.firing == 0,
        Some(other) => {
            problems.push(format!(
                "'status' must be firing or resolved, not '{other}'"
            ));
            false
        }
    };
    problems.into_result()?;
    let group_title = n
        .common_annotations
        .get("summary")
        .cloned()
        .or_else(|| n.title.clone().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| {
            default_title(
                &n.group_labels,
                &n.common_labels,
                alerts.first_labels.as_ref(),
                alerts.count,
            )
        });
    Ok(Box::new(Group {
        group_key,
        title: truncate(&group_title, MAX_SUMMARY),
        group_resolved,
        hold,
        n,
        unknown,
    }))
}

/// What [`check`] learns of the `alerts` array on its read through it.
#[derive(Debug, Default)]
pub(crate) struct AlertsCheck {
    count: usize,
    firing: usize,
    first_labels: Option<BTreeMap<String, String>>,
    problems: Vec<String>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for AlertsCheck {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed;
        let mut out = AlertsCheck::default();
        let mut problems = Problems::default();
        let mut unknown = Vec::new();
        out.count = Each::new(|i, a: Alert| {
            let extra: BTreeMap<String, Value> = a
                .extra
                .iter()
                .filter(|(k, _)| !KNOWN_ALERT_EXTRAS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            note_unknown(&mut unknown, &format!("alerts[{i}]"), &extra);
            match alert_firing(&a) {
                Some(true) => out.firing += 1,
                Some(false) => {}
                None => problems.push(format!(
                    "'alerts[{i}].status' must be firing or resolved, not '{}'",
                    a.status.as_deref().unwrap_or_default()
                )),
            }
            if i == 0 {
                out.first_labels = Some(a.labels);
            }
            Ok(())
        })
        .deserialize(d)?;
        out.problems = match problems.into_result() {
            Ok(()) => Vec::new(),
            Err(e) => e.messages(),
        };
        out.unknown = unknown;
        Ok(out)
    }
}

/// A checked group notification: its alerts' events come from a second
/// read of the body, then the group's resolve if it resolved.
///
/// With `truncatedAlerts > 0` (`max_alerts`), Alertmanager computes the
/// group's `status` from the alerts it kept, so "resolved" may hide a
/// left-out alert that still fires. Then the listed alerts resolve one by
/// one and the incident stays open while the latest notification left
/// alerts out (each event carries `left_out`), for the `hold` at most:
/// Alertmanager re-sends a group that still fires at least every
/// `repeat_interval`, so a resolve nothing contradicts by then stands.
struct Group {
    group_key: String,
    title: String,
    group_resolved: bool,
    hold: Option<Hold>,
    n: Notification,
    unknown: Vec<String>,
}

impl Checked for Group {
    fn unknown_fields(&self) -> &[String] {
        &self.unknown
    }

    fn stream(self: Box<Self>, body: &[u8], sink: &mut Sink<'_>) -> Result<(), IntakeError> {
        parse_json_seed(
            body,
            OnlyAlerts(Each::new(|_, a: Alert| sink(self.event(a)))),
        )?;
        if self.group_resolved {
            let n = &self.n;
            let mut details = json!({ "truncatedAlerts": n.truncated_alerts });
            if let Some(v) = &n.version {
                details["version"] = json!(v);
            }
            if !n.extra.is_empty() {
                details["unknown_fields"] = json!(n.extra);
            }
            sink(AlertEvent {
                dedup_key: self.group_key.clone(),
                fingerprint: None,
                action: AlertAction::Resolve,
                summary: self.title.clone(),
                incident_title: None,
                source: "alertmanager".into(),
                severity: None,
                labels: n.common_labels.clone(),
                details,
                links: Vec::new(),
                left_out: Some(n.truncated_alerts),
                // For a held resolve: when it stands uncontradicted.
                expires_at: self
                    .hold
                    .filter(|_| n.truncated_alerts > 0)
                    .map(|h| h.now + h.after),
            })
            .map_err(IntakeError::Malformed)?;
        }
        Ok(())
    }
}

/// Reads a notification's `alerts` with the seed inside, skipping the rest.
struct OnlyAlerts<S>(S);

impl<'de, S: serde::de::DeserializeSeed<'de, Value = usize>> serde::de::DeserializeSeed<'de>
    for OnlyAlerts<S>
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: serde::de::DeserializeSeed<'de, Value = usize>> serde::de::Visitor<'de>
    for OnlyAlerts<S>
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a notification object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seed = Some(self.0);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match (key.as_ref(), seed.take()) {
                ("alerts", Some(s)) => {
                    map.next_value_seed(s)?;
                }
                (_, s) => {
                    seed = s;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl Group {
    fn event(&self, a: Alert) -> AlertEvent {
        let n = &self.n;
        let is_firing = alert_firing(&a).unwrap_or(true);
        let fingerprint = if a.fingerprint.is_empty() {
            label_fingerprint(&a.labels)
        } else {
            a.fingerprint
        };
        let summary = a
            .annotations
            .get("summary")
            .or_else(|| a.labels.get("alertname"))
            .map(|s| truncate(s, MAX_SUMMARY))
            .unwrap_or_else(|| self.title.clone());
        let severity = a
            .labels
            .get("severity")
            .or_else(|| n.common_labels.get("severity"))
            .and_then(|w| Severity::from_sender(w));
        let mut links = Vec::new();
        for (href, text) in [
            (a.generator_url, "Source"),
            (a.dashboard_url, "Dashboard"),
            (a.panel_url, "Panel"),
            (a.silence_url, "Silence"),
        ] {
            if !href.is_empty() {
                links.push(AlertLink {
                    href,
                    text: text.into(),
                });
            }
        }
        if let Some(url) = a.annotations.get("runbook_url") {
            links.push(AlertLink {
                href: url.clone(),
                text: "Runbook".into(),
            });
        }
        let source = a
            .labels
            .get("instance")
            .or_else(|| a.labels.get("job"))
            .cloned()
            .unwrap_or_else(|| "alertmanager".into());
        let mut details = Map::new();
        details.insert("annotations".into(), json!(a.annotations));
        if let Some(s) = a.starts_at {
            details.insert("startsAt".into(), json!(s));
        }
        if let Some(s) = a.ends_at {
            details.insert("endsAt".into(), json!(s));
        }
        if !a.value_string.is_empty() {
            details.insert("valueString".into(), json!(a.value_string));
        }
        if !n.receiver.is_empty() {
            details.insert("receiver".into(), json!(n.receiver));
        }
        if !n.external_url.is_empty() {
            details.insert("externalURL".into(), json!(n.external_url));
        }
        for (k, v) in a.extra {
            if KNOWN_ALERT_EXTRAS.contains(&k.as_str()) {
                details.insert(k, v);
            } else {
                details
                    .entry("unknown_fields")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("an object")
                    .insert(k, v);
            }
        }
        AlertEvent {
            dedup_key: self.group_key.clone(),
            fingerprint: Some(fingerprint),
            action: if is_firing {
                AlertAction::Trigger
            } else {
                AlertAction::Resolve
            },
            summary,
            incident_title: Some(self.title.clone()),
            source,
            severity,
            labels: a.labels,
            details: Value::Object(details),
            links,
            left_out: Some(n.truncated_alerts),
            expires_at: None,
        }
    }
}

/// Whether an alert fires: its `status`, or when it has none, its `endsAt`
/// (unset, Go's zero time or unreadable: firing). `None` for a status that
/// is neither.
fn alert_firing(a: &Alert) -> Option<bool> {
    match a.status.as_deref() {
        Some("firing") => Some(true),
        Some("resolved") => Some(false),
        Some(_) => None,
        None => Some(
            a.ends_at
                .as_deref()
                .and_then(super::time::parse_set_datetime)
                .is_none(),
        ),
    }
}

fn default_title(
    group: &BTreeMap<String, String>,
    common: &BTreeMap<String, String>,
    first_alert: Option<&BTreeMap<String, String>>,
    count: usize,
) -> String {
    let empty = BTreeMap::new();
    let labels = [Some(group), Some(common), first_alert]
        .into_iter()
        .flatten()
        .find(|l| !l.is_empty())
        .unwrap_or(&empty);
    let name = labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| "Alert group".into());
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut title = name;
    if !rest.is_empty() {
        title.push_str(&format!(" ({})", rest.join(", ")));
    }
    if count > 1 {
        title.push_str(&format!(" [{count} alerts]"));
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_support::fixture;

    #[test]
    fn firing_group_gives_one_trigger_per_alert() {
        let events = parse(&fixture("alertmanager/firing.json")).unwrap().events;
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.action == AlertAction::Trigger));
        assert_eq!(events[0].dedup_key, events[1].dedup_key);
        assert_ne!(events[0].fingerprint, events[1].fingerprint);
        assert_eq!(events[0].severity, Some(Severity::Sev1));
        assert_eq!(events[0].labels["alertname"], "HighErrorRate");
        assert!(events[0].links.iter().any(|l| l.text == "Source"));
    }

    #[test]
    fn resolved_group_resolves_each_alert_and_the_incident() {
        let firing = parse(&fixture("alertmanager/firing.json")).unwrap().events;
        let events = parse(&fixture("alertmanager/resolved.json"))
            .unwrap()
            .events;
        let last = events.last().unwrap();
        assert_eq!(last.action, AlertAction::Resolve);
        assert_eq!(last.fingerprint, None);
        assert_eq!(last.dedup_key, firing[0].dedup_key);
        assert!(
            events[..events.len() - 1]
                .iter()
                .all(|e| e.action == AlertAction::Resolve && e.fingerprint.is_some())
        );
    }

    #[test]
    fn reads_other_versions_and_refuses_bad_statuses() {
        let ok = parse(br#"{"version":"5","groupKey":"g","status":"firing","alerts":[]}"#);
        assert!(ok.unwrap().events.is_empty());
        let e = parse(
            br#"{"version":"4","groupKey":"g","status":"burning","alerts":[{"status":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'status'") && e.contains("alerts[0].status"),
            "{e}"
        );
    }

    #[test]
    fn nulls_and_unknown_fields_are_accepted_and_reported() {
        let p = parse(
            br#"{"version":"4","groupKey":"g","status":"firing","receiver":null,"groupLabels":null,
                "commonLabels":{"severity":"critical","n":3,"gone":null},"commonAnnotations":null,"externalURL":null,
                "truncatedAlerts":null,"groupId":"x",
                "alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":null,
                           "startsAt":"0001-01-01T00:00:00.000Z","endsAt":null,"generatorURL":null,
                           "fingerprint":null,"UpdatedAt":"2026-12-01T10:00:00Z"}]}"#,
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].severity, Some(Severity::Sev1));
        assert_eq!(p.unknown_fields, ["groupId", "alerts[0].UpdatedAt"]);
        assert_eq!(
            p.events[0].details["unknown_fields"]["UpdatedAt"],
            "2026-12-01T10:00:00Z"
        );
    }

    #[test]
    fn a_truncated_resolved_notification_resolves_only_what_it_lists() {
        let body = br#"{"version":"4","groupKey":"g","status":"resolved","truncatedAlerts":3,
            "alerts":[{"status":"resolved","labels":{"alertname":"A","i":"1"},"fingerprint":"f1"}]}"#;
        let events = parse(body).unwrap().events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].fingerprint.as_deref(), Some("f1"));
        assert_eq!(events[0].action, AlertAction::Resolve);
        assert!(events.iter().all(|e| e.left_out == Some(3)));
    }

    #[test]
    fn long_group_keys_are_hashed() {
        let long = "x".repeat(400);
        let body = format!(
            r#"{{"version":"4","groupKey":"{long}","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A"}}}}]}}"#
        );
        let events = parse(body.as_bytes()).unwrap().events;
        assert!(events[0].dedup_key.starts_with("sha256:"));
        assert_eq!(events[0].incident_title.as_deref(), Some("A"));
    }
}
