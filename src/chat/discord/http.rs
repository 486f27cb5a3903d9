//! Discord's inbound side: `POST /discord/interactions`, and the answering
//! of interactions that the gateway client shares.
//!
//! Every request's Ed25519 signature (`X-Signature-Ed25519` over
//! `X-Signature-Timestamp` + body) is checked with the application's public
//! key (serenity's verifier), and the timestamp must be within 5 minutes of
//! tocsin's clock (the verifier does not look at it); a failure is 401 and
//! nothing happens. PING gets PONG. A command or a button press is carried
//! out by the shared handler; if that takes longer than `defer_after`,
//! Discord gets a deferred response at once (it wants one within 3 s) and
//! the answer is edited in through the interaction webhook afterwards.

use super::DiscordPlatform;
use super::commands;
use super::embeds::{self, CONTENT_MAX};
use crate::chat::Button;
use crate::chat::handler::{ChatHandler, Invocation, Origin, Reply, Visibility};
use crate::clock::Clock;
use crate::http::ApiError;
use crate::incident::IncidentId;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::Value;
use serenity::all::{
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    EditInteractionResponse,
};
use serenity::interactions_endpoint::Verifier;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Largest distance between a request's timestamp and tocsin's clock.
pub const MAX_AGE_SECONDS: i64 = 300;

/// The verifier of an application public key (64 hex digits).
pub fn verifier(public_key: &str) -> Result<Verifier, String> {
    let bytes = crate::config::discord_public_key(public_key)?;
    Verifier::try_new(bytes).map_err(|e| format!("discord: {e}"))
}

/// What the Discord routes and the gateway client need.
#[derive(Clone)]
pub struct DiscordState {
    /// The shared command handler.
    pub handler: ChatHandler,
    /// For the webhook edits and follow-ups of deferred answers.
    pub platform: Arc<DiscordPlatform>,
    /// Checks `X-Signature-Ed25519`.
    pub verifier: Verifier,
    /// tocsin's clock, for the replay window.
    pub clock: Arc<dyn Clock>,
    /// Interaction ids seen within the replay window.
    pub replay: Arc<crate::chat::replay::ReplayGuard>,
    /// How long to work before answering with a deferred response.
    pub defer_after: Duration,
}

/// The Discord route.
pub fn router(state: DiscordState) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(state)
}

/// Checks the signature and the timestamp.
fn verify(st: &DiscordState, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(format!("missing {name} header")))
    };
    let signature = header("x-signature-ed25519")?;
    let ts = header("x-signature-timestamp")?;
    st.verifier.verify(signature, ts, body).map_err(|()| {
        warn!("Refused a Discord interaction with a bad signature");
        ApiError::unauthorized("the Discord signature does not match")
    })?;
    let seconds: i64 = ts
        .parse()
        .map_err(|_| ApiError::unauthorized("x-signature-timestamp is not a number"))?;
    let now = st.clock.now().timestamp();
    if (now - seconds).abs() > MAX_AGE_SECONDS {
        warn!(
            age = now - seconds,
            "Refused a Discord interaction outside the 5-minute window"
        );
        return Err(ApiError::unauthorized(
            "the request timestamp is more than 5 minutes from tocsin's clock (replayed or skewed)",
        ));
    }
    Ok(())
}

/// An interaction, from either the HTTP endpoint or the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Its id.
    pub id: String,
    /// Its token, for the webhook.
    pub token: String,
    /// What it is.
    pub kind: IncomingKind,
    /// Who (the member's user in a guild, the user in a DM).
    pub user_id: Option<String>,
    /// Where.
    pub channel_id: Option<String>,
    /// The guild it came from; none in a direct message.
    pub guild_id: Option<String>,
    /// The application it was sent to.
    pub application_id: Option<String>,
}

/// The interactions tocsin answers.
#[derive(Debug, Clone, PartialEq)]
pub enum IncomingKind {
    /// Type 1.
    Ping,
    /// Type 2: a command, its `options` as Discord sends them.
    Command {
        /// `incident`, `oncall` or `page`.
        name: String,
        /// The options array.
        options: Value,
    },
    /// Type 3: a button press.
    Component {
        /// The button's custom id.
        custom_id: String,
    },
    /// Anything else (autocomplete, modals).
    Other(u8),
}

#[derive(Debug, Deserialize)]
struct RawUser {
    id: String,
}

