//! Who may call the REST API: per-user tokens with scopes, the networks
//! that may scrape `/metrics`, and the `Host` names the API listener
//! answers. Pure: no I/O; the store keeps [`ApiToken`]s, the HTTP layer
//! asks these functions.
//!
//! A token reads `tsn_<id>_<secret>`: the id (12 hex digits) is public and
//! finds the record; the secret (32 random bytes, hex) is stored only as
//! its SHA-256 and compared in constant time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// What a token may do; each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET /v1/*` and `/metrics`.
    Read,
    /// And acknowledge, resolve, escalate, snooze.
    Write,
    /// And overrides, backups, tokens, and `by` naming another user.
    Admin,
}

impl Scope {
    /// The scope's name, as the CLI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown scope '{other}'; use read, write or admin")),
        }
    }
}

/// A stored API token: never the token itself, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The public id (12 hex digits), part of the token and of the actor
    /// recorded in timelines (`token:<id>`).
    pub id: String,
    /// The configured user it acts as.
    pub user: String,
    /// What it may do.
    pub scope: Scope,
    /// SHA-256 of the secret part, hex.
    pub hash: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who made it (`config-token`, `token:<id>`).
    pub created_by: String,
    /// When it was revoked; a revoked token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set on a one-time sign-in link's record: it never works as an API
    /// token, only once to sign in to the console, and then names the
    /// console session it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignIn>,
}

/// A one-time sign-in link: how it was sent, until when it works, and when
/// it was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    /// Where the link went: `slack`, `discord` or `email`.
    pub via: String,
    /// Before it is used: when the link stops working. After: when the
    /// session it started ends.
    pub expires_at: DateTime<Utc>,
    /// When the link was used; it signs nobody in again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime<Utc>>,
}

/// Why a sign-in link did not sign anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a link tocsin made, or its secret is wrong.
    Unknown,
    /// Used once already.
    Used,
    /// Past its expiry, or revoked.
    Expired,
}

impl fmt::Display for LinkRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "that sign-in link is not one tocsin made",
            Self::Used => "that sign-in link was used already; ask for a new one",
            Self::Expired => "that sign-in link has expired; ask for a new one",
        })
    }
}

