//! On-call schedules: layered rotations, restrictions and overrides.
//!
//! Pure: every query takes the instants it is about; nothing reads the clock.
//!
//! A [`Schedule`] has layers and overrides. Each layer is a rotation of
//! users that starts at a local wall-clock time and hands off whenever its
//! cron expression fires (in the schedule's time zone), optionally active
//! only inside daily windows (restrictions). The rotation keeps counting
//! handoffs outside its windows, as PagerDuty does. At any instant the
//! final on-call person is the most recently created override covering it, else
//! the user of the last listed layer that is active, else nobody.
//!
//! Daylight saving time: handoffs and window edges are naive local times,
//! each mapped to the first instant the wall clock shows it or has passed it
//! (see `wall`): a time in an autumn fold happens once, at its first
//! occurrence; a time in a spring gap happens when the clock jumps past it.
//! Handoffs that land on the same instant count once, so nobody is skipped
//! and nobody gets a doubled or one-hour turn.
//!
//! Cost: the turn at an instant is counted, not walked: one bit-mask step
//! per month since the layer's start, plus, for layers that can hand off
//! twice within a day, one offset look-up per day to find the spring gaps
//! that merge handoffs. Four and a half years in (release build), per
//! layer: about 1.5 us for a weekly rotation, about 55 us for a daily or
//! more frequent one. Shift boundaries are searched at most
//! [`HORIZON_DAYS`] away from the queried instant.

mod config;
mod cronset;
mod ical;
mod recurrence;
mod rotation;
mod wall;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

pub use config::{LayerConfig, OverrideConfig, RestrictionConfig, ScheduleConfig, ScheduleIssue};
pub(crate) use config::{handoff_warning, parse_day, parse_time};
pub use ical::to_ical;
pub use recurrence::Recurrence;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rotation::{Rotation, Turn};
use serde::{Deserialize, Serialize};

/// The instant the local day `day` begins in `tz`: its midnight, or the
/// end of a spring gap that skips midnight. Days are 23 or 25 hours long
/// around DST changes, so a calendar steps from date to date with this
/// rather than adding 24 hours.
pub fn local_day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    wall::resolve(tz, day.and_time(NaiveTime::MIN))
}

/// How far from the queried instant [`Schedule::who_is_on_call`] looks for shift boundaries.
pub const HORIZON_DAYS: i64 = 90;

/// A validated schedule, ready to answer who is on call.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    tz: Tz,
    layers: Vec<Layer>,
    overrides: Vec<Override>,
}

#[derive(Debug, Clone)]
struct Layer {
    name: String,
    rotation: Rotation,
    restrictions: Vec<Restriction>,
}

/// A daily window; `end <= start` runs into the next day.
#[derive(Debug, Clone, Copy)]
struct Restriction {
    /// Bit `n` is `n` days from Monday: the days a window starts on.
    days: u8,
    start: NaiveTime,
    end: NaiveTime,
}

/// Someone on call instead of the layers from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Who is on call.
    pub user: String,
    /// First instant covered.
    pub start: DateTime<Utc>,
    /// First instant no longer covered.
    pub end: DateTime<Utc>,
}

/// Where a shift comes from: `{"layer":"weekly"}` or `"override"` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftSource {
    /// The named layer's rotation.
    Layer(String),
    /// An override.
    Override,
}

/// Who is on call at an instant, and the shift of the final schedule around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCall {
    /// Who is on call.
    pub user: String,
    /// Which layer, or an override.
    pub source: ShiftSource,
    /// Where the on-call user or source last changed, at most [`HORIZON_DAYS`] back.
    pub start: DateTime<Utc>,
    /// Where the on-call user or source next changes, at most [`HORIZON_DAYS`] ahead.
    pub end: DateTime<Utc>,
}

/// A stretch of time one user is on call from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    /// Who is on call.
    pub user: String,
    /// Which layer, or an override.
    pub source: ShiftSource,
    /// First instant of the shift.
    pub start: DateTime<Utc>,
    /// First instant after the shift.
    pub end: DateTime<Utc>,
}

