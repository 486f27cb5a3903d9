//! Stakeholder updates on `[[services]]`: `status_channel`, `subscribers`
//! and `public` (the public status page).

use super::{Config, ConfigIssue, Origins, paging::looks_like_email};
use serde::Deserialize;

/// `status_channel = "C0STATUS"` (on the only chat platform configured) or
/// `status_channel = { slack = "C0STATUS", discord = "1234567890" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusChannel {
    /// A channel on the one chat platform configured.
    One(String),
    /// A channel per platform.
    Each {
        /// The Slack channel (an id like `C0123`, or a name).
        #[serde(default)]
        slack: Option<String>,
        /// The Discord channel id (a snowflake).
        #[serde(default)]
        discord: Option<String>,
    },
}

impl StatusChannel {
    /// The channel on `platform` (`slack`, `discord`); `configured` are
    /// the platforms with a section, which decides what a plain string
    /// names.
    pub fn on(&self, platform: &str, configured: &[&str]) -> Option<&str> {
        match self {
            Self::One(c) => (configured == [platform]).then_some(c.as_str()),
            Self::Each { slack, discord } => match platform {
                "slack" => slack.as_deref(),
                "discord" => discord.as_deref(),
                _ => None,
            },
        }
    }
}

/// `[status_page]`: the public status page at `/status` on the public
/// listener (served when some service has `public = true`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageConfig {
    /// The page's heading and title.
    pub title: String,
}

impl Default for StatusPageConfig {
    fn default() -> Self {
        Self {
            title: "Service status".into(),
        }
    }
}

/// Checks each service's stakeholder keys.
pub(super) fn validate(config: &Config, origins: &Origins) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
    let platforms = config.chat_platforms();
    for (i, s) in config.services.iter().enumerate() {
        let at = format!("services[{}]", origins.at("services", i));
        match &s.status_channel {
            None => {}
            Some(StatusChannel::One(c)) => {
                match platforms.as_slice() {
                    [] => issue(
                        format!("{at}.status_channel"),
                        "needs a [slack] or [discord] section to post in".into(),
                    ),
                    [p] => check_channel(&mut issue, &format!("{at}.status_channel"), p, c),
                    _ => issue(
                        format!("{at}.status_channel"),
                        "with both [slack] and [discord] configured, name a channel per platform: status_channel = { slack = \"C0123\", discord = \"1234567890\" }".into(),
                    ),
                }
            }
            Some(StatusChannel::Each { slack, discord }) => {
                for (p, c) in [("slack", slack), ("discord", discord)] {
                    let Some(c) = c else { continue };
                    let path = format!("{at}.status_channel.{p}");
                    if platforms.contains(&p) {
                        check_channel(&mut issue, &path, p, c);
                    } else {
                        issue(path, format!("needs a [{p}] section to post in"));
                    }
                }
                if slack.is_none() && discord.is_none() {
                    issue(
                        format!("{at}.status_channel"),
                        "names no channel; give slack = \"...\" or discord = \"...\"".into(),
                    );
                }
            }
        }
        for (j, addr) in s.subscribers.iter().enumerate() {
            if !looks_like_email(addr) {
                issue(
                    format!("{at}.subscribers[{j}]"),
                    format!("'{addr}' does not look like an email address (one '@', no spaces)"),
                );
            }
        }
        if !s.subscribers.is_empty() && config.smtp.is_none() {
            issue(
                format!("{at}.subscribers"),
                "needs an [smtp] section to send the updates".into(),
            );
        }
        if s.public && s.private {
            issue(
                format!("{at}.public"),
                "a private service's incidents cannot be on the public status page; drop one of private = true and public = true".into(),
            );
        }
    }
    if config.status_page.title.trim().is_empty() || config.status_page.title.chars().count() > 100
    {
        issue(
            "status_page.title".into(),
            "must be 1 to 100 characters".into(),
        );
    }
    issues
}

/// A Slack channel is an id (`C0123ABC`) or a name (`status`, `#status`);
/// a Discord channel is a snowflake.
fn check_channel(
    issue: &mut impl FnMut(String, String),
    path: &str,
    platform: &str,
    channel: &str,
) {
    let ok = match platform {
        "discord" => super::paging::looks_like_snowflake(channel),
        _ => {
            let name = channel.strip_prefix('#').unwrap_or(channel);
            !name.is_empty()
                && name.len() <= 80
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        }
    };
    if !ok {
        issue(
            path.to_string(),
            match platform {
                "discord" => {
                    format!("'{channel}' is not a Discord channel id (digits, like 1234567890)")
                }
                _ => format!(
                    "'{channel}' is not a Slack channel id or name (like C0123ABC or #status)"
                ),
            },
        );
    }
}
