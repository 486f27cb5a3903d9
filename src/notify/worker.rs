//! The outbox worker: delivers due entries concurrently (one slow or wedged
//! receiver holds up nobody else), and records every attempt.

use super::email::EmailSender;
use super::{DeliveryError, OutboxEntry, webhook};
use crate::chat::ChatPlatform;
use crate::config::{Config, ContactKind};
use crate::escalation::Recipient;
use crate::service::Service;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{error, warn};

/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 64;

/// Sends one entry through the right channel.
pub struct Notifiers {
    config: Arc<Config>,
    http: reqwest::Client,
    email: Option<EmailSender>,
    chat: Vec<Arc<dyn ChatPlatform>>,
}

impl Notifiers {
    /// Builds the HTTP client and the SMTP transport from the config; chat
    /// jobs and chat pages go to `chat`.
    pub fn new(config: Arc<Config>, chat: Vec<Arc<dyn ChatPlatform>>) -> Result<Self, String> {
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
        Ok(Self {
            config,
            http,
            email,
            chat,
        })
    }

    fn platform(&self, name: &str) -> Result<&dyn ChatPlatform, DeliveryError> {
        self.chat
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.as_ref())
            .ok_or_else(|| DeliveryError::permanent(format!("[{name}] is not configured")))
    }

    /// Delivers one entry.
    pub async fn deliver(
        &self,
        service: &Service,
        entry: &OutboxEntry,
    ) -> Result<(), DeliveryError> {
        if let Some(platform) = entry.chat_platform() {
            return crate::chat::deliver::run(service, self.platform(platform)?, entry).await;
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
                        warn!(target: "tocsin::page", user = %name, incident = %entry.incident, key = %entry.key, "PAGE {}", entry.page.headline());
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
                        let text = service
                            .directory()
                            .templates
                            .render(
                                "page.md",
                                serde_json::json!({"page": entry.page, "drill": false}),
                            )
                            .unwrap_or_else(|e| {
                                tracing::error!(error = %e, "The page template failed; sending the headline");
                                entry.page.headline()
                            });
                        sender.send(to, entry, text).await
                    }
                }
            }
        }
    }
}

/// The worker.
#[derive(Clone)]
pub struct Worker {
    service: Service,
    notifiers: Arc<Notifiers>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
}

impl Worker {
    /// A worker for `service`'s outbox.
    pub fn new(service: Service, notifiers: Arc<Notifiers>) -> Self {
        Self {
            service,
            notifiers,
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Starts a delivery task for every entry due now that is not already
    /// in flight.
    pub fn dispatch_due(&self, tasks: &mut JoinSet<()>) -> Result<usize, crate::store::StoreError> {
        let now = self.service.clock().now();
        // Only as many as can be sent now (plus what is in flight and will
        // be skipped): decoding more would be wasted work.
        let room = self.permits.available_permits();
        if room == 0 {
            return Ok(0);
        }
        let in_flight = self.in_flight.lock().len();
        let due = self.service.store().due_outbox(now, room + in_flight)?;
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
                w.service.wakers().outbox.notify_one();
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
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let now = self.service.clock().now();
        let entry = match self.service.claim_delivery(&entry.key, now).await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                error!(error = %e, key = %entry.key, "Could not claim an outbox entry");
                return;
            }
        };
        let result = self.notifiers.deliver(&self.service, &entry).await;
        let platform = entry.chat_platform().map(str::to_string);
        if let Some(p) = platform {
            self.service
                .wakers()
                .chat_health
                .lock()
                .insert(p, result.as_ref().err().map(|e| e.message.clone()));
        }
        let jitter: f64 = rand::random();
        let now = self.service.clock().now();
        if let Err(e) = self
            .service
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
            let now = self.service.clock().now();
            let wait = match self.service.store().next_outbox_due() {
                // Due but in flight: its task wakes us when it finishes.
                Ok(Some(due)) if due <= now => Duration::from_secs(1),
                Ok(Some(due)) => (due - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(30)),
                Ok(None) => Duration::from_secs(30),
                Err(_) => Duration::from_secs(1),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.service.wakers().outbox.notified() => {}
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
