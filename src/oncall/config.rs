//! The `[[schedules]]` configuration and its validation into a [`Schedule`].

use super::cronset::{CronSet, FIRST_YEAR, LAST_YEAR};
use super::rotation::Rotation;
use super::{Layer, Override, Restriction, Schedule};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use std::str::FromStr;

/// `[[schedules]]`: an on-call schedule of layered rotations and overrides.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// IANA time zone the layers' times are read in, like `Europe/Berlin`.
    pub time_zone: String,
    /// Rotations; when several are active, the last one listed wins.
    #[serde(default)]
    pub layers: Vec<LayerConfig>,
    /// Fixed replacements that beat every layer.
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

/// `[[schedules.layers]]`: users taking turns, handing off on a cron schedule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// Name, unique within the schedule.
    pub name: String,
    /// The users in rotation order; the first one starts.
    pub users: Vec<String>,
    /// Local wall-clock start like `2026-01-05T09:00:00` (quoted or a TOML local date-time).
    #[serde(deserialize_with = "string_or_toml_datetime")]
    pub start: String,
    /// Cron expression with seconds for the handoffs in local time, like `0 0 9 * * Mon`.
    pub handoff: String,
    /// Windows the layer is active in; none means always.
    #[serde(default)]
    pub restrictions: Vec<RestrictionConfig>,
}

/// A daily window a layer is active in, in the schedule's time zone.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionConfig {
    /// Days the window starts on (`mon`..`sun` or full names); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local start like `09:00`.
    pub start: String,
    /// Local end like `17:00`; at or before `start` the window ends the next day.
    pub end: String,
}

/// `[[schedules.overrides]]`: someone covering a fixed period.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Who is on call instead.
    pub user: String,
    /// RFC 3339 start with an offset (quoted or a TOML offset date-time).
    #[serde(deserialize_with = "rfc3339")]
    pub start: DateTime<FixedOffset>,
    /// RFC 3339 end with an offset, after `start`.
    #[serde(deserialize_with = "rfc3339")]
    pub end: DateTime<FixedOffset>,
}

/// One problem in a schedule's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScheduleIssue {
    /// Where, relative to the schedule, like `layers[0].handoff`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A TOML date-time is not a string; accept both spellings.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrDatetime {
    String(String),
    Toml(toml::value::Datetime),
}

impl StringOrDatetime {
    fn into_string(self) -> String {
        match self {
            Self::String(s) => s,
            Self::Toml(d) => d.to_string(),
        }
    }
}

fn string_or_toml_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    StringOrDatetime::deserialize(d)
        .map(StringOrDatetime::into_string)
        .map_err(|_| {
            serde::de::Error::custom("expected a local date-time like 2026-01-05T09:00:00")
        })
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    const EXPECTED: &str =
        "expected an RFC 3339 date-time with an offset, like 2026-01-05T09:00:00+01:00";
    let s = StringOrDatetime::deserialize(d)
        .map_err(|_| serde::de::Error::custom(EXPECTED))?
        .into_string();
    DateTime::parse_from_rfc3339(&s)
        .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}; {EXPECTED}")))
}

/// A layer start: local wall-clock time, seconds optional, no offset.
fn parse_local(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim();
    let parsed = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
        .map_err(|_| {
            format!(
                "'{s}' is not a local date-time like 2026-01-05T09:00:00 \
                 (no offset: the schedule's time_zone applies)"
            )
        })?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&parsed.year()) {
        return Err(format!(
            "'{s}' is outside the years {FIRST_YEAR}..={LAST_YEAR} handoffs can happen in"
        ));
    }
    Ok(parsed)
}

/// A handoff cron expression; a five-field crontab line gets a hint.
fn parse_cron(s: &str) -> Result<CronSet, String> {
    let fields = s.split_whitespace().count();
    if !s.trim_start().starts_with('@') && !(6..=7).contains(&fields) {
        return Err(format!(
            "'{s}' has {fields} fields; use seconds minutes hours day-of-month month \
             day-of-week [year], like \"0 0 9 * * Mon\""
        ));
    }
    cron::Schedule::from_str(s)
        .map(|c| CronSet::new(&c))
        .map_err(|e| {
            // cron's message repeats the expression with a caret under the
            // problem; its last line says what the problem is.
            let text = e.to_string();
            let why = text
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("");
            format!("'{s}' is not a valid cron expression: {why}")
        })
}

