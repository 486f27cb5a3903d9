//! `[reports]`: what the pages report counts as working hours, and the
//! time zone of people without their own `[[users]] time_zone`.

use super::{Config, ConfigIssue, Origins};
use chrono::{DateTime, Datelike, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;

/// `[reports]`: working hours for the pages report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// The time zone of people without a `time_zone` of their own (IANA
    /// name).
    pub time_zone: String,
    /// Local working hours, `HH:MM-HH:MM` (the end is not included;
    /// `24:00` is midnight).
    pub working_hours: String,
    /// Working days: `mon`..`sun`.
    pub working_days: Vec<String>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            working_hours: "09:00-18:00".into(),
            working_days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Working hours and days, and each person's time zone: whether a page
/// reached someone outside their working hours.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingTime {
    start: NaiveTime,
    /// `None`: midnight, the end of the day.
    end: Option<NaiveTime>,
    /// Bit `n` set: the `n`th day from Monday is a working day.
    days: u8,
    default_zone: Tz,
    zones: HashMap<String, Tz>,
}

impl Default for WorkingTime {
    /// 09:00 to 18:00, Monday to Friday, in UTC for everyone.
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(18, 0, 0),
            days: 0b0001_1111,
            default_zone: Tz::UTC,
            zones: HashMap::new(),
        }
    }
}

impl WorkingTime {
    /// Gives `user` their own time zone.
    pub fn with_zone(mut self, user: &str, zone: Tz) -> Self {
        self.zones.insert(user.to_string(), zone);
        self
    }

    /// The time zone of people without their own.
    pub fn default_zone(&self) -> Tz {
        self.default_zone
    }

    /// `user`'s time zone: their own, or the default.
    pub fn time_zone(&self, user: &str) -> Tz {
        self.zones.get(user).copied().unwrap_or(self.default_zone)
    }

    /// `user`'s own time zone (`[[users]] time_zone`), if they have one.
    pub fn own_zone(&self, user: &str) -> Option<Tz> {
        self.zones.get(user).copied()
    }

    /// Whether a local wall-clock time is inside working hours: on a
    /// working day, at or after the start and before the end.
    pub fn is_working(&self, local: NaiveDateTime) -> bool {
        let day = 1u8 << local.weekday().num_days_from_monday();
        let t = local.time();
        self.days & day != 0 && t >= self.start && self.end.is_none_or(|end| t < end)
    }

    /// Whether `at` is outside `user`'s working hours, on their clock.
    pub fn is_outside(&self, user: &str, at: DateTime<Utc>) -> bool {
        !self.is_working(at.with_timezone(&self.time_zone(user)).naive_local())
    }

    /// The hours as configured: `09:00-18:00`.
    pub fn hours(&self) -> String {
        format!(
            "{}-{}",
            self.start.format("%H:%M"),
            self.end
                .map_or_else(|| "24:00".to_string(), |e| e.format("%H:%M").to_string())
        )
    }

    /// The working days, Monday first: `["mon", "tue", ...]`.
    pub fn days(&self) -> Vec<&'static str> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        (0..7)
            .filter(|n| self.days & (1 << n) != 0)
            .map(|n| NAMES[n])
            .collect()
    }
}

fn zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim())
        .map_err(|_| format!("unknown time zone '{name}'; use an IANA name like Europe/Berlin"))
}

fn hours(raw: &str) -> Result<(NaiveTime, Option<NaiveTime>), String> {
    let shape = || format!("'{raw}' is not a range of local times like 09:00-18:00");
    let (start, end) = raw.split_once('-').ok_or_else(shape)?;
    let start = crate::oncall::parse_time(start, false).map_err(|_| shape())?;
    let end = crate::oncall::parse_time(end, true).map_err(|_| shape())?;
    // `parse_time` reads an end of 24:00 (or 00:00) as midnight.
    let end = (end != NaiveTime::MIN).then_some(end);
    if end.is_some_and(|e| e <= start) {
        return Err(format!(
            "'{raw}' must end after it starts, on the same day (like 09:00-18:00; 24:00 is midnight)"
        ));
    }
    Ok((start, end))
}

