//! Grafana webhook contact point (`POST /hooks/{key}`).
//!
//! Two formats arrive here:
//! - unified alerting (`"version": "1"`): Alertmanager's webhook plus
//!   `orgId`, `title`, `state` (`alerting` | `ok`) and `message`; grouped the
//!   same way, by `groupKey` and per-alert `fingerprint`
//!   (`tests/fixtures/grafana/unified-firing.json`);
//! - legacy dashboard alerts: `ruleId`, `ruleName`, `state`
//!   (`alerting` | `ok` | `no_data` | `paused` | `pending`), `message`,
//!   `evalMatches` (`tests/fixtures/grafana/legacy-alerting.json`); the
//!   incident is the rule.

use super::alertmanager;
use super::{
    AlertAction, AlertEvent, AlertLink, Checked, IntakeError, MAX_SUMMARY, Parsed, labels,
    note_unknown, nullable, parse_json, truncate,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Legacy {
    title: Option<String>,
    rule_id: Option<i64>,
    rule_name: Option<String>,
    #[serde(default, rename = "ruleUrl", deserialize_with = "nullable")]
    rule_url: String,
    state: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    message: String,
    #[serde(default, deserialize_with = "nullable")]
    eval_matches: Vec<Value>,
    #[serde(default, rename = "imageUrl", deserialize_with = "nullable")]
    image_url: String,
    #[serde(default, deserialize_with = "labels")]
    tags: BTreeMap<String, String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// Fields of Grafana's legacy webhook that tocsin reads or knows to ignore.
const LEGACY_KNOWN: &[&str] = &["orgId", "dashboardId", "panelId"];

/// Parses either Grafana format, told apart by the presence of `alerts`.
/// Any `version` and `state` are read (Grafana's `state` is informational:
/// each alert's `status` decides).
pub fn parse(body: &[u8]) -> Result<Parsed, IntakeError> {
    super::collect(check(body)?, body)
}

/// Reads and checks either format; see [`parse`].
pub fn check(body: &[u8]) -> Result<Box<dyn Checked>, IntakeError> {
    // The top-level keys only, skipping every value.
    let probe: Result<BTreeMap<String, serde::de::IgnoredAny>, _> = parse_json(body);
    let keys = match probe {
        Ok(k) => k,
        Err(IntakeError::Malformed(m)) if m.starts_with("invalid JSON body") => {
            return Err(IntakeError::Malformed(
                "invalid JSON body: expected an object".into(),
            ));
        }
        Err(e) => return Err(e),
    };
    if keys.contains_key("alerts") {
        // Grafana's own fields, beyond Alertmanager's.
        alertmanager::check(body, &["orgId", "message", "state"], None)
    } else if keys.contains_key("ruleId") || keys.contains_key("ruleName") {
        Ok(Box::new(parse_legacy(body)?))
    } else {
        Err(IntakeError::Invalid(vec![
            "this is neither a Grafana unified alerting webhook ('alerts') nor a legacy one ('ruleId', 'ruleName')"
                .into(),
        ]))
    }
}

fn parse_legacy(body: &[u8]) -> Result<Parsed, IntakeError> {
    let mut l: Legacy = parse_json(body)?;
    for known in LEGACY_KNOWN {
        l.extra.remove(*known);
    }
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &l.extra);
    let rule = match (&l.rule_id, &l.rule_name) {
        (Some(id), _) => format!("grafana-rule-{id}"),
        (None, Some(name)) if !name.is_empty() => format!("grafana-rule-{name}"),
        _ => {
            return Err(IntakeError::Invalid(vec![
                "'ruleId' or 'ruleName' is required".into(),
            ]));
        }
    };
    let action = match l.state.as_deref() {
        Some("alerting" | "no_data") => AlertAction::Trigger,
        Some("ok") => AlertAction::Resolve,
        // Paused and pending rules say nothing about the service's health.
        Some("paused" | "pending") => return Ok(Parsed::default()),
        Some(other) => {
            return Err(IntakeError::Invalid(vec![format!(
                "'state' must be alerting, ok, no_data, paused or pending, not '{other}'"
            )]));
        }
        None => return Err(IntakeError::Invalid(vec!["'state' is missing".into()])),
    };
    let summary = l
        .title
        .clone()
        .or(l.rule_name.clone())
        .unwrap_or_else(|| rule.clone());
    let mut links = Vec::new();
    if !l.rule_url.is_empty() {
        links.push(AlertLink {
            href: l.rule_url.clone(),
            text: "Rule".into(),
        });
    }
    if !l.image_url.is_empty() {
        links.push(AlertLink {
            href: l.image_url.clone(),
            text: "Image".into(),
        });
    }
    let mut details = json!({
        "message": l.message,
        "state": l.state,
        "evalMatches": l.eval_matches,
    });
    if !l.extra.is_empty() {
        details["unknown_fields"] = json!(l.extra);
    }
    let event = AlertEvent {
        fingerprint: Some(rule.clone()),
        dedup_key: rule,
        action,
        summary: truncate(&summary, MAX_SUMMARY),
        incident_title: None,
        source: l.rule_name.clone().unwrap_or_else(|| "grafana".into()),
        severity: l
            .tags
            .get("severity")
            .and_then(|w| Severity::from_sender(w)),
        labels: l.tags,
        details,
        links,
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
    use crate::intake::test_support::fixture;

    #[test]
    fn unified_firing_and_resolved() {
        let f = parse(&fixture("grafana/unified-firing.json"))
            .unwrap()
            .events;
        assert!(!f.is_empty());
        assert!(f.iter().all(|e| e.action == AlertAction::Trigger));
        let r = parse(&fixture("grafana/unified-resolved.json"))
            .unwrap()
            .events;
        assert_eq!(r.last().unwrap().action, AlertAction::Resolve);
        assert_eq!(r.last().unwrap().fingerprint, None);
        assert_eq!(r[0].dedup_key, f[0].dedup_key);
    }

    #[test]
    fn legacy_alerting_and_ok() {
        let a = parse(&fixture("grafana/legacy-alerting.json"))
            .unwrap()
            .events;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].action, AlertAction::Trigger);
        assert!(a[0].dedup_key.starts_with("grafana-rule-"));
        let ok = parse(&fixture("grafana/legacy-ok.json")).unwrap().events;
        assert_eq!(ok[0].action, AlertAction::Resolve);
        assert_eq!(ok[0].dedup_key, a[0].dedup_key);
    }

    #[test]
    fn paused_rules_are_ignored_and_junk_is_refused() {
        assert!(
            parse(br#"{"ruleId":1,"state":"paused"}"#)
                .unwrap()
                .events
                .is_empty()
        );
        let e = parse(br#"{"hello":"world"}"#).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
        let e = parse(br#"[1,2]"#).unwrap_err().to_string();
        assert!(e.contains("object"), "{e}");
    }
}
