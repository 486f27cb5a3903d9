//! Escalation policies and timers: the pure "what happens when a step runs".
//!
//! A policy is a list of steps; each step notifies its targets, then waits
//! its delay for an acknowledgement before the next step runs. After the
//! last step the policy starts over (`repeat`), or is exhausted. The state
//! of an incident's escalation is stored on the incident, and the next
//! step is a [`Timer`] in the store: a restart loses nothing, and an
//! acknowledgement deletes the timer in the same transaction.

pub mod scheduler;

use crate::config::{EscalationPolicyConfig, Repeat, TargetConfig};
use crate::incident::IncidentId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use crate::config::MAX_ROUNDS;

/// A validated escalation policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// The steps, in order (never empty).
    pub steps: Vec<Step>,
    /// How many times the steps run in all.
    pub rounds: u32,
}

/// One step of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Who or what to notify.
    pub targets: Vec<TargetConfig>,
    /// How long to wait before the next step.
    pub delay: Duration,
}

impl Policy {
    /// Builds a policy from validated config.
    pub fn from_config(cfg: &EscalationPolicyConfig) -> Self {
        let rounds = match cfg.repeat {
            Repeat::Never => 1,
            Repeat::Times(n) => n.saturating_add(1).min(MAX_ROUNDS),
            Repeat::UntilAcknowledged => MAX_ROUNDS,
        };
        Self {
            name: cfg.name.clone(),
            steps: cfg
                .steps
                .iter()
                .map(|s| Step {
                    targets: s.targets.clone(),
                    delay: Duration::from_std(s.delay).unwrap_or(Duration::MAX),
                })
                .collect(),
            rounds,
        }
    }

    /// What running `step` of `round` at `now` notifies, and what comes after.
    pub fn run_step(&self, step: usize, round: u32, now: DateTime<Utc>) -> StepRun {
        let s = &self.steps[step];
        let due = now + s.delay;
        let next = if step + 1 < self.steps.len() {
            Next::Step {
                step: step + 1,
                round,
                due,
            }
        } else if round + 1 < self.rounds {
            Next::Step {
                step: 0,
                round: round + 1,
                due,
            }
        } else {
            Next::Exhausted { due }
        };
        StepRun {
            step,
            round,
            targets: s.targets.clone(),
            next,
        }
    }

    /// The step after `step` of `round`, for a manual escalation; `None`
    /// when the policy has no further step.
    pub fn following(&self, step: usize, round: u32) -> Option<(usize, u32)> {
        if step + 1 < self.steps.len() {
            Some((step + 1, round))
        } else if round + 1 < self.rounds {
            Some((0, round + 1))
        } else {
            None
        }
    }
}

/// The result of running a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    /// The step that ran (from 0).
    pub step: usize,
    /// Its round (from 0).
    pub round: u32,
    /// Its targets.
    pub targets: Vec<TargetConfig>,
    /// What to schedule.
    pub next: Next,
}

/// What follows a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Run this step at `due` unless acknowledged.
    Step {
        /// The step.
        step: usize,
        /// Its round.
        round: u32,
        /// When.
        due: DateTime<Utc>,
    },
    /// Nobody acknowledged by the end of the last step: say so at `due`.
    Exhausted {
        /// When.
        due: DateTime<Utc>,
    },
}

/// An incident's escalation state, stored on the incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationState {
    /// The policy's name.
    pub policy: String,
    /// Bumped each time escalation starts over (after a snooze), so page
    /// idempotency keys of the new run differ from the old.
    pub generation: u32,
    /// The step that ran last (from 0).
    pub step: usize,
    /// Its round (from 0).
    pub round: u32,
    /// The pending timer, if any.
    pub timer: Option<Timer>,
    /// Whether the policy ran out.
    pub exhausted: bool,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimerKind {
    /// Run this step.
    Escalate {
        /// The step.
        step: u32,
        /// Its round.
        round: u32,
    },
    /// The policy ran out.
    Exhausted,
    /// A snooze ends: the incident triggers again.
    Unsnooze,
    /// Alerts whose `endsAt` passed resolve ([`crate::incident::Incident::expire`]).
    Expire,
    /// A heartbeat was not seen in time: its incident opens. Such a timer
    /// belongs to no incident (its `incident` is 0).
    Heartbeat {
        /// [`heartbeat_id`] of the heartbeat's name.
        heartbeat: u32,
        /// When its next ping was expected (the last ping plus `interval`).
        expected: DateTime<Utc>,
    },
    /// A flapping (or watched) incident's alert did not change for the
    /// service's `flapping.within`: it settles
    /// ([`crate::incident::Incident::settle_flapping`]).
    FlapSettle,
    /// The maintenance window holding the incident ends: page it if it
    /// still fires ([`crate::incident::Incident::end_suppression`]).
    MaintenanceEnd,
}

