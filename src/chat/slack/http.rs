//! Slack's inbound HTTP: slash commands, interactions (buttons) and the
//! Events API. Every request's signature is checked with the signing secret
//! (slack-morphism's verifier) and its timestamp must be within 5 minutes of
//! tocsin's clock; a failure is 401 and nothing happens. Work runs after
//! the 200 (Slack wants an answer within 3 s); results go to `response_url`.

use crate::chat::Button;
use crate::chat::command::{self, Command};
use crate::chat::handler::{ChatHandler, Invocation, Origin, Reply, Visibility};
use crate::chat::replay::ReplayGuard;
use crate::clock::Clock;
use crate::http::ApiError;
use crate::incident::IncidentId;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::sync::Arc;
use tracing::{info, warn};

/// Largest age of a request timestamp, as Slack recommends.
pub const MAX_AGE_SECONDS: i64 = 300;

/// What a request already received within the window is told.
const REPLAYED: &str =
    "this signed request was already received (a replay): Slack signs every request it sends anew";

/// The workspace tocsin serves: `[slack] team_id`, or on Enterprise Grid
/// `enterprise_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace (`T...`).
    pub team_id: Option<String>,
    /// The Enterprise Grid organization (`E...`).
    pub enterprise_id: Option<String>,
}

impl Workspace {
    /// The id a request from `team` (and `enterprise`) is recorded under,
    /// if the request is from this workspace or organization; `None` for
    /// any other (and for a request that names neither).
    pub fn admit(&self, team: Option<&str>, enterprise: Option<&str>) -> Option<String> {
        let team = team.filter(|t| !t.is_empty());
        let enterprise = enterprise.filter(|e| !e.is_empty());
        let by_team = self.team_id.is_some() && self.team_id.as_deref() == team;
        let by_enterprise =
            self.enterprise_id.is_some() && self.enterprise_id.as_deref() == enterprise;
        (by_team || by_enterprise).then(|| team.or(enterprise).unwrap_or_default().to_string())
    }

    /// What a request from elsewhere is told.
    fn refusal(&self) -> String {
        "This tocsin serves another Slack workspace; nothing was done.".to_string()
    }
}

/// What the Slack routes need.
#[derive(Clone)]
pub struct SlackState {
    /// The workspace whose requests are taken.
    pub workspace: Workspace,
    /// The shared command handler.
    pub handler: ChatHandler,
    /// For replies to `response_url` and app mentions.
    pub platform: Arc<super::SlackPlatform>,
    /// Verifies `x-slack-signature`.
    pub verifier: SlackEventSignatureVerifier,
    /// tocsin's clock, for the replay window.
    pub clock: Arc<dyn Clock>,
    /// Signatures and event ids seen within the replay window.
    pub replay: Arc<ReplayGuard>,
    /// Posts replies to `response_url`.
    pub http: reqwest::Client,
}

/// The Slack routes.
pub fn router(state: SlackState) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .with_state(state)
}

/// Checks the signature, the timestamp and that the signed request was not
/// received before; the body as text if they hold.
fn verify(st: &SlackState, headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let (text, first) = verify_signed(st, headers, body)?;
    if !first {
        warn!("Refused a replayed Slack request");
        return Err(ApiError::unauthorized(REPLAYED));
    }
    Ok(text)
}

