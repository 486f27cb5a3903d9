//! Runbooks: loading, matching, and progress through phases and steps.
//!
//! A runbook is a TOML file in `runbooks/` (the format is in the README):
//! what incidents it fits (services, severities, label matchers) and its
//! phases, each with ordered steps. The loader reports every problem of
//! every file at once, each with its file and line. Pure: progress changes
//! take `now` and return data.

mod load;
mod matcher;

pub use load::{RunbookError, load_dir, parse};
pub use matcher::{LabelMatcher, MatchOp};

use crate::incident::{Incident, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The incident-response lifecycle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// Detection and reporting.
    Detection,
    /// Assessment and analysis.
    Assessment,
    /// Containment.
    Containment,
    /// Eradication.
    Eradication,
    /// Recovery.
    Recovery,
    /// Post-incident review.
    PostIncident,
}

impl PhaseKind {
    /// Every phase, in order.
    pub const ALL: [PhaseKind; 6] = [
        Self::Detection,
        Self::Assessment,
        Self::Containment,
        Self::Eradication,
        Self::Recovery,
        Self::PostIncident,
    ];

    /// Its usual title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Detection => "Detection and reporting",
            Self::Assessment => "Assessment and analysis",
            Self::Containment => "Containment",
            Self::Eradication => "Eradication",
            Self::Recovery => "Recovery",
            Self::PostIncident => "Post-incident review",
        }
    }
}

/// Who owns a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The incident commander.
    Commander,
    /// Communications.
    Comms,
    /// The scribe.
    Scribe,
    /// Anyone.
    Any,
}

impl Owner {
    /// The role name, or `None` for anyone.
    pub fn role(self) -> Option<&'static str> {
        match self {
            Self::Commander => Some("commander"),
            Self::Comms => Some("comms"),
            Self::Scribe => Some("scribe"),
            Self::Any => None,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role().unwrap_or("any"))
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Unique in its runbook.
    pub id: String,
    /// What to do.
    pub text: String,
    /// A reference.
    pub link: Option<String>,
    /// A command to run.
    pub command: Option<String>,
    /// Who owns it.
    pub owner: Owner,
    /// Whether marking it done needs a note.
    pub evidence: bool,
}

/// One phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// Which.
    pub phase: PhaseKind,
    /// Its title.
    pub title: String,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// What incidents a runbook fits.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Match {
    /// Services (empty: any).
    pub services: Vec<String>,
    /// Severities (empty: any).
    pub severities: Vec<Severity>,
    /// Label matchers; an incident fits if one of its alerts satisfies all.
    pub labels: Vec<LabelMatcher>,
}

/// A runbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runbook {
    /// Its name (the file name without `.toml`).
    pub name: String,
    /// Its title.
    pub title: String,
    /// When to use it.
    pub description: String,
    /// What it fits.
    pub matcher: Match,
    /// Whether the incidents it fits get private channels (the file's
    /// `private`, by default whether its `match` names a security tag).
    pub private: bool,
    /// Its phases, in lifecycle order.
    pub phases: Vec<Phase>,
}

/// The labels that tag an alert's kind: a runbook whose `match` requires
/// one of them to be `security` (like `category="security"` or
/// `type=~"security|abuse"`), or requires a `security` label at all, is
/// about security incidents.
pub const SECURITY_TAG_LABELS: &[&str] =
    &["category", "class", "kind", "type", "tag", "tags", "team"];

/// Whether `m` names a security tag (see [`SECURITY_TAG_LABELS`]): its
/// incidents get private channels unless the runbook says otherwise.
pub fn names_security_tags(m: &Match) -> bool {
    use matcher::MatchOp;
    m.labels.iter().any(|l| {
        let positive = matches!(l.op, MatchOp::Eq | MatchOp::Re);
        let tagged = |name: &str| {
            l.matches(&BTreeMap::from([(
                name.to_string(),
                "security".to_string(),
            )]))
        };
        positive
            && ((l.name == "security" && !l.value.is_empty())
                || (SECURITY_TAG_LABELS.contains(&l.name.as_str()) && tagged(&l.name)))
    })
}

impl Runbook {
    /// Whether it fits `incident`.
    pub fn matches(&self, incident: &Incident) -> bool {
        let m = &self.matcher;
        if !m.services.is_empty() && !m.services.contains(&incident.service) {
            return false;
        }
        if !m.severities.is_empty() && !m.severities.contains(&incident.severity) {
            return false;
        }
        m.labels.is_empty()
            || incident
                .alerts
                .values()
                .any(|a| m.labels.iter().all(|l| l.matches(&a.labels)))
    }

    /// A step by id, with its phase index.
    pub fn step(&self, id: &str) -> Option<(usize, &Step)> {
        self.phases
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.steps.iter().find(|s| s.id == id).map(|s| (i, s)))
    }
}

/// The loaded runbooks, by name.
#[derive(Debug, Clone, Default)]
pub struct Runbooks(BTreeMap<String, Runbook>);

impl Runbooks {
    /// From a list.
    pub fn new(list: Vec<Runbook>) -> Self {
        Self(list.into_iter().map(|r| (r.name.clone(), r)).collect())
    }

