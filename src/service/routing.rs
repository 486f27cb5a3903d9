//! Routing rules by label: `[[integrations.routes]]` decide an alert's
//! service, severity and escalation policy, or drop it; the first rule
//! whose matchers all match wins, and the integration's `service` is the
//! fallback.
//!
//! What matchers see: the alert's labels (Alertmanager, Prometheus,
//! Grafana, generic tags), then for PagerDuty events `component`, `group`
//! and `class`, then the top-level scalar fields of `custom_details` under
//! their own names; a label already set is not overwritten.

use crate::config::{IntegrationConfig, RouteConfig};
use crate::incident::AlertEvent;
use crate::incident::Severity;
use crate::matchers::Matcher;
use std::collections::BTreeMap;

/// The routes of every integration, parsed once.
#[derive(Debug, Default)]
pub struct Routes(BTreeMap<String, Vec<Vec<Matcher>>>);

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed<'a> {
    /// The rule that matched, by position, or `None` for the fallback.
    pub rule: Option<usize>,
    /// The service.
    pub service: &'a str,
    /// The severity the rule sets.
    pub severity: Option<Severity>,
    /// The escalation policy the rule chooses.
    pub escalation_policy: Option<&'a str>,
    /// Stored, nothing opened or paged.
    pub drop: bool,
}

impl Routes {
    /// Parses the routes of every integration (validated by `tocsin check`:
    /// a matcher that does not parse matches nothing).
    pub fn new(integrations: &[IntegrationConfig]) -> Self {
        Self(
            integrations
                .iter()
                .map(|i| {
                    let rules = i
                        .routes
                        .iter()
                        .map(|r| {
                            crate::matchers::parse_list(&r.matchers).unwrap_or_else(|_| {
                                vec![Matcher::parse("__never__=~\"a^\"").expect("valid")]
                            })
                        })
                        .collect();
                    (i.name.clone(), rules)
                })
                .collect(),
        )
    }

    /// Where `event` from `integration` goes.
    pub fn route<'a>(&self, integration: &'a IntegrationConfig, event: &AlertEvent) -> Routed<'a> {
        let fallback = Routed {
            rule: None,
            service: &integration.service,
            severity: None,
            escalation_policy: None,
            drop: false,
        };
        let Some(rules) = self.0.get(&integration.name).filter(|r| !r.is_empty()) else {
            return fallback;
        };
        let labels = match_labels(event);
        for (i, (matchers, cfg)) in rules.iter().zip(&integration.routes).enumerate() {
            if matchers.iter().all(|m| m.matches(&labels)) {
                return decided(i, cfg, integration);
            }
        }
        fallback
    }

    /// Every rule of `integration` with whether it matches `labels` and
    /// which matcher failed first: what `tocsin route test` prints.
    pub fn explain(
        &self,
        integration: &IntegrationConfig,
        labels: &BTreeMap<String, String>,
    ) -> Vec<(usize, Option<String>)> {
        self.0
            .get(&integration.name)
            .map(|rules| {
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, ms)| {
                        (
                            i,
                            ms.iter()
                                .find(|m| !m.matches(labels))
                                .map(|m| m.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn decided<'a>(i: usize, cfg: &'a RouteConfig, integration: &'a IntegrationConfig) -> Routed<'a> {
    Routed {
        rule: Some(i),
        service: cfg.service.as_deref().unwrap_or(&integration.service),
        severity: cfg.severity.as_deref().and_then(Severity::from_sender),
        escalation_policy: cfg.escalation_policy.as_deref(),
        drop: cfg.drop,
    }
}

/// The labels matchers see (see the module docs).
pub fn match_labels(event: &AlertEvent) -> BTreeMap<String, String> {
    let mut labels = event.labels.clone();
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    for name in ["component", "group", "class"] {
        if let Some(v) = event.details.get(name).and_then(scalar) {
            labels.entry(name.to_string()).or_insert(v);
        }
    }
    if let Some(cd) = event
        .details
        .get("custom_details")
        .and_then(|v| v.as_object())
    {
        for (k, v) in cd {
            if let Some(v) = scalar(v) {
                labels.entry(k.clone()).or_insert(v);
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::AlertAction;

    fn event(labels: &[(&str, &str)], details: serde_json::Value) -> AlertEvent {
        AlertEvent {
            dedup_key: "k".into(),
            fingerprint: None,
            action: AlertAction::Trigger,
            summary: "s".into(),
            incident_title: None,
            source: "src".into(),
            severity: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            details,
            links: Vec::new(),
            left_out: None,
            expires_at: None,
        }
    }

    #[test]
    fn pagerduty_fields_and_custom_details_are_labels_without_overriding_real_ones() {
        let e = event(
            &[("team", "web")],
            serde_json::json!({"component": "postgres", "group": "prod-db", "class": "disk",
                               "custom_details": {"team": "db", "shard": 7, "nested": {"x": 1}}}),
        );
        let l = match_labels(&e);
        assert_eq!(l["component"], "postgres");
        assert_eq!(l["group"], "prod-db");
        assert_eq!(l["class"], "disk");
        assert_eq!(l["shard"], "7");
        assert_eq!(l["team"], "web", "a real label wins");
        assert!(!l.contains_key("nested"));
    }
}