/// Checks the signature and the timestamp; the body as text, and whether
/// this signature is new within the replay window.
fn verify_signed(
    st: &SlackState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, bool), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(format!("missing {name} header")))
    };
    let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER)?;
    let ts = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP)?;
    let seconds: i64 = ts
        .parse()
        .map_err(|_| ApiError::unauthorized("x-slack-request-timestamp is not a number"))?;
    let now = st.clock.now().timestamp();
    if (now - seconds).abs() > MAX_AGE_SECONDS {
        warn!(
            age = now - seconds,
            "Refused a Slack request outside the 5-minute window"
        );
        return Err(ApiError::unauthorized(
            "the request timestamp is more than 5 minutes from tocsin's clock (replayed or skewed)",
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    st.verifier.verify(signature, text, ts).map_err(|e| {
        warn!(error = %e, "Refused a Slack request with a bad signature");
        ApiError::unauthorized("the Slack signature does not match")
    })?;
    // Only a verified signature is remembered: forgeries cost no memory.
    let first = st.replay.first_time(&format!("sig:{signature}"), now);
    Ok((text.to_string(), first))
}

/// Posts a reply to a `response_url`.
async fn respond(st: &SlackState, url: &str, reply: &Reply) {
    let mut body = json!({
        "response_type": match reply.visibility {
            Visibility::Ephemeral => "ephemeral",
            Visibility::InChannel => "in_channel",
        },
        "replace_original": false,
        "text": reply.text,
    });
    // Buttons need blocks; so does a reply too long for one message's
    // text (cut within Slack's limits, like any message).
    if !reply.buttons.is_empty() || reply.text.chars().count() > super::blocks::SECTION_MAX {
        let reserve = usize::from(!reply.buttons.is_empty());
        let mut blocks = super::blocks::text_leaving(&reply.text, reserve);
        if let Some(list) = blocks.as_array_mut()
            && !reply.buttons.is_empty()
        {
            list.push(super::blocks::reply_buttons(&reply.buttons));
        }
        body["blocks"] = blocks;
        body["text"] = super::blocks::fallback(&reply.text).into();
    }
    match st.http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => warn!(status = %r.status(), "Slack refused a command reply"),
        Err(e) => warn!(error = %e.without_url(), "Could not post a command reply to Slack"),
    }
}

#[derive(Debug, Deserialize)]
struct CommandForm {
    command: String,
    #[serde(default)]
    text: String,
    user_id: String,
    channel_id: String,
    response_url: String,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    enterprise_id: Option<String>,
}

/// A Slack direct message channel id (`D...`).
fn is_dm(channel: &str) -> bool {
    channel.starts_with('D')
}

/// `POST /slack/commands`
async fn commands(
    State(st): State<SlackState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let text = verify(&st, &headers, &body)?;
    let form: CommandForm = serde_urlencoded::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("not a Slack slash command: {e}")))?;
    let Some(workspace) = st
        .workspace
        .admit(form.team_id.as_deref(), form.enterprise_id.as_deref())
    else {
        warn!(team = ?form.team_id, enterprise = ?form.enterprise_id, user = %form.user_id,
            "Refused a Slack command from another workspace");
        // Answered in the response itself: nothing is posted anywhere.
        return Ok(axum::Json(json!({
            "response_type": "ephemeral",
            "text": st.workspace.refusal(),
        }))
        .into_response());
    };
    info!(command = %form.command, user = %form.user_id, "Slack command");
    let parsed = command::parse(&form.command, &form.text);
    tokio::spawn(async move {
        let reply = match parsed {
            Ok(command) => {
                st.handler
                    .handle(Invocation {
                        origin: Origin {
                            platform: "slack",
                            workspace,
                            user_id: form.user_id,
                            in_dm: is_dm(&form.channel_id),
                            channel_id: Some(form.channel_id),
                        },
                        command,
                    })
                    .await
            }
            // The usage's `<placeholders>` (and what was typed) are text.
            Err(usage) => Reply::private(super::escape(&usage.to_string())),
        };
        respond(&st, &form.response_url, &reply).await;
    });
    // An empty 200: Slack shows nothing until the reply arrives.
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Deserialize)]
struct InteractionForm {
    payload: String,
}

