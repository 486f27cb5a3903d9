//! The outbox worker: delivers due entries concurrently, at most
//! [`MAX_IN_FLIGHT_PER_DESTINATION`] at once to one destination (so one slow
//! or wedged receiver holds up nobody else), each attempt bounded in time,
//! and records every attempt.

use super::email::EmailSender;
use super::push::PushService;
use super::twilio::TwilioClient;
use super::{DeliveryError, DeliveryState, OutboxEntry, twilio, webhook};
use crate::clock::Clock;
use crate::config::{Config, ContactKind, UserConfig};
use crate::escalation::Recipient;
use crate::incident::IncidentId;
use crate::templates::Templates;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{error, warn};

/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 64;

/// Deliveries in flight at once to one destination (a webhook's host and
/// port, a chat platform, the SMTP relay): a hung receiver holds only these
/// slots, never everyone's.
pub const MAX_IN_FLIGHT_PER_DESTINATION: usize = 8;

/// A boxed delivery through a [`ChatDelivery`].
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// Carries the outbox's chat jobs and chat pages to one chat platform. The
/// chat layer implements it and `app` hands it in, so notify names no
/// platform.
pub trait ChatDelivery: Send + Sync {
    /// The platform's name, as [`OutboxEntry::chat_platform`] gives it.
    fn platform(&self) -> &str;
    /// Runs `entry`'s job (open a channel, post, page by DM...) on it.
    fn deliver<'a>(&'a self, entry: &'a OutboxEntry) -> DeliveryFuture<'a>;
}

/// A failure of the application around the worker (the store, the writer),
/// logged as it is.
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed call into the [`OutboxHost`].
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HostError>> + Send + 'a>>;

/// What the worker needs from the application that owns the outbox: the
/// clock, the outbox's reads, the wake-up, and the claims and records that
/// go through the one writer. The application service implements it (in `app`), so
/// notify calls nothing above it.
pub trait OutboxHost: Send + Sync + 'static {
    /// The clock.
    fn clock(&self) -> &Arc<dyn Clock>;
    /// The longest the worker sleeps between looks at the outbox: 30 s, or
    /// less where other processes queue pages that wake nobody here (a
    /// shared database).
    fn idle_poll(&self) -> Duration {
        Duration::from_secs(30)
    }
    /// Up to `limit` entries due at `now`, earliest first.
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, HostError>;
    /// When the earliest pending entry is due.
    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, HostError>;
    /// Every entry of `incident`.
    fn outbox_for(&self, incident: IncidentId) -> Result<Vec<OutboxEntry>, HostError>;
    /// The templates (an email page's text).
    fn templates(&self) -> &Templates;
    /// Notified when an entry is queued or comes due.
    fn outbox_waker(&self) -> &Notify;
    /// Notes how the last call to a chat platform went (`None`: it
    /// worked), for the readiness check.
    fn chat_health(&self, platform: &str, error: Option<String>);
    /// Claims a due entry for one attempt; `None` if it is no longer due.
    fn claim_delivery<'a>(
        &'a self,
        key: &'a str,
        now: DateTime<Utc>,
    ) -> HostFuture<'a, Option<OutboxEntry>>;
    /// Records how an attempt went (and when to retry).
    fn record_delivery<'a>(
        &'a self,
        key: &'a str,
        result: Result<(), DeliveryError>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> HostFuture<'a, ()>;
}

/// Sends one entry through the right channel.
pub struct Notifiers {
    config: Arc<Config>,
    http: reqwest::Client,
    email: Option<EmailSender>,
    chat: Vec<Arc<dyn ChatDelivery>>,
    twilio: Option<TwilioClient>,
    push: Option<Box<dyn PushService>>,
    /// When each phone number may get its next SMS or call: Twilio and
    /// the carriers take at most one a second per number.
    phone_pace: Mutex<HashMap<String, tokio::time::Instant>>,
}

/// The least time between two SMS or calls to one number.
pub const PHONE_PACE: Duration = Duration::from_secs(1);

