//! Block Kit for the incident card, pages and plain text.

use super::escape;
use crate::chat::{Button, CardView, ChatMessage};
use crate::incident::{Severity, Status};
use crate::notify::PageContent;
use serde_json::{Value, json};

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;

/// Cuts `s` to at most `max` characters, ending with `…` if it was cut;
/// never inside an entity (`&amp;`), which would show half of it.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        if let Some(amp) = t.rfind('&')
            && !t[amp..].contains(';')
        {
            t.truncate(amp);
        }
        t.push('…');
        t
    }
}

fn severity_icon(s: Severity) -> &'static str {
    match s {
        Severity::Sev1 => ":red_circle:",
        Severity::Sev2 => ":large_orange_circle:",
        Severity::Sev3 => ":large_yellow_circle:",
        Severity::Sev4 => ":white_circle:",
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Triggered => "Triggered",
        Status::Acknowledged => "Acknowledged",
        Status::Resolved => "Resolved",
    }
}

fn button(b: Button, incident: &str) -> Value {
    let mut v = json!({
        "type": "button",
        "action_id": b.action_id(),
        "text": {"type": "plain_text", "text": b.label()},
        "value": incident,
    });
    match b {
        Button::Ack => v["style"] = json!("primary"),
        Button::Resolve => v["style"] = json!("danger"),
        _ => {}
    }
    v
}

/// The fallback text and the blocks of a message. Card and page text
/// from alerts and people is escaped here; [`ChatMessage::Text`] is
/// already Slack markup (rendered for Slack, its values escaped).
pub fn render(message: &ChatMessage) -> (String, Value) {
    match message {
        ChatMessage::Card(c) => (escape(&c.headline()), card(c)),
        ChatMessage::Page(p) => (format!("You are paged: {}", escape(&p.headline())), page(p)),
        ChatMessage::Text(t) => (truncate(t, 4000), text(t)),
    }
}

/// The incident card.
pub fn card(c: &CardView) -> Value {
    let id = c.id.to_string();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
            "text": truncate(&format!("{} {}: {}", severity_icon(c.severity), id, escape(&c.title)), 150)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Severity*\n{}", c.severity)},
            {"type": "mrkdwn", "text": format!("*Status*\n{}", status_word(c.status))},
            {"type": "mrkdwn", "text": format!("*Service*\n{}", escape(&c.service))},
            {"type": "mrkdwn", "text": format!("*Alerts*\n{} of {} firing", c.alerts.0, c.alerts.1)},
        ]}),
    ];
    let mut people = Vec::new();
    if !c.on_call.is_empty() {
        people.push(format!("*Paged:* {}", c.on_call.join(", ")));
    }
    for (role, who) in &c.roles {
        let mut r = role.clone();
        if let Some(first) = r.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        people.push(format!("*{r}:* {who}"));
    }
    if !people.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&people.join("\n"), SECTION_MAX)}}));
    }
    if !c.changes.is_empty() {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            &format!("*Recent changes*\n{}", c.changes.iter().map(|l| escape(l)).collect::<Vec<_>>().join("\n")), SECTION_MAX)}}),
        );
    }
    if !c.buttons.is_empty() {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("tocsin_card_{}", c.id.0),
            "elements": c.buttons.iter().map(|b| button(*b, &id)).collect::<Vec<_>>(),
        }));
    }
    Value::Array(blocks)
}

/// A page sent by direct message.
pub fn page(p: &PageContent) -> Value {
    let id = p.incident.to_string();
    json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!(
            "{} *You are paged* for *{}*: {}\nService *{}* · {} · escalation step {} (round {})",
            severity_icon(p.severity), id, escape(&p.title), escape(&p.service), p.severity, p.step, p.round
        ), SECTION_MAX)}},
        {"type": "actions", "block_id": format!("tocsin_page_{}", p.incident.0), "elements": [
            button(Button::Ack, &id),
            button(Button::Resolve, &id),
        ]},
    ])
}