#[derive(Debug, Deserialize)]
struct RawMember {
    user: Option<RawUser>,
}

#[derive(Debug, Deserialize)]
struct RawChannel {
    id: String,
}

#[derive(Debug, Deserialize)]
struct RawInteraction {
    #[serde(rename = "type")]
    kind: u8,
    id: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    data: Value,
    member: Option<RawMember>,
    user: Option<RawUser>,
    channel_id: Option<String>,
    channel: Option<RawChannel>,
    guild_id: Option<String>,
    application_id: Option<String>,
}

impl Incoming {
    /// Reads the documented interaction object, looking only at the
    /// fields tocsin uses.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let raw: RawInteraction = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let kind = match raw.kind {
            1 => IncomingKind::Ping,
            2 => IncomingKind::Command {
                name: text(&raw.data, "name").ok_or("a command without data.name")?,
                options: raw.data.get("options").cloned().unwrap_or(Value::Null),
            },
            3 => IncomingKind::Component {
                custom_id: text(&raw.data, "custom_id").ok_or("a component without custom_id")?,
            },
            other => IncomingKind::Other(other),
        };
        Ok(Self {
            id: raw.id,
            token: raw.token,
            kind,
            user_id: raw.member.and_then(|m| m.user).or(raw.user).map(|u| u.id),
            channel_id: raw.channel_id.or(raw.channel.map(|c| c.id)),
            guild_id: raw.guild_id,
            application_id: raw.application_id,
        })
    }

    /// From serenity's model (the gateway).
    pub fn from_serenity(i: &serenity::all::Interaction) -> Option<Self> {
        use serenity::all::Interaction as I;
        Some(match i {
            I::Ping(p) => Self {
                id: p.id.to_string(),
                token: p.token.clone(),
                kind: IncomingKind::Ping,
                user_id: None,
                channel_id: None,
                guild_id: None,
                application_id: Some(p.application_id.to_string()),
            },
            I::Command(c) => Self {
                id: c.id.to_string(),
                token: c.token.clone(),
                kind: IncomingKind::Command {
                    name: c.data.name.clone(),
                    options: serde_json::to_value(&c.data.options).ok()?,
                },
                user_id: Some(
                    c.member
                        .as_ref()
                        .map(|m| m.user.id)
                        .unwrap_or(c.user.id)
                        .to_string(),
                ),
                channel_id: Some(c.channel_id.to_string()),
                guild_id: c.guild_id.map(|g| g.to_string()),
                application_id: Some(c.application_id.to_string()),
            },
            I::Component(c) => Self {
                id: c.id.to_string(),
                token: c.token.clone(),
                kind: IncomingKind::Component {
                    custom_id: c.data.custom_id.clone(),
                },
                user_id: Some(
                    c.member
                        .as_ref()
                        .map(|m| m.user.id)
                        .unwrap_or(c.user.id)
                        .to_string(),
                ),
                channel_id: Some(c.channel_id.to_string()),
                guild_id: c.guild_id.map(|g| g.to_string()),
                application_id: Some(c.application_id.to_string()),
            },
            _ => return None,
        })
    }
}

/// The step id behind a shortened Done `custom_id` (a step id too long for
/// Discord's 100 characters): the open step of the incident's runbook whose
/// button has this `custom_id`.
async fn resolve_step(
    handler: &ChatHandler,
    origin: &Origin,
    id: IncidentId,
    custom_id: &str,
) -> Option<String> {
    let card = handler.press(origin.clone(), Button::Runbook, id, "").await;
    let steps = card
        .buttons
        .iter()
        .filter(|(b, i, _)| *b == Button::StepDone && *i == id)
        .map(|(_, _, s)| s.as_str());
    embeds::resolve_arg(custom_id, Button::StepDone, id, steps).map(str::to_string)
}

/// Work left after the first answer: the deferred reply.
pub type Later = Pin<Box<dyn Future<Output = ()> + Send>>;

fn message(reply: &Reply) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .content(embeds::truncate(
            &embeds::markdown(&reply.text),
            CONTENT_MAX,
        ))
        .allowed_mentions(embeds::mentions(&embeds::mentioned_ids(&reply.text)))
        .components(embeds::reply_buttons(&reply.buttons))
        .ephemeral(reply.visibility == Visibility::Ephemeral)
}

fn private(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(message(&Reply::private(text)))
}

