//! Message templates (minijinja): channel intro, page, escalation notice,
//! acknowledgement, resolution, runbook card and the post-incident
//! summary. Defaults ship in `templates/` and are compiled in; files of the
//! same name in `[templates] dir` replace them.

use minijinja::{Environment, Value};
use serde::Serialize;
use std::path::Path;

/// Every template, by file name.
pub const NAMES: [&str; 7] = [
    "channel_intro.md",
    "page.md",
    "escalation.md",
    "acknowledged.md",
    "resolved.md",
    "runbook_card.md",
    "summary.md",
];

const DEFAULTS: [(&str, &str); 7] = [
    (
        "channel_intro.md",
        include_str!("../templates/channel_intro.md"),
    ),
    ("page.md", include_str!("../templates/page.md")),
    ("escalation.md", include_str!("../templates/escalation.md")),
    (
        "acknowledged.md",
        include_str!("../templates/acknowledged.md"),
    ),
    ("resolved.md", include_str!("../templates/resolved.md")),
    (
        "runbook_card.md",
        include_str!("../templates/runbook_card.md"),
    ),
    ("summary.md", include_str!("../templates/summary.md")),
];

/// A template problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    /// Which template.
    pub name: String,
    /// What is wrong (with the line, where minijinja knows it).
    pub message: String,
}

/// What a rendered template is posted as: values interpolated with
/// `{{ }}` are escaped for it, the template's own text is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// As it is: email, logs, webhooks, the summary the API serves.
    Plain,
    /// Slack mrkdwn.
    Slack,
    /// Discord Markdown.
    Discord,
}

impl Markup {
    /// The markup of a chat platform by name (`slack`, `discord`), else plain.
    pub fn of_platform(platform: &str) -> Self {
        match platform {
            "slack" => Self::Slack,
            "discord" => Self::Discord,
            _ => Self::Plain,
        }
    }

    /// `text` escaped so the platform shows it as text (the escaping itself
    /// is [`crate::markup`]'s).
    pub fn escape(self, text: &str) -> String {
        match self {
            Self::Plain => text.to_string(),
            Self::Slack => crate::markup::slack::escape(text),
            Self::Discord => crate::markup::discord::escape(text),
        }
    }

    /// A link to `url` (a URL tocsin built): `<url>` on Slack (entities
    /// escaped, a `|` encoded) and on Discord (where the brackets also keep
    /// it from being previewed), as it is elsewhere.
    pub fn link(self, url: &str) -> String {
        let url: String = url
            .chars()
            .filter(|c| !c.is_whitespace() && !crate::markup::is_unsafe_char(*c))
            .collect();
        match self {
            Self::Plain => url,
            Self::Slack => format!(
                "<{}>",
                crate::markup::slack::escape(&url).replace('|', "%7C")
            ),
            Self::Discord => format!("<{}>", url.replace('>', "%3E")),
        }
    }

    /// A value tocsin means as markup (a mention it rendered), which the
    /// templates put in unescaped.
    pub fn safe(markup: impl Into<String>) -> Value {
        Value::from_safe_string(markup.into())
    }
}

/// `text` for a code span in `markup`: Slack still reads entities and
/// `<...>` there; Discord shows a code span as it is, so only a backtick
/// (which would end it) is replaced, and control and bidi characters go.
/// A newline becomes a space on both, so the span stays on its line.
fn code(markup: Markup, text: &str) -> String {
    match markup {
        Markup::Plain => text.to_string(),
        // One line: a value must not stretch a code span over lines.
        Markup::Slack => markup.escape(text).replace('`', "'").replace('\n', " "),
        Markup::Discord => text
            .chars()
            .filter(|c| !crate::markup::is_unsafe_char(*c))
            .map(|c| match c {
                '`' => '\'',
                '\n' => ' ',
                c => c,
            })
            .collect(),
    }
}

/// The loaded templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    slack: Environment<'static>,
    discord: Environment<'static>,
}

/// The formatter of `markup`: safe values and none as minijinja writes
/// them, everything else escaped.
fn formatter(
    markup: Markup,
) -> impl Fn(&mut minijinja::Output, &mut minijinja::State, &Value) -> Result<(), minijinja::Error>
+ Send
+ Sync
+ 'static {
    move |out, state, value| {
        if value.is_safe() || value.is_none() || value.is_undefined() {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = match value.as_str() {
            Some(s) => markup.escape(s),
            None => markup.escape(&value.to_string()),
        };
        out.write_str(&text)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
    }
}

