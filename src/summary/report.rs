//! Response reports: time to acknowledge (MTTA) and to resolve (MTTR) by
//! service and ISO week, from stored incidents (so they survive restarts,
//! unlike the in-memory histograms of `/metrics`). Pure: the caller reads
//! the incidents and says which window they cover.
//!
//! An incident counts in the week (UTC, Monday first) it opened in. MTTA
//! averages over the incidents acknowledged so far, MTTR over those
//! resolved. Drills are left out.

use crate::incident::{Incident, Severity};
use crate::markup::html::escape;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A row's group: a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ByService {
    /// The service.
    pub service: String,
}

/// A row's group: a severity, over every service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BySeverity {
    /// The severity, `SEV1`..`SEV4`.
    pub severity: String,
}

/// A group's week: its key (`service` or `severity`) and the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekRow<K> {
    /// The group.
    #[serde(flatten)]
    pub key: K,
    /// The ISO week, like `2026-W49`.
    pub week: String,
    /// Its Monday.
    pub week_start: NaiveDate,
    /// Incidents opened that week.
    pub incidents: u64,
    /// Of them, acknowledged (by now).
    pub acknowledged: u64,
    /// Mean time to acknowledge, in seconds.
    pub mtta_seconds: Option<f64>,
    /// Of them, resolved (by now).
    pub resolved: u64,
    /// Mean time to resolve, in seconds.
    pub mttr_seconds: Option<f64>,
}

/// One service's week.
pub type ReportRow = WeekRow<ByService>;

/// One severity's week, over every service.
pub type SeverityRow = WeekRow<BySeverity>;

/// What rows are grouped by: its column's name and a row's label.
pub trait Group {
    /// The column, as the CSV header names it (`service`).
    const NAME: &'static str;
    /// This row's label.
    fn label(&self) -> &str;
}

impl Group for ByService {
    const NAME: &'static str = "service";
    fn label(&self) -> &str {
        &self.service
    }
}

impl Group for BySeverity {
    const NAME: &'static str = "severity";
    fn label(&self) -> &str {
        &self.severity
    }
}

/// The report over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Incidents opened from here...
    pub since: DateTime<Utc>,
    /// ...until here.
    pub until: DateTime<Utc>,
    /// By service, then week.
    pub rows: Vec<ReportRow>,
    /// By severity (most severe first), then week.
    pub by_severity: Vec<SeverityRow>,
}

#[derive(Default)]
struct Acc {
    week_start: Option<NaiveDate>,
    incidents: u64,
    acks: Vec<i64>,
    resolves: Vec<i64>,
}

/// The accumulated weeks as rows, in the map's order.
fn rows<G: Ord, K>(by: BTreeMap<(G, String), Acc>, key: impl Fn(G) -> K) -> Vec<WeekRow<K>> {
    by.into_iter()
        .map(|((group, week), a)| WeekRow {
            key: key(group),
            week,
            week_start: a.week_start.expect("set with the first incident"),
            incidents: a.incidents,
            acknowledged: a.acks.len() as u64,
            mtta_seconds: mean(&a.acks),
            resolved: a.resolves.len() as u64,
            mttr_seconds: mean(&a.resolves),
        })
        .collect()
}

fn mean(xs: &[i64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<i64>() as f64 / xs.len() as f64)
}

/// The report of `incidents` opened in `[since, until)`; others are ignored.
pub fn build<'a>(
    incidents: impl IntoIterator<Item = &'a Incident>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Report {
    let mut by: BTreeMap<(String, String), Acc> = BTreeMap::new();
    // SEV1 first, then by week.
    let mut by_severity: BTreeMap<(Severity, String), Acc> = BTreeMap::new();
    for inc in incidents {
        if inc.drill || inc.created_at < since || inc.created_at >= until {
            continue;
        }
        let day = inc.created_at.date_naive();
        let iso = day.iso_week();
        let week = format!("{}-W{:02}", iso.year(), iso.week());
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        for acc in [
            by.entry((inc.service.clone(), week.clone())).or_default(),
            by_severity.entry((inc.severity, week)).or_default(),
        ] {
            acc.week_start = Some(monday);
            acc.incidents += 1;
            if let Some(at) = inc.acknowledged_at {
                acc.acks.push((at - inc.created_at).num_seconds().max(0));
            }
            if let Some(at) = inc.resolved_at {
                acc.resolves
                    .push((at - inc.created_at).num_seconds().max(0));
            }
        }
    }
    // SEV1 sorts first: the map's order is the severity's, not its label's.
    let by_severity = rows(by_severity, |severity: Severity| BySeverity {
        severity: severity.label().to_string(),
    });
    let rows = rows(by, |service| ByService { service });
    Report {
        since,
        until,
        rows,
        by_severity,
    }
}

