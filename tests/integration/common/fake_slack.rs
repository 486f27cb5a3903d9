//! A fake Slack Web API on loopback: answers the documented JSON shapes of
//! the methods tocsin calls, records every call, and can be told to answer
//! 429 with `Retry-After`, 500, or a Slack error such as `name_taken`. It
//! also takes `response_url` posts. `GET /_calls` lists the calls as JSON.
//!
//! It refuses what Slack refuses: `conversations.invite` with a user id it
//! was told is unknown fails for the whole list and invites nobody, unless
//! `force=true` is sent (then the valid users are invited and the answer
//! lists the failed ones); `chat.postMessage`/`chat.update` over Block Kit's
//! limits (50 blocks, a section's text 3,000 characters, a field 2,000, a
//! header 150, 12,000 characters of block text, a 40,000-character `text`)
//! get `invalid_blocks`, `msg_blocks_too_long` or `msg_too_long`; and
//! `chat.postMessage` to one channel past a burst of 5, then 1 a second,
//! gets HTTP 429 with `Retry-After` (counted by `rate_limited()`).
//!
//! Files go through Slack's external upload: `files.getUploadURLExternal`
//! (a `filename` and a positive `length` in bytes, else
//! `invalid_arguments` / `missing_argument`) answers an `upload_url` on
//! this fake and a file id; a POST of the bytes there must carry exactly
//! `length` bytes (else 400) to a URL it handed out (else 404);
//! `files.completeUploadExternal` needs `files` as `[{id, title}]` of
//! uploaded files (else `invalid_arguments` or `file_not_found`) and
//! shares them in `channel_id` as one message, with `initial_comment`,
//! that `conversations.history` lists. The fake keeps what was shared.
//!
//! Its bot token has the scopes of the app manifest in the repository
//! (`deploy/slack-app-manifest.yaml`), or those a test sets: a method
//! whose scope is missing gets Slack's `missing_scope` with `needed`.
//! Private channels (`conversations.create` with `is_private`) need
//! `groups:write`, as do invites into them, and their history
//! `groups:history`; public ones `channels:manage` and `channels:history`.
//!
//! `examples/fake_slack.rs` runs this same fake as a program, for the
//! interop scripts.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// A scripted failure.
#[derive(Debug, Clone)]
pub enum Fail {
    /// 429 with `Retry-After: secs`.
    RateLimited(u32),
    /// HTTP 500.
    ServerError,
    /// Does the work, then answers 500: the answer is lost.
    LoseResponse,
    /// `{"ok": false, "error": code}` with 200.
    Error(&'static str),
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    failures: HashMap<String, VecDeque<Fail>>,
    taken: HashSet<String>,
    /// User ids Slack does not know (deleted, or from another workspace).
    unknown_users: HashSet<String>,
    /// channel → its members (for `already_in_channel`).
    members: HashMap<String, HashSet<String>>,
    channels: Vec<(String, String)>,
    /// channel → posted messages (for conversations.history).
    messages: HashMap<String, Vec<Value>>,
    responses: Vec<(String, Value)>,
    seq: u64,
    /// channel → its `chat.postMessage` bucket: tokens, and when counted.
    post_buckets: HashMap<String, (f64, std::time::Instant)>,
    /// 429s answered for posting too fast (scripted failures not counted).
    limited: usize,
    /// Calls the published spec refuses (see `spec.rs`).
    violations: Vec<String>,
    /// file id → its upload: (filename, declared length, bytes once sent).
    uploads: HashMap<String, (String, usize, Option<Vec<u8>>)>,
    /// Files shared into channels.
    shared: Vec<SharedFile>,
    /// (method, text, failure): the next call of the method whose
    /// parameters contain the text fails so.
    fail_when: Vec<(String, String, Fail)>,
    /// The bot token's scopes; `None` until first used (then the manifest's).
    scopes: Option<HashSet<String>>,
    /// Channels created private.
    private: HashSet<String>,
    /// Channels that exist without tocsin creating them (a stakeholder
    /// channel): id → (private, whether the bot is a member).
    outside: HashMap<String, (bool, bool)>,
    /// `chat.postEphemeral` posts: (channel, user, text).
    ephemeral: Vec<(String, String, String)>,
}

/// The bot scopes the repository's Slack app manifest asks for.
pub fn manifest_scopes() -> HashSet<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slack-app-manifest.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut in_bot = false;
    let mut scopes = HashSet::new();
    for line in text.lines() {
        let t = line.trim();
        if t == "bot:" {
            in_bot = true;
        } else if in_bot {
            match t.strip_prefix("- ") {
                Some(scope) => {
                    scopes.insert(scope.trim().to_string());
                }
                None if t.is_empty() || t.starts_with('#') => {}
                None => in_bot = false,
            }
        }
    }
    scopes
}

