//! SMS and voice pages through Twilio's REST API, and the signatures on
//! Twilio's requests back to tocsin.
//!
//! Sending: `POST {api_url}/2010-04-01/Accounts/{sid}/Messages.json` (or
//! `Calls.json`), form-encoded, HTTP basic auth with the account SID and
//! auth token. Twilio answers 201 with the resource, or a 4xx/5xx with
//! `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
//!
//! Receiving: every request Twilio makes carries `X-Twilio-Signature`, the
//! base64 HMAC-SHA1, keyed by the auth token, of the full URL Twilio called
//! followed by each POST parameter's name and value, sorted by name (the
//! way Twilio's helper libraries' `RequestValidator` computes it).

use super::{DeliveryError, PageContent};
use crate::config::TwilioConfig;
use crate::secret::Secret;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use sha1::Sha1;
use std::time::Duration;

/// The longest SMS that is one segment in GSM-7.
pub const SMS_SEGMENT: usize = 160;

/// What to answer by SMS.
pub const SMS_HOW_TO_ANSWER: &str = "Reply 1 to ack, 2 to resolve";

/// Twilio error codes that no retry will fix.
const PERMANENT_CODES: &[(u32, &str)] = &[
    (21211, "invalid 'To' number"),
    (21214, "'To' number cannot be reached"),
    (21408, "no permission to send to this region"),
    (21610, "the recipient replied STOP (unsubscribed)"),
    (
        21612,
        "the 'To' number cannot receive from the 'From' number",
    ),
    (21614, "the 'To' number is not a mobile number"),
    (21217, "the 'To' number is not a valid phone number"),
];

/// Whether `c` is in the GSM-7 basic character set (one septet).
fn is_gsm7_basic(c: char) -> bool {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    BASIC.contains(c)
}

/// `s` in GSM-7's basic set: common typography replaced by its plain
/// form, anything else by `?`, so a page is one 160-character segment (a
/// single non-GSM character would make it UCS-2, 70 per segment).
pub fn to_gsm7(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '`' | '´' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
            '[' | '{' => '(',
            ']' | '}' => ')',
            '\t' | '\n' | '\r' => ' ',
            '|' | '\\' | '^' | '~' => '/',
            c if is_gsm7_basic(c) => c,
            _ => '?',
        })
        .collect()
}

/// The SMS of a page: `INC-42 SEV1 api: <title>. Reply 1 to ack, 2 to
/// resolve`, the title cut (with `...`) to keep it one GSM-7 segment.
pub fn sms_body(page: &PageContent) -> String {
    let head = to_gsm7(&format!(
        "{} {} {}: ",
        page.incident, page.severity, page.service
    ));
    let tail = format!(". {SMS_HOW_TO_ANSWER}");
    let title = to_gsm7(page.title.trim());
    let room = SMS_SEGMENT.saturating_sub(head.chars().count() + tail.chars().count());
    let title = if title.chars().count() <= room {
        title
    } else {
        let cut: String = title.chars().take(room.saturating_sub(3)).collect();
        format!("{}...", cut.trim_end())
    };
    format!("{head}{title}{tail}")
}

/// Escapes text for an XML element or attribute.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A TwiML reply to an SMS: `<Response><Message>text</Message></Response>`.
pub fn message_twiml(text: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
        xml_escape(text)
    )
}

/// A TwiML document that says `text` and hangs up.
pub fn say_twiml(text: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>{}</Say><Hangup/></Response>",
        xml_escape(text)
    )
}

/// An empty TwiML answer (nothing to say back).
pub fn empty_twiml() -> String {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".into()
}

/// The longest title a call reads out: the prompt is said twice inside
/// inline TwiML, which Twilio caps at 4,000 characters.
const VOICE_TITLE_MAX: usize = 300;

/// What a call says: the page, and the keys to press.
pub fn voice_prompt(page: &PageContent) -> String {
    let number = page.incident.0;
    let title: String = page.title.trim().chars().take(VOICE_TITLE_MAX).collect();
    format!(
        "This is tocsin. Incident {number}, severity {}, on {}: {}. Press 1 to acknowledge, 2 to resolve, 3 to escalate.",
        page.severity
            .to_string()
            .to_lowercase()
            .replace("sev", "sev "),
        page.service,
        title
    )
}

/// The TwiML of a page call: the prompt inside a one-digit `<Gather>`
/// posting to `action`, said twice; then goodbye.
pub fn voice_twiml(prompt: &str, action: &str) -> String {
    let say = xml_escape(prompt);
    let action = xml_escape(action);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
<Gather numDigits=\"1\" timeout=\"8\" action=\"{action}\" method=\"POST\"><Say>{say}</Say></Gather>\
<Gather numDigits=\"1\" timeout=\"8\" action=\"{action}\" method=\"POST\"><Say>{say}</Say></Gather>\
<Say>No key was pressed. tocsin will keep escalating. Goodbye.</Say><Hangup/></Response>"
    )
}

