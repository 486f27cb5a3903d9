//! Configuration: one TOML file, overridable from the environment.
//!
//! Loading goes `file -> environment overrides -> ${VAR} interpolation ->
//! typed sections -> validate()`, and every problem found on the way is
//! collected with its key path, so `tocsin check` can print them all at once.
//!
//! Environment overrides: `TOCSIN__SECTION__KEY=value` sets `section.key`;
//! array elements are addressed by index (`TOCSIN__INTEGRATIONS__0__KEY`).
//! Values that parse as TOML booleans or numbers take that type, anything
//! else is a string. Any string value of the form `${NAME}` is replaced by
//! the environment variable `NAME`, which is how secrets stay out of files.

mod console;
mod maintenance;
mod paging;
mod stakeholders;
pub use stakeholders::{StatusChannel, StatusPageConfig};
mod reports;

pub use console::ConsoleConfig;
pub use maintenance::{MaintenanceConfig, MaintenanceTimes};
pub use paging::{
    ContactKind, ContactMethodConfig, EscalationPolicyConfig, MAX_ROUNDS, NotifyConfig, NtfyConfig,
    Repeat, SmtpConfig, SmtpTls, StepConfig, TargetConfig, TwilioConfig, UserConfig, WebhookConfig,
    WebhookEndpoint, is_e164,
};
pub use reports::{ReportsConfig, WorkingTime};

use crate::oncall::ScheduleConfig;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A heartbeat's stable id in its timer's key: FNV-1a of its name (config
/// validation refuses two names with the same id).
pub fn heartbeat_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "TOCSIN__";

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[api]`
    pub api: ApiConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[[integrations]]`
    pub integrations: Vec<IntegrationConfig>,
    /// `[[services]]`
    pub services: Vec<ServiceConfig>,
    /// `[[users]]`
    pub users: Vec<UserConfig>,
    /// `[[schedules]]`
    pub schedules: Vec<ScheduleConfig>,
    /// `[[escalation_policies]]`
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// `[[webhooks]]`
    pub webhooks: Vec<WebhookConfig>,
    /// `[smtp]`
    pub smtp: Option<SmtpConfig>,
    /// `[twilio]`
    pub twilio: Option<TwilioConfig>,
    /// `[ntfy]`
    pub ntfy: Option<NtfyConfig>,
    /// `[notify]`
    pub notify: NotifyConfig,
    /// `[chat]`: settings shared by Slack and Discord.
    pub chat: ChatConfig,
    /// `[slack]`
    pub slack: Option<SlackConfig>,
    /// `[discord]`
    pub discord: Option<DiscordConfig>,
    /// `[runbooks]`
    pub runbooks: RunbooksConfig,
    /// `[templates]`
    pub templates: TemplatesConfig,
    /// `[intake]`
    pub intake: IntakeConfig,
    /// `[audit]`
    pub audit: AuditConfig,
    /// `[[heartbeats]]`: senders that must ping, or an incident opens.
    pub heartbeats: Vec<HeartbeatConfig>,
    /// `[console]`: the web console.
    pub console: ConsoleConfig,
    /// `[[maintenance]]`: maintenance windows that silence alerts.
    pub maintenance: Vec<MaintenanceConfig>,
    /// `[status_page]`: the public status page.
    pub status_page: StatusPageConfig,
    /// `[reports]`: working hours for the pages report.
    pub reports: ReportsConfig,
}

/// `[[heartbeats]]`: a sender that pings `/heartbeat/{key}` at least every
/// `interval`; silent for `interval + grace`, it opens an incident.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Unique name, in the incident's title and dedup key.
    pub name: String,
    /// The secret in the ping's URL or bearer header.
    pub key: Secret,
    /// The service whose policy the missed heartbeat pages.
    pub service: String,
    /// How often the sender pings.
    #[serde(with = "humantime_serde")]
    pub interval: std::time::Duration,
    /// How late a ping may be before the incident opens; also the catch-up
    /// time after tocsin itself was down.
    #[serde(default = "default_heartbeat_grace", with = "humantime_serde")]
    pub grace: std::time::Duration,
}

fn default_heartbeat_grace() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

/// `[audit]`: the timeline's keyed hash chain and its copy outside the store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The HMAC key of the timeline chain (`${TOCSIN_AUDIT_KEY}`, at least
    /// 32 characters). With it, each entry's link is an HMAC, so an edited
    /// store or backup cannot be re-chained by anyone without the key.
    pub key: Option<Secret>,
    /// A `[[webhooks]]` name: each resolved incident's chain head is posted
    /// there (the log always gets it), so a copy exists outside the store.
    pub webhook: Option<String>,
}

/// `[intake]`: how much one sender may open at once. Alerts beyond these
/// limits are never refused: they are grouped into one flood incident per
/// integration that pages once and says how many alerts it holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// New incidents one request may open.
    pub max_new_incidents_per_request: usize,
    /// New incidents one integration may open per minute.
    pub max_new_incidents_per_minute: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            max_new_incidents_per_request: 100,
            max_new_incidents_per_minute: 300,
        }
    }
}

/// `[runbooks]`: where runbook files are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunbooksConfig {
    /// The directory of `*.toml` runbooks.
    pub dir: PathBuf,
}

impl Default for RunbooksConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runbooks"),
        }
    }
}

/// `[templates]`: overrides of the shipped templates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// A directory whose files replace the shipped templates of the same name.
    pub dir: Option<PathBuf>,
}

/// `[chat]`: what Slack and Discord share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// The service of incidents opened from chat (`/incident new`, `/page`);
    /// default: the first service.
    pub default_service: Option<String>,
    /// tocsin users who may change others' on-call (`/oncall cover @someone`).
    pub admins: Vec<String>,
    /// Incident channel names start with this.
    pub channel_prefix: String,
    /// How long after resolve the incident channel is archived.
    #[serde(with = "humantime_serde")]
    pub archive_after: std::time::Duration,
    /// Whether drills page the service's escalation policy; by default a
    /// drill pages only the person who started it.
    pub drills_use_policy: bool,
    /// Severities whose incidents get a private channel on every service
    /// (`["SEV1"]`): only the invited responders see it.
    #[serde(deserialize_with = "severities")]
    pub private_severities: Vec<crate::incident::Severity>,
}

/// Severities written `SEV1` or `sev1`.
fn severities<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<crate::incident::Severity>, D::Error> {
    use crate::incident::Severity;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| match s.trim().to_ascii_lowercase().as_str() {
            "sev1" => Ok(Severity::Sev1),
            "sev2" => Ok(Severity::Sev2),
            "sev3" => Ok(Severity::Sev3),
            "sev4" => Ok(Severity::Sev4),
            _ => Err(serde::de::Error::custom(format!(
                "unknown severity '{s}'; use SEV1, SEV2, SEV3 or SEV4"
            ))),
        })
        .collect()
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            default_service: None,
            admins: Vec::new(),
            channel_prefix: "inc".into(),
            archive_after: std::time::Duration::from_secs(24 * 3600),
            drills_use_policy: false,
            private_severities: Vec::new(),
        }
    }
}

/// `[slack]`: the Slack app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Bot token (`xoxb-...`), from the environment.
    pub bot_token: Secret,
    /// Signing secret, from the environment.
    pub signing_secret: Secret,
    /// The workspace (`T...`) whose requests tocsin takes; a request from
    /// any other workspace is refused. One of `team_id` and
    /// `enterprise_id` is required.
    #[serde(default)]
    pub team_id: Option<String>,
    /// On Enterprise Grid, the organization (`E...`) whose requests tocsin
    /// takes, from any of its workspaces.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// Web API base URL, without a trailing slash.
    #[serde(default = "default_slack_api")]
    pub api_url: String,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// `[discord]`: the Discord application and its bot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The application id (a snowflake).
    #[serde(deserialize_with = "snowflake")]
    pub application_id: u64,
    /// The application's Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// Bot token, from the environment.
    pub bot_token: Secret,
    /// The guild (server) incident channels are created in.
    #[serde(deserialize_with = "snowflake")]
    pub guild_id: u64,
    /// The API base, without a trailing slash; anything but
    /// `https://discord.com` is used as serenity's proxy (tests, proxies).
    #[serde(default = "default_discord_api")]
    pub api_url: String,
    /// How interactions arrive.
    #[serde(default)]
    pub mode: DiscordMode,
    /// The category incident channels are created under.
    #[serde(default = "default_incidents_category")]
    pub incidents_category: String,
    /// The category resolved incidents' channels are moved to.
    #[serde(default = "default_archive_category")]
    pub archive_category: String,
    /// How long tocsin works on an interaction before it answers with a
    /// deferred response and edits the answer in later (Discord allows 3 s).
    #[serde(default = "default_defer_after", with = "humantime_serde")]
    pub defer_after: std::time::Duration,
}

/// How Discord interactions reach tocsin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscordMode {
    /// HTTP POSTs to `/discord/interactions` (needs a public HTTPS URL).
    #[default]
    Interactions,
    /// A gateway (websocket) connection from tocsin to Discord.
    Gateway,
}

