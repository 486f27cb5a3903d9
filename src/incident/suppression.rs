//! An incident held by a maintenance window: stored and shown, but nobody
//! is paged and no channel opens until the window ends.

use super::{Actor, Change, Incident, Status, TimelineEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The maintenance window that suppresses (or suppressed) an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The window's id (a runtime window's number, or `config:NAME`).
    pub window: String,
    /// Its name.
    pub name: String,
    /// Why the window exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the window ends: the incident is looked at again then.
    pub until: DateTime<Utc>,
    /// When the suppression ended (the window ended or was ended early);
    /// `None` while it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl Suppression {
    /// One line for cards and summaries.
    pub fn line(&self) -> String {
        let mut s = format!("suppressed by maintenance window {}", self.name);
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        match self.ended_at {
            None => s.push_str(&format!(
                " until {}: nobody paged",
                self.until.format("%Y-%m-%d %H:%M UTC")
            )),
            Some(at) => s.push_str(&format!(
                ", which ended at {}",
                at.format("%Y-%m-%d %H:%M UTC")
            )),
        }
        s
    }
}

/// What ending a suppression does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWindow {
    /// Still triggered: page as if it had just arrived.
    Page,
    /// Acknowledged meanwhile: open its channel, page nobody.
    Show,
}

impl Incident {
    /// Whether a maintenance window holds it now.
    pub fn is_suppressed(&self) -> bool {
        self.suppressed
            .as_ref()
            .is_some_and(|s| s.ended_at.is_none())
    }

    /// Holds the incident in a maintenance window until `until`: a
    /// `suppressed` timeline entry naming the window.
    pub fn suppress(
        &mut self,
        entries: &mut Vec<super::TimelineEntry>,
        window: &str,
        name: &str,
        reason: Option<&str>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        self.suppressed = Some(Suppression {
            window: window.to_string(),
            name: name.to_string(),
            reason: reason.map(str::to_string),
            until,
            ended_at: None,
        });
        self.record(
            entries,
            now,
            Actor::System,
            TimelineEvent::Suppressed {
                window: window.to_string(),
                name: name.to_string(),
                reason: reason.map(str::to_string),
                until,
            },
        );
    }

    /// The window holding it ended at `now` (`by`: who ended it early):
    /// `None` if it is not held or is resolved (nothing to do), else what
    /// to do, with the `maintenance_ended` entry in the change.
    pub fn end_suppression(
        &self,
        now: DateTime<Utc>,
        by: Option<&str>,
    ) -> Option<(Change, AfterWindow)> {
        let held = self.suppressed.as_ref().filter(|s| s.ended_at.is_none())?;
        let after = match self.status {
            Status::Resolved => return None,
            Status::Triggered => AfterWindow::Page,
            Status::Acknowledged => AfterWindow::Show,
        };
        let mut change = Change {
            incident: self.clone(),
            entries: Vec::new(),
        };
        let event = TimelineEvent::MaintenanceEnded {
            window: held.window.clone(),
            name: held.name.clone(),
            paged: after == AfterWindow::Page,
            ended_by: by.map(str::to_string),
        };
        if let Some(s) = change.incident.suppressed.as_mut() {
            s.ended_at = Some(now);
        }
        let actor = by.map(Actor::user).unwrap_or(Actor::System);
        change
            .incident
            .record(&mut change.entries, now, actor, event);
        Some((change, after))
    }
}
