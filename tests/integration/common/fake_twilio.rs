//! A fake Twilio: the Messages and Calls resources of the 2010-04-01 REST
//! API as Twilio documents them (and its OpenAPI description,
//! twilio/twilio-oai, `twilio_api_v2010.json`), refusing what Twilio
//! refuses: no or wrong basic auth (20003), a body that is not
//! form-encoded (then no `To`: 21604), a `To` that is not E.164 (21211), a
//! `From` that is not the account's number (21606), no `Body` (21602) or
//! more than 1,600 characters (21617), a call without `Url` or `Twiml`
//! (21205), `Twiml` that is not XML or over 4,000 characters (12100).
//! Scripted answers: an unsubscribed number (21610), rate limits (20429).
//!
//! It also plays Twilio calling tocsin back: [`TwilioSide`] signs requests
//! with `X-Twilio-Signature` the way Twilio does, independently of tocsin's
//! code.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-test-auth-token-9f8e7d";
pub const FROM: &str = "+15550000000";

/// One message or call Twilio accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    /// `Messages.json` or `Calls.json`.
    pub resource: String,
    pub sid: String,
    pub params: HashMap<String, String>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Sent {
    pub fn get(&self, k: &str) -> &str {
        self.params.get(k).map(String::as_str).unwrap_or_default()
    }
}

/// What to answer for the next request to a number.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// 400 21211: Twilio finds the number invalid (a disconnected range).
    Invalid,
    /// 400 21610: the recipient replied STOP.
    Unsubscribed,
    /// 429 20429 this many times, then accept.
    RateLimited(u32),
    /// 503 this many times.
    Unavailable(u32),
}

#[derive(Default)]
struct Inner {
    sent: Vec<Sent>,
    refused: Vec<(u16, u32)>,
    unsubscribed: HashSet<String>,
    invalid: HashSet<String>,
    rate_limited: HashMap<String, u32>,
    unavailable: HashMap<String, u32>,
    next: u64,
}

#[derive(Clone, Default)]
pub struct FakeTwilio {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl FakeTwilio {
    pub async fn start() -> Self {
        let mut f = FakeTwilio::default();
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/{resource}",
                axum::routing::post(create),
            )
            .with_state(f.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        f.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        f
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    /// The `[twilio]` section for this fake, with `more` keys.
    pub fn config(&self, more: &str) -> String {
        format!(
            "[twilio]\naccount_sid = \"{ACCOUNT_SID}\"\nauth_token = \"{AUTH_TOKEN}\"\nfrom = \"{FROM}\"\napi_url = \"{}\"\n{more}\n",
            self.url()
        )
    }

    pub fn script(&self, to: &str, s: Script) {
        let mut i = self.inner.lock();
        match s {
            Script::Invalid => {
                i.invalid.insert(to.to_string());
            }
            Script::Unsubscribed => {
                i.unsubscribed.insert(to.to_string());
            }
            Script::RateLimited(n) => {
                i.rate_limited.insert(to.to_string(), n);
            }
            Script::Unavailable(n) => {
                i.unavailable.insert(to.to_string(), n);
            }
        }
    }

    /// Everything accepted so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().sent.clone()
    }

    /// Messages accepted for `to`.
    pub fn messages_to(&self, to: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.resource == "Messages.json" && s.get("To") == to)
            .collect()
    }

    /// Calls accepted for `to`.
    pub fn calls_to(&self, to: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.resource == "Calls.json" && s.get("To") == to)
            .collect()
    }

    /// (HTTP status, Twilio error code) of each refusal.
    pub fn refused(&self) -> Vec<(u16, u32)> {
        self.inner.lock().refused.clone()
    }
}

fn error(f: &FakeTwilio, status: u16, code: u32, message: &str) -> Response {
    f.inner.lock().refused.push((status, code));
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })),
    )
        .into_response()
}

fn is_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