fn default_discord_api() -> String {
    "https://discord.com".into()
}

fn default_incidents_category() -> String {
    "incidents".into()
}

fn default_archive_category() -> String {
    "incidents-archive".into()
}

fn default_defer_after() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

/// A Discord snowflake, written as a string or an integer.
fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    let n = match Raw::deserialize(d)? {
        Raw::Text(s) => s.trim().parse::<u64>().map_err(|_| {
            serde::de::Error::custom(format!("'{s}' is not a Discord id (a number)"))
        })?,
        Raw::Number(n) => n,
    };
    if n == 0 {
        return Err(serde::de::Error::custom("a Discord id is never 0"));
    }
    Ok(n)
}

impl ChatConfig {
    /// The service of incidents opened from chat.
    pub fn service<'a>(&'a self, config: &'a Config) -> Option<&'a str> {
        self.default_service
            .as_deref()
            .or_else(|| config.services.first().map(|s| s.name.as_str()))
    }
}

/// `[server]`: where the HTTP server listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The API listener: the REST API (`/v1/*`), `/metrics`, `/readyz`,
    /// `/healthz`. Without `public_listen` it serves the public routes too.
    pub listen: SocketAddr,
    /// The public listener: alert intake, `/slack/*`,
    /// `/discord/interactions`, `/healthz`. Unset: `listen` serves
    /// everything.
    pub public_listen: Option<SocketAddr>,
    /// Host names (optionally `name:port`) the API listener answers besides
    /// its own address and `localhost`; any other `Host` is refused (DNS
    /// rebinding).
    pub api_hosts: Vec<String>,
    /// Networks that may scrape `/metrics` without a token (default:
    /// loopback only).
    pub metrics_networks: Vec<crate::access::Cidr>,
    /// Largest accepted request body, in bytes, on every route but the
    /// alert webhooks (PagerDuty's own limit for `/v2/enqueue`).
    pub max_body_bytes: usize,
    /// Largest accepted body on `/hooks` and `/api/v2/alerts`: an
    /// Alertmanager notification for a group of 1,000 alerts is about
    /// 570 KB, and Alertmanager does not retry a 413.
    pub max_alert_body_bytes: usize,
    /// Connections open at once; keep it well below the file limit
    /// (`LimitNOFILE`). At the limit the longest-waiting connection without
    /// a request in flight is closed to make room, else the newcomer gets 503.
    pub max_connections: usize,
    /// How long a request's headers and body may take, from its first byte
    /// (a trickle does not extend it).
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// How long a connection may stay open with no request in flight.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: std::time::Duration,
    /// Alerts and commands waiting for the writer at once. Past it a
    /// sender is told to slow down (429 with `Retry-After` on `/v2/enqueue`,
    /// 503 with `Retry-After` elsewhere) instead of memory growing.
    pub max_queued_writes: usize,
    /// The externally visible base URL (`https://tocsin.example.com`), for
    /// links tocsin sends (one-click acknowledge, push actions) and for
    /// checking signatures that cover the URL (Twilio). Without it tocsin
    /// sends no links that need it.
    pub public_url: Option<url::Url>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_listen: None,
            api_hosts: Vec::new(),
            metrics_networks: crate::access::Cidr::loopback(),
            max_body_bytes: 512 * 1024,
            max_alert_body_bytes: 16 * 1024 * 1024,
            max_connections: 512,
            request_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(30),
            max_queued_writes: 10_000,
            public_url: None,
        }
    }
}

/// `[storage]`: where the sled database lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data directory.
    pub path: PathBuf,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// How long writes may keep failing (the store reopening itself every
    /// second) before `/healthz` fails so a supervisor restarts tocsin.
    #[serde(with = "humantime_serde")]
    pub unhealthy_after: std::time::Duration,
    /// Resolved incidents older than this are removed with their timelines,
    /// raw events, pages and summaries; unset keeps everything.
    #[serde(with = "humantime_serde")]
    pub retention: Option<std::time::Duration>,
    /// A JSON-lines file each incident is appended to (and synced) before
    /// retention removes it.
    pub retention_export: Option<PathBuf>,
    /// Which store: `sled` (the embedded default, in `path`) or `postgres`
    /// (at `url`, for several replicas).
    pub backend: StorageBackend,
    /// The PostgreSQL URL (`postgres://user:password@host:5432/db`), with
    /// `backend = "postgres"`; usually `"${TOCSIN_DATABASE_URL}"`.
    pub url: Option<Secret>,
    /// The most PostgreSQL connections this process holds.
    pub pool_size: u32,
}

impl StorageConfig {
    /// The problems with `backend`, `url` and `pool_size`.
    fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: path.into(),
                message,
            })
        };
        match (self.backend, &self.url) {
            (StorageBackend::Postgres, None) => issue(
                "storage.url",
                "is required with backend = \"postgres\" (postgres://user:password@host:5432/tocsin, usually \"${TOCSIN_DATABASE_URL}\")".into(),
            ),
            (StorageBackend::Postgres, Some(url)) => {
                if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
                    issue(
                        "storage.url",
                        "must be a postgres:// or postgresql:// URL".into(),
                    );
                } else if let Err(e) = url.expose().parse::<postgres::Config>() {
                    // The parser's message names no part of the URL.
                    issue("storage.url", format!("is not a PostgreSQL URL: {e}"));
                }
            }
            (StorageBackend::Sled, Some(_)) => issue(
                "storage.url",
                "is only used with backend = \"postgres\"; set that too, or remove the url".into(),
            ),
            (StorageBackend::Sled, None) => {}
        }
        if !(1..=200).contains(&self.pool_size) {
            issue(
                "storage.pool_size",
                format!("must be 1 to 200 connections, not {}", self.pool_size),
            );
        }
        issues
    }
}

/// `[storage] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded sled database in `[storage] path`.
    #[default]
    Sled,
    /// A PostgreSQL database at `[storage] url`.
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data"),
            cache_mb: 64,
            unhealthy_after: std::time::Duration::from_secs(120),
            retention: None,
            retention_export: None,
            backend: StorageBackend::Sled,
            url: None,
            pool_size: 8,
        }
    }
}

/// `[api]`: the REST API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The bootstrap admin token: admin scope, acts as `by` or `api`. Use
    /// it to create per-user tokens (`tocsin token create`); without it
    /// only per-user tokens are accepted.
    pub token: Option<Secret>,
}

/// `[log]`: log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `tocsin=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// The alert sources tocsin understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationKind {
    /// Alertmanager webhook (`/hooks`), and Prometheus' `/api/v2/alerts`.
    Alertmanager,
    /// Grafana webhook contact point (`/hooks`).
    Grafana,
    /// PagerDuty Events API v2 (`/v2/enqueue`).
    Pagerduty,
    /// tocsin's generic JSON (`/hooks`).
    Generic,
}

impl IntegrationKind {
    /// The name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Grafana => "grafana",
            Self::Pagerduty => "pagerduty",
            Self::Generic => "generic",
        }
    }
}

impl fmt::Display for IntegrationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[integrations]]`: an authenticated alert sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Unique name, shown on incidents.
    pub name: String,
    /// Which payload format it sends.
    pub kind: IntegrationKind,
    /// The secret that authenticates the sender.
    pub key: Secret,
    /// The service its alerts belong to.
    pub service: String,
    /// For alerts pushed to `/api/v2/alerts` without an `endsAt` (amtool,
    /// scripts): how long one fires unless it is sent again, as
    /// Alertmanager's `resolve_timeout`.
    #[serde(default = "default_resolve_timeout", with = "humantime_serde")]
    pub resolve_timeout: std::time::Duration,
    /// For Alertmanager webhooks under `max_alerts`: how long a "resolved"
    /// notification that left alerts out is held before it stands, unless a
    /// notification says they still fire (set it above the route's
    /// `repeat_interval`, 4h by default).
    #[serde(default = "default_held_resolve_timeout", with = "humantime_serde")]
    pub held_resolve_timeout: std::time::Duration,
    /// For senders that never resolve (generic JSON): an incident whose
    /// alerts are not sent again within this time resolves itself.
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Option<std::time::Duration>,
    /// Requests a second this sender may make (a burst of two seconds'
    /// worth); past it, it is told to retry. Unset: no limit.
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
    /// `[[integrations.routes]]`: rules by label, in order; the first
    /// that matches decides; `service` above is the fallback.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[[integrations.routes]]`: where alerts matching every matcher go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alertmanager-style matchers (`severity=critical`,
    /// `team=~"db|storage"`, `env!=staging`); all must match. Empty
    /// matches every alert.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The service its alerts belong to.
    pub service: Option<String>,
    /// The severity to give them (`SEV1`..`SEV4`, or a sender's word).
    pub severity: Option<String>,
    /// The escalation policy their incidents page, instead of the service's.
    pub escalation_policy: Option<String>,
    /// Store them but open and page nothing.
    #[serde(default)]
    pub drop: bool,
}

fn default_held_resolve_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(4 * 3600 + 600)
}

fn default_resolve_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

