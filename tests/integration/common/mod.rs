//! Test harness: a tocsin served on 127.0.0.1:0 over a fresh data directory.

pub mod fake_discord;
pub mod fake_ntfy;
pub mod fake_slack;
pub mod fake_twilio;
pub mod receiver;
pub mod smtp;
pub mod spec;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tocsin::app::App;
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::Config;
use tocsin::store::{SledStore, Store};

pub const API_TOKEN: &str = "test-api-token";
pub const AM_KEY: &str = "test-alertmanager-key";
pub const GRAFANA_KEY: &str = "test-grafana-key";
pub const PD_KEY: &str = "test-pagerduty-key";
pub const GENERIC_KEY: &str = "test-generic-key";

/// The base configuration, with an escalation policy for `payments` and
/// more TOML (users, schedules, policies) appended.
pub fn config_text_with(
    data: &Path,
    listen: &str,
    payments_policy: Option<&str>,
    extra: &str,
) -> String {
    let policy = payments_policy
        .map(|p| format!("escalation_policy = \"{p}\""))
        .unwrap_or_default();
    format!(
        r#"
[server]
listen = "{listen}"
[storage]
path = "{data}"
[api]
token = "{API_TOKEN}"
[[services]]
name = "api"
[[services]]
name = "payments"
{policy}
[[integrations]]
name = "am"
kind = "alertmanager"
key = "{AM_KEY}"
service = "api"
[[integrations]]
name = "grafana"
kind = "grafana"
key = "{GRAFANA_KEY}"
service = "api"
[[integrations]]
name = "pd"
kind = "pagerduty"
key = "{PD_KEY}"
service = "payments"
[[integrations]]
name = "scripts"
kind = "generic"
key = "{GENERIC_KEY}"
service = "payments"
{extra}
"#,
        data = data.display()
    )
}

/// A running in-process server.
pub struct TestApp {
    /// The API listener (with one listener, everything).
    pub addr: SocketAddr,
    /// The public listener (`addr` when there is one listener).
    pub public_addr: SocketAddr,
    pub http: reqwest::Client,
    pub store: Arc<SledStore>,
    pub service: tocsin::service::Service,
    pub worker: tocsin::notify::worker::Worker,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_clock(Arc::new(SystemClock)).await
}

pub async fn spawn_app_with_clock(clock: Arc<dyn Clock>) -> TestApp {
    spawn_app_with(clock, None, "").await
}

/// A server with paging config; background tasks are NOT started: tests
/// drive time with `fire()` and `deliver()`, or call `start_background()`.
pub async fn spawn_app_with(
    clock: Arc<dyn Clock>,
    payments_policy: Option<&str>,
    extra: &str,
) -> TestApp {
    spawn_app_with_limits(clock, payments_policy, extra, test_limits()).await
}

/// The test server's connection limits: short timeouts, so tests of them
/// take seconds.
pub fn test_limits() -> tocsin::http::Limits {
    tocsin::http::Limits {
        max_connections: 512,
        request_timeout: std::time::Duration::from_secs(2),
        // Well above the client's 500 ms pool idle time: a loaded machine
        // (the whole suite on two cores) must not see the server close a
        // connection the client is reusing at that moment.
        idle_timeout: std::time::Duration::from_secs(5),
        shutdown_grace: std::time::Duration::from_secs(5),
    }
}

/// [`spawn_app_with`] with the server's connection limits.
pub async fn spawn_app_with_limits(
    clock: Arc<dyn Clock>,
    payments_policy: Option<&str>,
    extra: &str,
    limits: tocsin::http::Limits,
) -> TestApp {
    spawn_app_with_server(clock, payments_policy, extra, limits, "").await
}

/// [`spawn_app_with_limits`] with more `[server]` keys (`server` is TOML
/// lines for that table).
pub async fn spawn_app_with_server(
    clock: Arc<dyn Clock>,
    payments_policy: Option<&str>,
    extra: &str,
    limits: tocsin::http::Limits,
    server: &str,
) -> TestApp {
    spawn(clock, payments_policy, extra, limits, server, false).await
}

/// A server with two listeners: the API on `addr`, intake and the chat
/// platforms on `public_addr` (`server` is more `[server]` TOML).
pub async fn spawn_split(extra: &str, server: &str) -> TestApp {
    spawn(
        Arc::new(SystemClock),
        None,
        extra,
        test_limits(),
        server,
        true,
    )
    .await
}

