//! Date-times as senders write them.
//!
//! PagerDuty's PD-CEF says ISO 8601 and its own example is
//! `2015-07-17T08:42:58.315+0000`; Netdata sends `2026-12-01T10:00:00.000`
//! with no offset; Go senders write RFC 3339 with nanoseconds; amtool sends
//! Go's zero time `0001-01-01T00:00:00.000Z` for "not set". All of them parse
//! here; a date-time without an offset is UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses an ISO 8601 date-time in any form senders use: `Z`, `+00:00`,
/// `+0000`, `+00` or no offset (UTC), `T` or a space between date and time,
/// any number of fraction digits, seconds optional; also a bare date
/// (midnight UTC) and Unix seconds or milliseconds as digits.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    let norm: String = s
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            ' ' if i == 10 => 'T',
            't' if i == 10 => 'T',
            'z' => 'Z',
            c => c,
        })
        .collect();
    let norm = norm.as_str();
    if let Ok(t) = DateTime::parse_from_rfc3339(norm) {
        return Some(t.to_utc());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(norm, fmt) {
            return Some(t.to_utc());
        }
    }
    let naive = norm.strip_suffix('Z').unwrap_or(norm);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        // Beyond the year 2286 in seconds: milliseconds.
        return if n > 9_999_999_999 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
    }
    None
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which Go senders write
/// for "unset" (amtool, Alertmanager's firing alerts).
pub fn is_zero_time(t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    t.year() <= 1
}

/// A set date-time: parsed, and not Go's zero time.
pub fn parse_set_datetime(s: &str) -> Option<DateTime<Utc>> {
    parse_datetime(s).filter(|t| !is_zero_time(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn every_form_senders_use() {
        let at = utc("2015-07-17T08:42:58.315Z");
        for s in [
            "2015-07-17T08:42:58.315+0000",
            "2015-07-17T08:42:58.315+00:00",
            "2015-07-17T08:42:58.315Z",
            "2015-07-17T08:42:58.315z",
            "2015-07-17T08:42:58.315",
            "2015-07-17 08:42:58.315",
            "2015-07-17T08:42:58.315000000Z",
            "2015-07-17T10:42:58.315+0200",
            "2015-07-17T10:42:58.315+02",
            "2015-07-17T04:42:58.315-04:00",
            " 2015-07-17T08:42:58.315Z ",
        ] {
            assert_eq!(parse_datetime(s), Some(at), "{s}");
        }
        assert_eq!(
            parse_datetime("2026-12-01T10:00:00.000"),
            Some(utc("2026-12-01T10:00:00Z"))
        );
        assert_eq!(
            parse_datetime("2026-12-01T10:00"),
            Some(utc("2026-12-01T10:00:00Z"))
        );
        assert_eq!(
            parse_datetime("2026-12-01"),
            Some(utc("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            parse_datetime("1764583200"),
            Some(utc("2025-12-01T10:00:00Z"))
        );
        assert_eq!(
            parse_datetime("1764583200123"),
            Some(utc("2025-12-01T10:00:00.123Z"))
        );
    }

    #[test]
    fn junk_is_none_and_zero_is_unset() {
        for s in ["", "yesterday", "2015-13-45T00:00:00Z", "12:00"] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
        let zero = parse_datetime("0001-01-01T00:00:00.000Z").unwrap();
        assert!(is_zero_time(zero));
        assert_eq!(parse_set_datetime("0001-01-01T00:00:00Z"), None);
        assert!(parse_set_datetime("2026-12-01T00:00:00Z").is_some());
    }
}
