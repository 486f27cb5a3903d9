//! A handoff cron expression as a set of naive wall-clock times.
//!
//! The `cron` crate parses the expression, but its iterators resolve times
//! in a time zone (skipping gap times, firing twice in folds) and can only
//! step one firing at a time. Here the fields become bitmasks, so the
//! schedule can be stepped and, above all, *counted* over a range of days
//! without visiting each firing: a cron time set is "matching day" x
//! "hours x minutes x seconds", so a whole matching day holds the same
//! number of firings.
//!
//! Semantics follow `cron` 0.17 exactly: a day matches when its year,
//! month, day of month AND day of week are all in their sets (not the Vixie
//! cron "day of month OR day of week"); years run 1970..=2100.

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use cron::TimeUnitSpec;

/// First year a cron expression can fire in (the `cron` crate's limit).
pub(crate) const FIRST_YEAR: i32 = 1970;
/// Last year a cron expression can fire in (the `cron` crate's limit).
pub(crate) const LAST_YEAR: i32 = 2100;

/// The fields of a cron expression as bitmasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CronSet {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    /// Bit `n` is `n` days from Sunday.
    days_of_week: u8,
    /// Bit `y - 1970`.
    years: [u64; 3],
    /// Firings in one matching day.
    per_day: u64,
    /// For each weekday of a month's 1st (days from Sunday), bit `d` is
    /// set when day `d` of that month has a matching weekday.
    dow_by_first: [u32; 7],
}

fn mask<T: TimeUnitSpec + ?Sized>(spec: &T) -> u64 {
    spec.iter().fold(0u64, |m, o| m | (1u64 << o))
}

fn bit(mask: u64, n: u32) -> bool {
    n < 64 && (mask >> n) & 1 == 1
}

/// Number of set bits strictly below `n`.
fn below(mask: u64, n: u32) -> u64 {
    let m = if n >= 64 {
        mask
    } else {
        mask & ((1u64 << n) - 1)
    };
    u64::from(m.count_ones())
}

/// Lowest set bit `>= from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let m = mask >> from;
    (m != 0).then(|| from + m.trailing_zeros())
}

/// Highest set bit `<= upto`.
fn prev_bit(mask: u64, upto: u32) -> Option<u32> {
    let m = if upto >= 63 {
        mask
    } else {
        mask & ((1u64 << (upto + 1)) - 1)
    };
    (m != 0).then(|| 63 - m.leading_zeros())
}

fn hms(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("cron fields are in range")
}

impl CronSet {
    /// The bitmask form of a parsed expression.
    pub(crate) fn new(schedule: &cron::Schedule) -> Self {
        let mut years = [0u64; 3];
        for y in schedule.years().iter() {
            let i = y as usize - FIRST_YEAR as usize;
            years[i / 64] |= 1 << (i % 64);
        }
        // cron numbers weekdays 1 (Sunday) to 7 (Saturday).
        let days_of_week = schedule
            .days_of_week()
            .iter()
            .fold(0u8, |m, o| m | (1 << (o - 1)));
        let seconds = mask(schedule.seconds());
        let minutes = mask(schedule.minutes());
        let hours = mask(schedule.hours()) as u32;
        let mut dow_by_first = [0u32; 7];
        for (first, pattern) in dow_by_first.iter_mut().enumerate() {
            for d in 1..=31u32 {
                if (days_of_week >> ((first as u32 + d - 1) % 7)) & 1 == 1 {
                    *pattern |= 1 << d;
                }
            }
        }
        Self {
            seconds,
            minutes,
            hours,
            days_of_month: mask(schedule.days_of_month()) as u32,
            months: mask(schedule.months()) as u16,
            days_of_week,
            years,
            per_day: u64::from(seconds.count_ones())
                * u64::from(minutes.count_ones())
                * u64::from(hours.count_ones()),
            dow_by_first,
        }
    }

    /// Whether two firings can ever be 24 hours or less apart.
    ///
    /// Only then can two of them fall in one spring gap (no zone has
    /// skipped more than a day), so only then do gaps need looking for.
    pub(crate) fn fires_within_a_day(&self) -> bool {
        if self.per_day > 1 {
            return true;
        }
        // One time a day: as close as the nearest two weekdays allowed.
        let twice = u16::from(self.days_of_week) | (u16::from(self.days_of_week) << 7);
        twice & (twice >> 1) != 0
    }

