//! A fake Discord on loopback: the REST API (`/api/v10/...`) answering the
//! documented object shapes (channels, messages, DM channels, application
//! commands, interaction webhooks) and recording every call, and a small
//! gateway (websocket) that speaks HELLO, IDENTIFY, READY, heartbeats and
//! dispatches the interactions a test hands it. It can answer 429 with
//! Discord's JSON body and rate-limit headers, 500, or do the work and then
//! answer 500 (a lost response).
//!
//! Messages with files come as multipart form data, as Discord documents:
//! `payload_json` and `files[n]` parts, each named in the payload's
//! `attachments` by id. The fake refuses a multipart body without
//! `payload_json` (50006), a file over Discord's default 10 MiB (40005),
//! an attachment the payload names without its part, and embeds over
//! their limits (title 256, description 4,096, 25 fields, field name 256
//! and value 1,024, footer 2,048, 10 embeds, 6,000 characters in all);
//! it keeps each message's files for the tests.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const GUILD: &str = "1100000000000000001";
pub const APPLICATION: &str = "1100000000000000002";
pub const BOT_USER: &str = "1100000000000000003";
pub const GENERAL: &str = "1100000000000000004";

/// One recorded REST call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The route's name, like `create_message`.
    pub route: &'static str,
    pub method: String,
    /// The path after `/api/v10`.
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A scripted failure.
#[derive(Debug, Clone)]
pub enum Fail {
    /// 429 with `{"message":"You are being rate limited.","retry_after":secs,"global":false}`
    /// and the `Retry-After` and `X-RateLimit-*` headers.
    RateLimited(f64),
    /// 429 with the `Retry-After` header only (no JSON body).
    RateLimitedHeaderOnly(u32),
    /// HTTP 500.
    ServerError,
    /// Does the work, then answers 500: the response is lost.
    LoseResponse,
    /// Answers as usual (to script a failure of a later call).
    Pass,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    failures: HashMap<&'static str, VecDeque<Fail>>,
    /// Guild channels, as channel objects.
    channels: Vec<Value>,
    /// channel id → its messages, oldest first.
    messages: HashMap<String, Vec<Value>>,
    /// user id → DM channel id.
    dms: HashMap<String, String>,
    seq: u64,
    /// Interactions for the gateway to dispatch.
    dispatch: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    /// What the gateway received (IDENTIFY and heartbeats).
    gateway_received: Vec<Value>,
    /// channel id → its message bucket: when the window began, and how
    /// many messages it has taken.
    bucket: HashMap<String, (std::time::Instant, usize)>,
    /// 429s answered for a full bucket.
    limited: usize,
    /// Requests the published spec refuses (see `spec.rs`).
    violations: Vec<String>,
    /// message id → its files (name, bytes).
    files: HashMap<String, Vec<(String, Vec<u8>)>>,
    /// (route, text): the next call of the route whose body contains the
    /// text is done and its answer lost.
    lose_when: Vec<(&'static str, String)>,
}

/// Discord's default upload limit (a server without boosts): 10 MiB.
pub const ATTACHMENT_MAX: usize = 10 * 1024 * 1024;

/// One part of a multipart/form-data body: (name, filename, bytes).
pub type FormPart = (String, Option<String>, Vec<u8>);

/// The parts of a multipart/form-data body.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<FormPart>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        (from..=hay.len().saturating_sub(needle.len())).find(|&i| hay[i..].starts_with(needle))
    };
    let mut parts = Vec::new();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Some(parts);
        }
        let head_start = at + 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", head_start)?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]).to_string();
        let next = find(body, &delimiter, head_end + 4)?;
        let content = body[head_end + 4..next - 2].to_vec(); // CRLF before the delimiter
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?
            .to_string();
        let param = |key: &str| {
            disposition.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        parts.push((param("name")?, param("filename"), content));
        at = next + delimiter.len();
    }
}