/// `[[services]]`: something that can have incidents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// Free text shown on incidents.
    #[serde(default)]
    pub description: String,
    /// The escalation policy that pages for its incidents.
    #[serde(default)]
    pub escalation_policy: Option<String>,
    /// More users who may work its incidents from chat, besides those in
    /// its escalation policy and schedules.
    #[serde(default)]
    pub responders: Vec<String>,
    /// Whether its incidents get private channels (only invited
    /// responders see them).
    #[serde(default)]
    pub private: bool,
    /// Who may do what to its incidents from chat.
    #[serde(default)]
    pub permissions: ServicePermissions,
    /// A trigger for a dedup key whose last incident here resolved less
    /// than this ago reopens that incident instead of opening a new one.
    #[serde(default, with = "humantime_serde")]
    pub reopen_within: Option<std::time::Duration>,
    /// An alert that opens and resolves more than `changes` times within
    /// `within` is held in one incident marked flapping, paged once.
    #[serde(default)]
    pub flapping: Option<FlappingConfig>,
    /// Where its stakeholder status updates are posted: a channel on the
    /// one chat platform configured, or one per platform.
    #[serde(default)]
    pub status_channel: Option<StatusChannel>,
    /// Email addresses that get its status updates (needs `[smtp]`).
    #[serde(default)]
    pub subscribers: Vec<String>,
    /// Whether the public status page shows its incidents marked public.
    #[serde(default)]
    pub public: bool,
}

/// `flapping = { changes = 4, within = "30m" }` on a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlappingConfig {
    /// More state changes (fire, resolve) than this within `within` mark
    /// the incident flapping.
    pub changes: u32,
    /// The window the changes are counted in, and how long the alert must
    /// stay firing (re-page) or resolved (resolve) for flapping to end.
    #[serde(with = "humantime_serde")]
    pub within: std::time::Duration,
}

/// `[services.permissions]`: who may act on a service's incidents from chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicePermissions {
    /// Acknowledge, resolve, escalate, snooze, set the severity, add notes
    /// and walk the runbook (default: responders).
    pub respond: Allowed,
    /// Give people incident roles (default: admins).
    pub roles: Allowed,
}

impl Default for ServicePermissions {
    fn default() -> Self {
        Self {
            respond: Allowed::Responders,
            roles: Allowed::Admins,
        }
    }
}

/// Who a chat permission allows (admins are always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allowed {
    /// Every configured tocsin user.
    Anyone,
    /// The service's responders and the incident's own people (paged,
    /// holding a role, or who opened it), and admins.
    Responders,
    /// Only `[chat] admins`.
    Admins,
}