/// The longest an SMS or call waits in line for its number inside one
/// attempt; beyond it the attempt is retried later.
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(3);

impl Notifiers {
    /// Builds the HTTP client and the SMTP transport from the config; chat
    /// jobs and chat pages go to `chat`.
    pub fn new(config: Arc<Config>, chat: Vec<Arc<dyn ChatDelivery>>) -> Result<Self, String> {
        let timeout = config.notify.request_timeout;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // Only the configured URL's own 2xx counts as delivered (see
            // `webhook::classify`).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let email = match &config.smtp {
            Some(s) => Some(EmailSender::new(s, timeout)?),
            None => None,
        };
        let twilio = config
            .twilio
            .as_ref()
            .map(|t| TwilioClient::new(http.clone(), t));
        let push: Option<Box<dyn PushService>> = config
            .ntfy
            .as_ref()
            .map(|n| Box::new(super::ntfy::Ntfy::new(http.clone(), n)) as Box<dyn PushService>);
        Ok(Self {
            config,
            http,
            email,
            chat,
            twilio,
            push,
            phone_pace: Mutex::new(HashMap::new()),
        })
    }

    /// Where `entry` goes, for the per-destination limit: `host:port` of a
    /// webhook, else the chat platform or the transport.
    pub fn destination(&self, entry: &OutboxEntry) -> String {
        if let Some(platform) = entry.chat_platform() {
            return platform.to_string();
        }
        let url = match &entry.recipient {
            Recipient::Webhook(name) => self
                .config
                .webhooks
                .iter()
                .find(|w| &w.name == name)
                .map(|w| w.url.as_str()),
            Recipient::User(name) => match entry.method {
                ContactKind::Webhook => self
                    .config
                    .users
                    .iter()
                    .find(|u| &u.name == name)
                    .and_then(|u| u.webhook.as_ref())
                    .map(|w| w.url.as_str()),
                ContactKind::Email => return "smtp".into(),
                ContactKind::Sms | ContactKind::Voice => return "twilio".into(),
                ContactKind::Push => return "push".into(),
                _ => return "log".into(),
            },
            Recipient::Channel(_) => None,
            Recipient::Subscriber(_) => return "smtp".into(),
        };
        url.and_then(|u| reqwest::Url::parse(u).ok())
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port_or_known_default().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "unknown".into())
    }

    fn platform(&self, name: &str) -> Result<&dyn ChatDelivery, DeliveryError> {
        self.chat
            .iter()
            .find(|p| p.platform() == name)
            .map(|p| p.as_ref())
            .ok_or_else(|| DeliveryError::permanent(format!("[{name}] is not configured")))
    }

    /// Delivers one entry.
    pub async fn deliver(
        &self,
        host: &dyn OutboxHost,
        entry: &OutboxEntry,
    ) -> Result<(), DeliveryError> {
        // Adapters see the key with the incident's uid (see `external_key`).
        let entry = &entry.for_delivery();
        if let Some(platform) = entry.chat_platform() {
            return self.platform(platform)?.deliver(entry).await;
        }
        match &entry.recipient {
            Recipient::Webhook(name) => {
                let hook = self
                    .config
                    .webhooks
                    .iter()
                    .find(|w| &w.name == name)
                    .ok_or_else(|| {
                        DeliveryError::permanent(format!(
                            "webhook '{name}' is no longer configured"
                        ))
                    })?;
                webhook::deliver(&self.http, &hook.url, hook.secret.as_ref(), entry).await
            }
            Recipient::Channel(_) => unreachable!("handled above"),
            Recipient::Subscriber(to) => {
                let crate::notify::Job::StatusUpdate { text, subject, .. } = &entry.job else {
                    return Err(DeliveryError::permanent(
                        "a subscriber gets status updates only",
                    ));
                };
                let sender = self
                    .email
                    .as_ref()
                    .ok_or_else(|| DeliveryError::permanent("no [smtp] is configured"))?;
                sender.send_as(to, entry, subject, text.clone()).await
            }
            Recipient::User(name) => {
                let user = self
                    .config
                    .users
                    .iter()
                    .find(|u| &u.name == name)
                    .ok_or_else(|| {
                        DeliveryError::permanent(format!("user '{name}' is no longer configured"))
                    })?;
                match entry.method {
                    ContactKind::Log => {
                        super::log_page(entry, name);
                        Ok(())
                    }
                    ContactKind::Webhook => {
                        let hook = user.webhook.as_ref().ok_or_else(|| {
                            DeliveryError::permanent(format!("user '{name}' has no webhook"))
                        })?;
                        webhook::deliver(&self.http, &hook.url, hook.secret.as_ref(), entry).await
                    }
                    ContactKind::Slack | ContactKind::Discord => unreachable!("handled above"),
                    ContactKind::Email => {
                        let to = user.email.as_deref().ok_or_else(|| {
                            DeliveryError::permanent(format!("user '{name}' has no email"))
                        })?;
                        let sender = self
                            .email
                            .as_ref()
                            .ok_or_else(|| DeliveryError::permanent("no [smtp] is configured"))?;
                        let ack_url = self.email_ack_url(host, entry, name);
                        let chat = self.config.slack.is_some() || self.config.discord.is_some();
                        // The incident as people name it (INC-1), as in the subject.
                        let mut page = serde_json::to_value(&entry.page).unwrap_or_default();
                        page["incident"] = serde_json::json!(entry.page.incident.to_string());
                        let text = host
                            .templates()
                            .render(
                                "page.md",
                                serde_json::json!({
                                    "page": page,
                                    "incident_key": entry.page.incident.to_string(),
                                    "ack_url": ack_url,
                                    "chat": chat,
                                    "drill": false,
                                }),
                            )
                            .unwrap_or_else(|e| {
                                tracing::error!(error = %e, "The page template failed; sending the headline");
                                entry.page.headline()
                            });
                        sender.send(to, entry, text).await
                    }
                    ContactKind::Sms | ContactKind::Voice => {
                        self.deliver_phone(host, user, entry).await
                    }
                    ContactKind::Push => self.deliver_push(host, user, entry).await,
                }
            }
        }
    }
}