/// Discord's "Invalid Form Body" if a message's embeds break its limits.
pub fn invalid_embeds(body: &Value) -> Option<Value> {
    let embeds = body.get("embeds").and_then(Value::as_array)?;
    let n = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let refuse = |path: String, message: String| {
        Some(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {path: {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]}},
        }))
    };
    if embeds.len() > 10 {
        return refuse("embeds".into(), "Must be 10 or fewer in length.".into());
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        for (key, max) in [("title", 256), ("description", 4096)] {
            let len = n(&e[key]);
            if len > max {
                return refuse(
                    format!("embeds.{i}.{key}"),
                    format!("Must be {max} or fewer in length."),
                );
            }
            total += len;
        }
        let footer = n(&e["footer"]["text"]);
        if footer > 2048 {
            return refuse(
                format!("embeds.{i}.footer.text"),
                "Must be 2048 or fewer in length.".into(),
            );
        }
        total += footer + n(&e["author"]["name"]);
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return refuse(
                format!("embeds.{i}.fields"),
                "Must be 25 or fewer in length.".into(),
            );
        }
        for (j, f) in fields.iter().enumerate() {
            if n(&f["name"]) > 256 {
                return refuse(
                    format!("embeds.{i}.fields.{j}.name"),
                    "Must be 256 or fewer in length.".into(),
                );
            }
            if n(&f["value"]) > 1024 {
                return refuse(
                    format!("embeds.{i}.fields.{j}.value"),
                    "Must be 1024 or fewer in length.".into(),
                );
            }
            total += n(&f["name"]) + n(&f["value"]);
        }
    }
    (total > 6000).then(|| {
        json!({"message": "Invalid Form Body", "code": 50035,
               "errors": {"embeds": {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED",
                   "message": "Embed size exceeds maximum size of 6000"}]}}})
    })
}

/// Discord's per-channel bucket for creating messages: 5 per 5 seconds, a
/// fixed window from the first message (as `X-RateLimit-Reset-After` says).
pub const BUCKET_LIMIT: usize = 5;
pub const BUCKET_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);
/// The hash Discord names the message bucket with: one for the route, the
/// channel (the major parameter) telling the buckets apart.
pub const BUCKET_HASH: &str = "80c17d2f203122d936070c88c8d10f33";