/// One problem in the configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where, like `integrations[1].kind`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but has problems; all of them are listed.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl Config {
    /// Loads and validates the file at `path`, applying overrides from `env`.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, env).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text, applying overrides from `env`.
    pub fn from_toml_str(text: &str, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut root: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let mut issues = Vec::new();
        apply_env_overrides(&mut root, env, &mut issues);
        interpolate(&mut root, "", env, &mut issues);
        let (config, origins) = from_value(root, &mut issues);
        // An element kept after setting a bad field aside is checked with
        // the others, but nothing is said about what was set aside again.
        issues.extend(
            config
                .validate_at(&origins)
                .into_iter()
                .filter(|i| !origins.1.iter().any(|p| under(&i.path, p))),
        );
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// The chat platforms configured (`slack`, `discord`), in that order.
    pub fn chat_platforms(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if self.slack.is_some() {
            p.push("slack");
        }
        if self.discord.is_some() {
            p.push("discord");
        }
        p
    }

    /// Checks the cross-references and values serde cannot; returns every problem.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        self.validate_at(&Origins::identity(self))
    }

    /// The working hours and people's time zones the pages report judges
    /// pages by (`[reports]`, `[[users]] time_zone`), or what is wrong.
    pub fn working_time(&self) -> Result<WorkingTime, Vec<ConfigIssue>> {
        reports::working_time(self, &Origins::identity(self))
    }

    /// Values that are valid but look wrong (a malformed contact id): what
    /// `tocsin check` prints as warnings and the server logs at start.
    pub fn warnings(&self) -> Vec<ConfigIssue> {
        paging::warnings(self, &Origins::identity(self))
    }

    /// Like [`Config::validate`], naming array elements by their index in the file.
    fn validate_at(&self, origins: &Origins) -> Vec<ConfigIssue> {
        let svc_at = |i: usize| origins.at("services", i);
        let int_at = |i: usize| origins.at("integrations", i);
        let mut issues = paging::validate(self, origins);
        issues.extend(self.console.validate());
        issues.extend(maintenance::validate(self, origins));
        issues.extend(stakeholders::validate(self, origins));
        issues.extend(
            reports::working_time(self, origins)
                .err()
                .into_iter()
                .flatten(),
        );
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
        for (path, secret) in self.secrets(origins) {
            if secret.is_placeholder() {
                issue(
                    path,
                    "is a placeholder from the examples, not a secret: set a value of your own (openssl rand -hex 24)".into(),
                );
            }
        }
        if let Some(keep) = self.storage.retention
            && keep < std::time::Duration::from_secs(86_400)
        {
            issue(
                "storage.retention".into(),
                "must be at least 1d (resolved incidents older than it are removed)".into(),
            );
        }
        if let Some(path) = &self.storage.retention_export {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                issue(
                    "storage.retention_export".into(),
                    format!("its directory {} does not exist", dir.display()),
                );
            } else if path.is_dir() {
                issue(
                    "storage.retention_export".into(),
                    format!("{} is a directory; name a file", path.display()),
                );
            }
        }
        for i in self.storage.validate() {
            issue(i.path, i.message);
        }
        let services: HashSet<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        let mut hb_names = HashSet::new();
        let mut hb_keys: HashSet<&str> = self.integrations.iter().map(|i| i.key.expose()).collect();
        let mut hb_ids = HashSet::new();
        for (i, hb) in self.heartbeats.iter().enumerate() {
            let i = origins.at("heartbeats", i);
            if hb.name.trim().is_empty() {
                issue(format!("heartbeats[{i}].name"), "must not be empty".into());
            } else if !hb_names.insert(hb.name.as_str()) {
                issue(
                    format!("heartbeats[{i}].name"),
                    format!("heartbeat '{}' is defined twice", hb.name),
                );
            } else if !hb_ids.insert(heartbeat_id(&hb.name)) {
                issue(
                    format!("heartbeats[{i}].name"),
                    format!(
                        "heartbeat '{}' shares its timer id with another; rename it",
                        hb.name
                    ),
                );
            }
            if hb.key.is_empty() {
                issue(format!("heartbeats[{i}].key"), "must not be empty".into());
            } else if !hb_keys.insert(hb.key.expose()) {
                issue(
                    format!("heartbeats[{i}].key"),
                    "is already another heartbeat's or integration's key; give each its own".into(),
                );
            } else if !hb
                .key
                .expose()
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/')
            {
                issue(
                    format!("heartbeats[{i}].key"),
                    "may only contain printable ASCII without spaces or '/'".into(),
                );
            }
            if !services.contains(hb.service.as_str()) {
                issue(
                    format!("heartbeats[{i}].service"),
                    format!(
                        "unknown service '{}'; define it under [[services]]",
                        hb.service
                    ),
                );
            }
            if hb.interval.is_zero() {
                issue(
                    format!("heartbeats[{i}].interval"),
                    "must be longer than 0s (how often the sender pings)".into(),
                );
            }
        }
        let mut seen_services = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let i = svc_at(i);
            if s.name.trim().is_empty() {
                issue(format!("services[{i}].name"), "must not be empty".into());
            } else if !seen_services.insert(s.name.as_str()) {
                issue(
                    format!("services[{i}].name"),
                    format!("service '{}' is defined twice", s.name),
                );
            }
            if s.reopen_within.is_some_and(|d| d.is_zero()) {
                issue(
                    format!("services[{i}].reopen_within"),
                    "must be longer than 0s (or left out: a resolved incident stays resolved)"
                        .into(),
                );
            }
            if let Some(f) = &s.flapping {
                if f.changes == 0 {
                    issue(
                        format!("services[{i}].flapping.changes"),
                        "must be at least 1 (how many fire/resolve changes within `within` are still normal)"
                            .into(),
                    );
                }
                if f.within.is_zero() {
                    issue(
                        format!("services[{i}].flapping.within"),
                        "must be longer than 0s (the window changes are counted in, e.g. \"30m\")"
                            .into(),
                    );
                }
            }
        }
        let mut names = HashSet::new();
        let mut keys: HashMap<&str, usize> = HashMap::new();
        for (i, integ) in self.integrations.iter().enumerate() {
            let i = int_at(i);
            if integ.name.trim().is_empty() {
                issue(
                    format!("integrations[{i}].name"),
                    "must not be empty".into(),
                );
            } else if !names.insert(integ.name.as_str()) {
                issue(
                    format!("integrations[{i}].name"),
                    format!("integration '{}' is defined twice", integ.name),
                );
            }
            if integ.key.expose().len() < 8 {
                issue(
                    format!("integrations[{i}].key"),
                    "must be at least 8 characters".into(),
                );
            } else if let Some(other) = keys.insert(integ.key.expose(), i) {
                issue(
                    format!("integrations[{i}].key"),
                    format!("the same key is used by integrations[{other}]; keys must be unique"),
                );
            }
            if !integ
                .key
                .expose()
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/')
            {
                issue(
                    format!("integrations[{i}].key"),
                    "may only contain printable ASCII without spaces or '/'".into(),
                );
            }
            if integ.held_resolve_timeout.is_zero() {
                issue(
                    format!("integrations[{i}].held_resolve_timeout"),
                    "must be longer than 0s (set it above Alertmanager's repeat_interval)".into(),
                );
            }
            if integ.resolve_after.is_some_and(|d| d.is_zero()) {
                issue(
                    format!("integrations[{i}].resolve_after"),
                    "must be longer than 0s (or left out: alerts fire until resolved)".into(),
                );
            }
            if integ.resolve_timeout.is_zero() {
                issue(
                    format!("integrations[{i}].resolve_timeout"),
                    "must be longer than 0s (alerts without endsAt fire this long)".into(),
                );
            }
            if !services.contains(integ.service.as_str()) {
                issue(
                    format!("integrations[{i}].service"),
                    format!(
                        "unknown service '{}'; define it under [[services]]",
                        integ.service
                    ),
                );
            }
            for (r, route) in integ.routes.iter().enumerate() {
                let at = |f: &str| format!("integrations[{i}].routes[{r}].{f}");
                for (m, text) in route.matchers.iter().enumerate() {
                    if let Err(why) = crate::matchers::Matcher::parse_all(text) {
                        issue(format!("integrations[{i}].routes[{r}].matchers[{m}]"), why);
                    }
                }
                if let Some(s) = &route.service
                    && !services.contains(s.as_str())
                {
                    issue(
                        at("service"),
                        format!("unknown service '{s}'; define it under [[services]]"),
                    );
                }
                if let Some(s) = &route.severity
                    && crate::incident::Severity::from_sender(s).is_none()
                {
                    issue(
                        at("severity"),
                        format!("unknown severity '{s}'; use SEV1, SEV2, SEV3 or SEV4"),
                    );
                }
                if route.drop
                    && (route.service.is_some()
                        || route.severity.is_some()
                        || route.escalation_policy.is_some())
                {
                    issue(
                        at("drop"),
                        "a route that drops sets nothing else: remove service, severity and escalation_policy, or drop".into(),
                    );
                }
                if !route.drop
                    && route.service.is_none()
                    && route.severity.is_none()
                    && route.escalation_policy.is_none()
                {
                    issue(
                        at("matchers"),
                        "the route sets nothing: give service, severity, escalation_policy or drop = true".into(),
                    );
                }
            }
        }
        let policies: HashSet<&str> = self
            .escalation_policies
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        for (i, integ) in self.integrations.iter().enumerate() {
            for (r, route) in integ.routes.iter().enumerate() {
                if let Some(p) = &route.escalation_policy
                    && !policies.contains(p.as_str())
                {
                    issue(
                        format!("integrations[{}].routes[{r}].escalation_policy", int_at(i)),
                        format!(
                            "unknown escalation policy '{p}'; define it under [[escalation_policies]]"
                        ),
                    );
                }
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            if let Some(p) = &s.escalation_policy
                && !policies.contains(p.as_str())
            {
                issue(
                    format!("services[{}].escalation_policy", svc_at(i)),
                    format!(
                        "unknown escalation policy '{p}'; define it under [[escalation_policies]]"
                    ),
                );
            }
        }
        if let Some(s) = &self.chat.default_service
            && !services.contains(s.as_str())
        {
            issue(
                "chat.default_service".into(),
                format!("unknown service '{s}'"),
            );
        }
        for (i, a) in self.chat.admins.iter().enumerate() {
            if !self.users.iter().any(|u| &u.name == a) {
                issue(format!("chat.admins[{i}]"), format!("unknown user '{a}'"));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            for (j, r) in s.responders.iter().enumerate() {
                if !self.users.iter().any(|u| &u.name == r) {
                    issue(
                        format!("services[{}].responders[{j}]", svc_at(i)),
                        format!("unknown user '{r}'; define it under [[users]]"),
                    );
                }
            }
        }
        if self.chat.channel_prefix.is_empty()
            || !self
                .chat
                .channel_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            issue(
                "chat.channel_prefix".into(),
                "must be lowercase letters, digits and '-'".into(),
            );
        }
        if let Some(slack) = &self.slack {
            if slack.bot_token.is_empty() {
                issue("slack.bot_token".into(), "must not be empty".into());
            }
            if slack.signing_secret.is_empty() {
                issue("slack.signing_secret".into(), "must not be empty".into());
            }
            match (&slack.team_id, &slack.enterprise_id) {
                (None, None) => issue(
                    "slack.team_id".into(),
                    "is required: tocsin takes requests only from this workspace. Its id (T...) is in the workspace's URL at app.slack.com/client/T.../ (or Slack > workspace menu > Settings > About this workspace); on Enterprise Grid set slack.enterprise_id (E...) instead".into(),
                ),
                (team, enterprise) => {
                    for (key, id, first) in [("team_id", team, 'T'), ("enterprise_id", enterprise, 'E')] {
                        if let Some(id) = id
                            && !(id.starts_with(first)
                                && id.len() >= 2
                                && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
                        {
                            issue(
                                format!("slack.{key}"),
                                format!("'{id}' is not a Slack {key}: one like {first}0123ABCD (uppercase letters and digits)"),
                            );
                        }
                    }
                }
            }
            if slack.api_url.ends_with('/') || reqwest::Url::parse(&slack.api_url).is_err() {
                issue(
                    "slack.api_url".into(),
                    "must be a URL without a trailing slash".into(),
                );
            }
        }
        if let Some(discord) = &self.discord {
            if discord.bot_token.is_empty() {
                issue("discord.bot_token".into(), "must not be empty".into());
            }
            if discord.public_key.len() != 64
                || !discord.public_key.chars().all(|c| c.is_ascii_hexdigit())
            {
                issue(
                    "discord.public_key".into(),
                    "must be the application's public key: 64 hex digits".into(),
                );
            } else if discord_public_key(&discord.public_key).is_err() {
                issue(
                    "discord.public_key".into(),
                    "is not a valid Ed25519 public key".into(),
                );
            }
            if discord.api_url.ends_with('/')
                || !matches!(reqwest::Url::parse(&discord.api_url), Ok(u) if u.scheme() == "http" || u.scheme() == "https")
            {
                issue(
                    "discord.api_url".into(),
                    "must be an http(s) URL without a trailing slash".into(),
                );
            }
            for (key, name) in [
                ("incidents_category", &discord.incidents_category),
                ("archive_category", &discord.archive_category),
            ] {
                if name.trim().is_empty() || name.chars().count() > 100 {
                    issue(
                        format!("discord.{key}"),
                        "must be 1 to 100 characters".into(),
                    );
                }
            }
            if discord
                .incidents_category
                .eq_ignore_ascii_case(&discord.archive_category)
            {
                issue(
                    "discord.archive_category".into(),
                    "must differ from discord.incidents_category".into(),
                );
            }
            if discord.defer_after > std::time::Duration::from_millis(2500) {
                issue(
                    "discord.defer_after".into(),
                    "must be at most 2.5s: Discord wants an answer within 3 s".into(),
                );
            }
        }
        if let Some(token) = &self.api.token
            && token.expose().len() < 8
        {
            issue("api.token".into(), "must be at least 8 characters".into());
        }
        for i in &self.integrations {
            if i.max_requests_per_second == Some(0) {
                issue(
                    format!("integrations.{}.max_requests_per_second", i.name),
                    "must be at least 1 (leave it out for no limit)".into(),
                );
            }
        }
        if let Some(k) = &self.audit.key
            && k.expose().chars().count() < 32
        {
            issue(
                "audit.key".into(),
                "must be at least 32 characters (for example `openssl rand -hex 32`)".into(),
            );
        }
        if let Some(w) = &self.audit.webhook
            && !self.webhooks.iter().any(|h| &h.name == w)
        {
            issue(
                "audit.webhook".into(),
                format!("names no [[webhooks]] entry '{w}'"),
            );
        }
        if let Some(u) = &self.server.public_url {
            if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                issue(
                    "server.public_url".into(),
                    format!("must be an http or https URL with a host, not {u}"),
                );
            } else if u.query().is_some() || u.fragment().is_some() {
                issue(
                    "server.public_url".into(),
                    "must be a base URL without a query or fragment".into(),
                );
            }
        }
        if let Some(public) = self.server.public_listen
            && public == self.server.listen
            && public.port() != 0
        {
            issue(
                "server.public_listen".into(),
                format!(
                    "is the same address as server.listen ({public}); give the public listener its own port, or leave public_listen out to serve everything on listen"
                ),
            );
        }
        for (i, h) in self.server.api_hosts.iter().enumerate() {
            if !crate::access::valid_api_host(h) {
                issue(
                    format!("server.api_hosts[{i}]"),
                    format!(
                        "'{h}' is not a host name like tocsin.internal or tocsin.internal:8080 (no scheme, no path)"
                    ),
                );
            }
        }
        if self.server.max_queued_writes == 0 {
            issue(
                "server.max_queued_writes".into(),
                "must be at least 1".into(),
            );
        }
        if self.server.max_connections < 16 {
            issue(
                "server.max_connections".into(),
                "must be at least 16".into(),
            );
        }
        for (key, value, max) in [
            ("server.request_timeout", self.server.request_timeout, 300),
            ("server.idle_timeout", self.server.idle_timeout, 3600),
        ] {
            if value < std::time::Duration::from_millis(100)
                || value > std::time::Duration::from_secs(max)
            {
                issue(key.into(), format!("must be between 100ms and {max}s"));
            }
        }
        if self.server.max_body_bytes < 1024 {
            issue(
                "server.max_body_bytes".into(),
                "must be at least 1024".into(),
            );
        }
        for (key, value) in [
            (
                "intake.max_new_incidents_per_request",
                self.intake.max_new_incidents_per_request,
            ),
            (
                "intake.max_new_incidents_per_minute",
                self.intake.max_new_incidents_per_minute,
            ),
        ] {
            if value == 0 {
                issue(
                    key.into(),
                    "must be at least 1 (alerts beyond it go to one flood incident)".into(),
                );
            }
        }
        if self.server.max_alert_body_bytes < 1024 * 1024 {
            issue(
                "server.max_alert_body_bytes".into(),
                "must be at least 1048576 (1 MiB): Alertmanager does not retry a 413, so a large group would page nobody".into(),
            );
        }
        issues
    }

    /// Every secret in the configuration, with its key path.
    fn secrets<'a>(&'a self, origins: &Origins) -> Vec<(String, &'a Secret)> {
        let mut out: Vec<(String, &Secret)> = Vec::new();
        for (i, integ) in self.integrations.iter().enumerate() {
            out.push((
                format!("integrations[{}].key", origins.at("integrations", i)),
                &integ.key,
            ));
        }
        for (i, hb) in self.heartbeats.iter().enumerate() {
            out.push((
                format!("heartbeats[{}].key", origins.at("heartbeats", i)),
                &hb.key,
            ));
        }
        if let Some(t) = &self.api.token {
            out.push(("api.token".into(), t));
        }
        if let Some(k) = &self.audit.key {
            out.push(("audit.key".into(), k));
        }
        if let Some(k) = &self.console.session_key {
            out.push(("console.session_key".into(), k));
        }
        if let Some(s) = &self.slack {
            out.push(("slack.bot_token".into(), &s.bot_token));
            out.push(("slack.signing_secret".into(), &s.signing_secret));
        }
        if let Some(d) = &self.discord {
            out.push(("discord.bot_token".into(), &d.bot_token));
        }
        if let Some(p) = self.smtp.as_ref().and_then(|s| s.password.as_ref()) {
            out.push(("smtp.password".into(), p));
        }
        if let Some(p) = self.smtp.as_ref().and_then(|s| s.action_secret.as_ref()) {
            out.push(("smtp.action_secret".into(), p));
        }
        if let Some(t) = &self.twilio {
            out.push(("twilio.auth_token".into(), &t.auth_token));
        }
        if let Some(n) = &self.ntfy {
            out.push(("ntfy.action_secret".into(), &n.action_secret));
            if let Some(t) = &n.token {
                out.push(("ntfy.token".into(), t));
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if let Some(sec) = &w.secret {
                out.push((
                    format!("webhooks[{}].secret", origins.at("webhooks", i)),
                    sec,
                ));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if let Some(sec) = u.webhook.as_ref().and_then(|w| w.secret.as_ref()) {
                out.push((
                    format!("users[{}].webhook.secret", origins.at("users", i)),
                    sec,
                ));
            }
        }
        out
    }

    /// The integration with this key, compared in constant time against every key.
    pub fn integration_by_key(&self, presented: &str) -> Option<&IntegrationConfig> {
        let mut found = None;
        for integ in &self.integrations {
            if integ.key.matches(presented) && found.is_none() {
                found = Some(integ);
            }
        }
        found
    }

    /// The heartbeat with this key, compared in constant time against every key.
    pub fn heartbeat_by_key(&self, presented: &str) -> Option<&HeartbeatConfig> {
        let mut found = None;
        for hb in &self.heartbeats {
            if hb.key.matches(presented) && found.is_none() {
                found = Some(hb);
            }
        }
        found
    }

    /// Reads the process environment into the map [`Config::load`] takes.
    pub fn process_env() -> HashMap<String, String> {
        std::env::vars().collect()
    }
}

const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "api",
    "log",
    "integrations",
    "services",
    "users",
    "schedules",
    "escalation_policies",
    "webhooks",
    "heartbeats",
    "smtp",
    "twilio",
    "ntfy",
    "notify",
    "chat",
    "slack",
    "runbooks",
    "templates",
    "discord",
    "intake",
    "audit",
    "console",
    "maintenance",
    "status_page",
    "reports",
];

