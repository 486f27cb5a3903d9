//! One layer's rotation: who holds it at an instant, and its handoffs.
//!
//! Handoffs are the cron firings strictly after the layer's start (naive
//! local times), each resolved to an instant with [`wall::resolve`]; firings
//! that resolve to the same instant (several in one spring gap) count once.
//! Because resolving never goes backwards, "the handoffs up to instant `t`"
//! are exactly the firings up to the naive time [`wall::reached`]`(t)`, so
//! the turn number at `t` is a count, computed without visiting each
//! firing: see [`Rotation::turn_at`].

use super::cronset::CronSet;
use super::wall;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;

/// A layer's rotation: users taking turns at each handoff.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    pub tz: Tz,
    pub cron: CronSet,
    pub users: Vec<String>,
    /// The instant the rotation starts with `users[0]`.
    pub start: DateTime<Utc>,
    /// Firings at or before this naive time resolve to `start` or earlier.
    floor: NaiveDateTime,
}

/// One turn of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// Handoffs since the start; the user is `users[index % len]`.
    pub index: u64,
    /// The turn's first instant.
    pub start: DateTime<Utc>,
    /// The next handoff, if the cron ever fires again.
    pub end: Option<DateTime<Utc>>,
}

impl Turn {
    /// Whether `t` falls in this turn.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }
}

impl Rotation {
    /// A rotation starting at the naive local time `start`.
    pub fn new(tz: Tz, cron: CronSet, users: Vec<String>, start: NaiveDateTime) -> Self {
        let start = wall::resolve(tz, start);
        Self {
            tz,
            cron,
            users,
            start,
            floor: wall::local(tz, start),
        }
    }

    /// The user holding turn `turn`.
    pub fn user(&self, turn: &Turn) -> &str {
        &self.users[(turn.index % self.users.len() as u64) as usize]
    }

    fn reached(&self, t: DateTime<Utc>) -> NaiveDateTime {
        wall::reached(self.tz, t).max(self.floor)
    }

    /// The first handoff strictly after `t` (for `t >= start`).
    fn handoff_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = self.cron.next_after(self.reached(t))?;
        Some(wall::resolve(self.tz, n))
    }

    /// The last handoff at or before `t`, if any happened since the start.
    fn handoff_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let n = self.cron.last_at_or_before(self.reached(t), self.floor)?;
        Some(wall::resolve(self.tz, n))
    }

    /// Handoffs in `(start, t]`.
    ///
    /// Cost: one bit-mask step per month since the start to count the
    /// firings (never one per firing), plus, only for rotations that can
    /// hand off twice within a day, one offset look-up per day to find the
    /// spring gaps that merge handoffs: about 1.5 us four and a half years
    /// into a weekly rotation, about 55 us for a daily or more frequent one.
    fn index_at(&self, t: DateTime<Utc>) -> u64 {
        let upto = self.reached(t);
        let mut n = self.cron.count(self.floor, upto);
        if !self.cron.fires_within_a_day() {
            return n;
        }
        for gap in wall::gaps(self.tz, self.start, t) {
            // All firings in [first_missing, end] happen at one instant.
            let lo = self
                .floor
                .max(gap.first_missing - TimeDelta::nanoseconds(1));
            let hi = upto.min(gap.end);
            n -= self.cron.count(lo, hi).saturating_sub(1);
        }
        n
    }

    /// The turn containing `t`, or `None` before the start.
    pub fn turn_at(&self, t: DateTime<Utc>) -> Option<Turn> {
        if t < self.start {
            return None;
        }
        Some(Turn {
            index: self.index_at(t),
            start: self.handoff_at_or_before(t).unwrap_or(self.start),
            end: self.handoff_after(t),
        })
    }

    /// The turn after `turn`, if the cron fires again.
    pub fn next(&self, turn: &Turn) -> Option<Turn> {
        let start = turn.end?;
        Some(Turn {
            index: turn.index + 1,
            start,
            end: self.handoff_after(start),
        })
    }

    /// The turn before `turn`, if it is not the first.
    pub fn prev(&self, turn: &Turn) -> Option<Turn> {
        let index = turn.index.checked_sub(1)?;
        let before = turn.start - TimeDelta::nanoseconds(1);
        Some(Turn {
            index,
            start: self.handoff_at_or_before(before).unwrap_or(self.start),
            end: Some(turn.start),
        })
    }
}
