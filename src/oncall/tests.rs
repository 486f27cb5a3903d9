//! Behaviour tests with fixed dates: rotations, layers, overrides, DST, validation, iCal.

use super::*;
use chrono::{NaiveDate, NaiveDateTime};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .to_utc()
}

fn known_user(name: &str) -> bool {
    !matches!(name, "mallory" | "nobody" | "")
}

fn schedule(toml_text: &str) -> Schedule {
    let cfg: ScheduleConfig = toml::from_str(toml_text).unwrap();
    Schedule::build(&cfg, &known_user).unwrap_or_else(|e| panic!("{e:?}"))
}

fn who(s: &Schedule, at: &str, extra: &[Override]) -> Option<(String, ShiftSource)> {
    s.who_is_on_call(utc(at), extra).map(|o| (o.user, o.source))
}

fn layer(name: &str) -> ShiftSource {
    ShiftSource::Layer(name.into())
}

fn shift(user: &str, source: ShiftSource, start: &str, end: &str) -> Shift {
    Shift {
        user: user.into(),
        source,
        start: utc(start),
        end: utc(end),
    }
}

/// (user, start, end) of each shift, for compact expectations.
fn brief(shifts: &[Shift]) -> Vec<(String, String, String)> {
    shifts
        .iter()
        .map(|s| {
            (
                s.user.clone(),
                s.start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                s.end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
        })
        .collect()
}

fn expect(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(u, s, e)| (u.to_string(), s.to_string(), e.to_string()))
        .collect()
}

/// Berlin, weekly rotation handing off Monday 09:00, and a weekday
/// daytime layer on top. January: Berlin is UTC+1.
const TEAM: &str = r#"
    name = "primary"
    time_zone = "Europe/Berlin"

    [[layers]]
    name = "weekly"
    users = ["alice", "bob", "carol"]
    start = "2026-01-05T09:00:00"
    handoff = "0 0 9 * * Mon"

    [[layers]]
    name = "daytime"
    users = ["dave", "erin"]
    start = 2026-01-05T09:00:00
    handoff = "0 0 9 * * Mon"
    [[layers.restrictions]]
    days = ["mon", "Tue", "WEDNESDAY", "thu", "fri"]
    start = "09:00"
    end = "17:00"

    [[overrides]]
    user = "frank"
    start = 2026-01-07T12:00:00+01:00
    end = "2026-01-07T20:00:00+01:00"
"#;

#[test]
fn who_is_on_call_in_a_weekly_rotation_with_a_daytime_layer() {
    let s = schedule(TEAM);
    assert_eq!(s.name(), "primary");
    assert_eq!(s.time_zone(), chrono_tz::Europe::Berlin);
    assert_eq!(s.layer_names(), vec!["weekly", "daytime"]);
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        // Nobody before the layers start (Monday 09:00 local = 08:00 UTC).
        ("2026-01-05T07:59:59Z", None),
        // The daytime layer wins inside its window...
        ("2026-01-05T08:00:00Z", Some(("dave", "daytime"))),
        ("2026-01-05T15:59:59Z", Some(("dave", "daytime"))),
        // ...and not outside it.
        ("2026-01-05T16:00:00Z", Some(("alice", "weekly"))),
        ("2026-01-06T07:59:59Z", Some(("alice", "weekly"))),
        ("2026-01-06T12:00:00Z", Some(("dave", "daytime"))),
        // Weekend: no window.
        ("2026-01-10T12:00:00Z", Some(("alice", "weekly"))),
        ("2026-01-11T12:00:00Z", Some(("alice", "weekly"))),
        // Monday before 09:00 local: last week's people.
        ("2026-01-12T07:59:59Z", Some(("alice", "weekly"))),
        // The weekly handoff.
        ("2026-01-12T08:00:00Z", Some(("erin", "daytime"))),
        ("2026-01-12T16:00:00Z", Some(("bob", "weekly"))),
        ("2026-01-19T16:00:00Z", Some(("carol", "weekly"))),
        ("2026-01-26T16:00:00Z", Some(("alice", "weekly"))),
        ("2026-01-26T08:00:00Z", Some(("erin", "daytime"))),
        // Summer time: the handoff stays at 09:00 local = 07:00 UTC.
        ("2026-07-06T06:59:59Z", Some(("bob", "weekly"))),
        ("2026-07-06T07:00:00Z", Some(("dave", "daytime"))),
        ("2026-07-06T15:00:00Z", Some(("carol", "weekly"))),
        // Years later, counted not walked: 2029-01-01 is week 156 since
        // the start, 156 % 3 == 0.
        ("2029-01-01T16:00:00Z", Some(("alice", "weekly"))),
    ];
    for (at, expected) in cases {
        let got = who(&s, at, &[]);
        let expected = expected.map(|(u, l)| (u.to_string(), layer(l)));
        assert_eq!(got, expected, "at {at}");
    }
}

