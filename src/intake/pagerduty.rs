//! PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! Alertmanager's `pagerduty_configs`, Grafana's PagerDuty contact point and
//! PagerDuty client libraries point here by changing only the URL. Example
//! trigger (as Alertmanager 0.25 sends it, see
//! `tests/fixtures/pagerduty/alertmanager-trigger.json`):
//!
//! ```json
//! {"routing_key":"...","dedup_key":"6c3c...","event_action":"trigger",
//!  "payload":{"summary":"[FIRING:2] HighErrorRate api","source":"Alertmanager",
//!             "severity":"critical","custom_details":{"firing":"..."}},
//!  "client":"Alertmanager","client_url":"http://...","links":[...]}
//! ```

use super::{
    AlertAction, AlertEvent, AlertLink, IntakeError, MAX_DEDUP_KEY, MAX_SUMMARY,
    generate_dedup_key, parse_json,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    routing_key: Option<String>,
    event_action: Option<String>,
    dedup_key: Option<String>,
    payload: Option<Payload>,
    #[serde(default)]
    images: Vec<Image>,
    #[serde(default)]
    links: Vec<Link>,
    client: Option<String>,
    client_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    summary: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    timestamp: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    custom_details: Option<Value>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Image {
    src: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    href: String,
    #[serde(default)]
    text: Option<String>,
}

/// A parsed Events v2 request: the routing key and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueRequest {
    /// The integration key the sender used.
    pub routing_key: String,
    /// The normalised event.
    pub event: AlertEvent,
}