/// The buttons under a reply (the runbook card's): the value carries the
/// incident and the button's argument, like `INC-42 read-error-samples`.
pub fn reply_buttons(buttons: &[(Button, crate::incident::IncidentId, String)]) -> Value {
    let elements: Vec<Value> = buttons
        .iter()
        .take(25)
        .map(|(b, id, arg)| {
            let label = if arg.is_empty() {
                b.label().to_string()
            } else {
                truncate(&format!("{}: {arg}", b.label()), 75)
            };
            let value = if arg.is_empty() {
                id.to_string()
            } else {
                format!("{id} {arg}")
            };
            // Slack wants action ids unique within a block.
            let action_id = if arg.is_empty() {
                b.action_id().to_string()
            } else {
                truncate(&format!("{}:{arg}", b.action_id()), 255)
            };
            json!({"type": "button", "action_id": action_id,
                   "text": {"type": "plain_text", "text": label}, "value": value})
        })
        .collect();
    json!({"type": "actions", "block_id": "tocsin_runbook", "elements": elements})
}

/// Plain Markdown, split into sections of at most 3000 characters.
pub fn text(t: &str) -> Value {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in t.lines() {
        if current.chars().count() + line.chars().count() + 1 > SECTION_MAX && !current.is_empty() {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": current}}));
            current = String::new();
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&truncate(line, SECTION_MAX));
    }
    if !current.is_empty() || blocks.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": if current.is_empty() { " ".to_string() } else { current }}}));
    }
    Value::Array(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentId;

    fn view(status: Status) -> CardView {
        crate::chat::sample_card(status, "<@U01ALICE>", "<@U02BOB>")
    }

    #[test]
    fn card_triggered() {
        insta::assert_json_snapshot!(card(&view(Status::Triggered)));
    }

    #[test]
    fn card_resolved_has_no_buttons() {
        insta::assert_json_snapshot!(card(&view(Status::Resolved)));
    }

    #[test]
    fn card_shows_recent_changes_before_the_buttons() {
        let c = CardView {
            changes: vec!["2026-12-01 09:58 UTC Deploy api 1.2 (deploybot)".into()],
            ..view(Status::Triggered)
        };
        let blocks = card(&c);
        let texts: Vec<&str> = blocks
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .collect();
        assert!(
            texts.contains(&"*Recent changes*\n2026-12-01 09:58 UTC Deploy api 1.2 (deploybot)"),
            "{texts:?}"
        );
        assert_eq!(
            blocks.as_array().unwrap().last().unwrap()["type"],
            "actions"
        );
    }

    #[test]
    fn page_message() {
        insta::assert_json_snapshot!(page(&PageContent {
            incident: IncidentId(42),
            title: "API error rate above 5%".into(),
            severity: Severity::Sev2,
            service: "api".into(),
            step: 1,
            round: 1,
        }));
    }

    #[test]
    fn blocks_parse_as_slack_morphism_blocks() {
        for v in [
            card(&view(Status::Triggered)),
            page(&PageContent {
                incident: IncidentId(1),
                title: "t".into(),
                severity: Severity::Sev4,
                service: "s".into(),
                step: 1,
                round: 1,
            }),
            text("hello"),
        ] {
            let parsed: Vec<slack_morphism::prelude::SlackBlock> =
                serde_json::from_value(v.clone()).unwrap();
            assert_eq!(parsed.len(), v.as_array().unwrap().len());
        }
    }

    #[test]
    fn long_text_is_split() {
        let long = (0..200)
            .map(|i| format!("line {i} {}", "x".repeat(40)))
            .collect::<Vec<_>>()
            .join("\n");
        let v = text(&long);
        assert!(v.as_array().unwrap().len() >= 3);
        for b in v.as_array().unwrap() {
            assert!(b["text"]["text"].as_str().unwrap().chars().count() <= SECTION_MAX);
        }
    }
}

#[cfg(test)]
mod escaping {
    use super::*;
    use crate::incident::IncidentId;
    use proptest::prelude::*;

