//! The console's services: each configured service with its escalation
//! policy's steps (targets, delays, repeats) as configured, and its
//! flapping, reopen and maintenance settings.

use super::markdown::escape;
use super::pages::layout;
use super::{Refusal, viewer};
use crate::config::{Repeat, TargetConfig};
use crate::http::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Html;
use std::fmt::Write;

fn target(t: &TargetConfig) -> String {
    match t {
        TargetConfig::User(u) => format!("user {}", escape(u)),
        TargetConfig::Schedule(s) => format!(
            r#"whoever is on call in <a href="/schedules/{n}">{n}</a>"#,
            n = escape(s)
        ),
        TargetConfig::Webhook(w) => format!("webhook {}", escape(w)),
    }
}

fn repeat(r: Repeat) -> String {
    match r {
        Repeat::Never => "runs its steps once".into(),
        Repeat::Times(1) => "repeats its steps once more".into(),
        Repeat::Times(n) => format!("repeats its steps {n} more times"),
        Repeat::UntilAcknowledged => format!(
            "repeats its steps until acknowledged (at most {} rounds)",
            crate::config::MAX_ROUNDS
        ),
    }
}

fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `GET /services`
pub async fn page(State(st): State<AppState>, headers: HeaderMap) -> Result<Html<String>, Refusal> {
    let viewer = viewer(&st, &headers)?;
    let cfg = &st.config;
    let mut b = String::from("<h1>Services</h1>");
    if cfg.services.is_empty() {
        b.push_str("<p class=\"empty\">No services are configured.</p>");
    }
    for s in &cfg.services {
        let _ = write!(
            b,
            r#"<section class="service" id="service-{n}"><h2>{n}</h2>"#,
            n = escape(&s.name)
        );
        if !s.description.is_empty() {
            let _ = write!(b, "<p>{}</p>", escape(&s.description));
        }
        b.push_str("<dl class=\"facts\">");
        match &s.escalation_policy {
            None => b.push_str("<dt>Escalation policy</dt><dd>none: nobody is paged</dd>"),
            Some(name) => {
                let _ = write!(b, "<dt>Escalation policy</dt><dd>{}", escape(name));
                if let Some(p) = cfg.escalation_policies.iter().find(|p| &p.name == name) {
                    let _ = write!(b, ", {}", repeat(p.repeat));
                    b.push_str("<ol class=\"steps\">");
                    for (i, step) in p.steps.iter().enumerate() {
                        let targets: Vec<String> = step.targets.iter().map(target).collect();
                        let _ = write!(
                            b,
                            "<li>Step {}: {}; after {} unacknowledged, the next step</li>",
                            i + 1,
                            targets.join(", "),
                            human(step.delay)
                        );
                    }
                    b.push_str("</ol>");
                }
                b.push_str("</dd>");
            }
        }
        if let Some(f) = &s.flapping {
            let _ = write!(
                b,
                "<dt>Flapping</dt><dd>more than {} changes within {}: held in one incident, paged once</dd>",
                f.changes,
                human(f.within)
            );
        }
        if let Some(r) = s.reopen_within {
            let _ = write!(
                b,
                "<dt>Reopens</dt><dd>an incident resolved less than {} ago</dd>",
                human(r)
            );
        }
        let windows: Vec<String> = cfg
            .maintenance
            .iter()
            .filter(|m| m.services.iter().any(|n| n == &s.name))
            .map(|m| {
                let when = match (&m.cron, m.duration, &m.start, &m.end) {
                    (Some(c), Some(d), _, _) => format!(
                        "<code>{}</code> ({}) for {}",
                        escape(c),
                        escape(&m.time_zone),
                        human(d)
                    ),
                    (_, _, Some(a), Some(z)) => format!("{} to {}", escape(a), escape(z)),
                    _ => String::new(),
                };
                format!(
                    "{} {when}{}",
                    escape(&m.name),
                    m.reason
                        .as_deref()
                        .map(|r| format!(": {}", escape(r)))
                        .unwrap_or_default()
                )
            })
            .collect();
        if !windows.is_empty() {
            let _ = write!(
                b,
                r#"<dt>Maintenance</dt><dd>{} (see <a href="/maintenance">Maintenance</a>)</dd>"#,
                windows.join("; ")
            );
        }
        b.push_str("</dl></section>\n");
    }
    Ok(layout(Some(&viewer), "Services", &b))
}