impl Notifiers {
    /// The email page's one-click acknowledge link, when `[smtp]
    /// action_secret` and `[server] public_url` are set: signed for `user`
    /// and this page, single use, expiring after `[smtp] action_ttl`.
    fn email_ack_url(
        &self,
        host: &dyn OutboxHost,
        entry: &OutboxEntry,
        user: &str,
    ) -> Option<String> {
        let smtp = self.config.smtp.as_ref()?;
        let secret = smtp.action_secret.as_ref()?;
        let base = self.public_base().ok()?;
        let ttl = chrono::Duration::from_std(smtp.action_ttl).ok()?;
        let claim = super::push::LinkClaim::for_page(
            &entry.key,
            entry.incident,
            super::push::LinkAction::Acknowledge,
            user,
            host.clock().now() + ttl,
        );
        Some(format!("{base}/ack/{}", super::push::sign(secret, &claim)))
    }

    fn public_base(&self) -> Result<String, DeliveryError> {
        self.config
            .server
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .ok_or_else(|| DeliveryError::permanent("[server] public_url is not set"))
    }

    /// An SMS or a call through Twilio: at most [`PHONE_PACE`] apart per
    /// number, at most `[twilio] max_per_incident` per person and incident.
    async fn deliver_phone(
        &self,
        host: &dyn OutboxHost,
        user: &UserConfig,
        entry: &OutboxEntry,
    ) -> Result<(), DeliveryError> {
        let cap = self
            .config
            .twilio
            .as_ref()
            .map_or(0, |t| t.max_per_incident);
        let to = user.phone.as_deref().ok_or_else(|| {
            DeliveryError::permanent(format!("user '{}' has no phone", user.name))
        })?;
        let sent = host
            .outbox_for(entry.incident)
            .map_err(|e| DeliveryError::retryable(format!("reading the outbox: {e}")))?
            .iter()
            .filter(|e| {
                e.recipient == entry.recipient
                    && matches!(e.method, ContactKind::Sms | ContactKind::Voice)
                    && matches!(e.state, DeliveryState::Delivered { .. })
            })
            .count();
        if sent >= cap as usize {
            return Err(DeliveryError::permanent(format!(
                "{sent} SMS and calls already went to {} for this incident ([twilio] max_per_incident = {cap})",
                user.name
            )));
        }
        self.send_phone(to, entry.method, &entry.key, |method, action| match method {
            ContactKind::Sms => twilio::sms_body(&entry.page),
            _ => twilio::voice_twiml(&twilio::voice_prompt(&entry.page), action),
        })
        .await
        .map(|sid| {
            tracing::info!(user = %user.name, incident = %entry.incident, sid = %sid, method = entry.method.as_str(), "Twilio accepted the page");
        })
    }

