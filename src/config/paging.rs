//! Configuration of paging: users and their contact methods, escalation
//! policies, webhook targets, SMTP and delivery settings.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// `[[users]]`: a person who can be paged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Unique name, used in rotations, targets and commands.
    pub name: String,
    /// Email address, for the `email` contact method.
    #[serde(default)]
    pub email: Option<String>,
    /// Slack user id (`U...`).
    #[serde(default)]
    pub slack_id: Option<String>,
    /// Discord user id (a snowflake).
    #[serde(default)]
    pub discord_id: Option<String>,
    /// A personal webhook, for the `webhook` contact method.
    #[serde(default)]
    pub webhook: Option<WebhookEndpoint>,
    /// Phone number in E.164 (`+15551230001`), for `sms` and `voice`.
    #[serde(default)]
    pub phone: Option<String>,
    /// The user's ntfy topic, for the `push` contact method.
    #[serde(default)]
    pub ntfy_topic: Option<String>,
    /// How to reach this user, in order; default: log at once.
    #[serde(default = "default_contact_methods")]
    pub contact_methods: Vec<ContactMethodConfig>,
    /// Where the user works (IANA name), for the pages report's working
    /// hours; default: `[reports] time_zone`.
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl UserConfig {
    /// The user's id on a chat platform (`slack`, `discord`).
    pub fn chat_id(&self, platform: &str) -> Option<&str> {
        match platform {
            "slack" => self.slack_id.as_deref(),
            "discord" => self.discord_id.as_deref(),
            _ => None,
        }
    }
}

fn default_contact_methods() -> Vec<ContactMethodConfig> {
    vec![ContactMethodConfig {
        kind: ContactKind::Log,
        after: Duration::ZERO,
    }]
}

/// How a page reaches a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    /// A log line at WARN level (for trying tocsin out).
    Log,
    /// The user's webhook.
    Webhook,
    /// Email over SMTP.
    Email,
    /// A Slack direct message with Acknowledge and Resolve buttons.
    Slack,
    /// A Discord direct message with Acknowledge and Resolve buttons.
    Discord,
    /// A text message through Twilio, answered by replying 1 or 2.
    Sms,
    /// A phone call through Twilio, answered by pressing 1, 2 or 3.
    Voice,
    /// A phone push through ntfy, with Acknowledge and Resolve buttons.
    Push,
}

impl ContactKind {
    /// The name used in config and on the timeline.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Webhook => "webhook",
            Self::Email => "email",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Sms => "sms",
            Self::Voice => "voice",
            Self::Push => "push",
        }
    }

    /// The chat platform that delivers this kind of page, if it is one.
    pub fn chat_platform(self) -> Option<&'static str> {
        match self {
            Self::Slack => Some("slack"),
            Self::Discord => Some("discord"),
            Self::Log | Self::Webhook | Self::Email | Self::Sms | Self::Voice | Self::Push => None,
        }
    }

    /// The kind of page a chat platform delivers.
    pub fn of_chat_platform(platform: &str) -> Option<Self> {
        match platform {
            "slack" => Some(Self::Slack),
            "discord" => Some(Self::Discord),
            _ => None,
        }
    }
}

/// One contact method: how, and how long after the page starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactMethodConfig {
    /// How.
    pub kind: ContactKind,
    /// Delay after the page starts, like `2m`.
    #[serde(default, with = "humantime_serde")]
    pub after: Duration,
}

/// A webhook endpoint: URL and the secret that signs the body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Where to POST.
    pub url: String,
    /// HMAC-SHA256 key for `X-Tocsin-Signature`.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// `[[webhooks]]`: a named webhook that escalation steps can target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// HMAC-SHA256 key for `X-Tocsin-Signature`.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// `[[escalation_policies]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyConfig {
    /// Unique name, referenced by services.
    pub name: String,
    /// How many more times to run through the steps when the last one is
    /// reached unacknowledged: a number, or `"until-acknowledged"` (capped).
    #[serde(default)]
    pub repeat: Repeat,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
}

/// The most rounds a policy runs, even with `repeat = "until-acknowledged"`:
/// the cap `repeat` is checked against, which escalation applies.
pub const MAX_ROUNDS: u32 = 20;

/// Repeats of an escalation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Repeat {
    /// This many more rounds (0: run the steps once).
    #[default]
    Never,
    /// This many more rounds.
    Times(u32),
    /// Until someone acknowledges, at most [`MAX_ROUNDS`] rounds.
    UntilAcknowledged,
}

