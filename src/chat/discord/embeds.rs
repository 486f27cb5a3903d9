//! Embeds and buttons for the incident card, pages and plain text, built
//! with serenity's builders (which serialize to the JSON Discord takes).

use crate::chat::{Button, CardView, ChatMessage};
use crate::incident::{IncidentId, Severity, Status};
use crate::notify::PageContent;
use serenity::all::{
    ButtonStyle, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
    CreateEmbedFooter, CreateMessage, EditMessage,
};

/// Discord's limit for a message's `content`.
pub const CONTENT_MAX: usize = 2000;
/// Discord's limit for an embed's title.
const TITLE_MAX: usize = 256;
/// Discord's limit for an embed's description.
const DESCRIPTION_MAX: usize = 4096;
/// Discord's limit for an embed field's value.
const FIELD_MAX: usize = 1024;
/// Discord's limit for all the text of a message's embeds together.
const EMBEDS_TOTAL_MAX: usize = 6000;

/// Cuts `s` to at most `max` characters, ending with `…` if it was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn colour(severity: Severity, status: Status) -> u32 {
    match (status, severity) {
        (Status::Resolved, _) => 0x2E_B6_7D,
        (_, Severity::Sev1) => 0xE0_1E_5A,
        (_, Severity::Sev2) => 0xF2_99_4A,
        (_, Severity::Sev3) => 0xEC_B2_2E,
        (_, Severity::Sev4) => 0x95_A5_A6,
    }
}

fn severity_icon(s: Severity) -> &'static str {
    match s {
        Severity::Sev1 => "🔴",
        Severity::Sev2 => "🟠",
        Severity::Sev3 => "🟡",
        Severity::Sev4 => "⚪",
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Triggered => "Triggered",
        Status::Acknowledged => "Acknowledged",
        Status::Resolved => "Resolved",
    }
}

/// The `custom_id` of a button: `tocsin_ack:INC-42`.
pub fn custom_id(b: Button, incident: IncidentId) -> String {
    format!("{}:{incident}", b.action_id())
}

/// The button and incident of a `custom_id` made by [`custom_id`].
pub fn parse_custom_id(id: &str) -> Option<(Button, IncidentId)> {
    let (action, incident) = id.split_once(':')?;
    Some((Button::from_action_id(action)?, incident.parse().ok()?))
}

/// The `custom_id` of a button with an argument (a runbook step):
/// `tocsin_step_done:INC-42:read-error-samples` (at most 100 characters).
pub fn custom_id_arg(b: Button, incident: IncidentId, arg: &str) -> String {
    if arg.is_empty() {
        custom_id(b, incident)
    } else {
        truncate(&format!("{}:{incident}:{arg}", b.action_id()), 100)
    }
}

/// The button, incident and argument of a `custom_id`.
pub fn parse_custom_id_arg(id: &str) -> Option<(Button, IncidentId, String)> {
    let mut parts = id.splitn(3, ':');
    let button = Button::from_action_id(parts.next()?)?;
    let incident = parts.next()?.parse().ok()?;
    Some((
        button,
        incident,
        parts.next().unwrap_or_default().to_string(),
    ))
}

/// The buttons under a reply (the runbook card's): one row of five at most.
pub fn reply_buttons(buttons: &[(Button, IncidentId, String)]) -> Vec<CreateActionRow> {
    if buttons.is_empty() {
        return Vec::new();
    }
    vec![CreateActionRow::Buttons(
        buttons
            .iter()
            .take(5)
            .map(|(b, id, arg)| {
                let label = if arg.is_empty() {
                    b.label().to_string()
                } else {
                    truncate(&format!("{}: {arg}", b.label()), 80)
                };
                CreateButton::new(custom_id_arg(*b, *id, arg))
                    .label(label)
                    .style(ButtonStyle::Secondary)
            })
            .collect(),
    )]
}

fn button(b: Button, incident: IncidentId) -> CreateButton {
    let style = match b {
        Button::Ack => ButtonStyle::Primary,
        Button::Resolve => ButtonStyle::Success,
        Button::Escalate => ButtonStyle::Danger,
        Button::Runbook | Button::StepDone | Button::PhaseNext => ButtonStyle::Secondary,
    };
    CreateButton::new(custom_id(b, incident))
        .label(b.label())
        .style(style)
}

/// One row of buttons (Discord allows five per row), or none.
fn buttons(list: &[Button], incident: IncidentId) -> Vec<CreateActionRow> {
    if list.is_empty() {
        return Vec::new();
    }
    vec![CreateActionRow::Buttons(
        list.iter().take(5).map(|b| button(*b, incident)).collect(),
    )]
}

/// Only user mentions ping: alert titles and notes come from outside, and
/// must not reach `@everyone` or a role.
pub fn mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().all_users(true)
}

