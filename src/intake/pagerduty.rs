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
    AlertAction, AlertEvent, AlertLink, IntakeError, MAX_DEDUP_KEY, MAX_SUMMARY, Parsed,
    generate_dedup_key, note_unknown, nullable, parse_json, time::parse_datetime,
};
use crate::incident::Severity;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// An Events v2 body. Fields tocsin does not know are kept (in the event's
/// details, under `unknown_fields`) and reported, never refused: PagerDuty's
/// schema does not forbid them, and Sumo Logic sends a top-level
/// `description`. `null` stands for absent everywhere (Kapacitor sends
/// `"images": null, "links": null`).
#[derive(Debug, Deserialize)]
struct Envelope {
    routing_key: Option<String>,
    event_action: Option<String>,
    dedup_key: Option<String>,
    payload: Option<Payload>,
    #[serde(default, deserialize_with = "nullable")]
    images: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    links: Vec<Value>,
    client: Option<String>,
    client_url: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    summary: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    timestamp: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    custom_details: Option<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// A parsed Events v2 request: the routing key and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueRequest {
    /// The integration key the sender used.
    pub routing_key: String,
    /// The normalised event.
    pub event: AlertEvent,
    /// Fields tocsin does not know (kept in the event's details).
    pub unknown_fields: Vec<String>,
}

impl EnqueueRequest {
    /// The request as a one-event [`Parsed`].
    pub fn into_parsed(self) -> Parsed {
        Parsed {
            events: vec![self.event],
            unknown_fields: self.unknown_fields,
        }
    }
}

