//! Severity levels and how senders' words map onto them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Incident severity, SEV1 the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Critical: customer-facing outage or breach.
    Sev1,
    /// Major: significant degradation.
    Sev2,
    /// Minor: limited impact.
    Sev3,
    /// Informational.
    Sev4,
}

impl Severity {
    /// Maps a sender's severity word (PagerDuty, Alertmanager labels, Grafana,
    /// `sevN`, `pN`) to a level; `None` if the word is unknown.
    pub fn from_sender(word: &str) -> Option<Self> {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" | "fatal" | "emergency" | "sev1" | "p1" | "disaster" => {
                Some(Self::Sev1)
            }
            "error" | "err" | "high" | "major" | "sev2" | "p2" => Some(Self::Sev2),
            "warning" | "warn" | "medium" | "average" | "minor" | "sev3" | "p3" => Some(Self::Sev3),
            "info" | "informational" | "low" | "none" | "notice" | "debug" | "sev4" | "p4"
            | "p5" => Some(Self::Sev4),
            _ => None,
        }
    }

    /// `SEV1` .. `SEV4`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sev1 => "SEV1",
            Self::Sev2 => "SEV2",
            Self::Sev3 => "SEV3",
            Self::Sev4 => "SEV4",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_sender_words() {
        assert_eq!(Severity::from_sender("critical"), Some(Severity::Sev1));
        assert_eq!(Severity::from_sender("Error"), Some(Severity::Sev2));
        assert_eq!(Severity::from_sender("warning"), Some(Severity::Sev3));
        assert_eq!(Severity::from_sender("info"), Some(Severity::Sev4));
        assert_eq!(Severity::from_sender("SEV2"), Some(Severity::Sev2));
        assert_eq!(Severity::from_sender("purple"), None);
        assert!(Severity::Sev1 < Severity::Sev4);
    }
}
