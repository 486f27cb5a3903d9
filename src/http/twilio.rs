//! Twilio's requests to tocsin, all on the public listener and all
//! verified with `X-Twilio-Signature` over `[server] public_url` plus the
//! path and query (a wrong or missing signature gets 403 and changes
//! nothing):
//!
//! - `POST /twilio/sms`: a reply to a page (`1`/`ack`, `2`/`resolve`,
//!   `ack 42`), answered with TwiML `<Message>`;
//! - `POST /twilio/voice?key=...`: the key pressed during a page call
//!   (1 acknowledge, 2 resolve, 3 escalate, else the prompt again);
//! - `POST /twilio/status?key=...`: how an SMS or a call ended.

use super::AppState;
use crate::config::UserConfig;
use crate::incident::{Actor, IncidentId, Status};
use crate::notify::twilio::{
    empty_twiml, message_twiml, say_twiml, verify, voice_prompt, voice_twiml,
};
use crate::service::ServiceError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::HashMap;
use tracing::{info, warn};

/// Twilio's routes; merge them into the public listener's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/sms", post(sms))
        .route("/twilio/voice", post(voice))
        .route("/twilio/status", post(status))
}

/// A verified Twilio request: its POST parameters and its query.
struct Signed {
    params: HashMap<String, String>,
    query: HashMap<String, String>,
}

impl Signed {
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Checks the signature; the parameters if it holds, else the refusal.
fn verified(
    st: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Signed, super::ApiError> {
    let Some(twilio) = &st.config.twilio else {
        return Err(super::ApiError::not_found("[twilio] is not configured"));
    };
    let Some(base) = &st.config.server.public_url else {
        return Err(super::ApiError::not_found("[server] public_url is not set"));
    };
    let refuse = |why: &str| {
        warn!(reason = why, path = uri.path(), "Refused a Twilio request");
        Err(super::ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "X-Twilio-Signature does not verify",
        ))
    };
    let Some(presented) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return refuse("no X-Twilio-Signature");
    };
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_bytes(body) {
        Ok(p) => p,
        Err(_) => return refuse("the body is not form-encoded"),
    };
    let url = format!(
        "{}{}",
        base.as_str().trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    if !verify(&twilio.auth_token, &url, &pairs, presented) {
        return refuse("wrong X-Twilio-Signature");
    }
    let query: HashMap<String, String> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    Ok(Signed {
        params: pairs.into_iter().collect(),
        query,
    })
}

/// What an SMS reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `1`, `ack`: acknowledge.
    Acknowledge(Option<IncidentId>),
    /// `2`, `resolve`: resolve.
    Resolve(Option<IncidentId>),
}

/// Parses an SMS reply: `1`, `ack`, `2`, `resolve`, optionally followed
/// by an incident (`ack 42`, `2 INC-42`).
pub fn parse_reply(text: &str) -> Option<Reply> {
    let lower = text.trim().to_lowercase();
    let mut words = lower.split_whitespace();
    let verb = words.next()?;
    let incident = match words.next() {
        Some(w) => Some(w.trim_start_matches('#').parse::<IncidentId>().ok()?),
        None => None,
    };
    if words.next().is_some() {
        return None;
    }
    match verb {
        "1" | "a" | "ack" | "acknowledge" => Some(Reply::Acknowledge(incident)),
        "2" | "r" | "res" | "resolve" => Some(Reply::Resolve(incident)),
        _ => None,
    }
}

const SMS_HELP: &str = "tocsin: reply 1 to acknowledge or 2 to resolve; add the incident number if you have several pages (ack 42).";

fn user_by_phone<'a>(st: &'a AppState, phone: &str) -> Option<&'a UserConfig> {
    st.config
        .users
        .iter()
        .find(|u| u.phone.as_deref() == Some(phone))
}

fn refusal(e: &ServiceError) -> String {
    match e {
        ServiceError::Store(_) => "tocsin could not record that just now; please try again.".into(),
        e => format!("{e}."),
    }
}

/// `POST /twilio/sms`
async fn sms(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match verified(&st, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let from = req.param("From").to_string();
    let Some(user) = user_by_phone(&st, &from) else {
        info!("An SMS from a number that is no tocsin user's; refused");
        return xml(message_twiml(
            "Sorry, this number is not registered with tocsin, so it cannot answer pages. Ask your tocsin admin to add it.",
        ));
    };
    let Some(reply) = parse_reply(req.param("Body")) else {
        return xml(message_twiml(SMS_HELP));
    };
    let actor = Actor::authenticated(&user.name, format!("sms:{from}"));
    let (chosen, acknowledge) = match reply {
        Reply::Acknowledge(i) => (i, true),
        Reply::Resolve(i) => (i, false),
    };
    let id = match chosen {
        Some(id) => id,
        None => {
            let open = match st.service.open_incidents_paging(&user.name) {
                Ok(o) => o,
                Err(e) => return xml(message_twiml(&refusal(&e))),
            };
            let candidates: Vec<_> = open
                .iter()
                .filter(|i| !acknowledge || i.status == Status::Triggered)
                .collect();
            match candidates.as_slice() {
                [] => {
                    return xml(message_twiml(if acknowledge {
                        "No incident that paged you waits for an acknowledgement."
                    } else {
                        "No open incident paged you."
                    }));
                }
                [one] => one.id,
                many => {
                    let list: Vec<String> = many.iter().map(|i| i.id.to_string()).collect();
                    let n = many[0].id.0;
                    let verb = if acknowledge { "ack" } else { "resolve" };
                    return xml(message_twiml(&format!(
                        "You have {} open pages: {}. Reply with the number, like '{verb} {n}'.",
                        many.len(),
                        list.join(", ")
                    )));
                }
            }
        }
    };
    let result = if acknowledge {
        st.service.acknowledge(id, actor).await
    } else {
        st.service.resolve(id, actor, None).await
    };
    let text = match result {
        Ok(inc) if acknowledge => format!(
            "Acknowledged {}: {}. Paging stopped; reply 2 to resolve.",
            inc.id,
            cut(&inc.title, 80)
        ),
        Ok(inc) => format!("Resolved {}: {}.", inc.id, cut(&inc.title, 80)),
        Err(e) => refusal(&e),
    };
    xml(message_twiml(&text))
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max - 3).collect::<String>())
    }
}

