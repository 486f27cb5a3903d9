//! Flapping: an alert that fires and resolves over and over.
//!
//! On a service with `flapping = { changes, within }` each incident keeps
//! the times of its alert's recent state changes (opened, resolved, fired
//! again). Once more than `changes` of them fall within `within`, the
//! incident is *flapping*: resolves are held (it stays open, one `flap`
//! entry per change) and re-fires page nobody. It settles once nothing
//! changed for `within`: still firing, it pages again (once); resolved, it
//! resolves for real. Pure: the service stores the settle timer.

use super::{Actor, Change, Incident, TimelineEntry, TimelineEvent};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How many change times an incident keeps: an alert flapping every few
/// seconds must not grow its incident's document without bound.
pub const MAX_KEPT_CHANGES: usize = 1_000;

/// An incident's flap bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlapState {
    /// More changes than this within the window is flapping (the service's
    /// `flapping.changes` when the incident opened).
    pub limit: u32,
    /// The window, in seconds (`flapping.within`).
    pub within_secs: i64,
    /// When the alert changed state within the window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DateTime<Utc>>,
    /// Whether it is flapping: resolves are held, re-fires page nobody.
    #[serde(default)]
    pub flapping: bool,
    /// When it settles if nothing changes before: the last change plus the
    /// window. `None`: nothing to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_at: Option<DateTime<Utc>>,
    /// When its escalation last started (it opened, reopened paging, or
    /// settled firing): a re-fire is quiet only within the window of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_at: Option<DateTime<Utc>>,
}

/// How a settled incident ends up (see [`Incident::settle_flapping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Its alert stayed firing: page again if nobody has taken it.
    Firing {
        /// Whether it is still triggered (so escalation restarts).
        repage: bool,
    },
    /// Its alert stayed resolved: the incident resolved.
    Resolved,
}

impl FlapState {
    /// Starts counting with one change (the alert fired) at `now`.
    pub fn new(limit: u32, within: std::time::Duration, now: DateTime<Utc>) -> Self {
        Self {
            limit,
            within_secs: i64::try_from(within.as_secs()).unwrap_or(i64::MAX),
            changes: vec![now],
            flapping: false,
            settle_at: None,
            paged_at: Some(now),
        }
    }

    /// Whether a re-fire at `now` of its resolved incident (resolved within
    /// the window) reopens it without paging: someone was paged about it
    /// within the window, and its changes are still being counted. A
    /// recurrence long after the last page pages as usual.
    pub fn quiet_refire(&self, now: DateTime<Utc>) -> bool {
        self.recent(now) > 0 && self.paged_at.is_some_and(|p| now - p < self.within())
    }

    /// The window.
    pub fn within(&self) -> Duration {
        Duration::try_seconds(self.within_secs).unwrap_or(Duration::MAX)
    }

    /// How many changes fall within the window before `now`.
    pub fn recent(&self, now: DateTime<Utc>) -> usize {
        let since = now - self.within();
        self.changes.iter().filter(|t| **t > since).count()
    }

    /// Counts a change at `now` (forgetting those past the window); whether
    /// this one made it flapping.
    pub fn record(&mut self, now: DateTime<Utc>) -> bool {
        let since = now - self.within();
        self.changes.retain(|t| *t > since);
        if self.changes.len() >= MAX_KEPT_CHANGES {
            self.changes.remove(0);
        }
        self.changes.push(now);
        if !self.flapping && self.changes.len() > self.limit as usize {
            self.flapping = true;
            return true;
        }
        false
    }

    /// Forgets the changes: the next ones are judged afresh.
    pub fn clear(&mut self) {
        self.changes.clear();
        self.flapping = false;
        self.settle_at = None;
    }

    /// "flapping: 5 changes in 30m", for the card and the summary.
    pub fn describe(&self) -> String {
        format!(
            "flapping: {} changes in {}",
            self.changes.len(),
            window_text(self.within_secs)
        )
    }
}

