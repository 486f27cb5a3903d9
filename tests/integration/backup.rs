//! Backup and restore round trip, through the CLI and a real server.

use crate::common::receiver::Receiver;
use crate::common::*;
use crate::paging::paging_config;
use serde_json::{Value, json};

fn tocsin(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// `tocsin restore --from file --data data`.
fn restore(
    file: &std::path::Path,
    data: &std::path::Path,
    config: &std::path::Path,
) -> std::process::Output {
    tocsin(
        &[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        config,
    )
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn backup_then_restore_into_a_fresh_directory() {
    let recv = Receiver::start().await;
    let extra = paging_config(&recv, 2525, "");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), free_port(), Some("payments"), &extra).await;
    let http = reqwest::Client::new();
    for key in ["a", "b"] {
        let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                          "payload": {"summary": format!("incident {key}"), "source": "t", "severity": "critical"}});
        assert_eq!(
            http.post(format!("{}/v2/enqueue", server.base))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            202
        );
    }
    http.post(format!("{}/v1/incidents/INC-2/acknowledge", server.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({"by": "bob"}))
        .send()
        .await
        .unwrap();
    let o = http
        .post(format!("{}/v1/schedules/primary/overrides", server.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({"user": "carol", "start": "2026-11-29T00:00:00Z", "end": "2027-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(o.status(), 201);
    // Let the pages go out and be recorded, so nothing changes after the backup.
    for inc in ["INC-1", "INC-2"] {
        let mut settled = false;
        for _ in 0..200 {
            let n = get(&server.base, &format!("/v1/incidents/{inc}/notifications")).await;
            if n["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["method"] == "webhook")
                .all(|e| e["state"]["state"] != "pending")
            {
                settled = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(settled, "{inc}'s pages did not settle");
    }
    let before_incidents = get(&server.base, "/v1/incidents").await;
    let before_timeline = get(&server.base, "/v1/incidents/INC-1/timeline").await;
    let before_timers =
        get(&server.base, "/v1/incidents/INC-1").await["incident"]["escalation"]["timer"].clone();
    assert!(
        before_timers.is_object(),
        "INC-1 has a pending escalation timer"
    );

    let file = dir.path().join("tocsin.backup.jsonl");
    let out = tocsin(&["backup", "--to", file.to_str().unwrap()], &server.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Backup of "));
    let first = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let header: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (header["format"].as_str(), header["version"].as_u64()),
        (Some("tocsin-backup"), Some(2))
    );
    drop(server);

    // Restore into a fresh directory and serve from it.
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let restored = restore(&file, &data, &dir.path().join("tocsin.toml"));
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let again = restore(&file, &data, &dir.path().join("tocsin.toml"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let server =
        ServerProcess::start_with(fresh.path(), free_port(), Some("payments"), &extra).await;
    assert_eq!(get(&server.base, "/v1/incidents").await, before_incidents);
    assert_eq!(
        get(&server.base, "/v1/incidents/INC-1/timeline").await,
        before_timeline
    );
    assert_eq!(
        get(&server.base, "/v1/incidents/INC-1").await["incident"]["escalation"]["timer"],
        before_timers
    );
    let overrides = get(&server.base, "/v1/schedules/primary/overrides").await;
    assert_eq!(overrides["overrides"][0]["user"], "carol");
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tocsin_escalation_timers_pending 1"),
        "{metrics}"
    );
    let verify = tocsin(&["audit", "verify", "INC-1"], &server.config);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // And it keeps working: a new alert gets the next number.
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "c",
                      "payload": {"summary": "after restore", "source": "t", "severity": "info"}});
    http.post(format!("{}/v2/enqueue", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&server.base, "/v1/incidents").await["incidents"][0]["key"],
        "INC-3"
    );
}

#[test]
fn restore_refuses_what_is_not_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.jsonl");
    std::fs::write(&file, "{\"format\":\"something-else\"}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["restore", "--from", file.to_str().unwrap(), "--data"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is not a tocsin backup"));
}

/// Waits until every webhook page of `inc` is no longer pending.
async fn pages_settled(base: &str, inc: &str) {
    for _ in 0..400 {
        let n = get(base, &format!("/v1/incidents/{inc}/notifications")).await;
        let all = n["notifications"].as_array().cloned().unwrap_or_default();
        if !all.is_empty()
            && all
                .iter()
                .filter(|e| e["method"] == "webhook")
                .all(|e| e["state"]["state"] != "pending")
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{inc}'s pages did not settle");
}

/// Incident numbers start again from the backup's counter after a restore:
/// the next outage is INC-2 again. Its pages must not carry the keys of the
/// INC-2 paged before the restore, or a receiver that drops repeated keys
/// (as the README tells it to) drops a real page.
#[tokio::test]
async fn after_a_restore_a_reused_incident_number_pages_with_new_keys() {
    let recv = Receiver::start().await;
    let extra = paging_config(&recv, 2525, "");
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::start_with(dir.path(), free_port(), Some("payments"), &extra).await;
    let http = reqwest::Client::new();
    let trigger = |key: &str| {
        json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
               "payload": {"summary": format!("outage {key}"), "source": "t", "severity": "critical"}})
    };
    let post = |body: Value, base: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/v2/enqueue"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    };
    post(trigger("a"), server.base.clone()).await;
    pages_settled(&server.base, "INC-1").await;
    let file = dir.path().join("tocsin.backup.jsonl");
    let out = tocsin(&["backup", "--to", file.to_str().unwrap()], &server.config);
    assert!(out.status.success());

    // After the backup: INC-2 opens and pages.
    post(trigger("b"), server.base.clone()).await;
    pages_settled(&server.base, "INC-2").await;
    let keys_of = |recv: &Receiver| -> Vec<String> {
        recv.received()
            .into_iter()
            .filter(|r| r.body["incident"]["id"] == "INC-2")
            .map(|r| r.idempotency_key)
            .collect()
    };
    let before = keys_of(&recv);
    assert!(!before.is_empty(), "INC-2 paged before the restore");
    server.terminate();

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let restored = restore(&file, &data, &dir.path().join("tocsin.toml"));
    assert!(restored.status.success());
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        said.contains("1 incidents (1 not resolved") && said.contains("next incident INC-2"),
        "{said}"
    );

    let server =
        ServerProcess::start_with(fresh.path(), free_port(), Some("payments"), &extra).await;
    post(trigger("c"), server.base.clone()).await;
    assert_eq!(
        get(&server.base, "/v1/incidents").await["incidents"][0]["key"],
        "INC-2"
    );
    pages_settled(&server.base, "INC-2").await;
    let after: Vec<String> = keys_of(&recv)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert!(
        !after.is_empty(),
        "the new INC-2 paged with keys of its own; before: {before:?}, all: {:?}",
        keys_of(&recv)
    );
    // And INC-1, restored with its pages already delivered, pages nobody twice.
    let inc1: Vec<String> = recv
        .received()
        .into_iter()
        .filter(|r| r.body["incident"]["id"] == "INC-1")
        .map(|r| r.idempotency_key)
        .collect();
    let distinct: std::collections::HashSet<_> = inc1.iter().collect();
    assert_eq!(distinct.len(), inc1.len(), "{inc1:?}");
}
