//! The pages report: how many pages each person got in a window, and how
//! many of them outside their working hours (a day not in `[reports]
//! working_days`, or a time outside `working_hours`, on the person's own
//! clock: `[[users]] time_zone`, else `[reports] time_zone`). Pure: the
//! caller reads the delivered pages from the store.

use super::report::csv_field;
use crate::config::WorkingTime;
use crate::markup::html::escape;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A page delivered to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct SentPage {
    /// The user it went to.
    pub user: String,
    /// When it was delivered.
    pub at: DateTime<Utc>,
}

/// One person's pages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonRow {
    /// The user.
    pub user: String,
    /// The time zone their working hours were read in.
    pub time_zone: String,
    /// Pages delivered to them in the window.
    pub pages: u64,
    /// Of them, outside their working hours.
    pub outside_hours: u64,
}

/// The report over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PagesReport {
    /// Pages delivered from here...
    pub since: DateTime<Utc>,
    /// ...until here (included).
    pub until: DateTime<Utc>,
    /// Local working hours, like `09:00-18:00`.
    pub working_hours: String,
    /// Working days, like `["mon", ..., "fri"]`.
    pub working_days: Vec<String>,
    /// The time zone of people without their own.
    pub default_time_zone: String,
    /// Pages in all.
    pub pages: u64,
    /// Of them, outside working hours.
    pub outside_hours: u64,
    /// By person: the most paged first, then by name.
    pub rows: Vec<PersonRow>,
}

/// The report of the `pages` delivered from `since` up to and including
/// `until` (now, when the service asks: a page sent this instant counts);
/// others are ignored.
pub fn build<'a>(
    pages: impl IntoIterator<Item = &'a SentPage>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    working: &WorkingTime,
) -> PagesReport {
    let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in pages {
        if p.at < since || p.at > until {
            continue;
        }
        let acc = by.entry(p.user.as_str()).or_default();
        acc.0 += 1;
        if working.is_outside(&p.user, p.at) {
            acc.1 += 1;
        }
    }
    let mut rows: Vec<PersonRow> = by
        .into_iter()
        .map(|(user, (pages, outside_hours))| PersonRow {
            user: user.to_string(),
            time_zone: working.time_zone(user).name().to_string(),
            pages,
            outside_hours,
        })
        .collect();
    rows.sort_by(|a, b| b.pages.cmp(&a.pages).then_with(|| a.user.cmp(&b.user)));
    PagesReport {
        since,
        until,
        working_hours: working.hours(),
        working_days: working.days().into_iter().map(String::from).collect(),
        default_time_zone: working.default_zone().name().to_string(),
        pages: rows.iter().map(|r| r.pages).sum(),
        outside_hours: rows.iter().map(|r| r.outside_hours).sum(),
        rows,
    }
}

/// The rows as CSV, with a header line.
pub fn csv(report: &PagesReport) -> String {
    let mut out = String::from("user,time_zone,pages,outside_hours\n");
    for r in &report.rows {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            csv_field(&r.user),
            r.time_zone,
            r.pages,
            r.outside_hours
        );
    }
    out
}

/// What "outside working hours" meant: `mon,tue,wed,thu,fri 09:00-18:00`.
fn rule(report: &PagesReport) -> String {
    format!("{} {}", report.working_days.join(","), report.working_hours)
}

/// The rows as an aligned text table, for the CLI.
pub fn table(report: &PagesReport) -> String {
    let mut out = format!(
        "Pages sent {} to {}; working hours {} on each person's clock (default {})\n",
        report.since.format("%Y-%m-%d %H:%M UTC"),
        report.until.format("%Y-%m-%d %H:%M UTC"),
        rule(report),
        report.default_time_zone
    );
    if report.rows.is_empty() {
        out.push_str("No pages.\n");
        return out;
    }
    let width = report
        .rows
        .iter()
        .map(|r| r.user.chars().count())
        .max()
        .unwrap_or(0)
        .max("USER".len());
    let zone = report
        .rows
        .iter()
        .map(|r| r.time_zone.len())
        .max()
        .unwrap_or(0)
        .max("TIME ZONE".len());
    let _ = writeln!(
        out,
        "{:width$}  {:zone$}  {:>5}  {:>13}",
        "USER", "TIME ZONE", "PAGES", "OUTSIDE HOURS"
    );
    for r in &report.rows {
        let _ = writeln!(
            out,
            "{:width$}  {:zone$}  {:>5}  {:>13}",
            r.user, r.time_zone, r.pages, r.outside_hours
        );
    }
    let _ = writeln!(
        out,
        "{:width$}  {:zone$}  {:>5}  {:>13}",
        "TOTAL", "", report.pages, report.outside_hours
    );
    out
}

