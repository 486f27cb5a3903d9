//! The Slack adapter, through slack-morphism.
//!
//! Outbound: [`SlackPlatform`] implements [`ChatPlatform`] with the Web API
//! (`conversations.create`, `.invite`, `.setTopic`, `.archive`, `.open`,
//! `.history`, `chat.postMessage`, `chat.update`). Inbound: [`http`] verifies
//! request signatures and feeds slash commands, button presses and app
//! mentions to the shared [`ChatHandler`](super::handler::ChatHandler).

pub mod blocks;
pub mod escape;
pub mod http;

pub use escape::escape;

use super::{ChannelRef, ChatFuture, ChatMessage, ChatPlatform};
use crate::config::SlackConfig;
use crate::notify::DeliveryError;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::sync::Arc;

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
        })
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
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

    fn create_channel<'a>(&'a self, name: &'a str) -> ChatFuture<'a, ChannelRef> {
        Box::pin(async move {
            let mut attempt = name.to_string();
            for n in 2..=20 {
                let req = SlackApiConversationsCreateRequest::new(attempt.clone());
                match self.session().conversations_create(&req).await {
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
            let req = SlackApiConversationsInviteRequest::new(
                channel.into(),
                users.iter().map(|u| SlackUserId::new(u.clone())).collect(),
            );
            match self.session().conversations_invite(&req).await {
                Ok(_) => Ok(()),
                // Everyone was in already (a retry after a partial success).
                Err(SlackClientError::ApiError(api)) if api.code == "already_in_channel" => Ok(()),
                Err(e) => Err(map_err("conversations.invite", e)),
            }
        })
    }

    fn set_topic<'a>(&'a self, channel: &'a str, topic: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            // The topic is plain text (a headline with the alert's title).
            let topic: String = escape(topic).chars().take(250).collect();
            let req = SlackApiConversationsSetTopicRequest::new(channel.into(), topic);
            self.session()
                .conversations_set_topic(&req)
                .await
                .map(|_| ())
                .map_err(|e| map_err("conversations.setTopic", e))
        })
    }

    fn post<'a>(&'a self, channel: &'a str, message: &'a ChatMessage) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let req = SlackApiChatPostMessageRequest::new(channel.into(), content(message));
            self.session()
                .chat_post_message(&req)
                .await
                .map(|r| r.ts.to_string())
                .map_err(|e| map_err("chat.postMessage", e))
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
            self.session()
                .chat_update(&req)
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
            let open = SlackApiConversationsOpenRequest::new().with_users(vec![user.into()]);
            let dm = self
                .session()
                .conversations_open(&open)
                .await
                .map_err(|e| map_err("conversations.open", e))?
                .channel
                .id;
            // A page sent before a crash carries its key in the message
            // metadata: find it instead of paging twice.
            let history = SlackApiConversationsHistoryRequest::new()
                .with_channel(dm.clone())
                .with_limit(20)
                .with_include_all_metadata(true);
            let recent = self
                .session()
                .conversations_history(&history)
                .await
                .map_err(|e| map_err("conversations.history", e))?;
            for m in recent.messages {
                let key = m
                    .content
                    .metadata
                    .as_ref()
                    .and_then(|md| md.event_payload.as_ref())
                    .and_then(|p| p.get("idempotency_key"));
                if key.map(String::as_str) == Some(idempotency_key) {
                    return Ok(m.origin.ts.to_string());
                }
            }
            let mut payload = std::collections::HashMap::new();
            payload.insert("idempotency_key".to_string(), idempotency_key.to_string());
            let body = content(message).with_metadata(SlackMessageMetadata {
                event_type: "tocsin_page".into(),
                event_payload: Some(payload),
            });
            let req = SlackApiChatPostMessageRequest::new(dm, body);
            self.session()
                .chat_post_message(&req)
                .await
                .map(|r| r.ts.to_string())
                .map_err(|e| map_err("chat.postMessage", e))
        })
    }

    fn archive<'a>(&'a self, channel: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let req = SlackApiConversationsArchiveRequest::new(channel.into());
            match self.session().conversations_archive(&req).await {
                Ok(_) => Ok(()),
                Err(SlackClientError::ApiError(api)) if api.code == "already_archived" => Ok(()),
                Err(e) => Err(map_err("conversations.archive", e)),
            }
        })
    }
}