/// How a deferred reply arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Deferred {
    /// Edit the original response (after an ephemeral type 5). A deferred
    /// response cannot be made ephemeral by the edit, so every command is
    /// deferred ephemeral (a refusal must not be posted for all to see)
    /// and a public reply is posted in the command's channel instead.
    EditOriginal {
        /// The channel the command came from.
        channel: Option<String>,
    },
    /// Post a follow-up message (after type 6).
    Followup,
}

impl DiscordState {
    /// Answers an interaction: the first answer, and (when the work took
    /// longer than `defer_after`) the delivery of the late reply.
    pub async fn answer(&self, inc: Incoming) -> (CreateInteractionResponse, Option<Later>) {
        let user = inc.user_id.clone().unwrap_or_default();
        if inc.kind == IncomingKind::Ping {
            return (CreateInteractionResponse::Pong, None);
        }
        let guild = self.platform.guild().to_string();
        let application = self.platform.application().to_string();
        if inc.application_id.as_deref() != Some(application.as_str()) {
            warn!(application = ?inc.application_id, %user, "Refused a Discord interaction for another application");
            return (
                private("This interaction is for another application; tocsin did nothing."),
                None,
            );
        }
        if let Some(g) = inc.guild_id.as_deref()
            && g != guild
        {
            warn!(guild = %g, %user, "Refused a Discord interaction from another server");
            return (
                private("This tocsin serves another Discord server; nothing was done."),
                None,
            );
        }
        let in_dm = inc.guild_id.is_none();
        if in_dm && matches!(inc.kind, IncomingKind::Command { .. }) {
            warn!(%user, "Refused a Discord command sent in a direct message");
            return (
                private(
                    "tocsin's commands work in its Discord server, not in direct messages; only the buttons of a page tocsin sent you work here.",
                ),
                None,
            );
        }
        // A DM has no guild: the user was found in tocsin's config, for
        // the guild tocsin serves.
        let origin = Origin {
            platform: "discord",
            workspace: guild,
            user_id: user.clone(),
            channel_id: inc.channel_id.clone(),
            in_dm,
        };
        match inc.kind {
            IncomingKind::Ping => (CreateInteractionResponse::Pong, None),
            IncomingKind::Other(kind) => {
                info!(
                    kind,
                    "Ignored a Discord interaction of a type tocsin does not use"
                );
                (private("tocsin does not handle this interaction."), None)
            }
            IncomingKind::Command { name, options } => {
                info!(command = %name, %user, "Discord command");
                let command = match commands::to_command(&name, &options) {
                    Ok(c) => c,
                    Err(usage) => {
                        return (private(super::escape(&usage.to_string())), None);
                    }
                };
                let handler = self.handler.clone();
                let channel = inc.channel_id.clone();
                let invocation = Invocation { origin, command };
                let work = tokio::spawn(async move { handler.handle(invocation).await });
                // Whether it is a refusal is not known yet: private until
                // the reply says otherwise.
                let defer = CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(true),
                );
                self.race(work, inc.token, defer, Deferred::EditOriginal { channel })
                    .await
            }
            IncomingKind::Component { custom_id } => {
                let Some((button, id, arg)) = embeds::parse_custom_id_arg(&custom_id) else {
                    return (
                        private(format!("Unknown button '{}'.", super::escape(&custom_id))),
                        None,
                    );
                };
                info!(%user, button = button.action_id(), incident = %id, "Discord button");
                let handler = self.handler.clone();
                let work = tokio::spawn(async move {
                    let arg = if button == Button::StepDone && embeds::is_shortened_arg(&arg) {
                        match resolve_step(&handler, &origin, id, &custom_id).await {
                            Some(step) => step,
                            None => {
                                return Reply::private(format!(
                                    "That step of {id} is no longer open; see `/incident runbook show`."
                                ));
                            }
                        }
                    } else {
                        arg
                    };
                    handler.press(origin, button, id, &arg).await
                });
                self.race(
                    work,
                    inc.token,
                    CreateInteractionResponse::Acknowledge,
                    Deferred::Followup,
                )
                .await
            }
        }
    }

    /// Waits `defer_after` for the work: its reply, or `defer` and the
    /// delivery of the reply when it comes.
    async fn race(
        &self,
        mut work: tokio::task::JoinHandle<Reply>,
        token: String,
        defer: CreateInteractionResponse,
        how: Deferred,
    ) -> (CreateInteractionResponse, Option<Later>) {
        // `defer_after = "0s"` always defers.
        let waited = if self.defer_after.is_zero() {
            Err(())
        } else {
            tokio::time::timeout(self.defer_after, &mut work)
                .await
                .map_err(|_| ())
        };
        match waited {
            Ok(Ok(reply)) => (CreateInteractionResponse::Message(message(&reply)), None),
            Ok(Err(e)) => {
                warn!(error = %e, "A Discord command failed");
                (private("Something went wrong; see tocsin's log."), None)
            }
            Err(_) => {
                let platform = self.platform.clone();
                let later: Later = Box::pin(async move {
                    let reply = match work.await {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(error = %e, "A Discord command failed");
                            Reply::private("Something went wrong; see tocsin's log.")
                        }
                    };
                    deliver_late(&platform, &token, &reply, how).await;
                });
                (defer, Some(later))
            }
        }
    }
}

