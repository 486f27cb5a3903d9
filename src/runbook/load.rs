//! Loading runbook files, with every problem reported by file and line.

use super::{LabelMatcher, Match, Owner, Phase, PhaseKind, Runbook, Runbooks, Step};
use crate::incident::Severity;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A problem in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookError {
    /// The file.
    pub file: PathBuf,
    /// The line (from 1), when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RunbookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: Spanned<String>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "match")]
    matcher: RawMatch,
    /// Whether its incidents get private channels; by default, whether
    /// its `match` names a security tag.
    #[serde(default)]
    private: Option<bool>,
    phases: Vec<RawPhase>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    severities: Vec<Spanned<String>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    phase: Spanned<String>,
    #[serde(default)]
    title: Option<String>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    text: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    owner: Option<Spanned<String>>,
    #[serde(default)]
    evidence: bool,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses one runbook file's text; `file` names it in errors and gives
/// the name the runbook must have.
pub fn parse(file: &Path, text: &str) -> Result<Runbook, Vec<RunbookError>> {
    let err = |line: Option<usize>, message: String| RunbookError {
        file: file.to_owned(),
        line,
        message,
    };
    let raw: RawRunbook = toml::from_str(text).map_err(|e| {
        vec![err(
            e.span().map(|s| line_of(text, s.start)),
            e.message().to_string(),
        )]
    })?;
    let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));
    let mut errors = Vec::new();
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if raw.name.get_ref() != stem {
        errors.push(err(
            at(raw.name.span()),
            format!(
                "name '{}' must match the file name '{stem}'",
                raw.name.get_ref()
            ),
        ));
    }
    let mut severities = Vec::new();
    for s in &raw.matcher.severities {
        match s.get_ref().to_ascii_lowercase().as_str() {
            w @ ("sev1" | "sev2" | "sev3" | "sev4") => {
                severities.push(Severity::from_sender(w).expect("sevN"))
            }
            other => errors.push(err(
                at(s.span()),
                format!("unknown severity '{other}'; use sev1..sev4"),
            )),
        }
    }
    let mut labels = Vec::new();
    for l in &raw.matcher.labels {
        match LabelMatcher::parse(l.get_ref()) {
            Ok(m) => labels.push(m),
            Err(e) => errors.push(err(at(l.span()), format!("bad label matcher: {e}"))),
        }
    }
    if raw.phases.is_empty() {
        errors.push(err(None, "a runbook needs at least one [[phases]]".into()));
    }
    let mut ids = HashSet::new();
    let mut last: Option<PhaseKind> = None;
    let mut phases = Vec::new();
    for p in raw.phases {
        let kind = match p.phase.get_ref().as_str() {
            "detection" => Some(PhaseKind::Detection),
            "assessment" => Some(PhaseKind::Assessment),
            "containment" => Some(PhaseKind::Containment),
            "eradication" => Some(PhaseKind::Eradication),
            "recovery" => Some(PhaseKind::Recovery),
            "post-incident" => Some(PhaseKind::PostIncident),
            other => {
                errors.push(err(
                    at(p.phase.span()),
                    format!("unknown phase '{other}'; use detection, assessment, containment, eradication, recovery, post-incident"),
                ));
                None
            }
        };
        if let Some(k) = kind {
            if last.is_some_and(|l| l >= k) {
                errors.push(err(
                    at(p.phase.span()),
                    format!(
                        "phase '{}' is out of order or repeated; phases follow the lifecycle order",
                        p.phase.get_ref()
                    ),
                ));
            }
            last = Some(k);
        }
        if p.steps.is_empty() {
            errors.push(err(
                at(p.phase.span()),
                format!("phase '{}' has no steps", p.phase.get_ref()),
            ));
        }
        let mut steps = Vec::new();
        for s in p.steps {
            let id = s.id.get_ref().clone();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                errors.push(err(
                    at(s.id.span()),
                    format!("step id '{id}' may only have lowercase letters, digits and '-'"),
                ));
            } else if !ids.insert(id.clone()) {
                errors.push(err(at(s.id.span()), format!("duplicate step id '{id}'")));
            }
            let owner = match s.owner.as_ref().map(|o| o.get_ref().as_str()) {
                None | Some("any") => Owner::Any,
                Some("commander") => Owner::Commander,
                Some("comms") => Owner::Comms,
                Some("scribe") => Owner::Scribe,
                Some(other) => {
                    let span = s.owner.as_ref().expect("some").span();
                    errors.push(err(
                        at(span),
                        format!("unknown role '{other}'; use commander, comms, scribe or any"),
                    ));
                    Owner::Any
                }
            };
            if s.text.trim().is_empty() {
                errors.push(err(at(s.id.span()), format!("step '{id}' has no text")));
            }
            steps.push(Step {
                id,
                text: s.text.trim().to_string(),
                link: s.link,
                command: s.command,
                owner,
                evidence: s.evidence,
            });
        }
        if let Some(k) = kind {
            phases.push(Phase {
                phase: k,
                title: p.title.unwrap_or_else(|| k.title().to_string()),
                steps,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let matcher = Match {
        services: raw.matcher.services,
        severities,
        labels,
    };
    Ok(Runbook {
        name: raw.name.into_inner(),
        title: raw.title,
        description: raw.description,
        private: raw
            .private
            .unwrap_or_else(|| super::names_security_tags(&matcher)),
        matcher,
        phases,
    })
}

/// Loads every `*.toml` in `dir` (sorted by name). A missing directory is
/// no runbooks; every problem of every file is returned at once.
pub fn load_dir(dir: &Path) -> Result<Runbooks, Vec<RunbookError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Runbooks::default()),
        Err(e) => {
            return Err(vec![RunbookError {
                file: dir.to_owned(),
                line: None,
                message: format!("cannot read the runbook directory: {e}"),
            }]);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut runbooks = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => match parse(&f, &text) {
                Ok(r) => runbooks.push(r),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RunbookError {
                file: f.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(Runbooks::new(runbooks))
    } else {
        Err(errors)
    }
}
