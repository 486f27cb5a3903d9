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
    AlertAction, AlertEvent, AlertLink, IntakeError, MAX_SUMMARY, bounded_key, label_fingerprint,
    parse_json, truncate,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A webhook notification. Unknown fields are tolerated here on purpose:
/// Alertmanager and Grafana add fields between versions, and refusing a
/// notification would drop a page. The whole body is kept with the event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    pub version: Option<String>,
    pub group_key: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub alerts: Option<Vec<Alert>>,
    /// Grafana only.
    pub title: Option<String>,
    /// Grafana only: `alerting` or `ok`.
    pub state: Option<String>,
}

/// One alert in a notification.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
    /// Grafana only.
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: String,
    /// Grafana only.
    #[serde(default, rename = "panelURL")]
    pub panel_url: String,
    /// Grafana only.
    #[serde(default, rename = "silenceURL")]
    pub silence_url: String,
    /// Grafana only.
    #[serde(default)]
    pub value_string: String,
}

/// Parses an Alertmanager webhook (version 4).
pub fn parse(body: &[u8]) -> Result<Vec<AlertEvent>, IntakeError> {
    let n: Notification = parse_json(body)?;
    match n.version.as_deref() {
        Some("4") => {}
        Some(v) => {
            return Err(IntakeError::Invalid(vec![format!(
                "'version' is '{v}'; tocsin understands Alertmanager webhook version 4"
            )]));
        }
        None => {
            return Err(IntakeError::Invalid(vec![
                "'version' is missing; this does not look like an Alertmanager webhook".into(),
            ]));
        }
    }
    events_from_group(n)
}

/// Turns a group notification (Alertmanager or Grafana unified) into events:
/// one per alert, then a whole-incident resolve if the group resolved.
pub(crate) fn events_from_group(n: Notification) -> Result<Vec<AlertEvent>, IntakeError> {
    let mut errors = Vec::new();
    let group_key = match n.group_key.as_deref() {
        Some(k) if !k.is_empty() => bounded_key(k),
        _ => {
            errors.push("'groupKey' is missing or empty".to_string());
            String::new()
        }
    };
    let group_resolved = match n.status.as_deref() {
        Some("firing") => false,
        Some("resolved") => true,
        Some(other) => {
            errors.push(format!(
                "'status' must be firing or resolved, not '{other}'"
            ));
            false
        }
        None => {
            errors.push("'status' is missing".to_string());
            false
        }
    };
    let Some(alerts) = n.alerts else {
        errors.push("'alerts' is missing".to_string());
        return Err(IntakeError::Invalid(errors));
    };
    for (i, a) in alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            errors.push(format!(
                "'alerts[{i}].status' must be firing or resolved, not '{}'",
                a.status
            ));
        }
    }
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    let group_title = n
        .common_annotations
        .get("summary")
        .cloned()
        .or_else(|| n.title.clone().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| {
            let first = alerts.first().map(|a| &a.labels);
            default_title(&n.group_labels, &n.common_labels, first, alerts.len())
        });
    let mut events = Vec::with_capacity(alerts.len() + 1);
    for a in &alerts {
        let fingerprint = if a.fingerprint.is_empty() {
            label_fingerprint(&a.labels)
        } else {
            a.fingerprint.clone()
        };
        let summary = a
            .annotations
            .get("summary")
            .cloned()
            .or_else(|| a.labels.get("alertname").cloned())
            .unwrap_or_else(|| group_title.clone());
        let severity = a
            .labels
            .get("severity")
            .or_else(|| n.common_labels.get("severity"))
            .and_then(|w| Severity::from_sender(w));
        let mut details = Map::new();
        details.insert("annotations".into(), json!(a.annotations));
        if let Some(s) = &a.starts_at {
            details.insert("startsAt".into(), json!(s));
        }
        if let Some(s) = &a.ends_at {
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
        let mut links = Vec::new();
        for (href, text) in [
            (&a.generator_url, "Source"),
            (&a.dashboard_url, "Dashboard"),
            (&a.panel_url, "Panel"),
            (&a.silence_url, "Silence"),
        ] {
            if !href.is_empty() {
                links.push(AlertLink {
                    href: href.clone(),
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
        events.push(AlertEvent {
            dedup_key: group_key.clone(),
            fingerprint: Some(fingerprint),
            action: if a.status == "firing" {
                AlertAction::Trigger
            } else {
                AlertAction::Resolve
            },
            summary: truncate(&summary, MAX_SUMMARY),
            incident_title: Some(truncate(&group_title, MAX_SUMMARY)),
            source: a
                .labels
                .get("instance")
                .or_else(|| a.labels.get("job"))
                .cloned()
                .unwrap_or_else(|| "alertmanager".into()),
            severity,
            labels: a.labels.clone(),
            details: Value::Object(details),
            links,
        });
    }
    if group_resolved {
        events.push(AlertEvent {
            dedup_key: group_key,
            fingerprint: None,
            action: AlertAction::Resolve,
            summary: truncate(&group_title, MAX_SUMMARY),
            incident_title: None,
            source: "alertmanager".into(),
            severity: None,
            labels: n.common_labels,
            details: json!({ "truncatedAlerts": n.truncated_alerts }),
            links: Vec::new(),
        });
    }
    Ok(events)
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
        let events = parse(&fixture("alertmanager/firing.json")).unwrap();
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
        let firing = parse(&fixture("alertmanager/firing.json")).unwrap();
        let events = parse(&fixture("alertmanager/resolved.json")).unwrap();
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
    fn refuses_other_versions_and_bad_statuses() {
        let e = parse(br#"{"version":"3","groupKey":"g","status":"firing","alerts":[]}"#);
        assert!(e.unwrap_err().to_string().contains("version 4"));
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
    fn long_group_keys_are_hashed() {
        let long = "x".repeat(400);
        let body = format!(
            r#"{{"version":"4","groupKey":"{long}","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A"}}}}]}}"#
        );
        let events = parse(body.as_bytes()).unwrap();
        assert!(events[0].dedup_key.starts_with("sha256:"));
        assert_eq!(events[0].incident_title.as_deref(), Some("A"));
    }
}
