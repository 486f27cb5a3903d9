//! Console sessions: a signed cookie naming the API token that signed in,
//! and the CSRF token bound to it.
//!
//! The cookie reads `<token id>.<expiry, unix seconds>.<nonce>.<mac>`, the
//! MAC an HMAC-SHA256 under `[console] session_key`. It holds no secret of
//! the token: each request looks the token up again, so revoking it signs
//! its sessions out. The CSRF token is an HMAC of the session's nonce, so
//! it is fixed for the session and unknown to any other site.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "tocsin_session";

/// How the token id of a session of the bootstrap `[api] token` starts;
/// see [`bootstrap_id`].
pub const BOOTSTRAP_PREFIX: &str = "config-";

/// The token id a session of the bootstrap token records: a fingerprint
/// of the token (12 hex digits of its SHA-256), so that changing `[api]
/// token` ends those sessions as revoking a per-user token does.
pub fn bootstrap_id(token: &str) -> String {
    use sha2::Digest;
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    format!("{BOOTSTRAP_PREFIX}{}", &digest[..12])
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The API token's public id, or [`bootstrap_id`].
    pub token_id: String,
    /// When it stops working.
    pub expires: DateTime<Utc>,
    /// Random, drawn at sign-in; the CSRF token derives from it.
    pub nonce: String,
}

/// Signs and checks sessions with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// A signer with `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, purpose: &str, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session for `token_id` until `expires`, as its cookie value.
    pub fn issue(&self, token_id: &str, expires: DateTime<Utc>) -> (Session, String) {
        use rand::RngCore;
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let session = Session {
            token_id: token_id.to_string(),
            expires,
            nonce: hex::encode(nonce),
        };
        let body = format!(
            "{}.{}.{}",
            session.token_id,
            session.expires.timestamp(),
            session.nonce
        );
        let value = format!("{body}.{}", self.mac("session", &body));
        (session, value)
    }

    /// The session in a cookie value, if its MAC is right and it has not
    /// expired at `now`.
    pub fn verify(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (body, mac) = value.rsplit_once('.')?;
        let expected = self.mac("session", body);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let mut parts = body.split('.');
        let (token_id, expires, nonce) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        (expires > now).then(|| Session {
            token_id: token_id.to_string(),
            expires,
            nonce: nonce.to_string(),
        })
    }

    /// The session's CSRF token, for its forms.
    pub fn csrf(&self, session: &Session) -> String {
        self.mac("csrf", &session.nonce)
    }

    /// Whether `presented` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The `Set-Cookie` value that stores `value` for `max_age`.
pub fn set_cookie(value: &str, max_age: std::time::Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_not_when_altered() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let now = at("2026-12-01T09:00:00Z");
        let (session, cookie) = signer.issue("3fa2c1d09b7e", now + Duration::hours(1));
        assert_eq!(signer.verify(&cookie, now), Some(session.clone()));
        assert_eq!(signer.verify(&cookie, now + Duration::hours(1)), None);
        let other = cookie.replacen("3fa2c1d09b7e", "000000000000", 1);
        assert_eq!(signer.verify(&other, now), None);
        let later = cookie.replacen(
            &session.expires.timestamp().to_string(),
            &(session.expires.timestamp() + 3600).to_string(),
            1,
        );
        assert_eq!(signer.verify(&later, now), None);
        let wrong_key = Signer::new(b"another key, as long as the first");
        assert_eq!(wrong_key.verify(&cookie, now), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let now = at("2026-12-01T09:00:00Z");
        let (a, _) = signer.issue("3fa2c1d09b7e", now + Duration::hours(1));
        let (b, _) = signer.issue("3fa2c1d09b7e", now + Duration::hours(1));
        assert!(signer.csrf_ok(&a, &signer.csrf(&a)));
        assert!(!signer.csrf_ok(&a, &signer.csrf(&b)));
        assert!(!signer.csrf_ok(&a, ""));
    }

    #[test]
    fn a_bootstrap_session_names_a_fingerprint_of_its_token() {
        let a = bootstrap_id("example-api-token");
        assert!(a.starts_with(BOOTSTRAP_PREFIX) && a.len() == BOOTSTRAP_PREFIX.len() + 12);
        assert!(!a.contains("example"));
        assert_ne!(a, bootstrap_id("another-api-token"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("cookie", "a=1; tocsin_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h), Some("xyz"));
        assert!(set_cookie("v", std::time::Duration::from_secs(60), true).ends_with("; Secure"));
    }
}
