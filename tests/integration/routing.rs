//! Routing rules by label: an alert's labels choose its service, severity
//! and escalation policy, or drop it.

use crate::common::receiver::Receiver;
use crate::common::smtp::SmtpSink;
use crate::common::*;
use crate::paging::{paging_config, t0};
use serde_json::json;
use std::sync::Arc;
use tocsin::clock::ManualClock;

/// Routes on the `scripts` (generic) integration, whose fallback service
/// is `payments` (policy `payments`, paging the primary schedule).
const ROUTES: &str = r#"
[[services]]
name = "db"

[[escalation_policies]]
name = "db-oncall"
[[escalation_policies.steps]]
targets = [{ user = "bob" }]
delay = "5m"

[[integrations.routes]]
matchers = ["team=~\"db|storage\"", "env!=staging"]
service = "db"
severity = "SEV1"
escalation_policy = "db-oncall"

[[integrations.routes]]
matchers = ["env=staging"]
drop = true
"#;

#[tokio::test]
async fn an_alert_with_team_db_lands_on_db_and_pages_its_policy() {
    let recv = Receiver::start().await;
    let smtp = SmtpSink::start().await;
    let extra = format!("{}\n{ROUTES}", paging_config(&recv, smtp.port, ""));
    let app = spawn_app_with(Arc::new(ManualClock::new(t0())), Some("payments"), &extra).await;
    let hook = format!("/hooks/{GENERIC_KEY}");

    let (s, b) = app
        .post_json(
            &hook,
            &json!({"summary": "Replica lag 40s", "severity": "warning", "dedup_key": "lag",
                    "labels": {"team": "db"}}),
        )
        .await;
    assert!(s < 300, "{b}");
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["service"], "db", "{inc}");
    assert_eq!(inc["incident"]["severity"], "sev1", "{inc}");
    let (_, tl) = app.get("/v1/incidents/INC-1/timeline").await;
    let routed = tl["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .any(|e| e["type"] == "routed" && e["rule"] == 0 && e["service"] == "db")
        })
        .unwrap_or(false);
    assert!(routed, "{tl:#}");
    app.tick().await;
    assert_eq!(recv.at("users/bob").len(), 1, "db-oncall pages bob");
    assert_eq!(recv.at("users/alice").len(), 0);
    // Its resolve finds it on db.
    let (s, _) = app
        .post_json(
            &hook,
            &json!({"status": "resolve", "dedup_key": "lag", "labels": {"team": "db"}}),
        )
        .await;
    assert!(s < 300);
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "resolved"
    );

    // Staging is stored but opens nothing.
    let (s, b) = app
        .post_json(
            &hook,
            &json!({"summary": "Staging disk", "dedup_key": "stg", "labels": {"team": "db", "env": "staging"}}),
        )
        .await;
    assert!(s < 300, "{b}");
    assert_eq!(app.incidents().await.len(), 1);
    let (events, _) = app.store_counts();
    assert_eq!(events, 3, "the dropped alert is stored");

    // No rule matches: the integration's service.
    app.post_json(
        &hook,
        &json!({"summary": "Card declines", "dedup_key": "cards", "labels": {"team": "payments"}}),
    )
    .await;
    let inc = app.incident("INC-2").await;
    assert_eq!(inc["incident"]["service"], "payments", "{inc}");
    app.stop().await;
}

#[test]
fn route_test_says_which_rule_matches_and_why_the_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        config_text_with(&dir.path().join("data"), "127.0.0.1:1", Some("payments"), &format!(
            "[[users]]\nname = \"bob\"\ncontact_methods = [{{ kind = \"log\" }}]\n[[escalation_policies]]\nname = \"payments\"\n[[escalation_policies.steps]]\ntargets = [{{ user = \"bob\" }}]\ndelay = \"5m\"\n{ROUTES}"
        )),
    )
    .unwrap();
    let run = |labels: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "route",
                "test",
                "--integration",
                "scripts",
                "--labels",
                labels,
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = run("team=db,severity=critical");
    assert!(
        out.contains("rule 0 (team=~\"db|storage\", env!=staging): MATCHES"),
        "{out}"
    );
    assert!(
        out.contains("=> service db, severity SEV1, escalation policy db-oncall"),
        "{out}"
    );
    let out = run("team=db,env=staging");
    assert!(
        out.contains(
            "rule 0 (team=~\"db|storage\", env!=staging): no, env!=\"staging\" does not hold"
        ),
        "{out}"
    );
    assert!(out.contains("rule 1 (env=staging): MATCHES"), "{out}");
    assert!(out.contains("=> dropped"), "{out}");
    let out = run("team=web");
    assert!(
        out.contains("=> no rule matches: service payments"),
        "{out}"
    );
}

#[test]
fn check_names_a_bad_matcher_and_an_unknown_route_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        config_text_with(
            &dir.path().join("data"),
            "127.0.0.1:1",
            None,
            "[[integrations.routes]]\nmatchers = [\"team=~\\\"(db\\\"\", \"severity\"]\nservice = \"nowhere\"\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("integrations[3].routes[0].matchers[0]") && err.contains("does not parse"),
        "{err}"
    );
    assert!(
        err.contains("integrations[3].routes[0].matchers[1]") && err.contains("no operator"),
        "{err}"
    );
    assert!(
        err.contains("integrations[3].routes[0].service")
            && err.contains("unknown service 'nowhere'"),
        "{err}"
    );
}
