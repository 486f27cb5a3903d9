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

/// Weekday names by crontab number (0 and 7 are Sunday).
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One weekday, by name (`Mon`, `monday`) or crontab number (0-7, 0 and 7
/// Sunday); days from Sunday, and whether it was a number.
fn weekday(token: &str, whole: &str) -> Result<(usize, bool), String> {
    let t = token.trim();
    if let Ok(n) = t.parse::<usize>() {
        return match n {
            0..=7 => Ok((n % 7, true)),
            _ => Err(format!(
                "day of week '{t}' in '{whole}' is out of range: use names (Mon-Sun) or crontab numbers 0-7 (0 and 7 are Sunday)"
            )),
        };
    }
    const FULL: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let lower = t.to_ascii_lowercase();
    FULL.iter()
        .position(|f| *f == lower || (lower.len() == 3 && f.starts_with(&lower)))
        .map(|i| (i, false))
        .ok_or_else(|| {
            format!("'{t}' in '{whole}' is not a day of the week: use Mon, Tue, ... Sun")
        })
}

/// The day-of-week field rewritten as names the `cron` crate reads the
/// way people mean them, and whether it used numbers.
///
/// Accepted beyond what `cron` takes: crontab numbering (0 or 7 Sunday, 1
/// Monday ... 6 Saturday; `cron` itself counts 1 = Sunday), ranges that
/// wrap or cover the week (`Fri-Mon`, `Mon-Sun`), and steps over them.
/// Quartz's `Mon#1`, `L` and `W` are refused with what to write instead.
fn weekday_field(field: &str, whole: &str) -> Result<(String, bool), String> {
    if field == "*" || field == "?" {
        return Ok((field.to_string(), false));
    }
    if field.contains('#') {
        return Err(format!(
            "'{field}' in '{whole}': the nth weekday of a month (#) is not supported; days of month and week must both match, so write the first Monday as day of month 1-7 with Mon, like \"0 0 9 1-7 * Mon\""
        ));
    }
    if field.contains(['L', 'W']) && !field.to_ascii_lowercase().contains("wed") {
        return Err(format!(
            "'{field}' in '{whole}': L and W (last day, weekday nearest) are not supported; name the days instead"
        ));
    }
    let mut days = [false; 7];
    let mut numeric = false;
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => {
                let step = s
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        format!(
                            "step '/{s}' in '{whole}' must be a whole number of days, at least 1"
                        )
                    })?;
                (b, step)
            }
            None => (part, 1),
        };
        let (from, len) = if base == "*" || base == "?" {
            (0, 7)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, na) = weekday(a, whole)?;
            let (b, nb) = weekday(b, whole)?;
            numeric |= na || nb;
            // Inclusive, wrapping past Saturday: Fri-Mon is Fri Sat Sun Mon,
            // Mon-Sun the whole week.
            let len = if b >= a { b - a + 1 } else { 7 - a + b + 1 };
            // `0-7` is the whole week, not Sunday alone.
            let len = if a == 0 && base.trim().ends_with('7') {
                7
            } else {
                len
            };
            (a, len)
        } else {
            let (d, n) = weekday(base, whole)?;
            numeric |= n;
            (d, if part.contains('/') { 7 - d } else { 1 })
        };
        for k in (0..len).step_by(step) {
            days[(from + k) % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok(("*".into(), numeric));
    }
    let names: Vec<&str> = (0..7).filter(|d| days[*d]).map(|d| DAY_NAMES[d]).collect();
    Ok((names.join(","), numeric))
}

/// A handoff expression with its day-of-week field rewritten for `cron`
/// (see [`weekday_field`]), and whether that field used numbers.
fn normalize_handoff(s: &str) -> Result<(String, bool), String> {
    let mut fields: Vec<&str> = s.split_whitespace().collect();
    if s.trim_start().starts_with('@') || fields.len() < 6 {
        return Ok((s.to_string(), false));
    }
    let (dow, numeric) = weekday_field(fields[5], s)?;
    fields[5] = &dow;
    Ok((fields.join(" "), numeric))
}

/// A note for `tocsin check` when a handoff names weekdays by number.
pub(crate) fn handoff_warning(s: &str) -> Option<String> {
    match normalize_handoff(s) {
        Ok((normal, true)) => Some(format!(
            "'{s}' names weekdays by number, read as crontab counts them (0 and 7 Sunday, 1 Monday): it hands off on {}; write day names to make it plain",
            normal.split_whitespace().nth(5).unwrap_or("*")
        )),
        _ => None,
    }
}

