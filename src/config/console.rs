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
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            session_ttl: Duration::from_secs(12 * 3600),
            session_key: None,
            secure_cookie: false,
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
        issues
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
}