/// The scope `method` with `p` needs (Slack's per-method docs), for the
/// methods whose scope depends on the channel.
fn needed_scope(inner: &Inner, method: &str, p: &Value) -> Option<&'static str> {
    let channel = p.get("channel").and_then(Value::as_str).unwrap_or_default();
    let private = inner.private.contains(channel);
    Some(match method {
        "conversations.create" if bool_param(p.get("is_private")) => "groups:write",
        "conversations.create" => "channels:manage",
        "conversations.invite" | "conversations.setTopic" | "conversations.archive" if private => {
            "groups:write"
        }
        "conversations.history" if private => "groups:history",
        "chat.postMessage" | "chat.postEphemeral" | "chat.update" => "chat:write",
        _ => return None,
    })
}

/// A file `files.completeUploadExternal` shared.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// The file id.
    pub file_id: String,
    pub channel: String,
    pub filename: String,
    pub title: Option<String>,
    pub initial_comment: Option<String>,
    pub content: Vec<u8>,
}

/// Slack's `chat.postMessage` limit per channel ("1 per second, short
/// bursts allowed"): a burst of 5, then one a second.
pub const POST_BURST: f64 = 5.0;
pub const POST_PER_SECOND: f64 = 1.0;

/// How many seconds a post to `channel` must wait (Slack's `Retry-After`,
/// whole seconds), if it is over the limit now; else it takes its token.
fn post_limit(inner: &mut Inner, channel: &str) -> Option<u32> {
    let now = std::time::Instant::now();
    let (tokens, at) = inner
        .post_buckets
        .entry(channel.to_string())
        .or_insert((POST_BURST, now));
    *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * POST_PER_SECOND).min(POST_BURST);
    *at = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        return None;
    }
    Some((((1.0 - *tokens) / POST_PER_SECOND).ceil() as u32).max(1))
}

#[derive(Clone, Default)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
    notify: Arc<tokio::sync::Notify>,
}

impl FakeSlack {
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (port 0: any free port).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let mut s = FakeSlack::default();
        // The address first: the routes' state hands out upload URLs on it.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        s.addr = Some(listener.local_addr().unwrap());
        let app = Router::new()
            .route("/api/{method}", axum::routing::post(api).get(api))
            .route("/response/{id}", axum::routing::post(response))
            .route("/upload/{id}", axum::routing::post(upload))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .route("/_calls", axum::routing::get(calls))
            .with_state(s.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        s
    }

