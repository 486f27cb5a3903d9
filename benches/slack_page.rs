//! Alert-to-first-page latency when the page is a Slack DM: the release
//! `tocsin` binary pages through slack-morphism to a fake Slack Web API on
//! loopback, which records when each page's `chat.postMessage` arrives.
//! Each incident also opens its Slack channel (create, invite, topic,
//! card, intro) at the same time, as in production.
//!
//! `cargo bench --bench slack_page` (optionally `-- --pages 500`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "bench-slack-pagerduty-key";

#[derive(Clone, Default)]
struct Fake {
    /// Incident number → when its DM page arrived.
    pages: Arc<Mutex<HashMap<u64, Instant>>>,
    seq: Arc<Mutex<u64>>,
}

async fn api(State(f): State<Fake>, Path(method): Path<String>, body: Bytes) -> axum::Json<Value> {
    let p: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut s = f.seq.lock();
        *s += 1;
        *s
    };
    let ts = format!("1700000000.{n:06}");
    let channel = json!({"id": format!("C{n}"), "name": p["name"], "created": 1_700_000_000});
    axum::Json(match method.as_str() {
        "conversations.create" | "conversations.invite" | "conversations.setTopic" => {
            json!({"ok": true, "channel": channel})
        }
        "conversations.open" => json!({"ok": true, "channel": {"id": "DALICE"}}),
        "conversations.history" => json!({"ok": true, "messages": [], "has_more": false}),
        "chat.postMessage" => {
            if p["channel"] == "DALICE"
                && let Some(key) = p["metadata"]["event_payload"]["idempotency_key"].as_str()
                && let Some(n) = key
                    .strip_prefix("INC-")
                    .and_then(|k| k.split('/').next())
                    .and_then(|k| k.parse::<u64>().ok())
            {
                f.pages.lock().entry(n).or_insert_with(Instant::now);
            }
            json!({"ok": true, "channel": p["channel"], "ts": ts, "message": {"ts": ts, "text": ""}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": p["channel"], "ts": p["ts"], "message": {"text": ""}})
        }
        _ => json!({"ok": true}),
    })
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pages: u64 = args
        .iter()
        .position(|a| a == "--pages")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let fake = Fake::default();
    let app = Router::new()
        .route("/api/{method}", axum::routing::post(api).get(api))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("tocsin.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{data}"
[log]
level = "warn"
# Every event opens its own incident here: the flood limits would group them.
[intake]
max_new_incidents_per_request = 1000000
max_new_incidents_per_minute = 1000000
[slack]
bot_token = "xoxb-bench"
signing_secret = "bench-secret"
team_id = "T0BENCH"
api_url = "http://{slack}/api"
[[users]]
name = "alice"
slack_id = "UALICE"
contact_methods = [{{ kind = "slack" }}]
[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "1h"
[[services]]
name = "s"
escalation_policy = "p"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "{KEY}"
service = "s"
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut sent = HashMap::new();
    for n in 1..=pages {
        let body = json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": format!("k{n}"),
                          "payload": {"summary": "Checkout errors", "source": "bench", "severity": "critical"}});
        let t = Instant::now();
        let r = http
            .post(format!("{base}/v2/enqueue"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        // Sequential sends: incidents are numbered in order.
        sent.insert(n, t);
        // Space the triggers a little so each page's latency is its own, not a queue's.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (fake.pages.lock().len() as u64) < pages && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = fake.pages.lock().clone();
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(n, t)| got.get(n).map(|a| a.duration_since(*t)))
        .collect();
    lat.sort();
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "alert to first page by Slack DM (fake Slack on loopback), {pages} incidents, 5 ms apart"
    );
    println!("| pages | received | p50 ms | p90 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {pages} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    assert_eq!(lat.len() as u64, pages, "a page never arrived");
}