async fn spawn(
    clock: Arc<dyn Clock>,
    payments_policy: Option<&str>,
    extra: &str,
    limits: tocsin::http::Limits,
    server: &str,
    split: bool,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = config_text_with(&data, "127.0.0.1:0", payments_policy, extra).replacen(
        "[server]\n",
        &format!("[server]\n{server}\n"),
        1,
    );
    let config = Config::from_toml_str(&text, &HashMap::new())
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let store = Arc::new(SledStore::open(&data).unwrap());
    let app = App::new(config, store.clone(), clock).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let public = if split {
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let public_addr = public.as_ref().map_or(addr, |l| l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let service = app.service.clone();
    let worker = app.worker.clone();
    let (stop, _) = tokio::sync::watch::channel(false);
    let listeners = tocsin::app::Listeners {
        api: listener,
        public,
    };
    let handle = tokio::spawn(async move {
        tocsin::app::serve(
            &app,
            listeners,
            async {
                let _ = rx.await;
            },
            limits,
        )
        .await
        .unwrap();
    });
    TestApp {
        addr,
        public_addr,
        // Idle connections are dropped long before the server's 5 s idle
        // timeout closes them: a request sent on a connection the server is
        // closing at that instant fails with IncompleteMessage.
        http: reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_millis(500))
            .build()
            .unwrap(),
        store,
        service,
        worker,
        stop,
        _dir: dir,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    /// A URL on the API listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the public listener.
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{}", self.public_addr, path)
    }

    /// POSTs raw bytes as JSON; returns status and parsed body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        // Intake on the public listener; the API on the API listener.
        let url = if path.starts_with("/v1/") {
            self.url(path)
        } else {
            self.public_url(path)
        };
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_with_token(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GETs with the bootstrap token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, Some(API_TOKEN)).await
    }

    /// GETs with `token` (or none).
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A GET's body as text (`/metrics`, summaries), with the bootstrap token.
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.text().await.unwrap()
    }

    /// All incidents, newest first.
    pub async fn incidents(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/incidents?limit=10000").await;
        assert_eq!(status, 200, "{body}");
        body["incidents"].as_array().unwrap().clone()
    }

    /// The idempotency key `user`'s first page for incident `id` carried,
    /// as receivers and platforms saw it.
    pub async fn page_key(&self, id: &str, user: &str) -> String {
        let (_, n) = self.get(&format!("/v1/incidents/{id}/notifications")).await;
        n["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["recipient"] == json!({"kind": "user", "name": user}))
            .unwrap_or_else(|| panic!("no page to {user} for {id}: {n:#}"))["idempotency_key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/incidents/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Sends a PagerDuty Events v2 event.
    pub async fn pd(&self, action: &str, dedup: &str, summary: &str) -> (u16, Value) {
        let mut body = json!({"routing_key": PD_KEY, "event_action": action, "dedup_key": dedup});
        if action == "trigger" {
            body["payload"] = json!({"summary": summary, "source": "test", "severity": "error"});
        }
        self.post_json("/v2/enqueue", &body).await
    }

    /// What is in the store: (events, incidents).
    pub fn store_counts(&self) -> (u64, usize) {
        (
            self.store.event_count().unwrap(),
            self.store.incidents(None, None, usize::MAX).unwrap().len(),
        )
    }

    /// Fires the timers due now.
    pub async fn fire(&self) -> usize {
        let now = self.service.clock().now();
        self.service.fire_due_timers(now).await.unwrap()
    }

    /// Fires due timers and delivers due pages until nothing more is due now.
    pub async fn tick(&self) {
        loop {
            let fired = self.fire().await;
            let delivered = self.worker.deliver_due().await;
            if fired == 0 && delivered == 0 {
                return;
            }
        }
    }

    /// Runs the real scheduler and outbox worker in the background.
    pub fn start_background(&self) {
        let (service, worker) = (self.service.clone(), self.worker.clone());
        tokio::spawn(tocsin::escalation::scheduler::run(
            service,
            self.stop.subscribe(),
        ));
        tokio::spawn(worker.run(self.stop.subscribe(), std::time::Duration::from_secs(1)));
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

pub fn fixture(path: &str) -> Vec<u8> {
    let full: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

/// `[intake]` limits no load test reaches: thousands of distinct keys in a
/// few seconds would otherwise (rightly) go to a flood incident.
pub const UNLIMITED_INTAKE: &str =
    "\n[intake]\nmax_new_incidents_per_request = 1000000\nmax_new_incidents_per_minute = 1000000\n";

/// The real `tocsin` binary serving on a free port, as a child process.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
    pub config: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Runs the `tocsin` CLI with `args` and this server's config; its
    /// stdout, after checking that it succeeded.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Every incident, as `GET /v1/incidents` lists them.
    pub async fn incidents(&self) -> Vec<Value> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/v1/incidents?limit=10000", self.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["incidents"].as_array().unwrap().clone()
    }

    /// The dedup keys of every incident.
    pub async fn dedup_keys(&self) -> std::collections::HashSet<String> {
        self.incidents()
            .await
            .iter()
            .map(|i| i["dedup_key"].as_str().unwrap().to_string())
            .collect()
    }

    /// Writes a config for `data` in `dir` (once) and starts the server,
    /// with flood limits out of the way of load tests.
    pub async fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, None, UNLIMITED_INTAKE).await
    }

    /// Like `start`, with an escalation policy for `payments` and more TOML.
    pub async fn start_with(dir: &Path, port: u16, policy: Option<&str>, extra: &str) -> Self {
        let config = dir.join("tocsin.toml");
        if !config.exists() {
            let text = config_text_with(
                &dir.join("data"),
                &format!("127.0.0.1:{port}"),
                policy,
                extra,
            );
            std::fs::write(&config, text).unwrap();
        }
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("tocsin at {} did not become ready", self.base);
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the Slack and Discord tests share: quick retries, alice (on call,
/// paged by chat DM), bob (paged by chat DM at step 2), carol (no chat id),
/// and a two-step policy for `payments`. `platform` is `slack` or
/// `discord`; the ids are the users' ids there.
pub fn chat_people(platform: &str, alice_id: &str, bob_id: &str, archive_after: &str) -> String {
    chat_people_with(platform, alice_id, bob_id, archive_after, "")
}

/// [`chat_people`] with more `[chat]` keys (`chat` is TOML lines), and
/// dave: a tocsin user with a chat id who is nobody's responder.
pub fn chat_people_with(
    platform: &str,
    alice_id: &str,
    bob_id: &str,
    archive_after: &str,
    chat: &str,
) -> String {
    format!(
        r#"
[notify]
initial_backoff = "200ms"
max_backoff = "2s"
give_up_after = "1m"
request_timeout = "5s"

[chat]
admins = ["alice"]
archive_after = "{archive_after}"
{chat}

[[users]]
name = "alice"
{platform}_id = "{alice_id}"
contact_methods = [{{ kind = "{platform}" }}]

[[users]]
name = "bob"
{platform}_id = "{bob_id}"
contact_methods = [{{ kind = "{platform}" }}]

[[users]]
name = "carol"
contact_methods = [{{ kind = "log" }}]

[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "everyone-alice"
users = ["alice"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * Mon"

[[escalation_policies]]
name = "payments"
[[escalation_policies.steps]]
targets = [{{ schedule = "primary" }}]
delay = "5m"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "10m"
"#
    )
}

/// The first entry of `kind` in a timeline as the API returns it.
pub fn timeline_entry<'a>(timeline: &'a Value, kind: &str) -> &'a Value {
    timeline
        .as_array()
        .expect("a timeline array")
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} entry in {timeline}"))
}

/// Waits until the incident's `post_summary` job on `platform` is
/// delivered (after its retries), up to 20 s.
pub async fn wait_summary_delivered(app: &TestApp, incident: &str, platform: &str) -> Value {
    for _ in 0..400 {
        let notes = app
            .get(&format!("/v1/incidents/{incident}/notifications"))
            .await
            .1;
        if let Some(n) = notes["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| {
                n["job"] == "post_summary"
                    && n["key"].as_str().unwrap_or_default().contains(platform)
                    && n["state"]["state"] == "delivered"
            })
        {
            return n.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the {platform} summary of {incident} was not delivered: {}",
        app.get(&format!("/v1/incidents/{incident}/notifications"))
            .await
            .1
    );
}
