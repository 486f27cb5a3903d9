//! The typed incident timeline.

use super::Severity;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// tocsin itself (timers, grouping).
    System,
    /// An alert sender, by integration name.
    Integration(String),
    /// A person, by tocsin user name, with how they proved who they are.
    User(UserRef),
}

impl Actor {
    /// A person known only by name (entries written before principals were
    /// recorded, and tests).
    pub fn user(name: impl Into<String>) -> Self {
        Self::User(UserRef {
            name: name.into(),
            principal: None,
        })
    }

    /// A person who authenticated as `principal`: `slack:T0001/U0001`,
    /// `discord:1234/5678`, `token:3fa2c1`, `config-token`, `cli`, ...
    pub fn authenticated(name: impl Into<String>, principal: impl Into<String>) -> Self {
        Self::User(UserRef {
            name: name.into(),
            principal: Some(principal.into()),
        })
    }

    /// The tocsin user name, when a person acted.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Self::User(u) => Some(&u.name),
            _ => None,
        }
    }

    /// The authenticated identity behind a person's action, if recorded.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Self::User(u) => u.principal.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("tocsin"),
            Self::Integration(n) => write!(f, "integration {n}"),
            Self::User(u) => f.write_str(&u.name),
        }
    }
}

/// A person in the timeline: the display name and the authenticated
/// principal (platform user id, token id) that vouches for it.
///
/// Serializes as a bare string when no principal is known, so entries
/// written before principals existed keep their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    /// The tocsin user name.
    pub name: String,
    /// How they authenticated, if recorded.
    pub principal: Option<String>,
}