pub use crate::config::heartbeat_id;

/// A durable timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// When it fires.
    pub due: DateTime<Utc>,
    /// The incident it concerns.
    pub incident: IncidentId,
    /// The escalation generation it belongs to.
    pub generation: u32,
    /// What it does.
    #[serde(flatten)]
    pub kind: TimerKind,
}

/// Where [`Timer::key`] holds the timer's kind.
pub const TIMER_KIND_AT: usize = 16;
/// The kind byte of a heartbeat timer in [`Timer::key`].
pub const HEARTBEAT_TAG: u8 = 4;

impl Timer {
    /// The store key: big-endian due time, then incident, then the rest, so
    /// keys sort by due time and are unique per incident and step.
    pub fn key(&self) -> [u8; 25] {
        let mut k = [0u8; 25];
        // Flip the sign bit so negative times sort before positive ones.
        let due = (self.due.timestamp_millis() as u64) ^ (1 << 63);
        k[..8].copy_from_slice(&due.to_be_bytes());
        k[8..16].copy_from_slice(&self.incident.0.to_be_bytes());
        let (tag, step, round) = match self.kind {
            TimerKind::Escalate { step, round } => (0u8, step, round),
            TimerKind::Exhausted => (1, 0, 0),
            TimerKind::Unsnooze => (2, 0, 0),
            TimerKind::Expire => (3, 0, 0),
            TimerKind::Heartbeat { heartbeat, .. } => (HEARTBEAT_TAG, heartbeat, 0),
            TimerKind::FlapSettle => (5, 0, 0),
            TimerKind::MaintenanceEnd => (6, 0, 0),
        };
        k[TIMER_KIND_AT] = tag;
        k[17..21].copy_from_slice(&step.to_be_bytes());
        k[21..25].copy_from_slice(&round.to_be_bytes());
        k
    }

    /// Whether it belongs to an escalation run (a step, or the run's end),
    /// not a snooze, an expiry, a heartbeat or a settle.
    pub fn is_escalation(&self) -> bool {
        matches!(self.kind, TimerKind::Escalate { .. } | TimerKind::Exhausted)
    }

    /// The timer that settles a flapping incident at `due`.
    pub fn flap_settle(incident: IncidentId, due: DateTime<Utc>) -> Self {
        Timer {
            due,
            incident,
            generation: 0,
            kind: TimerKind::FlapSettle,
        }
    }

    /// A timer for what follows a step.
    pub fn for_next(incident: IncidentId, generation: u32, next: Next) -> Self {
        match next {
            Next::Step { step, round, due } => Timer {
                due,
                incident,
                generation,
                kind: TimerKind::Escalate {
                    step: step as u32,
                    round,
                },
            },
            Next::Exhausted { due } => Timer {
                due,
                incident,
                generation,
                kind: TimerKind::Exhausted,
            },
        }
    }
}

/// Who a step reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Recipient {
    /// A user, through their contact methods.
    User(String),
    /// A named webhook.
    Webhook(String),
    /// The incident's channel on a chat platform (`slack`, `discord`).
    Channel(String),
    /// A stakeholder's email address (`[[services]] subscribers`): status
    /// updates only, never pages.
    Subscriber(String),
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(u) => f.write_str(u),
            Self::Webhook(w) => write!(f, "webhook {w}"),
            Self::Channel(p) => write!(f, "{p} channel"),
            Self::Subscriber(a) => write!(f, "subscriber {a}"),
        }
    }
}