impl<'de> Deserialize<'de> for Repeat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(0) => Ok(Repeat::Never),
            Raw::Count(n) => Ok(Repeat::Times(n)),
            Raw::Word(w) if w == "until-acknowledged" => Ok(Repeat::UntilAcknowledged),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "repeat must be a number or \"until-acknowledged\", not \"{w}\""
            ))),
        }
    }
}

/// One escalation step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Who or what to notify.
    pub targets: Vec<TargetConfig>,
    /// How long to wait for an acknowledgement before the next step.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

/// A step target: `{ user = "alice" }`, `{ schedule = "primary" }` or
/// `{ webhook = "ops" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    /// A user, paged through their contact methods.
    User(String),
    /// Whoever is on call in this schedule when the step runs.
    Schedule(String),
    /// A named webhook from `[[webhooks]]`.
    Webhook(String),
}

/// `[smtp]`: the mail relay for the `email` contact method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address.
    pub from: String,
    /// Login, if the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, from the environment.
    #[serde(default)]
    pub password: Option<Secret>,
    /// `none`, `starttls` or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Signs the one-click acknowledge link in email pages (with
    /// `[server] public_url`); without it the email says how to acknowledge
    /// in chat or from the CLI.
    #[serde(default)]
    pub action_secret: Option<Secret>,
    /// How long an email's acknowledge link works.
    #[serde(default = "default_action_ttl", with = "humantime_serde")]
    pub action_ttl: Duration,
}

fn default_smtp_port() -> u16 {
    587
}

/// Transport security to the SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay only).
    None,
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `[twilio]`: the account that sends SMS and places calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID (`AC` and 32 hex digits).
    pub account_sid: String,
    /// The auth token, from the environment: basic auth to Twilio, and the
    /// key of `X-Twilio-Signature` on Twilio's requests to tocsin.
    pub auth_token: Secret,
    /// The sending number, E.164.
    pub from: String,
    /// Twilio's REST API base (overridable for tests and proxies).
    #[serde(default = "default_twilio_api_url")]
    pub api_url: String,
    /// At most this many SMS and calls per incident to one person.
    #[serde(default = "default_max_per_incident")]
    pub max_per_incident: u32,
}

fn default_twilio_api_url() -> String {
    "https://api.twilio.com".into()
}

fn default_max_per_incident() -> u32 {
    10
}

/// `[ntfy]`: the ntfy server for the `push` contact method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    /// The server's base URL.
    #[serde(default = "default_ntfy_url")]
    pub url: String,
    /// An access token, if the server wants one.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Signs the Acknowledge and Resolve buttons' one-use links.
    pub action_secret: Secret,
    /// How long a button's link works.
    #[serde(default = "default_action_ttl", with = "humantime_serde")]
    pub action_ttl: Duration,
}

fn default_ntfy_url() -> String {
    "https://ntfy.sh".into()
}

fn default_action_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Whether `number` is E.164: `+`, then 8 to 15 digits, the first not 0.
pub fn is_e164(number: &str) -> bool {
    match number.strip_prefix('+') {
        Some(d) => {
            (8..=15).contains(&d.len())
                && d.bytes().all(|b| b.is_ascii_digit())
                && !d.starts_with('0')
        }
        None => false,
    }
}

/// `[notify]`: delivery retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// First retry delay; doubles each attempt, with ±20% jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Give up on a delivery this long after it first came due, and move
    /// on to the user's next contact method.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Timeout of one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Checks users, schedules, policies and webhooks and their references;