/// Discord's "Invalid Form Body" if a message's components break its
/// limits (custom_ids unique and at most 100 characters, at most 5 buttons
/// a row and 5 rows); `None` if they are fine.
pub fn invalid_components(body: &Value) -> Option<Value> {
    let rows = body.get("components").and_then(Value::as_array)?;
    let refuse = |path: String, code: &str, message: String| {
        Some(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {path: {"_errors": [{"code": code, "message": message}]}},
        }))
    };
    if rows.len() > 5 {
        return refuse(
            "components".into(),
            "BASE_TYPE_MAX_LENGTH",
            "Must be 5 or fewer in length.".into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let items = row["components"].as_array().cloned().unwrap_or_default();
        if items.len() > 5 {
            return refuse(
                format!("components.{r}.components"),
                "BASE_TYPE_MAX_LENGTH",
                "Must be 5 or fewer in length.".into(),
            );
        }
        for (i, c) in items.iter().enumerate() {
            let Some(id) = c.get("custom_id").and_then(Value::as_str) else {
                continue;
            };
            if id.chars().count() > 100 {
                return refuse(
                    format!("components.{r}.components.{i}.custom_id"),
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.".into(),
                );
            }
            if !seen.insert(id.to_string()) {
                return refuse(
                    format!("components.{r}.components.{i}.custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated".into(),
                );
            }
        }
    }
    None
}

#[derive(Clone, Default)]
pub struct FakeDiscord {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
    pub gateway_addr: Option<SocketAddr>,
    notify: Arc<tokio::sync::Notify>,
}

fn user_obj(id: &str, name: &str, bot: bool) -> Value {
    json!({"id": id, "username": name, "discriminator": "0", "global_name": null,
           "avatar": null, "bot": bot, "public_flags": 0})
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let mut s = FakeDiscord::default();
        s.inner.lock().channels.push(json!({
            "id": GENERAL, "type": 0, "name": "general", "guild_id": GUILD,
            "parent_id": null, "position": 0, "permission_overwrites": [], "topic": null, "nsfw": false
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        s.addr = Some(listener.local_addr().unwrap());
        let gw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        s.gateway_addr = Some(gw.local_addr().unwrap());
        let app = Router::new()
            .route("/api/v10/{*path}", axum::routing::any(api))
            // Discord's own limit answers, not axum's 2 MB default.
            .layer(axum::extract::DefaultBodyLimit::max(4 * ATTACHMENT_MAX))
            .with_state(s.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let fake = s.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = gw.accept().await {
                tokio::spawn(gateway_session(fake.clone(), stream));
            }
        });
        s
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    pub fn fail(&self, route: &'static str, failures: &[Fail]) {
        self.inner
            .lock()
            .failures
            .entry(route)
            .or_default()
            .extend(failures.iter().cloned());
    }

    /// Does the next call of `route` whose body contains `needle`, then
    /// answers 500: the answer is lost.
    pub fn lose_answer_when(&self, route: &'static str, needle: &str) {
        self.inner.lock().lose_when.push((route, needle.into()));
    }

    /// Every call so far; panics if any broke the published spec, so a
    /// test cannot pass on a request Discord would refuse.
    pub fn calls(&self) -> Vec<Call> {
        let inner = self.inner.lock();
        assert!(
            inner.violations.is_empty(),
            "fake Discord: requests the published spec refuses: {:#?}",
            inner.violations
        );
        inner.calls.clone()
    }

    /// The requests the published spec refused, taken (for a test that
    /// sends them on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.lock().violations)
    }

    /// How many requests the fake answered with 429 for being over a bucket
    /// (scripted failures not counted).
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().limited
    }

    /// Successful calls of one route.
    pub fn ok_calls(&self, route: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route == route && (200..300).contains(&c.status))
            .collect()
    }

    pub fn channel(&self, id: &str) -> Option<Value> {
        self.inner
            .lock()
            .channels
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
    }

    pub fn channel_named(&self, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .channels
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    pub fn messages(&self, channel: &str) -> Vec<Value> {
        self.inner
            .lock()
            .messages
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// The files of the messages in `channel`, in order: (name, content).
    pub fn attachments(&self, channel: &str) -> Vec<(String, Vec<u8>)> {
        let inner = self.inner.lock();
        inner
            .messages
            .get(channel)
            .into_iter()
            .flatten()
            .flat_map(|m| {
                inner
                    .files
                    .get(m["id"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The DM channel of a user, once opened.
    pub fn dm_of(&self, user: &str) -> Option<String> {
        self.inner.lock().dms.get(user).cloned()
    }

    /// Adds a channel as if made by hand (for the "category exists" path).
    pub fn add_channel(&self, kind: u8, name: &str, parent: Option<&str>) -> String {
        let mut inner = self.inner.lock();
        inner.seq += 1;
        let id = snowflake(inner.seq);
        inner.channels.push(json!({
            "id": id, "type": kind, "name": name, "guild_id": GUILD, "parent_id": parent,
            "position": 0, "permission_overwrites": [], "topic": null, "nsfw": false
        }));
        id
    }

    /// Hands an interaction to the gateway for an INTERACTION_CREATE dispatch.
    pub fn dispatch_interaction(&self, interaction: Value) {
        let tx = self
            .inner
            .lock()
            .dispatch
            .clone()
            .expect("no gateway session yet");
        tx.send(interaction).unwrap();
    }

    pub fn gateway_connected(&self) -> bool {
        self.inner.lock().dispatch.is_some()
    }

    pub fn gateway_received(&self) -> Vec<Value> {
        self.inner.lock().gateway_received.clone()
    }

    /// Waits for a successful call to `route` at `path`, and returns it.
    pub async fn wait_for_call(&self, route: &str, path: &str) -> Call {
        let found = |f: &FakeDiscord| f.ok_calls(route).into_iter().find(|c| c.path == path);
        self.wait_until(&format!("{route} at {path}"), |f| found(f).is_some())
            .await;
        found(self).expect("seen by wait_until")
    }

    /// Waits until `check` holds, up to 10 s.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&FakeDiscord) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check(self) {
            let notified = self.notify.notified();
            let tick = tokio::time::sleep(std::time::Duration::from_millis(50));
            tokio::select! {
                _ = notified => {}
                _ = tick => {}
            }
            if tokio::time::Instant::now() > deadline && !check(self) {
                panic!(
                    "fake Discord: timed out waiting for {what}; calls: {:#?}",
                    self.inner.lock().calls
                );
            }
        }
    }
}

fn snowflake(seq: u64) -> String {
    (1_200_000_000_000_000_000u64 + seq).to_string()
}

const TIMESTAMP: &str = "2026-01-05T10:00:00.000000+00:00";

fn message_obj(id: &str, channel: &str, body: &Value) -> Value {
    json!({
        "id": id,
        "channel_id": channel,
        "author": user_obj(BOT_USER, "tocsin", true),
        "content": body.get("content").cloned().unwrap_or(json!("")),
        "timestamp": TIMESTAMP,
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
        "components": body.get("components").cloned().unwrap_or(json!([])),
        "pinned": false,
        "type": 0,
        "flags": 0,
        "nonce": body.get("nonce").cloned().unwrap_or(Value::Null),
    })
}

/// Which documented route a request is, by method and path.
fn route_of(method: &Method, parts: &[&str]) -> &'static str {
    match (method.as_str(), parts) {
        ("GET", ["guilds", _, "channels"]) => "list_channels",
        ("POST", ["guilds", _, "channels"]) => "create_channel",
        ("PATCH", ["channels", _]) => "edit_channel",
        ("PUT", ["channels", _, "permissions", _]) => "put_permission",
        ("POST", ["channels", _, "messages"]) => "create_message",
        ("PATCH", ["channels", _, "messages", _]) => "edit_message",
        ("POST", ["users", "@me", "channels"]) => "create_dm",
        ("GET", ["users", "@me"]) => "current_user",
        ("PUT", ["applications", _, "guilds", _, "commands"]) => "register_commands",
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) => "edit_original",
        ("DELETE", ["webhooks", _, _, "messages", "@original"]) => "delete_original",
        ("POST", ["webhooks", _, _]) => "followup",
        ("POST", ["interactions", _, _, "callback"]) => "interaction_callback",
        ("GET", ["gateway"]) | ("GET", ["gateway", "bot"]) => "gateway",
        _ => "unknown",
    }
}

async fn api(
    State(s): State<FakeDiscord>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _ = uri;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let route = route_of(&method, &parts);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // A multipart body: the payload, its files, or why Discord refuses it.
    let mut files: Vec<(u64, String, Vec<u8>)> = Vec::new();
    let mut form_refusal: Option<(u16, Value)> = None;
    let req: Value = if content_type.starts_with("multipart/form-data") {
        let parts = multipart_parts(&content_type, &body).unwrap_or_default();
        let payload = parts
            .iter()
            .find(|(name, _, _)| name == "payload_json")
            .and_then(|(_, _, b)| serde_json::from_slice::<Value>(b).ok());
        for (name, filename, bytes) in &parts {
            if let Some(n) = name
                .strip_prefix("files[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                if bytes.len() > ATTACHMENT_MAX {
                    form_refusal = Some((
                        413,
                        json!({"message": "Request entity too large", "code": 40005}),
                    ));
                }
                files.push((
                    n,
                    filename.clone().unwrap_or_else(|| name.clone()),
                    bytes.clone(),
                ));
            }
        }
        match payload {
            None => {
                form_refusal.get_or_insert((
                    400,
                    json!({"message": "Cannot send an empty message", "code": 50006}),
                ));
                Value::Null
            }
            Some(p) => {
                for a in p["attachments"].as_array().into_iter().flatten() {
                    let id = a["id"]
                        .as_u64()
                        .or_else(|| a["id"].as_str().and_then(|s| s.parse().ok()));
                    if !id.is_some_and(|id| files.iter().any(|(n, _, _)| *n == id)) {
                        form_refusal.get_or_insert((
                            400,
                            json!({"message": "Invalid Form Body", "code": 50035,
                            "errors": {"attachments": {"_errors": [{"code": "ATTACHMENT_NOT_FOUND",
                                "message": "Attachment data not found"}]}}}),
                        ));
                    }
                }
                p
            }
        }
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut inner = s.inner.lock();
    let mut failure = inner.failures.get_mut(route).and_then(|q| q.pop_front());
    if failure.is_none() {
        let text = req.to_string();
        if let Some(i) = inner
            .lose_when
            .iter()
            .position(|(r, needle)| *r == route && text.contains(needle.as_str()))
        {
            inner.lose_when.remove(i);
            failure = Some(Fail::LoseResponse);
        }
    }
    let mut extra_headers: Vec<(&'static str, String)> = Vec::new();
    let (status, answer) = match failure {
        Some(Fail::RateLimited(secs)) => {
            extra_headers.push(("retry-after", format!("{}", secs.ceil() as u64)));
            extra_headers.push(("x-ratelimit-limit", "5".into()));
            extra_headers.push(("x-ratelimit-remaining", "0".into()));
            extra_headers.push(("x-ratelimit-reset-after", format!("{secs}")));
            extra_headers.push(("x-ratelimit-bucket", "fake-bucket".into()));
            extra_headers.push(("x-ratelimit-scope", "user".into()));
            (
                429,
                json!({"message": "You are being rate limited.", "retry_after": secs, "global": false}),
            )
        }
        Some(Fail::RateLimitedHeaderOnly(secs)) => {
            extra_headers.push(("retry-after", secs.to_string()));
            (429, Value::Null)
        }
        Some(Fail::ServerError) => (
            500,
            json!({"message": "500: Internal Server Error", "code": 0}),
        ),
        _ if form_refusal.is_some() => form_refusal.clone().expect("checked"),
        Some(Fail::LoseResponse) => {
            let _ = perform(&mut inner, route, &parts, &req, &s, &files);
            (
                500,
                json!({"message": "500: Internal Server Error", "code": 0}),
            )
        }
        Some(Fail::Pass) | None => {
            let spec = (route != "gateway")
                .then(|| super::spec::discord_refusal(method.as_str(), &parts, &req))
                .flatten();
            if let Some((refusal, why)) = spec {
                eprintln!("fake Discord: the published spec refuses {why}");
                inner.violations.push(why);
                (400, refusal)
            } else if let Some(refusal) = matches!(
                route,
                "create_message" | "edit_message" | "edit_original" | "followup"
            )
            .then(|| invalid_components(&req).or_else(|| invalid_embeds(&req)))
            .flatten()
            {
                (400, refusal)
            } else if let Some(wait) = (route == "create_message")
                .then(|| bucket_wait(&mut inner, parts[1]))
                .flatten()
            {
                let secs = wait.as_secs_f64();
                extra_headers.push(("retry-after", format!("{}", secs.ceil() as u64)));
                extra_headers.extend(bucket_headers(0, wait));
                extra_headers.push(("x-ratelimit-scope", "user".into()));
                inner.limited += 1;
                (
                    429,
                    json!({"message": "You are being rate limited.", "retry_after": (secs * 1000.0).ceil() / 1000.0, "global": false}),
                )
            } else {
                let (status, answer) = perform(&mut inner, route, &parts, &req, &s, &files);
                if route == "create_message" && status == 200 {
                    let now = std::time::Instant::now();
                    let window = inner.bucket.entry(parts[1].to_string()).or_insert((now, 0));
                    window.1 += 1;
                    let reset = BUCKET_WINDOW.saturating_sub(now.duration_since(window.0));
                    let left = BUCKET_LIMIT - window.1;
                    extra_headers.extend(bucket_headers(left, reset));
                }
                (status, answer)
            }
        }
    };
    inner.calls.push(Call {
        route,
        method: method.to_string(),
        path: format!("/{path}"),
        body: req,
        authorization,
        status,
        at: std::time::Instant::now(),
    });
    drop(inner);
    s.notify.notify_waiters();
    let status = StatusCode::from_u16(status).unwrap();
    let mut resp = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else if answer.is_null() {
        (status, "").into_response()
    } else {
        (status, axum::Json(answer)).into_response()
    };
    for (k, v) in extra_headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

/// How long until `channel`'s bucket has room for one more message, if it
/// is full now (a window past its 5 seconds is dropped).
fn bucket_wait(inner: &mut Inner, channel: &str) -> Option<std::time::Duration> {
    let now = std::time::Instant::now();
    if let Some((start, _)) = inner.bucket.get(channel)
        && now.duration_since(*start) >= BUCKET_WINDOW
    {
        inner.bucket.remove(channel);
    }
    let (start, count) = inner.bucket.get(channel)?;
    (*count >= BUCKET_LIMIT).then(|| BUCKET_WINDOW - now.duration_since(*start))
}

/// Discord's bucket headers: reset-after in seconds with a fraction.
fn bucket_headers(remaining: usize, reset: std::time::Duration) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", BUCKET_LIMIT.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-reset-after",
            format!("{:.3}", reset.as_secs_f64()),
        ),
        ("x-ratelimit-bucket", BUCKET_HASH.into()),
    ]
}

/// Does what a route does; the status and body to answer.
fn perform(
    inner: &mut Inner,
    route: &'static str,
    parts: &[&str],
    req: &Value,
    s: &FakeDiscord,
    files: &[(u64, String, Vec<u8>)],
) -> (u16, Value) {
    inner.seq += 1;
    let id = snowflake(inner.seq);
    let unknown_channel = (404, json!({"message": "Unknown Channel", "code": 10003}));
    match route {
        "list_channels" => (200, Value::Array(inner.channels.clone())),
        "create_channel" => {
            let channel = json!({
                "id": id, "type": req["type"].as_u64().unwrap_or(0), "name": req["name"],
                "guild_id": GUILD, "parent_id": req.get("parent_id").cloned().unwrap_or(Value::Null),
                "position": inner.channels.len(),
                "permission_overwrites": req.get("permission_overwrites").cloned().unwrap_or(json!([])),
                "topic": req.get("topic").cloned().unwrap_or(Value::Null), "nsfw": false,
                "rate_limit_per_user": 0, "last_message_id": null
            });
            inner.channels.push(channel.clone());
            (201, channel)
        }
        "edit_channel" => {
            let Some(ch) = inner.channels.iter_mut().find(|c| c["id"] == parts[1]) else {
                return unknown_channel;
            };
            for key in ["topic", "parent_id", "permission_overwrites", "name"] {
                if let Some(v) = req.get(key) {
                    ch[key] = v.clone();
                }
            }
            (200, ch.clone())
        }
        "put_permission" => {
            let Some(ch) = inner.channels.iter_mut().find(|c| c["id"] == parts[1]) else {
                return unknown_channel;
            };
            let target = parts[3];
            // Discord answers permission bits as strings, however sent.
            let bits = |v: &Value| {
                v.as_u64()
                    .map_or_else(|| v.clone(), |n| json!(n.to_string()))
            };
            let overwrite = json!({"id": target, "type": req["type"], "allow": bits(&req["allow"]), "deny": bits(&req["deny"])});
            let list = ch["permission_overwrites"].as_array_mut().unwrap();
            list.retain(|o| o["id"] != target);
            list.push(overwrite);
            (204, Value::Null)
        }
        "create_message" => {
            let channel = parts[1].to_string();
            let known = inner.channels.iter().any(|c| c["id"] == channel)
                || inner.dms.values().any(|d| *d == channel);
            if !known {
                return unknown_channel;
            }
            let seq = inner.seq;
            let attachments: Vec<Value> = files
                .iter()
                .map(|(n, name, bytes)| {
                    json!({"id": snowflake(seq * 100 + n), "filename": name, "size": bytes.len(),
                           "url": format!("https://cdn.discordapp.com/attachments/{channel}/{id}/{name}"),
                           "proxy_url": format!("https://media.discordapp.net/attachments/{channel}/{id}/{name}")})
                })
                .collect();
            let msgs = inner.messages.entry(channel.clone()).or_default();
            // enforce_nonce: the same nonce from the same author returns the
            // first message instead of creating another.
            if req["enforce_nonce"] == true
                && !req["nonce"].is_null()
                && let Some(m) = msgs.iter().find(|m| m["nonce"] == req["nonce"])
            {
                return (200, m.clone());
            }
            let mut m = message_obj(&id, &channel, req);
            m["attachments"] = Value::Array(attachments);
            msgs.push(m.clone());
            if !files.is_empty() {
                inner.files.insert(
                    id.clone(),
                    files
                        .iter()
                        .map(|(_, name, b)| (name.clone(), b.clone()))
                        .collect(),
                );
            }
            (200, m)
        }
        "edit_message" => {
            let msgs = inner.messages.entry(parts[1].to_string()).or_default();
            let Some(m) = msgs.iter_mut().find(|m| m["id"] == parts[3]) else {
                return (404, json!({"message": "Unknown Message", "code": 10008}));
            };
            for key in ["content", "embeds", "components"] {
                if let Some(v) = req.get(key) {
                    m[key] = v.clone();
                }
            }
            m["edited_timestamp"] = json!(TIMESTAMP);
            (200, m.clone())
        }
        "current_user" => (200, user_obj(BOT_USER, "tocsin", true)),
        "create_dm" => {
            let user = req["recipient_id"].as_str().unwrap_or_default().to_string();
            let dm = inner
                .dms
                .entry(user.clone())
                .or_insert_with(|| id.clone())
                .clone();
            (
                200,
                json!({"id": dm, "type": 1, "last_message_id": null, "flags": 0,
                       "recipients": [user_obj(&user, "someone", false)]}),
            )
        }
        "register_commands" => {
            let echoed: Vec<Value> = req
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c["id"] = json!(snowflake(inner.seq * 100 + i as u64));
                    c["application_id"] = json!(APPLICATION);
                    c["guild_id"] = json!(GUILD);
                    c["version"] = json!("1");
                    c["type"] = json!(1);
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            (200, Value::Array(echoed))
        }
        "edit_original" | "followup" => (200, message_obj(&id, GENERAL, req)),
        "interaction_callback" | "delete_original" => (204, Value::Null),
        "gateway" => (
            200,
            json!({"url": format!("ws://{}", s.gateway_addr.unwrap()), "shards": 1,
                   "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}),
        ),
        _ => (404, json!({"message": "404: Not Found", "code": 0})),
    }
}

/// One gateway connection: HELLO, wait for IDENTIFY, READY, then heartbeat
/// ACKs and the dispatches the test hands over.
async fn gateway_session(fake: FakeDiscord, stream: tokio::net::TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let send = |v: Value| WsMessage::Text(v.to_string());
    if ws
        .send(send(
            json!({"op": 10, "d": {"heartbeat_interval": 41250}, "s": null, "t": null}),
        ))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { break };
                let WsMessage::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                fake.inner.lock().gateway_received.push(v.clone());
                fake.notify.notify_waiters();
                match v["op"].as_u64() {
                    Some(1) => {
                        let _ = ws.send(send(json!({"op": 11, "d": null, "s": null, "t": null}))).await;
                    }
                    Some(2) => {
                        seq += 1;
                        let ready = json!({"op": 0, "t": "READY", "s": seq, "d": {
                            "v": 10,
                            "user": user_obj(BOT_USER, "tocsin", true),
                            "guilds": [{"id": GUILD, "unavailable": true}],
                            "session_id": "fake-session",
                            "resume_gateway_url": format!("ws://{}", fake.gateway_addr.unwrap()),
                            "shard": [0, 1],
                            "application": {"id": APPLICATION, "flags": 0},
                        }});
                        if ws.send(send(ready)).await.is_err() {
                            break;
                        }
                        fake.inner.lock().dispatch = Some(tx.clone());
                        fake.notify.notify_waiters();
                    }
                    _ => {}
                }
            }
            Some(interaction) = rx.recv() => {
                seq += 1;
                let dispatch = json!({"op": 0, "t": "INTERACTION_CREATE", "s": seq, "d": interaction});
                if ws.send(send(dispatch)).await.is_err() {
                    break;
                }
            }
        }
    }
}