    /// Text biased towards what breaks chat messages.
    pub(crate) fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("<!channel>".to_string()),
            Just("<!here>".to_string()),
            Just("<@U123>".to_string()),
            Just("<#C1>".to_string()),
            Just("@everyone".to_string()),
            Just("<@123>".to_string()),
            Just("&".to_string()),
            Just("*".to_string()),
            Just("_".to_string()),
            Just("`".to_string()),
            Just("\\".to_string()),
            Just("\u{202E}".to_string()),
            Just("\u{2066}".to_string()),
            Just("\n".to_string()),
            "[a-z <>&!@#]{0,6}",
            any::<char>().prop_map(|c| c.to_string()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    /// Every mrkdwn/plain text in Slack blocks.
    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "text"
                        && let Some(s) = x.as_str()
                    {
                        out.push(s.to_string());
                    }
                    texts(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            _ => {}
        }
    }

    /// What is left once tocsin's own markup is taken out: no `<`, `>`,
    /// and every `&` starts an entity.
    fn assert_inert(s: &str, own: &[&str]) {
        let mut rest = s.to_string();
        for o in own {
            rest = rest.replace(o, "");
        }
        assert!(!rest.contains('<') && !rest.contains('>'), "{s:?}");
        let unentity = rest
            .replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "");
        assert!(!unentity.contains('&'), "{s:?}");
        assert!(
            !rest.contains('\u{202E}') && !rest.contains('\u{2066}'),
            "{s:?}"
        );
    }

    proptest! {
        #[test]
        fn cards_and_pages_carry_alert_text_as_text(title in hostile(), service in hostile(), change in hostile()) {
            let c = CardView {
                title: title.clone(),
                service: service.clone(),
                changes: vec![change],
                ..crate::chat::sample_card(Status::Triggered, "<@U01ALICE>", "<@U02BOB>")
            };
            let (fallback, blocks) = render(&ChatMessage::Card(c));
            let mut all = vec![fallback];
            texts(&blocks, &mut all);
            for t in &all {
                assert_inert(t, &["<@U01ALICE>", "<@U02BOB>"]);
            }
            let (fallback, blocks) = render(&ChatMessage::Page(PageContent {
                incident: IncidentId(7), title, severity: Severity::Sev1, service, step: 1, round: 1,
            }));
            let mut all = vec![fallback];
            texts(&blocks, &mut all);
            for t in &all {
                assert_inert(t, &[]);
            }
        }

        #[test]
        fn templates_escape_values_not_their_own_text(title in hostile(), note in hostile(), by in hostile()) {
            use crate::templates::{Markup, Templates};
            let t = Templates::load(None).unwrap();
            let mut inc = crate::templates::sample_context("channel_intro.md");
            inc["incident"]["title"] = title.clone().into();
            inc["incident"]["service"] = by.clone().into();
            let intro = t.render_for(Markup::Slack, "channel_intro.md", &inc).unwrap();
            assert_inert(&intro, &[]);
            let mut res = crate::templates::sample_context("resolved.md");
            res["note"] = note.into();
            res["by"] = by.into();
            res["incident"]["title"] = title.into();
            let out = t.render_for(Markup::Slack, "resolved.md", &res).unwrap();
            assert_inert(&out, &[]);
            prop_assert!(out.contains(":white_check_mark:"));
        }
    }

    #[test]
    fn the_runbook_cards_mention_stays_a_mention() {
        use crate::templates::{Markup, Templates};
        let t = Templates::load(None).unwrap();
        let mut ctx = crate::templates::sample_context("runbook_card.md");
        ctx["steps"][0]["owner_user"] = serde_json::Value::Null;
        let out = t
            .render_for(Markup::Slack, "runbook_card.md", &ctx)
            .unwrap();
        assert!(out.contains("`/incident step done [id] [note]`"), "{out}");
        assert!(!out.contains('<'), "{out}");
    }
}
