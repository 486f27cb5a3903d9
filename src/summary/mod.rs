//! The post-incident summary, built from the incident and its timeline.
//!
//! Pure: [`build`] turns stored facts into a [`Summary`]; the `summary.md`
//! template renders it as Markdown. [`report`] summarises many incidents:
//! MTTA and MTTR by service and week; [`pages`] their pages: how many each
//! person got, and how many outside working hours.

pub mod pages;
pub mod report;

use crate::incident::{Actor, Incident, TimelineEntry, TimelineEvent};
use crate::runbook::{Runbook, StepState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One delivered page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageLine {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// Who or what.
    pub recipient: String,
    /// How.
    pub method: String,
    /// After how many attempts.
    pub attempts: u32,
}

/// A page tocsin gave up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedPage {
    /// Who or what.
    pub recipient: String,
    /// How.
    pub method: String,
    /// The last error.
    pub error: String,
}

/// A role holder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleLine {
    /// The role.
    pub role: String,
    /// Who.
    pub user: String,
}

/// A note or action item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoteLine {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// What.
    pub text: String,
}

/// A runbook step in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepLine {
    /// Its phase's title.
    pub phase: String,
    /// Its id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Who did or skipped it.
    pub by: Option<String>,
    /// The evidence note.
    pub note: Option<String>,
    /// Why it was skipped.
    pub reason: Option<String>,
}

/// Runbook progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookLine {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Steps done.
    pub done: Vec<StepLine>,
    /// Steps skipped, with reasons.
    pub skipped: Vec<StepLine>,
    /// Steps nobody got to.
    pub not_reached: Vec<StepLine>,
}

/// One timeline line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineLine {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub text: String,
}

/// Everything the summary says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `INC-n`.
    pub key: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Service.
    pub service: String,
    /// Status.
    pub status: String,
    /// Whether it was a drill.
    pub drill: bool,
    /// The maintenance window that held it ("suppressed by maintenance
    /// window NAME ..."), if one did.
    pub maintenance: Option<String>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// First acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// By whom.
    pub acknowledged_by: Option<String>,
    /// Resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// By whom.
    pub resolved_by: Option<String>,
    /// Time to acknowledge, in seconds.
    pub tta_seconds: Option<i64>,
    /// Time to resolve, in seconds.
    pub ttr_seconds: Option<i64>,
    /// Distinct alerts.
    pub alert_count: usize,
    /// Alert events received.
    pub event_count: u64,
    /// How far escalation went.
    pub escalation: Option<String>,
    /// Pages that arrived, in order.
    pub pages: Vec<PageLine>,
    /// Pages given up on.
    pub failed_pages: Vec<FailedPage>,
    /// Roles.
    pub roles: Vec<RoleLine>,
    /// Runbook progress.
    pub runbook: Option<RunbookLine>,
    /// Notes.
    pub notes: Vec<NoteLine>,
    /// Action items.
    pub action_items: Vec<NoteLine>,
    /// Status updates posted for stakeholders.
    pub updates: Vec<NoteLine>,
    /// Changes to the service shortly before it opened, one line each.
    pub changes: Vec<String>,
    /// Whether it flaps, or flapped: "flapping: 5 changes in 30m".
    pub flapping: Option<String>,
    /// The full timeline.
    pub timeline: Vec<TimelineLine>,
}

fn who(a: &Actor) -> String {
    a.to_string()
}