fn parse_time(v: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// `4m 12s`, `2h 5m`, `3d 4h`: the two largest units.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

impl Templates {
    /// The defaults, with overrides from `dir` (files named as in [`NAMES`]).
    pub fn load(dir: Option<&Path>) -> Result<Self, Vec<TemplateError>> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters");
        env.set_syntax(syntax);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_filter("datetime", |v: String| {
            parse_time(&v)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or(v)
        });
        env.add_filter("time", |v: String| {
            parse_time(&v)
                .map(|d| d.format("%H:%M:%S").to_string())
                .unwrap_or(v)
        });
        env.add_filter("duration", |v: i64| human_duration(v));
        // Text inside a `code span`: escaped as code, not as prose.
        env.add_filter("code", |v: String| v);
        let mut errors = Vec::new();
        for (name, default) in DEFAULTS {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(p) => match std::fs::read_to_string(&p) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(TemplateError {
                            name: p.display().to_string(),
                            message: format!("cannot read: {e}"),
                        });
                        continue;
                    }
                },
                None => default.to_string(),
            };
            if let Err(e) = env.add_template_owned(name, source) {
                errors.push(TemplateError {
                    name: name.into(),
                    message: e.to_string(),
                });
            }
        }
        if errors.is_empty() {
            let mut slack = env.clone();
            slack.set_formatter(formatter(Markup::Slack));
            slack.add_filter("code", |v: String| Markup::safe(code(Markup::Slack, &v)));
            let mut discord = env.clone();
            discord.set_formatter(formatter(Markup::Discord));
            discord.add_filter("code", |v: String| Markup::safe(code(Markup::Discord, &v)));
            Ok(Self {
                env,
                slack,
                discord,
            })
        } else {
            Err(errors)
        }
    }

    /// Renders `name` with `ctx` (a serializable map) as plain text.
    pub fn render<C: Serialize>(&self, name: &str, ctx: C) -> Result<String, TemplateError> {
        self.render_for(Markup::Plain, name, ctx)
    }

    /// Renders `name` with `ctx` for `markup`: every value interpolated is
    /// escaped for it, unless marked safe with [`Markup::safe`].
    pub fn render_for<C: Serialize>(
        &self,
        markup: Markup,
        name: &str,
        ctx: C,
    ) -> Result<String, TemplateError> {
        let env = match markup {
            Markup::Plain => &self.env,
            Markup::Slack => &self.slack,
            Markup::Discord => &self.discord,
        };
        let err = |e: minijinja::Error| TemplateError {
            name: name.into(),
            message: match e.line() {
                Some(l) => format!("line {l}: {e}"),
                None => e.to_string(),
            },
        };
        let t = env.get_template(name).map_err(err)?;
        t.render(Value::from(minijinja::value::Serde(&ctx)))
            .map(|s| s.trim_end().to_string() + "\n")
            .map_err(err)
    }
}