    /// Gives the bot token exactly these scopes.
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.inner.lock().scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
    }

    /// A channel someone else made (`private`, with the bot in it or not),
    /// as a status channel is.
    pub fn add_channel(&self, id: &str, name: &str, private: bool, bot_member: bool) {
        let mut inner = self.inner.lock();
        inner.channels.push((id.into(), name.into()));
        inner.outside.insert(id.into(), (private, bot_member));
        if private {
            inner.private.insert(id.into());
        }
    }

    /// The messages posted in `channel`, oldest first.
    pub fn messages(&self, channel: &str) -> Vec<Value> {
        let mut m = self
            .inner
            .lock()
            .messages
            .get(channel)
            .cloned()
            .unwrap_or_default();
        m.reverse();
        m
    }

    /// Whether `channel` was created private.
    pub fn is_private(&self, channel: &str) -> bool {
        self.inner.lock().private.contains(channel)
    }

    /// The `chat.postEphemeral` posts: (channel, user, text).
    pub fn ephemeral(&self) -> Vec<(String, String, String)> {
        self.inner.lock().ephemeral.clone()
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr.unwrap())
    }

    /// A `response_url` the fake records posts to.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.addr.unwrap())
    }

    pub fn fail(&self, method: &str, failures: &[Fail]) {
        self.inner
            .lock()
            .failures
            .entry(method.into())
            .or_default()
            .extend(failures.iter().cloned());
    }

    /// Does the next call of `method` whose parameters contain `needle`,
    /// then answers 500: the answer is lost.
    pub fn lose_answer_when(&self, method: &str, needle: &str) {
        self.fail_when(method, needle, Fail::LoseResponse);
    }

    /// Fails the next call of `method` whose parameters contain `needle`.
    pub fn fail_when(&self, method: &str, needle: &str, failure: Fail) {
        self.inner
            .lock()
            .fail_when
            .push((method.into(), needle.into(), failure));
    }

    pub fn take_name(&self, name: &str) {
        self.inner.lock().taken.insert(name.into());
    }

    /// Makes `user` an id Slack does not know (`user_not_found`).
    pub fn unknown_user(&self, user: &str) {
        self.inner.lock().unknown_users.insert(user.into());
    }

    /// The members of `channel` (whoever was invited).
    pub fn members(&self, channel: &str) -> HashSet<String> {
        self.inner
            .lock()
            .members
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// The files shared into channels, in order.
    pub fn shared_files(&self) -> Vec<SharedFile> {
        self.inner.lock().shared.clone()
    }

    /// Every call so far; panics if any broke the published spec, so a
    /// test cannot pass on a call Slack would refuse.
    pub fn calls(&self) -> Vec<Call> {
        let inner = self.inner.lock();
        assert!(
            inner.violations.is_empty(),
            "fake Slack: calls the published spec refuses: {:#?}",
            inner.violations
        );
        inner.calls.clone()
    }

    /// The calls the published spec refused, taken (for a test that makes
    /// them on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.inner.lock().violations)
    }

    /// How many posts the fake answered with 429 for going over Slack's
    /// per-channel limit.
    pub fn rate_limited(&self) -> usize {
        self.inner.lock().limited
    }

    /// Successful calls of one method.
    pub fn ok_calls(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.status == 200 && c.params.get("__error").is_none())
            .collect()
    }

    /// Whether a message was posted to `user`'s DM channel.
    pub fn has_dm(&self, user: &str) -> bool {
        let dm = format!("D{user}");
        self.ok_calls("chat.postMessage")
            .iter()
            .any(|c| c.params["channel"] == dm.as_str())
    }

    /// Waits until a message was posted to `user`'s DM channel.
    pub async fn wait_for_dm(&self, user: &str) {
        self.wait_until(&format!("a DM to {user}"), |f| f.has_dm(user))
            .await;
    }

    pub fn responses(&self, id: &str) -> Vec<Value> {
        self.inner
            .lock()
            .responses
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until `check` holds, up to 10 s.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&FakeSlack) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check(self) {
            let notified = self.notify.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() && !check(self) {
                panic!(
                    "fake Slack: timed out waiting for {what}; calls: {:#?}",
                    self.inner.lock().calls
                );
            }
        }
    }
}

fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            out.extend(m);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(body) {
            out.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    Value::Object(out)
}