    /// Sends an SMS or places a call to `to` (paced), keyed `key` in the
    /// callbacks; `text` gives the SMS body or the call's TwiML (from the
    /// URL its keys post to). Returns Twilio's SID.
    async fn send_phone(
        &self,
        to: &str,
        method: ContactKind,
        key: &str,
        text: impl Fn(ContactKind, &str) -> String,
    ) -> Result<String, DeliveryError> {
        let client = self
            .twilio
            .as_ref()
            .ok_or_else(|| DeliveryError::permanent("no [twilio] is configured"))?;
        let base = self.public_base()?;
        self.wait_for_pace(to).await?;
        let key = url_encode(key);
        let callback = format!("{base}/twilio/status?key={key}");
        let action = format!("{base}/twilio/voice?key={key}");
        let accepted = if method == ContactKind::Sms {
            client
                .send_sms(to, &text(method, &action), &callback)
                .await?
        } else {
            client
                .place_call(to, &text(method, &action), &callback)
                .await?
        };
        Ok(accepted.sid)
    }

    /// Sends `user` a test page by `method` (`tocsin notify test`): the
    /// same path as a real page, saying it is a test; pressing or replying
    /// does nothing. Returns what was sent.
    pub async fn send_test(
        &self,
        user: &str,
        method: ContactKind,
    ) -> Result<String, DeliveryError> {
        let u = self
            .config
            .users
            .iter()
            .find(|u| u.name == user)
            .ok_or_else(|| DeliveryError::permanent(format!("no user '{user}' in the config")))?;
        match method {
            ContactKind::Sms | ContactKind::Voice => {
                let to = u.phone.as_deref().ok_or_else(|| {
                    DeliveryError::permanent(format!("user '{user}' has no phone"))
                })?;
                let sid = self
                    .send_phone(to, method, &format!("test/{user}"), |m, _| match m {
                        ContactKind::Sms => format!(
                            "tocsin test page for {user}: SMS pages reach you. Nothing to do."
                        ),
                        _ => twilio::say_twiml(&format!(
                            "This is a tocsin test call for {user}. Calls reach you. Nothing to do."
                        )),
                    })
                    .await?;
                Ok(format!(
                    "Twilio accepted the test {} to {to} ({sid})",
                    method.as_str()
                ))
            }
            ContactKind::Push => {
                let (Some(push), Some(topic)) = (&self.push, u.ntfy_topic.as_deref()) else {
                    return Err(DeliveryError::permanent(format!(
                        "push needs an [ntfy] section and user '{user}'s ntfy_topic"
                    )));
                };
                let message = super::push::PushMessage {
                    title: "tocsin test page".into(),
                    message: format!("Push pages reach {user}. Nothing to do."),
                    priority: 3,
                    tags: vec!["white_check_mark".into()],
                    click: None,
                    actions: Vec::new(),
                };
                push.publish(topic, &message).await?;
                Ok(format!(
                    "{} accepted the test push to topic {topic}",
                    push.name()
                ))
            }
            other => Err(DeliveryError::permanent(format!(
                "notify test sends sms, voice and push; {} pages show on the incident timeline",
                other.as_str()
            ))),
        }
    }

