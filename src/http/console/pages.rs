//! The console's pages: incidents, one incident, on call, a schedule's
//! week. Every value from an incident, an alert or a person is escaped
//! with [`escape`]; summaries go through the Markdown subset, which
//! escapes too.

use super::markdown::{escape, render};
use super::{Refusal, Viewer, viewer};
use crate::http::AppState;
use crate::http::api::{ListQuery, incident_page, parse_id};
use crate::incident::{Incident, Status};
use crate::oncall::{Shift, ShiftSource};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::fmt::Write;

/// Incidents per page of the list.
pub const PAGE_SIZE: usize = 25;

/// A whole page around `body`; `viewer` fills the header.
pub fn layout(viewer: Option<&Viewer>, title: &str, body: &str) -> Html<String> {
    let nav = match viewer {
        Some(v) => format!(
            r#"<nav><a href="/incidents">Incidents</a> <a href="/oncall">On call</a> <a href="/services">Services</a> <a href="/maintenance">Maintenance</a> <a href="/reports">Reports</a>
<span class="who">{} ({} scope)</span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button>Sign out</button></form></nav>"#,
            escape(v.name()),
            v.principal.scope,
            escape(&v.csrf)
        ),
        None => String::new(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · tocsin</title><link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body><header><a class="brand" href="/incidents">tocsin</a>{nav}</header>
<main>{body}</main></body></html>"#,
        escape(title)
    ))
}

/// A time as the console shows it (UTC).
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One row of the incidents table (also what live updates send).
pub fn incident_row(inc: &Incident) -> String {
    let key = inc.id.to_string();
    format!(
        r#"<tr id="row-{key}" class="status-{status}"><td><a href="/incidents/{key}">{key}</a></td><td><span class="badge {status}">{status}</span></td><td>{sev}</td><td>{service}</td><td>{title}</td><td>{opened}</td></tr>"#,
        status = inc.status.as_str(),
        sev = inc.severity.label(),
        service = escape(&inc.service),
        title = escape(&inc.title),
        opened = time(inc.created_at),
    )
}

