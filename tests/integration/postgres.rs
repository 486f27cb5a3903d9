//! `tocsin serve` on `[storage] backend = "postgres"`, end to end: the real
//! binary, a real PostgreSQL (`TOCSIN_TEST_POSTGRES_URL`; `.ci/run` starts
//! one), SIGKILL and restart, and a sled backup moved into PostgreSQL.

use crate::common::receiver::Receiver;
use crate::common::*;
use crate::restart::chain;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A fresh, empty database on the test cluster; `None` (with a notice)
/// when `TOCSIN_TEST_POSTGRES_URL` is unset, except in CI, where it fails.
fn postgres_database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("TOCSIN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TOCSIN_TEST_POSTGRES_URL is unset in CI: {test} needs PostgreSQL (.ci/run starts one)"
        );
        eprintln!(
            "SKIPPED {test}: set TOCSIN_TEST_POSTGRES_URL (tests/interop/postgres-cluster.sh start DIR prints one)"
        );
        return None;
    };
    let name = format!("tocsin_it_{test}_{}", uuid::Uuid::new_v4().simple());
    count(&admin, &format!("CREATE DATABASE \"{name}\""));
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

/// Runs `sql` at `url` and returns the first column of its first row, if
/// it has one. On a thread of its own: the synchronous client starts its
/// own runtime, which it cannot on the test's.
fn count(url: &str, sql: &str) -> Option<i64> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = db.simple_query(&sql).unwrap();
        rows.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
    })
    .join()
    .unwrap()
}

/// Writes `dir/tocsin.toml` for a server on `port` storing in PostgreSQL
/// at `url` (the data directory is never made).
fn write_config(dir: &Path, port: u16, url: &str, extra: &str) {
    let text = config_text_with(
        &dir.join("data"),
        &format!("127.0.0.1:{port}"),
        Some("chain"),
        extra,
    )
    .replacen(
        "[storage]\n",
        &format!("[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n"),
        1,
    );
    std::fs::write(dir.join("tocsin.toml"), text).unwrap();
}

