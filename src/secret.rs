//! Secrets: values that must never reach a log line or an error message.

use serde::{Deserialize, Deserializer};
use std::fmt;
use subtle::ConstantTimeEq;

/// A secret string (token, signing secret, integration key).
///
/// `Debug` and `Display` print `***`; comparison is constant-time.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the value is a documentation placeholder rather than a real
    /// secret (`PLACEHOLDER-...`, `change-me`, `changeme`, `<your token>`):
    /// a copied example must not run with publicly known keys.
    pub fn is_placeholder(&self) -> bool {
        let v = self.0.to_ascii_lowercase();
        let squashed: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        squashed.contains("placeholder")
            || squashed.contains("changeme")
            || squashed.contains("replaceme")
            || (v.starts_with('<') && v.ends_with('>'))
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Text(s) => Secret(s),
            Raw::Number(n) => Secret(n.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!Secret::default().matches(""));
    }

    #[test]
    fn placeholders_are_told_from_secrets() {
        for p in [
            "PLACEHOLDER-change-me-api-token",
            "change-me",
            "CHANGEME",
            "replace_me_please",
            "<your bot token>",
        ] {
            assert!(Secret::new(p).is_placeholder(), "{p}");
        }
        for real in [
            "3f9c2e71d0a4b8e6",
            "example-alertmanager-key",
            "compose-demo-api-token",
            "xoxb-1234-5678-abcdef",
        ] {
            assert!(!Secret::new(real).is_placeholder(), "{real}");
        }
    }
}