    fn year_ok(&self, year: i32) -> bool {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
            return false;
        }
        let i = (year - FIRST_YEAR) as usize;
        (self.years[i / 64] >> (i % 64)) & 1 == 1
    }

    fn month_ok(&self, month: u32) -> bool {
        bit(u64::from(self.months), month)
    }

    /// Whether the cron fires at all on this day.
    pub(crate) fn day_matches(&self, d: NaiveDate) -> bool {
        self.year_ok(d.year())
            && self.month_ok(d.month())
            && bit(u64::from(self.days_of_month), d.day())
            && bit(
                u64::from(self.days_of_week),
                d.weekday().num_days_from_sunday(),
            )
    }

    /// The next day `>= d` that could match, skipping whole years and months
    /// that cannot; `None` past the last year.
    fn skip_to_candidate(&self, mut d: NaiveDate) -> Option<NaiveDate> {
        loop {
            if d.year() > LAST_YEAR {
                return None;
            }
            if d.year() < FIRST_YEAR || !self.year_ok(d.year()) {
                d = NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?;
                continue;
            }
            if !self.month_ok(d.month()) {
                d = first_of_next_month(d)?;
                continue;
            }
            return Some(d);
        }
    }

    /// The previous day `<= d` that could match; `None` before the first year.
    fn skip_back_to_candidate(&self, mut d: NaiveDate) -> Option<NaiveDate> {
        loop {
            if d.year() < FIRST_YEAR {
                return None;
            }
            if d.year() > LAST_YEAR || !self.year_ok(d.year()) {
                d = NaiveDate::from_ymd_opt(d.year() - 1, 12, 31)?;
                continue;
            }
            if !self.month_ok(d.month()) {
                d = d.with_day(1)?.pred_opt()?;
                continue;
            }
            return Some(d);
        }
    }

    fn first_time(&self) -> NaiveTime {
        hms(
            self.hours.trailing_zeros(),
            self.minutes.trailing_zeros(),
            self.seconds.trailing_zeros(),
        )
    }

    fn last_time(&self) -> NaiveTime {
        hms(
            31 - self.hours.leading_zeros(),
            63 - self.minutes.leading_zeros(),
            63 - self.seconds.leading_zeros(),
        )
    }

    /// Firings of a matching day at or before `t`.
    fn count_le(&self, t: NaiveTime) -> u64 {
        let (h, m, s) = (t.hour(), t.minute(), t.second());
        let per_minute = u64::from(self.seconds.count_ones());
        let per_hour = u64::from(self.minutes.count_ones()) * per_minute;
        let mut n = below(u64::from(self.hours), h) * per_hour;
        if bit(u64::from(self.hours), h) {
            n += below(self.minutes, m) * per_minute;
            if bit(self.minutes, m) {
                n += below(self.seconds, s + 1);
            }
        }
        n
    }

    /// First firing time of a matching day strictly after `t`.
    fn time_after(&self, t: NaiveTime) -> Option<NaiveTime> {
        let (h, m, s) = (t.hour(), t.minute(), t.second());
        let first_s = self.seconds.trailing_zeros();
        if bit(u64::from(self.hours), h) {
            if bit(self.minutes, m)
                && let Some(s2) = next_bit(self.seconds, s + 1)
            {
                return Some(hms(h, m, s2));
            }
            if let Some(m2) = next_bit(self.minutes, m + 1) {
                return Some(hms(h, m2, first_s));
            }
        }
        next_bit(u64::from(self.hours), h + 1)
            .map(|h2| hms(h2, self.minutes.trailing_zeros(), first_s))
    }

    /// Last firing time of a matching day at or before `t`.
    fn time_at_or_before(&self, t: NaiveTime) -> Option<NaiveTime> {
        let (h, m, s) = (t.hour(), t.minute(), t.second());
        let last_s = 63 - self.seconds.leading_zeros();
        if bit(u64::from(self.hours), h) {
            if bit(self.minutes, m)
                && let Some(s2) = prev_bit(self.seconds, s)
            {
                return Some(hms(h, m, s2));
            }
            if m > 0
                && let Some(m2) = prev_bit(self.minutes, m - 1)
            {
                return Some(hms(h, m2, last_s));
            }
        }
        if h == 0 {
            return None;
        }
        prev_bit(u64::from(self.hours), h - 1)
            .map(|h2| hms(h2, 63 - self.minutes.leading_zeros(), last_s))
    }

    /// The first firing strictly after `x`, if the expression fires again.
    pub(crate) fn next_after(&self, x: NaiveDateTime) -> Option<NaiveDateTime> {
        let d = x.date();
        if self.day_matches(d)
            && let Some(t) = self.time_after(x.time())
        {
            return Some(d.and_time(t));
        }
        let mut d = self.skip_to_candidate(d.succ_opt()?)?;
        loop {
            if self.day_matches(d) {
                return Some(d.and_time(self.first_time()));
            }
            d = self.skip_to_candidate(d.succ_opt()?)?;
        }
    }

    /// The last firing at or before `x` and strictly after `floor`.
    pub(crate) fn last_at_or_before(
        &self,
        x: NaiveDateTime,
        floor: NaiveDateTime,
    ) -> Option<NaiveDateTime> {
        let d = x.date();
        if self.day_matches(d)
            && let Some(t) = self.time_at_or_before(x.time())
        {
            let found = d.and_time(t);
            return (found > floor).then_some(found);
        }
        let mut d = self.skip_back_to_candidate(d.pred_opt()?)?;
        loop {
            if d < floor.date() {
                return None;
            }
            if self.day_matches(d) {
                let found = d.and_time(self.last_time());
                return (found > floor).then_some(found);
            }
            d = self.skip_back_to_candidate(d.pred_opt()?)?;
        }
    }

    /// How many firings fall in `(a, b]`: one step per day in between
    /// (whole non-matching months and years are skipped), never one per
    /// firing.
    pub(crate) fn count(&self, a: NaiveDateTime, b: NaiveDateTime) -> u64 {
        if b <= a {
            return 0;
        }
        let (da, db) = (a.date(), b.date());
        if da == db {
            return if self.day_matches(da) {
                self.count_le(b.time()) - self.count_le(a.time())
            } else {
                0
            };
        }
        let mut n = 0;
        if self.day_matches(da) {
            n += self.per_day - self.count_le(a.time());
        }
        if self.day_matches(db) {
            n += self.count_le(b.time());
        }
        if let Some(next) = da.succ_opt() {
            n += self.matching_days(next, db) * self.per_day;
        }
        n
    }

    /// How many days in `[from, to)` match: one step per month, counting
    /// the month's matching days with bit masks.
    fn matching_days(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        let mut n = 0;
        let mut d = from;
        while d < to && d.year() <= LAST_YEAR {
            let Some(next_month) = first_of_next_month(d) else {
                break;
            };
            if self.year_ok(d.year()) && self.month_ok(d.month()) {
                let last = if to < next_month {
                    to.day() - 1
                } else {
                    next_month.pred_opt().map_or(31, |l| l.day())
                };
                let first_weekday = d
                    .with_day(1)
                    .map_or(0, |f| f.weekday().num_days_from_sunday());
                let days = (((1u64 << (last + 1)) - 1) & !((1u64 << d.day()) - 1)) as u32;
                let hits = days & self.days_of_month & self.dow_by_first[first_weekday as usize];
                n += u64::from(hits.count_ones());
            }
            d = next_month;
        }
        n
    }
}