/// `X-Twilio-Signature` for a request to `url` with POST `params`.
pub fn signature(token: &Secret, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(token.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the signature of the request, compared in
/// constant time.
pub fn verify(token: &Secret, url: &str, params: &[(String, String)], presented: &str) -> bool {
    Secret::new(signature(token, url, params)).matches(presented)
}

/// A message or call Twilio accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Its SID (`SM...`, `CA...`).
    pub sid: String,
}

/// Twilio's REST API, as one account.
pub struct TwilioClient {
    http: reqwest::Client,
    api_url: String,
    account_sid: String,
    auth_token: Secret,
    from: String,
}

impl TwilioClient {
    /// A client for `[twilio]` over `http`.
    pub fn new(http: reqwest::Client, cfg: &TwilioConfig) -> Self {
        Self {
            http,
            api_url: cfg.api_url.trim_end_matches('/').to_string(),
            account_sid: cfg.account_sid.clone(),
            auth_token: cfg.auth_token.clone(),
            from: cfg.from.clone(),
        }
    }

    /// Sends an SMS to `to`; Twilio reports its fate to `status_callback`.
    pub async fn send_sms(
        &self,
        to: &str,
        body: &str,
        status_callback: &str,
    ) -> Result<Accepted, DeliveryError> {
        self.create(
            "Messages.json",
            &[
                ("To", to),
                ("From", &self.from),
                ("Body", body),
                ("StatusCallback", status_callback),
            ],
        )
        .await
    }

    /// Calls `to` with the inline `twiml`; Twilio reports how the call
    /// ended (and whether a machine answered) to `status_callback`.
    pub async fn place_call(
        &self,
        to: &str,
        twiml: &str,
        status_callback: &str,
    ) -> Result<Accepted, DeliveryError> {
        self.create(
            "Calls.json",
            &[
                ("To", to),
                ("From", &self.from),
                ("Twiml", twiml),
                ("StatusCallback", status_callback),
                ("MachineDetection", "Enable"),
                ("Timeout", "30"),
            ],
        )
        .await
    }

    async fn create(
        &self,
        resource: &str,
        form: &[(&str, &str)],
    ) -> Result<Accepted, DeliveryError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.api_url, self.account_sid
        );
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(form)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                DeliveryError::retryable(format!("Twilio {what}"))
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return match body["sid"].as_str() {
                Some(sid) => Ok(Accepted { sid: sid.into() }),
                None => Err(DeliveryError::retryable(format!(
                    "Twilio answered {status} without a sid"
                ))),
            };
        }
        Err(classify(status, &body, retry_after))
    }
}

/// Maps a Twilio error answer to a delivery error: invalid, unreachable
/// or unsubscribed numbers and bad credentials are permanent (move on to
/// the next contact method); 429/20429 and 5xx are retried.
pub fn classify(
    status: StatusCode,
    body: &serde_json::Value,
    retry_after: Option<Duration>,
) -> DeliveryError {
    let code = body["code"].as_u64().map(|c| c as u32);
    let message = body["message"].as_str().unwrap_or("no message");
    let known = code.and_then(|c| PERMANENT_CODES.iter().find(|(k, _)| *k == c));
    let text = match (code, known) {
        (Some(c), Some((_, what))) => format!("Twilio error {c} ({what}): {message}"),
        (Some(c), None) => format!("Twilio answered {status}, error {c}: {message}"),
        (None, _) => format!("Twilio answered {status}"),
    };
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS || code == Some(20429);
    let retryable = known.is_none()
        && (rate_limited || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT);
    DeliveryError {
        message: text,
        retryable,
        // Twilio's 429 rarely says when: a second is its documented pace.
        retry_after: match (retryable, rate_limited) {
            (true, true) => retry_after.or(Some(Duration::from_secs(1))),
            (true, false) => retry_after,
            (false, _) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{IncidentId, Severity};

    fn page(title: &str) -> PageContent {
        PageContent {
            incident: IncidentId(42),
            title: title.into(),
            severity: Severity::Sev1,
            service: "payments".into(),
            step: 1,
            round: 1,
        }
    }

    #[test]
    fn an_sms_is_one_gsm7_segment_with_the_key_and_how_to_answer() {
        let short = sms_body(&page("Checkout is down"));
        assert!(
            short.starts_with("INC-42 SEV1 payments: Checkout is down."),
            "{short}"
        );
        assert!(short.ends_with(SMS_HOW_TO_ANSWER));
        let long = sms_body(&page(&"disk full on db-primary-eu-west ".repeat(10)));
        assert_eq!(long.chars().count(), SMS_SEGMENT, "{long}");
        assert!(long.contains("...."), "{long}");
        let odd = sms_body(&page("naïve “quotes” – 5xx {api} 🔥"));
        assert!(odd.chars().all(is_gsm7_basic), "{odd}");
        assert!(odd.contains("\"quotes\" - 5xx (api) ?"), "{odd}");
    }

    #[test]
    fn signature_matches_twilios_documented_example() {
        // Twilio's security docs: this URL, these params and token
        // 12345 sign to 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let token = Secret::new("12345");
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature(&token, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(&token, url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        let mut tampered = params.clone();
        tampered[2].1 = "1".into();
        assert!(!verify(
            &token,
            url,
            &tampered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn twilio_errors_are_permanent_or_retried() {
        let e = classify(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.", "status": 400}),
            None,
        );
        assert!(!e.retryable);
        assert!(e.message.contains("21211"), "{}", e.message);
        let e = classify(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}),
            None,
        );
        assert!(!e.retryable && e.message.contains("unsubscribed"));
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
            Some(Duration::from_secs(3)),
        );
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::Value::Null,
                None
            )
            .retryable
        );
        assert!(
            !classify(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"code": 20003}),
                None
            )
            .retryable
        );
    }

    #[test]
    fn twiml_escapes_what_it_says() {
        let t = voice_twiml("a < b & \"c\"", "https://x.example/twilio/voice?key=a&b");
        assert!(t.contains("a &lt; b &amp; &quot;c&quot;"), "{t}");
        assert!(
            t.contains("action=\"https://x.example/twilio/voice?key=a&amp;b\""),
            "{t}"
        );
        assert!(message_twiml("<ok>").contains("<Message>&lt;ok&gt;</Message>"));
    }
}
