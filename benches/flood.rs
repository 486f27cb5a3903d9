//! Huge requests: the release `tocsin` binary on loopback gets one very
//! large alert push at a time, with the shipped flood limits (`[intake]`
//! defaults) and an escalation policy that pages a local webhook, as the
//! example config does. For each shape it reports the answer's status and
//! time, what became of the alerts, the pages sent, and the server's peak
//! RSS (`VmHWM`), which must stay under 256 MiB for a 16 MiB body.
//!
//! `cargo bench --bench flood`

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "bench-am-key";
const MIB: usize = 1024 * 1024;

fn config(data: &Path, port: u16, hook: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{}"
[api]
token = "bench-api-token"
[log]
level = "warn"
[[users]]
name = "alice"
webhook = {{ url = "{hook}" }}
contact_methods = [{{ kind = "webhook" }}]
[[escalation_policies]]
name = "page"
[[escalation_policies.steps]]
targets = [{{ user = "alice" }}]
delay = "1h"
[[services]]
name = "bench"
escalation_policy = "page"
[[integrations]]
name = "am"
kind = "alertmanager"
key = "{KEY}"
service = "bench"
"#,
        data.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A webhook receiver that counts pages.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let pages = Arc::new(AtomicUsize::new(0));
    let counted = pages.clone();
    let app = axum::Router::new().route(
        "/page",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/page", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, pages)
}

async fn start(config_path: &Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(config_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tocsin");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tocsin did not start");
}

/// `VmHWM` and `VmRSS` of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Prometheus-style alerts, `size` bytes of JSON at most: alert `i` is named
/// by `name(i)`.
fn push_body(size: usize, name: impl Fn(usize) -> String) -> (String, usize) {
    let mut out = String::from("[");
    let mut n = 0;
    loop {
        let a = json!({"labels": {"alertname": name(n), "instance": format!("host-{n}:9100"), "severity": "warning"},
                       "annotations": {"summary": format!("alert {n}")}});
        let text = a.to_string();
        if out.len() + text.len() + 2 > size {
            break;
        }
        if n > 0 {
            out.push(',');
        }
        out.push_str(&text);
        n += 1;
    }
    out.push(']');
    (out, n)
}

/// An Alertmanager webhook notification of one group, `size` bytes at most.
fn group_body(size: usize) -> (String, usize) {
    // Alertmanager's field order: `alerts` before the group's key.
    let mut out = String::from(r#"{"receiver":"tocsin","status":"firing","alerts":["#);
    let mut n = 0;
    loop {
        let a = json!({"status": "firing", "labels": {"alertname": "NodeDown", "instance": format!("node-{n}:9100")},
                       "annotations": {"summary": format!("node {n} down")}, "startsAt": "2026-12-01T10:00:00Z",
                       "endsAt": "0001-01-01T00:00:00Z", "fingerprint": format!("{n:016x}")});
        let text = a.to_string();
        if out.len() + text.len() + 300 > size {
            break;
        }
        if n > 0 {
            out.push(',');
        }
        out.push_str(&text);
        n += 1;
    }
    out.push_str(r#"],"groupLabels":{"alertname":"NodeDown"},"commonLabels":{"alertname":"NodeDown"},"commonAnnotations":{},"externalURL":"http://am:9093","version":"4","groupKey":"{}:{alertname=\"NodeDown\"}","truncatedAlerts":0}"#);
    (out, n)
}

struct Shape {
    what: &'static str,
    path: String,
    body: String,
    alerts: usize,
}

#[tokio::main]
async fn main() {
    let shapes = {
        let (body, alerts) = push_body(511 * 1024, |i| format!("Rule{i}"));
        let mut v = vec![Shape {
            what: "/api/v2/alerts, 511 KB, every alert its own rule",
            path: "/api/v2/alerts".into(),
            body,
            alerts,
        }];
        let (body, alerts) = push_body(16 * MIB, |i| format!("Rule{i}"));
        v.push(Shape {
            what: "/api/v2/alerts, 16 MiB, every alert its own rule",
            path: "/api/v2/alerts".into(),
            body,
            alerts,
        });
        let (body, alerts) = push_body(16 * MIB, |_| "NodeDown".into());
        v.push(Shape {
            what: "/api/v2/alerts, 16 MiB, one rule",
            path: "/api/v2/alerts".into(),
            body,
            alerts,
        });
        let (body, alerts) = group_body(16 * MIB);
        v.push(Shape {
            what: "/hooks webhook, 16 MiB, one group",
            path: format!("/hooks/{KEY}"),
            body,
            alerts,
        });
        v
    };
    println!(
        "| request | body | alerts | status | answered in | incidents | flood | pages | peak RSS | RSS after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for shape in shapes {
        let (hook, pages) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("tocsin.toml");
        std::fs::write(&cfg, config(&dir.path().join("data"), port, &hook)).unwrap();
        let mut child = start(&cfg, port).await;
        let http = reqwest::Client::new();
        let started = Instant::now();
        let resp = http
            .post(format!("http://127.0.0.1:{port}{}", shape.path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(shape.body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        let took = started.elapsed();
        // Let the pages go out.
        let mut last = usize::MAX;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = pages.load(Ordering::Relaxed);
            if now == last && now > 0 {
                break;
            }
            last = now;
        }
        let (peak, rss) = memory(child.id());
        let listed: Value = http
            .get(format!("http://127.0.0.1:{port}/v1/incidents?limit=1000"))
            .bearer_auth("bench-api-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let incidents = listed["incidents"].as_array().map_or(0, Vec::len);
        let flood = answer["effects"]["flood"].as_u64().unwrap_or(0);
        println!(
            "| {} | {:.1} MiB | {} | {} | {:.2} s | {} | {} | {} | {:.0} MiB | {:.0} MiB |",
            shape.what,
            shape.body.len() as f64 / MIB as f64,
            shape.alerts,
            status,
            took.as_secs_f64(),
            incidents,
            flood,
            pages.load(Ordering::Relaxed),
            peak,
            rss
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