/// A list parameter: a comma-separated string (form or JSON) or an array.
fn list_param(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A boolean parameter: `true`, `"true"` or `"1"`.
fn bool_param(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// `conversations.invite` as Slack answers it.
fn invite(inner: &mut Inner, p: &Value) -> Value {
    let channel = p
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let users = list_param(p.get("users"));
    let force = bool_param(p.get("force"));
    if users.is_empty() {
        return json!({"ok": false, "error": "no_user"});
    }
    let members = inner.members.entry(channel.clone()).or_default();
    let mut errors = Vec::new();
    let mut valid = Vec::new();
    for u in &users {
        if inner.unknown_users.contains(u) {
            errors.push(json!({"user": u, "ok": false, "error": "user_not_found"}));
        } else if members.contains(u) {
            errors.push(json!({"user": u, "ok": false, "error": "already_in_channel"}));
        } else {
            valid.push(u.clone());
        }
    }
    let unknown = errors.iter().any(|e| e["error"] == "user_not_found");
    if valid.is_empty() {
        // Nobody to invite: one user's error, or the list's.
        let error = if users.len() == 1 {
            errors[0]["error"]
                .as_str()
                .unwrap_or("user_not_found")
                .to_string()
        } else if unknown {
            "failed_for_some_users".to_string()
        } else {
            "already_in_channel".to_string()
        };
        let mut body = json!({"ok": false, "error": error});
        if users.len() > 1 {
            body["errors"] = json!(errors);
        }
        return body;
    }
    if unknown && !force {
        // Slack invites nobody when one id fails.
        let error = if users.len() == 1 {
            "user_not_found"
        } else {
            "failed_for_some_users"
        };
        return json!({"ok": false, "error": error, "errors": errors});
    }
    members.extend(valid);
    let mut body = json!({"ok": true, "channel": channel_obj(&channel, "x")});
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    body
}

/// Why Slack would refuse a message's blocks and text, if it would.
fn message_refusal(p: &Value) -> Option<&'static str> {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    if p.get("text").map_or(0, chars) > 40_000 {
        return Some("msg_too_long");
    }
    let blocks = match p.get("blocks") {
        None | Some(Value::Null) => return None,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(_) => return Some("invalid_blocks_format"),
        },
        Some(v) => v.clone(),
    };
    let Some(blocks) = blocks.as_array() else {
        return Some("invalid_blocks_format");
    };
    if blocks.len() > 50 {
        return Some("invalid_blocks");
    }
    let mut total = 0;
    let mut ids = HashSet::new();
    for b in blocks {
        if let Some(id) = b.get("block_id").and_then(Value::as_str)
            && (id.chars().count() > 255 || !ids.insert(id.to_string()))
        {
            return Some("invalid_blocks");
        }
        let text = b.get("text").map_or(0, |t| chars(&t["text"]));
        total += text;
        match b["type"].as_str() {
            Some("header") if text > 150 => return Some("invalid_blocks"),
            Some("section") if text > 3000 => return Some("invalid_blocks"),
            _ => {}
        }
        if let Some(fields) = b.get("fields").and_then(Value::as_array) {
            if fields.len() > 10 {
                return Some("invalid_blocks");
            }
            for f in fields {
                let n = chars(&f["text"]);
                if n > 2000 {
                    return Some("invalid_blocks");
                }
                total += n;
            }
        }
        if let Some(elements) = b.get("elements").and_then(Value::as_array)
            && elements.len() > 25
        {
            return Some("invalid_blocks");
        }
    }
    (total > 12_000).then_some("msg_blocks_too_long")
}

fn channel_obj(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "name_normalized": name, "created": 1_700_000_000,
           "is_channel": true, "is_private": false, "is_archived": false, "is_member": true})
}