#[test]
fn on_call_reports_where_the_final_person_changes() {
    let s = schedule(TEAM);
    // Tuesday evening: alice since the daytime window closed, until it opens.
    let o = s.who_is_on_call(utc("2026-01-06T20:00:00Z"), &[]).unwrap();
    assert_eq!(
        o,
        OnCall {
            user: "alice".into(),
            source: layer("weekly"),
            start: utc("2026-01-06T16:00:00Z"),
            end: utc("2026-01-07T08:00:00Z"),
        }
    );
    // Friday evening: alice until the Monday handoff, over the weekend.
    let o = s.who_is_on_call(utc("2026-01-09T20:00:00Z"), &[]).unwrap();
    assert_eq!(
        (o.start, o.end),
        (utc("2026-01-09T16:00:00Z"), utc("2026-01-12T08:00:00Z"))
    );
    // A single-user layer never changes: capped at the horizon.
    let solo = schedule(
        r#"
        name = "solo"
        time_zone = "UTC"
        [[layers]]
        name = "only"
        users = ["alice"]
        start = "2026-01-01T00:00:00"
        handoff = "0 0 0 * * *"
        "#,
    );
    let at = utc("2026-06-01T12:00:00Z");
    let o = solo.who_is_on_call(at, &[]).unwrap();
    assert_eq!(o.start, at - TimeDelta::days(HORIZON_DAYS));
    assert_eq!(o.end, at + TimeDelta::days(HORIZON_DAYS));
    let o = solo
        .who_is_on_call(utc("2026-01-10T00:00:00Z"), &[])
        .unwrap();
    assert_eq!(o.start, utc("2026-01-01T00:00:00Z"), "the layer's start");
}

#[test]
fn overrides_beat_layers_and_the_latest_starting_one_wins() {
    let s = schedule(TEAM);
    // Config override 11:00-19:00 UTC on Wednesday.
    assert_eq!(
        who(&s, "2026-01-07T10:59:59Z", &[]),
        Some(("dave".into(), layer("daytime")))
    );
    assert_eq!(
        who(&s, "2026-01-07T11:00:00Z", &[]),
        Some(("frank".into(), ShiftSource::Override))
    );
    assert_eq!(
        who(&s, "2026-01-07T18:59:59Z", &[]),
        Some(("frank".into(), ShiftSource::Override))
    );
    assert_eq!(
        who(&s, "2026-01-07T19:00:00Z", &[]),
        Some(("alice".into(), layer("weekly")))
    );
    // A runtime override inside it starts later, so it wins.
    let extra = [Override {
        user: "grace".into(),
        start: utc("2026-01-07T13:00:00Z"),
        end: utc("2026-01-07T14:00:00Z"),
    }];
    let o = s
        .who_is_on_call(utc("2026-01-07T13:30:00Z"), &extra)
        .unwrap();
    assert_eq!(
        o,
        OnCall {
            user: "grace".into(),
            source: ShiftSource::Override,
            start: utc("2026-01-07T13:00:00Z"),
            end: utc("2026-01-07T14:00:00Z"),
        }
    );
    let o = s
        .who_is_on_call(utc("2026-01-07T14:30:00Z"), &extra)
        .unwrap();
    assert_eq!(
        (o.user.as_str(), o.start, o.end),
        (
            "frank",
            utc("2026-01-07T14:00:00Z"),
            utc("2026-01-07T19:00:00Z")
        )
    );
    // A runtime override alone, where nobody would be on call.
    let early = [Override {
        user: "grace".into(),
        start: utc("2026-01-01T00:00:00Z"),
        end: utc("2026-01-02T00:00:00Z"),
    }];
    assert_eq!(
        who(&s, "2026-01-01T12:00:00Z", &early),
        Some(("grace".into(), ShiftSource::Override))
    );
    assert_eq!(who(&s, "2026-01-01T12:00:00Z", &[]), None);
    // Equal starts: the later one listed (the runtime one) wins.
    let same = [Override {
        user: "heidi".into(),
        start: utc("2026-01-07T11:00:00Z"),
        end: utc("2026-01-07T12:00:00Z"),
    }];
    assert_eq!(
        who(&s, "2026-01-07T11:30:00Z", &same),
        Some(("heidi".into(), ShiftSource::Override))
    );
    // Overlapping runtime overrides: the most recently created wins even
    // where an older one starts later (PagerDuty's rule): ivan covers the
    // whole day, made after judy's afternoon.
    let overlapping = [
        Override {
            user: "judy".into(),
            start: utc("2026-01-08T13:00:00Z"),
            end: utc("2026-01-08T15:00:00Z"),
        },
        Override {
            user: "ivan".into(),
            start: utc("2026-01-08T00:00:00Z"),
            end: utc("2026-01-09T00:00:00Z"),
        },
    ];
    assert_eq!(
        who(&s, "2026-01-08T14:00:00Z", &overlapping),
        Some(("ivan".into(), ShiftSource::Override))
    );
    let shifts = s.shifts(
        utc("2026-01-08T12:00:00Z"),
        utc("2026-01-08T16:00:00Z"),
        &overlapping,
    );
    assert_eq!(shifts.len(), 1, "{shifts:?}");
    assert_eq!(shifts[0].user, "ivan");
}