/// Builds the summary of `incident` from its `timeline` and, if one is
/// attached, its `runbook`.
pub fn build(
    incident: &Incident,
    timeline: &[TimelineEntry],
    runbook: Option<&Runbook>,
) -> Summary {
    let mut pages = Vec::new();
    let mut failed_pages = Vec::new();
    let mut notes = Vec::new();
    let mut updates = Vec::new();
    let mut action_items = Vec::new();
    let mut steps_run: Vec<(usize, u32)> = Vec::new();
    let mut policy = None;
    let mut exhausted = false;
    for e in timeline {
        match &e.event {
            TimelineEvent::Paged {
                recipient,
                method,
                attempts,
            } => pages.push(PageLine {
                at: e.at,
                recipient: recipient.clone(),
                method: method.clone(),
                attempts: *attempts,
            }),
            TimelineEvent::DeliveryFailed {
                recipient,
                method,
                error,
                ..
            } => failed_pages.push(FailedPage {
                recipient: recipient.clone(),
                method: method.clone(),
                error: error.clone(),
            }),
            TimelineEvent::DeliveryReport {
                recipient,
                method,
                status,
                reached: false,
                detail,
            } => failed_pages.push(FailedPage {
                recipient: recipient.clone(),
                method: method.clone(),
                error: match detail {
                    Some(d) => format!("{status} ({d})"),
                    None => status.clone(),
                },
            }),
            TimelineEvent::Note { text } => notes.push(NoteLine {
                at: e.at,
                by: who(&e.actor),
                text: text.clone(),
            }),
            TimelineEvent::StatusUpdate { text } => updates.push(NoteLine {
                at: e.at,
                by: who(&e.actor),
                text: text.clone(),
            }),
            TimelineEvent::ActionItem { text } => action_items.push(NoteLine {
                at: e.at,
                by: who(&e.actor),
                text: text.clone(),
            }),
            TimelineEvent::EscalationStep {
                policy: p,
                step,
                round,
                ..
            } => {
                policy.get_or_insert(p.clone());
                steps_run.push((*step, *round));
            }
            TimelineEvent::EscalationExhausted { .. } => exhausted = true,
            _ => {}
        }
    }
    let escalation = policy.map(|p| {
        let (step, round) = steps_run
            .iter()
            .max_by_key(|(s, r)| (*r, *s))
            .copied()
            .unwrap_or((1, 1));
        let mut s = format!("{p}: {} step(s) run, reached step {step}", steps_run.len());
        if round > 1 {
            s.push_str(&format!(" of round {round}"));
        }
        if exhausted {
            s.push_str("; exhausted with nobody acknowledging");
        }
        s
    });
    let runbook_line = match (&incident.runbook, runbook) {
        (Some(progress), Some(rb)) => {
            let mut line = RunbookLine {
                name: rb.name.clone(),
                title: rb.title.clone(),
                done: Vec::new(),
                skipped: Vec::new(),
                not_reached: Vec::new(),
            };
            for phase in &rb.phases {
                for step in &phase.steps {
                    let base = StepLine {
                        phase: phase.title.clone(),
                        id: step.id.clone(),
                        text: step.text.clone(),
                        by: None,
                        note: None,
                        reason: None,
                    };
                    match progress.steps.get(&step.id) {
                        Some(StepState::Done { by, note, .. }) => line.done.push(StepLine {
                            by: Some(by.clone()),
                            note: note.clone(),
                            ..base
                        }),
                        Some(StepState::Skipped { by, reason, .. }) => {
                            line.skipped.push(StepLine {
                                by: Some(by.clone()),
                                reason: Some(reason.clone()),
                                ..base
                            })
                        }
                        None => line.not_reached.push(base),
                    }
                }
            }
            Some(line)
        }
        _ => None,
    };
    Summary {
        key: incident.id.to_string(),
        title: incident.title.clone(),
        severity: incident.severity.to_string(),
        service: incident.service.clone(),
        status: incident.status.to_string(),
        drill: incident.drill,
        maintenance: incident.suppressed.as_ref().map(|s| s.line()),
        opened_at: incident.created_at,
        acknowledged_at: incident.acknowledged_at,
        acknowledged_by: incident.acknowledged_by.as_ref().map(who),
        resolved_at: incident.resolved_at,
        resolved_by: incident.resolved_by.as_ref().map(who),
        tta_seconds: incident
            .acknowledged_at
            .map(|a| (a - incident.created_at).num_seconds()),
        ttr_seconds: incident
            .resolved_at
            .map(|r| (r - incident.created_at).num_seconds()),
        alert_count: incident.alerts.len(),
        event_count: incident.event_count,
        escalation,
        pages,
        failed_pages,
        roles: incident
            .roles
            .iter()
            .map(|(r, u)| RoleLine {
                role: r.clone(),
                user: u.clone(),
            })
            .collect(),
        runbook: runbook_line,
        notes,
        action_items,
        updates,
        changes: incident
            .recent_changes
            .iter()
            .map(crate::incident::ServiceChange::line)
            .collect(),
        flapping: incident
            .flapping_line()
            .or_else(|| crate::incident::flapping::history_line(timeline)),
        timeline: timeline
            .iter()
            .map(|e| TimelineLine {
                at: e.at,
                actor: who(&e.actor),
                text: e.event.describe(),
            })
            .collect(),
    }
}

/// Renders a summary as Markdown with the `summary.md` template.
pub fn render(
    templates: &crate::templates::Templates,
    summary: &Summary,
) -> Result<String, crate::templates::TemplateError> {
    render_for(templates, crate::templates::Markup::Plain, summary)
}

/// Renders a summary with the `summary.md` template for `markup`.
pub fn render_for(
    templates: &crate::templates::Templates,
    markup: crate::templates::Markup,
    summary: &Summary,
) -> Result<String, crate::templates::TemplateError> {
    templates.render_for(markup, "summary.md", serde_json::json!({ "s": summary }))
}

#[cfg(test)]
mod tests;
