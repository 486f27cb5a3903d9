//! `[console]`: the web console on the API listener.

use super::ConfigIssue;
use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;

/// The shortest `session_key` accepted: 32 characters, as `[audit] key`.
pub const MIN_SESSION_KEY_CHARS: usize = 32;

/// `[console]`: the web console, served by the API listener at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether `/` serves the console.
    pub enabled: bool,
    /// How long a sign-in lasts (at least 5 minutes, at most 30 days).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// The HMAC key that signs session cookies (at least 32 characters);
    /// changing it signs everyone out.
    pub session_key: Option<Secret>,
    /// Whether the session cookie carries `Secure` (set it when a TLS proxy
    /// fronts the API listener).
    pub secure_cookie: bool,
    /// Where browsers reach the console (`https://tocsin.internal.example`):
    /// the base of the one-time sign-in links tocsin sends by chat and
    /// email. Without it tocsin sends none.
    pub url: Option<url::Url>,
    /// How long a sign-in link works (1 to 60 minutes).
    #[serde(with = "humantime_serde")]
    pub link_ttl: Duration,
    /// The scope a sign-in link's session gets (`read` or `write`);
    /// `[chat] admins` get `admin`.
    pub link_scope: crate::access::Scope,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            session_ttl: Duration::from_secs(12 * 3600),
            session_key: None,
            secure_cookie: false,
            url: None,
            link_ttl: Duration::from_secs(600),
            link_scope: crate::access::Scope::Write,
        }
    }
}

impl ConsoleConfig {
    /// The problems `tocsin check` reports for `[console]`.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |path: &str, message: &str| {
            issues.push(ConfigIssue {
                path: format!("console.{path}"),
                message: message.to_string(),
            })
        };
        if self.session_ttl < Duration::from_secs(300)
            || self.session_ttl > Duration::from_secs(30 * 86_400)
        {
            issue("session_ttl", "must be between 5m and 30d");
        }
        match &self.session_key {
            None if self.enabled => issue(
                "session_key",
                "is required when the console is enabled (openssl rand -hex 32)",
            ),
            Some(k) if k.expose().chars().count() < MIN_SESSION_KEY_CHARS => issue(
                "session_key",
                "must be at least 32 characters (openssl rand -hex 32)",
            ),
            _ => {}
        }
        if self.link_ttl < Duration::from_secs(60) || self.link_ttl > Duration::from_secs(3600) {
            issue("link_ttl", "must be between 1m and 60m");
        }
        if self.link_scope == crate::access::Scope::Admin {
            issue(
                "link_scope",
                "must be read or write; [chat] admins get admin by themselves",
            );
        }
        if let Some(u) = &self.url {
            if !matches!(u.scheme(), "http" | "https") {
                issue("url", "must be an http or https URL");
            } else if u.query().is_some() || u.fragment().is_some() {
                issue("url", "must be a base URL, without a query or fragment");
            }
        }
        issues
    }

    /// The sign-in link that carries `code`, if `url` is set.
    pub fn sign_in_url(&self, code: &str) -> Option<String> {
        let base = self.url.as_ref()?;
        Some(format!(
            "{}/login/link?code={code}",
            base.as_str().trim_end_matches('/')
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enabled_console_needs_a_long_key_and_a_sane_ttl() {
        let c = ConsoleConfig {
            enabled: true,
            ..Default::default()
        };
        let paths: Vec<String> = c.validate().into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["console.session_key"]);
        let c = ConsoleConfig {
            enabled: true,
            session_key: Some(Secret::new("short")),
            session_ttl: Duration::from_secs(60),
            ..Default::default()
        };
        let paths: Vec<String> = c.validate().into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["console.session_ttl", "console.session_key"]);
        let c = ConsoleConfig {
            enabled: true,
            session_key: Some(Secret::new("k".repeat(32))),
            ..Default::default()
        };
        assert!(c.validate().is_empty());
    }

    #[test]
    fn sign_in_links_need_a_base_url_a_short_ttl_and_no_admin_scope() {
        let c = ConsoleConfig {
            url: Some("https://tocsin.internal.example/".parse().unwrap()),
            ..Default::default()
        };
        assert!(c.validate().is_empty());
        assert_eq!(
            c.sign_in_url("tsn_0123456789ab_ff").as_deref(),
            Some("https://tocsin.internal.example/login/link?code=tsn_0123456789ab_ff")
        );
        assert_eq!(ConsoleConfig::default().sign_in_url("x"), None);
        let c = ConsoleConfig {
            url: Some("ftp://tocsin.example/?a=b".parse().unwrap()),
            link_ttl: Duration::from_secs(7200),
            link_scope: crate::access::Scope::Admin,
            ..Default::default()
        };
        let paths: Vec<String> = c.validate().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            ["console.link_ttl", "console.link_scope", "console.url"]
        );
        let c = ConsoleConfig {
            url: Some("https://tocsin.example/?a=b".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            c.validate()[0].message,
            "must be a base URL, without a query or fragment"
        );
    }
}
