//! Property tests: random zones, handoffs, users and instants.

use super::*;
use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use proptest::prelude::*;
use std::str::FromStr;

const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
];

/// A random handoff expression: daily at h:m (often 02:xx, where the DST
/// changes are), weekly, or every 12 hours.
fn handoff() -> impl Strategy<Value = String> {
    let hour = prop_oneof![Just(2u32), Just(1u32), 0u32..24];
    let minute = prop_oneof![Just(0u32), Just(30u32), 0u32..60];
    prop_oneof![
        (hour.clone(), minute.clone()).prop_map(|(h, m)| format!("0 {m} {h} * * *")),
        (hour, minute.clone(), 0usize..7).prop_map(|(h, m, d)| {
            let day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d];
            format!("0 {m} {h} * * {day}")
        }),
        (minute, 0u32..12).prop_map(|(m, h)| format!("0 {m} {h}/12 * * *")),
    ]
}

/// A local start in 2025-2027 on a whole minute.
fn local_start() -> impl Strategy<Value = NaiveDateTime> {
    (0i64..(3 * 365), 0i64..(24 * 60)).prop_map(|(day, minute)| {
        NaiveDate::from_ymd_opt(2025, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN)
            + TimeDelta::days(day)
            + TimeDelta::minutes(minute)
    })
}

#[derive(Debug, Clone)]
struct LayerCase {
    handoff: String,
    users: usize,
    start: NaiveDateTime,
    restrictions: Vec<(u8, u32, u32, u32)>,
}

fn layer_case(restricted: bool) -> impl Strategy<Value = LayerCase> {
    let restrictions = if restricted {
        proptest::collection::vec(
            (
                1u8..=0x7f,
                prop_oneof![Just(2u32), 0u32..24],
                0u32..24,
                prop_oneof![Just(0u32), Just(30u32)],
            ),
            0..3,
        )
        .boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (handoff(), 1usize..=5, local_start(), restrictions).prop_map(
        |(handoff, users, start, restrictions)| LayerCase {
            handoff,
            users,
            start,
            restrictions,
        },
    )
}

fn user_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

fn build(tz: &str, layers: &[LayerCase], overrides: Vec<OverrideConfig>) -> Schedule {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let cfg = ScheduleConfig {
        name: "prop".into(),
        time_zone: tz.into(),
        layers: layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerConfig {
                name: format!("layer{i}"),
                users: user_names(l.users),
                start: l.start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                handoff: l.handoff.clone(),
                restrictions: l
                    .restrictions
                    .iter()
                    .map(|&(mask, h1, h2, m)| RestrictionConfig {
                        days: (0..7)
                            .filter(|d| mask >> d & 1 == 1)
                            .map(|d| days[d].to_string())
                            .collect(),
                        start: format!("{h1:02}:{m:02}"),
                        end: format!("{h2:02}:00"),
                    })
                    .collect(),
            })
            .collect(),
        overrides,
    };
    Schedule::build(&cfg, &|_| true).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The first instant the wall clock shows `n` or has passed it, found by
/// stepping minute by minute out of a gap: independent of `wall`.
fn reference_resolve(tz: Tz, n: NaiveDateTime) -> DateTime<Utc> {
    let mut m = n;
    loop {
        match tz.from_local_datetime(&m) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.to_utc(),
            LocalResult::None => m += TimeDelta::minutes(1),
        }
    }
}

/// Turn starts and user indexes of a rotation up to `until`, by walking
/// the `cron` crate's firings in naive time one by one.
fn reference_turns(
    tz: Tz,
    handoff: &str,
    start: NaiveDateTime,
    until: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, u64)> {
    let cron = cron::Schedule::from_str(handoff).unwrap();
    let first = reference_resolve(tz, start);
    let mut turns = vec![(first, 0)];
    let mut prev = first;
    for n in cron.after(&start.and_utc()).map(|d| d.naive_utc()) {
        let at = reference_resolve(tz, n);
        if at > until {
            break;
        }
        if at > prev {
            turns.push((at, turns.len() as u64));
            prev = at;
        }
    }
    turns
}

fn tz_of(name: &str) -> Tz {
    Tz::from_str(name).unwrap()
}

fn at_offset(base: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    base + TimeDelta::seconds(seconds)
}