/// The final on-call state of one stretch, borrowed from the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State<'a> {
    user: &'a str,
    /// `None` for an override, else the layer's index.
    layer: Option<usize>,
}

/// The state at an instant and an interval around it over which it holds.
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    state: Option<State<'a>>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
}

/// The interval `[lo, hi)` around `t` narrowed by one more boundary list.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    t: DateTime<Utc>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
}

impl Bounds {
    fn edge(&mut self, e: DateTime<Utc>) {
        if e <= self.t {
            self.lo = self.lo.max(e);
        } else {
            self.hi = self.hi.min(e);
        }
    }
}

/// Per-query memo of each layer's last turn, so walking forward through a
/// window steps from turn to turn instead of recounting from the start.
struct Cursors(Vec<Option<Turn>>);

impl Cursors {
    fn turn(&mut self, layer: usize, rotation: &Rotation, t: DateTime<Utc>) -> Option<Turn> {
        if let Some(known) = self.0[layer] {
            let near = if known.contains(t) {
                Some(known)
            } else if known.end.is_some_and(|e| t >= e) {
                rotation.next(&known).filter(|n| n.contains(t))
            } else {
                rotation.prev(&known).filter(|p| p.contains(t))
            };
            if near.is_some() {
                self.0[layer] = near;
                return near;
            }
        }
        let turn = rotation.turn_at(t);
        self.0[layer] = turn;
        turn
    }
}

impl Restriction {
    /// This window's instants if it starts on `day`.
    fn window(&self, tz: Tz, day: chrono::NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if (self.days >> day.weekday().num_days_from_monday()) & 1 == 0 {
            return None;
        }
        let end_day = if self.end > self.start {
            day
        } else {
            day.succ_opt()?
        };
        let start = wall::resolve(tz, day.and_time(self.start));
        let end = wall::resolve(tz, end_day.and_time(self.end));
        // A window entirely inside a spring gap never happens.
        (start < end).then_some((start, end))
    }
}