/// `POST /slack/interactions`: button presses on cards and pages.
async fn interactions(
    State(st): State<SlackState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let text = verify(&st, &headers, &body)?;
    let form: InteractionForm = serde_urlencoded::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("not a Slack interaction: {e}")))?;
    let raw: serde_json::Value = serde_json::from_str(&form.payload)
        .map_err(|e| ApiError::bad_request(format!("not a Slack interaction payload: {e}")))?;
    // Read from the payload as Slack documents it (`team.id`,
    // `enterprise.id`, `channel.id` or `container.channel_id`): an
    // org-wide install may send `team: null`.
    let text_at = |path: &[&str]| {
        path.iter()
            .try_fold(&raw, |v, k| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let team = text_at(&["team", "id"]);
    let enterprise = text_at(&["enterprise", "id"]);
    let channel = text_at(&["channel", "id"]).or_else(|| text_at(&["container", "channel_id"]));
    let workspace = st.workspace.admit(team.as_deref(), enterprise.as_deref());
    let event: SlackInteractionEvent = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("not a Slack interaction payload: {e}")))?;
    let SlackInteractionEvent::BlockActions(actions) = event else {
        return Ok(StatusCode::OK.into_response());
    };
    let Some(workspace) = workspace else {
        warn!(
            ?team,
            ?enterprise,
            "Refused a Slack button from another workspace"
        );
        let refusal = Reply::private(st.workspace.refusal());
        if let Some(url) = actions.response_url.map(|u| u.0.to_string()) {
            tokio::spawn(async move { respond(&st, &url, &refusal).await });
        }
        return Ok(StatusCode::OK.into_response());
    };
    let user = actions
        .user
        .as_ref()
        .map(|u| u.id.to_string())
        .ok_or_else(|| ApiError::bad_request("the interaction has no user"))?;
    let Some(action) = actions.actions.as_ref().and_then(|a| a.first()).cloned() else {
        return Ok(StatusCode::OK.into_response());
    };
    let action_id: &str = action.action_id.as_ref();
    let button = Button::from_action_id(action_id.split(':').next().unwrap_or_default())
        .ok_or_else(|| ApiError::bad_request(format!("unknown action '{}'", action.action_id)))?;
    // The value is the incident, then the button's argument (a step id).
    let value = action.value.clone().unwrap_or_default();
    let (raw_id, arg) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    let arg = arg.to_string();
    let id: IncidentId = raw_id
        .parse()
        .map_err(|e: crate::incident::BadIncidentId| ApiError::bad_request(e.to_string()))?;
    info!(%user, action = %action.action_id, incident = %id, "Slack button");
    let response_url: Option<String> = actions.response_url.map(|u| u.0.to_string());
    let origin = Origin {
        platform: "slack",
        workspace,
        user_id: user,
        in_dm: channel.as_deref().is_some_and(is_dm),
        channel_id: channel,
    };
    tokio::spawn(async move {
        let reply = st.handler.press(origin, button, id, &arg).await;
        match response_url {
            Some(url) => respond(&st, &url, &reply).await,
            None => warn!("A Slack interaction without response_url; the reply is dropped"),
        }
    });
    Ok(StatusCode::OK.into_response())
}

