//! `/metrics` after a scripted incident: counters and histograms move, and
//! the text is valid exposition format.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use chrono::Duration;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use tocsin::clock::ManualClock;

/// Parses exposition text into `series → value`, checking every line.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "exposition ends with # EOF"
    );
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.starts_with("tocsin_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        out.insert(series.to_string(), v);
    }
    out
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    parse(&resp.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_a_scripted_incident() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let clock = ManualClock::new(t0());
    let app = spawn_app_with(
        Arc::new(clock.clone()),
        Some("payments"),
        &paging_config(&recv, smtp.port, ""),
    )
    .await;
    let before = scrape(&app).await;

    assert_eq!(
        app.pd("trigger", "metrics-1", "Checkout errors").await.0,
        202
    );
    assert_eq!(
        app.post_raw("/hooks/not-a-key", b"{}".to_vec()).await.0,
        401
    );
    app.tick().await;
    let open = scrape(&app).await;
    assert_eq!(
        get(
            &open,
            r#"tocsin_incidents_open{severity="SEV2",status="triggered"}"#
        ),
        1.0
    );
    assert!(get(&open, "tocsin_escalation_timers_pending") >= 1.0);

    clock.advance(Duration::seconds(252));
    app.post_with_token(
        "/v1/incidents/INC-1/acknowledge",
        Some(API_TOKEN),
        &json!({}),
    )
    .await;
    clock.advance(Duration::minutes(10));
    app.post_with_token("/v1/incidents/INC-1/resolve", Some(API_TOKEN), &json!({}))
        .await;
    let after = scrape(&app).await;

    let delta = |s: &str| get(&after, s) - get(&before, s);
    // Counters are process-wide and other tests run alongside: at least ours.
    assert!(delta(r#"tocsin_alerts_received_total{integration="pd",outcome="accepted"}"#) >= 1.0);
    assert!(
        delta(r#"tocsin_alerts_received_total{integration="unknown",outcome="rejected"}"#) >= 1.0
    );
    assert!(delta(r#"tocsin_pages_sent_total{method="webhook"}"#) >= 1.0);
    assert!(
        delta(r#"tocsin_http_requests_total{route="/v2/enqueue",method="POST",status="202"}"#)
            >= 1.0
    );
    assert!(
        delta(r#"tocsin_http_requests_total{route="/hooks/{key}",method="POST",status="401"}"#)
            >= 1.0
    );
    assert!(delta("tocsin_time_to_acknowledge_seconds_count") >= 1.0);
    assert!(delta("tocsin_time_to_resolve_seconds_count") >= 1.0);
    // 252 s falls in the 300 s bucket and not the 120 s one (other tests may add their own).
    assert!(delta(r#"tocsin_time_to_acknowledge_seconds_bucket{le="300.0"}"#) >= 1.0);
    assert_eq!(
        get(
            &after,
            r#"tocsin_incidents_open{severity="SEV2",status="triggered"}"#
        ),
        0.0
    );
    assert_eq!(get(&after, "tocsin_escalation_timers_pending"), 0.0);
    // Raw URLs never become labels: the key in /hooks/not-a-key does not appear.
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("not-a-key"));
    app.stop().await;
}