async fn trigger(base: &str, key: &str) -> u16 {
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": key,
                      "payload": {"summary": "postgres test", "source": "t", "severity": "critical"}});
    reqwest::Client::new()
        .post(format!("{base}/v2/enqueue"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
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

/// Waits until INC-1 has `n` delivered pages recorded.
async fn wait_delivered(base: &str, n: usize) {
    for _ in 0..250 {
        let body = get(base, "/v1/incidents/INC-1/notifications").await;
        let delivered = body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"]["state"] == "delivered")
            .count();
        if delivered >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tocsin did not record {n} deliveries");
}

#[tokio::test]
async fn serve_on_postgres_pages_and_a_sigkill_loses_nothing() {
    let Some(url) = postgres_database("serve") else {
        return;
    };
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = chain(&recv, ["3s", "1h", "1h"]);
    write_config(dir.path(), port, &url, &extra);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    assert_eq!(trigger(&server.base, "pg-1").await, 202);
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(recv.at("alice").len(), 1, "step 1 paged alice");
    wait_delivered(&server.base, 1).await;
    // The same alert again joins INC-1 (the open index, in PostgreSQL).
    assert_eq!(trigger(&server.base, "pg-1").await, 202);
    // SIGKILL with bob's step pending; stay down past its due time.
    server.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    let incidents = server.incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["id"], 1);
    let timeline = get(&server.base, "/v1/incidents/INC-1/timeline").await;
    let entries = timeline["timeline"].as_array().unwrap();
    assert!(
        entries.len() >= 3,
        "opened, paged, and the second alert: {timeline}"
    );
    // Bob's overdue step fires at start, once; alice is not paged again.
    assert!(recv.wait_for(2, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recv.at("bob").len(), 1);
    assert_eq!(recv.at("alice").len(), 1);
    // A new key opens INC-2: numbering went on in the database.
    assert_eq!(trigger(&server.base, "pg-2").await, 202);
    let ids: Vec<u64> = server
        .incidents()
        .await
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [2, 1]);
    // Nothing went to a sled directory.
    assert!(!dir.path().join("data").exists());
    assert_eq!(count(&url, "SELECT count(*) FROM incidents"), Some(2));
}

/// A sled deployment moves to PostgreSQL: `tocsin backup`, then
/// `tocsin restore --to postgres://...`, then serve from the database.
#[tokio::test]
async fn restore_moves_a_sled_deployment_into_postgres() {
    let Some(url) = postgres_database("restore") else {
        return;
    };
    let recv = Receiver::start().await;
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let sled_dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(sled_dir.path(), free_port(), Some("chain"), &extra).await;
    assert_eq!(trigger(&server.base, "moved").await, 202);
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    wait_delivered(&server.base, 1).await;
    let before = get(&server.base, "/v1/incidents/INC-1/timeline").await;
    let file = sled_dir.path().join("backup.jsonl");
    server.cli(&["backup", "--to", file.to_str().unwrap()]);
    drop(server);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["restore", "--from", file.to_str().unwrap(), "--to", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Restored into PostgreSQL"), "{said}");
    assert!(said.contains("next incident INC-2"), "{said}");
    // Restoring again into a database that holds data is refused.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["restore", "--from", file.to_str().unwrap(), "--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds tocsin data"));

    let pg_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(pg_dir.path(), port, &url, &extra);
    let server = ServerProcess::start_with(pg_dir.path(), port, Some("chain"), &extra).await;
    let after = get(&server.base, "/v1/incidents/INC-1/timeline").await;
    assert_eq!(after, before);
    // The open incident is still open: the same key joins it.
    assert_eq!(trigger(&server.base, "moved").await, 202);
    assert_eq!(server.incidents().await.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recv.received().len(), 1, "nobody paged twice");
}

/// A TCP proxy in front of PostgreSQL that can be cut (every connection
/// dropped, new ones refused) and restored: a database failover as tocsin
/// sees it.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// The database goes away under a running tocsin and comes back: alerts
/// get 503 with `Retry-After` (never a 2xx for one not stored) and
/// `/readyz` fails meanwhile; tocsin does not crash, and takes alerts
/// again once the database answers, without a restart.
#[tokio::test]
async fn while_the_database_is_unreachable_intake_answers_503_and_recovers() {
    let Some(url) = postgres_database("outage") else {
        return;
    };
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    )
    .parse()
    .unwrap();
    let proxy = Proxy::start(target).await;
    let mut via = parsed.clone();
    via.set_port(Some(proxy.port)).unwrap();
    let recv = Receiver::start().await;
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port, via.as_str(), &extra);
    let mut server = ServerProcess::start_with(dir.path(), port, Some("chain"), &extra).await;
    assert_eq!(trigger(&server.base, "before").await, 202);

    proxy.set_up(false);
    let http = reqwest::Client::new();
    let body = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "during",
                      "payload": {"summary": "postgres test", "source": "t", "severity": "critical"}});
    let r = http
        .post(format!("{}/v2/enqueue", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let said: Value = ready.json().await.unwrap();
    let store_check = said["checks"]["store"].as_str().unwrap().to_lowercase();
    assert!(store_check.contains("postgres"), "{said}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "tocsin exited while the database was away"
    );

    proxy.set_up(true);
    let mut accepted = false;
    for _ in 0..100 {
        if trigger(&server.base, "after").await == 202 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accepted,
        "intake did not recover once the database was back"
    );
    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let keys = server.dedup_keys().await;
    assert!(
        keys.contains("before") && keys.contains("after"),
        "{keys:?}"
    );
    assert!(!keys.contains("during"), "a 503'd alert was stored");
    server.kill();
}

/// A replica's directory and port on the database at `url`; started (and
/// started again) as a `tocsin serve` process.
struct Replica {
    dir: tempfile::TempDir,
    port: u16,
    extra: String,
}

impl Replica {
    fn new(url: &str, extra: &str) -> Self {
        let (dir, port) = (tempfile::tempdir().unwrap(), free_port());
        write_config(dir.path(), port, url, extra);
        Self {
            dir,
            port,
            extra: extra.to_string(),
        }
    }

    async fn start(&self) -> ServerProcess {
        ServerProcess::start_with(self.dir.path(), self.port, Some("chain"), &self.extra).await
    }
}

/// Whether the replica at `base` says it leads (`/readyz`).
async fn leads(base: &str) -> bool {
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["leader"]
        .as_bool()
        .expect("readyz says whether it leads")
}

/// Polls until the replica at `base` leads; how long that took.
async fn until_leads(base: &str, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if leads(base).await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not take the lead within {within:?}");
}

async fn leader_gauge(base: &str) -> String {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("tocsin_leader "))
        .unwrap_or_else(|| panic!("no tocsin_leader in {text}"))
        .to_string()
}

/// Two replicas on one database: exactly one leads (holds the singleton
/// lock); when it is SIGKILLed the other takes over within seconds, a
/// restarted one follows, and one stopped with SIGTERM hands over at once.
#[tokio::test]
async fn one_replica_leads_and_a_survivor_takes_over_when_it_dies() {
    let Some(url) = postgres_database("leader") else {
        return;
    };
    let recv = Receiver::start().await;
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let (ra, rb) = (Replica::new(&url, &extra), Replica::new(&url, &extra));
    let mut a = ra.start().await;
    until_leads(&a.base, Duration::from_secs(5)).await;
    let mut b = rb.start().await;
    // b tries every second and is refused while a lives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(leads(&a.base).await);
    assert!(!leads(&b.base).await, "two replicas must not both lead");
    assert_eq!(leader_gauge(&a.base).await, "tocsin_leader 1");
    assert_eq!(leader_gauge(&b.base).await, "tocsin_leader 0");
    // Both serve intake all the while.
    assert_eq!(trigger(&b.base, "on-b").await, 202);
    assert_eq!(trigger(&a.base, "on-a").await, 202);

    // SIGKILL the leader: its session closes, and b takes over.
    a.kill();
    let took = until_leads(&b.base, Duration::from_secs(10)).await;
    eprintln!("takeover after SIGKILL: {took:?}");
    assert_eq!(leader_gauge(&b.base).await, "tocsin_leader 1");

    // A restarted replica follows the one that leads.
    let mut a = ra.start().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!leads(&a.base).await);
    assert!(leads(&b.base).await);

    // SIGTERM: b lets the lock go as it stops, and a takes over.
    assert!(b.terminate().success());
    let took = until_leads(&a.base, Duration::from_secs(5)).await;
    eprintln!("takeover after SIGTERM: {took:?}");
    let incidents = a.incidents().await;
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    a.terminate();
}