/// `GET /incidents?status=&service=&severity=&before=`
pub async fn incidents(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let Query(q) = query.map_err(|e| crate::http::ApiError::bad_request(e.body_text()))?;
    let (list, next) = incident_page(&st, &q, PAGE_SIZE).await?;
    let selected = |v: Option<&str>, want: &str| {
        if v == Some(want) { " selected" } else { "" }
    };
    let mut body = String::from("<h1>Incidents</h1>\n");
    body.push_str(r#"<form method="get" action="/incidents" class="filters"><label>Status <select name="status"><option value="">any</option>"#);
    for s in ["open", "triggered", "acknowledged", "resolved"] {
        let _ = write!(
            body,
            r#"<option{}>{s}</option>"#,
            selected(q.status.as_deref(), s)
        );
    }
    body.push_str(
        r#"</select></label> <label>Service <select name="service"><option value="">any</option>"#,
    );
    for s in &st.config.services {
        let _ = write!(
            body,
            r#"<option{}>{}</option>"#,
            selected(q.service.as_deref(), &s.name),
            escape(&s.name)
        );
    }
    body.push_str(r#"</select></label> <label>Severity <select name="severity"><option value="">any</option>"#);
    for s in ["sev1", "sev2", "sev3", "sev4"] {
        let _ = write!(
            body,
            r#"<option{}>{s}</option>"#,
            selected(q.severity.as_deref(), s)
        );
    }
    body.push_str("</select></label> <button>Filter</button></form>\n");
    if viewer.can_write() {
        let _ = writeln!(
            body,
            r#"<form method="post" action="/incidents" class="filters declare"><input type="hidden" name="csrf" value="{}"><label>New incident <input name="title" required maxlength="200" placeholder="what is wrong" aria-label="Title of the new incident"></label> <label>Severity <select name="severity"><option value="">default</option><option>sev1</option><option>sev2</option><option>sev3</option><option>sev4</option></select></label> <button>Declare incident</button></form>"#,
            escape(&viewer.csrf)
        );
    }
    // The first page takes new incidents live; later pages are history.
    let live = if q.before.is_none() { " data-live" } else { "" };
    let _ = write!(
        body,
        r#"<table class="incidents"{live}><thead><tr><th>Incident</th><th>Status</th><th>Severity</th><th>Service</th><th>Title</th><th>Opened</th></tr></thead><tbody id="incident-rows">"#
    );
    for inc in &list {
        body.push_str(&incident_row(inc));
        body.push('\n');
    }
    body.push_str("</tbody></table>\n");
    if list.is_empty() {
        body.push_str(r#"<p class="empty">No incidents.</p>"#);
    }
    if let Some(next) = next {
        let mut params: Vec<(&str, &str)> = Vec::new();
        for (k, v) in [
            ("status", &q.status),
            ("service", &q.service),
            ("severity", &q.severity),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                params.push((k, v));
            }
        }
        params.push(("before", &next));
        let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
        let _ = write!(
            body,
            r#"<p><a class="older" href="/incidents?{}">Older incidents →</a></p>"#,
            escape(&qs)
        );
    }
    Ok(layout(Some(&viewer), "Incidents", &body))
}

/// The form that posts a status update for stakeholders.
fn update_form(key: &str, csrf: &str) -> String {
    button(
        key,
        "update",
        "Post status update",
        csrf,
        &format!(
            r#"<textarea name="text" rows="2" maxlength="{}" placeholder="what stakeholders should know (goes to the status channel and subscribers)" aria-label="Status update"></textarea>"#,
            crate::incident::UPDATE_MAX
        ),
    )
}

fn button(id: &str, action: &str, label: &str, csrf: &str, extra: &str) -> String {
    format!(
        r#"<form method="post" action="/incidents/{id}/{action}" class="action"><input type="hidden" name="csrf" value="{}">{extra}<button>{label}</button></form>"#,
        escape(csrf)
    )
}

/// `GET /incidents/{id}`
pub async fn incident(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let id = parse_id(&raw)?;
    let (inc, timeline, outbox) = st
        .service
        .read(move |s| {
            Ok(match s.incident(id)? {
                Some(i) => Some((i, s.timeline(id)?, s.outbox_for(id)?)),
                None => None,
            })
        })
        .await?
        .ok_or_else(|| crate::http::ApiError::not_found(format!("incident {id} does not exist")))?;
    let summary = st.service.summary_markdown(id).await.ok();
    let key = inc.id.to_string();
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<h1 data-incident="{key}">{key}: {}</h1>
<dl class="facts"><dt>Status</dt><dd><span class="badge {status}">{status}</span></dd><dt>Severity</dt><dd>{}</dd><dt>Service</dt><dd>{}</dd><dt>Opened</dt><dd>{}</dd>"#,
        escape(&inc.title),
        inc.severity.label(),
        escape(&inc.service),
        time(inc.created_at),
        status = inc.status.as_str(),
    );
    if let (Some(at), Some(by)) = (inc.acknowledged_at, &inc.acknowledged_by) {
        let _ = write!(
            b,
            "<dt>Acknowledged</dt><dd>{} by {}</dd>",
            time(at),
            escape(&by.to_string())
        );
    }
    if let (Some(at), Some(by)) = (inc.resolved_at, &inc.resolved_by) {
        let _ = write!(
            b,
            "<dt>Resolved</dt><dd>{} by {}</dd>",
            time(at),
            escape(&by.to_string())
        );
    }
    b.push_str("<dt>Roles</dt><dd>");
    if inc.roles.is_empty() {
        b.push_str("none");
    }
    for (role, user) in &inc.roles {
        let _ = write!(b, "{}: {} ", escape(role), escape(user));
    }
    b.push_str("</dd>");
    if let Some(s) = &inc.suppressed {
        let _ = write!(
            b,
            r#"<dt>Maintenance</dt><dd class="suppressed">{}</dd>"#,
            escape(&s.line())
        );
    }
    if let Some(line) = inc.flapping_line() {
        let _ = write!(
            b,
            r#"<dt>Flapping</dt><dd class="flapping">{}</dd>"#,
            escape(&line)
        );
    }
    b.push_str("</dl>\n");

    if viewer.can_write() && inc.status != Status::Resolved {
        let csrf = &viewer.csrf;
        b.push_str(r#"<section class="actions"><h2>Actions</h2>"#);
        if inc.status == Status::Triggered {
            b.push_str(&button(&key, "acknowledge", "Acknowledge", csrf, ""));
        }
        b.push_str(&button(
            &key,
            "resolve",
            "Resolve",
            csrf,
            r#"<input name="note" placeholder="what fixed it (optional)" aria-label="Resolution note">"#,
        ));
        b.push_str(&button(&key, "escalate", "Escalate", csrf, ""));
        b.push_str(&button(
            &key,
            "snooze",
            "Snooze",
            csrf,
            r#"<select name="duration" aria-label="Snooze for"><option>15m</option><option selected>30m</option><option>1h</option><option>4h</option></select>"#,
        ));
        let mut sev = String::from(r#"<select name="severity" aria-label="Severity">"#);
        for s in ["sev1", "sev2", "sev3", "sev4"] {
            let sel = if inc.severity.label().eq_ignore_ascii_case(s) {
                " selected"
            } else {
                ""
            };
            let _ = write!(sev, "<option{sel}>{s}</option>");
        }
        sev.push_str("</select>");
        b.push_str(&button(&key, "severity", "Set severity", csrf, &sev));
        b.push_str(&button(
            &key,
            "note",
            "Add note",
            csrf,
            r#"<textarea name="text" rows="2" maxlength="3000" placeholder="what you found (action: ... for an action item)" aria-label="Note"></textarea>"#,
        ));
        b.push_str(&update_form(&key, csrf));
        if viewer.is_admin() {
            let mut extra = String::from(
                r#"<select name="role" aria-label="Role"><option>commander</option><option>comms</option><option>scribe</option></select> <select name="user" aria-label="Who">"#,
            );
            for u in &st.config.users {
                let _ = write!(extra, "<option>{}</option>", escape(&u.name));
            }
            extra.push_str("</select>");
            b.push_str(&button(&key, "role", "Give role", csrf, &extra));
        }
        let (to, label) = if inc.public {
            ("false", "Take off status page")
        } else {
            ("true", "Show on status page")
        };
        b.push_str(&button(
            &key,
            "public",
            label,
            csrf,
            &format!(r#"<input type="hidden" name="public" value="{to}">"#),
        ));
        b.push_str("</section>\n");
    } else if viewer.can_write() {
        b.push_str(r#"<section class="actions"><h2>Actions</h2>"#);
        b.push_str(&button(
            &key,
            "note",
            "Add note",
            &viewer.csrf,
            r#"<textarea name="text" rows="2" maxlength="3000" aria-label="Note"></textarea>"#,
        ));
        b.push_str(&update_form(&key, &viewer.csrf));
        b.push_str("</section>\n");
    }

    if !inc.updates.is_empty() || inc.public {
        let _ = write!(
            b,
            "<h2>Status updates</h2><p class=\"muted\">{}</p><ul class=\"updates\">",
            if inc.public {
                "On the public status page."
            } else {
                "Not on the public status page."
            }
        );
        for u in inc.updates.iter().rev() {
            let _ = write!(
                b,
                "<li>{} {}: {}</li>",
                time(u.at),
                escape(&u.by.to_string()),
                escape(&u.text)
            );
        }
        b.push_str("</ul>\n");
    }

    let _ = write!(
        b,
        "<h2>Alerts ({})</h2><ul class=\"alerts\">",
        inc.alerts.len()
    );
    for (fp, a) in &inc.alerts {
        let _ = write!(
            b,
            r#"<li><strong>{}</strong> <span class="muted">{} · {} event(s) · last {}</span><br><span class="labels">"#,
            escape(&a.summary),
            escape(fp),
            a.count,
            time(a.last_seen)
        );
        for (k, v) in &a.labels {
            let _ = write!(
                b,
                r#"<code class="label">{}={}</code> "#,
                escape(k),
                escape(v)
            );
        }
        b.push_str("</span></li>");
    }
    b.push_str("</ul>\n");

    if let Some(p) = &inc.runbook {
        runbook_section(
            &mut b,
            &st,
            &viewer,
            &key,
            p,
            inc.status != Status::Resolved,
        );
    }

    b.push_str("<h2>Pages</h2>");
    let pages: Vec<_> = outbox
        .iter()
        .filter(|e| matches!(e.job, crate::notify::Job::Page))
        .collect();
    if pages.is_empty() {
        b.push_str("<p class=\"empty\">Nobody was paged.</p>");
    } else {
        b.push_str("<table class=\"pages\"><thead><tr><th>To</th><th>By</th><th>Step</th><th>Attempts</th><th>State</th></tr></thead><tbody>");
        for e in pages {
            let state = serde_json::to_value(&e.state)
                .ok()
                .and_then(|v| {
                    v.get("state")
                        .or(Some(&v))
                        .and_then(|s| s.as_str().map(str::to_owned))
                })
                .unwrap_or_else(|| format!("{:?}", e.state));
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span>{}</td></tr>",
                escape(&e.recipient.to_string()),
                escape(&format!("{:?}", e.method).to_lowercase()),
                e.page.step,
                e.attempts,
                escape(&state),
                escape(&state),
                e.last_error
                    .as_deref()
                    .map(|er| format!(" <span class=\"muted\">{}</span>", escape(er)))
                    .unwrap_or_default()
            );
        }
        b.push_str("</tbody></table>\n");
    }

    b.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    for e in &timeline {
        let _ = write!(
            b,
            "<li><time>{}</time> <strong>{}</strong> {}</li>",
            time(e.at),
            escape(&e.actor.to_string()),
            escape(&e.event.describe())
        );
    }
    b.push_str("</ol>\n");
    if let Some(md) = summary {
        b.push_str("<h2>Summary</h2><article class=\"summary\">");
        b.push_str(&render(&md));
        b.push_str("</article>\n");
    }
    Ok(layout(Some(&viewer), &key, &b))
}

/// `GET /oncall`: who is on call now and next in every schedule.
pub async fn oncall(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let now = st.service.clock().now();
    let mut b = String::from(
        "<h1>On call</h1><table class=\"oncall\"><thead><tr><th>Schedule</th><th>Now</th><th>Until</th><th>Next</th></tr></thead><tbody>",
    );
    for s in st.service.directory().schedules() {
        let extra = st.service.directory().runtime_overrides(s.name());
        let current = s.who_is_on_call(now, &extra);
        let next = s.next_on_call(current.as_ref().map_or(now, |c| c.end), &extra);
        let _ = write!(
            b,
            r#"<tr><td><a href="/schedules/{name}">{name}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            current
                .as_ref()
                .map(|c| escape(&c.user))
                .unwrap_or_else(|| "nobody".into()),
            current.as_ref().map(|c| time(c.end)).unwrap_or_default(),
            next.as_ref()
                .map(|n| format!("{} from {}", escape(&n.user), time(n.start)))
                .unwrap_or_else(|| "nobody".into()),
            name = escape(s.name()),
        );
    }
    b.push_str("</tbody></table>");
    Ok(layout(Some(&viewer), "On call", &b))
}

/// `?from=YYYY-MM-DD&tz=Area/City`: the week shown, and the zone its
/// days and times are in (UTC if none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekQuery {
    from: Option<NaiveDate>,
    tz: Option<String>,
}

/// A link to the week of `day` of a schedule, in `tz` if one is given.
fn week_href(name: &str, day: NaiveDate, tz: Option<Tz>) -> String {
    let day = day.to_string();
    let mut params = vec![("from", day.as_str())];
    if let Some(tz) = &tz {
        params.push(("tz", tz.name()));
    }
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    format!("/schedules/{}?{}", escape(name), escape(&qs))
}

/// One row of the week: `label` in its header cell, then each day's
/// shifts, clipped to the day, as local times in `tz`.
fn week_row(
    b: &mut String,
    class: &str,
    label: &str,
    shifts: &[Shift],
    bounds: &[DateTime<Utc>],
    tz: Tz,
) {
    let _ = write!(
        b,
        r#"<tr class="{class}"><th scope="row">{}</th>"#,
        escape(label)
    );
    for day in bounds.windows(2) {
        let (start, end) = (day[0], day[1]);
        b.push_str("<td>");
        for s in shifts.iter().filter(|s| s.start < end && s.end > start) {
            let (class, source) = match &s.source {
                ShiftSource::Layer(l) => ("layer", l.as_str()),
                ShiftSource::Override => ("override", "override"),
            };
            let _ = write!(
                b,
                r#"<div class="shift {class}"><strong>{}</strong><br>{}–{}<br><span class="muted">{}</span></div>"#,
                escape(&s.user),
                s.start.max(start).with_timezone(&tz).format("%H:%M"),
                if s.end >= end {
                    "24:00".to_string()
                } else {
                    s.end.with_timezone(&tz).format("%H:%M").to_string()
                },
                escape(source)
            );
        }
        b.push_str("</td>");
    }
    b.push_str("</tr>");
}

/// `GET /schedules/{name}?from=&tz=`: seven days from `from` (default
/// today) in `tz` (default UTC): a row per layer as it alone would put
/// people on call, a row of the overrides, the final schedule; then the
/// runtime overrides, and the form that adds one.
pub async fn schedule(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<WeekQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let Query(q) = query.map_err(|e| crate::http::ApiError::bad_request(e.body_text()))?;
    let dir = st.service.directory();
    let sched = dir.schedule(&name).ok_or_else(|| {
        crate::http::ApiError::not_found(format!("schedule '{name}' does not exist"))
    })?;
    let chosen = match q.tz.as_deref().map(str::trim).filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => Some(z.parse::<Tz>().map_err(|_| {
            crate::http::ApiError::bad_request(format!(
                "unknown time zone '{z}'; use an IANA name like Europe/Berlin, or UTC"
            ))
        })?),
    };
    let tz = chosen.unwrap_or(Tz::UTC);
    let now = st.service.clock().now();
    let day = q
        .from
        .unwrap_or_else(|| now.with_timezone(&tz).date_naive());
    let out_of_range =
        || crate::http::ApiError::bad_request(format!("from={day} is out of the calendar's range"));
    let prev = day
        .checked_sub_days(Days::new(7))
        .ok_or_else(out_of_range)?;
    let next = day
        .checked_add_days(Days::new(7))
        .ok_or_else(out_of_range)?;
    // Local midnights: a day around a DST change is 23 or 25 hours.
    let dates: Vec<NaiveDate> = day.iter_days().take(8).collect();
    let bounds: Vec<DateTime<Utc>> = dates
        .iter()
        .map(|d| crate::oncall::local_day_start(tz, *d))
        .collect();
    let (from, to) = (bounds[0], bounds[7]);
    let extra = dir.runtime_overrides(&name);
    let home = sched.time_zone();
    let yours = viewer
        .principal
        .user
        .as_deref()
        .and_then(|u| dir.working_time.own_zone(u));
    let mut b = format!(
        r#"<h1>Schedule {}</h1><p class="muted">Times in {}; the schedule's zone is {}.</p>
<p><a href="{}">← previous week</a> · <a href="{}">next week →</a></p>
<p class="zones">Show times in:"#,
        escape(&name),
        escape(tz.name()),
        escape(home.name()),
        week_href(&name, prev, chosen),
        week_href(&name, next, chosen),
    );
    let mut zones = vec![(Tz::UTC, "")];
    if home != Tz::UTC {
        zones.push((home, " (the schedule's)"));
    }
    if let Some(z) = yours.filter(|z| !zones.iter().any(|(known, _)| known == z)) {
        zones.push((z, " (yours)"));
    }
    for (i, (z, note)) in zones.iter().enumerate() {
        let current = if *z == tz {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            b,
            r#"{} <a href="{}"{current}>{}</a>{note}"#,
            if i == 0 { "" } else { " ·" },
            week_href(&name, day, Some(*z)),
            escape(z.name()),
        );
    }
    let _ = write!(
        b,
        r#"</p>
<form method="get" action="/schedules/{}" class="filters"><input type="hidden" name="from" value="{day}"><label>Time zone <input name="tz" value="{}" size="24" aria-label="Time zone, like Europe/Berlin"></label> <button>Show</button></form>
<table class="week"><thead><tr><td></td>"#,
        escape(&name),
        escape(tz.name()),
    );
    for (d, w) in dates.iter().zip(bounds.windows(2)) {
        let minutes = (w[1] - w[0]).num_minutes();
        let length = match (minutes / 60, minutes % 60) {
            (24, 0) => String::new(),
            (h, 0) => format!(r#" <span class="muted">({h} h)</span>"#),
            (h, m) => format!(r#" <span class="muted">({h} h {m} min)</span>"#),
        };
        let _ = write!(b, "<th>{}{length}</th>", d.format("%a %d %b"));
    }
    b.push_str("</tr></thead><tbody>");
    for (i, layer) in sched.layer_names().into_iter().enumerate() {
        let shifts = sched.layer_effective_shifts(i, from, to);
        week_row(&mut b, "layer", layer, &shifts, &bounds, tz);
    }
    let mut overrides: Vec<Shift> = sched
        .overrides()
        .iter()
        .chain(&extra)
        .filter(|o| o.start < o.end && o.start < to && o.end > from)
        .map(|o| Shift {
            user: o.user.clone(),
            source: ShiftSource::Override,
            start: o.start,
            end: o.end,
        })
        .collect();
    overrides.sort_by_key(|o| o.start);
    week_row(&mut b, "overrides", "Overrides", &overrides, &bounds, tz);
    let shifts = sched.shifts(from, to, &extra);
    week_row(&mut b, "final", "Final schedule", &shifts, &bounds, tz);
    b.push_str("</tbody></table>\n<h2>Overrides</h2>");
    let overrides = dir.stored_overrides(&name);
    if overrides.is_empty() {
        b.push_str("<p class=\"empty\">No runtime overrides.</p>");
    } else {
        b.push_str("<table class=\"overrides\"><thead><tr><th>Who</th><th>From</th><th>Until</th><th>Made by</th><th></th></tr></thead><tbody>");
        for o in &overrides {
            let remove = if viewer.is_admin() {
                format!(
                    r#"<form method="post" action="/schedules/{}/overrides/{}/delete" class="inline"><input type="hidden" name="csrf" value="{}"><button>Remove</button></form>"#,
                    escape(&name),
                    o.id,
                    escape(&viewer.csrf)
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{remove}</td></tr>",
                escape(&o.user),
                time(o.start),
                time(o.end),
                escape(&o.created_by)
            );
        }
        b.push_str("</tbody></table>");
    }
    if viewer.is_admin() {
        let _ = write!(
            b,
            r#"<h2>Add an override</h2><form method="post" action="/schedules/{}/overrides" class="override"><input type="hidden" name="csrf" value="{}"><label>Who <select name="user">"#,
            escape(&name),
            escape(&viewer.csrf)
        );
        for u in &st.config.users {
            let _ = write!(b, "<option>{}</option>", escape(&u.name));
        }
        let _ = write!(
            b,
            r#"</select></label> <label>From (UTC) <input type="datetime-local" name="start" required value="{}"></label> <label>Until (UTC) <input type="datetime-local" name="end" required value="{}"></label> <button>Add override</button></form>"#,
            now.format("%Y-%m-%dT%H:%M"),
            (now + Duration::hours(8)).format("%Y-%m-%dT%H:%M")
        );
    }
    Ok(layout(Some(&viewer), &name, &b))
}

/// `GET /reports?since=30d`: MTTA and MTTR by service and week, then pages
/// per person (and outside working hours), each as a chart (SVG, drawn by
/// tocsin) and a table, with the CSV a link away.
pub async fn reports(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<
        Query<crate::http::reports::ReportQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let Query(q) = query.map_err(|e| crate::http::ApiError::bad_request(e.body_text()))?;
    let raw = q
        .since
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "30d".into());
    let from = crate::http::reports::since(&st, Some(&raw))?;
    let r = st.service.response_report(from).await?;
    use crate::summary::report::{human, svg};
    let qs = serde_urlencoded::to_string([("since", raw.as_str())]).unwrap_or_default();
    let mut b = format!(
        r#"<h1>Response times</h1>
<form method="get" action="/reports" class="filters"><label>Opened in the last <input name="since" value="{}" size="6" aria-label="Window, like 30d"></label> <button>Show</button> <a href="/reports.csv?{}">Download CSV</a></form>
<p class="muted">From {} to {}: mean time to acknowledge (MTTA) and to resolve (MTTR) of the incidents opened each week (UTC), by service.</p>
<figure class="chart">{}</figure>
<table class="report"><thead><tr><th>Service</th><th>Week</th><th>Incidents</th><th>Acknowledged</th><th>MTTA</th><th>Resolved</th><th>MTTR</th></tr></thead><tbody>"#,
        escape(&raw),
        escape(&qs),
        time(r.since),
        time(r.until),
        svg(&r)
    );
    for row in &r.rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.key.service),
            row.week,
            row.incidents,
            row.acknowledged,
            human(row.mtta_seconds),
            row.resolved,
            human(row.mttr_seconds)
        );
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        r#"<h2>By severity</h2>
<p class="muted">The same incidents by severity and week, over every service. <a href="/reports.csv?{}&amp;by=severity">Download CSV</a></p>
<table class="report severity"><thead><tr><th>Severity</th><th>Week</th><th>Incidents</th><th>Acknowledged</th><th>MTTA</th><th>Resolved</th><th>MTTR</th></tr></thead><tbody>"#,
        escape(&qs)
    );
    for row in &r.by_severity {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.key.severity,
            row.week,
            row.incidents,
            row.acknowledged,
            human(row.mtta_seconds),
            row.resolved,
            human(row.mttr_seconds)
        );
    }
    if r.by_severity.is_empty() {
        b.push_str(r#"<tr><td colspan="7">No incidents.</td></tr>"#);
    }
    b.push_str("</tbody></table>");
    let p = st.service.pages_report(from).await?;
    let _ = write!(
        b,
        r#"<h2>Pages per person</h2>
<p class="muted">From {} to {}: the pages delivered to each person for the incidents opened in the window, and how many of them arrived outside working hours ({} {}, on the person's clock: their <code>time_zone</code>, else {}). <a href="/reports/pages.csv?{}">Download CSV</a></p>
<figure class="chart">{}</figure>
<table class="report pages"><thead><tr><th>Person</th><th>Time zone</th><th>Pages</th><th>Outside working hours</th></tr></thead><tbody>"#,
        time(p.since),
        time(p.until),
        escape(&p.working_days.join(", ")),
        escape(&p.working_hours),
        escape(&p.default_time_zone),
        escape(&qs),
        crate::summary::pages::svg(&p)
    );
    for row in &p.rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.user),
            escape(&row.time_zone),
            row.pages,
            row.outside_hours
        );
    }
    if p.rows.is_empty() {
        b.push_str(r#"<tr><td colspan="4">No pages.</td></tr>"#);
    }
    b.push_str("</tbody></table>");
    Ok(layout(Some(&viewer), "Reports", &b))
}