const TWO_YEARS: i64 = 2 * 366 * 86_400;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) A layer's raw rotation tiles any window and users take turns in
    /// order, exactly as walking the cron firings one by one says.
    #[test]
    fn layer_shifts_tile_and_cycle(
        zone in 0..ZONES.len(),
        layer in layer_case(false),
        offset in 0i64..TWO_YEARS,
        span in 1i64..(30 * 86_400),
    ) {
        let s = build(ZONES[zone], std::slice::from_ref(&layer), Vec::new());
        let start = s.layers[0].rotation.start;
        let from = at_offset(start, offset - 86_400);
        let to = at_offset(from, span);
        let shifts = s.layer_shifts(0, from, to);
        if to <= start {
            prop_assert!(shifts.is_empty());
            return Ok(());
        }
        prop_assert!(!shifts.is_empty());
        prop_assert!(shifts[0].start <= from.max(start));
        prop_assert!(shifts.last().unwrap().end >= to);
        let users = user_names(layer.users);
        let first = users.iter().position(|u| *u == shifts[0].user).unwrap();
        for (k, sh) in shifts.iter().enumerate() {
            prop_assert!(sh.start < sh.end, "{sh:?}");
            prop_assert_eq!(&sh.user, &users[(first + k) % users.len()]);
            if let Some(next) = shifts.get(k + 1) {
                prop_assert_eq!(sh.end, next.start);
            }
        }
        // Against the reference walk.
        let tz = tz_of(ZONES[zone]);
        let reference = reference_turns(tz, &layer.handoff, layer.start, to);
        let expected: Vec<(DateTime<Utc>, String)> = reference
            .iter()
            .enumerate()
            .filter(|(k, (at, _))| {
                let end = reference.get(k + 1).map(|r| r.0);
                *at < to && end.is_none_or(|e| e > from)
            })
            .map(|(_, (at, i))| (*at, users[(*i % users.len() as u64) as usize].clone()))
            .collect();
        let got: Vec<(DateTime<Utc>, String)> =
            shifts.iter().map(|s| (s.start, s.user.clone())).collect();
        prop_assert_eq!(got, expected);
    }

    /// (b) After the start, exactly one user of each unrestricted layer is
    /// on call, the user of the layer shift containing the instant; the
    /// last layer is the one answering.
    #[test]
    fn one_user_per_layer_at_any_instant(
        zone in 0..ZONES.len(),
        layers in proptest::collection::vec(layer_case(false), 1..=3),
        offset in 0i64..TWO_YEARS,
    ) {
        let s = build(ZONES[zone], &layers, Vec::new());
        let latest_start = s.layers.iter().map(|l| l.rotation.start).max().unwrap();
        let at = at_offset(latest_start, offset);
        for i in 0..layers.len() {
            let containing = s.layer_shifts(i, at, at + TimeDelta::nanoseconds(1));
            prop_assert_eq!(containing.len(), 1, "{:?}", containing);
            prop_assert!(containing[0].start <= at && at < containing[0].end);
            prop_assert_eq!(s.layer_user_at(i, at), Some(containing[0].user.as_str()));
        }
        let last = layers.len() - 1;
        let on_call = s.who_is_on_call(at, &[]).unwrap();
        prop_assert_eq!(Some(on_call.user.as_str()), s.layer_user_at(last, at));
        prop_assert_eq!(on_call.source, ShiftSource::Layer(format!("layer{last}")));
        prop_assert!(on_call.start <= at && at < on_call.end);
    }

    /// (c) The final schedule is sorted, non-overlapping, inside the window,
    /// merged, and agrees with `who_is_on_call` at each shift's start, its
    /// midpoint and in the gaps.
    #[test]
    fn final_shifts_agree_with_who_is_on_call(
        zone in 0..ZONES.len(),
        layers in proptest::collection::vec(layer_case(true), 1..=3),
        offset in 0i64..TWO_YEARS,
        span in 1i64..(10 * 86_400),
        overrides in proptest::collection::vec((0i64..(10 * 86_400), 1i64..(2 * 86_400), 0usize..3), 0..3),
        extra in proptest::collection::vec((0i64..(10 * 86_400), 1i64..86_400, 0usize..3), 0..2),
    ) {
        let earliest = layers.iter().map(|l| l.start).min().unwrap();
        let base = earliest.and_utc() - TimeDelta::days(2);
        let from = at_offset(base, offset);
        let to = at_offset(from, span);
        let overrides: Vec<OverrideConfig> = overrides
            .iter()
            .map(|&(o, len, u)| OverrideConfig {
                user: format!("o{u}"),
                start: at_offset(from, o - 86_400).fixed_offset(),
                end: at_offset(from, o - 86_400 + len).fixed_offset(),
            })
            .collect();
        let extra: Vec<Override> = extra
            .iter()
            .map(|&(o, len, u)| Override {
                user: format!("x{u}"),
                start: at_offset(from, o),
                end: at_offset(from, o + len),
            })
            .collect();
        let s = build(ZONES[zone], &layers, overrides);
        let shifts = s.shifts(from, to, &extra);
        let mut cursor = from;
        for (k, sh) in shifts.iter().enumerate() {
            prop_assert!(cursor <= sh.start && sh.start < sh.end && sh.end <= to, "{shifts:#?}");
            if let Some(prev) = k.checked_sub(1).map(|p| &shifts[p]) {
                prop_assert!(
                    !(prev.end == sh.start && prev.user == sh.user && prev.source == sh.source),
                    "unmerged neighbours {prev:?} {sh:?}"
                );
            }
            // Nobody is on call in the gap before this shift.
            if cursor < sh.start {
                let mid = cursor + (sh.start - cursor) / 2;
                prop_assert_eq!(s.who_is_on_call(mid, &extra), None, "gap at {}", mid);
            }
            let mid = sh.start + (sh.end - sh.start) / 2;
            for t in [sh.start, mid] {
                let o = s.who_is_on_call(t, &extra).unwrap();
                prop_assert_eq!((&o.user, &o.source), (&sh.user, &sh.source), "at {}", t);
                // Away from the clipped edges, the boundaries agree too.
                if sh.start > from {
                    prop_assert_eq!(o.start, sh.start);
                }
                if sh.end < to {
                    prop_assert_eq!(o.end, sh.end);
                }
            }
            cursor = sh.end;
        }
        if cursor < to {
            let mid = cursor + (to - cursor) / 2;
            prop_assert_eq!(s.who_is_on_call(mid, &extra), None);
        }
    }

    /// (d) Each layer's effective shifts are the final schedule of a
    /// schedule holding only that layer.
    #[test]
    fn layer_effective_shifts_are_the_layer_alone(
        zone in 0..ZONES.len(),
        layers in proptest::collection::vec(layer_case(true), 1..=3),
        offset in 0i64..TWO_YEARS,
        span in 1i64..(10 * 86_400),
    ) {
        let earliest = layers.iter().map(|l| l.start).min().unwrap();
        let from = at_offset(earliest.and_utc() - TimeDelta::days(2), offset);
        let to = at_offset(from, span);
        let s = build(ZONES[zone], &layers, Vec::new());
        for (i, l) in layers.iter().enumerate() {
            let alone = build(ZONES[zone], std::slice::from_ref(l), Vec::new());
            let got: Vec<_> = s
                .layer_effective_shifts(i, from, to)
                .into_iter()
                .map(|sh| {
                    prop_assert_eq!(&sh.source, &ShiftSource::Layer(format!("layer{i}")));
                    Ok((sh.user, sh.start, sh.end))
                })
                .collect::<Result<_, TestCaseError>>()?;
            let want: Vec<_> = alone
                .shifts(from, to, &[])
                .into_iter()
                .map(|sh| (sh.user, sh.start, sh.end))
                .collect();
            prop_assert_eq!(got, want, "layer {}", i);
        }
    }
}