fn first_of_next_month(d: NaiveDate) -> Option<NaiveDate> {
    d.with_day(1)?.checked_add_days(Days::new(32))?.with_day(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    const EXPRESSIONS: &[&str] = &[
        "0 0 9 * * Mon",
        "0 30 2 * * *",
        "0 0 */12 * * *",
        "0 */20 * * * *",
        "15,45 5 1-3,22 * * Tue-Thu",
        "0 0 0 29 Feb *",
        "0 0 12 1 * * 2027-2028",
        "@weekly",
        "*/7 * * 1 * *",
    ];

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    fn reference_next(s: &cron::Schedule, x: NaiveDateTime) -> Option<NaiveDateTime> {
        // Utc has no gaps or folds, so cron's own iterator is the reference.
        s.after(&x.and_utc()).next().map(|d| d.naive_utc())
    }

    #[test]
    fn counts_a_plain_weekly_rotation() {
        let c = CronSet::new(&cron::Schedule::from_str("0 0 9 * * Mon").unwrap());
        let a = naive("2026-01-05T09:00:00");
        assert_eq!(c.count(a, naive("2026-01-12T08:59:59")), 0);
        assert_eq!(c.count(a, naive("2026-01-12T09:00:00")), 1);
        assert_eq!(c.count(a, naive("2027-01-04T09:00:00")), 52);
        assert_eq!(
            c.next_after(a),
            Some(naive("2026-01-12T09:00:00")),
            "strictly after"
        );
        assert_eq!(
            c.last_at_or_before(a, naive("2026-01-01T00:00:00")),
            Some(a)
        );
        assert_eq!(c.last_at_or_before(a, a), None, "floor is exclusive");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Stepping and counting agree with the `cron` crate evaluated in UTC.
        #[test]
        fn agrees_with_the_cron_crate(
            which in 0..EXPRESSIONS.len(),
            start in 0i64..(3 * 365 * 86_400),
            span in 0i64..(40 * 86_400),
            frac in 0u32..1_000_000_000,
        ) {
            let s = cron::Schedule::from_str(EXPRESSIONS[which]).unwrap();
            let c = CronSet::new(&s);
            let base = naive("2025-06-01T00:00:00");
            let a = base + chrono::TimeDelta::seconds(start) + chrono::TimeDelta::nanoseconds(i64::from(frac));
            let b = a + chrono::TimeDelta::seconds(span);
            prop_assert_eq!(c.next_after(a), reference_next(&s, a));
            // Count and "last at or before" by walking the reference.
            let mut n = 0;
            let mut last = None;
            let mut x = a;
            while let Some(next) = reference_next(&s, x) {
                if next > b {
                    break;
                }
                n += 1;
                last = Some(next);
                x = next;
            }
            prop_assert_eq!(c.count(a, b), n);
            prop_assert_eq!(c.last_at_or_before(b, a), last);
        }
    }
}