async fn api(
    State(s): State<FakeSlack>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(query, &headers, &body);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let bearer = authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer xox"));
    let broken = super::spec::slack_violations(&method, &p, bearer, json_body);
    let mut inner = s.inner.lock();
    let mut failure = inner.failures.get_mut(&method).and_then(|q| q.pop_front());
    if !broken.is_empty() {
        eprintln!("fake Slack: the published spec refuses {broken:?}");
        inner.violations.extend(broken);
        failure = Some(Fail::Error("invalid_arguments"));
    }
    if failure.is_none() {
        if inner.scopes.is_none() {
            inner.scopes = Some(manifest_scopes());
        }
        if let Some(needed) = needed_scope(&inner, &method, &p)
            && !inner.scopes.as_ref().is_some_and(|s| s.contains(needed))
        {
            let mut provided: Vec<String> = inner.scopes.iter().flatten().cloned().collect();
            provided.sort();
            let body = json!({"ok": false, "error": "missing_scope", "needed": needed,
                              "provided": provided.join(",")});
            let mut recorded = p.clone();
            recorded["__error"] = json!("missing_scope");
            inner.calls.push(Call {
                method,
                params: recorded,
                authorization,
                status: 200,
            });
            drop(inner);
            s.notify.notify_waiters();
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
    }
    if failure.is_none() {
        let text = p.to_string();
        if let Some(i) = inner
            .fail_when
            .iter()
            .position(|(m, needle, _)| *m == method && text.contains(needle.as_str()))
        {
            failure = Some(inner.fail_when.remove(i).2);
        }
    }
    if failure.is_none() && method == "chat.postMessage" {
        let channel = p["channel"].as_str().unwrap_or_default().to_string();
        if let Some(secs) = post_limit(&mut inner, &channel) {
            inner.limited += 1;
            failure = Some(Fail::RateLimited(secs));
        }
    }
    let (status, body, retry_after) = match failure {
        Some(Fail::RateLimited(secs)) => (
            429,
            json!({"ok": false, "error": "ratelimited"}),
            Some(secs),
        ),
        Some(Fail::ServerError) => (500, json!({"ok": false, "error": "internal_error"}), None),
        Some(Fail::Error(code)) => (200, json!({"ok": false, "error": code}), None),
        Some(Fail::LoseResponse) => {
            let _ = perform(&s, &mut inner, &method, &p);
            (500, json!({"ok": false, "error": "internal_error"}), None)
        }
        None => (200, perform(&s, &mut inner, &method, &p), None),
    };
    let mut recorded = p.clone();
    if body["ok"] == false {
        recorded["__error"] = body["error"].clone();
    }
    inner.calls.push(Call {
        method,
        params: recorded,
        authorization,
        status,
    });
    drop(inner);
    s.notify.notify_waiters();
    let mut resp = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    resp
}

/// Does what a method does; the JSON answer.
fn perform(s: &FakeSlack, inner: &mut Inner, method: &str, p: &Value) -> Value {
    inner.seq += 1;
    let seq = inner.seq;
    let ts = format!("1700000000.{seq:06}");
    let str_param = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match method {
        "conversations.create" => {
            let name = str_param("name");
            if inner.taken.contains(&name) {
                json!({"ok": false, "error": "name_taken"})
            } else {
                inner.taken.insert(name.clone());
                // Slack's private channel ids start with C too (G was the old style).
                let id = format!("C{seq:04}");
                inner.channels.push((id.clone(), name.clone()));
                let mut channel = channel_obj(&id, &name);
                if bool_param(p.get("is_private")) {
                    inner.private.insert(id.clone());
                    channel["is_private"] = json!(true);
                }
                json!({"ok": true, "channel": channel})
            }
        }
        "chat.postMessage" | "chat.update" if message_refusal(p).is_some() => {
            json!({"ok": false, "error": message_refusal(p)})
        }
        "conversations.invite" => invite(inner, p),
        "conversations.setTopic" | "conversations.archive" => {
            let ch = str_param("channel");
            json!({"ok": true, "channel": channel_obj(&ch, "x"), "topic": str_param("topic")})
        }
        "conversations.open" => {
            let users = p.get("users").cloned().unwrap_or(Value::Null);
            let user = match &users {
                Value::Array(a) => a
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Value::String(s) => s.split(',').next().unwrap_or_default().to_string(),
                _ => String::new(),
            };
            json!({"ok": true, "channel": {"id": format!("D{user}")}})
        }
        "conversations.history" => {
            let ch = str_param("channel");
            let msgs = inner.messages.get(&ch).cloned().unwrap_or_default();
            json!({"ok": true, "messages": msgs, "has_more": false})
        }
        "chat.postMessage" if refused_channel(inner, &str_param("channel")).is_some() => {
            json!({"ok": false, "error": refused_channel(inner, &str_param("channel"))})
        }
        "chat.postMessage" => {
            let ch = str_param("channel");
            let mut msg =
                json!({"type": "message", "ts": ts, "text": str_param("text"), "bot_id": "B1"});
            if let Some(md) = p.get("metadata") {
                msg["metadata"] = md.clone();
            }
            inner
                .messages
                .entry(ch.clone())
                .or_default()
                .insert(0, msg.clone());
            json!({"ok": true, "channel": ch, "ts": ts, "message": msg})
        }
        "chat.postEphemeral" => {
            inner
                .ephemeral
                .push((str_param("channel"), str_param("user"), str_param("text")));
            json!({"ok": true, "message_ts": ts})
        }
        "chat.update" => {
            json!({"ok": true, "channel": str_param("channel"), "ts": str_param("ts"),
                           "text": str_param("text"), "message": {"text": str_param("text")}})
        }
        "files.getUploadURLExternal" => {
            let filename = str_param("filename");
            let length = match p.get("length") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(v)) => v.parse::<u64>().ok(),
                _ => None,
            };
            match length {
                _ if filename.is_empty() => json!({"ok": false, "error": "invalid_arguments"}),
                None => json!({"ok": false, "error": "invalid_arguments"}),
                Some(0) => json!({"ok": false, "error": "missing_argument"}),
                Some(n) => {
                    let id = format!("F{seq:06}");
                    inner
                        .uploads
                        .insert(id.clone(), (filename, n as usize, None));
                    json!({"ok": true, "file_id": id,
                                   "upload_url": format!("http://{}/upload/{id}", s.addr.unwrap())})
                }
            }
        }
        "files.completeUploadExternal" => complete_upload(inner, p, &ts),
        other => json!({"ok": false, "error": format!("unknown_method:{other}")}),
    }
}

