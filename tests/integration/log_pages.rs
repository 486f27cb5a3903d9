//! A `log` page is delivered in the transaction that opens the incident:
//! no outbox worker, no second transaction, no second flush.

use crate::common::*;
use crate::paging::t0;
use std::sync::Arc;
use tocsin::clock::ManualClock;

const LOG_PAGING: &str = r#"
[[users]]
name = "dave"
contact_methods = [{ kind = "log" }, { kind = "log", after = "2m" }]
[[escalation_policies]]
name = "payments"
[[escalation_policies.steps]]
targets = [{ user = "dave" }]
delay = "5m"
"#;

#[tokio::test]
async fn a_log_page_is_on_the_timeline_when_the_alert_is_answered() {
    // Background tasks are not started: nothing but the intake request
    // itself can deliver the page.
    let clock = ManualClock::new(t0());
    let app = spawn_app_with(Arc::new(clock), Some("payments"), LOG_PAGING).await;
    let flushes = app.store.flush_count();
    let (s, b) = app
        .pd("trigger", "db-down", "Payment errors above 5%")
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        app.store.flush_count() - flushes,
        1,
        "one flush for the alert and its page"
    );

    let inc = app.incident("INC-1").await;
    let types: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let step = types
        .iter()
        .position(|t| *t == "escalation_step")
        .expect("a step");
    let paged = types
        .iter()
        .position(|t| *t == "paged")
        .expect("paged at once");
    assert!(
        step < paged,
        "the page follows the step that sent it: {types:?}"
    );
    let entry = &inc["timeline"][paged];
    assert_eq!(entry["recipient"], "dave", "{entry}");
    assert_eq!(entry["method"], "log");
    assert_eq!(entry["attempts"], 1);

    // The first method is delivered; the second (after 2 m) still waits in
    // the outbox for the worker.
    let (s, notes) = app.get("/v1/incidents/INC-1/notifications").await;
    assert_eq!(s, 200, "{notes}");
    let states: Vec<String> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"]["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states.iter().filter(|s| *s == "delivered").count(),
        1,
        "{notes:#}"
    );
    assert_eq!(
        states.iter().filter(|s| *s == "pending").count(),
        1,
        "{notes:#}"
    );
    app.stop().await;
}