/// An override made on one replica pages its person on another: runtime
/// overrides are read again from the database, not trusted from the cache.
#[tokio::test]
async fn an_override_made_on_one_replica_pages_on_another() {
    let Some(url) = postgres_database("override") else {
        return;
    };
    let recv = Receiver::start().await;
    let extra = format!(
        r#"
[[users]]
name = "alice"
webhook = {{ url = "{a}" }}
contact_methods = [{{ kind = "webhook" }}]
[[users]]
name = "bob"
webhook = {{ url = "{b}" }}
contact_methods = [{{ kind = "webhook" }}]
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "always-alice"
users = ["alice"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * Mon"
[[escalation_policies]]
name = "chain"
[[escalation_policies.steps]]
targets = [{{ schedule = "primary" }}]
delay = "1h"
"#,
        a = recv.url("alice"),
        b = recv.url("bob"),
    );
    let (ra, rb) = (Replica::new(&url, &extra), Replica::new(&url, &extra));
    let (a, b) = (ra.start().await, rb.start().await);
    let now = tocsin::clock::Clock::now(&tocsin::clock::SystemClock);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/schedules/primary/overrides", b.base))
        .bearer_auth(API_TOKEN)
        .json(
            &json!({"user": "bob", "start": now - chrono::Duration::minutes(1),
                      "end": now + chrono::Duration::hours(1)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    // Within a tick of the election, a knows it too.
    let mut seen = false;
    for _ in 0..60 {
        let list = get(&a.base, "/v1/schedules/primary/overrides").await;
        if list["overrides"].as_array().is_some_and(|l| l.len() == 1) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "replica a never read b's override");
    assert_eq!(trigger(&a.base, "covered").await, 202);
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(recv.at("bob").len(), 1, "bob covers: {:?}", recv.received());
    assert!(recv.at("alice").is_empty());
}

/// A replica that dies with an escalation step pending: a survivor,
/// which no write of its own woke, fires the step on time (it looks every
/// second on a shared database), once.
#[tokio::test]
async fn a_survivor_fires_the_step_a_dead_replica_scheduled() {
    let Some(url) = postgres_database("survivor") else {
        return;
    };
    let recv = Receiver::start().await;
    let extra = chain(&recv, ["2s", "1h", "1h"]);
    let (ra, rb) = (Replica::new(&url, &extra), Replica::new(&url, &extra));
    let (mut a, b) = (ra.start().await, rb.start().await);
    // Let b's scheduler go idle, so only a wake-up (a's NOTIFY) or its
    // polling can find a's timer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(trigger(&a.base, "dies").await, 202);
    assert!(recv.wait_for(1, Duration::from_secs(5)).await);
    assert_eq!(recv.at("alice").len(), 1);
    let paged = std::time::Instant::now();
    a.kill();
    assert!(
        recv.wait_for(2, Duration::from_secs(6)).await,
        "b never fired bob's step"
    );
    let late = paged.elapsed();
    eprintln!("bob's 2s step fired by the survivor after {late:?}");
    assert!(late < Duration::from_secs(5), "{late:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(recv.at("bob").len(), 1, "once");
    assert_eq!(recv.at("alice").len(), 1);
    drop(b);
}

/// A change event recorded through one replica shows on an incident
/// another replica opens: each replica reads the services' latest changes
/// again every few seconds on a shared database.
#[tokio::test]
async fn a_change_recorded_on_one_replica_shows_on_another() {
    let Some(url) = postgres_database("changes") else {
        return;
    };
    let recv = Receiver::start().await;
    let extra = chain(&recv, ["1h", "1h", "1h"]);
    let (ra, rb) = (Replica::new(&url, &extra), Replica::new(&url, &extra));
    let (a, b) = (ra.start().await, rb.start().await);
    let now = tocsin::clock::Clock::now(&tocsin::clock::SystemClock);
    let status = reqwest::Client::new()
        .post(format!("{}/v2/change/enqueue", b.base))
        .json(&json!({"routing_key": PD_KEY,
                      "payload": {"summary": "Deploy payments 2026.12.3", "source": "deploybot",
                                  "timestamp": now.to_rfc3339()}}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    // a reads the changes again within ten election ticks.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(trigger(&a.base, "after-deploy").await, 202);
    let inc = get(&a.base, "/v1/incidents/INC-1").await;
    let changes = inc["incident"]["recent_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{inc}");
    assert_eq!(changes[0]["summary"], "Deploy payments 2026.12.3");
}