#[test]
fn shifts_of_a_week_are_exact() {
    let s = schedule(TEAM);
    let week = s.shifts(
        utc("2026-01-05T00:00:00Z"),
        utc("2026-01-12T12:00:00Z"),
        &[],
    );
    assert_eq!(
        brief(&week),
        expect(&[
            ("dave", "2026-01-05T08:00:00Z", "2026-01-05T16:00:00Z"),
            ("alice", "2026-01-05T16:00:00Z", "2026-01-06T08:00:00Z"),
            ("dave", "2026-01-06T08:00:00Z", "2026-01-06T16:00:00Z"),
            ("alice", "2026-01-06T16:00:00Z", "2026-01-07T08:00:00Z"),
            ("dave", "2026-01-07T08:00:00Z", "2026-01-07T11:00:00Z"),
            ("frank", "2026-01-07T11:00:00Z", "2026-01-07T19:00:00Z"),
            ("alice", "2026-01-07T19:00:00Z", "2026-01-08T08:00:00Z"),
            ("dave", "2026-01-08T08:00:00Z", "2026-01-08T16:00:00Z"),
            ("alice", "2026-01-08T16:00:00Z", "2026-01-09T08:00:00Z"),
            ("dave", "2026-01-09T08:00:00Z", "2026-01-09T16:00:00Z"),
            ("alice", "2026-01-09T16:00:00Z", "2026-01-12T08:00:00Z"),
            ("erin", "2026-01-12T08:00:00Z", "2026-01-12T12:00:00Z"),
        ])
    );
    assert_eq!(week[0].source, layer("daytime"));
    assert_eq!(week[1].source, layer("weekly"));
    assert_eq!(week[5].source, ShiftSource::Override);
    // Clipped to the window, merged across a handoff that changes nothing.
    let extra = [Override {
        user: "alice".into(),
        start: utc("2026-01-09T10:00:00Z"),
        end: utc("2026-01-09T12:00:00Z"),
    }];
    let day = s.shifts(
        utc("2026-01-09T09:00:00Z"),
        utc("2026-01-09T17:00:00Z"),
        &extra,
    );
    assert_eq!(
        day,
        vec![
            shift(
                "dave",
                layer("daytime"),
                "2026-01-09T09:00:00Z",
                "2026-01-09T10:00:00Z"
            ),
            shift(
                "alice",
                ShiftSource::Override,
                "2026-01-09T10:00:00Z",
                "2026-01-09T12:00:00Z"
            ),
            shift(
                "dave",
                layer("daytime"),
                "2026-01-09T12:00:00Z",
                "2026-01-09T16:00:00Z"
            ),
            shift(
                "alice",
                layer("weekly"),
                "2026-01-09T16:00:00Z",
                "2026-01-09T17:00:00Z"
            ),
        ]
    );
    assert!(
        s.shifts(
            utc("2026-01-09T17:00:00Z"),
            utc("2026-01-09T17:00:00Z"),
            &[]
        )
        .is_empty()
    );
}