/// `POST /slack/events`: URL verification and app mentions
/// (`@tocsin ack` in an incident channel works like `/incident ack`).
async fn events(
    State(st): State<SlackState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    // Slack retries an event it got no 2xx for within 3 s (a new signature,
    // `X-Slack-Retry-Num`, the same event id). A retry of an event already
    // handled gets the 200 Slack wants and does nothing; the same signed
    // request again is a replay, refused like any other.
    let (text, first) = verify_signed(&st, &headers, &body)?;
    let retry = headers.get("x-slack-retry-num").is_some();
    if !first && !retry {
        warn!("Refused a replayed Slack event");
        return Err(ApiError::unauthorized(REPLAYED));
    }
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("not a Slack event: {e}")))?;
    let event: SlackPushEvent = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("not a Slack event: {e}")))?;
    // An event callback names its workspace (`team_id`, and `enterprise_id`
    // on Enterprise Grid); one from elsewhere changes nothing.
    let workspace = st.workspace.admit(
        raw.get("team_id").and_then(serde_json::Value::as_str),
        raw.get("enterprise_id").and_then(serde_json::Value::as_str),
    );
    if let SlackPushEvent::EventCallback(cb) = &event
        && workspace.is_none()
    {
        warn!(team = %cb.team_id, event = %cb.event_id, "Refused a Slack event from another workspace");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this event is from another Slack workspace than [slack] team_id",
        ));
    }
    if let SlackPushEvent::EventCallback(cb) = &event {
        let now = st.clock.now().timestamp();
        if !first || !st.replay.first_time(&format!("event:{}", cb.event_id), now) {
            info!(event = %cb.event_id, retry, "A Slack event already handled; not again");
            return Ok(StatusCode::OK.into_response());
        }
    }
    match event {
        SlackPushEvent::UrlVerification(v) => {
            Ok(axum::Json(json!({"challenge": v.challenge})).into_response())
        }
        SlackPushEvent::EventCallback(cb) => {
            if let SlackEventCallbackBody::AppMention(m) = cb.event {
                let user = m.user.to_string();
                let channel = m.channel.to_string();
                let said = m.content.text.unwrap_or_default();
                // Drop the mention of the bot itself, keep the command.
                let words: String = said
                    .split_whitespace()
                    .skip_while(|w| w.starts_with("<@"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let workspace = workspace.unwrap_or_default();
                tokio::spawn(async move {
                    let reply = match command::parse("incident", &words) {
                        Ok(Command::Help) | Err(_) => {
                            Reply::public(super::escape(command::INCIDENT_USAGE))
                        }
                        Ok(command) => {
                            st.handler
                                .handle(Invocation {
                                    origin: Origin {
                                        platform: "slack",
                                        workspace,
                                        user_id: user.clone(),
                                        in_dm: is_dm(&channel),
                                        channel_id: Some(channel.clone()),
                                    },
                                    command,
                                })
                                .await
                        }
                    };
                    use crate::chat::{ChatMessage, ChatPlatform};
                    // An ephemeral reply (a refusal, or about an incident
                    // outside its channel) is shown to the asker only.
                    let sent = match reply.visibility {
                        Visibility::Ephemeral => {
                            st.platform
                                .post_ephemeral(&channel, &user, &reply.text)
                                .await
                        }
                        Visibility::InChannel => st
                            .platform
                            .post(&channel, &ChatMessage::Text(reply.text))
                            .await
                            .map(|_| ()),
                    };
                    if let Err(e) = sent {
                        warn!(error = %e, "Could not answer an app mention");
                    }
                });
            }
            Ok(StatusCode::OK.into_response())
        }
        _ => Ok(StatusCode::OK.into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::prelude::SlackSigningSecret;

    /// Slack's published example (api.slack.com/authentication/verifying-requests-from-slack).
    #[test]
    fn slack_published_signature_example() {
        let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
            "8f742231b10e8888abcd99yyyzzz85a5".into(),
        ));
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        // The crate checks the timestamp against the real clock too, so
        // check the HMAC with tocsin's own signer, then that the crate
        // refuses the (years-old) timestamp.
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            expected
        );
        assert!(verifier.verify(expected, body, "1531420618").is_err());
        let wrong = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b504";
        assert!(verifier.verify(wrong, body, "1531420618").is_err());
    }

    #[test]
    fn only_the_configured_workspace_or_organization_is_admitted() {
        let team = Workspace {
            team_id: Some("T0001".into()),
            enterprise_id: None,
        };
        assert_eq!(team.admit(Some("T0001"), None), Some("T0001".into()));
        assert_eq!(team.admit(Some("T0002"), None), None);
        assert_eq!(team.admit(None, Some("E0001")), None);
        assert_eq!(team.admit(None, None), None);
        // Enterprise Grid: any workspace of the organization, recorded by
        // its own team id (or the organization's, for an org-wide install).
        let grid = Workspace {
            team_id: None,
            enterprise_id: Some("E0001".into()),
        };
        assert_eq!(
            grid.admit(Some("T0009"), Some("E0001")),
            Some("T0009".into())
        );
        assert_eq!(grid.admit(Some(""), Some("E0001")), Some("E0001".into()));
        assert_eq!(grid.admit(Some("T0009"), Some("E0002")), None);
        assert_eq!(grid.admit(Some("T0009"), None), None);
        assert_eq!(
            Workspace::default().admit(Some("T0001"), Some("E0001")),
            None
        );
    }

    #[test]
    fn the_slack_ids_are_required_and_checked() {
        use crate::config::{Config, ConfigError};
        let problems = |extra: &str| match Config::from_toml_str(
            &format!("[slack]\nbot_token = \"xoxb-1\"\nsigning_secret = \"s\"\n{extra}"),
            &Default::default(),
        ) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
            Err(e) => panic!("{e}"),
        };
        let missing = problems("");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with("slack.team_id: is required")
                && missing[0].contains("app.slack.com/client/T")
                && missing[0].contains("enterprise_id"),
            "{missing:?}"
        );
        assert!(problems("team_id = \"T0TEAM\"").is_empty());
        assert!(problems("enterprise_id = \"E0ORG\"").is_empty());
        let bad = problems("team_id = \"acme\"\nenterprise_id = \"T1\"");
        assert!(
            bad.iter().any(|p| p.starts_with("slack.team_id: 'acme'")),
            "{bad:?}"
        );
        assert!(
            bad.iter()
                .any(|p| p.starts_with("slack.enterprise_id: 'T1'")),
            "{bad:?}"
        );
    }

    /// Signs like Slack does: `v0=hex(HMAC-SHA256(secret, "v0:" ts ":" body))`.
    pub fn sign(secret: &str, ts: &str, body: &str) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }
}
