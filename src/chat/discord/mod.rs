//! The Discord adapter, through serenity.
//!
//! Outbound: [`DiscordPlatform`] implements [`ChatPlatform`] with Discord's
//! REST API: incident channels are text channels under a category in the
//! configured guild, responders are let in with permission overwrites, the
//! card is an embed with buttons, pages are direct messages carrying a
//! nonce, and archiving moves the channel to an archive category and locks
//! it. Requests are serenity [`Request`]s (its routes, authorization and
//! proxy handling) sent by tocsin's own HTTP client, so that a 429's
//! `retry_after` reaches the outbox: serenity's error type keeps neither
//! the headers nor a 429 body. For the same reason serenity's rate limiter
//! is off and [`ratelimit`] paces the requests by Discord's headers.
//!
//! Inbound: [`http`] verifies and answers `POST /discord/interactions`;
//! [`gateway`] receives the same interactions over a gateway connection.
//! Both feed the shared [`ChatHandler`](super::handler::ChatHandler).

pub mod commands;
pub mod embeds;
pub mod gateway;
pub mod http;
pub mod ratelimit;

pub use crate::markup::discord::escape;

use super::{ChannelRef, ChatFuture, ChatMessage, ChatPlatform};
use crate::config::{DiscordConfig, DiscordMode};
use crate::notify::DeliveryError;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use serenity::all::CreateAttachment;
use serenity::all::{
    ApplicationId, ChannelId, ChannelType, CreateChannel, EditChannel, GuildChannel, GuildId,
    LightMethod, Message, MessageId, Nonce, PermissionOverwrite, PermissionOverwriteType,
    Permissions, PrivateChannel, Request, RoleId, Route, TargetId, UserId,
};
use serenity::http::{Http, HttpBuilder, Multipart, MultipartUpload};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What a responder may do in an incident channel.
pub const RESPONDER: Permissions = Permissions::VIEW_CHANNEL.union(Permissions::SEND_MESSAGES);

/// What an archived channel takes away from everyone.
pub const LOCKED: Permissions = Permissions::SEND_MESSAGES
    .union(Permissions::SEND_MESSAGES_IN_THREADS)
    .union(Permissions::CREATE_PUBLIC_THREADS)
    .union(Permissions::CREATE_PRIVATE_THREADS);

/// The longest channel topic Discord takes.
const TOPIC_MAX: usize = 1024;

/// A Discord guild, through the application's bot.
pub struct DiscordPlatform {
    http: Arc<Http>,
    client: reqwest::Client,
    guild: GuildId,
    application: ApplicationId,
    incidents_category: String,
    archive_category: String,
    token: crate::secret::Secret,
    api_url: String,
    /// Outbox job → how many pieces of its message are posted, and the
    /// first one's id: a retry resumes after them (see
    /// [`ChatPlatform::post_once`]).
    posted: parking_lot::Mutex<HashMap<String, (usize, String)>>,
    /// Discord's buckets, waited on before each request.
    limiter: ratelimit::RateLimiter,
    /// The bot's own user id (`GET /users/@me`), once asked.
    bot_user: tokio::sync::OnceCell<u64>,
}

impl std::fmt::Debug for DiscordPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordPlatform")
            .field("guild", &self.guild)
            .field("application", &self.application)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Maps an unsuccessful answer to a delivery result: 429 comes back with
/// Discord's `retry_after` (body, else `Retry-After`, else
/// `X-RateLimit-Reset-After`); 5xx and 408 are retried; other 4xx are not.
pub fn map_status(
    what: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> DeliveryError {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    if status.as_u16() == 429 {
        let seconds = body
            .get("retry_after")
            .and_then(Value::as_f64)
            .or_else(|| header("retry-after"))
            .or_else(|| header("x-ratelimit-reset-after"));
        let global = body.get("global").and_then(Value::as_bool) == Some(true)
            || headers.contains_key("x-ratelimit-global");
        return DeliveryError {
            message: format!(
                "discord {what}: rate limited{}",
                if global { " (global)" } else { "" }
            ),
            retryable: true,
            retry_after: seconds
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0))),
        };
    }
    let mut message = format!("discord {what}: HTTP {status}");
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        message.push_str(&format!(": {}", embeds::truncate(m, 200)));
        if let Some(code) = body.get("code").and_then(Value::as_i64) {
            message.push_str(&format!(" ({code})"));
        }
    }
    if status.is_server_error() || status.as_u16() == 408 {
        DeliveryError::retryable(message)
    } else {
        DeliveryError::permanent(message)
    }
}

