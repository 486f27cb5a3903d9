//! Phone push pages, whatever the push service: the message every service
//! gets (title, text, priority, tags, buttons), the [`PushService`] trait a
//! service implements ([`super::ntfy`] is one; another is one more file),
//! and the signed, expiring links behind the buttons.

use super::{DeliveryError, PageContent};
use crate::incident::{IncidentId, Severity};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;

/// A button on a push notification: a POST to `url` when pressed.
#[derive(Debug, Clone, PartialEq)]
pub struct PushAction {
    /// What the button says.
    pub label: String,
    /// What it calls.
    pub url: String,
}

/// A push notification, independent of the service that carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    /// The headline.
    pub title: String,
    /// The text.
    pub message: String,
    /// 1 (min) to 5 (urgent, breaks through Do Not Disturb).
    pub priority: u8,
    /// Short tags (emoji shortcodes on ntfy).
    pub tags: Vec<String>,
    /// Where tapping the notification goes.
    pub click: Option<String>,
    /// The buttons.
    pub actions: Vec<PushAction>,
}

/// What a push service's publish returns.
pub type Publish<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// A push service: publishes one message to one person's address there
/// (an ntfy topic, a device token, ...).
pub trait PushService: Send + Sync {
    /// The service's name, for logs and the per-destination limit.
    fn name(&self) -> &'static str;
    /// Publishes `message` to `address`.
    fn publish<'a>(&'a self, address: &'a str, message: &'a PushMessage) -> Publish<'a>;
}

/// The push priority of a severity: SEV1 is urgent (5).
pub fn priority(severity: Severity) -> u8 {
    match severity {
        Severity::Sev1 => 5,
        Severity::Sev2 => 4,
        Severity::Sev3 => 3,
        Severity::Sev4 => 2,
    }
}

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Acknowledge the incident.
    Acknowledge,
    /// Resolve it.
    Resolve,
}

impl LinkAction {
    fn code(self) -> &'static str {
        match self {
            Self::Acknowledge => "ack",
            Self::Resolve => "resolve",
        }
    }
}

/// What a signed link says: who may do what to which incident until when,
/// and a nonce that makes it usable once.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkClaim {
    /// The incident.
    pub incident: IncidentId,
    /// What to do.
    pub action: LinkAction,
    /// The tocsin user the page went to.
    pub user: String,
    /// When the link stops working.
    pub expires: DateTime<Utc>,
    /// Unique per page and action.
    pub nonce: String,
}

impl LinkClaim {
    /// The claim of a button on the page with idempotency key `page_key`.
    pub fn for_page(
        page_key: &str,
        incident: IncidentId,
        action: LinkAction,
        user: &str,
        expires: DateTime<Utc>,
    ) -> Self {
        let digest = Sha256::digest(format!("{page_key}/{}", action.code()).as_bytes());
        Self {
            incident,
            action,
            user: user.to_string(),
            expires,
            nonce: hex::encode(&digest[..8]),
        }
    }

    /// The principal recorded on the timeline when the link is used: its
    /// nonce, so a second use is seen and refused.
    pub fn principal(&self) -> String {
        self.principal_via("push")
    }

    /// The principal of a link sent by `medium` (`push`, `email`).
    pub fn principal_via(&self, medium: &str) -> String {
        format!("{medium}:{}", self.nonce)
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link tocsin signed (or tampered with).
    #[error("this link is not signed by tocsin")]
    BadSignature,
    /// Signed, but past its expiry.
    #[error("this link expired")]
    Expired,
}

fn mac(secret: &Secret, payload: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The link token: the claim and its HMAC-SHA256, both base64url.
pub fn sign(secret: &Secret, claim: &LinkClaim) -> String {
    let payload = format!(
        "{}.{}.{}.{}.{}",
        claim.incident.0,
        claim.action.code(),
        claim.expires.timestamp(),
        claim.nonce,
        claim.user
    );
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(secret, &payload))
    )
}

