//! Email pages over SMTP, with lettre.

use super::{DeliveryError, OutboxEntry};
use crate::config::{SmtpConfig, SmtpTls};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// A configured SMTP sender.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
}

impl EmailSender {
    /// Builds the transport from `[smtp]`.
    pub fn new(cfg: &SmtpConfig, timeout: Duration) -> Result<Self, String> {
        let builder = match cfg.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| format!("smtp: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| format!("smtp: {e}"))?,
        };
        let mut builder = builder.port(cfg.port).timeout(Some(timeout));
        if let Some(user) = &cfg.username {
            let password = cfg
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            transport: builder.build(),
            from: cfg.from.clone(),
        })
    }

    /// Sends the page to `to` with the body `text` (rendered from the
    /// `page.md` template). The Message-ID carries the idempotency key, so
    /// a retried page threads with (and can be dropped as) the first.
    pub async fn send(
        &self,
        to: &str,
        entry: &OutboxEntry,
        text: String,
    ) -> Result<(), DeliveryError> {
        self.send_as(to, entry, &entry.page.headline(), text).await
    }

    /// A plain-text message from `[smtp] from` to `to`; a bad address is
    /// said in the error.
    fn message(
        &self,
        to: &str,
        subject: &str,
        message_id: Option<String>,
        text: String,
    ) -> Result<Message, String> {
        Message::builder()
            .from(
                self.from
                    .parse()
                    .map_err(|e| format!("smtp from address: {e}"))?,
            )
            .to(to
                .parse()
                .map_err(|e| format!("email address '{to}': {e}"))?)
            .subject(subject)
            .message_id(message_id)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| format!("email: {e}"))
    }

    /// Sends `text` to `to` under `subject`, outside the outbox (a sign-in
    /// link: the person waits for it and asks again if it is lost).
    pub async fn send_text(&self, to: &str, subject: &str, text: String) -> Result<(), String> {
        let msg = self.message(to, subject, None, text)?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| format!("smtp: {e}"))
    }

    /// Sends `text` to `to` under `subject`, the Message-ID carrying the
    /// entry's idempotency key.
    pub async fn send_as(
        &self,
        to: &str,
        entry: &OutboxEntry,
        subject: &str,
        text: String,
    ) -> Result<(), DeliveryError> {
        let message_id = format!(
            "<{}@tocsin>",
            entry
                .key
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '.'
                })
                .collect::<String>()
        );
        let msg = self
            .message(to, subject, Some(message_id), text)
            .map_err(DeliveryError::permanent)?;
        self.transport.send(msg).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                DeliveryError::permanent(format!("smtp: {e}"))
            } else {
                DeliveryError::retryable(format!("smtp: {e}"))
            }
        })
    }
}
