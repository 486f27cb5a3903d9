//! Block Kit for the incident card, pages and plain text.

use crate::chat::{Button, CardView, ChatMessage};
use crate::incident::{Severity, Status};
use crate::notify::PageContent;
use serde_json::{Value, json};

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
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

/// The fallback text and the blocks of a message.
pub fn render(message: &ChatMessage) -> (String, Value) {
    match message {
        ChatMessage::Card(c) => (c.headline(), card(c)),
        ChatMessage::Page(p) => (format!("You are paged: {}", p.headline()), page(p)),
        ChatMessage::Text(t) => (truncate(t, 4000), text(t)),
    }
}

/// The incident card.
pub fn card(c: &CardView) -> Value {
    let id = c.id.to_string();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
            "text": truncate(&format!("{} {}: {}", severity_icon(c.severity), id, c.title), 150)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Severity*\n{}", c.severity)},
            {"type": "mrkdwn", "text": format!("*Status*\n{}", status_word(c.status))},
            {"type": "mrkdwn", "text": format!("*Service*\n{}", c.service)},
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
            &format!("*Recent changes*\n{}", c.changes.join("\n")), SECTION_MAX)}}),
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
            severity_icon(p.severity), id, p.title, p.service, p.severity, p.step, p.round
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