    /// Holds until `number` may get its next SMS or call, and books the
    /// slot after it. A wait longer than [`MAX_PACE_WAIT`] books nothing
    /// and is a retryable failure naming when to come back, so a queue of
    /// pages to one number never outlasts an attempt's time limit.
    async fn wait_for_pace(&self, number: &str) -> Result<(), DeliveryError> {
        let now = tokio::time::Instant::now();
        let at = {
            let mut pace = self.phone_pace.lock();
            pace.retain(|_, t| *t > now);
            let at = pace.get(number).copied().unwrap_or(now).max(now);
            if at - now > MAX_PACE_WAIT {
                return Err(DeliveryError {
                    message: format!(
                        "{number} gets at most one SMS or call a second; this one waits its turn"
                    ),
                    retryable: true,
                    retry_after: Some(at - now),
                });
            }
            pace.insert(number.to_string(), at + PHONE_PACE);
            at
        };
        tokio::time::sleep_until(at).await;
        Ok(())
    }

    /// A push with Acknowledge and Resolve buttons.
    async fn deliver_push(
        &self,
        host: &dyn OutboxHost,
        user: &UserConfig,
        entry: &OutboxEntry,
    ) -> Result<(), DeliveryError> {
        let (Some(push), Some(cfg)) = (&self.push, &self.config.ntfy) else {
            return Err(DeliveryError::permanent("no [ntfy] is configured"));
        };
        let topic = user.ntfy_topic.as_deref().ok_or_else(|| {
            DeliveryError::permanent(format!("user '{}' has no ntfy_topic", user.name))
        })?;
        let expires = host.clock().now()
            + chrono::Duration::from_std(cfg.action_ttl).unwrap_or(chrono::Duration::days(1));
        let message = super::push::page_message(
            &entry.page,
            &entry.key,
            &user.name,
            &self.public_base()?,
            &cfg.action_secret,
            expires,
        );
        push.publish(topic, &message).await
    }
}

/// Percent-encodes everything but unreserved characters (for a query value).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The worker.
#[derive(Clone)]
pub struct Worker {
    host: Arc<dyn OutboxHost>,
    notifiers: Arc<Notifiers>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
    per_destination: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    attempt_timeout: Duration,
}

impl Worker {
    /// A worker for `host`'s outbox.
    pub fn new(host: impl OutboxHost, notifiers: Arc<Notifiers>) -> Self {
        Self {
            host: Arc::new(host),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            per_destination: Arc::new(Mutex::new(HashMap::new())),
            // A chat job may make a few calls, each bounded by the request
            // timeout; the whole attempt is bounded too.
            attempt_timeout: notifiers.config.notify.request_timeout * 3,
            notifiers,
        }
    }

    /// Starts a delivery task for every entry due now that is not already
    /// in flight.
    pub fn dispatch_due(&self, tasks: &mut JoinSet<()>) -> Result<usize, HostError> {
        let now = self.host.clock().now();
        // Only as many as can be sent now (plus what is in flight and will
        // be skipped): decoding more would be wasted work.
        let room = self.permits.available_permits();
        if room == 0 {
            return Ok(0);
        }
        let in_flight = self.in_flight.lock().len();
        let due = self.host.due_outbox(now, room + in_flight)?;
        let mut started = 0;
        for entry in due {
            if !self.in_flight.lock().insert(entry.key.clone()) {
                continue;
            }
            started += 1;
            let w = self.clone();
            tasks.spawn(async move {
                let key = entry.key.clone();
                w.deliver_one(entry).await;
                w.in_flight.lock().remove(&key);
                w.host.outbox_waker().notify_one();
            });
        }
        Ok(started)
    }