/// "flapped: 9 changes, held in this incident" from a timeline in which
/// it flapped (and settled); `None` if it never flapped.
pub fn history_line(timeline: &[TimelineEntry]) -> Option<String> {
    let mut changes = None;
    for e in timeline {
        match e.event {
            TimelineEvent::Flapping { changes: n, .. } => {
                *changes.get_or_insert(0) += n;
            }
            TimelineEvent::Flap { .. } => *changes.get_or_insert(0) += 1,
            _ => {}
        }
    }
    changes.map(|n| format!("flapped: {n} changes, held in this incident"))
}

/// `1800` → `30m`, `7200` → `2h`, `90` → `90s`.
pub fn window_text(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Incident {
    /// Whether it is flapping now.
    pub fn is_flapping(&self) -> bool {
        self.flap.as_ref().is_some_and(|f| f.flapping)
    }

    /// "flapping: 5 changes in 30m" while it flaps.
    pub fn flapping_line(&self) -> Option<String> {
        self.flap
            .as_ref()
            .filter(|f| f.flapping)
            .map(FlapState::describe)
    }

    /// When it settles, while open: the time of its settle timer.
    pub fn settle_due(&self) -> Option<DateTime<Utc>> {
        self.flap
            .as_ref()
            .and_then(|f| f.settle_at)
            .filter(|_| self.status.is_open())
    }

    /// Counts a change when the alert fires again after every alert had
    /// resolved: a re-fire of a held (flapping) resolve, or the trigger
    /// that reopened a resolved incident ([`Incident::reopen`]). Sets the
    /// settle time: if it stays firing for the window, the settle pages.
    pub(super) fn note_refire(
        &mut self,
        was_quiet: bool,
        now: DateTime<Utc>,
        entries: &mut Vec<TimelineEntry>,
    ) {
        if !was_quiet || self.firing_alerts() == 0 {
            return;
        }
        let Some(mut f) = self.flap.take() else {
            return;
        };
        let was_flapping = f.flapping;
        let became = f.record(now);
        f.settle_at = Some(now + f.within());
        let event = if became {
            Some(TimelineEvent::Flapping {
                changes: f.changes.len() as u32,
                within_secs: f.within_secs,
            })
        } else {
            was_flapping.then_some(TimelineEvent::Flap { firing: true })
        };
        self.flap = Some(f);
        if let Some(event) = event {
            self.push(entries, now, Actor::System, event);
        }
    }

    /// Every alert resolved (by its sender or its end time): the incident
    /// resolves, unless that change makes or keeps it flapping, in which
    /// case the resolve is held until it settles.
    pub(super) fn alerts_resolved(
        &mut self,
        entries: &mut Vec<TimelineEntry>,
        now: DateTime<Utc>,
        actor: Actor,
        note: Option<String>,
    ) {
        let Some(mut f) = self.flap.take() else {
            self.close(entries, now, actor, note);
            return;
        };
        let became = f.record(now);
        if f.flapping {
            f.settle_at = Some(now + f.within());
            let event = if became {
                TimelineEvent::Flapping {
                    changes: f.changes.len() as u32,
                    within_secs: f.within_secs,
                }
            } else {
                TimelineEvent::Flap { firing: false }
            };
            self.flap = Some(f);
            self.updated_at = now;
            // Nobody is paged for a held resolve: the escalation run ends
            // (its timer becomes a no-op, its queued pages are dropped as
            // from a stopped run); the settle decides whether to page again.
            if let Some(e) = self.escalation.as_mut()
                && e.timer.is_some_and(|t| t.is_escalation())
            {
                e.timer = None;
                e.generation += 1;
            }
            self.push(entries, now, Actor::System, event);
            return;
        }
        // Resolved for now; a re-fire within the window reopens it.
        f.settle_at = None;
        self.flap = Some(f);
        self.close(entries, now, actor, note);
    }

    /// Nothing changed for the window since the last change (the settle
    /// timer fired): still firing, it pages again unless someone has it;
    /// resolved, it resolves for real. Either way flapping ends. `None` if
    /// there was nothing to settle.
    pub fn settle_flapping(&self, now: DateTime<Utc>) -> Option<(Change, Settled)> {
        let f = self.flap.as_ref()?;
        if !self.status.is_open() || f.settle_at.is_none_or(|t| t > now) {
            return None;
        }
        let mut inc = self.clone();
        let mut entries = Vec::new();
        let was_flapping = f.flapping;
        let window = window_text(f.within_secs);
        inc.flap.as_mut().expect("checked").clear();
        inc.updated_at = now;
        if inc.firing_alerts() > 0 || inc.untracked_alerts > 0 || inc.left_out_alerts > 0 {
            let repage = inc.status == super::Status::Triggered;
            if repage {
                inc.flap.as_mut().expect("checked").paged_at = Some(now);
            }
            inc.push(
                &mut entries,
                now,
                Actor::System,
                TimelineEvent::FlapSettled {
                    firing: true,
                    within_secs: self.flap.as_ref().map_or(0, |f| f.within_secs),
                },
            );
            return Some((
                Change {
                    incident: inc,
                    entries,
                },
                Settled::Firing { repage },
            ));
        }
        inc.push(
            &mut entries,
            now,
            Actor::System,
            TimelineEvent::FlapSettled {
                firing: false,
                within_secs: self.flap.as_ref().map_or(0, |f| f.within_secs),
            },
        );
        let note = if was_flapping {
            format!("its alert stayed resolved for {window} after flapping")
        } else {
            format!("its alert stayed resolved for {window}")
        };
        inc.close(&mut entries, now, Actor::System, Some(note));
        Some((
            Change {
                incident: inc,
                entries,
            },
            Settled::Resolved,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{AlertAction, AlertEvent, IncidentId, Status};

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(min)
    }

    fn event(action: AlertAction) -> AlertEvent {
        AlertEvent {
            dedup_key: "disk".into(),
            fingerprint: None,
            action,
            summary: "disk full".into(),
            incident_title: None,
            source: "test".into(),
            severity: None,
            labels: Default::default(),
            details: serde_json::Value::Null,
            links: vec![],
            left_out: None,
            expires_at: None,
        }
    }

    const HALF_HOUR: std::time::Duration = std::time::Duration::from_secs(1800);

    fn watched(limit: u32) -> Incident {
        let mut inc = Incident::open(
            IncidentId(1),
            "api",
            "am",
            &event(AlertAction::Trigger),
            t(0),
        )
        .incident;
        inc.flap = Some(FlapState::new(limit, HALF_HOUR, t(0)));
        inc
    }

    fn refire(inc: &Incident, at: DateTime<Utc>) -> Change {
        let mut c = if inc.status == Status::Resolved {
            inc.reopen(at).unwrap()
        } else {
            Change {
                incident: inc.clone(),
                entries: vec![],
            }
        };
        c.incident
            .apply_alert_in(&event(AlertAction::Trigger), at, &mut c.entries);
        c
    }

    fn kinds(entries: &[TimelineEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                serde_json::to_value(&e.event).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn counts_only_changes_within_the_window() {
        let mut f = FlapState::new(2, HALF_HOUR, t(0));
        assert!(!f.record(t(10)));
        assert_eq!(f.recent(t(10)), 2);
        // t(0) is past the window at t(31): two changes, not three.
        assert!(!f.record(t(31)));
        assert_eq!(f.changes, vec![t(10), t(31)]);
        assert!(f.record(t(32)));
        assert!(f.flapping);
        assert_eq!(f.describe(), "flapping: 3 changes in 30m");
        assert!(!f.record(t(33)), "only the first crossing says so");
    }

    #[test]
    fn keeps_a_bounded_number_of_changes() {
        let mut f = FlapState::new(4, HALF_HOUR, t(0));
        for s in 1..=3000 {
            f.record(t(0) + Duration::milliseconds(s * 100));
        }
        assert!(f.flapping);
        assert_eq!(f.changes.len(), MAX_KEPT_CHANGES);
        assert_eq!(*f.changes.last().unwrap(), t(0) + Duration::seconds(300));
    }

    #[test]
    fn a_refire_is_quiet_only_within_the_window_of_the_last_page() {
        let mut f = FlapState::new(4, HALF_HOUR, t(0));
        f.record(t(10));
        assert!(f.quiet_refire(t(12)));
        // Paged at t(0): 31 minutes on, a re-fire pages again...
        f.record(t(30));
        assert!(!f.quiet_refire(t(31)));
        // ...and counting stopped (a person resolved): it pages too.
        f.paged_at = Some(t(30));
        assert!(f.quiet_refire(t(31)));
        f.clear();
        assert!(!f.quiet_refire(t(31)));
    }

    #[test]
    fn window_reads_like_the_config() {
        assert_eq!(window_text(1800), "30m");
        assert_eq!(window_text(7200), "2h");
        assert_eq!(window_text(90), "90s");
    }

    #[test]
    fn below_the_limit_resolves_and_reopens_quietly() {
        let inc = watched(4);
        let r = inc.apply_alert(&event(AlertAction::Resolve), t(1));
        assert_eq!(r.incident.status, Status::Resolved);
        assert_eq!(r.incident.settle_due(), None);
        let c = refire(&r.incident, t(2));
        assert_eq!(c.incident.status, Status::Triggered);
        assert!(!c.incident.is_flapping());
        assert_eq!(c.incident.settle_due(), Some(t(32)));
        assert_eq!(kinds(&c.entries), ["reopened", "alert_refired"]);
    }

    #[test]
    fn more_changes_than_the_limit_hold_the_resolve_and_log_each_flap() {
        // changes = 4: opened, resolved, fired, resolved, fired (the 5th).
        let mut inc = watched(4);
        let mut all = Vec::new();
        for (i, min) in (1..=9).enumerate() {
            let c = if i % 2 == 0 {
                inc.apply_alert(&event(AlertAction::Resolve), t(min))
            } else {
                refire(&inc, t(min))
            };
            all.extend(c.entries);
            inc = c.incident;
        }
        assert!(inc.is_flapping());
        assert_eq!(inc.status, Status::Triggered, "the last resolve is held");
        assert_eq!(inc.settle_due(), Some(t(39)));
        let k = kinds(&all);
        assert_eq!(k.iter().filter(|k| *k == "resolved").count(), 2);
        assert_eq!(k.iter().filter(|k| *k == "flapping").count(), 1);
        assert_eq!(k.iter().filter(|k| *k == "flap").count(), 5);
        assert_eq!(
            inc.flap.as_ref().unwrap().describe(),
            "flapping: 10 changes in 30m"
        );
    }

    fn flapping_incident() -> Incident {
        let mut inc = watched(1);
        // Opened and resolved: 2 changes > 1, held.
        inc = inc.apply_alert(&event(AlertAction::Resolve), t(1)).incident;
        assert!(inc.is_flapping());
        inc
    }

    #[test]
    fn settles_resolved_for_real() {
        let inc = flapping_incident();
        assert!(inc.settle_flapping(t(30)).is_none(), "not due yet");
        let (c, how) = inc.settle_flapping(t(31)).unwrap();
        assert_eq!(how, Settled::Resolved);
        assert_eq!(c.incident.status, Status::Resolved);
        assert!(!c.incident.is_flapping());
        assert_eq!(kinds(&c.entries), ["flap_settled", "resolved"]);
        assert!(
            c.entries[1]
                .event
                .describe()
                .contains("stayed resolved for 30m")
        );
    }

    #[test]
    fn settles_firing_and_asks_for_a_page_unless_someone_has_it() {
        let inc = refire(&flapping_incident(), t(2)).incident;
        assert_eq!(inc.settle_due(), Some(t(32)));
        let (c, how) = inc.settle_flapping(t(32)).unwrap();
        assert_eq!(how, Settled::Firing { repage: true });
        assert_eq!(c.incident.status, Status::Triggered);
        assert!(!c.incident.is_flapping());
        assert_eq!(c.incident.settle_due(), None);
        let acked = inc.acknowledge(Actor::System, t(3)).unwrap().incident;
        let (_, how) = acked.settle_flapping(t(32)).unwrap();
        assert_eq!(how, Settled::Firing { repage: false });
    }

    #[test]
    fn a_person_resolving_ends_the_watch() {
        let inc = flapping_incident();
        let c = inc.resolve(Actor::System, None, t(2)).unwrap();
        assert_eq!(c.incident.status, Status::Resolved);
        assert!(!c.incident.is_flapping());
        assert!(c.incident.settle_flapping(t(40)).is_none());
        assert_eq!(c.incident.flap.as_ref().unwrap().recent(t(3)), 0);
    }
}
