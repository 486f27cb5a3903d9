//! iCalendar (RFC 5545) feeds of shifts, for calendar subscriptions.

use super::{Shift, ShiftSource};
use icalendar::{Calendar, Component, EventLike};

/// iCalendar feed of shifts, one VEVENT each (UID stable per schedule, start and user; times in UTC).
///
/// DTSTAMP is the shift's start rather than the current time: the module
/// does not read the clock, and a feed that only changes when the shifts
/// change lets calendar clients and caches skip unchanged fetches.
pub fn to_ical(schedule_name: &str, shifts: &[Shift]) -> String {
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
                .timestamp(s.start)
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
