//! The Slack adapter, through slack-morphism.
//!
//! Outbound: [`SlackPlatform`] implements [`ChatPlatform`] with the Web API
//! (`conversations.create`, `.invite`, `.setTopic`, `.archive`, `.open`,
//! `.history`, `chat.postMessage`, `chat.postEphemeral`, `chat.update`,
//! private channels (`is_private`, scope `groups:write`), and a long summary's file
//! through `files.getUploadURLExternal` and `files.completeUploadExternal`,
//! which needs the `files:write` scope). Inbound: [`http`] verifies
//! request signatures and feeds slash commands, button presses and app
//! mentions to the shared [`ChatHandler`](super::handler::ChatHandler).
//! Every Web API call is paced by [`pace`] to Slack's documented limits.

pub mod blocks;
pub mod http;
pub mod pace;

pub use crate::markup::slack::escape;

use super::{ChannelRef, ChatFuture, ChatMessage, ChatPlatform, InviteFailure, SummaryPost};
use crate::config::SlackConfig;
use crate::notify::DeliveryError;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::sync::Arc;
use tracing::warn;

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// Slack errors that say "try again later".
const TRANSIENT: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
];

/// A Slack workspace, through its bot token.
pub struct SlackPlatform {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    /// Slack's limits, waited on before each call.
    pace: pace::Pacer,
}

impl SlackPlatform {
    /// A client for `[slack]`; `api_url` may be plain http (tests, proxies).
    pub fn new(cfg: &SlackConfig) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("slack: no TLS root certificates ({e}); install ca-certificates"))?
            .https_or_http()
            .enable_http1()
            .build();
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(&cfg.api_url);
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(cfg.bot_token.expose().to_string().into()),
            pace: pace::Pacer::default(),
        })
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }

    /// The `ts` of a recent message in `channel` that carries
    /// `idempotency_key` in its metadata, or a file named `filename`:
    /// what a post whose answer was lost left behind.
    async fn find_posted(
        &self,
        channel: &str,
        idempotency_key: &str,
        filename: Option<&str>,
    ) -> Result<Option<String>, DeliveryError> {
        let history = SlackApiConversationsHistoryRequest::new()
            .with_channel(channel.into())
            .with_limit(20)
            .with_include_all_metadata(true);
        let session = self.session();
        let recent = self
            .paced(
                "conversations.history",
                channel,
                session.conversations_history(&history),
            )
            .await
            .map_err(|e| map_err("conversations.history", e))?;
        Ok(recent.messages.into_iter().find_map(|m| {
            let key = m
                .content
                .metadata
                .as_ref()
                .and_then(|md| md.event_payload.as_ref())
                .and_then(|p| p.get("idempotency_key"));
            let file = filename.is_some_and(|name| {
                m.content
                    .files
                    .iter()
                    .flatten()
                    .any(|f| f.name.as_deref() == Some(name))
            });
            (key.map(String::as_str) == Some(idempotency_key) || file)
                .then(|| m.origin.ts.to_string())
        }))
    }

    /// Posts `message` with `idempotency_key` in its metadata (event
    /// `event_type`), so [`Self::find_posted`] finds it again.
    async fn post_keyed(
        &self,
        channel: &str,
        message: &ChatMessage,
        event_type: &str,
        idempotency_key: &str,
    ) -> Result<String, DeliveryError> {
        let mut payload = std::collections::HashMap::new();
        payload.insert("idempotency_key".to_string(), idempotency_key.to_string());
        let body = content(message).with_metadata(SlackMessageMetadata {
            event_type: event_type.into(),
            event_payload: Some(payload),
        });
        let req = SlackApiChatPostMessageRequest::new(channel.into(), body);
        let session = self.session();
        self.paced("chat.postMessage", channel, session.chat_post_message(&req))
            .await
            .map(|r| r.ts.to_string())
            .map_err(|e| map_err("chat.postMessage", e))
    }

    /// A summary too long for one message's blocks: the whole of it as a
    /// Markdown file (Slack's external upload: get a URL, send the bytes,
    /// complete into the channel) shared with a short card. Returns the
    /// file id.
    async fn upload_summary(
        &self,
        channel: &str,
        post: &SummaryPost,
    ) -> Result<String, DeliveryError> {
        let bytes = post.markdown.as_bytes();
        let filename = post.filename();
        let req = SlackApiFilesGetUploadUrlExternalRequest::new(filename.clone(), bytes.len());
        let session = self.session();
        let upload = self
            .paced(
                "files.getUploadURLExternal",
                channel,
                session.get_upload_url_external(&req),
            )
            .await
            .map_err(|e| map_err("files.getUploadURLExternal", e))?;
        let send = SlackApiFilesUploadViaUrlRequest::new(
            upload.upload_url,
            bytes.to_vec(),
            "text/markdown".into(),
        );
        self.session()
            .files_upload_via_url(&send)
            .await
            .map_err(|e| map_err("file upload", e))?;
        let file = SlackApiFilesComplete::new(upload.file_id.clone())
            .with_title(format!("Summary of {}", post.id));
        let complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![file])
            .with_channel_id(channel.into())
            .with_initial_comment(blocks::summary_comment(post));
        self.paced(
            "files.completeUploadExternal",
            channel,
            session.files_complete_upload_external(&complete),
        )
        .await
        .map_err(|e| map_err("files.completeUploadExternal", e))?;
        Ok(upload.file_id.to_string())
    }

    /// Runs `call` (of `method` on `channel`) when Slack's limits allow,
    /// and after a 429 holds the method (on that channel) for `Retry-After`.
    async fn paced<T>(
        &self,
        method: &str,
        channel: &str,
        call: impl std::future::Future<Output = Result<T, SlackClientError>>,
    ) -> Result<T, SlackClientError> {
        self.pace.wait(method, channel).await;
        let result = call.await;
        if let Err(SlackClientError::RateLimitError(r)) = &result {
            let wait = r.retry_after.unwrap_or(std::time::Duration::from_secs(1));
            self.pace.hold(method, channel, wait);
        }
        result
    }

    /// Shows `text` to `user` alone in `channel` (`chat.postEphemeral`).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        let req = SlackApiChatPostEphemeralRequest::new(
            channel.into(),
            user.into(),
            content(&ChatMessage::Text(text.to_string())),
        );
        let session = self.session();
        self.paced(
            "chat.postEphemeral",
            channel,
            session.chat_post_ephemeral(&req),
        )
        .await
        .map(|_| ())
        .map_err(|e| map_err("chat.postEphemeral", e))
    }

    /// One `conversations.invite` with `force=true`: the users Slack
    /// listed as not invited.
    async fn forced_invite(
        &self,
        channel: &str,
        users: &[String],
    ) -> Result<Vec<InviteFailure>, SlackClientError> {
        let req = ForcedInvite {
            channel,
            users: users.join(","),
            force: true,
        };
        let session = self.session();
        let call = session.http_session_api.http_post(
            "conversations.invite",
            &req,
            Some(&SLACK_TIER3_METHOD_CONFIG),
        );
        let resp: ForcedInviteResponse = self.paced("conversations.invite", channel, call).await?;
        Ok(failures(resp.errors, users))
    }
}