/// The integration key of an event (`routing_key`, v1's `service_key`).
fn integration_key(key: Option<String>, field: &str, errors: &mut Vec<String>) -> String {
    match key {
        Some(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ => {
            errors.push(format!("'{field}' is missing or empty"));
            String::new()
        }
    }
}

fn action(word: Option<&str>, field: &str, errors: &mut Vec<String>) -> Option<AlertAction> {
    match word {
        Some("trigger") => Some(AlertAction::Trigger),
        Some("acknowledge") => Some(AlertAction::Acknowledge),
        Some("resolve") => Some(AlertAction::Resolve),
        Some(other) => {
            errors.push(format!(
                "'{field}' must be trigger, acknowledge or resolve, not '{other}'"
            ));
            None
        }
        None => {
            errors.push(format!("'{field}' is missing"));
            None
        }
    }
}

/// Links as senders write them: objects with `href` (and `text`); an item
/// without a usable `href` is kept in the details, not refused.
fn links(items: Vec<Value>, details: &mut Map<String, Value>) -> Vec<AlertLink> {
    let mut out = Vec::new();
    let mut odd = Vec::new();
    for item in items {
        match item.get("href").and_then(Value::as_str) {
            Some(href) if !href.is_empty() => out.push(AlertLink {
                href: href.to_string(),
                text: item
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => odd.push(item),
        }
    }
    if !odd.is_empty() {
        details.insert("unusable_links".into(), Value::Array(odd));
    }
    out
}

/// Parses one Events v2 body. Every invalid field is reported; the checks
/// are PagerDuty's own (routing key, action, and for a trigger a summary of
/// at most 1,024 characters, a source and a known severity).
pub fn parse(body: &[u8]) -> Result<EnqueueRequest, IntakeError> {
    let env: Envelope = parse_json(body)?;
    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &env.extra);
    let routing_key = integration_key(env.routing_key, "routing_key", &mut errors);
    let action = action(env.event_action.as_deref(), "event_action", &mut errors);
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
            note_unknown(&mut unknown, "payload", &p.extra);
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
                // Kept as sent; normalised beside it when it parses. A
                // timestamp tocsin cannot read is no reason to drop a page.
                details.insert("timestamp".into(), json!(ts));
                if let Some(t) = parse_datetime(ts) {
                    details.insert("timestamp_utc".into(), json!(t));
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
            if !p.extra.is_empty() {
                details.insert("payload_unknown_fields".into(), json!(p.extra));
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
    if !env.extra.is_empty() {
        details.insert("unknown_fields".into(), json!(env.extra));
    }
    let links = links(env.links, &mut details);
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
            left_out: None,
            expires_at: None,
        },
        unknown_fields: unknown,
    })
}

/// An Events API v1 body (`POST /generic/2010-04-15/create_event.json`), the
/// default of Netdata, ElastAlert and Alertmanager's `service_key`.
#[derive(Debug, Deserialize)]
struct V1Event {
    service_key: Option<String>,
    event_type: Option<String>,
    incident_key: Option<String>,
    description: Option<String>,
    details: Option<Value>,
    client: Option<String>,
    client_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    contexts: Vec<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// A change event (`POST /v2/change/enqueue`): a deploy or config change,
/// shown on the service's incidents. PagerDuty's rules: a routing key and a
/// `payload.summary` of at most 1,024 characters.
#[derive(Debug, Deserialize)]
struct ChangeEnvelope {
    routing_key: Option<String>,
    payload: Option<ChangePayload>,
    #[serde(default, deserialize_with = "nullable")]
    links: Vec<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ChangePayload {
    summary: Option<String>,
    source: Option<String>,
    timestamp: Option<String>,
    custom_details: Option<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// A parsed change event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRequest {
    /// The integration key the sender used.
    pub routing_key: String,
    /// What changed.
    pub summary: String,
    /// Where.
    pub source: String,
    /// When, if the sender said (else: when it arrived).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Links.
    pub links: Vec<AlertLink>,
    /// `custom_details`, as sent.
    pub details: Value,
    /// Fields tocsin does not know.
    pub unknown_fields: Vec<String>,
}

/// Parses one change event.
pub fn parse_change(body: &[u8]) -> Result<ChangeRequest, IntakeError> {
    let env: ChangeEnvelope = parse_json(body)?;
    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &env.extra);
    let routing_key = integration_key(env.routing_key, "routing_key", &mut errors);
    let (mut summary, mut source, mut at) = (String::new(), String::new(), None);
    let mut details = Value::Null;
    match env.payload {
        Some(p) => {
            note_unknown(&mut unknown, "payload", &p.extra);
            match p.summary {
                Some(s) if !s.trim().is_empty() => {
                    if s.chars().count() > MAX_SUMMARY {
                        errors.push(format!(
                            "'payload.summary' is longer than {MAX_SUMMARY} characters"
                        ));
                    }
                    summary = s;
                }
                _ => errors.push("'payload.summary' is missing or empty".to_string()),
            }
            source = p.source.unwrap_or_default();
            at = p.timestamp.as_deref().and_then(parse_datetime);
            details = p.custom_details.unwrap_or(Value::Null);
        }
        None => errors.push("'payload' is required".to_string()),
    }
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    let mut ignored = Map::new();
    Ok(ChangeRequest {
        routing_key,
        summary,
        source,
        at,
        links: links(env.links, &mut ignored),
        details,
        unknown_fields: unknown,
    })
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The severity of a v1 event, which has none: PagerDuty treats v1 events
/// as `error`.
pub const V1_SEVERITY: Severity = Severity::Sev2;

/// Parses one Events API v1 body; `routing_key` carries its `service_key`.
/// v1's rules: a service key and an event type; a trigger needs a
/// description (at most 1,024 characters); acknowledge and resolve need the
/// `incident_key`.
pub fn parse_v1(body: &[u8]) -> Result<EnqueueRequest, IntakeError> {
    let mut v: V1Event = parse_json(body)?;
    // Alertmanager's one struct for both versions sends these empty on v1.
    v.extra
        .retain(|k, val| !(matches!(k.as_str(), "event_action" | "payload") && empty(val)));
    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    note_unknown(&mut unknown, "", &v.extra);
    let routing_key = integration_key(v.service_key, "service_key", &mut errors);
    let action = action(v.event_type.as_deref(), "event_type", &mut errors);
    let summary = v.description.unwrap_or_default();
    if action == Some(AlertAction::Trigger) && summary.trim().is_empty() {
        errors.push("'description' is missing or empty".to_string());
    }
    if summary.chars().count() > MAX_SUMMARY {
        errors.push(format!(
            "'description' is longer than {MAX_SUMMARY} characters"
        ));
    }
    let dedup_key = match (v.incident_key, action) {
        (Some(k), _) if k.chars().count() > MAX_DEDUP_KEY => {
            errors.push(format!(
                "'incident_key' is longer than {MAX_DEDUP_KEY} characters"
            ));
            k
        }
        (Some(k), _) if !k.is_empty() => k,
        (_, Some(AlertAction::Trigger)) => generate_dedup_key(),
        (_, Some(_)) => {
            errors.push("'incident_key' is required to acknowledge or resolve".to_string());
            String::new()
        }
        (_, None) => String::new(),
    };
    if !errors.is_empty() {
        return Err(IntakeError::Invalid(errors));
    }
    let mut details = Map::new();
    match v.details {
        None | Some(Value::Null) => {}
        Some(d) => {
            details.insert("details".into(), d);
        }
    }
    if let Some(c) = v.client {
        details.insert("client".into(), json!(c));
    }
    if let Some(c) = v.client_url {
        details.insert("client_url".into(), json!(c));
    }
    // v1 contexts: {"type":"link","href":...,"text":...} or {"type":"image","src":...}.
    let (link_items, images): (Vec<Value>, Vec<Value>) = v
        .contexts
        .into_iter()
        .partition(|c| c.get("type").and_then(Value::as_str) != Some("image"));
    if !images.is_empty() {
        details.insert("images".into(), Value::Array(images));
    }
    if !v.extra.is_empty() {
        details.insert("unknown_fields".into(), json!(v.extra));
    }
    let links = links(link_items, &mut details);
    let action = action.expect("checked above");
    Ok(EnqueueRequest {
        routing_key,
        event: AlertEvent {
            fingerprint: Some(dedup_key.clone()),
            dedup_key,
            action,
            summary,
            incident_title: None,
            source: details
                .get("client")
                .and_then(Value::as_str)
                .unwrap_or("pagerduty-v1")
                .to_string(),
            severity: (action == AlertAction::Trigger).then_some(V1_SEVERITY),
            labels: Default::default(),
            details: Value::Object(details),
            links,
            left_out: None,
            expires_at: None,
        },
        unknown_fields: unknown,
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
    fn rejects_wrong_types_and_bad_json() {
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

    /// PagerDuty's published payloads, read from `../shared/reference/`.
    fn reference(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/senders")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn pagerdutys_own_examples_parse() {
        for name in [
            "pagerduty-docs-2026-trigger.json",
            "pagerduty-openapi-events-v2-trigger.json",
            "pagerduty-docs-2026-acknowledge.json",
            "pagerduty-docs-2026-resolve.json",
        ] {
            let r = parse(&reference(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.routing_key, "example-pagerduty-key");
            assert!(
                r.unknown_fields.is_empty(),
                "{name}: {:?}",
                r.unknown_fields
            );
        }
        let t = parse(&reference("pagerduty-docs-2026-trigger.json")).unwrap();
        // `+0000`, which RFC 3339 does not allow but ISO 8601 does.
        assert_eq!(t.event.details["timestamp_utc"], "2015-07-17T08:42:58.315Z");
        assert_eq!(t.event.details["component"], "postgres");
        assert_eq!(t.event.links[0].text, "Link text");
        assert_eq!(t.event.severity, Some(Severity::Sev4));
    }

    #[test]
    fn sumo_logics_description_is_kept_not_refused() {
        let r = parse(&reference("sumologic-docs-pagerduty-v2-trigger.json")).unwrap();
        assert_eq!(r.unknown_fields, ["description"]);
        assert_eq!(
            r.event.details["unknown_fields"]["description"],
            "Monitor: checkout 5xx rate"
        );
        assert_eq!(r.event.summary, "summary");
    }

    #[test]
    fn nulls_unknown_fields_and_odd_links_are_accepted() {
        // Kapacitor's pagerduty2: nil slices as null; a link item with a key
        // more; a payload field PagerDuty may add next year.
        let body = br#"{"routing_key":"k","event_action":"trigger","dedup_key":null,
            "images":null,"links":[{"href":"https://x.test","text":"x","rel":"dash"},{"text":"no href"}],
            "client":null,"client_url":null,
            "payload":{"summary":"s","source":"h","severity":"error","timestamp":"2026-12-01T10:00:00.000",
                       "custom_details":null,"component":null,"priority":"P1"}}"#;
        let r = parse(body).unwrap();
        assert_eq!(r.event.links.len(), 1);
        assert_eq!(r.event.details["unusable_links"][0]["text"], "no href");
        assert_eq!(r.event.details["timestamp_utc"], "2026-12-01T10:00:00Z");
        assert_eq!(r.unknown_fields, ["payload.priority"]);
        assert_eq!(r.event.dedup_key.len(), 32);
        // A timestamp nobody can read is kept as text, and the page goes out.
        let odd = br#"{"routing_key":"k","event_action":"trigger",
            "payload":{"summary":"s","source":"h","severity":"info","timestamp":"last tuesday"}}"#;
        let r = parse(odd).unwrap();
        assert_eq!(r.event.details["timestamp"], "last tuesday");
        assert!(r.event.details.get("timestamp_utc").is_none());
    }

    #[test]
    fn summary_over_pagerdutys_limit_is_refused() {
        let body = format!(
            r#"{{"routing_key":"k","event_action":"trigger","payload":{{"summary":"{}","source":"h","severity":"info"}}}}"#,
            "x".repeat(1025)
        );
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("1024"), "{e}");
    }

    #[test]
    fn events_v1_trigger_acknowledge_resolve() {
        let t = parse_v1(
            br#"{"service_key":"svc","event_type":"trigger","incident_key":"db/disk",
                "description":"Disk full","client":"Netdata","client_url":"http://n",
                "details":{"value":"99%"},"contexts":[{"type":"link","href":"http://d","text":"dash"},
                {"type":"image","src":"http://i.png"}]}"#,
        )
        .unwrap();
        assert_eq!(t.routing_key, "svc");
        assert_eq!(t.event.dedup_key, "db/disk");
        assert_eq!(t.event.action, AlertAction::Trigger);
        assert_eq!(t.event.severity, Some(V1_SEVERITY));
        assert_eq!(t.event.source, "Netdata");
        assert_eq!(t.event.links[0].href, "http://d");
        assert_eq!(t.event.details["images"][0]["src"], "http://i.png");
        let a = parse_v1(
            br#"{"service_key":"svc","event_type":"acknowledge","incident_key":"db/disk"}"#,
        )
        .unwrap();
        assert_eq!(a.event.action, AlertAction::Acknowledge);
        let generated =
            parse_v1(br#"{"service_key":"svc","event_type":"trigger","description":"d"}"#).unwrap();
        assert_eq!(generated.event.dedup_key.len(), 32);
        let e = parse_v1(br#"{"event_type":"resolve"}"#)
            .unwrap_err()
            .messages();
        assert!(e.iter().any(|m| m.contains("service_key")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("incident_key")), "{e:?}");
        let e = parse_v1(br#"{"service_key":"s","event_type":"trigger"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("description"), "{e}");
    }
}