/// returns every problem.
pub(super) fn validate(
    config: &super::Config,
    origins: &super::Origins,
) -> Vec<super::ConfigIssue> {
    use std::collections::HashSet;
    let mut issues = Vec::new();
    let mut issue =
        |path: String, message: String| issues.push(super::ConfigIssue { path, message });
    let check_url = |url: &str| -> Option<String> {
        match reqwest::Url::parse(url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => None,
            Ok(u) => Some(format!("'{url}' must be http or https, not {}", u.scheme())),
            Err(e) => Some(format!("'{url}' is not a URL: {e}")),
        }
    };

    let mut users = HashSet::new();
    for (i, u) in config.users.iter().enumerate() {
        let at = origins.at("users", i);
        if u.name.trim().is_empty() {
            issue(format!("users[{at}].name"), "must not be empty".into());
        } else if !users.insert(u.name.as_str()) {
            issue(
                format!("users[{at}].name"),
                format!("user '{}' is defined twice", u.name),
            );
        }
        if u.contact_methods.is_empty() {
            issue(
                format!("users[{at}].contact_methods"),
                "needs at least one contact method".into(),
            );
        }
        for (j, m) in u.contact_methods.iter().enumerate() {
            let path = format!("users[{at}].contact_methods[{j}]");
            match m.kind {
                ContactKind::Email if u.email.is_none() => {
                    issue(path, "kind email needs the user's 'email'".into())
                }
                ContactKind::Email if config.smtp.is_none() => {
                    issue(path, "kind email needs an [smtp] section".into())
                }
                ContactKind::Webhook if u.webhook.is_none() => {
                    issue(path, "kind webhook needs the user's 'webhook'".into())
                }
                ContactKind::Slack if u.slack_id.is_none() => {
                    issue(path, "kind slack needs the user's 'slack_id'".into())
                }
                ContactKind::Slack if config.slack.is_none() => {
                    issue(path, "kind slack needs a [slack] section".into())
                }
                ContactKind::Discord if u.discord_id.is_none() => {
                    issue(path, "kind discord needs the user's 'discord_id'".into())
                }
                ContactKind::Discord if config.discord.is_none() => {
                    issue(path, "kind discord needs a [discord] section".into())
                }
                ContactKind::Sms | ContactKind::Voice if u.phone.is_none() => issue(
                    path,
                    format!("kind {} needs the user's 'phone'", m.kind.as_str()),
                ),
                ContactKind::Sms | ContactKind::Voice if config.twilio.is_none() => issue(
                    path,
                    format!("kind {} needs a [twilio] section", m.kind.as_str()),
                ),
                ContactKind::Sms | ContactKind::Voice if config.server.public_url.is_none() => {
                    issue(
                        path,
                        format!(
                            "kind {} needs [server] public_url: Twilio calls tocsin back there with replies and delivery status",
                            m.kind.as_str()
                        ),
                    )
                }
                ContactKind::Push if u.ntfy_topic.is_none() => {
                    issue(path, "kind push needs the user's 'ntfy_topic'".into())
                }
                ContactKind::Push if config.ntfy.is_none() => {
                    issue(path, "kind push needs an [ntfy] section".into())
                }
                ContactKind::Push if config.server.public_url.is_none() => issue(
                    path,
                    "kind push needs [server] public_url: the Acknowledge and Resolve buttons call tocsin there".into(),
                ),
                _ => {}
            }
        }
        if let Some(id) = &u.discord_id
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) || id.len() > 20)
        {
            issue(
                format!("users[{at}].discord_id"),
                format!("'{id}' is not a Discord user id (a number, like 80351110224678912)"),
            );
        }
        if let Some(w) = &u.webhook
            && let Some(problem) = check_url(&w.url)
        {
            issue(format!("users[{at}].webhook.url"), problem);
        }
        if let Some(p) = &u.phone
            && !is_e164(p)
        {
            issue(
                format!("users[{at}].phone"),
                format!(
                    "'{p}' is not an E.164 number ('+', country code and number, digits only, like +15551230001)"
                ),
            );
        }
        if let Some(t) = &u.ntfy_topic
            && (t.is_empty()
                || t.len() > 64
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            issue(
                format!("users[{at}].ntfy_topic"),
                format!("'{t}' is not an ntfy topic (1 to 64 letters, digits, '-' and '_')"),
            );
        }
    }
    let mut phones = HashSet::new();
    for (i, u) in config.users.iter().enumerate() {
        if let Some(p) = &u.phone
            && !phones.insert(p.as_str())
        {
            issue(
                format!("users[{}].phone", origins.at("users", i)),
                format!(
                    "{p} is another user's phone too: a reply from it could not say who answered"
                ),
            );
        }
    }
    if let Some(t) = &config.twilio {
        let sid_ok = t.account_sid.len() == 34
            && t.account_sid.starts_with("AC")
            && t.account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid_ok {
            issue(
                "twilio.account_sid".into(),
                format!(
                    "'{}' is not an account SID (AC and 32 hex digits)",
                    t.account_sid
                ),
            );
        }
        if t.auth_token.is_empty() {
            issue(
                "twilio.auth_token".into(),
                "must not be empty (set it from the environment: \"${TWILIO_AUTH_TOKEN}\")".into(),
            );
        }
        if !is_e164(&t.from) {
            issue(
                "twilio.from".into(),
                format!("'{}' is not an E.164 number (like +15551230001)", t.from),
            );
        }
        if let Some(problem) = check_url(&t.api_url) {
            issue("twilio.api_url".into(), problem);
        }
        if t.max_per_incident == 0 {
            issue(
                "twilio.max_per_incident".into(),
                "must be at least 1".into(),
            );
        }
        if config.server.public_url.is_none() {
            issue(
                "server.public_url".into(),
                "is needed with [twilio]: Twilio posts replies and delivery status there".into(),
            );
        }
    }
    if let Some(s) = &config.smtp {
        if let Some(k) = &s.action_secret
            && k.expose().len() < 16
        {
            issue(
                "smtp.action_secret".into(),
                "must be at least 16 characters (openssl rand -hex 24)".into(),
            );
        }
        if s.action_ttl < Duration::from_secs(60) {
            issue("smtp.action_ttl".into(), "must be at least 1m".into());
        }
        if s.action_secret.is_some() && config.server.public_url.is_none() {
            issue(
                "smtp.action_secret".into(),
                "the acknowledge link needs [server] public_url, the address people's browsers reach tocsin's public listener at".into(),
            );
        }
    }
    if let Some(n) = &config.ntfy {
        if let Some(problem) = check_url(&n.url) {
            issue("ntfy.url".into(), problem);
        }
        if n.action_secret.expose().len() < 16 {
            issue(
                "ntfy.action_secret".into(),
                "must be at least 16 characters (openssl rand -hex 24)".into(),
            );
        }
        if n.action_ttl < Duration::from_secs(60) {
            issue("ntfy.action_ttl".into(), "must be at least 1m".into());
        }
    }

    let mut webhooks = HashSet::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let at = origins.at("webhooks", i);
        if !webhooks.insert(w.name.as_str()) {
            issue(
                format!("webhooks[{at}].name"),
                format!("webhook '{}' is defined twice", w.name),
            );
        }
        if let Some(problem) = check_url(&w.url) {
            issue(format!("webhooks[{at}].url"), problem);
        }
    }

    let mut schedules = HashSet::new();
    let is_user = |name: &str| users.contains(name);
    for (i, s) in config.schedules.iter().enumerate() {
        let at = origins.at("schedules", i);
        if !schedules.insert(s.name.as_str()) {
            issue(
                format!("schedules[{at}].name"),
                format!("schedule '{}' is defined twice", s.name),
            );
        }
        if let Err(problems) = crate::oncall::Schedule::build(s, &is_user) {
            for p in problems {
                issue(format!("schedules[{at}].{}", p.path), p.message);
            }
        }
    }

    let mut policies = HashSet::new();
    for (i, p) in config.escalation_policies.iter().enumerate() {
        let at = origins.at("escalation_policies", i);
        if !policies.insert(p.name.as_str()) {
            issue(
                format!("escalation_policies[{at}].name"),
                format!("escalation policy '{}' is defined twice", p.name),
            );
        }
        if p.steps.is_empty() {
            issue(
                format!("escalation_policies[{at}].steps"),
                "a policy needs at least one step".into(),
            );
        }
        if let Repeat::Times(n) = p.repeat
            && n >= MAX_ROUNDS
        {
            issue(
                format!("escalation_policies[{at}].repeat"),
                format!(
                    "at most {} (tocsin runs a policy at most {} rounds); use \"until-acknowledged\" for the most",
                    MAX_ROUNDS - 1,
                    MAX_ROUNDS
                ),
            );
        }
        for (j, step) in p.steps.iter().enumerate() {
            let path = format!("escalation_policies[{at}].steps[{j}]");
            if step.targets.is_empty() {
                issue(
                    format!("{path}.targets"),
                    "a step needs at least one target".into(),
                );
            }
            if step.delay < Duration::from_secs(1) {
                issue(format!("{path}.delay"), "must be at least 1s".into());
            }
            for (k, t) in step.targets.iter().enumerate() {
                let (known, what) = match t {
                    TargetConfig::User(n) => (users.contains(n.as_str()), ("user", n)),
                    TargetConfig::Schedule(n) => (schedules.contains(n.as_str()), ("schedule", n)),
                    TargetConfig::Webhook(n) => (webhooks.contains(n.as_str()), ("webhook", n)),
                };
                if !known {
                    issue(
                        format!("{path}.targets[{k}]"),
                        format!("unknown {} '{}'", what.0, what.1),
                    );
                }
            }
        }
    }
    let n = &config.notify;
    if n.initial_backoff.is_zero() || n.initial_backoff > n.max_backoff {
        issue(
            "notify.initial_backoff".into(),
            "must be more than 0 and at most notify.max_backoff".into(),
        );
    }
    if n.request_timeout.is_zero() {
        issue(
            "notify.request_timeout".into(),
            "must be more than 0".into(),
        );
    }
    issues
}