/// A sample context for each template: what `tocsin check` renders them
/// with, so a broken override is found before an incident needs it.
pub fn sample_context(name: &str) -> serde_json::Value {
    use serde_json::json;
    let incident = json!({
        "key": "INC-42", "id": 42, "title": "API error rate above 5%", "severity": "SEV1",
        "service": "api", "status": "triggered", "drill": false,
        "created_at": "2026-11-29T10:00:00Z", "roles": {"commander": "alice"},
    });
    match name {
        "channel_intro.md" => {
            json!({"incident": incident, "runbook": {"name": "high-error-rate", "title": "High error rate"}})
        }
        "page.md" => {
            json!({"drill": false, "incident_key": "INC-42", "ack_url": "https://tocsin.example/ack/TOKEN",
            "chat": true, "page": {"incident": "INC-42", "title": "API error rate above 5%",
            "severity": "sev1", "service": "api", "step": 1, "round": 1}})
        }
        "escalation.md" => {
            json!({"incident": incident, "policy": "api", "step": 2, "round": 1, "notified": ["bob", "webhook ops"]})
        }
        "acknowledged.md" => json!({"incident": incident, "by": "alice", "tta": 252}),
        "resolved.md" => {
            json!({"incident": incident, "by": "alice", "ttr": 3780, "note": "rolled back", "archive_after": "1day"})
        }
        "runbook_card.md" => {
            json!({"incident": incident, "runbook": {"name": "high-error-rate", "title": "High error rate"},
            "phase": {"title": "Containment", "kind": "containment"}, "phase_number": 3, "phase_count": 6,
            "steps": [
                {"id": "rollback", "text": "Roll back the last deploy.", "link": null, "command": "kubectl rollout undo deploy/api",
                 "owner": "commander", "owner_user": "<@U1>", "evidence": true, "state": "done", "by": "alice", "note": "v41", "reason": null},
                {"id": "status-page", "text": "Post on the status page.", "link": "https://status.example", "command": null,
                 "owner": "comms", "owner_user": null, "evidence": false, "state": "skipped", "by": "bob", "note": null, "reason": "internal only"},
                {"id": "shed", "text": "Shed non-critical traffic.", "link": null, "command": null,
                 "owner": "any", "owner_user": null, "evidence": true, "state": "open", "by": null, "note": null, "reason": null},
            ]})
        }
        _ => json!({"s": {
            "key": "INC-42", "title": "API error rate above 5%", "severity": "SEV1", "service": "api",
            "status": "resolved", "drill": false, "opened_at": "2026-11-29T10:00:00Z",
            "acknowledged_at": "2026-11-29T10:04:12Z", "acknowledged_by": "alice",
            "resolved_at": "2026-11-29T11:03:00Z", "resolved_by": "alice", "tta_seconds": 252, "ttr_seconds": 3780,
            "alert_count": 2, "event_count": 9, "escalation": "api: 2 step(s) run, reached step 2",
            "pages": [{"at": "2026-11-29T10:00:01Z", "recipient": "alice", "method": "slack", "attempts": 1}],
            "failed_pages": [], "roles": [{"role": "commander", "user": "alice"}],
            "runbook": null, "notes": [], "action_items": [],
            "changes": ["2026-11-29 09:40 UTC Deploy api 1.2 (deploybot)"],
            "flapping": "flapped: 9 changes, held in this incident",
            "timeline": [{"at": "2026-11-29T10:00:00Z", "actor": "integration am", "text": "Opened as SEV1: API error rate above 5%"}],
        }}),
    }
}

impl Templates {
    /// Renders every template with its sample context; every failure.
    pub fn check_all(&self) -> Vec<TemplateError> {
        NAMES
            .iter()
            .filter_map(|n| self.render(n, sample_context(n)).err())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_bracketed_and_escaped_per_platform() {
        let url = "https://t.example/a|b&c/login/link?code=tsn_ab_cd";
        assert_eq!(
            Markup::Slack.link(url),
            "<https://t.example/a%7Cb&amp;c/login/link?code=tsn_ab_cd>"
        );
        assert_eq!(
            Markup::Discord.link("https://t.example/x>y?code=tsn_ab_cd"),
            "<https://t.example/x%3Ey?code=tsn_ab_cd>"
        );
        assert_eq!(
            Markup::Plain.link("https://t.example/ a\n"),
            "https://t.example/a"
        );
    }

    #[test]
    fn every_shipped_template_renders() {
        let t = Templates::load(None).unwrap();
        assert_eq!(t.check_all(), vec![]);
        for name in NAMES {
            let out = t.render(name, sample_context(name)).unwrap();
            insta::assert_snapshot!(name.replace('.', "_"), out);
        }
    }

    #[test]
    fn overrides_replace_defaults_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("page.md"), "PAGE {{ page.incident }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            t.render("page.md", sample_context("page.md")).unwrap(),
            "PAGE INC-42\n"
        );
        std::fs::write(dir.path().join("resolved.md"), "{% if %}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert_eq!(e[0].name, "resolved.md");
        std::fs::write(dir.path().join("resolved.md"), "{{ incident.nope }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let e = t.check_all();
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("line 1"), "{e:?}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(252), "4m 12s");
        assert_eq!(human_duration(3780), "1h 3m");
        assert_eq!(human_duration(90000), "1d 1h");
    }
}