impl Serialize for UserRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match &self.principal {
            None => s.serialize_str(&self.name),
            Some(p) => {
                let mut st = s.serialize_struct("UserRef", 2)?;
                st.serialize_field("user", &self.name)?;
                st.serialize_field("principal", p)?;
                st.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Name(String),
            Full { user: String, principal: String },
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Name(name) => Self {
                name,
                principal: None,
            },
            Wire::Full { user, principal } => Self {
                name: user,
                principal: Some(principal),
            },
        })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// The incident was opened by its first alert.
    Opened {
        /// The incident title.
        title: String,
        /// Its severity at opening.
        severity: Severity,
    },
    /// A new alert joined the incident.
    AlertReceived {
        /// The alert's fingerprint.
        fingerprint: String,
        /// The alert's summary.
        summary: String,
    },
    /// An alert stopped firing.
    AlertResolved {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// An alert resolved by itself: its sender did not re-send it before its
    /// `endsAt` (Alertmanager's semantics for `/api/v2/alerts`).
    AlertExpired {
        /// The alert's fingerprint.
        fingerprint: String,
        /// When it was due to end.
        ends_at: DateTime<Utc>,
    },
    /// An alert that had resolved fires again.
    AlertRefired {
        /// The alert's fingerprint.
        fingerprint: String,
    },
    /// A resolved incident's alert fired again within its service's
    /// `reopen_within`: the incident is open again and pages again.
    Reopened {
        /// When it had resolved.
        resolved_at: DateTime<Utc>,
    },
    /// More fire/resolve changes than the service's `flapping.changes`
    /// within `flapping.within`: the incident is flapping (resolves held,
    /// re-fires page nobody) until its alert settles.
    Flapping {
        /// Changes within the window.
        changes: u32,
        /// The window, in seconds.
        within_secs: i64,
    },
    /// A flapping incident's alert changed state again (no page).
    Flap {
        /// Whether it fires now (else it resolved, and the resolve is held).
        firing: bool,
    },
    /// Nothing changed for the window: the alert settled.
    FlapSettled {
        /// Whether it settled firing (pages again) or resolved.
        firing: bool,
        /// The window, in seconds.
        within_secs: i64,
    },
    /// The sender said the group resolved, but its notification left alerts
    /// out (Alertmanager's `max_alerts`): the incident stays open.
    ResolveHeld {
        /// How many alerts the notification left out.
        left_out: u64,
        /// When the resolve stands if no notification contradicts it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
    },
    /// The incident tracks as many alerts as it can; more are counted.
    AlertsUntracked {
        /// How many it tracks one by one.
        tracked: usize,
    },
    /// A routing rule of the integration decided where the alert went.
    Routed {
        /// The rule's position in `[[integrations.routes]]`, from 0.
        rule: usize,
        /// Its matchers, as configured.
        matchers: Vec<String>,
        /// The service it chose.
        service: String,
        /// The severity it set, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<Severity>,
        /// The escalation policy it chose, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalation_policy: Option<String>,
    },
    /// Changes to the service shortly before the incident opened.
    RecentChanges {
        /// Newest first.
        changes: Vec<super::ServiceChange>,
    },
    /// The severity changed.
    SeverityChanged {
        /// Before.
        from: Severity,
        /// After.
        to: Severity,
    },
    /// Someone took the incident.
    Acknowledged,
    /// The incident is over.
    Resolved {
        /// Why, or how, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A free-text note.
    Note {
        /// The text.
        text: String,
    },
    /// A status update posted for stakeholders.
    StatusUpdate {
        /// The text.
        text: String,
    },
    /// The incident was put on (or taken off) the public status page.
    Visibility {
        /// Whether the status page shows it now.
        public: bool,
    },
    /// Someone took a role.
    RoleAssigned {
        /// The role.
        role: String,
        /// The tocsin user.
        user: String,
    },
    /// A follow-up to do after the incident.
    ActionItem {
        /// What to do.
        text: String,
    },
    /// tocsin opened the incident's chat channel.
    ChannelOpened {
        /// `slack` or `discord`.
        platform: String,
        /// The channel's name.
        channel: String,
    },
    /// A runbook was attached.
    RunbookAttached {
        /// Its name.
        runbook: String,
        /// Its title.
        title: String,
    },
    /// A runbook step was done.
    StepDone {
        /// The step id.
        step: String,
        /// The evidence or remark.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A runbook step was skipped.
    StepSkipped {
        /// The step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// The next runbook phase began.
    PhaseStarted {
        /// Its title.
        phase: String,
    },
    /// An escalation step ran.
    EscalationStep {
        /// The policy.
        policy: String,
        /// The step, from 1.
        step: usize,
        /// The round, from 1.
        round: u32,
        /// Who and what it notified.
        notified: Vec<String>,
    },
    /// A step targeted a schedule that nobody covers right now.
    NobodyOnCall {
        /// The schedule.
        schedule: String,
    },
    /// The policy ran out with nobody acknowledging.
    EscalationExhausted {
        /// The policy.
        policy: String,
    },
    /// Paging paused until `until`.
    Snoozed {
        /// When it triggers again.
        until: DateTime<Utc>,
    },
    /// The snooze ended; the incident triggers again.
    SnoozeEnded,
    /// A notification was delivered.
    Paged {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// After how many attempts.
        attempts: u32,
    },
    /// A delivery attempt failed; it will be retried.
    DeliveryRetry {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// Which attempt failed.
        attempt: u32,
        /// Why.
        error: String,
        /// The next try.
        retry_at: DateTime<Utc>,
    },
    /// The carrier reported on a page tocsin handed over (an SMS delivered
    /// or not, a call unanswered or answered by a machine).
    DeliveryReport {
        /// Who.
        recipient: String,
        /// How.
        method: String,
        /// The carrier's word: `delivered`, `undelivered`, `failed`,
        /// `no-answer`, `busy`, `machine`, ...
        status: String,
        /// Whether the person was reached; if not, the next contact method
        /// was brought forward.
        reached: bool,
        /// The carrier's error code or detail, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// tocsin gave up on a delivery.
    DeliveryFailed {
        /// Who or what.
        recipient: String,
        /// How.
        method: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// It arrived during a maintenance window: stored and shown, nobody
    /// paged, no channel, until the window ends.
    Suppressed {
        /// The window's id.
        window: String,
        /// Its name.
        name: String,
        /// Why the window exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When the window ends.
        until: DateTime<Utc>,
    },
    /// The maintenance window that held it ended (or was ended early).
    MaintenanceEnded {
        /// The window's id.
        window: String,
        /// Its name.
        name: String,
        /// Whether it still fired and so was paged, as if just arrived.
        paged: bool,
        /// Who ended the window early, if anyone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_by: Option<String>,
    },
}

impl TimelineEvent {
    /// One readable line, for the CLI and summaries.
    pub fn describe(&self) -> String {
        match self {
            Self::Opened { title, severity } => format!("Opened as {severity}: {title}"),
            Self::AlertReceived { summary, .. } => format!("Alert received: {summary}"),
            Self::AlertResolved { fingerprint } => format!("Alert {fingerprint} resolved"),
            Self::AlertRefired { fingerprint } => format!("Alert {fingerprint} fired again"),
            Self::AlertExpired {
                fingerprint,
                ends_at,
            } => format!(
                "Alert {fingerprint} resolved: not re-sent before its end time {}",
                ends_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Self::Reopened { resolved_at } => format!(
                "Reopened: its alert fired again after it resolved at {}",
                resolved_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Self::Flapping {
                changes,
                within_secs,
            } => format!(
                "Flapping: {changes} changes in {}; resolves are held and re-fires page nobody until it settles",
                super::flapping::window_text(*within_secs)
            ),
            Self::Flap { firing: true } => "Flap: fired again (flapping, no page)".into(),
            Self::Flap { firing: false } => {
                "Flap: resolved (flapping, held open until it settles)".into()
            }
            Self::FlapSettled {
                firing: true,
                within_secs,
            } => format!(
                "Settled firing: still firing after {} without a change; flapping ended",
                super::flapping::window_text(*within_secs)
            ),
            Self::FlapSettled {
                firing: false,
                within_secs,
            } => format!(
                "Settled resolved: stayed resolved for {}; flapping ended",
                super::flapping::window_text(*within_secs)
            ),
            Self::ResolveHeld { left_out, until } => format!(
                "The sender says the group resolved, but left {left_out} alerts out of its notification (max_alerts): kept open until a notification lists every alert resolved{}, or someone resolves it",
                until
                    .map(|t| format!(
                        ", or until {} if no notification says they fire",
                        t.format("%Y-%m-%d %H:%M UTC")
                    ))
                    .unwrap_or_default()
            ),
            Self::AlertsUntracked { tracked } => format!(
                "More than {tracked} alerts: further alerts are counted, not tracked one by one; it resolves when the whole group does, or by hand"
            ),
            Self::Routed {
                rule,
                matchers,
                service,
                severity,
                escalation_policy,
            } => {
                let mut s = format!(
                    "Routed to {service} by rule {rule} ({})",
                    if matchers.is_empty() {
                        "every alert".to_string()
                    } else {
                        matchers.join(", ")
                    }
                );
                if let Some(sev) = severity {
                    s.push_str(&format!(", as {sev}"));
                }
                if let Some(p) = escalation_policy {
                    s.push_str(&format!(", paging policy {p}"));
                }
                s
            }
            Self::RecentChanges { changes } => format!(
                "Recent changes to the service: {}",
                changes
                    .iter()
                    .map(super::ServiceChange::line)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Self::SeverityChanged { from, to } => format!("Severity changed from {from} to {to}"),
            Self::Acknowledged => "Acknowledged".into(),
            Self::Resolved { note: Some(n) } => format!("Resolved: {n}"),
            Self::Resolved { note: None } => "Resolved".into(),
            Self::Note { text } => format!("Note: {text}"),
            Self::StatusUpdate { text } => format!("Status update: {text}"),
            Self::Visibility { public: true } => "Shown on the public status page".into(),
            Self::Visibility { public: false } => "Taken off the public status page".into(),
            Self::RoleAssigned { role, user } => format!("{user} is {role}"),
            Self::RunbookAttached { title, .. } => format!("Runbook attached: {title}"),
            Self::StepDone {
                step,
                note: Some(n),
            } => format!("Step {step} done: {n}"),
            Self::StepDone { step, note: None } => format!("Step {step} done"),
            Self::StepSkipped { step, reason } => format!("Step {step} skipped: {reason}"),
            Self::PhaseStarted { phase } => format!("Phase started: {phase}"),
            Self::ActionItem { text } => format!("Action item: {text}"),
            Self::ChannelOpened { platform, channel } => {
                format!("Opened {platform} channel #{channel}")
            }
            Self::EscalationStep {
                policy,
                step,
                round,
                notified,
            } => {
                let who = if notified.is_empty() {
                    "nobody".to_string()
                } else {
                    notified.join(", ")
                };
                format!("Escalation {policy} step {step} (round {round}): notified {who}")
            }
            Self::NobodyOnCall { schedule } => format!("Nobody is on call for {schedule}"),
            Self::EscalationExhausted { policy } => {
                format!("Escalation {policy} exhausted: nobody acknowledged")
            }
            Self::Snoozed { until } => {
                format!("Snoozed until {}", until.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            Self::SnoozeEnded => "Snooze ended; triggered again".into(),
            Self::Paged {
                recipient,
                method,
                attempts,
            } => {
                if *attempts > 1 {
                    format!("Paged {recipient} by {method} (after {attempts} attempts)")
                } else {
                    format!("Paged {recipient} by {method}")
                }
            }
            Self::DeliveryRetry {
                recipient,
                method,
                attempt,
                error,
                retry_at,
            } => format!(
                "Paging {recipient} by {method} failed (attempt {attempt}: {error}); retrying at {}",
                retry_at.format("%H:%M:%S UTC")
            ),
            Self::DeliveryReport {
                recipient,
                method,
                status,
                reached,
                detail,
            } => {
                let detail = detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                if *reached {
                    format!("{method} page to {recipient}: {status}{detail}")
                } else {
                    format!(
                        "{method} page to {recipient}: {status}{detail}; trying the next contact method"
                    )
                }
            }
            Self::DeliveryFailed {
                recipient,
                method,
                attempts,
                error,
            } => {
                format!("GAVE UP paging {recipient} by {method} after {attempts} attempts: {error}")
            }
            Self::Suppressed {
                name,
                reason,
                until,
                ..
            } => format!(
                "Suppressed by maintenance window {name}{} until {}: stored, nobody paged, no channel",
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                until.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Self::MaintenanceEnded {
                name,
                paged,
                ended_by,
                ..
            } => format!(
                "Maintenance window {name} {}: {}",
                match ended_by {
                    Some(by) => format!("was ended early by {by}"),
                    None => "ended".to_string(),
                },
                if *paged {
                    "still firing, so paged as if it had just arrived"
                } else {
                    "already acknowledged, so nobody is paged"
                }
            ),
        }
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Position in the incident's timeline, from 0.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    #[serde(flatten)]
    pub event: TimelineEvent,
    /// SHA-256 (hex) of the previous entry as stored; empty for the first.
    /// Editing or deleting an entry breaks the chain.
    #[serde(default)]
    pub prev: String,
}

/// How a keyed link starts: `hmac-sha256:<hex>`.
pub const KEYED_PREFIX: &str = "hmac-sha256:";

impl TimelineEntry {
    /// SHA-256 (hex) of this entry's JSON, as the next entry's `prev`.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("timeline entries serialize");
        hex::encode(Sha256::digest(&json))
    }

    /// `hmac-sha256:` and the HMAC-SHA256 (hex) of this entry's JSON under
    /// the audit key, as the next entry's `prev` when `[audit] key` is set:
    /// without the key nobody can recompute the chain after an edit.
    pub fn keyed_digest(&self, key: &Secret) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let json = serde_json::to_vec(self).expect("timeline entries serialize");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(&json);
        format!("{KEYED_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The link to this entry: keyed if `key` is given.
    pub fn link(&self, key: Option<&Secret>) -> String {
        match key {
            Some(k) => self.keyed_digest(k),
            None => self.digest(),
        }
    }
}

/// Re-links `entries` (new entries of one incident, in order, whose first
/// `prev` is the stored head) under `key`, and returns the new head. The
/// domain links entries with plain SHA-256; the store seals them with the
/// audit key as it writes them.
pub fn seal(entries: &mut [TimelineEntry], key: &Secret) -> Option<String> {
    let first = entries.first()?;
    let mut head = first.prev.clone();
    for e in entries.iter_mut() {
        e.prev = std::mem::take(&mut head);
        head = e.keyed_digest(key);
    }
    Some(head)
}

/// Where an audit chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeline entry {seq}: {reason}")]
pub struct ChainError {
    /// The first entry that does not fit.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainReport {
    /// Entries in the chain.
    pub entries: usize,
    /// Entries linked with the audit key.
    pub keyed: usize,
    /// The position whose link matched `anchor`, if one was given.
    pub anchored_at: Option<u64>,
}

/// How to check a chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// The audit key, to check keyed links.
    pub key: Option<&'a Secret>,
    /// Accept entries linked without the key before the first keyed one
    /// (written before `[audit] key` was set). Without it, a key given
    /// means every link must be keyed.
    pub allow_unkeyed: bool,
    /// A head recorded outside the store (the log line or the audit
    /// webhook at resolve): some entry's link must equal it.
    pub anchor: Option<&'a str>,
}

/// Checks a timeline's hash chain: positions are consecutive, each entry
/// names the hash of the one before, and the last one hashes to `head`
/// (the incident's `timeline_head`), so a deleted last entry shows too.
///
/// A link is keyed (`hmac-sha256:...`, needs `options.key`) or plain
/// SHA-256. Once one link is keyed every later one must be: a chain that
/// turns plain after keyed entries was recomputed by someone without the
/// key. With a key given, plain links are refused unless
/// `options.allow_unkeyed`.
pub fn verify_chain(
    entries: &[TimelineEntry],
    head: &str,
    options: VerifyOptions<'_>,
) -> Result<ChainReport, ChainError> {
    let mut report = ChainReport {
        entries: entries.len(),
        ..ChainReport::default()
    };
    let mut prev = String::new();
    let mut seen_keyed = false;
    // The link from entry `i` to whatever follows it, judged by the form
    // the follower stored.
    let link = |e: &TimelineEntry, stored: &str, seen_keyed: &mut bool| {
        if stored.starts_with(KEYED_PREFIX) {
            *seen_keyed = true;
            match options.key {
                Some(k) => Ok(e.keyed_digest(k)),
                None => Err(format!(
                    "entry {} is linked with the audit key; give the key ([audit] key) to verify it",
                    e.seq
                )),
            }
        } else if *seen_keyed {
            Err(format!(
                "entry {} is linked without the audit key after keyed entries: the chain was recomputed by someone without the key",
                e.seq
            ))
        } else if options.key.is_some() && !options.allow_unkeyed {
            Err(format!(
                "entry {} is not linked with the audit key (written before [audit] key was set, or forged); pass --allow-unkeyed to accept entries from before the key",
                e.seq
            ))
        } else {
            Ok(e.digest())
        }
    };
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 {
            return Err(ChainError {
                seq: i as u64,
                reason: format!(
                    "expected position {i}, found {} (an entry was removed or reordered)",
                    e.seq
                ),
            });
        }
        if e.prev != prev {
            let reason = if i == 0 {
                "the first entry should have no predecessor".to_string()
            } else {
                format!(
                    "does not match entry {} (entry {} was changed)",
                    i - 1,
                    i - 1
                )
            };
            return Err(ChainError { seq: e.seq, reason });
        }
        let stored = entries.get(i + 1).map_or(head, |n| n.prev.as_str());
        prev =
            link(e, stored, &mut seen_keyed).map_err(|reason| ChainError { seq: e.seq, reason })?;
        if stored.starts_with(KEYED_PREFIX) {
            report.keyed += 1;
        }
        if options.anchor.is_some_and(|a| a == prev) && report.anchored_at.is_none() {
            report.anchored_at = Some(e.seq);
        }
    }
    if prev != head {
        let last = entries.len().saturating_sub(1) as u64;
        return Err(ChainError {
            seq: last,
            reason: if entries.is_empty() {
                "the timeline is empty but the incident records entries".into()
            } else {
                format!("entry {last} was changed, or entries after it were removed")
            },
        });
    }
    if let Some(a) = options.anchor
        && report.anchored_at.is_none()
    {
        return Err(ChainError {
            seq: entries.len().saturating_sub(1) as u64,
            reason: format!(
                "no entry links to the recorded head {}: the timeline before it was rewritten",
                a.get(..28).unwrap_or(a)
            ),
        });
    }
    Ok(report)
}