/// For each parsed array element, its index in the file (elements that
/// failed to parse leave gaps).
#[derive(Debug, Default)]
pub(crate) struct Origins(HashMap<&'static str, Vec<usize>>, Vec<String>);

impl Origins {
    fn identity(config: &Config) -> Self {
        let mut o = HashMap::new();
        o.insert("integrations", (0..config.integrations.len()).collect());
        o.insert("services", (0..config.services.len()).collect());
        o.insert("users", (0..config.users.len()).collect());
        o.insert("schedules", (0..config.schedules.len()).collect());
        o.insert(
            "escalation_policies",
            (0..config.escalation_policies.len()).collect(),
        );
        o.insert("webhooks", (0..config.webhooks.len()).collect());
        o.insert("heartbeats", (0..config.heartbeats.len()).collect());
        o.insert("maintenance", (0..config.maintenance.len()).collect());
        Self(o, Vec::new())
    }

    /// The index in the file of the `i`th parsed element of `section`.
    pub(crate) fn at(&self, section: &str, i: usize) -> usize {
        self.0
            .get(section)
            .and_then(|v| v.get(i))
            .copied()
            .unwrap_or(i)
    }
}

fn from_value(root: toml::Value, issues: &mut Vec<ConfigIssue>) -> (Config, Origins) {
    let mut config = Config::default();
    let mut origins = Origins::default();
    let toml::Value::Table(mut table) = root else {
        issues.push(ConfigIssue {
            path: "(root)".into(),
            message: "must be a table".into(),
        });
        return (config, origins);
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !SECTIONS.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        issues.push(ConfigIssue {
            path: key,
            message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
        });
    }
    if let Some(v) = table.remove("server")
        && let Some(s) = section(v, "server", issues)
    {
        config.server = s;
    }
    if let Some(v) = table.remove("storage")
        && let Some(s) = section(v, "storage", issues)
    {
        config.storage = s;
    }
    if let Some(v) = table.remove("api")
        && let Some(s) = section(v, "api", issues)
    {
        config.api = s;
    }
    if let Some(v) = table.remove("log")
        && let Some(s) = section(v, "log", issues)
    {
        config.log = s;
    }
    if let Some(v) = table.remove("smtp") {
        config.smtp = section(v, "smtp", issues);
    }
    if let Some(v) = table.remove("twilio") {
        config.twilio = section(v, "twilio", issues);
    }
    if let Some(v) = table.remove("ntfy") {
        config.ntfy = section(v, "ntfy", issues);
    }
    if let Some(v) = table.remove("notify")
        && let Some(s) = section(v, "notify", issues)
    {
        config.notify = s;
    }
    if let Some(v) = table.remove("chat")
        && let Some(s) = section(v, "chat", issues)
    {
        config.chat = s;
    }
    if let Some(v) = table.remove("slack") {
        config.slack = section(v, "slack", issues);
    }
    if let Some(v) = table.remove("runbooks")
        && let Some(s) = section(v, "runbooks", issues)
    {
        config.runbooks = s;
    }
    if let Some(v) = table.remove("templates")
        && let Some(s) = section(v, "templates", issues)
    {
        config.templates = s;
    }
    if let Some(v) = table.remove("discord") {
        config.discord = section(v, "discord", issues);
    }
    if let Some(v) = table.remove("intake")
        && let Some(s) = section(v, "intake", issues)
    {
        config.intake = s;
    }
    if let Some(v) = table.remove("audit")
        && let Some(s) = section(v, "audit", issues)
    {
        config.audit = s;
    }
    if let Some(v) = table.remove("console")
        && let Some(s) = section(v, "console", issues)
    {
        config.console = s;
    }
    if let Some(v) = table.remove("status_page")
        && let Some(s) = section(v, "status_page", issues)
    {
        config.status_page = s;
    }
    if let Some(v) = table.remove("reports")
        && let Some(s) = section(v, "reports", issues)
    {
        config.reports = s;
    }
    macro_rules! arrays {
        ($($name:ident),*) => {$(
            if let Some(v) = table.remove(stringify!($name)) {
                let (items, at) = array(v, stringify!($name), issues, &mut origins.1);
                config.$name = items;
                origins.0.insert(stringify!($name), at);
            }
        )*};
    }
    arrays!(
        integrations,
        services,
        users,
        schedules,
        escalation_policies,
        webhooks,
        heartbeats,
        maintenance
    );
    (config, origins)
}

/// Deserializes one section, recording an issue with the precise path on failure.
fn section<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            // toml's messages end with "in `key`" lines; the path says that already.
            let message = e.into_inner().to_string();
            let message = message.lines().next().unwrap_or_default().to_string();
            issues.push(ConfigIssue {
                path: full,
                message,
            });
            None
        }
    }
}