impl Layer {
    /// The restriction windows overlapping `[from, to)`, sorted, with
    /// overlapping or touching ones merged.
    fn windows(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        // A window lasts at most a day (25 hours in a fold), so the ones
        // starting two local days before `from` have ended by then.
        let first = wall::local(tz, from).date();
        let first = first.checked_sub_days(Days::new(2)).unwrap_or(first);
        let last = wall::local(tz, to).date();
        let mut all = Vec::new();
        for day in first.iter_days().take_while(|d| *d <= last) {
            for r in &self.restrictions {
                if let Some((start, end)) = r.window(tz, day)
                    && start < to
                    && end > from
                {
                    all.push((start, end));
                }
            }
        }
        all.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(all.len());
        for (start, end) in all {
            match merged.last_mut() {
                Some(prev) if start <= prev.1 => prev.1 = prev.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// Whether the layer is active at `t` (started, and inside a window if
    /// it has any), narrowing `b` to where that stays the same.
    fn active(&self, tz: Tz, b: &mut Bounds) -> bool {
        let t = b.t;
        b.edge(self.rotation.start);
        if t < self.rotation.start {
            return false;
        }
        if self.restrictions.is_empty() {
            return true;
        }
        // Windows last at most a day and every restriction has a window
        // each week, so the windows starting within eight days either side
        // hold `t` and its nearest edges. Past those days, `b` gets a
        // made-up edge: harmless, the caller just looks again from there.
        let today = wall::local(tz, t).date();
        let first = today.checked_sub_days(Days::new(8)).unwrap_or(today);
        let last = today.checked_add_days(Days::new(9)).unwrap_or(today);
        b.edge(wall::resolve(tz, first.and_time(NaiveTime::MIN)));
        b.edge(wall::resolve(tz, last.and_time(NaiveTime::MIN)));
        let mut inside = false;
        for day in first.iter_days().take_while(|d| *d < last) {
            for r in &self.restrictions {
                if let Some((start, end)) = r.window(tz, day) {
                    inside |= start <= t && t < end;
                    b.edge(start);
                    b.edge(end);
                }
            }
        }
        inside
    }
}

impl Schedule {
    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time zone layer starts, handoffs and restrictions are read in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The layers' names, lowest priority first.
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// The overrides from the configuration.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Who is on call at `at`: overrides (config, then `extra` in creation order; the most recently created wins) beat layers, the last active layer beats earlier ones.
    ///
    /// The returned start and end are where the final user or source
    /// changes, searched at most [`HORIZON_DAYS`] before and after `at`.
    pub fn who_is_on_call(&self, at: DateTime<Utc>, extra: &[Override]) -> Option<OnCall> {
        let overrides = self.all_overrides(extra);
        let horizon = TimeDelta::days(HORIZON_DAYS);
        let floor = at.checked_sub_signed(horizon).unwrap_or(at);
        let ceil = at.checked_add_signed(horizon).unwrap_or(at);
        let mut cursors = self.cursors();
        let here = self.eval(at, floor, ceil, &overrides, &mut cursors);
        let state = here.state?;
        let mut end = here.hi;
        while end < ceil {
            let next = self.eval(end, floor, ceil, &overrides, &mut cursors);
            if next.state != Some(state) {
                break;
            }
            end = next.hi;
        }
        let mut start = here.lo;
        while start > floor {
            let before = start - TimeDelta::nanoseconds(1);
            let prev = self.eval(before, floor, ceil, &overrides, &mut cursors);
            if prev.state != Some(state) {
                break;
            }
            start = prev.lo;
        }
        Some(OnCall {
            user: state.user.to_string(),
            source: self.source(state),
            start,
            end,
        })
    }

    /// Who is on call next from `after` on: whoever is on call at `after`,
    /// else the first shift that starts after it, however far away within
    /// a year (a business-hours schedule's next person is tomorrow
    /// morning, not nobody).
    pub fn next_on_call(&self, after: DateTime<Utc>, extra: &[Override]) -> Option<OnCall> {
        if let Some(o) = self.who_is_on_call(after, extra) {
            return Some(o);
        }
        let mut from = after;
        let year = after + TimeDelta::days(366);
        while from < year {
            let to = (from + TimeDelta::days(31)).min(year);
            if let Some(first) = self.shifts(from, to, extra).into_iter().next() {
                return self.who_is_on_call(first.start, extra);
            }
            from = to;
        }
        None
    }

    /// The final schedule in `[from, to)` as consecutive shifts; same user and source merge, nobody on call is a gap.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>, extra: &[Override]) -> Vec<Shift> {
        let overrides = self.all_overrides(extra);
        let mut cursors = self.cursors();
        let mut out: Vec<Shift> = Vec::new();
        let mut last: Option<State<'_>> = None;
        let mut t = from;
        while t < to {
            let piece = self.eval(t, from, to, &overrides, &mut cursors);
            match piece.state {
                Some(state) if last == Some(state) => {
                    if let Some(prev) = out.last_mut() {
                        prev.end = piece.hi;
                    }
                }
                Some(state) => out.push(Shift {
                    user: state.user.to_string(),
                    source: self.source(state),
                    start: t,
                    end: piece.hi,
                }),
                None => {}
            }
            last = piece.state;
            t = piece.hi;
        }
        out
    }

    /// One layer's raw rotation (no restrictions or other layers): its shifts overlapping `[from, to)`, not clipped.
    ///
    /// A turn that never ends (the cron stops firing, e.g. after its last
    /// year) ends at [`DateTime::<Utc>::MAX_UTC`]. Unknown layer: empty.
    pub fn layer_shifts(&self, layer: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let Some(l) = self.layers.get(layer) else {
            return Vec::new();
        };
        let rot = &l.rotation;
        let mut out = Vec::new();
        if to <= rot.start || to <= from {
            return out;
        }
        let mut turn = rot.turn_at(from.max(rot.start));
        while let Some(tn) = turn {
            if tn.start >= to {
                break;
            }
            out.push(Shift {
                user: rot.user(&tn).to_string(),
                source: ShiftSource::Layer(l.name.clone()),
                start: tn.start,
                end: tn.end.unwrap_or(DateTime::<Utc>::MAX_UTC),
            });
            turn = rot.next(&tn);
        }
        out
    }

    /// One layer's shifts in `[from, to)` as that layer alone would put
    /// people on call: its rotation inside its restrictions (always, if it
    /// has none), clipped to the window. Touching shifts of one user merge,
    /// as in [`Schedule::shifts`]. Unknown layer: empty.
    ///
    /// For a schedule of this one layer and no overrides, this is exactly
    /// [`Schedule::shifts`]; other layers and overrides are ignored.
    pub fn layer_effective_shifts(
        &self,
        layer: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Shift> {
        let Some(l) = self.layers.get(layer) else {
            return Vec::new();
        };
        let windows = if l.restrictions.is_empty() {
            vec![(from, to)]
        } else {
            l.windows(self.tz, from, to)
        };
        let mut out: Vec<Shift> = Vec::new();
        // Turns and windows are both sorted and disjoint, so the pieces
        // come out in order.
        for turn in self.layer_shifts(layer, from, to) {
            for &(open, close) in &windows {
                let start = turn.start.max(open).max(from);
                let end = turn.end.min(close).min(to);
                if start >= end {
                    continue;
                }
                match out.last_mut() {
                    Some(prev) if prev.end == start && prev.user == turn.user => prev.end = end,
                    _ => out.push(Shift {
                        start,
                        end,
                        ..turn.clone()
                    }),
                }
            }
        }
        out
    }

    /// Which user of one layer's rotation holds `at`, ignoring restrictions.
    #[cfg(test)]
    fn layer_user_at(&self, layer: usize, at: DateTime<Utc>) -> Option<&str> {
        let rot = &self.layers[layer].rotation;
        rot.turn_at(at).map(|t| rot.user(&t))
    }

    fn all_overrides<'a>(&'a self, extra: &'a [Override]) -> Vec<&'a Override> {
        self.overrides
            .iter()
            .chain(extra)
            .filter(|o| o.start < o.end)
            .collect()
    }

    fn cursors(&self) -> Cursors {
        Cursors(vec![None; self.layers.len()])
    }

    fn source(&self, state: State<'_>) -> ShiftSource {
        match state.layer {
            Some(i) => ShiftSource::Layer(self.layers[i].name.clone()),
            None => ShiftSource::Override,
        }
    }

    /// The final state at `t` (`floor <= t < ceil`) and an interval around
    /// `t`, within `[floor, ceil]`, over which it cannot change. Only the
    /// boundaries that can change the outcome narrow it: override edges,
    /// the winning layer's turn, and higher layers becoming active.
    fn eval<'a>(
        &'a self,
        t: DateTime<Utc>,
        floor: DateTime<Utc>,
        ceil: DateTime<Utc>,
        overrides: &[&'a Override],
        cursors: &mut Cursors,
    ) -> Piece<'a> {
        let mut b = Bounds {
            t,
            lo: floor,
            hi: ceil,
        };
        // The most recently created override covering `t` wins (PagerDuty's
        // rule, and what someone who just typed an override expects): the
        // list is in creation order, config ones first, runtime ones by id.
        let mut winner: Option<&Override> = None;
        for o in overrides {
            b.edge(o.start);
            b.edge(o.end);
            if o.start <= t && t < o.end {
                winner = Some(o);
            }
        }
        if let Some(w) = winner {
            return Piece {
                state: Some(State {
                    user: &w.user,
                    layer: None,
                }),
                lo: b.lo,
                hi: b.hi,
            };
        }
        for (i, layer) in self.layers.iter().enumerate().rev() {
            if !layer.active(self.tz, &mut b) {
                continue;
            }
            let Some(turn) = cursors.turn(i, &layer.rotation, t) else {
                continue;
            };
            b.edge(turn.start);
            if let Some(end) = turn.end {
                b.edge(end);
            }
            return Piece {
                state: Some(State {
                    user: layer.rotation.user(&turn),
                    layer: Some(i),
                }),
                lo: b.lo,
                hi: b.hi,
            };
        }
        Piece {
            state: None,
            lo: b.lo,
            hi: b.hi,
        }
    }
}