/// Parses one Events v2 body. Every invalid field is reported.
pub fn parse(body: &[u8]) -> Result<EnqueueRequest, IntakeError> {
    let env: Envelope = parse_json(body)?;
    let mut errors = Vec::new();
    let routing_key = match env.routing_key {
        Some(k) if !k.trim().is_empty() => k,
        _ => {
            errors.push("'routing_key' is missing or empty".to_string());
            String::new()
        }
    };
    let action = match env.event_action.as_deref() {
        Some("trigger") => Some(AlertAction::Trigger),
        Some("acknowledge") => Some(AlertAction::Acknowledge),
        Some("resolve") => Some(AlertAction::Resolve),
        Some(other) => {
            errors.push(format!(
                "'event_action' must be trigger, acknowledge or resolve, not '{other}'"
            ));
            None
        }
        None => {
            errors.push("'event_action' is missing".to_string());
            None
        }
    };
    if let Some(k) = &env.dedup_key
        && k.chars().count() > MAX_DEDUP_KEY
    {
        errors.push(format!(
            "'dedup_key' is longer than {MAX_DEDUP_KEY} characters"
        ));
    }
    let mut summary = String::new();
    let mut source = String::new();
    let mut severity = None;
    let mut details = Map::new();
    match (&env.payload, action) {
        (Some(p), _) => {
            match p.summary.as_deref() {
                Some(s) if !s.trim().is_empty() => {
                    if s.chars().count() > MAX_SUMMARY {
                        errors.push(format!(
                            "'payload.summary' is longer than {MAX_SUMMARY} characters"
                        ));
                    }
                    summary = s.to_string();
                }
                _ if action == Some(AlertAction::Trigger) => {
                    errors.push("'payload.summary' is missing or empty".to_string())
                }
                _ => {}
            }
            match p.source.as_deref() {
                Some(s) if !s.trim().is_empty() => source = s.to_string(),
                _ if action == Some(AlertAction::Trigger) => {
                    errors.push("'payload.source' is missing or empty".to_string())
                }
                _ => {}
            }
            match p.severity.as_deref() {
                Some(w @ ("critical" | "error" | "warning" | "info")) => {
                    severity = Severity::from_sender(w)
                }
                Some(other) => errors.push(format!(
                    "'payload.severity' must be critical, error, warning or info, not '{other}'"
                )),
                None if action == Some(AlertAction::Trigger) => {
                    errors.push("'payload.severity' is missing".to_string())
                }
                None => {}
            }
            if let Some(ts) = &p.timestamp {
                if chrono::DateTime::parse_from_rfc3339(ts).is_err() {
                    errors.push(format!(
                        "'payload.timestamp' is not an ISO 8601 date-time: '{ts}'"
                    ));
                } else {
                    details.insert("timestamp".into(), json!(ts));
                }
            }
            for (name, v) in [
                ("component", &p.component),
                ("group", &p.group),
                ("class", &p.class),
            ] {
                if let Some(v) = v {
                    details.insert(name.into(), json!(v));
                }
            }
            if let Some(cd) = &p.custom_details {
                details.insert("custom_details".into(), cd.clone());
            }
        }
        (None, Some(AlertAction::Trigger)) => {
            errors.push("'payload' is required for a trigger".to_string())
        }
        (None, _) => {}
    }
    let dedup_key = match (env.dedup_key, action) {
        (Some(k), _) if !k.is_empty() => k,
        (_, Some(AlertAction::Trigger)) => generate_dedup_key(),
        (_, Some(_)) => {
            errors.push("'dedup_key' is required to acknowledge or resolve".to_string());
            String::new()
        }
        (_, None) => String::new(),
    };
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    if let Some(c) = env.client {
        details.insert("client".into(), json!(c));
    }
    if let Some(c) = &env.client_url {
        details.insert("client_url".into(), json!(c));
    }
    if !env.images.is_empty() {
        details.insert("images".into(), json!(env.images));
    }
    let links = env
        .links
        .into_iter()
        .map(|l| AlertLink {
            href: l.href,
            text: l.text.unwrap_or_default(),
        })
        .collect();
    Ok(EnqueueRequest {
        routing_key,
        event: AlertEvent {
            fingerprint: Some(dedup_key.clone()),
            dedup_key,
            action: action.expect("checked above"),
            summary,
            incident_title: None,
            source,
            severity,
            labels: Default::default(),
            details: Value::Object(details),
            links,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_support::fixture;

    #[test]
    fn parses_alertmanager_trigger_and_resolve() {
        let t = parse(&fixture("pagerduty/alertmanager-trigger.json")).unwrap();
        assert_eq!(t.routing_key, "pd-routing-key");
        assert_eq!(t.event.action, AlertAction::Trigger);
        assert_eq!(t.event.severity, Some(Severity::Sev1));
        assert!(
            t.event.summary.contains("HighErrorRate"),
            "{}",
            t.event.summary
        );
        let r = parse(&fixture("pagerduty/alertmanager-resolve.json")).unwrap();
        assert_eq!(r.event.action, AlertAction::Resolve);
        assert_eq!(r.event.dedup_key, t.event.dedup_key);
    }

    #[test]
    fn parses_pdpyras_lifecycle() {
        let t = parse(&fixture("pagerduty/pdpyras-trigger.json")).unwrap();
        assert_eq!(t.event.dedup_key, "pdpyras-1");
        assert_eq!(t.event.severity, Some(Severity::Sev2));
        let a = parse(&fixture("pagerduty/pdpyras-acknowledge.json")).unwrap();
        assert_eq!(a.event.action, AlertAction::Acknowledge);
        let r = parse(&fixture("pagerduty/pdpyras-resolve.json")).unwrap();
        assert_eq!(r.event.action, AlertAction::Resolve);
        assert_eq!(r.event.dedup_key, "pdpyras-1");
    }

    #[test]
    fn generates_a_dedup_key_for_triggers_without_one() {
        let body = br#"{"routing_key":"k","event_action":"trigger",
            "payload":{"summary":"disk full","source":"db1","severity":"warning"}}"#;
        let e = parse(body).unwrap().event;
        assert_eq!(e.dedup_key.len(), 32);
        assert_eq!(e.severity, Some(Severity::Sev3));
    }

    #[test]
    fn names_every_bad_field() {
        let body = br#"{"routing_key":"k","event_action":"trigger",
            "payload":{"summary":"","severity":"purple"}}"#;
        let IntakeError::Invalid(errs) = parse(body).unwrap_err() else {
            panic!()
        };
        let all = errs.join("\n");
        assert!(all.contains("payload.summary"), "{all}");
        assert!(all.contains("payload.source"), "{all}");
        assert!(all.contains("payload.severity"), "{all}");
    }

    #[test]
    fn rejects_unknown_keys_wrong_types_and_bad_json() {
        let unknown = parse(br#"{"routing_key":"k","event_action":"trigger","colour":1}"#);
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let wrong = parse(br#"{"routing_key":5}"#).unwrap_err().to_string();
        assert!(wrong.contains("routing_key"), "{wrong}");
        let bad = parse(b"{not json").unwrap_err().to_string();
        assert!(bad.starts_with("malformed JSON"), "{bad}");
    }

    #[test]
    fn resolve_needs_a_dedup_key() {
        let e = parse(br#"{"routing_key":"k","event_action":"resolve"}"#).unwrap_err();
        assert!(e.to_string().contains("dedup_key"));
    }
}
