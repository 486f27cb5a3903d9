//! tocsin's generic JSON format (`POST /hooks/{key}`), for scripts and
//! anything without a native integration.
//!
//! ```json
//! {
//!   "summary": "Disk 95% full on db-1",     // required to trigger, <= 1024 chars
//!   "severity": "critical",                 // critical|error|warning|info|sev1..sev4, default warning
//!   "dedup_key": "db-1-disk",               // optional; generated and returned if absent
//!   "status": "trigger",                    // trigger (default) | acknowledge | resolve
//!   "source": "db-1",                       // optional
//!   "details": {"used": "95%"},             // optional, any JSON
//!   "links": [{"href": "https://...", "text": "Dashboard"}],
//!   "labels": {"team": "storage"}           // optional, string to string
//! }
//! ```
//!
//! Unknown keys are accepted, kept in the details under `unknown_fields`,
//! and named in the answer's `warnings`: a typo shows, and a script that
//! sends one more field than tocsin knows still pages. `null` is "absent".

use super::{
    AlertAction, AlertEvent, AlertLink, IntakeError, MAX_DEDUP_KEY, MAX_SUMMARY, Parsed,
    generate_dedup_key, labels, note_unknown, nullable, parse_json,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct GenericEvent {
    summary: Option<String>,
    severity: Option<String>,
    dedup_key: Option<String>,
    #[serde(default)]
    status: Option<String>,
    source: Option<String>,
    #[serde(default)]
    details: Value,
    #[serde(default, deserialize_with = "nullable")]
    links: Vec<AlertLink>,
    #[serde(default, deserialize_with = "labels")]
    labels: BTreeMap<String, String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Parses and checks one generic event.
pub fn check(body: &[u8]) -> Result<Box<dyn super::Checked>, IntakeError> {
    Ok(Box::new(parse(body)?))
}

/// Parses one generic event.
pub fn parse(body: &[u8]) -> Result<Parsed, IntakeError> {
    let g: GenericEvent = parse_json(body)?;
    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &g.extra);
    let action = match g.status.as_deref().unwrap_or("trigger") {
        "trigger" | "firing" => AlertAction::Trigger,
        "acknowledge" => AlertAction::Acknowledge,
        "resolve" | "resolved" => AlertAction::Resolve,
        other => {
            errors.push(format!(
                "'status' must be trigger, acknowledge or resolve, not '{other}'"
            ));
            AlertAction::Trigger
        }
    };
    let summary = g.summary.unwrap_or_default();
    if action == AlertAction::Trigger && summary.trim().is_empty() {
        errors.push("'summary' is missing or empty".into());
    }
    if summary.chars().count() > MAX_SUMMARY {
        errors.push(format!("'summary' is longer than {MAX_SUMMARY} characters"));
    }
    let severity = match g.severity.as_deref() {
        None => Some(Severity::Sev3),
        Some(w) => match Severity::from_sender(w) {
            Some(s) => Some(s),
            None => {
                errors.push(format!(
                    "'severity' must be critical, error, warning, info or sev1..sev4, not '{w}'"
                ));
                None
            }
        },
    };
    let dedup_key = match g.dedup_key {
        Some(k) if k.chars().count() > MAX_DEDUP_KEY => {
            errors.push(format!(
                "'dedup_key' is longer than {MAX_DEDUP_KEY} characters"
            ));
            k
        }
        Some(k) if !k.is_empty() => k,
        _ if action == AlertAction::Trigger => generate_dedup_key(),
        _ => {
            errors.push("'dedup_key' is required to acknowledge or resolve".into());
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    let mut details = g.details;
    if !g.extra.is_empty() {
        if !details.is_object() {
            details = if details.is_null() {
                json!({})
            } else {
                json!({ "details": details })
            };
        }
        details["unknown_fields"] = json!(g.extra);
    }
    let event = AlertEvent {
        fingerprint: Some(dedup_key.clone()),
        dedup_key,
        action,
        summary,
        incident_title: None,
        source: g.source.unwrap_or_else(|| "generic".into()),
        severity,
        labels: g.labels,
        details,
        links: g.links,
        left_out: None,
        expires_at: None,
    };
    Ok(Parsed {
        events: vec![event],
        unknown_fields: unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_trigger() {
        let e = parse(br#"{"summary":"disk full"}"#).unwrap().events;
        assert_eq!(e[0].action, AlertAction::Trigger);
        assert_eq!(e[0].severity, Some(Severity::Sev3));
        assert_eq!(e[0].dedup_key.len(), 32);
    }

    #[test]
    fn full_resolve() {
        let e = parse(
            br#"{"dedup_key":"db-1","status":"resolve","labels":{"team":"x"},
            "links":[{"href":"https://example.test","text":"dash"}]}"#,
        )
        .unwrap()
        .events;
        assert_eq!(e[0].action, AlertAction::Resolve);
        assert_eq!(e[0].dedup_key, "db-1");
    }

    #[test]
    fn reports_typos_and_refuses_bad_values() {
        let e = parse(br#"{"sumary":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("'summary' is missing"), "{e}");
        let p = parse(br#"{"summary":"x","sevrity":"critical","links":null,"labels":{"n":1}}"#)
            .unwrap();
        assert_eq!(p.unknown_fields, ["sevrity"]);
        assert_eq!(p.events[0].details["unknown_fields"]["sevrity"], "critical");
        assert_eq!(p.events[0].labels["n"], "1");
        let e = parse(br#"{"summary":"","severity":"purple","status":"maybe"}"#)
            .unwrap_err()
            .messages();
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