/// A serenity client for `[discord]`. Requests go to `api_url`: the proxy
/// replaces `https://discord.com` and keeps `/api/v10/...`. serenity's rate
/// limiter would send them to discord.com whatever the proxy, so it is off:
/// [`ratelimit`] paces tocsin's own requests and the outbox handles a 429. `client` carries the request timeout.
fn serenity_http(
    token: &crate::secret::Secret,
    client: &reqwest::Client,
    application: u64,
    api_url: &str,
) -> Http {
    HttpBuilder::new(token.expose())
        .client(client.clone())
        .application_id(ApplicationId::new(application))
        .proxy(api_url)
        .ratelimiter_disabled(true)
        .build()
}

/// A snowflake from a stored or configured id.
fn snowflake(what: &str, id: &str) -> Result<u64, DeliveryError> {
    match id.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(DeliveryError::permanent(format!(
            "'{id}' is not a Discord {what} id"
        ))),
    }
}

/// The nonce of a page: Discord takes at most 25 characters, so it is a
/// digest of the idempotency key.
pub fn nonce(idempotency_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(idempotency_key.as_bytes());
    hex::encode(digest)[..25].to_string()
}

/// The nonce of piece `index` of the message of the outbox job
/// `idempotency_key`.
pub fn piece_nonce(idempotency_key: &str, index: usize) -> String {
    nonce(&format!("{idempotency_key}#{index}"))
}

/// The largest attachment Discord takes by default (a server without
/// boosts): 10 MiB.
pub const ATTACHMENT_MAX: usize = 10 * 1024 * 1024;

/// The bytes of a summary's attachment: the whole Markdown, or, past
/// [`ATTACHMENT_MAX`], as much as fits and a last line saying where the
/// rest is.
pub fn attachment_bytes(post: &super::SummaryPost) -> Vec<u8> {
    let md = post.markdown.as_str();
    if md.len() <= ATTACHMENT_MAX {
        return md.as_bytes().to_vec();
    }
    let note = format!(
        "\n\n_Cut to fit Discord. The full summary: `GET /v1/incidents/{}/summary`._\n",
        post.id
    );
    let mut end = ATTACHMENT_MAX - note.len();
    while !md.is_char_boundary(end) {
        end -= 1;
    }
    let end = md[..end].rfind('\n').unwrap_or(end);
    let mut out = md.as_bytes()[..end].to_vec();
    out.extend_from_slice(note.as_bytes());
    out
}

/// The messages a message goes out as: long text in several pieces, in
/// order; anything else (a summary is one embed and a file) as itself.
fn pieces(message: &ChatMessage) -> Vec<ChatMessage> {
    match message {
        ChatMessage::Text(t) => embeds::split(t, 10)
            .into_iter()
            .map(ChatMessage::Text)
            .collect(),
        other => vec![other.clone()],
    }
}

/// The overwrites of a private incident channel: @everyone (the role
/// whose id is the guild's) may not see it; the bot may see it, write and
/// manage who else may. Bits as integers, as Discord's published spec
/// types them for requests.
pub fn private_overwrites(guild: GuildId, bot: u64) -> Value {
    let bot_allows = RESPONDER | Permissions::MANAGE_ROLES | Permissions::READ_MESSAGE_HISTORY;
    json!([
        {"id": guild.to_string(), "type": 0, "allow": 0, "deny": Permissions::VIEW_CHANNEL.bits()},
        {"id": bot.to_string(), "type": 1, "allow": bot_allows.bits(), "deny": 0},
    ])
}

/// The permission overwrites of a channel after locking: nobody keeps
/// [`LOCKED`], @everyone included (a member's allow would beat a deny on
/// @everyone, so each overwrite is changed).
pub fn locked_overwrites(
    existing: &[PermissionOverwrite],
    guild: GuildId,
) -> Vec<PermissionOverwrite> {
    let everyone = PermissionOverwriteType::Role(RoleId::new(guild.get()));
    let mut out: Vec<PermissionOverwrite> = existing
        .iter()
        .map(|o| PermissionOverwrite {
            allow: o.allow - LOCKED,
            deny: o.deny | LOCKED,
            kind: o.kind,
        })
        .collect();
    if !out.iter().any(|o| o.kind == everyone) {
        out.push(PermissionOverwrite {
            allow: Permissions::empty(),
            deny: LOCKED,
            kind: everyone,
        });
    }
    out
}