#[test]
fn gaps_where_nobody_is_on_call_are_absent() {
    let s = schedule(
        r#"
        name = "office"
        time_zone = "Europe/Berlin"
        [[layers]]
        name = "office"
        users = ["alice", "bob"]
        start = "2026-01-05T09:00:00"
        handoff = "0 0 9 * * *"
        [[layers.restrictions]]
        start = "22:00"
        end = "06:00"
        "#,
    );
    // An overnight window, every day: 21:00-05:00 UTC in winter.
    let night = s.shifts(
        utc("2026-01-05T00:00:00Z"),
        utc("2026-01-07T00:00:00Z"),
        &[],
    );
    assert_eq!(
        brief(&night),
        expect(&[
            ("alice", "2026-01-05T21:00:00Z", "2026-01-06T05:00:00Z"),
            ("bob", "2026-01-06T21:00:00Z", "2026-01-07T00:00:00Z"),
        ])
    );
    assert_eq!(who(&s, "2026-01-06T12:00:00Z", &[]), None);
    // Nobody now, but someone tonight: that is who is next.
    let next = s
        .next_on_call(utc("2026-01-06T12:00:00Z"), &[])
        .expect("someone is next");
    assert_eq!(next.user, "bob");
    assert_eq!(next.start, utc("2026-01-06T21:00:00Z"));
    // At the end of a night shift, the next is the following night's.
    let after_alice = s.next_on_call(utc("2026-01-06T05:00:00Z"), &[]).unwrap();
    assert_eq!(
        (after_alice.user.as_str(), after_alice.start),
        ("bob", utc("2026-01-06T21:00:00Z"))
    );
    let o = s.who_is_on_call(utc("2026-01-06T01:00:00Z"), &[]).unwrap();
    assert_eq!(
        (o.start, o.end),
        (utc("2026-01-05T21:00:00Z"), utc("2026-01-06T05:00:00Z"))
    );
}

/// A daily rotation of a, b, c handing off at `time` local, starting `start`.
fn daily(tz: &str, start: &str, time: &str) -> Schedule {
    let (h, m) = time.split_once(':').unwrap();
    schedule(&format!(
        r#"
        name = "dst"
        time_zone = "{tz}"
        [[layers]]
        name = "daily"
        users = ["a", "b", "c"]
        start = "{start}"
        handoff = "0 {m} {h} * * *"
        "#
    ))
}

fn layer_brief(s: &Schedule, from: &str, to: &str) -> Vec<(String, String, String)> {
    brief(&s.layer_shifts(0, utc(from), utc(to)))
}