    /// By name.
    pub fn get(&self, name: &str) -> Option<&Runbook> {
        self.0.get(name)
    }

    /// All, by name.
    pub fn all(&self) -> impl Iterator<Item = &Runbook> {
        self.0.values()
    }

    /// Those that fit `incident`, by name.
    pub fn matching<'a>(
        &'a self,
        incident: &'a Incident,
    ) -> impl Iterator<Item = &'a Runbook> + 'a {
        self.0.values().filter(move |r| r.matches(incident))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// Done.
    Done {
        /// By whom.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// The note (evidence), if any.
        note: Option<String>,
    },
    /// Skipped.
    Skipped {
        /// By whom.
        by: String,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

/// An incident's progress through its runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The runbook's name.
    pub runbook: String,
    /// The current phase's index.
    pub phase: usize,
    /// Steps done or skipped, by id.
    pub steps: BTreeMap<String, StepState>,
}

/// Why a runbook command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunbookCommandError {
    /// No runbook attached.
    #[error("no runbook is attached; list the ones that fit with /incident runbook")]
    NoneAttached,
    /// The attached runbook is no longer loaded.
    #[error("runbook '{0}' is no longer loaded")]
    Missing(String),
    /// Unknown step id.
    #[error("runbook '{runbook}' has no step '{step}'")]
    UnknownStep {
        /// The runbook.
        runbook: String,
        /// The id given.
        step: String,
    },
    /// Already done or skipped.
    #[error("step '{0}' is already {1}")]
    AlreadyFinished(String, &'static str),
    /// Evidence required.
    #[error(
        "step '{0}' needs evidence: add a note, like /incident step done {0} <what you found or did>"
    )]
    NeedsEvidence(String),
    /// A skip needs a reason.
    #[error("say why you skip step '{0}': /incident step skip {0} <reason>")]
    NeedsReason(String),
    /// Steps of the phase are still open.
    #[error("finish or skip these steps of {phase} first: {steps}")]
    PhaseOpen {
        /// The phase title.
        phase: String,
        /// The open step ids.
        steps: String,
    },
    /// No further phase.
    #[error("this is the last phase; resolve the incident when it is done")]
    LastPhase,
}

impl Progress {
    /// A fresh progress through `runbook`.
    pub fn start(runbook: &Runbook) -> Self {
        Self {
            runbook: runbook.name.clone(),
            phase: 0,
            steps: BTreeMap::new(),
        }
    }

    /// Steps of phase `i` neither done nor skipped.
    pub fn open_steps<'a>(&'a self, runbook: &'a Runbook, i: usize) -> Vec<&'a Step> {
        runbook
            .phases
            .get(i)
            .map(|p| {
                p.steps
                    .iter()
                    .filter(|s| !self.steps.contains_key(&s.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks a step done (with the evidence note it may need).
    pub fn done(
        &mut self,
        runbook: &Runbook,
        id: &str,
        note: Option<String>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RunbookCommandError> {
        let (_, step) = self.check_open(runbook, id)?;
        let note = note.filter(|n| !n.trim().is_empty());
        if step.evidence && note.is_none() {
            return Err(RunbookCommandError::NeedsEvidence(id.into()));
        }
        self.steps.insert(
            id.into(),
            StepState::Done {
                by: by.into(),
                at: now,
                note,
            },
        );
        Ok(())
    }

    /// Skips a step, with a reason.
    pub fn skip(
        &mut self,
        runbook: &Runbook,
        id: &str,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RunbookCommandError> {
        self.check_open(runbook, id)?;
        if reason.trim().is_empty() {
            return Err(RunbookCommandError::NeedsReason(id.into()));
        }
        self.steps.insert(
            id.into(),
            StepState::Skipped {
                by: by.into(),
                at: now,
                reason: reason.trim().into(),
            },
        );
        Ok(())
    }

    /// Moves to the next phase once every step of this one is done or skipped.
    pub fn next_phase<'r>(
        &mut self,
        runbook: &'r Runbook,
    ) -> Result<&'r Phase, RunbookCommandError> {
        let open = self.open_steps(runbook, self.phase);
        if !open.is_empty() {
            return Err(RunbookCommandError::PhaseOpen {
                phase: runbook.phases[self.phase].title.clone(),
                steps: open
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if self.phase + 1 >= runbook.phases.len() {
            return Err(RunbookCommandError::LastPhase);
        }
        self.phase += 1;
        Ok(&runbook.phases[self.phase])
    }

    fn check_open<'a>(
        &self,
        runbook: &'a Runbook,
        id: &str,
    ) -> Result<(usize, &'a Step), RunbookCommandError> {
        let found = runbook
            .step(id)
            .ok_or_else(|| RunbookCommandError::UnknownStep {
                runbook: runbook.name.clone(),
                step: id.into(),
            })?;
        match self.steps.get(id) {
            Some(StepState::Done { .. }) => {
                Err(RunbookCommandError::AlreadyFinished(id.into(), "done"))
            }
            Some(StepState::Skipped { .. }) => {
                Err(RunbookCommandError::AlreadyFinished(id.into(), "skipped"))
            }
            None => Ok(found),
        }
    }
}

#[cfg(test)]
mod tests;