fn parse_day(s: &str) -> Result<Weekday, String> {
    Weekday::from_str(s.trim())
        .map_err(|_| format!("'{s}' is not a day; use mon, tue, wed, thu, fri, sat or sun"))
}

fn parse_time(s: &str, is_end: bool) -> Result<NaiveTime, String> {
    let t = s.trim();
    if is_end && (t == "24:00" || t == "24:00:00") {
        return Ok(NaiveTime::MIN);
    }
    NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
        .map_err(|_| format!("'{s}' is not a time like 09:00"))
}

impl Schedule {
    /// Validates and builds; `is_user` says whether a user name exists. Returns every problem.
    pub fn build(
        cfg: &ScheduleConfig,
        is_user: &dyn Fn(&str) -> bool,
    ) -> Result<Schedule, Vec<ScheduleIssue>> {
        let mut issues = Vec::new();
        let mut issue =
            |path: String, message: String| issues.push(ScheduleIssue { path, message });

        if cfg.name.trim().is_empty() {
            issue("name".into(), "must not be empty".into());
        }
        let tz = match Tz::from_str(cfg.time_zone.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                issue(
                    "time_zone".into(),
                    format!(
                        "unknown time zone '{}'; use an IANA name like Europe/Berlin",
                        cfg.time_zone
                    ),
                );
                None
            }
        };

        let mut layers = Vec::new();
        let mut names = HashSet::new();
        for (i, l) in cfg.layers.iter().enumerate() {
            let at = |field: &str| format!("layers[{i}].{field}");
            if l.name.trim().is_empty() {
                issue(at("name"), "must not be empty".into());
            } else if !names.insert(l.name.as_str()) {
                issue(
                    at("name"),
                    format!("layer '{}' is defined twice in this schedule", l.name),
                );
            }
            if l.users.is_empty() {
                issue(at("users"), "must list at least one user".into());
            }
            for (j, u) in l.users.iter().enumerate() {
                if !is_user(u) {
                    issue(
                        format!("layers[{i}].users[{j}]"),
                        format!("unknown user '{u}'"),
                    );
                }
            }
            let start = parse_local(&l.start)
                .map_err(|m| issue(at("start"), m))
                .ok();
            let cron = parse_cron(&l.handoff)
                .map_err(|m| issue(at("handoff"), m))
                .ok();
            if let (Some(start), Some(cron)) = (start, &cron)
                && cron.next_after(start).is_none()
            {
                issue(
                    at("handoff"),
                    format!("'{}' never fires after the start {start}", l.handoff),
                );
            }
            let mut restrictions = Vec::new();
            for (k, r) in l.restrictions.iter().enumerate() {
                let at = |field: &str| format!("layers[{i}].restrictions[{k}].{field}");
                let mut days = 0u8;
                for (d, day) in r.days.iter().enumerate() {
                    match parse_day(day) {
                        Ok(w) => days |= 1 << w.num_days_from_monday(),
                        Err(m) => issue(at(&format!("days[{d}]")), m),
                    }
                }
                if r.days.is_empty() {
                    days = 0x7f;
                }
                let start = parse_time(&r.start, false).map_err(|m| issue(at("start"), m));
                let end = parse_time(&r.end, true).map_err(|m| issue(at("end"), m));
                if let (Ok(start), Ok(end)) = (start, end) {
                    restrictions.push(Restriction { days, start, end });
                }
            }
            if let (Some(tz), Some(start), Some(cron)) = (tz, start, cron) {
                layers.push(Layer {
                    name: l.name.clone(),
                    rotation: Rotation::new(tz, cron, l.users.clone(), start),
                    restrictions,
                });
            }
        }

        let mut overrides = Vec::new();
        for (k, o) in cfg.overrides.iter().enumerate() {
            if !is_user(&o.user) {
                issue(
                    format!("overrides[{k}].user"),
                    format!("unknown user '{}'", o.user),
                );
            }
            if o.end <= o.start {
                issue(
                    format!("overrides[{k}].end"),
                    format!("must be after start ({})", o.start.to_rfc3339()),
                );
            }
            overrides.push(Override {
                user: o.user.clone(),
                start: o.start.to_utc(),
                end: o.end.to_utc(),
            });
        }

        match tz {
            Some(tz) if issues.is_empty() => Ok(Schedule {
                name: cfg.name.clone(),
                tz,
                layers,
                overrides,
            }),
            _ => Err(issues),
        }
    }
}