impl DiscordPlatform {
    /// A client for `[discord]`; `timeout` bounds each request.
    pub fn new(cfg: &DiscordConfig, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("discord: http client: {e}"))?;
        let http = serenity_http(&cfg.bot_token, &client, cfg.application_id, &cfg.api_url);
        Ok(Self {
            http: Arc::new(http),
            client,
            guild: GuildId::new(cfg.guild_id),
            application: ApplicationId::new(cfg.application_id),
            incidents_category: cfg.incidents_category.clone(),
            archive_category: cfg.archive_category.clone(),
            token: cfg.bot_token.clone(),
            api_url: cfg.api_url.clone(),
            posted: parking_lot::Mutex::new(HashMap::new()),
            limiter: ratelimit::RateLimiter::default(),
            bot_user: tokio::sync::OnceCell::new(),
        })
    }

    /// A new serenity client like this one's (the gateway client takes
    /// its own).
    pub fn new_http(&self) -> Http {
        serenity_http(
            &self.token,
            &self.client,
            self.application.get(),
            &self.api_url,
        )
    }

    /// serenity's client, for interaction responses.
    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// The guild.
    pub fn guild(&self) -> GuildId {
        self.guild
    }

    /// The application.
    pub fn application(&self) -> ApplicationId {
        self.application
    }

    /// Sends a request; the body of a 2xx answer, or a [`DeliveryError`].
    async fn send(&self, what: &str, req: Request<'_>) -> Result<axum::body::Bytes, DeliveryError> {
        let request = req
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|e| DeliveryError::permanent(format!("discord {what}: {e}")))?
            .build()
            .map_err(|e| {
                DeliveryError::permanent(format!("discord {what}: {}", e.without_url()))
            })?;
        let key = ratelimit::RouteKey::of(request.method().as_str(), request.url().path());
        self.limiter.acquire(&key).await;
        let resp = self.client.execute(request).await.map_err(|e| {
            let e = e.without_url();
            DeliveryError::retryable(format!("discord {what}: {e}"))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await;
        let json: Value = body
            .as_ref()
            .ok()
            .filter(|_| !status.is_success())
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let retry_after = json.get("retry_after").and_then(Value::as_f64);
        let global = json.get("global").and_then(Value::as_bool) == Some(true);
        self.limiter
            .update(&key, status.as_u16(), &headers, retry_after, global);
        let body = body.map_err(|e| {
            DeliveryError::retryable(format!("discord {what}: {}", e.without_url()))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let err = map_status(what, status, &headers, &json);
        warn!(error = %err, retry_after = ?err.retry_after, "Discord refused a request");
        Err(err)
    }

    /// Sends a request and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        req: Request<'_>,
    ) -> Result<T, DeliveryError> {
        let body = self.send(what, req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            DeliveryError::permanent(format!("discord {what}: unexpected answer: {e}"))
        })
    }

    fn body(what: &str, v: &impl serde::Serialize) -> Result<Option<Vec<u8>>, DeliveryError> {
        serde_json::to_vec(v)
            .map(Some)
            .map_err(|e| DeliveryError::permanent(format!("discord {what}: {e}")))
    }

    /// The request that creates `message` in `channel_id`, with `nonce`
    /// (and `enforce_nonce`) if given. A summary goes as multipart form
    /// data: `payload_json` and its whole Markdown as `files[0]`,
    /// `summary-INC-n.md`.
    fn create_request(
        channel_id: ChannelId,
        message: &ChatMessage,
        nonce: Option<String>,
    ) -> Result<Request<'static>, DeliveryError> {
        let what = "create message";
        let mut body = embeds::create(message);
        if let Some(n) = nonce {
            body = body.nonce(Nonce::String(n)).enforce_nonce(true);
        }
        let req = Request::new(Route::ChannelMessages { channel_id }, LightMethod::Post);
        let ChatMessage::Summary(post) = message else {
            return Ok(req.body(Self::body(what, &body)?));
        };
        let filename = post.filename();
        let mut payload = serde_json::to_value(&body)
            .map_err(|e| DeliveryError::permanent(format!("discord {what}: {e}")))?;
        payload["attachments"] = json!([{
            "id": 0,
            "filename": filename,
            "description": format!("The post-incident summary of {}", post.id),
        }]);
        let file = CreateAttachment::bytes(attachment_bytes(post), filename);
        Ok(req.multipart(Some(Multipart {
            upload: MultipartUpload::Attachments(vec![file]),
            fields: Vec::new(),
            payload_json: Some(payload.to_string()),
        })))
    }

    /// The guild's channels.
    async fn channels(&self) -> Result<Vec<GuildChannel>, DeliveryError> {
        let req = Request::new(
            Route::GuildChannels {
                guild_id: self.guild,
            },
            LightMethod::Get,
        );
        self.call("list channels", req).await
    }

    /// The category named `name` among `channels`, created if missing.
    async fn category(
        &self,
        channels: &[GuildChannel],
        name: &str,
    ) -> Result<ChannelId, DeliveryError> {
        if let Some(c) = channels
            .iter()
            .find(|c| c.kind == ChannelType::Category && c.name.eq_ignore_ascii_case(name))
        {
            return Ok(c.id);
        }
        let what = "create category";
        let body = CreateChannel::new(name).kind(ChannelType::Category);
        let req = Request::new(
            Route::GuildChannels {
                guild_id: self.guild,
            },
            LightMethod::Post,
        )
        .body(Self::body(what, &body)?);
        let created: GuildChannel = self.call(what, req).await?;
        info!(category = %name, id = %created.id, "Created a Discord category");
        Ok(created.id)
    }

    /// The bot's user id, asked of Discord once: a private channel lets it in.
    async fn bot_user(&self) -> Result<u64, DeliveryError> {
        self.bot_user
            .get_or_try_init(|| async {
                let me: serenity::all::CurrentUser = self
                    .call(
                        "get current user",
                        Request::new(Route::UserMe, LightMethod::Get),
                    )
                    .await?;
                Ok(me.id.get())
            })
            .await
            .copied()
    }

    /// Bulk-overwrites the guild's application commands with
    /// [`commands::definitions`]; returns the names Discord echoed.
    pub async fn register_commands(&self) -> Result<Vec<String>, DeliveryError> {
        let what = "register commands";
        let req = Request::new(
            Route::GuildCommands {
                application_id: self.application,
                guild_id: self.guild,
            },
            LightMethod::Put,
        )
        .body(Self::body(what, &commands::definitions())?);
        let echoed: Vec<Value> = self.call(what, req).await?;
        Ok(echoed
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect())
    }
}