/// A handoff cron expression; a five-field crontab line gets a hint.
pub(super) fn parse_cron(s: &str) -> Result<CronSet, String> {
    let fields = s.split_whitespace().count();
    if !s.trim_start().starts_with('@') && !(6..=7).contains(&fields) {
        return Err(format!(
            "'{s}' has {fields} fields; use seconds minutes hours day-of-month month \
             day-of-week [year], like \"0 0 9 * * Mon\""
        ));
    }
    let (normal, _) = normalize_handoff(s)?;
    cron::Schedule::from_str(&normal)
        .map(|c| CronSet::new(&c))
        .map_err(|e| {
            // cron's message repeats the expression with a caret under the
            // problem; its last line usually says what the problem is, and
            // sometimes is only the caret.
            let text = e.to_string();
            let why = text
                .lines()
                .map(str::trim)
                .filter(|l| l.chars().any(char::is_alphanumeric))
                .rfind(|l| *l != normal.trim())
                .unwrap_or("");
            if why.is_empty() {
                format!(
                    "'{s}' is not a valid cron expression: use seconds minutes hours day-of-month month day-of-week [year], each a number, a range (1-5), a list (1,3), a step (*/15) or *, like \"0 0 9 * * Mon\""
                )
            } else {
                format!("'{s}' is not a valid cron expression: {why}")
            }
        })
}

/// A day name: `mon`..`sun` or a full name.
pub(crate) fn parse_day(s: &str) -> Result<Weekday, String> {
    Weekday::from_str(s.trim())
        .map_err(|_| format!("'{s}' is not a day; use mon, tue, wed, thu, fri, sat or sun"))
}

/// A local time like `09:00`; with `is_end`, `24:00` is midnight.
pub(crate) fn parse_time(s: &str, is_end: bool) -> Result<NaiveTime, String> {
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

#[cfg(test)]
mod handoff_tests {
    use super::*;
    use chrono::NaiveDate;

    fn days(s: &str) -> String {
        normalize_handoff(s)
            .unwrap()
            .0
            .split_whitespace()
            .nth(5)
            .unwrap()
            .to_string()
    }

    #[test]
    fn weekday_numbers_count_as_in_crontab_and_ranges_may_wrap() {
        assert_eq!(days("0 0 9 * * 1"), "Mon");
        assert_eq!(days("0 0 9 * * 0"), "Sun");
        assert_eq!(days("0 0 9 * * 7"), "Sun");
        assert_eq!(days("0 0 9 * * 1-5"), "Mon,Tue,Wed,Thu,Fri");
        assert_eq!(days("0 0 9 * * Fri-Mon"), "Sun,Mon,Fri,Sat");
        assert_eq!(days("0 0 9 * * Mon-Sun"), "*");
        assert_eq!(days("0 0 9 * * 0-7"), "*");
        assert_eq!(days("0 0 9 * * Sat-Sun"), "Sun,Sat");
        assert_eq!(days("0 0 9 * * Mon-Fri/2"), "Mon,Wed,Fri");
        assert_eq!(days("0 0 9 * * */2"), "Sun,Tue,Thu,Sat");
        assert_eq!(days("0 0 9 * * monday,Wednesday"), "Mon,Wed");
        assert_eq!(days("0 0 9 * * *"), "*");
        // Fri-Mon parses and fires on Friday through Monday only.
        let c = parse_cron("0 0 9 * * Fri-Mon").unwrap();
        let fri = NaiveDate::from_ymd_opt(2026, 12, 4)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let mut t = fri;
        let mut seen = Vec::new();
        for _ in 0..5 {
            t = c.next_after(t).unwrap();
            seen.push(t.format("%a").to_string());
        }
        assert_eq!(seen, ["Fri", "Sat", "Sun", "Mon", "Fri"]);
        // A numeric Monday hands off on Mondays (2026-12-07 is one).
        let c = parse_cron("0 0 9 * * 1").unwrap();
        assert_eq!(
            c.next_after(fri).unwrap().format("%a %d").to_string(),
            "Mon 07"
        );
    }

    #[test]
    fn numeric_weekdays_are_warned_about_and_names_are_not() {
        let w = handoff_warning("0 0 9 * * 1").unwrap();
        assert!(w.contains("crontab") && w.contains("Mon"), "{w}");
        assert!(handoff_warning("0 0 9 * * Mon").is_none());
        assert!(handoff_warning("0 0 9 * * *").is_none());
    }

    #[test]
    fn unsupported_weekday_forms_say_what_to_write() {
        let e = parse_cron("0 0 9 * * Mon#1").unwrap_err();
        assert!(e.contains("nth weekday") && e.contains("1-7 * Mon"), "{e}");
        let e = parse_cron("0 0 9 * * 5L").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = parse_cron("0 0 9 * * 8").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = parse_cron("0 0 9 * * Funday").unwrap_err();
        assert!(e.contains("not a day of the week"), "{e}");
        // The first Monday of the month, the way the message suggests.
        let c = parse_cron("0 0 9 1-7 * Mon").unwrap();
        let start = NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(
            c.next_after(start).unwrap().date().to_string(),
            "2026-12-07"
        );
        // Every other error names its problem in words, never only "^".
        for bad in [
            "0 0 25 * * *",
            "0 0 9 * * Mon-",
            "x 0 9 * * *",
            "0 0 9 32 * *",
        ] {
            let e = parse_cron(bad).unwrap_err();
            let why = e.rsplit(": ").next().unwrap();
            assert!(
                why.chars().filter(|c| c.is_alphabetic()).count() > 3,
                "{bad}: {e}"
            );
        }
    }
}