/// Whether `path` is `prefix` or inside it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The variants an "unknown variant" message offers.
fn expected_variants(message: &str) -> Vec<String> {
    let Some((_, rest)) = message.split_once("expected ") else {
        return Vec::new();
    };
    rest.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Deserializes each element of an array of tables on its own, so one bad
/// element does not hide the problems of the others.
///
/// A bad element does not hide its own other problems either: the field
/// that failed is set aside (or, for an unknown variant, replaced by the
/// nearest known one) and the element parsed again, up to every field, so
/// each problem is reported; an element that then parses joins the
/// cross-entry checks (duplicate names, references, short keys), with
/// what was set aside recorded in `set_aside`.
fn array<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
    set_aside: &mut Vec<String>,
) -> (Vec<T>, Vec<usize>) {
    let toml::Value::Array(items) = value else {
        issues.push(ConfigIssue {
            path: path.into(),
            message: format!("must be an array of tables ([[{path}]])"),
        });
        return (Vec::new(), Vec::new());
    };
    let mut out = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{path}[{i}]");
        let mut item = item;
        let mut aside = Vec::new();
        for _ in 0..32 {
            match serde_path_to_error::deserialize::<_, T>(item.clone()) {
                Ok(v) => {
                    out.0.push(v);
                    out.1.push(i);
                    set_aside.extend(aside);
                    break;
                }
                Err(e) => {
                    let inner = e.path().to_string();
                    let message = e.into_inner().to_string();
                    let message = message.lines().next().unwrap_or_default().to_string();
                    let full = if inner == "." || inner.is_empty() {
                        at.clone()
                    } else {
                        format!("{at}.{inner}")
                    };
                    // The top-level field the problem is in.
                    let key = inner
                        .split(['.', '['])
                        .next()
                        .filter(|k| !k.is_empty() && *k != "?")
                        .map(str::to_string);
                    let unknown_field = message.starts_with("unknown field");
                    let nearest = (!unknown_field && message.contains("unknown variant"))
                        .then(|| {
                            let given = message.split('`').nth(1).unwrap_or("").to_string();
                            expected_variants(&message)
                                .into_iter()
                                .min_by_key(|v| distance(v, &given))
                        })
                        .flatten();
                    let message = match &nearest {
                        Some(n) if !message.contains("did you mean") => {
                            format!("{message}; did you mean `{n}`?")
                        }
                        _ => message,
                    };
                    issues.push(ConfigIssue {
                        path: full.clone(),
                        message,
                    });
                    let toml::Value::Table(t) = &mut item else {
                        break;
                    };
                    let Some(key) = key.filter(|k| {
                        t.contains_key(k) && !aside.iter().any(|a| a == &format!("{at}.{k}"))
                    }) else {
                        break;
                    };
                    match nearest {
                        // A top-level enum: check the rest as if it were the
                        // nearest variant.
                        Some(n) if inner == key => {
                            t.insert(key.clone(), toml::Value::String(n));
                        }
                        _ => {
                            t.remove(&key);
                        }
                    }
                    aside.push(format!("{at}.{key}"));
                    // The variant stand-in's own issues are not the user's.
                    aside.push(full);
                }
            }
        }
    }
    out
}

fn apply_env_overrides(
    root: &mut toml::Value,
    env: &HashMap<String, String>,
    issues: &mut Vec<ConfigIssue>,
) {
    // Sorted, so overrides apply in a stable order.
    let overrides: BTreeMap<&String, &String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    for (name, raw) in overrides {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            issues.push(ConfigIssue {
                path: name.clone(),
                message: "malformed override name; use TOCSIN__SECTION__KEY".into(),
            });
            continue;
        }
        if let Err(message) = set_path(root, &segments, parse_env_value(raw)) {
            issues.push(ConfigIssue {
                path: name.clone(),
                message,
            });
        }
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Value, segments: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = segments.split_first().expect("non-empty path");
    match root {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                t.insert(first.clone(), value);
                Ok(())
            } else {
                let child = t
                    .entry(first.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                set_path(child, rest, value)
            }
        }
        toml::Value::Array(items) => {
            let index: usize = first
                .parse()
                .map_err(|_| format!("'{first}' is not an array index"))?;
            let len = items.len();
            let item = items.get_mut(index).ok_or_else(|| {
                format!("index {index} is past the end (the array has {len} items)")
            })?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_path(item, rest, value)
            }
        }
        _ => Err(format!("cannot set '{first}' inside a plain value")),
    }
}

fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: &HashMap<String, String>,
    issues: &mut Vec<ConfigIssue>,
) {
    match value {
        toml::Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                match env.get(name) {
                    Some(v) => *s = v.clone(),
                    None => issues.push(ConfigIssue {
                        path: path.to_string(),
                        message: format!("environment variable {name} is not set"),
                    }),
                }
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate(v, &child, env, issues);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate(v, &format!("{path}[{i}]"), env, issues);
            }
        }
        _ => {}
    }
}

