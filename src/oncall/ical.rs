//! iCalendar (RFC 5545) feeds of shifts, for calendar subscriptions.

use super::{Shift, ShiftSource};
use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, EventLike};

/// iCalendar feed of shifts, one VEVENT each (UID stable per schedule, start and user; times in UTC).
///
/// DTSTAMP is `made_at`, when the feed was made (RFC 5545's meaning); the
/// caller reads it from its clock.
pub fn to_ical(schedule_name: &str, shifts: &[Shift], made_at: DateTime<Utc>) -> String {
    let mut cal = Calendar::new();
    cal.name(&format!("On call: {schedule_name}"));
    for s in shifts {
        let from = match &s.source {
            ShiftSource::Layer(layer) => format!("layer {layer}"),
            ShiftSource::Override => "an override".to_string(),
        };
        cal.push(
            icalendar::Event::new()
                .uid(&uid(schedule_name, s))
                .summary(&format!("On call: {}", s.user))
                .description(&format!("Schedule {schedule_name}, from {from}."))
                // DTSTAMP: when this feed was made (RFC 5545), not the shift.
                .timestamp(made_at)
                .starts(s.start)
                .ends(s.end)
                .done(),
        );
    }
    cal.done().to_string()
}

/// `schedule/start/user@tocsin`, with anything but `[A-Za-z0-9._-]`
/// percent-encoded so the parts cannot run into each other.
fn uid(schedule: &str, s: &Shift) -> String {
    format!(
        "{}/{}/{}@tocsin",
        escape(schedule),
        s.start.format("%Y%m%dT%H%M%SZ"),
        escape(&s.user)
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