/// Maps a Slack client error to a delivery result: rate limits come back
/// with Slack's `Retry-After`; transient API errors and 5xx are retried.
fn map_err(method: &str, e: SlackClientError) -> DeliveryError {
    match e {
        SlackClientError::RateLimitError(r) => DeliveryError {
            message: format!("slack {method}: rate limited"),
            retryable: true,
            retry_after: r.retry_after,
        },
        SlackClientError::ApiError(api) => {
            let message = format!("slack {method}: {}", api.code);
            if TRANSIENT.contains(&api.code.as_str()) {
                DeliveryError::retryable(message)
            } else {
                DeliveryError::permanent(message)
            }
        }
        SlackClientError::HttpError(h) => {
            let status = h.status_code;
            let message = format!("slack {method}: HTTP {status}");
            if status.is_server_error() || status.as_u16() == 408 {
                DeliveryError::retryable(message)
            } else {
                DeliveryError::permanent(message)
            }
        }
        other => DeliveryError::retryable(format!("slack {method}: {other}")),
    }
}

/// Errors of `conversations.invite` that are one user's, not the call's:
/// the other users can still be invited.
const PER_USER: &[&str] = &[
    "user_not_found",
    "failed_for_some_users",
    "cant_invite",
    "user_is_restricted",
    "ura_max_channels",
    "user_disabled",
];

/// `conversations.invite` with `force` (slack-morphism 2.31's request
/// lacks the field): Slack invites the valid users and lists the others
/// instead of inviting nobody.
#[derive(serde::Serialize)]
struct ForcedInvite<'a> {
    channel: &'a str,
    /// Comma-separated, as Slack documents it.
    users: String,
    force: bool,
}

