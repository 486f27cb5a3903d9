//! Wall-clock times in a time zone, and the DST rules of the module.
//!
//! One rule maps a naive local time to an instant: the first instant at
//! which the wall clock shows that time *or has passed it*. So a time in
//! an autumn fold maps to its earlier occurrence, and a time in a spring gap
//! maps to the end of the gap (02:30 on the day Berlin jumps 02:00 -> 03:00
//! maps to 03:00 local). The map never goes backwards, and it only merges
//! times: all times of one gap (and the gap's end) land on one instant.
//!
//! Its inverse view is [`reached`]: the latest wall-clock time shown up to an
//! instant. A naive time `n` maps to an instant `<= t` exactly when
//! `n <= reached(t)`, which is what lets rotations be counted in naive time.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

/// The wall-clock reading at `t`.
pub(crate) fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    tz.from_utc_datetime(&t.naive_utc()).naive_local()
}

/// The UTC offset in seconds at the whole second `secs`.
fn offset_at(tz: Tz, secs: i64) -> i32 {
    let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The first whole second in `(lo, hi]` whose offset differs from `lo`'s,
/// given that `hi`'s does (offsets change on whole seconds).
fn change_between(tz: Tz, mut lo: i64, mut hi: i64) -> i64 {
    let before = offset_at(tz, lo);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The instant a naive local time happens: see the module docs.
pub(crate) fn resolve(tz: Tz, n: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&n) {
        LocalResult::Single(t) => t.to_utc(),
        LocalResult::Ambiguous(earlier, _) => earlier.to_utc(),
        LocalResult::None => match GapInfo::new(&n, &tz).and_then(|g| g.end) {
            Some(end) => end.to_utc(),
            // A gap at the very edge of the zone's table: shift by the
            // offset in force a day earlier, which lands past the gap.
            None => {
                let probe = n.and_utc().timestamp() - 86_400;
                let off = offset_at(tz, probe);
                (n - TimeDelta::seconds(i64::from(off))).and_utc()
            }
        },
    }
}

/// The latest wall-clock time shown at or before `t`.
///
/// Equal to [`local`] except in the second pass of a fold, where the clock
/// has already shown the times up to the moment it was set back.
pub(crate) fn reached(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    let now = local(tz, t);
    if let LocalResult::Ambiguous(earlier, later) = tz.from_local_datetime(&now)
        && later.to_utc() == t
        && earlier.to_utc() != t
    {
        let before = earlier.offset().fix().local_minus_utc();
        let change = change_between(tz, earlier.timestamp(), later.timestamp());
        let peak = DateTime::from_timestamp(change, 0)
            .unwrap_or_default()
            .naive_utc()
            + TimeDelta::seconds(i64::from(before));
        // The clock never showed `peak` itself: it was set back first.
        return peak - TimeDelta::nanoseconds(1);
    }
    now
}

/// A spring-forward gap: the naive times `[first_missing, end]` all
/// resolve to one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The first local time that does not exist.
    pub first_missing: NaiveDateTime,
    /// The local time the clock jumps to (it exists).
    pub end: NaiveDateTime,
}

/// The gaps whose jump happens in `(from, to]`.
///
/// chrono-tz has no public list of transitions, so this probes the offset
/// once per day and bisects where it changed: O(days) offset look-ups.
/// Two transitions less than a day apart that cancel out would be missed;
/// no zone in the database does that in the years a schedule can use.
pub(crate) fn gaps(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Gap> {
    const DAY: i64 = 86_400;
    let mut found = Vec::new();
    if matches!(tz, Tz::UTC | Tz::Etc__UTC) {
        return found;
    }
    let (from_s, to_s) = (from.timestamp(), to.timestamp());
    let mut lo = from_s;
    let mut lo_off = offset_at(tz, lo);
    while lo < to_s {
        let hi = (lo + DAY).min(to_s);
        let hi_off = offset_at(tz, hi);
        if hi_off == lo_off {
            lo = hi;
            continue;
        }
        let at = change_between(tz, lo, hi);
        let after = offset_at(tz, at);
        if after > lo_off && at > from_s {
            let instant = DateTime::from_timestamp(at, 0)
                .unwrap_or_default()
                .naive_utc();
            found.push(Gap {
                first_missing: instant + TimeDelta::seconds(i64::from(lo_off)),
                end: instant + TimeDelta::seconds(i64::from(after)),
            });
        }
        lo = at;
        lo_off = after;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn gap_times_resolve_to_the_end_of_the_gap() {
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(
            resolve(tz, naive("2026-03-29T02:30:00")),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            resolve(tz, naive("2026-03-29T03:00:00")),
            utc("2026-03-29T01:00:00Z")
        );
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            resolve(ny, naive("2026-03-08T02:00:00")),
            utc("2026-03-08T07:00:00Z")
        );
        let lh = chrono_tz::Australia::Lord_Howe;
        // Lord Howe jumps 02:00 -> 02:30 on the first Sunday of October.
        assert_eq!(
            resolve(lh, naive("2026-10-04T02:10:00")),
            resolve(lh, naive("2026-10-04T02:30:00"))
        );
    }

    #[test]
    fn fold_times_resolve_to_the_first_occurrence() {
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(
            resolve(tz, naive("2026-10-25T02:30:00")),
            utc("2026-10-25T00:30:00Z")
        );
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            resolve(ny, naive("2026-11-01T01:30:00")),
            utc("2026-11-01T05:30:00Z")
        );
    }

    #[test]
    fn reached_remembers_the_first_pass_of_a_fold() {
        let tz = chrono_tz::Europe::Berlin;
        // 01:30 UTC is the second 02:30 local; 03:00 CEST was never shown,
        // but everything before it was.
        let r = reached(tz, utc("2026-10-25T01:30:00Z"));
        assert_eq!(r, naive("2026-10-25T03:00:00") - TimeDelta::nanoseconds(1));
        assert_eq!(
            reached(tz, utc("2026-10-25T00:30:00Z")),
            naive("2026-10-25T02:30:00")
        );
        assert_eq!(
            reached(tz, utc("2026-10-25T02:00:00Z")),
            naive("2026-10-25T03:00:00")
        );
    }

    #[test]
    fn finds_the_gaps_of_a_year() {
        let g = gaps(
            chrono_tz::Europe::Berlin,
            utc("2026-01-01T00:00:00Z"),
            utc("2027-01-01T00:00:00Z"),
        );
        assert_eq!(
            g,
            vec![Gap {
                first_missing: naive("2026-03-29T02:00:00"),
                end: naive("2026-03-29T03:00:00"),
            }]
        );
        assert!(
            gaps(
                chrono_tz::Asia::Kolkata,
                utc("2026-01-01T00:00:00Z"),
                utc("2027-01-01T00:00:00Z")
            )
            .is_empty()
        );
    }
}