/// Edits the deferred response or posts a follow-up. In HTTP mode this can
/// race the deferred response itself to Discord, so an unknown
/// interaction, a 429 or a 5xx is retried a few times.
async fn deliver_late(platform: &DiscordPlatform, token: &str, reply: &Reply, how: Deferred) {
    let http = platform.http();
    let content = embeds::truncate(&embeds::markdown(&reply.text), CONTENT_MAX);
    let ids = embeds::mentioned_ids(&reply.text);
    if let Deferred::EditOriginal {
        channel: Some(channel),
    } = &how
        && reply.visibility == Visibility::InChannel
        && post_public(platform, channel, token, reply).await
    {
        // The "thinking" message only the asker saw has done its job.
        if let Err(e) = http.delete_original_interaction_response(token).await {
            info!(error = %e, "Could not delete a deferred Discord answer");
        }
        return;
    }
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=5 {
        let result = match &how {
            Deferred::EditOriginal { .. } => {
                let edit = EditInteractionResponse::new()
                    .content(content.clone())
                    .allowed_mentions(embeds::mentions(&ids))
                    .components(embeds::reply_buttons(&reply.buttons));
                http.edit_original_interaction_response(token, &edit, Vec::new())
                    .await
                    .map(|_| ())
            }
            Deferred::Followup => {
                let followup = CreateInteractionResponseFollowup::new()
                    .content(content.clone())
                    .allowed_mentions(embeds::mentions(&ids))
                    .components(embeds::reply_buttons(&reply.buttons))
                    .ephemeral(reply.visibility == Visibility::Ephemeral);
                http.create_followup_message(token, &followup, Vec::new())
                    .await
                    .map(|_| ())
            }
        };
        let status = match result {
            Ok(()) => return,
            Err(serenity::Error::Http(e)) => e.status_code(),
            Err(_) => None,
        };
        let again =
            status.is_none_or(|s| s.as_u16() == 404 || s.as_u16() == 429 || s.is_server_error());
        if !again || attempt == 5 {
            warn!(?status, ?how, "Could not deliver a deferred Discord reply");
            return;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// Posts the public part of a deferred reply in `channel` as the bot, once
/// (a nonce from the interaction token, enforced, so a retry finds the
/// first post); whether it was posted.
async fn post_public(
    platform: &DiscordPlatform,
    channel: &str,
    token: &str,
    reply: &Reply,
) -> bool {
    let Ok(channel_id) = channel.parse::<u64>().map(serenity::all::ChannelId::new) else {
        return false;
    };
    let message = serenity::all::CreateMessage::new()
        .content(embeds::truncate(
            &embeds::markdown(&reply.text),
            CONTENT_MAX,
        ))
        .allowed_mentions(embeds::mentions(&embeds::mentioned_ids(&reply.text)))
        .components(embeds::reply_buttons(&reply.buttons))
        .nonce(serenity::all::Nonce::String(super::nonce(&format!(
            "interaction/{token}"
        ))))
        .enforce_nonce(true);
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=5 {
        let status = match platform
            .http()
            .send_message(channel_id, Vec::new(), &message)
            .await
        {
            Ok(_) => return true,
            Err(serenity::Error::Http(e)) => e.status_code(),
            Err(_) => None,
        };
        let again = status.is_none_or(|s| s.as_u16() == 429 || s.is_server_error());
        if !again || attempt == 5 {
            warn!(
                ?status,
                "Could not post a deferred Discord reply in its channel"
            );
            return false;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    false
}

/// `CreateInteractionResponse` as the JSON of an HTTP answer.
fn json(answer: &CreateInteractionResponse) -> Value {
    let mut v = serde_json::to_value(answer).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut()
        && m.get("data").is_some_and(Value::is_null)
    {
        m.remove("data");
    }
    v
}

/// `POST /discord/interactions`
async fn interactions(
    State(st): State<DiscordState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    verify(&st, &headers, &body)?;
    let incoming = Incoming::from_json(&body)
        .map_err(|e| ApiError::bad_request(format!("not a Discord interaction: {e}")))?;
    // The signature holds for 5 minutes: without this, the same signed
    // interaction sent again would act again. Discord never resends one.
    let now = st.clock.now().timestamp();
    if !st
        .replay
        .first_time(&format!("interaction:{}", incoming.id), now)
    {
        warn!(interaction = %incoming.id, "Refused a replayed Discord interaction");
        return Err(ApiError::unauthorized(
            "this interaction was already received (a replay): Discord sends each interaction once",
        ));
    }
    let (first, later) = st.answer(incoming).await;
    if let Some(later) = later {
        tokio::spawn(later);
    }
    Ok(axum::Json(json(&first)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn verifies_with_serenity_and_refuses_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = hex::encode(key.verifying_key().to_bytes());
        let v = verifier(&public).unwrap();
        let body = br#"{"type":1}"#;
        let sig = hex::encode(
            key.sign(&[b"1700000000".as_slice(), body].concat())
                .to_bytes(),
        );
        assert!(v.verify(&sig, "1700000000", body).is_ok());
        assert!(v.verify(&sig, "1700000001", body).is_err());
        assert!(v.verify(&sig, "1700000000", br#"{"type":2}"#).is_err());
        assert!(verifier("zz").is_err());
    }

    #[test]
    fn reads_guild_and_dm_interactions() {
        let guild = serde_json::json!({
            "type": 2, "id": "1", "application_id": "2", "token": "tok", "version": 1,
            "guild_id": "3", "channel_id": "4", "channel": {"id": "4", "type": 0},
            "member": {"user": {"id": "5", "username": "alice"}, "roles": []},
            "data": {"id": "6", "name": "incident", "type": 1,
                     "options": [{"name": "ack", "type": 1, "options": []}]}
        });
        let i = Incoming::from_json(guild.to_string().as_bytes()).unwrap();
        assert_eq!(i.user_id.as_deref(), Some("5"));
        assert_eq!(i.channel_id.as_deref(), Some("4"));
        assert!(matches!(i.kind, IncomingKind::Command { ref name, .. } if name == "incident"));
        let dm = serde_json::json!({
            "type": 3, "id": "1", "application_id": "2", "token": "tok", "version": 1,
            "channel": {"id": "9", "type": 1}, "user": {"id": "7", "username": "bob"},
            "data": {"custom_id": "tocsin_ack:INC-3", "component_type": 2}
        });
        let i = Incoming::from_json(dm.to_string().as_bytes()).unwrap();
        assert_eq!(i.user_id.as_deref(), Some("7"));
        assert_eq!(i.channel_id.as_deref(), Some("9"));
        assert_eq!(
            i.kind,
            IncomingKind::Component {
                custom_id: "tocsin_ack:INC-3".into()
            }
        );
    }

    #[test]
    fn answers_serialize_as_discord_wants() {
        assert_eq!(
            json(&CreateInteractionResponse::Pong),
            serde_json::json!({"type": 1})
        );
        assert_eq!(
            json(&CreateInteractionResponse::Acknowledge),
            serde_json::json!({"type": 6})
        );
        let defer = json(&CreateInteractionResponse::Defer(
            CreateInteractionResponseMessage::new().ephemeral(true),
        ));
        assert_eq!(defer["type"], 5);
        assert_eq!(defer["data"]["flags"], 64);
        let m = json(&CreateInteractionResponse::Message(message(
            &Reply::public("hi <@80351110224678912>"),
        )));
        assert_eq!(m["type"], 4);
        assert_eq!(m["data"]["content"], "hi <@80351110224678912>");
        assert_eq!(
            m["data"]["allowed_mentions"]["parse"],
            serde_json::json!([])
        );
        assert_eq!(
            m["data"]["allowed_mentions"]["users"],
            serde_json::json!(["80351110224678912"])
        );
    }
}