/// `conversations.open` for one user: slack-morphism 2.31 sends `users`
/// as a JSON array, where Slack's spec has a comma-separated string.
#[derive(serde::Serialize)]
struct OpenDm<'a> {
    users: &'a str,
}

#[derive(serde::Deserialize)]
struct ForcedInviteResponse {
    #[serde(default)]
    errors: Vec<InviteError>,
}

#[derive(serde::Deserialize)]
struct InviteError {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    error: String,
}

/// What an invite answer's `errors` says about who was not invited;
/// `already_in_channel` is no failure.
fn failures(errors: impl IntoIterator<Item = InviteError>, users: &[String]) -> Vec<InviteFailure> {
    errors
        .into_iter()
        .filter(|e| e.error != "already_in_channel" && e.error != "cant_invite_self")
        .map(|e| InviteFailure {
            user: e
                .user
                .or_else(|| (users.len() == 1).then(|| users[0].clone()))
                .unwrap_or_default(),
            error: e.error,
        })
        .collect()
}

fn content(message: &ChatMessage) -> SlackMessageContent {
    let (text, blocks) = blocks::render(message);
    let blocks: Option<Vec<SlackBlock>> = serde_json::from_value(blocks).ok();
    SlackMessageContent::new()
        .with_text(text)
        .opt_blocks(blocks)
}