/// A frequent rotation across DST changes agrees with the reference walk.
#[test]
fn frequent_handoffs_agree_with_the_reference_across_dst() {
    let zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"];
    for zone in zones {
        for handoff in ["0 */20 * * * *", "0 15,45 * * * *", "0 0 * * * *"] {
            let layer = LayerCase {
                handoff: handoff.into(),
                users: 5,
                start: NaiveDate::from_ymd_opt(2026, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 10, 0)
                    .unwrap(),
                restrictions: Vec::new(),
            };
            let s = build(zone, std::slice::from_ref(&layer), Vec::new());
            let until = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
            let mut reference = reference_turns(tz_of(zone), handoff, layer.start, until);
            reference.retain(|(at, _)| *at < until);
            let from = reference[0].0;
            let got = s.layer_shifts(0, from, until);
            assert_eq!(got.len(), reference.len(), "{zone} {handoff}");
            for (g, (at, i)) in got.iter().zip(&reference) {
                assert_eq!(
                    (g.start, &g.user),
                    (*at, &format!("u{}", i % 5)),
                    "{zone} {handoff}"
                );
            }
            // Counting (not walking) lands on the same turns.
            for (at, i) in reference.iter().step_by(997) {
                let mid = *at + TimeDelta::minutes(1);
                assert_eq!(
                    s.layer_user_at(0, mid),
                    Some(format!("u{}", i % 5).as_str())
                );
            }
        }
    }
}
