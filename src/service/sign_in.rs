//! One-time sign-in links to the console: made for a configured user when
//! they ask from chat (`/incident login`) or by email, used once to start a
//! console session.
//!
//! A link is an [`ApiToken`] record with [`SignIn`](crate::access::SignIn)
//! set: only its hash is stored, it never works as an API token, and once
//! used it is the record the console session names, so revoking it (`tocsin
//! token revoke`) signs that session out and `GET /v1/tokens` lists who
//! signed in, how and when.

use super::{Service, ServiceError};
use crate::access::{ApiToken, LinkRefusal, Scope, split_token};
use crate::store::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tracing::{info, warn};

/// What a mailer's send returns.
pub type MailFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Sends a plain-text email: the service owns the trait, the app wires
/// `[smtp]` into it.
pub trait Mailer: Send + Sync {
    /// Sends `text` to `to` under `subject`.
    fn send<'a>(&'a self, to: &'a str, subject: &'a str, text: String) -> MailFuture<'a>;
}

/// A link made for someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInLink {
    /// The URL to open.
    pub url: String,
    /// How long it works, for the message (`10m`).
    pub valid_for: String,
}

/// Why no link was made.
#[derive(Debug, thiserror::Error)]
pub enum NoLink {
    /// The console is off, or `[console] url` is not set.
    #[error(
        "sign-in links need the console: set [console] enabled = true and [console] url to where browsers reach it"
    )]
    NotConfigured,
    /// The name is no configured user.
    #[error("'{0}' is not a tocsin user")]
    UnknownUser(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Service {
    /// Installs the mailer that sends sign-in links by email (`[smtp]`).
    pub fn set_mailer(&self, mailer: Arc<dyn Mailer>) {
        let _ = self.mailer.set(mailer);
    }

    /// The scope a sign-in link gives `user`: admin for `[chat] admins`,
    /// else `[console] link_scope`.
    fn link_scope(&self, user: &str) -> Scope {
        let config = &self.directory.config;
        if config.chat.admins.iter().any(|a| a == user) {
            Scope::Admin
        } else {
            config.console.link_scope
        }
    }

    /// Makes a one-time sign-in link for the configured `user`, to be sent
    /// `via` (`slack`, `discord`, `email`), and stores its hash.
    pub async fn sign_in_link(&self, user: &str, via: &str) -> Result<SignInLink, NoLink> {
        let config = &self.directory.config;
        let console = &config.console;
        if !console.enabled || console.url.is_none() {
            return Err(NoLink::NotConfigured);
        }
        if !config.users.iter().any(|u| u.name == user) {
            return Err(NoLink::UnknownUser(user.to_string()));
        }
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(console.link_ttl)
            .unwrap_or_else(|_| chrono::Duration::minutes(10));
        let (record, code) =
            ApiToken::sign_in_link(user, self.link_scope(user), via, now, now + ttl);
        let url = console.sign_in_url(&code).ok_or(NoLink::NotConfigured)?;
        let store = self.store.clone();
        let stored = record.clone();
        tokio::task::spawn_blocking(move || store.put_token(&stored))
            .await
            .map_err(|e| StoreError::Backend(format!("storing a sign-in link: {e}")))??;
        info!(id = %record.id, user, via, scope = %record.scope, "Console sign-in link made");
        Ok(SignInLink {
            url,
            valid_for: humantime::format_duration(console.link_ttl).to_string(),
        })
    }

    /// Emails a sign-in link to the user named `who` (a user name or the
    /// `email` of one). Says nothing of whether it exists: the caller shows
    /// the same answer either way, so the form tells nobody who the users
    /// are. Refusals are logged.
    pub async fn email_sign_in_link(&self, who: &str) {
        let who = who.trim();
        let config = &self.directory.config;
        let Some(user) = config.users.iter().find(|u| {
            u.name == who
                || u.email
                    .as_deref()
                    .is_some_and(|e| !who.is_empty() && e.eq_ignore_ascii_case(who))
        }) else {
            info!(who = %who.escape_debug(), "Console sign-in link by email refused: no such user");
            return;
        };
        let (Some(to), Some(mailer)) = (user.email.as_deref(), self.mailer.get()) else {
            warn!(user = %user.name, "Console sign-in link by email refused: the user has no email, or [smtp] is not configured");
            return;
        };
        let now = self.clock.now();
        {
            let mut emailed = self.emailed.lock();
            emailed.retain(|_, at| now - *at < chrono::Duration::minutes(1));
            if emailed.contains_key(&user.name) {
                info!(user = %user.name, "Console sign-in link by email refused: one was sent less than a minute ago");
                return;
            }
            emailed.insert(user.name.clone(), now);
        }
        let link = match self.sign_in_link(&user.name, "email").await {
            Ok(l) => l,
            Err(e) => {
                warn!(user = %user.name, error = %e, "Console sign-in link by email not made");
                return;
            }
        };
        let text = format!(
            "Someone (hopefully you) asked to sign in to the tocsin console as {}.\n\n\
             Open this link within {} to sign in; it works once:\n\n{}\n\n\
             If it was not you, ignore this email: nobody signs in without the link.\n",
            user.name, link.valid_for, link.url
        );
        if let Err(e) = mailer
            .send(to, "Your tocsin console sign-in link", text)
            .await
        {
            warn!(user = %user.name, error = %e, "Console sign-in link email failed");
        }
    }

    /// Uses the sign-in link whose code is `presented`: the record, now
    /// naming a session that lasts `[console] session_ttl`, or why not.
    pub async fn redeem_sign_in(
        &self,
        presented: &str,
    ) -> Result<Result<ApiToken, LinkRefusal>, ServiceError> {
        let Some((id, secret)) = split_token(presented.trim()) else {
            return Ok(Err(LinkRefusal::Unknown));
        };
        let (id, secret) = (id.to_string(), secret.to_string());
        let now = self.clock.now();
        let ends = now
            + chrono::Duration::from_std(self.directory.config.console.session_ttl)
                .unwrap_or_else(|_| chrono::Duration::hours(12));
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            // Checked and marked used in one atomic step of the store, so
            // two presses of one link (on any replicas) start one session.
            let mut refusal = LinkRefusal::Unknown;
            let used = store.update_token(&id, &mut |record| {
                record
                    .redeem(&secret, now, ends)
                    .map_err(|r| refusal = r)
                    .ok()
            })?;
            Ok::<_, StoreError>(used.ok_or(refusal))
        })
        .await
        .map_err(|e| StoreError::Backend(format!("using a sign-in link: {e}")))?
        .map_err(ServiceError::Store)?;
        match &outcome {
            Ok(t) => {
                info!(id = %t.id, user = %t.user, scope = %t.scope, "Console sign-in link used")
            }
            Err(r) => info!(reason = %r, "Console sign-in link refused"),
        }
        Ok(outcome)
    }
}