/// The incident card.
pub fn card(c: &CardView) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title(truncate(
            &format!("{} {}: {}", severity_icon(c.severity), c.id, c.title),
            TITLE_MAX,
        ))
        .colour(colour(c.severity, c.status))
        .field("Severity", c.severity.label(), true)
        .field("Status", status_word(c.status), true)
        .field("Service", truncate(&c.service, FIELD_MAX), true)
        .field(
            "Alerts",
            format!("{} of {} firing", c.alerts.0, c.alerts.1),
            true,
        );
    if !c.on_call.is_empty() {
        e = e.field("Paged", truncate(&c.on_call.join(", "), FIELD_MAX), false);
    }
    for (role, who) in &c.roles {
        let mut r = role.clone();
        if let Some(first) = r.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        e = e.field(r, truncate(who, FIELD_MAX), true);
    }
    if !c.changes.is_empty() {
        e = e.field(
            "Recent changes",
            truncate(&c.changes.join("\n"), FIELD_MAX),
            false,
        );
    }
    e.footer(CreateEmbedFooter::new(format!(
        "tocsin · {}",
        c.id.to_string().to_ascii_lowercase()
    )))
}

/// A page sent by direct message: the text shows in the push notification.
pub fn page(p: &PageContent) -> (String, CreateEmbed) {
    let content = truncate(&format!("You are paged: {}", p.headline()), CONTENT_MAX);
    let embed = CreateEmbed::new()
        .title(truncate(
            &format!("{} {}: {}", severity_icon(p.severity), p.incident, p.title),
            TITLE_MAX,
        ))
        .colour(colour(p.severity, Status::Triggered))
        .field("Severity", p.severity.label(), true)
        .field("Service", truncate(&p.service, FIELD_MAX), true)
        .field(
            "Escalation",
            format!("step {} (round {})", p.step, p.round),
            true,
        );
    (content, embed)
}

/// Plain Markdown: the message text up to 2000 characters, else embeds
/// of up to 4096 characters each (6000 in all, the rest cut).
/// Slack-flavoured Markdown (the shared templates and replies) to
/// Discord's: `*bold*` becomes `**bold**` (Discord reads `*x*` as italics),
/// and the emoji shortcodes the templates use become the emoji, since
/// Discord does not expand shortcodes in bot messages.
pub fn markdown(t: &str) -> String {
    static BOLD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(^|[^*\w])\*([^*\n]+?)\*([^*\w]|$)").expect("valid regex")
    });
    let mut out = t.to_string();
    for (code, emoji) in [
        (":white_check_mark:", "\u{2705}"),
        (":fast_forward:", "\u{23e9}"),
        (":white_large_square:", "\u{2b1c}"),
        (":rotating_light:", "\u{1f6a8}"),
        (":eyes:", "\u{1f440}"),
        (":red_circle:", "\u{1f534}"),
        (":large_orange_circle:", "\u{1f7e0}"),
        (":large_yellow_circle:", "\u{1f7e1}"),
        (":white_circle:", "\u{26aa}"),
    ] {
        out = out.replace(code, emoji);
    }
    // Twice: adjacent matches share their boundary character.
    for _ in 0..2 {
        out = BOLD.replace_all(&out, "$1**$2**$3").into_owned();
    }
    out
}