/// Whether `id` looks like a Slack user id: `U` or `W`, then uppercase
/// letters and digits, 9 to 12 characters in all (most are 9 or 11).
pub fn looks_like_slack_user_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('U' | 'W'))
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && (9..=12).contains(&id.len())
}

/// Whether `id` looks like a Discord snowflake: 17 to 20 digits.
pub fn looks_like_snowflake(id: &str) -> bool {
    (17..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `address` looks like an email address: one `@` between a local
/// part and a domain, no spaces.
pub fn looks_like_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Values that parse but look wrong (a contact id the platform would not
/// know): warnings, not errors, since only the platform can say for sure.
pub(super) fn warnings(
    config: &super::Config,
    origins: &super::Origins,
) -> Vec<super::ConfigIssue> {
    let mut warnings = Vec::new();
    let mut warn =
        |path: String, message: String| warnings.push(super::ConfigIssue { path, message });
    if config.server.public_listen.is_none() && !config.server.listen.ip().is_loopback() {
        warn(
            "server.listen".into(),
            format!(
                "{} is not a loopback address and server.public_listen is not set: the REST API and /metrics are served on the same address as alert intake and the chat endpoints; set public_listen for what must face the internet and keep listen private",
                config.server.listen
            ),
        );
    }
    for (i, u) in config.users.iter().enumerate() {
        let at = origins.at("users", i);
        if let Some(id) = &u.slack_id
            && !looks_like_slack_user_id(id)
        {
            warn(
                format!("users[{at}].slack_id"),
                format!(
                    "'{id}' does not look like a Slack user id (U or W, then uppercase letters and digits, like U024BE7LH); invites and DMs to it will fail"
                ),
            );
        }
        // One that is not a number at all is an error (see `validate`).
        if let Some(id) = &u.discord_id
            && !id.is_empty()
            && id.len() <= 20
            && id.bytes().all(|b| b.is_ascii_digit())
            && !looks_like_snowflake(id)
        {
            warn(
                format!("users[{at}].discord_id"),
                format!(
                    "'{id}' does not look like a Discord user id (a snowflake of 17 to 20 digits); invites and DMs to it will fail"
                ),
            );
        }
        if let Some(email) = &u.email
            && !looks_like_email(email)
        {
            warn(
                format!("users[{at}].email"),
                format!("'{email}' does not look like an email address (one '@', no spaces)"),
            );
        }
    }
    for (i, sc) in config.schedules.iter().enumerate() {
        let at = origins.at("schedules", i);
        for (l, layer) in sc.layers.iter().enumerate() {
            if let Some(w) = crate::oncall::handoff_warning(&layer.handoff) {
                warn(format!("schedules[{at}].layers[{l}].handoff"), w);
            }
        }
    }
    warnings
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn contact_ids_that_look_right_and_wrong() {
        for ok in ["U024BE7LH", "W0123ABCDE", "U0123456789"] {
            assert!(looks_like_slack_user_id(ok), "{ok}");
        }
        for bad in [
            "u024be7lh",
            "U0ALICE",
            "C024BE7LH",
            "<@U024BE7LH>",
            "U024 BE7LH",
        ] {
            assert!(!looks_like_slack_user_id(bad), "{bad}");
        }
        assert!(looks_like_snowflake("80351110224678912"));
        assert!(looks_like_snowflake("1300000000000000011"));
        for bad in [
            "12345",
            "<@80351110224678912>",
            "8035111022467891x",
            "123456789012345678901",
        ] {
            assert!(!looks_like_snowflake(bad), "{bad}");
        }
        assert!(looks_like_email("alice@example.com"));
        for bad in [
            "alice",
            "alice@@example.com",
            "a@b@c",
            "@example.com",
            "alice@",
            "al ice@x.org",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