#[test]
fn berlin_spring_gap_hands_off_once_when_the_clock_jumps() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    let s = daily("Europe/Berlin", "2026-03-27T02:30:00", "02:30");
    assert_eq!(
        layer_brief(&s, "2026-03-27T01:30:00Z", "2026-03-31T01:00:00Z"),
        expect(&[
            ("a", "2026-03-27T01:30:00Z", "2026-03-28T01:30:00Z"),
            ("b", "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z"),
            // At 03:00 local = 01:00 UTC; nobody skipped.
            ("c", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
            ("a", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"),
            ("b", "2026-03-31T00:30:00Z", "2026-04-01T00:30:00Z"),
        ])
    );
    assert_eq!(who(&s, "2026-03-29T00:59:59Z", &[]).unwrap().0, "b");
    assert_eq!(who(&s, "2026-03-29T01:00:00Z", &[]).unwrap().0, "c");
    // The final schedule agrees with the layer.
    assert_eq!(
        brief(&s.shifts(
            utc("2026-03-28T12:00:00Z"),
            utc("2026-03-30T12:00:00Z"),
            &[]
        )),
        expect(&[
            ("b", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),
            ("c", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
            ("a", "2026-03-30T00:30:00Z", "2026-03-30T12:00:00Z"),
        ])
    );
    // Starting inside the gap: the rotation starts when the clock jumps.
    let s = daily("Europe/Berlin", "2026-03-29T02:10:00", "02:30");
    assert_eq!(
        layer_brief(&s, "2026-03-29T00:00:00Z", "2026-03-30T01:00:00Z"),
        expect(&[
            ("a", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
            ("b", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"),
        ])
    );
}

#[test]
fn berlin_autumn_fold_hands_off_once_at_the_first_occurrence() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    let s = daily("Europe/Berlin", "2026-10-23T02:30:00", "02:30");
    assert_eq!(
        layer_brief(&s, "2026-10-23T00:30:00Z", "2026-10-27T01:00:00Z"),
        expect(&[
            ("a", "2026-10-23T00:30:00Z", "2026-10-24T00:30:00Z"),
            ("b", "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"),
            // A 25-hour turn: no second handoff at the second 02:30.
            ("c", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"),
            ("a", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"),
        ])
    );
    assert_eq!(who(&s, "2026-10-25T01:30:00Z", &[]).unwrap().0, "c");
    assert_eq!(who(&s, "2026-10-25T01:29:59Z", &[]).unwrap().0, "c");
    let o = s.who_is_on_call(utc("2026-10-25T01:30:00Z"), &[]).unwrap();
    assert_eq!(
        (o.start, o.end),
        (utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z"))
    );
    // Years of daily turns later, the order still holds: 2030-10-27 is
    // 1465 handoffs after the start, 1465 % 3 == 1.
    assert_eq!(who(&s, "2030-10-27T12:00:00Z", &[]).unwrap().0, "b");
}

#[test]
fn new_york_spring_gap_at_two() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT; the 02:00 handoff happens at 03:00.
    let s = daily("America/New_York", "2026-03-06T02:00:00", "02:00");
    assert_eq!(
        layer_brief(&s, "2026-03-06T07:00:00Z", "2026-03-10T00:00:00Z"),
        expect(&[
            ("a", "2026-03-06T07:00:00Z", "2026-03-07T07:00:00Z"),
            ("b", "2026-03-07T07:00:00Z", "2026-03-08T07:00:00Z"),
            ("c", "2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"),
            ("a", "2026-03-09T06:00:00Z", "2026-03-10T06:00:00Z"),
        ])
    );
}

#[test]
fn new_york_autumn_fold_at_half_past_one() {
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    let s = daily("America/New_York", "2026-10-30T01:30:00", "01:30");
    assert_eq!(
        layer_brief(&s, "2026-10-30T05:30:00Z", "2026-11-03T00:00:00Z"),
        expect(&[
            ("a", "2026-10-30T05:30:00Z", "2026-10-31T05:30:00Z"),
            ("b", "2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z"),
            ("c", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"),
            ("a", "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z"),
        ])
    );
    assert_eq!(who(&s, "2026-11-01T06:30:00Z", &[]).unwrap().0, "c");
}

#[test]
fn frequent_handoffs_in_a_gap_collapse_into_one() {
    let s = schedule(
        r#"
        name = "busy"
        time_zone = "Europe/Berlin"
        [[layers]]
        name = "twenty"
        users = ["a", "b", "c", "d"]
        start = "2026-03-29T01:20:00"
        handoff = "0 */20 * * * *"
        "#,
    );
    // 01:40 CET, then 02:00/02:20/02:40 (missing) and 03:00 are one
    // handoff at 03:00 CEST = 01:00 UTC, then 03:20 CEST.
    assert_eq!(
        layer_brief(&s, "2026-03-29T00:00:00Z", "2026-03-29T01:30:00Z"),
        expect(&[
            ("a", "2026-03-29T00:20:00Z", "2026-03-29T00:40:00Z"),
            ("b", "2026-03-29T00:40:00Z", "2026-03-29T01:00:00Z"),
            ("c", "2026-03-29T01:00:00Z", "2026-03-29T01:20:00Z"),
            ("d", "2026-03-29T01:20:00Z", "2026-03-29T01:40:00Z"),
        ])
    );
    // In the autumn fold the second pass has no handoffs: 02:40 CEST
    // (00:40 UTC) lasts until 03:00 CET (02:00 UTC).
    let shifts = s.layer_shifts(0, utc("2026-10-25T00:30:00Z"), utc("2026-10-25T02:10:00Z"));
    let times: Vec<String> = shifts
        .iter()
        .map(|s| s.start.format("%H:%M").to_string())
        .collect();
    assert_eq!(times, vec!["00:20", "00:40", "02:00"]);
    assert_eq!(shifts[1].end, utc("2026-10-25T02:00:00Z"));
    // Counting agrees with walking turn by turn across the whole year.
    let mut walked = s.layer_shifts(0, utc("2026-03-29T00:30:00Z"), utc("2026-03-29T00:31:00Z"));
    let first_user = walked[0].user.clone();
    walked = s.layer_shifts(0, utc("2026-03-29T00:30:00Z"), utc("2027-01-01T00:00:00Z"));
    let last = walked.last().unwrap();
    let counted = who(&s, &last.start.to_rfc3339(), &[]).unwrap().0;
    assert_eq!(counted, last.user);
    let users = ["a", "b", "c", "d"];
    let first = users.iter().position(|u| *u == first_user).unwrap();
    assert_eq!(last.user, users[(first + walked.len() - 1) % 4]);
}

#[test]
fn counting_years_of_minute_handoffs_is_exact() {
    let s = schedule(
        r#"
        name = "minutes"
        time_zone = "UTC"
        [[layers]]
        name = "m"
        users = ["u0", "u1", "u2", "u3", "u4", "u5", "u6"]
        start = "2026-01-01T00:00:00"
        handoff = "0 * * * * *"
        "#,
    );
    // 730 days of 1440 handoffs.
    let n = 730 * 1440;
    assert_eq!(
        who(&s, "2028-01-01T00:00:30Z", &[]).unwrap().0,
        format!("u{}", n % 7)
    );
    // Berlin, every 15 minutes: each spring gap merges 02:00, 02:15,
    // 02:30, 02:45 and 03:00 into one handoff; folds add none.
    let s = schedule(
        r#"
        name = "quarters"
        time_zone = "Europe/Berlin"
        [[layers]]
        name = "q"
        users = ["u0", "u1", "u2", "u3", "u4", "u5", "u6"]
        start = "2026-01-01T00:00:00"
        handoff = "0 */15 * * * *"
        "#,
    );
    let n = 730 * 96 - 2 * 4;
    // 2028-01-01T00:00 local = 2027-12-31T23:00Z, a handoff.
    assert_eq!(
        who(&s, "2027-12-31T23:00:00Z", &[]).unwrap().0,
        format!("u{}", n % 7)
    );
}

#[test]
fn layer_shifts_are_not_clipped_and_unknown_layers_are_empty() {
    let s = schedule(TEAM);
    let raw = s.layer_shifts(1, utc("2026-01-06T00:00:00Z"), utc("2026-01-13T00:00:00Z"));
    assert_eq!(
        brief(&raw),
        expect(&[
            ("dave", "2026-01-05T08:00:00Z", "2026-01-12T08:00:00Z"),
            ("erin", "2026-01-12T08:00:00Z", "2026-01-19T08:00:00Z"),
        ])
    );
    assert!(
        s.layer_shifts(0, utc("2025-01-01T00:00:00Z"), utc("2026-01-05T08:00:00Z"))
            .is_empty()
    );
    assert!(
        s.layer_shifts(7, utc("2026-01-06T00:00:00Z"), utc("2026-01-13T00:00:00Z"))
            .is_empty()
    );
}

#[test]
fn a_layers_effective_shifts_are_its_rotation_inside_its_restrictions() {
    let s = schedule(TEAM);
    let (from, to) = (utc("2026-01-05T00:00:00Z"), utc("2026-01-12T12:00:00Z"));
    // The daytime layer: its windows only (09:00-17:00 Berlin, weekdays),
    // the handoff on Monday inside a window.
    let daytime = s.layer_effective_shifts(1, from, to);
    assert_eq!(
        brief(&daytime),
        expect(&[
            ("dave", "2026-01-05T08:00:00Z", "2026-01-05T16:00:00Z"),
            ("dave", "2026-01-06T08:00:00Z", "2026-01-06T16:00:00Z"),
            ("dave", "2026-01-07T08:00:00Z", "2026-01-07T16:00:00Z"),
            ("dave", "2026-01-08T08:00:00Z", "2026-01-08T16:00:00Z"),
            ("dave", "2026-01-09T08:00:00Z", "2026-01-09T16:00:00Z"),
            ("erin", "2026-01-12T08:00:00Z", "2026-01-12T12:00:00Z"),
        ])
    );
    assert!(daytime.iter().all(|d| d.source == layer("daytime")));
    // The weekly layer is unrestricted: its turns from its start, clipped,
    // and the override on Wednesday does not show.
    assert_eq!(
        brief(&s.layer_effective_shifts(0, from, to)),
        expect(&[
            ("alice", "2026-01-05T08:00:00Z", "2026-01-12T08:00:00Z"),
            ("bob", "2026-01-12T08:00:00Z", "2026-01-12T12:00:00Z"),
        ])
    );
    assert!(s.layer_effective_shifts(2, from, to).is_empty());
    assert!(s.layer_effective_shifts(1, to, from).is_empty());
}

#[test]
fn overlapping_and_overnight_windows_merge_into_one_shift() {
    let s = schedule(
        r#"
        name = "office"
        time_zone = "Europe/Berlin"
        [[layers]]
        name = "office"
        users = ["alice", "bob"]
        start = "2026-01-05T00:00:00"
        handoff = "0 0 0 * * Mon"
        [[layers.restrictions]]
        days = ["mon"]
        start = "09:00"
        end = "13:00"
        [[layers.restrictions]]
        days = ["mon"]
        start = "12:00"
        end = "17:00"
        [[layers.restrictions]]
        days = ["tue"]
        start = "22:00"
        end = "00:00"
        [[layers.restrictions]]
        days = ["wed"]
        start = "00:00"
        end = "06:00"
        "#,
    );
    let (from, to) = (utc("2026-01-04T23:00:00Z"), utc("2026-01-11T23:00:00Z"));
    assert_eq!(
        brief(&s.layer_effective_shifts(0, from, to)),
        expect(&[
            ("alice", "2026-01-05T08:00:00Z", "2026-01-05T16:00:00Z"),
            ("alice", "2026-01-06T21:00:00Z", "2026-01-07T05:00:00Z"),
        ])
    );
    assert_eq!(
        brief(&s.layer_effective_shifts(0, from, to)),
        brief(&s.shifts(from, to, &[]))
    );
}

#[test]
fn local_days_are_23_or_25_hours_around_dst() {
    let ny = chrono_tz::America::New_York;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        local_day_start(ny, day("2026-11-01")),
        utc("2026-11-01T04:00:00Z")
    );
    assert_eq!(
        local_day_start(ny, day("2026-11-02")),
        utc("2026-11-02T05:00:00Z")
    );
    assert_eq!(
        local_day_start(ny, day("2026-03-08")),
        utc("2026-03-08T05:00:00Z")
    );
    assert_eq!(
        local_day_start(ny, day("2026-03-09")),
        utc("2026-03-09T04:00:00Z")
    );
    // Chile springs forward at midnight: the day begins at 01:00 local.
    let santiago = chrono_tz::America::Santiago;
    assert_eq!(
        local_day_start(santiago, day("2026-09-06")),
        utc("2026-09-06T04:00:00Z")
    );
    assert_eq!(
        local_day_start(chrono_tz::UTC, day("2026-09-06")),
        utc("2026-09-06T00:00:00Z")
    );
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let cfg: ScheduleConfig = toml::from_str(
        r#"
        name = " "
        time_zone = "Mars/Olympus_Mons"

        [[layers]]
        name = "a"
        users = ["alice", "mallory"]
        start = "2026-13-01T09:00:00"
        handoff = "0 9 * * Mon"

        [[layers]]
        name = "a"
        users = []
        start = "2026-01-05T09:00:00+01:00"
        handoff = "0 0 9 * * Funday"
        [[layers.restrictions]]
        days = ["mon", "funday"]
        start = "25:00"
        end = "noon"

        [[layers]]
        name = "old"
        users = ["bob"]
        start = "2026-01-05T09:00:00"
        handoff = "0 0 9 * * * 2020"

        [[overrides]]
        user = "nobody"
        start = "2026-01-07T12:00:00+01:00"
        end = "2026-01-07T12:00:00+01:00"
        "#,
    )
    .unwrap();
    let issues = Schedule::build(&cfg, &known_user).unwrap_err();
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "name",
            "time_zone",
            "layers[0].users[1]",
            "layers[0].start",
            "layers[0].handoff",
            "layers[1].name",
            "layers[1].users",
            "layers[1].start",
            "layers[1].handoff",
            "layers[1].restrictions[0].days[1]",
            "layers[1].restrictions[0].start",
            "layers[1].restrictions[0].end",
            "layers[2].handoff",
            "overrides[0].user",
            "overrides[0].end",
        ],
        "{issues:#?}"
    );
    let message = |path: &str| {
        issues
            .iter()
            .find(|i| i.path == path)
            .map(|i| i.message.clone())
            .unwrap()
    };
    assert!(message("time_zone").contains("Mars/Olympus_Mons"));
    assert!(message("layers[0].users[1]").contains("mallory"));
    assert!(message("layers[0].handoff").contains("5 fields"));
    assert!(message("layers[1].name").contains("twice"));
    assert!(message("layers[1].start").contains("no offset"));
    assert!(message("layers[2].handoff").contains("never fires"));
    assert!(message("overrides[0].end").contains("after start"));
    assert!(
        issues.iter().all(|i| !i.message.contains('\n')),
        "{issues:#?}"
    );
    assert_eq!(
        issues[0].to_string(),
        "name: must not be empty",
        "Display is path: message"
    );
}

#[test]
fn config_rejects_unknown_fields_and_offsetless_overrides() {
    let err = toml::from_str::<ScheduleConfig>(
        r#"
        name = "x"
        time_zone = "UTC"
        colour = "red"
        "#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = toml::from_str::<ScheduleConfig>(
        r#"
        name = "x"
        time_zone = "UTC"
        [[overrides]]
        user = "alice"
        start = 2026-01-07T12:00:00
        end = 2026-01-07T13:00:00
        "#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("RFC 3339"), "{err}");
    let err = toml::from_str::<ScheduleConfig>(
        r#"
        name = "x"
        time_zone = "UTC"
        [[layers]]
        name = "l"
        users = ["alice"]
        start = "2026-01-05T09:00:00"
        handoff = "0 0 9 * * Mon"
        [[layers.restrictions]]
        start = "09:00"
        end = "17:00"
        day = ["mon"]
        "#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn config_deserializes_through_toml_values_like_config_rs_does() {
    // config.rs deserializes each array element from a toml::Value.
    let root: toml::Value = toml::from_str(&format!(
        "[[schedules]]\n{}",
        TEAM.replace("[[layers", "[[schedules.layers")
            .replace("[[overrides", "[[schedules.overrides")
    ))
    .unwrap();
    let item = root["schedules"][0].clone();
    let cfg: ScheduleConfig = item.try_into().unwrap();
    assert_eq!(cfg.layers.len(), 2);
    assert_eq!(cfg.layers[1].start, "2026-01-05T09:00:00");
    assert_eq!(cfg.overrides[0].start, utc("2026-01-07T11:00:00Z"));
    assert!(Schedule::build(&cfg, &known_user).is_ok());
}

#[test]
fn shift_source_serializes_tagged() {
    let json = serde_json::to_string(&layer("weekly")).unwrap();
    assert_eq!(json, r#"{"layer":"weekly"}"#);
    assert_eq!(
        serde_json::to_string(&ShiftSource::Override).unwrap(),
        r#""override""#
    );
    let o = OnCall {
        user: "alice".into(),
        source: layer("weekly"),
        start: utc("2026-01-05T08:00:00Z"),
        end: utc("2026-01-12T08:00:00Z"),
    };
    assert_eq!(
        serde_json::to_value(&o).unwrap(),
        serde_json::json!({
            "user": "alice",
            "source": {"layer": "weekly"},
            "start": "2026-01-05T08:00:00Z",
            "end": "2026-01-12T08:00:00Z",
        })
    );
}

#[test]
fn ical_feed_parses_back_with_one_event_per_shift() {
    use icalendar::{Calendar, CalendarDateTime, Component, DatePerhapsTime};
    let s = schedule(TEAM);
    let shifts = s.shifts(
        utc("2026-01-05T00:00:00Z"),
        utc("2026-01-12T12:00:00Z"),
        &[],
    );
    let made = utc("2026-01-04T12:00:00Z");
    let text = to_ical("primary", &shifts, made);
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n"), "{text}");
    // DTSTAMP is when the feed was made, for every event.
    assert_eq!(
        text.matches("DTSTAMP:20260104T120000Z\r\n").count(),
        shifts.len(),
        "{text}"
    );
    assert!(text.contains("DTSTART:20260105T080000Z\r\n"), "{text}");
    let cal: Calendar = text.parse().unwrap();
    let events: Vec<_> = cal.events().collect();
    assert_eq!(events.len(), shifts.len());
    let as_utc = |d: Option<DatePerhapsTime>| match d {
        Some(DatePerhapsTime::DateTime(CalendarDateTime::Utc(dt))) => Some(dt),
        _ => None,
    };
    let mut uids = std::collections::HashSet::new();
    for (e, s) in events.iter().zip(&shifts) {
        assert_eq!(as_utc(e.get_start()), Some(s.start));
        assert_eq!(as_utc(e.get_end()), Some(s.end));
        assert_eq!(
            e.get_summary(),
            Some(format!("On call: {}", s.user).as_str())
        );
        assert!(uids.insert(e.get_uid().unwrap().to_string()), "unique UIDs");
    }
    // Stable: the same shifts give the same feed.
    assert_eq!(to_ical("primary", &shifts, made), text);
    assert!(
        text.contains("UID:primary/20260105T080000Z/dave@tocsin\r\n"),
        "{text}"
    );
    // Awkward names are escaped in the UID and round-trip in the summary.
    let odd = [shift(
        "o'neil, jr; /x@y",
        ShiftSource::Override,
        "2026-01-05T08:00:00Z",
        "2026-01-05T09:00:00Z",
    )];
    let text = to_ical("on call/eu", &odd, made);
    let cal: Calendar = text.parse().unwrap();
    let e = cal.events().next().unwrap();
    assert_eq!(e.get_summary(), Some("On call: o'neil, jr; /x@y"));
    assert_eq!(
        e.get_uid(),
        Some("on%20call%2Feu/20260105T080000Z/o%27neil%2C%20jr%3B%20%2Fx%40y@tocsin")
    );
}

#[test]
fn fixture_dates_fall_on_the_expected_weekdays() {
    let day = |s: &str| {
        NaiveDateTime::parse_from_str(&format!("{s}T00:00:00"), "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .weekday()
    };
    assert_eq!(day("2026-01-05"), chrono::Weekday::Mon);
    // The DST days the tests rely on are Sundays.
    for d in ["2026-03-29", "2026-10-25", "2026-03-08", "2026-11-01"] {
        assert_eq!(day(d), chrono::Weekday::Sun, "{d}");
    }
}