impl ChatPlatform for SlackPlatform {
    fn name(&self) -> &'static str {
        "slack"
    }

    /// A private channel (`is_private`, which needs the `groups:write`
    /// scope) is seen only by its members: tocsin, which created it, and
    /// whoever it invites.
    fn create_channel<'a>(&'a self, name: &'a str, private: bool) -> ChatFuture<'a, ChannelRef> {
        Box::pin(async move {
            let mut attempt = name.to_string();
            for n in 2..=20 {
                let req = SlackApiConversationsCreateRequest::new(attempt.clone())
                    .opt_is_private(private.then_some(true));
                let session = self.session();
                let call = session.conversations_create(&req);
                match self.paced("conversations.create", "", call).await {
                    Ok(resp) => {
                        return Ok(ChannelRef {
                            id: resp.channel.id.to_string(),
                            name: resp.channel.name.unwrap_or(attempt),
                        });
                    }
                    Err(SlackClientError::ApiError(api)) if api.code == "name_taken" => {
                        let base: String = name.chars().take(76).collect();
                        attempt = format!("{}-{n}", base.trim_end_matches('-'));
                    }
                    Err(e) => return Err(map_err("conversations.create", e)),
                }
            }
            Err(DeliveryError::permanent(format!(
                "slack conversations.create: every name like '{name}' is taken"
            )))
        })
    }

    fn invite<'a>(&'a self, channel: &'a str, users: &'a [String]) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            for f in self.invite_each(channel, users).await? {
                warn!(channel, user = %f.user, error = %f.error, "Slack would not invite a user");
            }
            Ok(())
        })
    }

    fn invite_each<'a>(
        &'a self,
        channel: &'a str,
        users: &'a [String],
    ) -> ChatFuture<'a, Vec<InviteFailure>> {
        Box::pin(async move {
            match self.forced_invite(channel, users).await {
                Ok(failed) => Ok(failed),
                // Everyone was in already (a retry after a partial success).
                Err(SlackClientError::ApiError(api)) if api.code == "already_in_channel" => {
                    Ok(Vec::new())
                }
                // Slack invited nobody (`force` ignored, or one user listed):
                // one by one, so the valid users get in.
                Err(SlackClientError::ApiError(api)) if PER_USER.contains(&api.code.as_str()) => {
                    if users.len() == 1 {
                        return Ok(vec![InviteFailure {
                            user: users[0].clone(),
                            error: api.code,
                        }]);
                    }
                    let mut failed = Vec::new();
                    for user in users {
                        match self
                            .forced_invite(channel, std::slice::from_ref(user))
                            .await
                        {
                            Ok(f) => failed.extend(f),
                            Err(SlackClientError::ApiError(api))
                                if api.code == "already_in_channel" => {}
                            Err(SlackClientError::ApiError(api))
                                if PER_USER.contains(&api.code.as_str()) =>
                            {
                                failed.push(InviteFailure {
                                    user: user.clone(),
                                    error: api.code,
                                });
                            }
                            Err(e) => return Err(map_err("conversations.invite", e)),
                        }
                    }
                    Ok(failed)
                }
                Err(e) => Err(map_err("conversations.invite", e)),
            }
        })
    }

    fn set_topic<'a>(&'a self, channel: &'a str, topic: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            // The topic is plain text (a headline with the alert's title).
            // Slack's 250 characters, cut between characters of the
            // original, never inside an entity.
            let mut cut = String::new();
            let mut n = 0;
            for c in topic.chars() {
                let e = escape(c.encode_utf8(&mut [0; 4]));
                n += e.chars().count();
                if n > 250 {
                    break;
                }
                cut.push_str(&e);
            }
            let topic = cut;
            let req = SlackApiConversationsSetTopicRequest::new(channel.into(), topic);
            let session = self.session();
            self.paced(
                "conversations.setTopic",
                channel,
                session.conversations_set_topic(&req),
            )
            .await
            .map(|_| ())
            .map_err(|e| map_err("conversations.setTopic", e))
        })
    }

    fn post<'a>(&'a self, channel: &'a str, message: &'a ChatMessage) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let req = SlackApiChatPostMessageRequest::new(channel.into(), content(message));
            let session = self.session();
            self.paced("chat.postMessage", channel, session.chat_post_message(&req))
                .await
                .map(|r| r.ts.to_string())
                .map_err(|e| map_err("chat.postMessage", e))
        })
    }

    /// The job's key rides in the message's metadata (event `tocsin_card`
    /// for the card, `tocsin_post` for the rest); before posting, the
    /// channel's recent history is searched for it, so a retry after a
    /// lost answer finds the message instead of posting a second. A
    /// summary too long for one message goes out as a file with a short
    /// card, found again by the file's name.
    fn post_once<'a>(
        &'a self,
        channel: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let long = match message {
                ChatMessage::Summary(p) if !blocks::fits(&p.text) => Some(p),
                _ => None,
            };
            let filename = long.map(|p| p.filename());
            // An app installed before the scopes were added still posts:
            // without the check, or cut to fit a message.
            match self
                .find_posted(channel, idempotency_key, filename.as_deref())
                .await
            {
                Ok(Some(ts)) => return Ok(ts),
                Ok(None) => {}
                Err(e) if !e.retryable => warn!(error = %e, channel,
                    "Could not look for an earlier post (is the channels:history scope missing?); posting without the check"),
                Err(e) => return Err(e),
            }
            if let Some(p) = long {
                match self.upload_summary(channel, p).await {
                    Ok(id) => return Ok(id),
                    Err(e) if !e.retryable => warn!(error = %e, channel,
                        "Could not share the summary as a file (is the files:write scope missing?); posting it cut to fit a message"),
                    Err(e) => return Err(e),
                }
            }
            let event_type = match message {
                ChatMessage::Card(_) => "tocsin_card",
                _ => "tocsin_post",
            };
            self.post_keyed(channel, message, event_type, idempotency_key)
                .await
        })
    }

    fn update<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        message: &'a ChatMessage,
    ) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let req =
                SlackApiChatUpdateRequest::new(channel.into(), content(message), message_id.into());
            let session = self.session();
            self.paced("chat.update", channel, session.chat_update(&req))
                .await
                .map(|_| ())
                .map_err(|e| map_err("chat.update", e))
        })
    }

    fn send_dm<'a>(
        &'a self,
        user: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let open = OpenDm { users: user };
            let session = self.session();
            let call = session.http_session_api.http_post(
                "conversations.open",
                &open,
                Some(&SLACK_TIER3_METHOD_CONFIG),
            );
            let opened: Result<SlackApiConversationsOpenResponse<SlackBasicChannelInfo>, _> =
                self.paced("conversations.open", user, call).await;
            let dm = opened
                .map_err(|e| map_err("conversations.open", e))?
                .channel
                .id
                .to_string();
            // A page sent before a crash carries its key in the message
            // metadata: find it instead of paging twice.
            if let Some(ts) = self.find_posted(&dm, idempotency_key, None).await? {
                return Ok(ts);
            }
            self.post_keyed(&dm, message, "tocsin_page", idempotency_key)
                .await
        })
    }

    fn archive<'a>(&'a self, channel: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let req = SlackApiConversationsArchiveRequest::new(channel.into());
            let session = self.session();
            let call = session.conversations_archive(&req);
            match self.paced("conversations.archive", channel, call).await {
                Ok(_) => Ok(()),
                Err(SlackClientError::ApiError(api)) if api.code == "already_archived" => Ok(()),
                Err(e) => Err(map_err("conversations.archive", e)),
            }
        })
    }
}