/// `1h 05m`, `12m 30s`, `45s`, or `-` for none.
pub fn human(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let s = s.round() as i64;
    match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Rows as CSV, with a header line; times in seconds.
fn csv_of<K: Group>(rows: &[WeekRow<K>]) -> String {
    let mut out = format!(
        "{},week,week_start,incidents,acknowledged,mtta_seconds,resolved,mttr_seconds\n",
        K::NAME
    );
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.0}")).unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            csv_field(r.key.label()),
            r.week,
            r.week_start,
            r.incidents,
            r.acknowledged,
            secs(r.mtta_seconds),
            r.resolved,
            secs(r.mttr_seconds)
        );
    }
    out
}

/// The rows by service as CSV, with a header line; times in seconds.
pub fn csv(report: &Report) -> String {
    csv_of(&report.rows)
}

/// The rows by severity as CSV, with a header line; times in seconds.
pub fn csv_by_severity(report: &Report) -> String {
    csv_of(&report.by_severity)
}

/// Rows as aligned text, under a header naming the group in capitals.
fn table_of<K: Group>(out: &mut String, rows: &[WeekRow<K>]) {
    let name = K::NAME.to_uppercase();
    let width = rows
        .iter()
        .map(|r| r.key.label().chars().count())
        .max()
        .unwrap_or(0)
        .max(name.len());
    let _ = writeln!(
        out,
        "{name:width$}  {:8}  {:>9}  {:>5}  {:>9}  {:>8}  {:>9}",
        "WEEK", "INCIDENTS", "ACKED", "MTTA", "RESOLVED", "MTTR"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:width$}  {:8}  {:>9}  {:>5}  {:>9}  {:>8}  {:>9}",
            r.key.label(),
            r.week,
            r.incidents,
            r.acknowledged,
            human(r.mtta_seconds),
            r.resolved,
            human(r.mttr_seconds)
        );
    }
}

/// The rows as an aligned text table, for the CLI: by service, then by
/// severity.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "Incidents opened {} to {}\n",
        report.since.format("%Y-%m-%d %H:%M UTC"),
        report.until.format("%Y-%m-%d %H:%M UTC")
    );
    if report.rows.is_empty() {
        out.push_str("No incidents.\n");
        return out;
    }
    table_of(&mut out, &report.rows);
    out.push('\n');
    table_of(&mut out, &report.by_severity);
    out
}