/// The prefix of every token, so one found in a log or a repository is
/// recognisable.
pub const TOKEN_PREFIX: &str = "tsn_";

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl ApiToken {
    /// A new token for `user`: the record to store and the token to show
    /// once.
    pub fn generate(
        user: &str,
        scope: Scope,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> (Self, String) {
        use rand::RngCore;
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let (id, secret) = (hex::encode(id), hex::encode(secret));
        let token = format!("{TOKEN_PREFIX}{id}_{secret}");
        (
            Self {
                id,
                user: user.to_string(),
                scope,
                hash: sha256_hex(&secret),
                created_at: now,
                created_by: created_by.to_string(),
                revoked_at: None,
                sign_in: None,
            },
            token,
        )
    }

    /// A new one-time sign-in link's record for `user`, sent `via` a
    /// platform, working until `expires_at`: the record and the code the
    /// link carries (shaped as a token, so it is recognisable).
    pub fn sign_in_link(
        user: &str,
        scope: Scope,
        via: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> (Self, String) {
        let (mut record, code) = Self::generate(user, scope, &format!("sign-in:{via}"), now);
        record.sign_in = Some(SignIn {
            via: via.to_string(),
            expires_at,
            used_at: None,
        });
        (record, code)
    }

    /// Uses a sign-in link at `now`, starting a session that lasts until
    /// `session_ends`: the record as it must be stored, or why not. A
    /// link works once, before its expiry, unless revoked.
    pub fn redeem(
        &self,
        secret: &str,
        now: DateTime<Utc>,
        session_ends: DateTime<Utc>,
    ) -> Result<Self, LinkRefusal> {
        let Some(link) = &self.sign_in else {
            return Err(LinkRefusal::Unknown);
        };
        if !bool::from(sha256_hex(secret).as_bytes().ct_eq(self.hash.as_bytes())) {
            return Err(LinkRefusal::Unknown);
        }
        if link.used_at.is_some() {
            return Err(LinkRefusal::Used);
        }
        if self.revoked_at.is_some() || link.expires_at <= now {
            return Err(LinkRefusal::Expired);
        }
        let mut used = self.clone();
        used.sign_in = Some(SignIn {
            via: link.via.clone(),
            expires_at: session_ends,
            used_at: Some(now),
        });
        Ok(used)
    }

    /// Whether a console session naming this record may go on at `now`:
    /// not revoked, and for a sign-in link, used and not past the session's
    /// end.
    pub fn session_ok(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none()
            && self
                .sign_in
                .as_ref()
                .is_none_or(|l| l.used_at.is_some() && l.expires_at > now)
    }

    /// Whether `secret` is this token's, in constant time; a revoked token,
    /// or a sign-in link, matches nothing.
    pub fn matches(&self, secret: &str) -> bool {
        let presented = sha256_hex(secret);
        self.revoked_at.is_none()
            && self.sign_in.is_none()
            && bool::from(presented.as_bytes().ct_eq(self.hash.as_bytes()))
    }
}

/// The id and secret of a presented `tsn_<id>_<secret>` token.
pub fn split_token(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// An IP network, like `10.0.0.0/8` or `::1/128` (a bare address is a /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The loopback networks, `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> Vec<Self> {
        vec![
            Self {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            Self {
                addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not an IP network like 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(format!("'{s}': the prefix length must be at most {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether the API listener answers a request whose `Host` is `host`:
/// an IP address (no DNS rebinding can put one there), `localhost`, or a
/// name in `api_hosts`, with the listener's own port (`local_port`) or,
/// for a name, no port (a proxy in front that dropped it). Names compare
/// case-insensitively; a trailing dot is ignored.
pub fn host_allowed(host: &str, local_port: Option<u16>, api_hosts: &[String]) -> bool {
    let (name, port) = split_host(host);
    let Some(name) = name else {
        return false;
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let port_ok = |p: Option<u16>| match (p, local_port) {
        (Some(p), Some(local)) => p == local,
        _ => true,
    };
    if name.parse::<IpAddr>().is_ok() || name == "localhost" {
        return port_ok(port);
    }
    api_hosts.iter().any(|allowed| {
        let (a_name, a_port) = split_host(allowed);
        a_name.is_some_and(|a| a.trim_end_matches('.').eq_ignore_ascii_case(&name))
            && match a_port {
                Some(p) => port == Some(p),
                None => port_ok(port),
            }
    })
}

/// `name[:port]` or `[v6]:port`; `None` for the name when it is malformed.
fn split_host(host: &str) -> (Option<&str>, Option<u16>) {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return (None, None);
        };
        return match after.strip_prefix(':') {
            Some(p) => match p.parse() {
                Ok(p) => (Some(v6), Some(p)),
                Err(_) => (None, None),
            },
            None if after.is_empty() => (Some(v6), None),
            None => (None, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, p)) => match p.parse() {
            Ok(p) if !name.is_empty() && !name.contains(':') => (Some(name), Some(p)),
            _ => (None, None),
        },
        None if !host.is_empty() => (Some(host), None),
        None => (None, None),
    }
}

/// Whether `name` may go into `[server] api_hosts`: a DNS name (letters,
/// digits, `-`, `.`), optionally with `:port`.
pub fn valid_api_host(name: &str) -> bool {
    match split_host(name) {
        (Some(n), _) => {
            !n.is_empty()
                && n.len() <= 253
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !n.starts_with(['.', '-'])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn a_token_matches_only_its_secret_and_not_once_revoked() {
        let (mut rec, token) = ApiToken::generate("alice", Scope::Write, "config-token", now());
        let (id, secret) = split_token(&token).unwrap();
        assert_eq!(id, rec.id);
        assert_eq!(secret.len(), 64);
        assert!(!rec.hash.contains(secret), "the secret is not stored");
        assert!(rec.matches(secret));
        assert!(!rec.matches(&format!("{secret}0")));
        assert!(!rec.matches(""));
        rec.revoked_at = Some(now());
        assert!(!rec.matches(secret));
        let (other, _) = ApiToken::generate("alice", Scope::Write, "config-token", now());
        assert_ne!(other.id, rec.id);
    }

    #[test]
    fn a_sign_in_link_works_once_before_it_expires_and_never_as_a_token() {
        let min = chrono::Duration::minutes;
        let (link, code) =
            ApiToken::sign_in_link("alice", Scope::Write, "slack", now(), now() + min(10));
        let (_, secret) = split_token(&code).unwrap();
        assert!(!link.matches(secret), "a link is no API token");
        assert!(!link.session_ok(now()), "an unused link is no session");
        assert_eq!(
            link.redeem("wrong", now(), now() + min(60)),
            Err(LinkRefusal::Unknown)
        );
        assert_eq!(
            link.redeem(secret, now() + min(10), now() + min(70)),
            Err(LinkRefusal::Expired)
        );
        let used = link
            .redeem(secret, now() + min(9), now() + min(69))
            .unwrap();
        assert_eq!(used.sign_in.as_ref().unwrap().used_at, Some(now() + min(9)));
        assert!(used.session_ok(now() + min(68)));
        assert!(!used.session_ok(now() + min(69)), "the session ended");
        assert_eq!(
            used.redeem(secret, now() + min(9), now() + min(69)),
            Err(LinkRefusal::Used)
        );
        let mut revoked = link.clone();
        revoked.revoked_at = Some(now());
        assert_eq!(
            revoked.redeem(secret, now(), now() + min(60)),
            Err(LinkRefusal::Expired)
        );
        let (token, _) = ApiToken::generate("alice", Scope::Write, "config-token", now());
        assert_eq!(
            token.redeem(secret, now(), now() + min(60)),
            Err(LinkRefusal::Unknown),
            "an API token is no link"
        );
        assert!(token.session_ok(now()));
    }

    #[test]
    fn only_well_formed_tokens_split() {
        assert_eq!(
            split_token("tsn_0123456789ab_ff"),
            Some(("0123456789ab", "ff"))
        );
        for bad in [
            "test-api-token",
            "tsn_",
            "tsn_0123456789ab_",
            "tsn_0123_ff",
            "tsn_0123456789zz_ff",
        ] {
            assert_eq!(split_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_order_and_parse() {
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().unwrap_err().contains("read, write"));
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.1.2".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::loopback()[0].contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::loopback()[1].contains("::1".parse().unwrap()));
        for bad in ["10.0.0/8", "10.0.0.0/33", "example.com", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_api_answers_its_own_address_and_configured_names_only() {
        let hosts = vec!["tocsin.internal".to_string(), "ops.example:8443".into()];
        let ok = |h: &str| host_allowed(h, Some(8080), &hosts);
        assert!(ok("127.0.0.1:8080"));
        assert!(ok("10.1.2.3:8080"));
        assert!(ok("[::1]:8080"));
        assert!(ok("localhost:8080"));
        assert!(ok("LOCALHOST"));
        assert!(ok("tocsin.internal"));
        assert!(ok("Tocsin.Internal.:8080"));
        assert!(ok("ops.example:8443"));
        // DNS rebinding: the attacker's name, at the victim's address.
        assert!(!ok("evil.example:8080"));
        assert!(!ok("evil.example"));
        assert!(!ok("tocsin.internal.evil.example:8080"));
        assert!(!ok("127.0.0.1:9090"));
        assert!(!ok("ops.example:8080"));
        assert!(!ok(""));
        assert!(!ok("[::1"));
        assert!(valid_api_host("tocsin.internal"));
        assert!(valid_api_host("tocsin.internal:8443"));
        assert!(!valid_api_host("https://tocsin.internal"));
        assert!(!valid_api_host("tocsin internal"));
        assert!(!valid_api_host(""));
    }
}