/// Checks a token's signature (in constant time) and expiry at `now`.
pub fn verify(secret: &Secret, token: &str, now: DateTime<Utc>) -> Result<LinkClaim, LinkError> {
    let (payload, sig) = token.split_once('.').ok_or(LinkError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| String::from_utf8(p).ok())
        .ok_or(LinkError::BadSignature)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| LinkError::BadSignature)?;
    use subtle::ConstantTimeEq;
    if !bool::from(mac(secret, &payload).ct_eq(&sig)) {
        return Err(LinkError::BadSignature);
    }
    let mut parts = payload.splitn(5, '.');
    let (Some(n), Some(a), Some(exp), Some(nonce), Some(user)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(LinkError::BadSignature);
    };
    let action = match a {
        "ack" => LinkAction::Acknowledge,
        "resolve" => LinkAction::Resolve,
        _ => return Err(LinkError::BadSignature),
    };
    let expires = exp
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or(LinkError::BadSignature)?;
    let incident = IncidentId(n.parse().map_err(|_| LinkError::BadSignature)?);
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(LinkClaim {
        incident,
        action,
        user: user.to_string(),
        expires,
        nonce: nonce.to_string(),
    })
}

/// The push message of a page: urgent for SEV1, with Acknowledge and
/// Resolve buttons calling `{public}/push/{token}` (POST), and a tap
/// opening the incident's page there (GET with the Acknowledge token, which
/// shows the incident and changes nothing).
pub fn page_message(
    page: &PageContent,
    page_key: &str,
    user: &str,
    public: &str,
    secret: &Secret,
    expires: DateTime<Utc>,
) -> PushMessage {
    let link = |action| {
        let claim = LinkClaim::for_page(page_key, page.incident, action, user, expires);
        format!("{public}/push/{}", sign(secret, &claim))
    };
    PushMessage {
        title: format!("{} {} {}", page.incident, page.severity, page.service),
        message: page.title.clone(),
        priority: priority(page.severity),
        tags: vec![
            if page.severity == Severity::Sev1 {
                "rotating_light".into()
            } else {
                "warning".into()
            },
            page.severity.to_string().to_lowercase(),
        ],
        click: Some(link(LinkAction::Acknowledge)),
        actions: vec![
            PushAction {
                label: "Acknowledge".into(),
                url: link(LinkAction::Acknowledge),
            },
            PushAction {
                label: "Resolve".into(),
                url: link(LinkAction::Resolve),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_not_once_changed() {
        let secret = Secret::new("0123456789abcdef0123");
        let claim = LinkClaim::for_page(
            "INC-7/g0/r0/s0/user:alice/m0",
            IncidentId(7),
            LinkAction::Acknowledge,
            "alice.b",
            t0() + chrono::Duration::hours(24),
        );
        let token = sign(&secret, &claim);
        assert_eq!(verify(&secret, &token, t0()), Ok(claim.clone()));
        assert_eq!(
            verify(&secret, &token, t0() + chrono::Duration::hours(24)),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(&Secret::new("another-secret-entirely"), &token, t0()),
            Err(LinkError::BadSignature)
        );
        let (payload, sig) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
                .unwrap()
                .replace(".ack.", ".resolve."),
        );
        assert_eq!(
            verify(&secret, &format!("{forged}.{sig}"), t0()),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&secret, "garbage", t0()),
            Err(LinkError::BadSignature)
        );
        let resolve = LinkClaim::for_page(
            "INC-7/g0/r0/s0/user:alice/m0",
            IncidentId(7),
            LinkAction::Resolve,
            "alice.b",
            t0(),
        );
        assert_ne!(resolve.nonce, claim.nonce);
    }

    #[test]
    fn sev1_is_urgent() {
        assert_eq!(priority(Severity::Sev1), 5);
        assert_eq!(priority(Severity::Sev4), 2);
    }
}