/// A CSV download named `filename`.
fn csv_download(filename: &str, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// The window of a report download, for a signed-in viewer.
async fn report_window(
    st: &AppState,
    headers: &HeaderMap,
    query: Result<
        Query<crate::http::reports::ReportQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<(crate::http::reports::ReportQuery, DateTime<Utc>), Refusal> {
    viewer(st, headers)?;
    let Query(q) = query.map_err(|e| crate::http::ApiError::bad_request(e.body_text()))?;
    let from = crate::http::reports::since(st, q.since.as_deref())?;
    Ok((q, from))
}

/// `GET /reports/pages.csv?since=30d`: pages per person as CSV.
pub async fn pages_csv(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<
        Query<crate::http::reports::ReportQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<axum::response::Response, Refusal> {
    let (_, from) = report_window(&st, &headers, query).await?;
    let r = st.service.pages_report(from).await?;
    Ok(csv_download(
        "tocsin-pages-per-person.csv",
        crate::summary::pages::csv(&r),
    ))
}

/// `GET /reports.csv?since=30d&by=service|severity`: the same rows as CSV.
pub async fn reports_csv(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<
        Query<crate::http::reports::ReportQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<axum::response::Response, Refusal> {
    let (q, from) = report_window(&st, &headers, query).await?;
    let csv = crate::http::reports::response_csv(q.by.as_deref())?;
    let r = st.service.response_report(from).await?;
    let name = if q.by.as_deref() == Some("severity") {
        "tocsin-response-times-by-severity.csv"
    } else {
        "tocsin-response-times.csv"
    };
    Ok(csv_download(name, csv(&r)))
}

/// The runbook's phases and steps with their state; with a write token,
/// a **Done** form (with its evidence or remark) on each open step of the
/// current phase, and **Next phase**.
fn runbook_section(
    b: &mut String,
    st: &AppState,
    viewer: &Viewer,
    key: &str,
    p: &crate::runbook::Progress,
    open: bool,
) {
    use crate::runbook::StepState;
    let _ = write!(
        b,
        "<h2>Runbook</h2><p><code>{}</code></p>",
        escape(&p.runbook)
    );
    let Some(rb) = st.service.directory().runbooks.get(&p.runbook) else {
        b.push_str("<p class=\"empty\">This runbook is no longer configured.</p>");
        return;
    };
    let act = viewer.can_write() && open;
    for (i, phase) in rb.phases.iter().enumerate() {
        let current = if i == p.phase { " (current)" } else { "" };
        let _ = write!(
            b,
            "<h3>{}{current}</h3><ul class=\"runbook\">",
            escape(&phase.title)
        );
        for step in &phase.steps {
            let state = match p.steps.get(&step.id) {
                Some(StepState::Done { by, note, .. }) => format!(
                    "<span class=\"done\">&#x2611; done by {}{}</span>",
                    escape(by),
                    note.as_deref()
                        .map(|n| format!(": {}", escape(n)))
                        .unwrap_or_default()
                ),
                Some(StepState::Skipped { by, reason, .. }) => format!(
                    "<span class=\"skipped\">&#x2612; skipped by {}: {}</span>",
                    escape(by),
                    escape(reason)
                ),
                None if act && i == p.phase => button(
                    key,
                    "step",
                    "Done",
                    &viewer.csrf,
                    &format!(
                        r#"<input type="hidden" name="step" value="{}"><input name="note" placeholder="{}" aria-label="Evidence or remark for {}"{}>"#,
                        escape(&step.id),
                        if step.evidence {
                            "evidence (required)"
                        } else {
                            "remark (optional)"
                        },
                        escape(&step.id),
                        if step.evidence { " required" } else { "" }
                    ),
                ),
                None => "<span class=\"todo\">&#x2610;</span>".to_string(),
            };
            let _ = write!(
                b,
                "<li><code>{}</code> {} {state}</li>",
                escape(&step.id),
                escape(&step.text)
            );
        }
        b.push_str("</ul>");
        if act && i == p.phase && i + 1 < rb.phases.len() {
            b.push_str(&button(key, "next-phase", "Next phase", &viewer.csrf, ""));
        }
    }
}