/// Why Slack refuses a post in `channel`: a channel id it does not know
/// (or a private one the bot is not in) is `channel_not_found`; a public
/// one the bot has not joined is `not_in_channel` unless the token has
/// `chat:write.public` (Slack's `chat.postMessage` errors).
fn refused_channel(inner: &Inner, channel: &str) -> Option<&'static str> {
    let known = inner.channels.iter().any(|(id, _)| id == channel);
    if !known && channel.starts_with('C') {
        return Some("channel_not_found");
    }
    match inner.outside.get(channel) {
        Some((true, false)) => Some("channel_not_found"),
        Some((false, false))
            if !inner
                .scopes
                .as_ref()
                .is_some_and(|s| s.contains("chat:write.public")) =>
        {
            Some("not_in_channel")
        }
        _ => None,
    }
}

/// `files.completeUploadExternal` as Slack answers it.
fn complete_upload(inner: &mut Inner, p: &Value, ts: &str) -> Value {
    let files = match p.get("files") {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            _ => return json!({"ok": false, "error": "invalid_arguments"}),
        },
        _ => return json!({"ok": false, "error": "invalid_arguments"}),
    };
    if files.is_empty() || files.iter().any(|f| f["id"].as_str().is_none()) {
        return json!({"ok": false, "error": "invalid_arguments"});
    }
    for f in &files {
        match inner.uploads.get(f["id"].as_str().unwrap_or_default()) {
            Some((_, _, Some(_))) => {}
            _ => return json!({"ok": false, "error": "file_not_found"}),
        }
    }
    let channel = p
        .get("channel_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let comment = p
        .get("initial_comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut objs = Vec::new();
    for f in &files {
        let id = f["id"].as_str().unwrap_or_default().to_string();
        let (filename, _, bytes) = inner.uploads.remove(&id).expect("checked above");
        let title = f["title"].as_str().map(str::to_string);
        objs.push(json!({"id": id, "name": filename, "title": title.clone().unwrap_or_else(|| filename.clone()),
                         "mimetype": "text/markdown", "filetype": "markdown", "size": bytes.as_ref().map_or(0, Vec::len)}));
        if !channel.is_empty() {
            inner.shared.push(SharedFile {
                file_id: id,
                channel: channel.clone(),
                filename,
                title,
                initial_comment: comment.clone(),
                content: bytes.unwrap_or_default(),
            });
        }
    }
    if !channel.is_empty() {
        let msg = json!({"type": "message", "ts": ts, "text": comment.clone().unwrap_or_default(),
                         "bot_id": "B1", "upload": true, "files": objs});
        inner.messages.entry(channel).or_default().insert(0, msg);
    }
    json!({"ok": true, "files": objs})
}

/// The POST of a file's bytes to its `upload_url`.
async fn upload(State(s): State<FakeSlack>, Path(id): Path<String>, body: Bytes) -> Response {
    let answer = {
        let mut inner = s.inner.lock();
        match inner.uploads.get_mut(&id) {
            None => (StatusCode::NOT_FOUND, "unknown upload URL".to_string()),
            Some((_, length, _)) if *length != body.len() => (
                StatusCode::BAD_REQUEST,
                format!("expected {length} bytes, got {}", body.len()),
            ),
            Some((_, _, bytes)) => {
                *bytes = Some(body.to_vec());
                (StatusCode::OK, format!("OK - {}", body.len()))
            }
        }
    };
    s.inner.lock().calls.push(Call {
        method: "upload".into(),
        params: json!({"file_id": id, "bytes": body.len()}),
        authorization: None,
        status: answer.0.as_u16(),
    });
    s.notify.notify_waiters();
    answer.into_response()
}

async fn calls(State(s): State<FakeSlack>) -> Response {
    let calls: Vec<Value> = s
        .calls()
        .into_iter()
        .map(|c| {
            json!({"method": c.method, "params": c.params, "status": c.status,
                   "authorization": c.authorization})
        })
        .collect();
    axum::Json(calls).into_response()
}

async fn response(State(s): State<FakeSlack>, Path(id): Path<String>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.inner.lock().responses.push((id, v));
    s.notify.notify_waiters();
    (StatusCode::OK, "ok").into_response()
}