/// Builds the working time of `config`, or says what is wrong (with the
/// key paths `tocsin check` prints).
pub(super) fn working_time(
    config: &Config,
    origins: &Origins,
) -> Result<WorkingTime, Vec<ConfigIssue>> {
    let r = &config.reports;
    let mut issues = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });
    let default_zone = zone(&r.time_zone)
        .map_err(|m| issue("reports.time_zone".into(), m))
        .ok();
    let range = hours(&r.working_hours)
        .map_err(|m| issue("reports.working_hours".into(), m))
        .ok();
    let mut days = 0u8;
    for (i, d) in r.working_days.iter().enumerate() {
        match crate::oncall::parse_day(d) {
            Ok(w) => days |= 1 << w.num_days_from_monday(),
            Err(m) => issue(format!("reports.working_days[{i}]"), m),
        }
    }
    if r.working_days.is_empty() {
        issue(
            "reports.working_days".into(),
            "must list at least one day, like [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]".into(),
        );
    }
    let mut zones = HashMap::new();
    for (i, u) in config.users.iter().enumerate() {
        if let Some(name) = &u.time_zone {
            match zone(name) {
                Ok(tz) => {
                    zones.insert(u.name.clone(), tz);
                }
                Err(m) => issue(format!("users[{}].time_zone", origins.at("users", i)), m),
            }
        }
    }
    match (default_zone, range, issues.is_empty()) {
        (Some(default_zone), Some((start, end)), true) => Ok(WorkingTime {
            start,
            end,
            days,
            default_zone,
            zones,
        }),
        _ => Err(issues),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn config(toml: &str) -> Result<Config, super::super::ConfigError> {
        Config::from_toml_str(toml, &HashMap::new())
    }

    #[test]
    fn weekends_are_outside_working_hours() {
        let w = WorkingTime::default();
        // 2026-12-05 is a Saturday, 2026-12-06 a Sunday, 2026-12-07 a Monday.
        assert!(w.is_outside("alice", utc("2026-12-05T12:00:00Z")));
        assert!(w.is_outside("alice", utc("2026-12-06T12:00:00Z")));
        assert!(!w.is_outside("alice", utc("2026-12-07T12:00:00Z")));
        assert!(!w.is_outside("alice", utc("2026-12-04T12:00:00Z")));
    }

    #[test]
    fn working_hours_start_at_nine_and_end_before_six() {
        let w = WorkingTime::default();
        assert!(w.is_outside("alice", utc("2026-12-07T08:59:00Z")));
        assert!(w.is_outside("alice", utc("2026-12-07T08:59:59Z")));
        assert!(!w.is_outside("alice", utc("2026-12-07T09:00:00Z")));
        assert!(!w.is_outside("alice", utc("2026-12-07T17:59:59Z")));
        assert!(w.is_outside("alice", utc("2026-12-07T18:00:00Z")));
        assert!(w.is_outside("alice", utc("2026-12-07T02:00:00Z")));
    }

    #[test]
    fn each_person_is_judged_on_their_own_clock() {
        let w = WorkingTime::default().with_zone("bob", chrono_tz::America::New_York);
        // 08:00 UTC on a Monday: alice (UTC) is not at work yet, and in New
        // York it is 03:00.
        assert!(w.is_outside("alice", utc("2026-12-07T08:00:00Z")));
        assert!(w.is_outside("bob", utc("2026-12-07T08:00:00Z")));
        // 20:00 UTC: past alice's 18:00, 15:00 for bob.
        assert!(w.is_outside("alice", utc("2026-12-07T20:00:00Z")));
        assert!(!w.is_outside("bob", utc("2026-12-07T20:00:00Z")));
        // 02:00 UTC on a Saturday is still Friday evening in New York, but
        // past 18:00; 22:00 UTC on a Friday is 17:00 there: working.
        assert!(w.is_outside("bob", utc("2026-12-05T02:00:00Z")));
        assert!(!w.is_outside("bob", utc("2026-12-04T22:00:00Z")));
        // 13:59 UTC is 08:59 in New York (EST, UTC-5); 14:00 is 09:00.
        assert!(w.is_outside("bob", utc("2026-12-07T13:59:00Z")));
        assert!(!w.is_outside("bob", utc("2026-12-07T14:00:00Z")));
        // In summer (EDT, UTC-4) 09:00 is 13:00 UTC.
        assert!(!w.is_outside("bob", utc("2026-07-06T13:00:00Z")));
        assert!(w.is_outside("bob", utc("2026-07-06T12:59:00Z")));
    }

    #[test]
    fn hours_days_and_zones_come_from_the_config() {
        let c = config(
            r#"
[reports]
time_zone = "Europe/Berlin"
working_hours = "08:00-24:00"
working_days = ["sun", "Monday"]
[[users]]
name = "alice"
[[users]]
name = "bob"
time_zone = "Asia/Tokyo"
"#,
        )
        .unwrap();
        let w = c.working_time().unwrap();
        assert_eq!(w.hours(), "08:00-24:00");
        assert_eq!(w.days(), ["mon", "sun"]);
        assert_eq!(w.time_zone("alice"), chrono_tz::Europe::Berlin);
        assert_eq!(w.time_zone("gone"), chrono_tz::Europe::Berlin);
        assert_eq!(w.time_zone("bob"), chrono_tz::Asia::Tokyo);
        assert_eq!(w.own_zone("bob"), Some(chrono_tz::Asia::Tokyo));
        assert_eq!(w.own_zone("alice"), None);
        // Sunday 23:30 in Berlin (22:30 UTC): a working day, before midnight.
        assert!(!w.is_outside("alice", utc("2026-12-06T22:30:00Z")));
        // Tuesday is not a working day.
        assert!(w.is_outside("alice", utc("2026-12-08T10:00:00Z")));
        // 07:59 on Monday in Berlin.
        assert!(w.is_outside("alice", utc("2026-12-07T06:59:00Z")));
    }

    #[test]
    fn check_reports_bad_hours_days_and_zones() {
        let err = config(
            r#"
[reports]
time_zone = "Mars/Olympus_Mons"
working_hours = "18:00-09:00"
working_days = ["mon", "funday"]
[[users]]
name = "alice"
[[users]]
name = "bob"
time_zone = "Nowhere/Land"
"#,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "reports.time_zone: unknown time zone 'Mars/Olympus_Mons'",
            "reports.working_hours: '18:00-09:00' must end after it starts",
            "reports.working_days[1]: 'funday' is not a day",
            "users[1].time_zone: unknown time zone 'Nowhere/Land'",
        ] {
            assert!(err.contains(needle), "{needle} not in: {err}");
        }
        let err = config("[reports]\nworking_hours = \"9 to 5\"\nworking_days = []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reports.working_hours: '9 to 5' is not a range of local times"),
            "{err}"
        );
        assert!(
            err.contains("reports.working_days: must list at least one day"),
            "{err}"
        );
        let err = config("[reports]\nworking_time = \"09:00-17:00\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reports"), "{err}");
    }

    #[test]
    fn the_defaults_are_nine_to_six_on_weekdays_in_utc() {
        let w = config("").unwrap().working_time().unwrap();
        assert_eq!(w, WorkingTime::default());
        assert_eq!(w.hours(), "09:00-18:00");
        assert_eq!(w.days(), ["mon", "tue", "wed", "thu", "fri"]);
        assert_eq!(w.default_zone(), Tz::UTC);
    }
}