    /// Delivers everything due now and waits for the attempts to be
    /// recorded; returns how many were attempted. For tests and tools that
    /// drive time by hand.
    pub async fn deliver_due(&self) -> usize {
        let mut tasks = JoinSet::new();
        let n = self.dispatch_due(&mut tasks).unwrap_or(0);
        while tasks.join_next().await.is_some() {}
        n
    }

    async fn deliver_one(&self, entry: OutboxEntry) {
        // The destination's slot first, then a shared one: a task queued
        // behind a hung receiver holds none of the shared slots.
        let destination = self.notifiers.destination(&entry);
        let slots = self
            .per_destination
            .lock()
            .entry(destination.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_DESTINATION)))
            .clone();
        let Ok(_slot) = slots.acquire().await else {
            return;
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let now = self.host.clock().now();
        let entry = match self.host.claim_delivery(&entry.key, now).await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                error!(error = %e, key = %entry.key, "Could not claim an outbox entry");
                return;
            }
        };
        let result = match tokio::time::timeout(
            self.attempt_timeout,
            self.notifiers.deliver(self.host.as_ref(), &entry),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::retryable(format!(
                "the attempt to {destination} took longer than {:?}",
                self.attempt_timeout
            ))),
        };
        let platform = entry.chat_platform().map(str::to_string);
        if let Some(p) = platform {
            self.host
                .chat_health(&p, result.as_ref().err().map(|e| e.message.clone()));
        }
        let jitter: f64 = rand::random();
        let now = self.host.clock().now();
        if let Err(e) = self
            .host
            .record_delivery(&entry.key, result, now, jitter)
            .await
        {
            // Not recorded: it stays pending and is sent again; receivers
            // drop the duplicate by its Idempotency-Key.
            error!(error = %e, key = %entry.key, "Could not record a delivery");
        }
    }

    /// Runs until `shutdown`, then waits up to `grace` for deliveries in flight.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.dispatch_due(&mut tasks) {
                error!(error = %e, "Reading the outbox failed");
            }
            while tasks.try_join_next().is_some() {}
            let now = self.host.clock().now();
            let wait = match self.host.next_outbox_due() {
                // Due but in flight: its task wakes us when it finishes.
                Ok(Some(due)) if due <= now => Duration::from_secs(1),
                Ok(Some(due)) => (due - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(self.host.idle_poll()),
                Ok(None) => self.host.idle_poll(),
                Err(_) => Duration::from_secs(1),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.host.outbox_waker().notified() => {}
                _ = shutdown.changed() => break,
            }
        }
        if !tasks.is_empty() {
            let drained =
                tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
                    .await;
            if drained.is_err() {
                warn!(
                    left = tasks.len(),
                    "Shutdown grace ran out with deliveries in flight; they will be retried after restart"
                );
                tasks.abort_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phone_pages_to_one_number_go_a_second_apart_and_a_long_queue_waits_outside() {
        let n = Notifiers::new(Arc::new(Config::default()), Vec::new()).unwrap();
        let start = tokio::time::Instant::now();
        for i in 0..4u64 {
            n.wait_for_pace("+15551230001").await.unwrap();
            assert_eq!(start.elapsed(), Duration::from_secs(i));
        }
        // Another number is not held up.
        n.wait_for_pace("+15551230002").await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));

        // Five at once to one number: four go at 0, 1, 2 and 3 s; the
        // fifth would wait 4 s, so it is put off instead.
        let start = tokio::time::Instant::now();
        let (a, b, c, d, e) = tokio::join!(
            n.wait_for_pace("+15551230003"),
            n.wait_for_pace("+15551230003"),
            n.wait_for_pace("+15551230003"),
            n.wait_for_pace("+15551230003"),
            n.wait_for_pace("+15551230003"),
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let results = [a, b, c, d, e];
        let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(refused.len(), 1, "{results:?}");
        assert!(refused[0].retryable);
        assert_eq!(refused[0].retry_after, Some(Duration::from_secs(4)));
    }
}