/// Resolves a step's targets at `now`: schedules become whoever is on call
/// (`on_call`), duplicates collapse (a user reached twice in one step gets
/// one page). Returns the recipients and the schedules nobody covers.
pub fn resolve_targets(
    targets: &[TargetConfig],
    on_call: &mut dyn FnMut(&str) -> Option<String>,
) -> (Vec<Recipient>, Vec<String>) {
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut uncovered = Vec::new();
    for t in targets {
        let r = match t {
            TargetConfig::User(u) => Some(Recipient::User(u.clone())),
            TargetConfig::Webhook(w) => Some(Recipient::Webhook(w.clone())),
            TargetConfig::Schedule(s) => match on_call(s) {
                Some(u) => Some(Recipient::User(u)),
                None => {
                    uncovered.push(s.clone());
                    None
                }
            },
        };
        if let Some(r) = r
            && !recipients.contains(&r)
        {
            recipients.push(r);
        }
    }
    (recipients, uncovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StepConfig;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn policy(repeat: Repeat) -> Policy {
        Policy::from_config(&EscalationPolicyConfig {
            name: "p".into(),
            repeat,
            steps: vec![
                StepConfig {
                    targets: vec![TargetConfig::User("alice".into())],
                    delay: std::time::Duration::from_secs(300),
                },
                StepConfig {
                    targets: vec![TargetConfig::Schedule("primary".into())],
                    delay: std::time::Duration::from_secs(600),
                },
            ],
        })
    }

    #[test]
    fn steps_then_repeat_then_exhausted() {
        let p = policy(Repeat::Times(1));
        assert_eq!(p.rounds, 2);
        let r = p.run_step(0, 0, t0());
        assert_eq!(
            r.next,
            Next::Step {
                step: 1,
                round: 0,
                due: t0() + Duration::minutes(5)
            }
        );
        let r = p.run_step(1, 0, t0());
        assert_eq!(
            r.next,
            Next::Step {
                step: 0,
                round: 1,
                due: t0() + Duration::minutes(10)
            }
        );
        let r = p.run_step(1, 1, t0());
        assert_eq!(
            r.next,
            Next::Exhausted {
                due: t0() + Duration::minutes(10)
            }
        );
        assert_eq!(p.following(1, 1), None);
        assert_eq!(p.following(0, 1), Some((1, 1)));
        assert_eq!(policy(Repeat::UntilAcknowledged).rounds, MAX_ROUNDS);
        assert_eq!(policy(Repeat::Never).rounds, 1);
    }

    #[test]
    fn timer_keys_sort_by_due_time() {
        let a = Timer {
            due: t0(),
            incident: IncidentId(9),
            generation: 0,
            kind: TimerKind::Unsnooze,
        };
        let b = Timer {
            due: t0() + Duration::milliseconds(1),
            incident: IncidentId(1),
            generation: 0,
            kind: TimerKind::Escalate { step: 0, round: 0 },
        };
        let before_epoch = Timer {
            due: DateTime::parse_from_rfc3339("1960-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            ..a
        };
        assert!(a.key() < b.key());
        assert!(before_epoch.key() < a.key());
    }

    #[test]
    fn heartbeat_timers_are_keyed_per_heartbeat_and_round_trip_as_json() {
        let hb = |name: &str, due| Timer {
            due,
            incident: IncidentId(0),
            generation: 0,
            kind: TimerKind::Heartbeat {
                heartbeat: heartbeat_id(name),
                expected: t0(),
            },
        };
        let (a, b) = (hb("db-backup", t0()), hb("watchdog", t0()));
        assert_ne!(heartbeat_id("db-backup"), heartbeat_id("watchdog"));
        assert_eq!(heartbeat_id("db-backup"), heartbeat_id("db-backup"));
        assert_ne!(a.key(), b.key());
        assert!(a.key() < hb("db-backup", t0() + Duration::seconds(1)).key());
        let expire = Timer {
            kind: TimerKind::Expire,
            ..a
        };
        assert_ne!(a.key(), expire.key());
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"kind\":\"heartbeat\""), "{json}");
        assert_eq!(serde_json::from_str::<Timer>(&json).unwrap(), a);
    }

    #[test]
    fn targets_resolve_and_collapse() {
        let targets = vec![
            TargetConfig::User("alice".into()),
            TargetConfig::Schedule("primary".into()),
            TargetConfig::Schedule("empty".into()),
            TargetConfig::Webhook("ops".into()),
        ];
        let mut on_call = |s: &str| (s == "primary").then(|| "alice".to_string());
        let (r, uncovered) = resolve_targets(&targets, &mut on_call);
        assert_eq!(
            r,
            vec![
                Recipient::User("alice".into()),
                Recipient::Webhook("ops".into())
            ]
        );
        assert_eq!(uncovered, vec!["empty".to_string()]);
    }
}