/// The bytes of a Discord application public key: 64 hex digits that name
/// a valid Ed25519 point. The Discord adapter builds its verifier from them.
pub fn discord_public_key(public_key: &str) -> Result<[u8; 32], String> {
    let bytes: [u8; 32] = hex::decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("discord: the public key must be 64 hex digits")?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| format!("discord: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:9999"
        [storage]
        path = "/tmp/x"
        [api]
        token = "${API_TOKEN}"
        [[services]]
        name = "api"
        [[integrations]]
        name = "am"
        kind = "alertmanager"
        key = "am-key-123"
        service = "api"
    "#;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn loads_with_interpolation_and_overrides() {
        let c = Config::from_toml_str(
            GOOD,
            &env(&[
                ("API_TOKEN", "secret-token"),
                ("TOCSIN__SERVER__LISTEN", "127.0.0.1:9000"),
                ("TOCSIN__STORAGE__PATH", "/var/lib/tocsin"),
                ("TOCSIN__INTEGRATIONS__0__KEY", "12345678"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.storage.path, PathBuf::from("/var/lib/tocsin"));
        assert_eq!(c.api.token.unwrap().expose(), "secret-token");
        assert_eq!(c.integrations[0].key.expose(), "12345678");
        assert!(format!("{:?}", c.integrations[0]).contains("key: ***"));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
            bogus = 1
            [server]
            listen = "not an address"
            [[services]]
            name = "api"
            [[integrations]]
            name = "a"
            kind = "nagios"
            key = "k"
            service = "api"
            [[integrations]]
            name = "b"
            kind = "generic"
            key = "short"
            service = "nope"
            colour = "red"
            [[integrations]]
            name = "c"
            kind = "generic"
            key = "long-enough-key"
            service = "nope"
        "#;
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(text, &env(&[])) else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"bogus"), "{issues:?}");
        assert!(paths.contains(&"server.listen"), "{issues:?}");
        assert!(paths.contains(&"integrations[0].kind"), "{issues:?}");
        assert!(paths.contains(&"integrations[1].colour"), "{issues:?}");
        assert!(paths.contains(&"integrations[2].service"), "{issues:?}");
        let colour = issues
            .iter()
            .find(|i| i.path == "integrations[1].colour")
            .unwrap();
        assert!(colour.message.contains("unknown field"), "{colour}");
        assert!(
            issues.iter().all(|i| !i.message.contains('\n')),
            "{issues:?}"
        );
    }

    #[test]
    fn a_discord_public_key_must_be_an_ed25519_point() {
        // y = 2 has no x on the curve; y = 3 has.
        let not_a_point = format!("02{}", "00".repeat(31));
        let point = format!("03{}", "00".repeat(31));
        assert!(discord_public_key(&point).is_ok());
        assert!(
            discord_public_key("abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
        let text = format!(
            "{GOOD}\n[discord]\napplication_id = \"1\"\npublic_key = \"{not_a_point}\"\nbot_token = \"t\"\nguild_id = \"2\"\n"
        );
        let Err(ConfigError::Invalid(issues)) =
            Config::from_toml_str(&text, &env(&[("API_TOKEN", "secret-token")]))
        else {
            panic!("expected invalid");
        };
        let key = issues
            .iter()
            .find(|i| i.path == "discord.public_key")
            .unwrap_or_else(|| panic!("{issues:?}"));
        assert_eq!(key.message, "is not a valid Ed25519 public key");
    }

    #[test]
    fn audit_key_and_webhook_are_checked() {
        let env = env(&[("API_TOKEN", "secret-token"), ("AK", "short")]);
        let text = format!("{GOOD}\n[audit]\nkey = \"${{AK}}\"\nwebhook = \"nowhere\"\n");
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&text, &env) else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"audit.key"), "{issues:?}");
        assert!(paths.contains(&"audit.webhook"), "{issues:?}");
        let env = env_with_long_key();
        let text = format!("{GOOD}\n[audit]\nkey = \"${{AK}}\"\n");
        let c = Config::from_toml_str(&text, &env).unwrap();
        assert_eq!(c.audit.key.unwrap().expose().len(), 64);
    }

    fn env_with_long_key() -> HashMap<String, String> {
        env(&[("API_TOKEN", "secret-token"), ("AK", &"a1".repeat(32))])
    }

    #[test]
    fn every_problem_of_every_entry_is_reported_at_once() {
        let text = r#"
            [[users]]
            name = "alice"
            contact_methods = [{ kind = "pigeon" }]
            [[users]]
            name = "alice"
            contact_methods = [{ kind = "log" }]

            [[services]]
            name = "api"

            [[integrations]]
            name = "am"
            kind = "alertmanagr"
            key = "short"
            service = "nope"
            colour = "red"
        "#;
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(text, &env(&[])) else {
            panic!("expected invalid");
        };
        let find = |path: &str, what: &str| {
            issues
                .iter()
                .any(|i| i.path == path && i.message.contains(what))
        };
        // The bad contact method, and still the duplicate user.
        assert!(
            find("users[0].contact_methods[0].kind", "unknown variant"),
            "{issues:?}"
        );
        assert!(find("users[1].name", "defined twice"), "{issues:?}");
        // The misspelt kind with a suggestion, and still the short key, the
        // unknown service and the unknown field.
        assert!(
            find("integrations[0].kind", "did you mean `alertmanager`"),
            "{issues:?}"
        );
        assert!(
            find("integrations[0].colour", "unknown field"),
            "{issues:?}"
        );
        assert!(find("integrations[0].service", "nope"), "{issues:?}");
        assert!(
            issues.iter().any(|i| i.path == "integrations[0].key"),
            "{issues:?}"
        );
        // Nothing about the field set aside beyond its own problem.
        assert!(
            !issues
                .iter()
                .any(|i| i.path.starts_with("users[0].contact_methods")
                    && !i.message.contains("unknown variant")),
            "{issues:?}"
        );
    }

    #[test]
    fn retention_and_its_export_load_and_are_checked() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let dir = tempfile::tempdir().unwrap();
        let with =
            |lines: &str| GOOD.replace("path = \"/tmp/x\"", &format!("path = \"/tmp/x\"\n{lines}"));
        let c = Config::from_toml_str(&with("retention = \"365d\""), &env).unwrap();
        assert_eq!(
            c.storage.retention,
            Some(std::time::Duration::from_secs(365 * 86_400))
        );
        assert_eq!(c.storage.retention_export, None);
        let c = Config::from_toml_str(GOOD, &env).unwrap();
        assert_eq!(c.storage.retention, None);
        let export = dir.path().join("out.jsonl");
        let line = format!(
            "retention = \"30d\"\nretention_export = \"{}\"",
            export.display()
        );
        let c = Config::from_toml_str(&with(&line), &env).unwrap();
        assert_eq!(c.storage.retention_export, Some(export));
        let missing = dir.path().join("nowhere").join("out.jsonl");
        for (bad, key) in [
            ("retention = \"12h\"".to_string(), "storage.retention"),
            ("retention = \"soon\"".to_string(), "storage.retention"),
            (
                format!("retention_export = \"{}\"", missing.display()),
                "storage.retention_export",
            ),
            (
                format!("retention_export = \"{}\"", dir.path().display()),
                "storage.retention_export",
            ),
        ] {
            match Config::from_toml_str(&with(&bad), &env) {
                Err(ConfigError::Invalid(issues)) => {
                    assert!(issues.iter().any(|i| i.path == key), "{bad}: {issues:?}")
                }
                Err(e) => assert_eq!(key, "storage", "{bad}: {e}"),
                Ok(_) => panic!("{bad} accepted"),
            }
        }
    }

    #[test]
    fn public_url_loads_and_is_checked() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let with = |v: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:9999\"",
                &format!("listen = \"127.0.0.1:9999\"\npublic_url = \"{v}\""),
            )
        };
        let c = Config::from_toml_str(&with("https://tocsin.example.com/base/"), &env).unwrap();
        assert_eq!(
            c.server.public_url.unwrap().as_str(),
            "https://tocsin.example.com/base/"
        );
        for bad in [
            "ftp://tocsin.example.com",
            "https://x.example/?a=1",
            "not a url",
        ] {
            let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&with(bad), &env) else {
                panic!("{bad} accepted");
            };
            assert!(
                issues.iter().any(|i| i.path.starts_with("server")),
                "{bad}: {issues:?}"
            );
        }
    }

    #[test]
    fn listeners_hosts_and_metrics_networks_load_and_are_checked() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let with = |lines: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:9999\"",
                &format!("listen = \"127.0.0.1:9999\"\n{lines}"),
            )
        };
        let c = Config::from_toml_str(GOOD, &env).unwrap();
        assert_eq!(c.server.public_listen, None);
        assert!(c.server.api_hosts.is_empty());
        assert_eq!(c.server.metrics_networks, crate::access::Cidr::loopback());
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let c = Config::from_toml_str(
            &with("public_listen = \"0.0.0.0:8443\"\napi_hosts = [\"tocsin.internal\", \"ops.example:8080\"]\nmetrics_networks = [\"10.0.0.0/8\", \"fd00::/8\"]"),
            &env,
        )
        .unwrap();
        assert_eq!(c.server.public_listen.unwrap().to_string(), "0.0.0.0:8443");
        assert_eq!(c.server.api_hosts, ["tocsin.internal", "ops.example:8080"]);
        assert!(c.server.metrics_networks[0].contains("10.9.8.7".parse().unwrap()));
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(
            &with("public_listen = \"127.0.0.1:9999\"\napi_hosts = [\"https://tocsin.internal/\"]"),
            &env,
        ) else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"server.public_listen"), "{issues:?}");
        assert!(paths.contains(&"server.api_hosts[0]"), "{issues:?}");
        let Err(ConfigError::Invalid(issues)) =
            Config::from_toml_str(&with("metrics_networks = [\"10.0.0/8\"]"), &env)
        else {
            panic!("expected invalid");
        };
        assert!(
            issues
                .iter()
                .any(|i| i.path.starts_with("server.metrics_networks")
                    && i.message.contains("10.0.0/8")),
            "{issues:?}"
        );
        // One listener on a public address serves the API to everyone: a warning.
        let open = GOOD.replace("127.0.0.1:9999", "0.0.0.0:9999");
        let c = Config::from_toml_str(&open, &env).unwrap();
        let w = c.warnings();
        assert!(
            w.iter()
                .any(|w| w.path == "server.listen" && w.message.contains("public_listen")),
            "{w:?}"
        );
        let split = open.replace(
            "listen = \"0.0.0.0:9999\"",
            "listen = \"0.0.0.0:9999\"\npublic_listen = \"0.0.0.0:9998\"",
        );
        assert!(
            Config::from_toml_str(&split, &env)
                .unwrap()
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn phone_and_push_keys_load_and_are_checked() {
        let env = env(&[
            ("API_TOKEN", "secret-token"),
            ("TWILIO_AUTH_TOKEN", "twilio-token-1234"),
        ]);
        let good = format!(
            "{GOOD}\n{}",
            r#"
        [twilio]
        account_sid = "AC0123456789abcdef0123456789abcdef"
        auth_token = "${TWILIO_AUTH_TOKEN}"
        from = "+15550000000"
        [ntfy]
        action_secret = "0123456789abcdef0123"
        [[users]]
        name = "alice"
        phone = "+15551230001"
        ntfy_topic = "alice-pages"
        contact_methods = [{ kind = "sms" }, { kind = "voice", after = "2m" }, { kind = "push" }]
        "#
        )
        .replace(
            "listen = \"127.0.0.1:9999\"",
            "listen = \"127.0.0.1:9999\"\npublic_url = \"https://tocsin.example\"",
        );
        let c = Config::from_toml_str(&good, &env).unwrap();
        let t = c.twilio.as_ref().unwrap();
        assert_eq!(t.auth_token.expose(), "twilio-token-1234");
        assert_eq!(t.api_url, "https://api.twilio.com");
        assert_eq!(t.max_per_incident, 10);
        let n = c.ntfy.as_ref().unwrap();
        assert_eq!(n.url, "https://ntfy.sh");
        assert_eq!(n.action_ttl, std::time::Duration::from_secs(86_400));
        assert!(format!("{t:?}").contains("auth_token: ***"));

        let bad = good
            .replace("+15551230001", "555-123-0001")
            .replace("alice-pages", "alice pages!")
            .replace("AC0123456789abcdef0123456789abcdef", "AC123")
            .replace("from = \"+15550000000\"", "from = \"15550000000\"")
            .replace("0123456789abcdef0123", "short")
            .replace("\npublic_url = \"https://tocsin.example\"", "");
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&bad, &env) else {
            panic!("accepted");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for want in [
            "users[0].phone",
            "users[0].ntfy_topic",
            "twilio.account_sid",
            "twilio.from",
            "ntfy.action_secret",
            "server.public_url",
            "users[0].contact_methods[0]",
            "users[0].contact_methods[2]",
        ] {
            assert!(paths.contains(&want), "{want}: {issues:?}");
        }
        let no_twilio = good.replace("[twilio]", "[unused_twilio]");
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&no_twilio, &env) else {
            panic!("accepted");
        };
        assert!(
            issues
                .iter()
                .any(|i| i.message == "kind sms needs a [twilio] section"),
            "{issues:?}"
        );
        assert!(crate::config::is_e164("+442071838750"));
        for bad in ["+0123456789", "+1555", "15551230001", "+1 555 123 0001"] {
            assert!(!crate::config::is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn heartbeats_load_and_every_key_is_checked() {
        let env = env(&[("API_TOKEN", "secret-token"), ("HB_KEY", "hb-secret-1")]);
        let good = format!(
            "{GOOD}\n[[heartbeats]]\nname = \"db-backup\"\nkey = \"${{HB_KEY}}\"\nservice = \"api\"\ninterval = \"1h\"\n"
        );
        let c = Config::from_toml_str(&good, &env).unwrap();
        let hb = &c.heartbeats[0];
        assert_eq!(hb.key.expose(), "hb-secret-1");
        assert_eq!(hb.interval, std::time::Duration::from_secs(3600));
        assert_eq!(hb.grace, std::time::Duration::from_secs(300));
        assert_eq!(c.heartbeat_by_key("hb-secret-1").unwrap().name, "db-backup");
        assert!(c.heartbeat_by_key("am-key-123").is_none());
        let bad = format!(
            r#"{GOOD}
            [[heartbeats]]
            name = "db-backup"
            key = "PLACEHOLDER-heartbeat-key"
            service = "nope"
            interval = "0s"
            [[heartbeats]]
            name = "db-backup"
            key = "am-key-123"
            service = "api"
            interval = "5m"
            [[heartbeats]]
            name = "cron"
            key = "hb-1"
            service = "api"
            interval = "5m"
            surprise = 1
            "#
        );
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&bad, &env) else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for path in [
            "heartbeats[0].key",
            "heartbeats[0].service",
            "heartbeats[0].interval",
            "heartbeats[1].name",
            "heartbeats[1].key",
            "heartbeats[2].surprise",
        ] {
            assert!(paths.contains(&path), "{path} not in {issues:?}");
        }
        let resolve = GOOD.replace(
            "key = \"am-key-123\"",
            "key = \"am-key-123\"\nresolve_after = \"0s\"",
        );
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&resolve, &env) else {
            panic!("expected invalid: {resolve}");
        };
        assert!(
            issues
                .iter()
                .any(|i| i.path == "integrations[0].resolve_after"),
            "{issues:?}"
        );
    }

    #[test]
    fn reopen_within_loads_and_must_be_longer_than_zero() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let with = |v: &str| {
            GOOD.replace(
                "name = \"api\"\n",
                &format!("name = \"api\"\nreopen_within = \"{v}\"\n"),
            )
        };
        let c = Config::from_toml_str(&with("15m"), &env).unwrap();
        assert_eq!(
            c.services[0].reopen_within,
            Some(std::time::Duration::from_secs(900))
        );
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&with("0s"), &env) else {
            panic!("expected invalid");
        };
        assert!(
            issues.iter().any(|i| i.path == "services[0].reopen_within"),
            "{issues:?}"
        );
    }

    #[test]
    fn flapping_loads_and_is_checked() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let with = |v: &str| {
            GOOD.replace(
                "name = \"api\"\n",
                &format!("name = \"api\"\nflapping = {v}\n"),
            )
        };
        let c = Config::from_toml_str(&with(r#"{ changes = 4, within = "30m" }"#), &env).unwrap();
        assert_eq!(
            c.services[0].flapping,
            Some(FlappingConfig {
                changes: 4,
                within: std::time::Duration::from_secs(1800)
            })
        );
        let Err(ConfigError::Invalid(issues)) =
            Config::from_toml_str(&with(r#"{ changes = 0, within = "0s" }"#), &env)
        else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(
            paths.contains(&"services[0].flapping.changes"),
            "{issues:?}"
        );
        assert!(paths.contains(&"services[0].flapping.within"), "{issues:?}");
        // A misspelt key is refused, not ignored.
        assert!(Config::from_toml_str(&with(r#"{ changes = 4, window = "30m" }"#), &env).is_err());
        assert!(Config::from_toml_str(&with(r#"{ changes = 4 }"#), &env).is_err());
    }

    #[test]
    fn server_connection_limits_load_and_are_checked() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let c = Config::from_toml_str(GOOD, &env).unwrap();
        assert_eq!(c.server.max_connections, 512);
        assert_eq!(c.server.request_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, std::time::Duration::from_secs(30));
        let text = GOOD.replace(
            "listen = \"127.0.0.1:9999\"",
            "listen = \"127.0.0.1:9999\"\nmax_connections = 2000\nrequest_timeout = \"5s\"\nidle_timeout = \"2m\"",
        );
        let c = Config::from_toml_str(&text, &env).unwrap();
        assert_eq!(c.server.max_connections, 2000);
        assert_eq!(c.server.request_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.server.idle_timeout, std::time::Duration::from_secs(120));
        let text = GOOD.replace(
            "listen = \"127.0.0.1:9999\"",
            "listen = \"127.0.0.1:9999\"\nmax_connections = 0\nrequest_timeout = \"1h\"\nidle_timeout = \"0s\"\nmax_queued_writes = 0",
        );
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&text, &env) else {
            panic!("expected invalid");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for key in [
            "server.max_connections",
            "server.request_timeout",
            "server.idle_timeout",
            "server.max_queued_writes",
        ] {
            assert!(paths.contains(&key), "{key}: {issues:?}");
        }
    }

    #[test]
    fn a_request_rate_of_zero_is_refused() {
        let env = env(&[("API_TOKEN", "secret-token")]);
        let text = GOOD.replace(
            "kind = \"alertmanager\"",
            "kind = \"alertmanager\"\n        max_requests_per_second = 0",
        );
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(&text, &env) else {
            panic!("expected invalid");
        };
        assert!(
            issues
                .iter()
                .any(|i| i.path.ends_with(".max_requests_per_second")),
            "{issues:?}"
        );
        let text = GOOD.replace(
            "kind = \"alertmanager\"",
            "kind = \"alertmanager\"\n        max_requests_per_second = 500",
        );
        let c = Config::from_toml_str(&text, &env).unwrap();
        assert_eq!(c.integrations[0].max_requests_per_second, Some(500));
    }

    #[test]
    fn missing_env_secret_is_reported() {
        let Err(ConfigError::Invalid(issues)) = Config::from_toml_str(GOOD, &env(&[])) else {
            panic!("expected invalid");
        };
        assert_eq!(issues[0].path, "api.token");
        assert!(issues[0].message.contains("API_TOKEN"));
    }

    #[test]
    fn the_postgres_backend_loads_its_url_from_the_environment_and_is_checked() {
        let env = env(&[
            ("API_TOKEN", "secret-token"),
            ("DB_URL", "postgres://tocsin:pw@db.internal:5432/tocsin"),
        ]);
        let with =
            |lines: &str| GOOD.replace("path = \"/tmp/x\"", &format!("path = \"/tmp/x\"\n{lines}"));
        let c = Config::from_toml_str(GOOD, &env).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Sled);
        assert_eq!(c.storage.pool_size, 8);
        let c = Config::from_toml_str(
            &with("backend = \"postgres\"\nurl = \"${DB_URL}\"\npool_size = 16"),
            &env,
        )
        .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Postgres);
        assert_eq!(
            c.storage.url.as_ref().map(Secret::expose),
            Some("postgres://tocsin:pw@db.internal:5432/tocsin")
        );
        assert_eq!(c.storage.pool_size, 16);
        // The password never reaches a debug print.
        assert!(!format!("{:?}", c.storage).contains("pw@"));
        for (bad, key) in [
            ("backend = \"postgres\"", "storage.url"),
            (
                "backend = \"postgres\"\nurl = \"mysql://x/y\"",
                "storage.url",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://h/db?sslmode=sometimes\"",
                "storage.url",
            ),
            ("url = \"postgres://h/db\"", "storage.url"),
            (
                "backend = \"postgres\"\nurl = \"postgres://h/db\"\npool_size = 0",
                "storage.pool_size",
            ),
            ("backend = \"mongodb\"", "storage.backend"),
        ] {
            match Config::from_toml_str(&with(bad), &env) {
                Err(ConfigError::Invalid(issues)) => {
                    assert!(issues.iter().any(|i| i.path == key), "{bad}: {issues:?}")
                }
                Err(e) => assert_eq!(key, "storage", "{bad}: {e}"),
                Ok(_) => panic!("{bad} accepted"),
            }
        }
    }
}
