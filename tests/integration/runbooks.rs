//! Runbooks, drills, summaries and the audit chain, through the fake Slack.

use crate::common::fake_slack::FakeSlack;
use crate::common::*;
use crate::slack::{Slack, slack_config};
use std::sync::Arc;
use tocsin::clock::SystemClock;

async fn slack() -> Slack {
    let fake = FakeSlack::start().await;
    let app = spawn_app_with(
        Arc::new(SystemClock),
        Some("payments"),
        &slack_config(&fake),
    )
    .await;
    app.start_background();
    Slack { app, fake }
}

/// The Alertmanager fixture (HighErrorRate, critical) opens INC-1 on `api`.
async fn high_error_rate(s: &Slack) -> String {
    let (st, b) = s
        .app
        .post_raw(
            &format!("/hooks/{AM_KEY}"),
            fixture("alertmanager/firing.json"),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    s.channel_of(1).await
}

async fn say(s: &Slack, ch: &str, text: &str, id: &str) -> String {
    s.ask("U0ALICE", ch, "/incident", text, id).await["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_matching_runbook_is_attached_and_walked_phase_by_phase() {
    let s = slack().await;
    let ch = high_error_rate(&s).await;
    let inc = s.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["runbook"]["runbook"], "high-error-rate");

    let list = say(&s, &ch, "runbook", "l").await;
    assert!(
        list.contains("`high-error-rate` High error rate (attached)"),
        "{list}"
    );
    let card = say(&s, &ch, "runbook show", "c").await;
    assert!(
        card.starts_with("*Runbook: High error rate*, phase 1 of 6: *Detection and reporting*"),
        "{card}"
    );
    assert!(
        card.contains("`confirm-errors`") && card.contains("*evidence required*"),
        "{card}"
    );

    // Evidence is required; unknown steps and early phase changes are refused.
    let refused = say(&s, &ch, "step done confirm-errors", "a").await;
    assert!(refused.contains("needs evidence"), "{refused}");
    let unknown = say(&s, &ch, "step done warp-drive", "b").await;
    assert!(unknown.contains("has no step 'warp-drive'"), "{unknown}");
    let early = say(&s, &ch, "phase next", "e").await;
    assert!(
        early.contains("finish or skip these steps of Detection and reporting first"),
        "{early}"
    );

    assert_eq!(
        say(
            &s,
            &ch,
            "step done confirm-errors 12% 5xx on /v1/orders since 10:02",
            "d1"
        )
        .await,
        "alice did step `confirm-errors` of INC-1."
    );
    assert_eq!(
        say(&s, &ch, "step done check-burn-rate 14x burn over 1h", "d2").await,
        "alice did step `check-burn-rate` of INC-1."
    );
    assert_eq!(
        say(&s, &ch, "step skip start-timeline tocsin keeps it", "d3").await,
        "alice skipped step `start-timeline` of INC-1."
    );
    assert!(
        say(&s, &ch, "step skip post-status-page", "d4")
            .await
            .contains("say why")
    );
    say(
        &s,
        &ch,
        "step skip post-status-page internal API only",
        "d5",
    )
    .await;
    let next = s.ask("U0ALICE", &ch, "/incident", "phase next", "n").await;
    let text = next["text"].as_str().unwrap();
    assert!(
        text.contains("phase 2 of 6: *Assessment and analysis*"),
        "{text}"
    );
    // The card's buttons: Done for steps that need no evidence, and Next phase.
    let buttons = next["blocks"].as_array().unwrap().last().unwrap()["elements"].clone();
    let ids: Vec<&str> = buttons
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["tocsin_step_done:read-error-samples", "tocsin_phase_next"],
        "{buttons}"
    );
    assert_eq!(buttons[0]["value"], "INC-1 read-error-samples");
    assert_eq!(
        s.press(
            "U0ALICE",
            "tocsin_step_done:read-error-samples",
            "INC-1 read-error-samples",
            "bd"
        )
        .await,
        200
    );
    assert_eq!(
        s.reply("bd").await["text"],
        "alice did step `read-error-samples` of INC-1."
    );
    assert_eq!(
        s.press("U0ALICE", "tocsin_phase_next", "INC-1", "bn").await,
        200
    );
    let refused = s.reply("bn").await["text"].as_str().unwrap().to_string();
    assert!(
        refused.contains("finish or skip these steps of Assessment and analysis first"),
        "{refused}"
    );
    let done_again = say(&s, &ch, "step done confirm-errors again", "x").await;
    assert!(done_again.contains("already done"), "{done_again}");

    let timeline = s.app.incident("INC-1").await["timeline"].clone();
    let kinds: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in [
        "runbook_attached",
        "step_done",
        "step_skipped",
        "phase_started",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    let done = timeline_entry(&timeline, "step_done");
    assert_eq!(
        done["actor"]["name"],
        serde_json::json!({"user": "alice", "principal": "slack:T0TEAM/U0ALICE"})
    );
    assert_eq!(done["note"], "12% 5xx on /v1/orders since 10:02");
    s.app.stop().await;
}

#[tokio::test]
async fn resolving_posts_the_resolution_and_the_summary() {
    let s = slack().await;
    let ch = high_error_rate(&s).await;
    say(&s, &ch, "ack", "a").await;
    say(
        &s,
        &ch,
        "note action: alert on the orders error budget",
        "n",
    )
    .await;
    say(&s, &ch, "step done confirm-errors 12% 5xx", "d").await;
    say(&s, &ch, "resolve rolled back v42", "r").await;
    s.fake
        .wait_until("the summary in the channel", |f| {
            f.ok_calls("chat.postMessage").iter().any(|c| {
                c.params["channel"] == ch.as_str()
                    && c.params["text"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("# INC-1:")
            })
        })
        .await;
    let texts: Vec<String> = s
        .fake
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.params["channel"] == ch.as_str())
        .map(|c| c.params["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("INC-1 acknowledged by *alice* after")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("INC-1 resolved by *alice* after")
                && t.contains(": rolled back v42.")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("*INC-1: ")),
        "the channel intro: {texts:#?}"
    );

    let resp = s
        .app
        .http
        .get(s.app.url("/v1/incidents/INC-1/summary"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/markdown; charset=utf-8"
    );
    let md = resp.text().await.unwrap();
    assert!(md.starts_with("# INC-1: "), "{md}");
    assert!(
        md.contains("| Time to acknowledge |")
            && md.contains("- [ ] alert on the orders error budget (alice)"),
        "{md}"
    );
    assert!(
        md.contains("- [x] Detection and reporting / `confirm-errors`"),
        "{md}"
    );
    assert!(md.contains("not reached"), "{md}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_drill_pages_only_its_starter_and_says_drill() {
    let s = slack().await;
    let reply = say(&s, "C1", "drill high-error-rate", "d").await;
    assert!(
        reply.starts_with("Drill INC-1 opened: Drill: High error rate. Only alice is paged"),
        "{reply}"
    );
    s.fake.wait_for_dm("U0ALICE").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!s.fake.has_dm("U0BOB"), "a drill pages nobody else");
    let inc = s.app.incident("INC-1").await;
    assert_eq!(inc["incident"]["drill"], true);
    assert_eq!(inc["incident"]["runbook"]["runbook"], "high-error-rate");
    let ch = s.channel_of(1).await;
    say(&s, &ch, "resolve drill over", "r").await;
    let md = s
        .app
        .http
        .get(s.app.url("/v1/incidents/1/summary"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.starts_with("# [DRILL] INC-1: Drill: High error rate"),
        "{md}"
    );
    assert!(
        say(&s, "C1", "drill", "x")
            .await
            .contains("Name the runbook")
    );
    assert!(
        say(&s, "C1", "drill nope", "y")
            .await
            .contains("there is no runbook 'nope'")
    );
    s.app.stop().await;
}

/// An incident's timeline entries as the store holds them, read the way a
/// forger with the data directory would: a record is one entry, or an array
/// of the entries one transaction appended.
fn stored_timeline(db: &sled::Db, incident: u64) -> Vec<serde_json::Value> {
    let tree = db.open_tree("timeline").unwrap();
    let mut out = Vec::new();
    for item in tree.scan_prefix(incident.to_be_bytes()) {
        let (_, v) = item.unwrap();
        match serde_json::from_slice(&v).unwrap() {
            serde_json::Value::Array(entries) => out.extend(entries),
            entry => out.push(entry),
        }
    }
    out
}

/// Writes the entries back, one record each (the store reads both shapes).
fn store_timeline(db: &sled::Db, incident: u64, entries: &[serde_json::Value]) {
    let tree = db.open_tree("timeline").unwrap();
    for item in tree.scan_prefix(incident.to_be_bytes()) {
        tree.remove(item.unwrap().0).unwrap();
    }
    for e in entries {
        let mut key = incident.to_be_bytes().to_vec();
        key.extend_from_slice(&e["seq"].as_u64().unwrap().to_be_bytes());
        tree.insert(key, serde_json::to_vec(e).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn a_tampered_timeline_entry_is_named_by_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ServerProcess::start(dir.path(), port).await;
    let http = reqwest::Client::new();
    for action in ["trigger", "acknowledge", "resolve"] {
        let mut body = serde_json::json!({"routing_key": PD_KEY, "event_action": action, "dedup_key": "audit"});
        if action == "trigger" {
            body["payload"] =
                serde_json::json!({"summary": "audit me", "source": "t", "severity": "info"});
        }
        http.post(format!("{}/v2/enqueue", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let verify = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["audit", "verify", "INC-1", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let ok = verify(&server.config);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("INC-1: 4 entries, the hash chain is intact")
    );
    let jsonl = http
        .get(format!(
            "{}/v1/incidents/INC-1/timeline?format=jsonl",
            server.base
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jsonl.lines().count(), 4);

    // Stop tocsin, rewrite who acknowledged (entry 2), start it again.
    assert!(server.terminate().success());
    {
        let db = sled::open(dir.path().join("data")).unwrap();
        let mut entries = stored_timeline(&db, 1);
        let entry = &mut entries[2];
        assert_eq!(entry["type"], "acknowledged");
        entry["actor"] = serde_json::json!({"kind": "user", "name": "mallory"});
        store_timeline(&db, 1, &entries);
        db.flush().unwrap();
    }
    let server = ServerProcess::start(dir.path(), port).await;
    let bad = verify(&server.config);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(
            "INC-1: TAMPERED: timeline entry 3: does not match entry 2 (entry 2 was changed)"
        ),
        "{err}"
    );
}

/// With `[audit] key`, a forger who edits the store and recomputes the whole
/// chain (all they can do without the key) is caught, and each resolved
/// incident's head reaches the audit webhook, where `--head` checks it.
#[tokio::test]
async fn a_recomputed_chain_fails_verify_with_the_audit_key_and_the_head_goes_out() {
    use crate::common::receiver::Receiver;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "[audit]\nkey = \"{}\"\nwebhook = \"audit-log\"\n\n[[webhooks]]\nname = \"audit-log\"\nurl = \"{}\"\n",
        "k3y-for-the-audit-chain-0123456789abcdef",
        recv.url("/audit")
    );
    let mut server = ServerProcess::start_with(dir.path(), port, None, &extra).await;
    let http = reqwest::Client::new();
    for action in ["trigger", "acknowledge", "resolve"] {
        let mut body = serde_json::json!({"routing_key": PD_KEY, "event_action": action, "dedup_key": "audit"});
        if action == "trigger" {
            body["payload"] =
                serde_json::json!({"summary": "audit me", "source": "t", "severity": "info"});
        }
        http.post(format!("{}/v2/enqueue", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    assert!(recv.wait_for(1, std::time::Duration::from_secs(10)).await);
    let sent = recv.at("/audit");
    assert_eq!(sent[0].body["event"], "incident.audit_head");
    assert_eq!(sent[0].body["incident"]["id"], "INC-1");
    assert!(sent[0].body.get("title").is_none());
    let head = sent[0].body["head"].as_str().unwrap().to_string();
    assert!(head.starts_with("hmac-sha256:"), "{head}");
    let stored_head = http
        .get(format!(
            "{}/v1/incidents/INC-1/timeline?format=jsonl",
            server.base
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .headers()["x-tocsin-timeline-head"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(stored_head, head);

    let verify = |config: &std::path::Path, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["audit", "verify", "INC-1"])
            .args(extra)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    let ok = verify(&server.config, &["--head", &head]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("every entry is keyed"), "{out}");
    assert!(out.contains("the recorded head matches entry 3"), "{out}");

    // The forger rewrites who acknowledged and recomputes every link and
    // the incident's head with SHA-256, as a backup editor could.
    assert!(server.terminate().success());
    {
        let db = sled::open(dir.path().join("data")).unwrap();
        let mut prev = String::new();
        let mut forged = Vec::new();
        for e in stored_timeline(&db, 1) {
            let mut entry: tocsin::incident::TimelineEntry = serde_json::from_value(e).unwrap();
            if matches!(entry.event, tocsin::incident::TimelineEvent::Acknowledged) {
                entry.actor = tocsin::incident::Actor::user("mallory");
            }
            entry.prev = std::mem::take(&mut prev);
            prev = entry.digest();
            forged.push(serde_json::to_value(&entry).unwrap());
        }
        assert_eq!(forged.len(), 4);
        store_timeline(&db, 1, &forged);
        let incidents = db.open_tree("incidents").unwrap();
        let ikey = 1u64.to_be_bytes();
        let mut inc: serde_json::Value =
            serde_json::from_slice(&incidents.get(ikey).unwrap().unwrap()).unwrap();
        inc["timeline_head"] = serde_json::json!(prev);
        incidents
            .insert(ikey, serde_json::to_vec(&inc).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let server = ServerProcess::start_with(dir.path(), port, None, &extra).await;
    let bad = verify(&server.config, &[]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("TAMPERED"), "{err}");
    assert!(err.contains("not linked with the audit key"), "{err}");
    // Even accepting pre-key entries, the recorded head exposes it.
    let bad = verify(&server.config, &["--allow-unkeyed", "--head", &head]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("no entry links to the recorded head"), "{err}");
}
