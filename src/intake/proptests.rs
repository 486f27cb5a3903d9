//! Hostile input for every intake parser: any bytes, and random edits of
//! real payloads, give events or a rejection with a message; never a panic.

use super::*;
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    [
        "alertmanager/firing.json",
        "alertmanager/resolved.json",
        "grafana/unified-firing.json",
        "grafana/legacy-alerting.json",
        "pagerduty/alertmanager-trigger.json",
        "pagerduty/pdpyras-trigger.json",
        "prometheus/firing.json",
    ]
    .iter()
    .map(|p| test_support::fixture(p))
    .collect()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Runs every parser; a rejection must say something.
fn all_parsers(body: &[u8]) {
    let check = |r: Result<(), IntakeError>| {
        if let Err(e) = r {
            assert!(!e.messages().is_empty());
            assert!(e.messages().iter().all(|m| !m.trim().is_empty()));
        }
    };
    check(pagerduty::parse(body).map(|_| ()));
    check(alertmanager::parse(body).map(|_| ()));
    check(grafana::parse(body).map(|_| ()));
    check(generic::parse(body).map(|_| ()));
    check(prometheus::parse(body, now(), chrono::Duration::minutes(5)).map(|_| ()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        all_parsers(&body);
    }

    #[test]
    fn edited_real_payloads(which in 0usize..7, at in any::<prop::sample::Index>(), len in 0usize..16,
                            insert in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut body = fixtures()[which].clone();
        let start = at.index(body.len());
        let end = (start + len).min(body.len());
        body.splice(start..end, insert);
        all_parsers(&body);
    }

    #[test]
    fn structurally_plausible_json(v in json_value()) {
        let body = serde_json::to_vec(&v).unwrap();
        all_parsers(&body);
    }
}

/// JSON shaped like what senders send, with the field names they use.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(vec![
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "summary",
        "source",
        "severity",
        "version",
        "groupKey",
        "status",
        "alerts",
        "labels",
        "annotations",
        "endsAt",
        "startsAt",
        "fingerprint",
        "state",
        "ruleId",
        "ruleName",
        "title",
        "details",
        "links",
        "href",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "trigger",
            "resolve",
            "firing",
            "resolved",
            "4",
            "1",
            "critical",
            "ok",
            "2026-11-29T10:00:00Z",
            "0001-01-01T00:00:00Z",
            "",
            "x"
        ])
        .prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}