impl ChatPlatform for DiscordPlatform {
    fn name(&self) -> &'static str {
        "discord"
    }

    /// A text channel under the incidents category. Discord allows
    /// duplicate names, so an existing channel of this name in the category
    /// (left by a retry after a crash) is taken instead of making another.
    /// A private one denies VIEW_CHANNEL to @everyone (the role whose id is
    /// the guild's) and lets the bot in; [`invite`](ChatPlatform::invite)
    /// adds an overwrite per responder, then and later.
    fn create_channel<'a>(&'a self, name: &'a str, private: bool) -> ChatFuture<'a, ChannelRef> {
        Box::pin(async move {
            let channels = self.channels().await?;
            let category = self.category(&channels, &self.incidents_category).await?;
            if let Some(c) = channels.iter().find(|c| {
                c.kind == ChannelType::Text && c.parent_id == Some(category) && c.name == name
            }) {
                return Ok(ChannelRef {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                });
            }
            let what = "create channel";
            let name: String = name.chars().take(100).collect();
            let mut body = serde_json::to_value(
                CreateChannel::new(name.clone())
                    .kind(ChannelType::Text)
                    .category(category),
            )
            .map_err(|e| DeliveryError::permanent(format!("discord {what}: {e}")))?;
            if private {
                body["permission_overwrites"] =
                    private_overwrites(self.guild, self.bot_user().await?);
            }
            let req = Request::new(
                Route::GuildChannels {
                    guild_id: self.guild,
                },
                LightMethod::Post,
            )
            .body(Self::body(what, &body)?);
            let created: GuildChannel = self.call(what, req).await?;
            Ok(ChannelRef {
                id: created.id.to_string(),
                name: created.name,
            })
        })
    }

    /// A member overwrite per responder: they may see and write in the
    /// channel whatever the category allows everyone. PUT is idempotent.
    fn invite<'a>(&'a self, channel: &'a str, users: &'a [String]) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            for user in users {
                let what = "allow responder";
                let user_id = snowflake("user", user)?;
                // Integers: Discord's published spec types this route's
                // `allow` and `deny` as integers (the docs show strings).
                let body = json!({
                    "allow": RESPONDER.bits(),
                    "deny": 0,
                    "type": 1,
                });
                let req = Request::new(
                    Route::ChannelPermission {
                        channel_id,
                        target_id: TargetId::new(user_id),
                    },
                    LightMethod::Put,
                )
                .body(Self::body(what, &body)?);
                self.send(what, req).await?;
            }
            Ok(())
        })
    }

    fn set_topic<'a>(&'a self, channel: &'a str, topic: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let what = "set topic";
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            let topic: String = topic
                .chars()
                .filter(|c| !crate::markup::is_unsafe_char(*c))
                .collect();
            let body = EditChannel::new().topic(embeds::truncate(&topic, TOPIC_MAX));
            let req = Request::new(Route::Channel { channel_id }, LightMethod::Patch)
                .body(Self::body(what, &body)?);
            self.send(what, req).await.map(|_| ())
        })
    }

    /// Text longer than one message holds goes out as several messages,
    /// in order; the first one's id is returned.
    fn post<'a>(&'a self, channel: &'a str, message: &'a ChatMessage) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let what = "create message";
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            let mut first = None;
            for piece in &pieces(message) {
                let req = Self::create_request(channel_id, piece, None)?;
                let sent: Message = self.call(what, req).await?;
                first.get_or_insert(sent.id.to_string());
            }
            first.ok_or_else(|| DeliveryError::permanent("discord create message: nothing to send"))
        })
    }

    /// Each piece carries its own nonce (a digest of the job's key and the
    /// piece's index) with `enforce_nonce`, so a piece whose answer was lost
    /// comes back instead of being posted again; the pieces posted are
    /// recorded, so a retry after a 429 or a 5xx resumes at the piece that
    /// failed.
    fn post_once<'a>(
        &'a self,
        channel: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let what = "create message";
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            let pieces = pieces(message);
            let progress_key = format!("{channel}/{idempotency_key}");
            let (mut done, mut first) = self
                .posted
                .lock()
                .get(&progress_key)
                .cloned()
                .map_or((0, None), |(n, id)| (n, Some(id)));
            while done < pieces.len() {
                let nonce = piece_nonce(idempotency_key, done);
                let req = Self::create_request(channel_id, &pieces[done], Some(nonce))?;
                let sent: Message = self.call(what, req).await?;
                done += 1;
                let id = first.get_or_insert_with(|| sent.id.to_string()).clone();
                let mut posted = self.posted.lock();
                if posted.len() >= 10_000 && !posted.contains_key(&progress_key) {
                    // Jobs that gave up leave their progress; never grow without bound.
                    posted.clear();
                }
                posted.insert(progress_key.clone(), (done, id));
            }
            self.posted.lock().remove(&progress_key);
            first.ok_or_else(|| DeliveryError::permanent("discord create message: nothing to send"))
        })
    }

    fn update<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        message: &'a ChatMessage,
    ) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let what = "edit message";
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            let message_id = MessageId::new(snowflake("message", message_id)?);
            let req = Request::new(
                Route::ChannelMessage {
                    channel_id,
                    message_id,
                },
                LightMethod::Patch,
            )
            .body(Self::body(what, &embeds::edit(message))?);
            self.send(what, req).await.map(|_| ())
        })
    }

    /// Opens the DM channel, then sends with the key's nonce and
    /// `enforce_nonce`: a retry within Discord's nonce window gets the
    /// first message back instead of a second page. (Discord has no
    /// message metadata to search a DM's history by, as Slack does.)
    fn send_dm<'a>(
        &'a self,
        user: &'a str,
        message: &'a ChatMessage,
        idempotency_key: &'a str,
    ) -> ChatFuture<'a, String> {
        Box::pin(async move {
            let what = "open DM";
            let recipient = UserId::new(snowflake("user", user)?);
            let req = Request::new(Route::UserMeDmChannels, LightMethod::Post)
                .body(Self::body(what, &json!({"recipient_id": recipient}))?);
            let dm: PrivateChannel = self.call(what, req).await?;
            let what = "send DM";
            let body = embeds::create(message)
                .nonce(Nonce::String(nonce(idempotency_key)))
                .enforce_nonce(true);
            let req = Request::new(
                Route::ChannelMessages { channel_id: dm.id },
                LightMethod::Post,
            )
            .body(Self::body(what, &body)?);
            let sent: Message = self.call(what, req).await?;
            Ok(sent.id.to_string())
        })
    }

    /// Moves the channel to the archive category (made if missing) and
    /// takes [`LOCKED`] away from everyone, in one edit. A channel that is
    /// gone counts as archived.
    fn archive<'a>(&'a self, channel: &'a str) -> ChatFuture<'a, ()> {
        Box::pin(async move {
            let channel_id = ChannelId::new(snowflake("channel", channel)?);
            let channels = self.channels().await?;
            let Some(current) = channels.iter().find(|c| c.id == channel_id) else {
                warn!(channel = %channel_id, "The incident channel is gone; nothing to archive");
                return Ok(());
            };
            let archive = self.category(&channels, &self.archive_category).await?;
            let what = "archive channel";
            let body = EditChannel::new()
                .category(Some(archive))
                .permissions(locked_overwrites(
                    &current.permission_overwrites,
                    self.guild,
                ));
            let req = Request::new(Route::Channel { channel_id }, LightMethod::Patch)
                .body(Self::body(what, &body)?);
            self.send(what, req).await.map(|_| ())
        })
    }
}