/// `POST /twilio/voice?key=...`
async fn voice(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match verified(&st, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let key = req.query.get("key").map(String::as_str).unwrap_or_default();
    let page = match st.service.page_by_external_key(key) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return xml(say_twiml(
                "This call is about a page tocsin does not know. Goodbye.",
            ));
        }
        Err(_) => {
            return xml(say_twiml(
                "tocsin could not look this page up. Please use another way to answer. Goodbye.",
            ));
        }
    };
    let user = match &page.recipient {
        crate::escalation::Recipient::User(u) => u.clone(),
        other => other.to_string(),
    };
    let phone = req.param("To").to_string();
    let actor = Actor::authenticated(&user, format!("voice:{phone}"));
    let id = page.incident;
    let result = match req.param("Digits") {
        "1" => st
            .service
            .acknowledge(id, actor)
            .await
            .map(|_| "Acknowledged. Paging stopped. Goodbye."),
        "2" => st
            .service
            .resolve(id, actor, None)
            .await
            .map(|_| "Resolved. Goodbye."),
        "3" => st
            .service
            .escalate(id, actor)
            .await
            .map(|_| "Escalated to the next step. Goodbye."),
        _ => {
            let base = st
                .config
                .server
                .public_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string())
                .unwrap_or_default();
            let action = format!(
                "{base}/twilio/voice?key={}",
                crate::notify::worker::url_encode(key)
            );
            let prompt = format!("That key does nothing. {}", voice_prompt(&page.page));
            return xml(voice_twiml(&prompt, &action));
        }
    };
    match result {
        Ok(said) => xml(say_twiml(said)),
        Err(e) => xml(say_twiml(&format!("{} Goodbye.", refusal(&e)))),
    }
}

/// Whether a status callback says the person was reached: `None` for a
/// status on the way (queued, sent, ringing), else the word to record.
pub fn reached(params: &HashMap<String, String>) -> Option<(String, bool)> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if let Some(s) = params.get("MessageStatus") {
        return match s.as_str() {
            "delivered" | "read" => Some((s.clone(), true)),
            "undelivered" | "failed" => Some((s.clone(), false)),
            _ => None,
        };
    }
    let answered_by = get("AnsweredBy");
    match get("CallStatus") {
        "completed" | "in-progress"
            if answered_by.starts_with("machine") || answered_by == "fax" =>
        {
            Some((format!("answered by {answered_by}"), false))
        }
        "completed" => Some(("answered".into(), true)),
        s @ ("busy" | "no-answer" | "failed" | "canceled") => Some((s.to_string(), false)),
        _ => None,
    }
}

/// `POST /twilio/status?key=...`
async fn status(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match verified(&st, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some((word, was_reached)) = reached(&req.params) else {
        return xml(empty_twiml());
    };
    let key = req.query.get("key").cloned().unwrap_or_default();
    let detail = req
        .params
        .get("ErrorCode")
        .filter(|c| !c.is_empty())
        .map(|c| format!("Twilio error {c}"));
    match st
        .service
        .record_carrier_report(&key, word, was_reached, detail)
        .await
    {
        Ok(true) => xml(empty_twiml()),
        Ok(false) => {
            info!("A Twilio status callback for a page tocsin does not know");
            xml(empty_twiml())
        }
        // Twilio retries a callback that fails.
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply(" 1 "), Some(Reply::Acknowledge(None)));
        assert_eq!(parse_reply("ACK"), Some(Reply::Acknowledge(None)));
        assert_eq!(
            parse_reply("ack 42"),
            Some(Reply::Acknowledge(Some(IncidentId(42))))
        );
        assert_eq!(
            parse_reply("2 INC-7"),
            Some(Reply::Resolve(Some(IncidentId(7))))
        );
        assert_eq!(parse_reply("resolve"), Some(Reply::Resolve(None)));
        for bad in ["", "3", "yes", "ack forty", "ack 4 2"] {
            assert_eq!(parse_reply(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_say_who_was_reached() {
        let p = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(reached(&p(&[("MessageStatus", "sent")])), None);
        assert_eq!(
            reached(&p(&[("MessageStatus", "delivered")])),
            Some(("delivered".into(), true))
        );
        assert_eq!(
            reached(&p(&[
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003")
            ])),
            Some(("undelivered".into(), false))
        );
        assert_eq!(
            reached(&p(&[("CallStatus", "no-answer")])),
            Some(("no-answer".into(), false))
        );
        assert_eq!(
            reached(&p(&[
                ("CallStatus", "completed"),
                ("AnsweredBy", "machine_start")
            ])),
            Some(("answered by machine_start".into(), false))
        );
        assert_eq!(
            reached(&p(&[("CallStatus", "completed"), ("AnsweredBy", "human")])),
            Some(("answered".into(), true))
        );
        assert_eq!(reached(&p(&[("CallStatus", "ringing")])), None);
    }
}