async fn create(
    State(f): State<FakeTwilio>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if auth.as_deref() != Some(&format!("{ACCOUNT_SID}:{AUTH_TOKEN}")) || sid != ACCOUNT_SID {
        return error(&f, 401, 20003, "Authenticate");
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params: HashMap<String, String> = if form {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    } else {
        HashMap::new()
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let to = get("To");
    if to.is_empty() {
        return error(&f, 400, 21604, "A 'To' phone number is required.");
    }
    if !is_e164(to) {
        return error(
            &f,
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if get("From") != FROM {
        return error(
            &f,
            400,
            21606,
            "The From phone number is not a valid, SMS-capable inbound phone number or short code for your account.",
        );
    }
    let prefix = match resource.as_str() {
        "Messages.json" => {
            let text = get("Body");
            if text.is_empty() {
                return error(&f, 400, 21602, "Message body is required.");
            }
            if text.chars().count() > 1600 {
                return error(
                    &f,
                    400,
                    21617,
                    "The concatenated message body exceeds the 1600 character limit.",
                );
            }
            "SM"
        }
        "Calls.json" => {
            let twiml = get("Twiml");
            if twiml.is_empty() && get("Url").is_empty() {
                return error(&f, 400, 21205, "Url parameter is required.");
            }
            if twiml.chars().count() > 4000 {
                return error(
                    &f,
                    400,
                    12100,
                    "Document parse failure: Twiml exceeds 4000 characters.",
                );
            }
            if !twiml.is_empty() && roxmltree::Document::parse(twiml).is_err() {
                return error(&f, 400, 12100, "Document parse failure.");
            }
            "CA"
        }
        _ => return error(&f, 404, 20404, "The requested resource was not found"),
    };
    {
        let mut i = f.inner.lock();
        if i.invalid.contains(to) {
            drop(i);
            return error(
                &f,
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            );
        }
        if i.unsubscribed.contains(to) {
            drop(i);
            return error(&f, 400, 21610, "Attempt to send to unsubscribed recipient");
        }
        if let Some(n) = i.rate_limited.get_mut(to)
            && *n > 0
        {
            *n -= 1;
            drop(i);
            return error(&f, 429, 20429, "Too Many Requests");
        }
        if let Some(n) = i.unavailable.get_mut(to)
            && *n > 0
        {
            *n -= 1;
            i.refused.push((503, 0));
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
    }
    let mut i = f.inner.lock();
    i.next += 1;
    let sid = format!("{prefix}{:032x}", i.next);
    i.sent.push(Sent {
        resource: resource.clone(),
        sid: sid.clone(),
        params: params.clone(),
        at: std::time::Instant::now(),
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "to": to,
            "from": FROM,
            "body": params.get("Body"),
            "status": "queued",
            "date_created": "Wed, 02 Dec 2026 04:00:00 +0000",
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/{}/{sid}.json", resource.trim_end_matches(".json")),
        })),
    )
        .into_response()
}

/// Twilio's side of the webhooks: signs each request over the URL Twilio
/// was configured with (`public`, what tocsin's `[server] public_url`
/// says) and delivers it to where tocsin really listens.
pub struct TwilioSide {
    pub public: String,
    pub http: reqwest::Client,
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(token, url + sorted name+value)).
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A signed request's answer: status and body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl TwilioSide {
    pub fn new(public: &str) -> Self {
        Self {
            public: public.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `params` to `url` (a public URL, as Twilio has it) at tocsin's
    /// real address `base`, signed with `signature` (or correctly if None).
    pub async fn post_as(
        &self,
        base: &str,
        url: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> Answer {
        let path = url.strip_prefix(&self.public).unwrap_or(url);
        let sig = signature
            .map(str::to_string)
            .unwrap_or_else(|| twilio_signature(AUTH_TOKEN, url, params));
        let mut req = self
            .http
            .post(format!("{base}{path}"))
            .form(params)
            .header("user-agent", "TwilioProxy/1.1");
        if !sig.is_empty() {
            req = req.header("x-twilio-signature", sig);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Answer {
            status,
            content_type,
            body: resp.text().await.unwrap(),
        }
    }

    /// Signed correctly.
    pub async fn post(&self, base: &str, url: &str, params: &[(&str, &str)]) -> Answer {
        self.post_as(base, url, params, None).await
    }

    /// An incoming SMS from `from` saying `body`.
    pub async fn sms(&self, base: &str, from: &str, body: &str) -> Answer {
        let url = format!("{}/twilio/sms", self.public);
        self.post(
            base,
            &url,
            &[
                ("MessageSid", "SM99999999999999999999999999999999"),
                ("AccountSid", ACCOUNT_SID),
                ("From", from),
                ("To", FROM),
                ("Body", body),
                ("NumMedia", "0"),
            ],
        )
        .await
    }
}

/// The text of the `<Message>` in a TwiML answer (after checking it is
/// a well-formed TwiML document).
pub fn twiml_message(xml: &str) -> String {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    assert_eq!(doc.root_element().tag_name().name(), "Response", "{xml}");
    doc.descendants()
        .find(|n| n.has_tag_name("Message") || n.has_tag_name("Say"))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string()
}