/// A horizontal bar chart: for each service and week, MTTA and MTTR bars
/// on one scale (minutes), labelled; every label escaped.
pub fn svg(report: &Report) -> String {
    const LABEL_W: f64 = 220.0;
    const BAR_W: f64 = 460.0;
    const ROW_H: f64 = 44.0;
    let height = 40.0 + ROW_H * report.rows.len().max(1) as f64;
    let width = LABEL_W + BAR_W + 90.0;
    let max = report
        .rows
        .iter()
        .flat_map(|r| [r.mtta_seconds, r.mttr_seconds])
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="report-title" font-family="sans-serif" font-size="13">
<title id="report-title">Mean time to acknowledge and to resolve, by service and week</title>
<rect x="{LABEL_W}" y="8" width="12" height="12" fill="#0b57d0"/><text x="{}" y="19" fill="#1b1f24">MTTA</text>
<rect x="{}" y="8" width="12" height="12" fill="#146c2e"/><text x="{}" y="19" fill="#1b1f24">MTTR</text>
"##,
        LABEL_W + 18.0,
        LABEL_W + 80.0,
        LABEL_W + 98.0
    );
    if report.rows.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="10" y="56" fill="#1b1f24">No incidents in this window.</text>"##
        );
    }
    for (i, r) in report.rows.iter().enumerate() {
        let y = 32.0 + ROW_H * i as f64;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#1b1f24">{} {}</text>"##,
            LABEL_W - 8.0,
            y + 22.0,
            escape(&r.key.service),
            r.week
        );
        for (j, (value, colour)) in [(r.mtta_seconds, "#0b57d0"), (r.mttr_seconds, "#146c2e")]
            .into_iter()
            .enumerate()
        {
            let by = y + 6.0 + 17.0 * j as f64;
            let w = value.map_or(0.0, |v| (v / max * BAR_W).max(1.0));
            let _ = writeln!(
                out,
                r##"<rect x="{LABEL_W}" y="{by}" width="{w:.1}" height="14" fill="{colour}"/><text x="{:.1}" y="{}" fill="#1b1f24">{}</text>"##,
                LABEL_W + w + 6.0,
                by + 12.0,
                human(value)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{IncidentId, Severity, Status};

    fn incident(
        id: u64,
        service: &str,
        opened: &str,
        ack: Option<i64>,
        res: Option<i64>,
    ) -> Incident {
        let at: DateTime<Utc> = opened.parse().unwrap();
        let event = crate::incident::AlertEvent {
            dedup_key: format!("k{id}"),
            fingerprint: None,
            action: crate::incident::AlertAction::Trigger,
            summary: "s".into(),
            incident_title: None,
            source: "test".into(),
            severity: Some(Severity::Sev2),
            labels: Default::default(),
            details: serde_json::Value::Null,
            links: vec![],
            left_out: None,
            expires_at: None,
        };
        let mut inc = Incident::open(IncidentId(id), service, "pd", &event, at).incident;
        inc.acknowledged_at = ack.map(|m| at + Duration::minutes(m));
        inc.resolved_at = res.map(|m| at + Duration::minutes(m));
        if res.is_some() {
            inc.status = Status::Resolved;
        }
        inc
    }

    #[test]
    fn mtta_and_mttr_by_service_and_week() {
        let since: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        let until: DateTime<Utc> = "2026-12-08T00:00:00Z".parse().unwrap();
        let mut drill = incident(9, "api", "2026-12-01T10:00:00Z", Some(1), Some(2));
        drill.drill = true;
        let all = [
            incident(1, "api", "2026-11-30T10:00:00Z", Some(4), Some(30)),
            incident(2, "api", "2026-12-02T10:00:00Z", Some(6), None),
            incident(3, "api", "2026-12-03T10:00:00Z", None, None),
            incident(4, "pay,ments", "2026-11-24T08:00:00Z", Some(1), Some(90)),
            incident(5, "api", "2026-10-01T08:00:00Z", Some(1), Some(1)),
            drill,
        ];
        let r = build(&all, since, until);
        assert_eq!(r.rows.len(), 2);
        let api = &r.rows[0];
        assert_eq!(
            (api.key.service.as_str(), api.week.as_str()),
            ("api", "2026-W49")
        );
        assert_eq!(api.week_start.to_string(), "2026-11-30");
        assert_eq!((api.incidents, api.acknowledged, api.resolved), (3, 2, 1));
        assert_eq!(api.mtta_seconds, Some(300.0));
        assert_eq!(api.mttr_seconds, Some(1800.0));
        assert_eq!(r.rows[1].week, "2026-W48");
        let csv = csv(&r);
        assert_eq!(
            csv,
            "service,week,week_start,incidents,acknowledged,mtta_seconds,resolved,mttr_seconds\n\
             api,2026-W49,2026-11-30,3,2,300,1,1800\n\
             \"pay,ments\",2026-W48,2026-11-23,1,1,60,1,5400\n"
        );
        let t = table(&r);
        assert!(
            t.contains("api        2026-W49          3      2     5m 00s         1    30m 00s"),
            "{t}"
        );
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.contains("pay,ments 2026-W48"));
        assert!(svg.contains(">1h 30m</text>"), "{svg}");
    }

    #[test]
    fn mtta_and_mttr_by_severity_and_week_most_severe_first() {
        let since: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
        let until: DateTime<Utc> = "2026-12-08T00:00:00Z".parse().unwrap();
        let with = |mut i: Incident, sev: Severity| {
            i.severity = sev;
            i
        };
        let all = [
            with(
                incident(1, "api", "2026-11-30T10:00:00Z", Some(2), Some(10)),
                Severity::Sev3,
            ),
            with(
                incident(2, "pay", "2026-12-01T10:00:00Z", Some(4), None),
                Severity::Sev1,
            ),
            with(
                incident(3, "api", "2026-12-02T10:00:00Z", Some(8), Some(20)),
                Severity::Sev1,
            ),
            with(
                incident(4, "api", "2026-11-24T10:00:00Z", None, None),
                Severity::Sev4,
            ),
            with(
                incident(5, "pay", "2026-11-24T10:00:00Z", Some(1), Some(1)),
                Severity::Sev1,
            ),
        ];
        let r = build(&all, since, until);
        type Row<'a> = (&'a str, &'a str, u64, Option<f64>, Option<f64>);
        let rows: Vec<Row> = r
            .by_severity
            .iter()
            .map(|s| {
                (
                    s.key.severity.as_str(),
                    s.week.as_str(),
                    s.incidents,
                    s.mtta_seconds,
                    s.mttr_seconds,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("SEV1", "2026-W48", 1, Some(60.0), Some(60.0)),
                ("SEV1", "2026-W49", 2, Some(360.0), Some(1200.0)),
                ("SEV3", "2026-W49", 1, Some(120.0), Some(600.0)),
                ("SEV4", "2026-W48", 1, None, None),
            ]
        );
        assert_eq!(
            csv_by_severity(&r),
            "severity,week,week_start,incidents,acknowledged,mtta_seconds,resolved,mttr_seconds\n\
             SEV1,2026-W48,2026-11-23,1,1,60,1,60\n\
             SEV1,2026-W49,2026-11-30,2,2,360,1,1200\n\
             SEV3,2026-W49,2026-11-30,1,1,120,1,600\n\
             SEV4,2026-W48,2026-11-23,1,0,,0,\n"
        );
        let t = table(&r);
        assert!(t.contains("SEVERITY  WEEK      INCIDENTS"), "{t}");
        assert!(
            t.contains("SEV1      2026-W49          2      2     6m 00s         1    20m 00s"),
            "{t}"
        );
    }

    #[test]
    fn labels_in_the_chart_are_escaped() {
        let t: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        let all = [incident(
            1,
            "<script>",
            "2026-12-02T10:00:00Z",
            Some(1),
            None,
        )];
        let svg = svg(&build(&all, t - Duration::days(1), t + Duration::days(1)));
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