/// Everything tocsin runs for Discord: the platform, the interaction
/// routes or the gateway client, and command registration at start.
#[derive(Clone)]
pub struct Discord {
    /// The REST side, shared with the outbox.
    pub platform: Arc<DiscordPlatform>,
    /// What interactions are answered with.
    pub state: http::DiscordState,
    /// How interactions arrive.
    pub mode: DiscordMode,
}

/// Runs the gateway client whenever this replica leads, and stops it
/// when it no longer does; until `stop`.
async fn lead_gateway(
    state: http::DiscordState,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut leader: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            ok = async { leader.wait_for(|l| *l).await.is_ok() } => if !ok { return },
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
        info!("This replica leads: it opens the Discord gateway connection");
        let (hand_over, handed) = tokio::sync::watch::channel(false);
        let run = gateway::run(state.clone(), handed);
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => return,
            _ = async { leader.wait_for(|l| !*l).await.is_ok() } => {
                let _ = hand_over.send(true);
                run.await;
                warn!("This replica no longer leads: it closed the Discord gateway connection");
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                let _ = hand_over.send(true);
                run.await;
                return;
            }
        }
    }
}

impl Discord {
    /// Wires the interaction side over `platform`.
    pub fn new(
        cfg: &DiscordConfig,
        platform: Arc<DiscordPlatform>,
        handler: super::handler::ChatHandler,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self, String> {
        Ok(Self {
            state: http::DiscordState {
                handler,
                platform: platform.clone(),
                verifier: http::verifier(&cfg.public_key)?,
                clock,
                replay: Arc::new(super::replay::ReplayGuard::new(
                    http::MAX_AGE_SECONDS,
                    super::replay::DEFAULT_CAPACITY,
                )),
                defer_after: cfg.defer_after,
            },
            platform,
            mode: cfg.mode,
        })
    }

    /// `POST /discord/interactions`, in interactions mode.
    pub fn router(&self) -> Option<axum::Router> {
        (self.mode == DiscordMode::Interactions).then(|| http::router(self.state.clone()))
    }

    /// Registers the commands (retrying until Discord takes them), and in
    /// gateway mode runs the gateway client while `leader` is true (one
    /// replica holds the connection; another takes it over when that one
    /// goes); until `stop`.
    pub async fn run(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        leader: tokio::sync::watch::Receiver<bool>,
    ) {
        let register = {
            let platform = self.platform.clone();
            let mut stop = stop.clone();
            async move {
                let mut wait = Duration::from_secs(5);
                loop {
                    match platform.register_commands().await {
                        Ok(names) => {
                            info!(commands = ?names, guild = %platform.guild, "Registered the Discord commands");
                            return;
                        }
                        Err(e) => {
                            warn!(error = %e, "Could not register the Discord commands; retrying")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(300));
                }
            }
        };
        match self.mode {
            DiscordMode::Interactions => {
                tokio::select! {
                    _ = register => {}
                    _ = stop.changed() => {}
                }
            }
            DiscordMode::Gateway => {
                let gateway = lead_gateway(self.state.clone(), stop.clone(), leader);
                tokio::join!(register, gateway);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limits_carry_discords_retry_after() {
        let body =
            json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false});
        let e = map_status(
            "send DM",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2"), ("x-ratelimit-reset-after", "1.5")]),
            &body,
        );
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(e.message, "discord send DM: rate limited");
        // Without the body: the header; then the bucket's reset.
        let e = map_status(
            "x",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "3")]),
            &Value::Null,
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        let e = map_status(
            "x",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[
                ("x-ratelimit-reset-after", "0.25"),
                ("x-ratelimit-global", "true"),
            ]),
            &Value::Null,
        );
        assert_eq!(e.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(e.message, "discord x: rate limited (global)");
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not() {
        let e = map_status(
            "x",
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            &Value::Null,
        );
        assert!(e.retryable && e.retry_after.is_none());
        let e = map_status(
            "create channel",
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &json!({"message": "Missing Permissions", "code": 50013}),
        );
        assert!(!e.retryable);
        assert_eq!(
            e.message,
            "discord create channel: HTTP 403 Forbidden: Missing Permissions (50013)"
        );
    }

    #[test]
    fn locking_takes_sending_from_everyone_and_keeps_reading() {
        let guild = GuildId::new(10);
        let alice = PermissionOverwrite {
            allow: RESPONDER,
            deny: Permissions::empty(),
            kind: PermissionOverwriteType::Member(UserId::new(11)),
        };
        let locked = locked_overwrites(&[alice], guild);
        assert_eq!(locked.len(), 2);
        assert_eq!(locked[0].allow, Permissions::VIEW_CHANNEL);
        assert!(locked[0].deny.contains(Permissions::SEND_MESSAGES));
        assert_eq!(
            locked[1].kind,
            PermissionOverwriteType::Role(RoleId::new(10))
        );
        assert!(locked[1].deny.contains(Permissions::SEND_MESSAGES));
        // Locking twice changes nothing more.
        assert_eq!(locked_overwrites(&locked, guild), locked);
    }

    #[test]
    fn nonces_fit_discords_25_characters() {
        let a = nonce("INC-1/g0/r0/s0/user:alice/m0");
        assert_eq!(a.len(), 25);
        assert_eq!(a, nonce("INC-1/g0/r0/s0/user:alice/m0"));
        assert_ne!(a, nonce("INC-1/g0/r0/s1/user:alice/m0"));
    }

    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml_str(toml, &Default::default()) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

    #[test]
    fn the_discord_section_is_validated() {
        let good = format!(
            "[discord]\napplication_id = 1\npublic_key = \"{KEY}\"\nbot_token = \"t\"\nguild_id = \"2\"\n"
        );
        assert_eq!(problems(&good), Vec::<String>::new());
        let c = Config::from_toml_str(&good, &Default::default()).unwrap();
        let d = c.discord.unwrap();
        assert_eq!(d.api_url, "https://discord.com");
        assert_eq!(d.mode, DiscordMode::Interactions);
        assert_eq!(d.incidents_category, "incidents");
        assert_eq!(d.archive_category, "incidents-archive");

        let bad = "[discord]\napplication_id = \"app\"\npublic_key = \"abc\"\nbot_token = \"\"\nguild_id = 0\n";
        let p = problems(bad);
        assert!(
            p.iter().any(|i| i.starts_with("discord.application_id")),
            "{p:?}"
        );
        let bad = "[discord]\napplication_id = 1\npublic_key = \"abc\"\nbot_token = \"\"\nguild_id = 2\napi_url = \"ftp://x/\"\nmode = \"gateway\"\ndefer_after = \"5s\"\n";
        let p = problems(bad);
        for path in [
            "discord.public_key",
            "discord.bot_token",
            "discord.api_url",
            "discord.defer_after",
        ] {
            assert!(p.iter().any(|i| i.starts_with(path)), "{path}: {p:?}");
        }

        let users = "[[users]]\nname = \"a\"\ncontact_methods = [{ kind = \"discord\" }]\n[[users]]\nname = \"b\"\ndiscord_id = \"<@12>\"\n";
        let p = problems(users);
        assert!(
            p.iter()
                .any(|i| i.contains("needs the user's 'discord_id'")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|i| i.starts_with("users[1].discord_id")),
            "{p:?}"
        );
        let p = problems(
            "[[users]]\nname = \"a\"\ndiscord_id = \"12\"\ncontact_methods = [{ kind = \"discord\" }]\n",
        );
        assert!(
            p.iter().any(|i| i.contains("needs a [discord] section")),
            "{p:?}"
        );
    }
}