pub fn text(t: &str) -> (Option<String>, Vec<CreateEmbed>) {
    let converted = markdown(t);
    let t = converted.as_str();
    let t = if t.trim().is_empty() { "\u{200b}" } else { t };
    if t.chars().count() <= CONTENT_MAX {
        return (Some(t.to_string()), Vec::new());
    }
    let whole = truncate(t, EMBEDS_TOTAL_MAX);
    let mut embeds = Vec::new();
    let mut current = String::new();
    for line in whole.lines() {
        let line = truncate(line, DESCRIPTION_MAX);
        if current.chars().count() + line.chars().count() + 1 > DESCRIPTION_MAX
            && !current.is_empty()
        {
            embeds.push(CreateEmbed::new().description(std::mem::take(&mut current)));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        embeds.push(CreateEmbed::new().description(current));
    }
    (None, embeds)
}

/// Splits long text at line ends into pieces of at most 6000 characters
/// (what one message's embeds hold), at most `max` pieces (the rest cut).
pub fn split(t: &str, max: usize) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in t.lines() {
        let line = truncate(line, DESCRIPTION_MAX);
        if current.chars().count() + line.chars().count() + 1 > EMBEDS_TOTAL_MAX
            && !current.is_empty()
        {
            pieces.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    if pieces.len() > max {
        pieces.truncate(max);
        if let Some(last) = pieces.last_mut() {
            *last = truncate(&format!("{last}\n…"), EMBEDS_TOTAL_MAX);
        }
    }
    pieces
}

/// A new message.
pub fn create(message: &ChatMessage) -> CreateMessage {
    let m = CreateMessage::new().allowed_mentions(mentions());
    match message {
        ChatMessage::Card(c) => m.embed(card(c)).components(buttons(&c.buttons, c.id)),
        ChatMessage::Page(p) => {
            let (content, embed) = page(p);
            m.content(content)
                .embed(embed)
                .components(buttons(&[Button::Ack, Button::Resolve], p.incident))
        }
        ChatMessage::Text(t) => match text(t) {
            (Some(content), _) => m.content(content),
            (None, embeds) => m.embeds(embeds),
        },
    }
}

/// The replacement of a message (every part set, so nothing stale stays).
pub fn edit(message: &ChatMessage) -> EditMessage {
    let m = EditMessage::new().allowed_mentions(mentions());
    match message {
        ChatMessage::Card(c) => m
            .content("")
            .embeds(vec![card(c)])
            .components(buttons(&c.buttons, c.id)),
        ChatMessage::Page(p) => {
            let (content, embed) = page(p);
            m.content(content)
                .embeds(vec![embed])
                .components(buttons(&[Button::Ack, Button::Resolve], p.incident))
        }
        ChatMessage::Text(t) => match text(t) {
            (Some(content), _) => m.content(content).embeds(Vec::new()).components(Vec::new()),
            (None, embeds) => m.content("").embeds(embeds).components(Vec::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_markdown_reads_right_on_discord() {
        assert_eq!(
            markdown("*INC-1* acknowledged by *alice*."),
            "**INC-1** acknowledged by **alice**."
        );
        assert_eq!(
            markdown("already **bold** and 5*3"),
            "already **bold** and 5*3"
        );
        assert_eq!(
            markdown(":white_check_mark: `step` done"),
            "\u{2705} `step` done"
        );
    }

    fn view(status: Status) -> CardView {
        crate::chat::sample_card(status, "<@80351110224678912>", "<@80351110224678913>")
    }

    fn page_content() -> PageContent {
        PageContent {
            incident: IncidentId(42),
            title: "API error rate above 5%".into(),
            severity: Severity::Sev2,
            service: "api".into(),
            step: 1,
            round: 1,
        }
    }

    fn json(v: impl serde::Serialize) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn card_triggered() {
        insta::assert_json_snapshot!(json(create(&ChatMessage::Card(view(Status::Triggered)))));
    }

    #[test]
    fn card_resolved_has_no_buttons() {
        insta::assert_json_snapshot!(json(edit(&ChatMessage::Card(view(Status::Resolved)))));
    }

    #[test]
    fn page_message() {
        insta::assert_json_snapshot!(json(create(&ChatMessage::Page(page_content()))));
    }

    #[test]
    fn custom_ids_round_trip() {
        for b in [
            Button::Ack,
            Button::Resolve,
            Button::Escalate,
            Button::Runbook,
        ] {
            let id = custom_id(b, IncidentId(42));
            assert!(id.len() <= 100, "Discord allows 100 characters: {id}");
            assert_eq!(parse_custom_id(&id), Some((b, IncidentId(42))));
        }
        assert_eq!(custom_id(Button::Ack, IncidentId(42)), "tocsin_ack:INC-42");
        assert_eq!(parse_custom_id("tocsin_ack"), None);
        assert_eq!(parse_custom_id("tocsin_nope:INC-1"), None);
        assert_eq!(parse_custom_id("tocsin_ack:banana"), None);
    }

    #[test]
    fn long_text_is_split_into_messages() {
        let long = (0..600)
            .map(|i| format!("line {i} {}", "x".repeat(40)))
            .collect::<Vec<_>>()
            .join("\n");
        let pieces = split(&long, 10);
        assert!(pieces.len() >= 4, "{}", pieces.len());
        assert_eq!(pieces.join("\n"), long);
        for p in &pieces {
            assert!(p.chars().count() <= EMBEDS_TOTAL_MAX);
            let v = json(create(&ChatMessage::Text(p.clone())));
            let total: usize = v["embeds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["description"].as_str().unwrap().chars().count())
                .sum();
            assert_eq!(
                total + v["embeds"].as_array().unwrap().len() - 1,
                p.chars().count()
            );
        }
        assert_eq!(split(&long, 2).len(), 2);
        assert_eq!(split("short", 10), vec!["short".to_string()]);
    }

    #[test]
    fn text_fits_discord_limits() {
        let short = json(create(&ChatMessage::Text("hello <@1> @everyone".into())));
        assert_eq!(short["content"], "hello <@1> @everyone");
        assert_eq!(
            short["allowed_mentions"]["parse"],
            serde_json::json!(["users"])
        );
        let long = (0..300)
            .map(|i| format!("line {i} {}", "x".repeat(40)))
            .collect::<Vec<_>>()
            .join("\n");
        let v = json(create(&ChatMessage::Text(long)));
        assert!(v.get("content").is_none(), "{v}");
        let embeds = v["embeds"].as_array().unwrap();
        assert!(embeds.len() >= 2);
        let total: usize = embeds
            .iter()
            .map(|e| e["description"].as_str().unwrap().chars().count())
            .sum();
        assert!(total <= EMBEDS_TOTAL_MAX, "{total}");
        for e in embeds {
            assert!(e["description"].as_str().unwrap().chars().count() <= DESCRIPTION_MAX);
        }
        let title = json(card(&CardView {
            title: "t".repeat(400),
            ..view(Status::Triggered)
        }));
        assert_eq!(title["title"].as_str().unwrap().chars().count(), TITLE_MAX);
    }
}
