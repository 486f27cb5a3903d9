//! A recurring period: starts on a cron expression in a time zone, lasts a
//! fixed time. Recurring maintenance windows use it; it reuses the
//! handoff cron code (same syntax, same DST rule for local times).

use super::cronset::CronSet;
use super::wall;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// Starts on a cron expression in a time zone, each start lasting `length`.
#[derive(Debug, Clone)]
pub struct Recurrence {
    tz: Tz,
    starts: CronSet,
    length: TimeDelta,
}

impl Recurrence {
    /// Parses the cron expression (six or seven fields, as handoffs) and the
    /// IANA time zone name.
    pub fn new(cron: &str, time_zone: &str, length: TimeDelta) -> Result<Self, String> {
        let tz = Tz::from_str(time_zone.trim()).map_err(|_| {
            format!("unknown time zone '{time_zone}': use an IANA name like Europe/Berlin")
        })?;
        let starts = super::config::parse_cron(cron)?;
        Ok(Self { tz, starts, length })
    }

    /// The period that holds `t` (start <= t < end), if any: the latest
    /// start at or before `t` that has not ended yet.
    pub fn around(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let reached = wall::reached(self.tz, t);
        // A local start that ended before `t` cannot hold it: look back the
        // length plus a day for DST shifts, never further.
        let floor = reached - self.length - TimeDelta::days(1);
        // Periods may overlap (a start every hour, lasting two): the latest
        // start ends last, so it is the one that holds `t` if any does.
        let naive = self.starts.last_at_or_before(reached, floor)?;
        let start = wall::resolve(self.tz, naive);
        let end = start + self.length;
        (start <= t && t < end).then_some((start, end))
    }

    /// The first period starting strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let naive = self.starts.next_after(wall::reached(self.tz, t))?;
        let start = wall::resolve(self.tz, naive);
        Some((start, start + self.length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_weekly_window_in_berlin_holds_its_two_hours_only() {
        // Sundays 02:00 Berlin for 2h; 2026-12-06 is a Sunday, CET (+01:00).
        let r = Recurrence::new("0 0 2 * * Sun", "Europe/Berlin", TimeDelta::hours(2)).unwrap();
        assert_eq!(
            r.around(at("2026-12-06T01:30:00Z")),
            Some((at("2026-12-06T01:00:00Z"), at("2026-12-06T03:00:00Z")))
        );
        assert_eq!(r.around(at("2026-12-06T03:00:00Z")), None);
        assert_eq!(r.around(at("2026-12-06T00:59:59Z")), None);
        assert_eq!(
            r.next_after(at("2026-12-06T03:00:00Z")),
            Some((at("2026-12-13T01:00:00Z"), at("2026-12-13T03:00:00Z")))
        );
    }

    #[test]
    fn bad_cron_and_zone_say_what_is_wrong() {
        let e = Recurrence::new("0 2 * * Sun", "UTC", TimeDelta::hours(1)).unwrap_err();
        assert!(e.contains("5 fields"), "{e}");
        let e = Recurrence::new("0 0 2 * * Sun", "Mars/Base", TimeDelta::hours(1)).unwrap_err();
        assert!(e.contains("Mars/Base"), "{e}");
    }
}