/// A horizontal bar chart: a bar per person as long as their pages, the
/// part outside working hours in its own colour, labelled; every name
/// escaped.
pub fn svg(report: &PagesReport) -> String {
    const LABEL_W: f64 = 220.0;
    const BAR_W: f64 = 460.0;
    const ROW_H: f64 = 28.0;
    const INSIDE: &str = "#0b57d0";
    const OUTSIDE: &str = "#b3261e";
    let height = 40.0 + ROW_H * report.rows.len().max(1) as f64;
    let width = LABEL_W + BAR_W + 200.0;
    let max = report
        .rows
        .iter()
        .map(|r| r.pages)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="pages-title" font-family="sans-serif" font-size="13">
<title id="pages-title">Pages per person, inside and outside working hours ({})</title>
<rect x="{LABEL_W}" y="8" width="12" height="12" fill="{INSIDE}"/><text x="{}" y="19" fill="#1b1f24">working hours</text>
<rect x="{}" y="8" width="12" height="12" fill="{OUTSIDE}"/><text x="{}" y="19" fill="#1b1f24">outside working hours</text>
"##,
        escape(&rule(report)),
        LABEL_W + 18.0,
        LABEL_W + 130.0,
        LABEL_W + 148.0
    );
    if report.rows.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="10" y="56" fill="#1b1f24">No pages in this window.</text>"##
        );
    }
    for (i, r) in report.rows.iter().enumerate() {
        let y = 32.0 + ROW_H * i as f64;
        let inside = (r.pages - r.outside_hours) as f64 / max * BAR_W;
        let outside = r.outside_hours as f64 / max * BAR_W;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#1b1f24">{}</text>"##,
            LABEL_W - 8.0,
            y + 15.0,
            escape(&r.user)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LABEL_W}" y="{}" width="{inside:.1}" height="16" fill="{INSIDE}"/><rect x="{:.1}" y="{}" width="{outside:.1}" height="16" fill="{OUTSIDE}"/><text x="{:.1}" y="{}" fill="#1b1f24">{} ({} outside hours)</text>"##,
            y + 3.0,
            LABEL_W + inside,
            y + 3.0,
            LABEL_W + inside + outside + 6.0,
            y + 15.0,
            r.pages,
            r.outside_hours
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(user: &str, at: &str) -> SentPage {
        SentPage {
            user: user.into(),
            at: at.parse().unwrap(),
        }
    }

    fn window() -> (DateTime<Utc>, DateTime<Utc>) {
        (
            "2026-11-30T00:00:00Z".parse().unwrap(),
            "2026-12-14T00:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn pages_and_pages_outside_working_hours_by_person() {
        let (since, until) = window();
        let working = WorkingTime::default().with_zone("bob", chrono_tz::America::New_York);
        let all = [
            page("alice", "2026-12-07T10:00:00Z"), // Monday, working
            page("alice", "2026-12-07T08:59:00Z"), // before nine
            page("alice", "2026-12-05T12:00:00Z"), // Saturday
            page("bob", "2026-12-07T10:00:00Z"),   // 05:00 in New York
            page("bob", "2026-12-07T20:00:00Z"),   // 15:00 there
            page("o'neil, jr", "2026-12-08T12:00:00Z"),
            page("alice", "2026-11-29T12:00:00Z"), // before the window
            page("alice", "2026-12-14T00:00:00Z"), // at its end: counts
            page("alice", "2026-12-14T00:00:01Z"), // after it
        ];
        let r = build(&all, since, until, &working);
        assert_eq!((r.pages, r.outside_hours), (7, 4));
        assert_eq!(r.working_hours, "09:00-18:00");
        assert_eq!(r.default_time_zone, "UTC");
        let rows: Vec<(&str, &str, u64, u64)> = r
            .rows
            .iter()
            .map(|p| {
                (
                    p.user.as_str(),
                    p.time_zone.as_str(),
                    p.pages,
                    p.outside_hours,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("alice", "UTC", 4, 3),
                ("bob", "America/New_York", 2, 1),
                ("o'neil, jr", "UTC", 1, 0),
            ]
        );
        assert_eq!(
            csv(&r),
            "user,time_zone,pages,outside_hours\n\
             alice,UTC,4,3\n\
             bob,America/New_York,2,1\n\
             \"o'neil, jr\",UTC,1,0\n"
        );
        let t = table(&r);
        assert!(
            t.contains(
                "working hours mon,tue,wed,thu,fri 09:00-18:00 on each person's clock (default UTC)"
            ),
            "{t}"
        );
        assert!(
            t.contains("USER        TIME ZONE         PAGES  OUTSIDE HOURS\n"),
            "{t}"
        );
        assert!(
            t.contains("bob         America/New_York      2              1\n"),
            "{t}"
        );
        assert!(
            t.contains("TOTAL                             7              4\n"),
            "{t}"
        );
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(">alice</text>"), "{svg}");
        assert!(svg.contains(">4 (3 outside hours)</text>"), "{svg}");
    }

    #[test]
    fn an_empty_window_says_so() {
        let (since, until) = window();
        let r = build(&[], since, until, &WorkingTime::default());
        assert!(r.rows.is_empty());
        assert_eq!(csv(&r), "user,time_zone,pages,outside_hours\n");
        assert!(table(&r).ends_with("No pages.\n"));
        assert!(svg(&r).contains("No pages in this window."));
    }

    #[test]
    fn names_in_the_chart_are_escaped() {
        let (since, until) = window();
        let all = [page("<script>&\"x\"", "2026-12-07T10:00:00Z")];
        let svg = svg(&build(&all, since, until, &WorkingTime::default()));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;&amp;"), "{svg}");
        roxmltree::Document::parse(&svg).unwrap();
    }
}
