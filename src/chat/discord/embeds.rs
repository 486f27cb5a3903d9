//! Embeds and buttons for the incident card, pages and plain text, built
//! with serenity's builders (which serialize to the JSON Discord takes).

use super::escape;
use crate::chat::{Button, CardView, ChatMessage, SummaryPost, is_unsafe_char};
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

/// The longest `custom_id` Discord takes.
pub const CUSTOM_ID_MAX: usize = 100;

/// Buttons per action row, and action rows per message, that Discord takes.
pub const ROW_MAX: usize = 5;

/// Hex digits of the SHA-256 that tells long arguments apart.
const ARG_HASH_HEX: usize = 16;

/// The `custom_id` of a button with an argument (a runbook step):
/// `tocsin_step_done:INC-42:read-error-samples`. Discord takes at most 100
/// characters, so a longer one keeps the argument's first characters and
/// ends with `~` and 16 hex digits of the argument's SHA-256: two step ids
/// sharing a long prefix still get different ids, and
/// [`resolve_arg`] finds the step again among the runbook's.
pub fn custom_id_arg(b: Button, incident: IncidentId, arg: &str) -> String {
    if arg.is_empty() {
        return custom_id(b, incident);
    }
    let plain = format!("{}:{incident}:{arg}", b.action_id());
    if plain.chars().count() <= CUSTOM_ID_MAX {
        return plain;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(arg.as_bytes()));
    let head = format!("{}:{incident}:", b.action_id());
    let room = CUSTOM_ID_MAX.saturating_sub(head.chars().count() + 1 + ARG_HASH_HEX);
    let prefix: String = arg.chars().take(room).collect();
    format!("{head}{prefix}~{}", &hash[..ARG_HASH_HEX])
}

/// Whether `arg` (from [`parse_custom_id_arg`]) is the shortened form of a
/// longer argument, ending with `~` and the hash.
pub fn is_shortened_arg(arg: &str) -> bool {
    arg.rsplit_once('~')
        .is_some_and(|(_, h)| h.len() == ARG_HASH_HEX && h.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// The argument among `candidates` (the runbook's step ids) whose
/// `custom_id` is `custom_id`.
pub fn resolve_arg<'a>(
    custom_id: &str,
    b: Button,
    incident: IncidentId,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .find(|c| custom_id_arg(b, incident, c) == custom_id)
}

/// Buttons in action rows: five a row, five rows at most (Discord's
/// limits; the rest are left off).
fn rows(buttons: Vec<CreateButton>) -> Vec<CreateActionRow> {
    buttons
        .chunks(ROW_MAX)
        .take(ROW_MAX)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
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

/// The buttons under a reply (the runbook card's), five a row, each with a
/// `custom_id` of its own.
pub fn reply_buttons(buttons: &[(Button, IncidentId, String)]) -> Vec<CreateActionRow> {
    let mut seen = std::collections::HashSet::new();
    rows(
        buttons
            .iter()
            .filter(|(b, id, arg)| seen.insert(custom_id_arg(*b, *id, arg)))
            .map(|(b, id, arg)| {
                let label = if arg.is_empty() {
                    b.label().to_string()
                } else {
                    // A step id from a runbook file: no bidi or control
                    // characters in the label either.
                    let arg: String = arg.chars().filter(|c| !is_unsafe_char(*c)).collect();
                    truncate(&format!("{}: {arg}", b.label()), 80)
                };
                CreateButton::new(custom_id_arg(*b, *id, arg))
                    .label(label)
                    .style(ButtonStyle::Secondary)
            })
            .collect(),
    )
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

/// The card's buttons, five a row.
fn buttons(list: &[Button], incident: IncidentId) -> Vec<CreateActionRow> {
    rows(list.iter().map(|b| button(*b, incident)).collect())
}

/// The user ids tocsin itself mentions in `text`: every `<@123>` or
/// `<@!123>` not escaped with a backslash (text from alerts and people is
/// escaped, so what is left is tocsin's own markup).
pub fn mentioned_ids(text: &str) -> Vec<u64> {
    static MENTION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(\\\\|\\<|<@!?([0-9]{1,20})>)").expect("valid regex")
    });
    let mut ids = Vec::new();
    for c in MENTION.captures_iter(text) {
        if let Some(id) = c.get(2).and_then(|m| m.as_str().parse::<u64>().ok())
            && id != 0
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    ids
}

/// Only the people tocsin means to ping: `users` by id, never every user,
/// a role or `@everyone` (alert titles and notes come from outside).
pub fn mentions(users: &[u64]) -> CreateAllowedMentions {
    CreateAllowedMentions::new().users(users.iter().map(|&id| serenity::all::UserId::new(id)))
}

/// The ids a message mentions on purpose: the card's paged people and
/// role holders, or the mentions tocsin wrote into a text.
fn message_mentions(message: &ChatMessage) -> Vec<u64> {
    match message {
        ChatMessage::Card(c) => {
            let mut all = c.on_call.join(" ");
            for (_, who) in &c.roles {
                all.push(' ');
                all.push_str(who);
            }
            mentioned_ids(&all)
        }
        ChatMessage::Page(_) => Vec::new(),
        ChatMessage::Text(t) => mentioned_ids(t),
        // A summary names people, it pings nobody.
        ChatMessage::Summary(_) => Vec::new(),
    }
}

/// Embed fields in one embed, as Discord takes them.
pub const FIELDS_MAX: usize = 25;

/// A summary as one embed: the key figures as fields, the first lines,
/// and as much of the summary as the description holds (cut at a line
/// end; the attached file has the whole of it). Within Discord's embed
/// limits: title 256, 25 fields of at most 1,024, description 4,096, all
/// text 6,000.
pub fn summary(p: &SummaryPost) -> CreateEmbed {
    let title = truncate(
        &format!("\u{1f4dd} Summary of {}: {}", p.id, escape(&p.title)),
        TITLE_MAX,
    );
    let footer = format!("tocsin · the whole summary: {}", p.filename());
    let mut used = title.chars().count() + footer.chars().count();
    let mut fields: Vec<(String, String, bool)> = p
        .figures()
        .into_iter()
        .map(|(name, value, outside)| {
            let value = if outside { escape(&value) } else { value };
            (name.to_string(), truncate(&value, 200), true)
        })
        .collect();
    if !p.first_lines.is_empty() {
        let lines: Vec<String> = p.first_lines.iter().map(|l| escape(l)).collect();
        fields.push((
            "First lines".to_string(),
            truncate(&lines.join("\n"), FIELD_MAX),
            false,
        ));
    }
    fields.truncate(FIELDS_MAX);
    for (name, value, _) in &fields {
        used += name.chars().count() + value.chars().count();
    }
    let budget = DESCRIPTION_MAX.min(EMBEDS_TOTAL_MAX.saturating_sub(used));
    let description = cut_at_line(&markdown(&p.text), budget);
    let mut e = CreateEmbed::new()
        .title(title)
        .colour(colour(Severity::Sev4, Status::Resolved))
        .description(description);
    for (name, value, inline) in fields {
        e = e.field(name, value, inline);
    }
    e.footer(CreateEmbedFooter::new(footer))
}

/// `t` cut at a line end to at most `max` characters; a cut ends with a
/// `…` line.
fn cut_at_line(t: &str, max: usize) -> String {
    if t.chars().count() <= max {
        return t.to_string();
    }
    let room = max.saturating_sub(2);
    let mut out = String::new();
    let mut len = 0;
    for line in t.lines() {
        let n = line.chars().count() + usize::from(!out.is_empty());
        if len + n > room {
            if out.is_empty() {
                out = truncate(line, room);
            }
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        len += n;
    }
    out.push_str("\n…");
    out
}

/// The incident card.
pub fn card(c: &CardView) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title(truncate(
            &format!(
                "{} {}: {}",
                severity_icon(c.severity),
                c.id,
                escape(&c.title)
            ),
            TITLE_MAX,
        ))
        .colour(colour(c.severity, c.status))
        .field("Severity", c.severity.label(), true)
        .field("Status", status_word(c.status), true)
        .field("Service", truncate(&escape(&c.service), FIELD_MAX), true)
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
    if let Some(f) = &c.flapping {
        e = e.field(
            "Flapping",
            format!(
                "{}: paged once, pages again only if it stays firing",
                escape(f)
            ),
            false,
        );
    }
    if let Some(m) = &c.maintenance {
        e = e.field("Maintenance", truncate(&escape(m), FIELD_MAX), false);
    }
    if !c.changes.is_empty() {
        e = e.field(
            "Recent changes",
            truncate(
                &c.changes
                    .iter()
                    .map(|l| escape(l))
                    .collect::<Vec<_>>()
                    .join("\n"),
                FIELD_MAX,
            ),
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
    let content = truncate(
        &format!(
            "You are paged: [{}] {}: {} ({})",
            p.severity,
            p.incident,
            escape(&p.title),
            escape(&p.service)
        ),
        CONTENT_MAX,
    );
    let embed = CreateEmbed::new()
        .title(truncate(
            &format!(
                "{} {}: {}",
                severity_icon(p.severity),
                p.incident,
                escape(&p.title)
            ),
            TITLE_MAX,
        ))
        .colour(colour(p.severity, Status::Triggered))
        .field("Severity", p.severity.label(), true)
        .field("Service", truncate(&escape(&p.service), FIELD_MAX), true)
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
        // The content skips backslash-escaped characters, and an escaped
        // star opens nothing: escaped text from alerts stays as it is.
        regex::Regex::new(r"(^|[^*\w\\])\*((?:[^*\n\\]|\\.)+?)\*([^*\w]|$)").expect("valid regex")
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
    let m = CreateMessage::new().allowed_mentions(mentions(&message_mentions(message)));
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
        ChatMessage::Summary(p) => m.embed(summary(p)),
    }
}

/// The replacement of a message (every part set, so nothing stale stays).
pub fn edit(message: &ChatMessage) -> EditMessage {
    let m = EditMessage::new().allowed_mentions(mentions(&message_mentions(message)));
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
        ChatMessage::Summary(p) => m
            .content("")
            .embeds(vec![summary(p)])
            .components(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_post(lines: usize, title: &str) -> SummaryPost {
        let text: String = (0..lines)
            .map(|i| format!("- 10:00:{:02} alertmanager: node-{i:04} is down\n", i % 60))
            .collect();
        SummaryPost {
            id: IncidentId(7),
            title: title.into(),
            status: "resolved".into(),
            duration_seconds: Some(252),
            alerts: lines,
            events: 2 * lines as u64,
            acknowledged_by: Some("alice".into()),
            resolved_by: None,
            first_lines: vec!["10:00:00 alertmanager: <@123> @everyone".into(); 5],
            text: format!("# INC-7: {title}\n{text}"),
            markdown: text,
        }
    }

    #[test]
    fn a_long_summary_is_one_embed_within_discords_limits() {
        let p = summary_post(1000, &"t".repeat(400));
        let v = serde_json::to_value(create(&ChatMessage::Summary(p))).unwrap();
        let e = &v["embeds"][0];
        let n = |v: &serde_json::Value| v.as_str().map_or(0, |s| s.chars().count());
        assert!(n(&e["title"]) <= TITLE_MAX);
        let description = e["description"].as_str().unwrap();
        assert!(description.chars().count() <= DESCRIPTION_MAX);
        assert!(description.ends_with("\n…"), "cut at a line end");
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= FIELDS_MAX);
        let mut total = n(&e["title"]) + n(&e["description"]) + n(&e["footer"]["text"]);
        for f in fields {
            assert!(n(&f["value"]) <= FIELD_MAX);
            total += n(&f["name"]) + n(&f["value"]);
        }
        assert!(total <= EMBEDS_TOTAL_MAX, "{total}");
        let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Status",
                "Duration",
                "Alerts",
                "Acknowledged by",
                "Resolved by",
                "First lines"
            ]
        );
        assert_eq!(fields[1]["value"], "4m 12s");
        // Names from alerts are text, and the summary pings nobody.
        let first = fields[5]["value"].as_str().unwrap();
        assert!(
            !first.contains("<@123>") && !first.contains("@everyone"),
            "{first}"
        );
        assert_eq!(v["allowed_mentions"]["users"], serde_json::json!([]));
        assert!(
            e["footer"]["text"]
                .as_str()
                .unwrap()
                .contains("summary-INC-7.md")
        );
    }

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

    #[test]
    fn card_says_it_is_flapping() {
        let c = CardView {
            flapping: Some("flapping: 5 changes in 30m".into()),
            ..view(Status::Triggered)
        };
        let v = json(card(&c));
        let field = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "Flapping")
            .expect("a Flapping field");
        assert_eq!(
            field["value"],
            "flapping: 5 changes in 30m: paged once, pages again only if it stays firing"
        );
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
    fn long_step_ids_get_unique_custom_ids_that_resolve_back() {
        let prefix = "check-every-upstream-dependency-of-the-payments-api-in-every-region-and-zone";
        let steps: Vec<String> = (1..=7).map(|i| format!("{prefix}-step-{i}")).collect();
        let ids: Vec<String> = steps
            .iter()
            .map(|s| custom_id_arg(Button::StepDone, IncidentId(12345), s))
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        for (id, step) in ids.iter().zip(&steps) {
            assert!(id.chars().count() <= CUSTOM_ID_MAX, "{id}");
            let (b, inc, arg) = parse_custom_id_arg(id).unwrap();
            assert_eq!((b, inc), (Button::StepDone, IncidentId(12345)));
            assert!(is_shortened_arg(&arg), "{arg}");
            let found = resolve_arg(id, b, inc, steps.iter().map(String::as_str));
            assert_eq!(found, Some(step.as_str()));
        }
        // Short ones stay as they are.
        let short = custom_id_arg(Button::StepDone, IncidentId(1), "read-error-samples");
        assert_eq!(short, "tocsin_step_done:INC-1:read-error-samples");
        assert!(!is_shortened_arg("read-error-samples"));
        // Seven buttons: two rows, five at most in each.
        let buttons: Vec<_> = steps
            .iter()
            .map(|s| (Button::StepDone, IncidentId(1), s.clone()))
            .collect();
        let rows = json(reply_buttons(&buttons));
        let sizes: Vec<usize> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["components"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [5, 2]);
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
        // Text is markup already: tocsin's own mention pings, nothing else.
        let short = json(create(&ChatMessage::Text(
            "hello <@1> \\<@2> @everyone".into(),
        )));
        assert_eq!(short["content"], "hello <@1> \\<@2> @everyone");
        assert_eq!(short["allowed_mentions"]["parse"], serde_json::json!([]));
        assert_eq!(short["allowed_mentions"]["users"], serde_json::json!(["1"]));
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

#[cfg(test)]
mod escaping {
    use super::*;
    use proptest::prelude::*;

    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("<@123>".to_string()),
            Just("<@&5>".to_string()),
            Just("<#9>".to_string()),
            Just("@everyone".to_string()),
            Just("@here".to_string()),
            Just("<!channel>".to_string()),
            Just("*".to_string()),
            Just("_".to_string()),
            Just("`".to_string()),
            Just("\\".to_string()),
            Just("\u{202E}".to_string()),
            "[a-z <>@*]{0,6}",
            any::<char>().prop_map(|c| c.to_string()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    /// No mention syntax or mass ping left outside tocsin's own `own`.
    fn assert_inert(s: &str, own: &[&str]) {
        let mut rest = s.to_string();
        for o in own {
            rest = rest.replace(o, "");
        }
        static TOKEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"(^|[^\\])(\\\\)*<[@#]").expect("valid regex")
        });
        assert!(!TOKEN.is_match(&rest), "{s:?}");
        assert!(
            !rest.contains("@everyone") && !rest.contains("@here"),
            "{s:?}"
        );
        assert!(!rest.contains('\u{202E}'), "{s:?}");
    }

    fn check(v: &serde_json::Value, own: &[&str], ids: &[&str]) {
        assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]), "{v}");
        assert_eq!(v["allowed_mentions"]["roles"], serde_json::json!([]), "{v}");
        assert_eq!(
            v["allowed_mentions"]["users"],
            serde_json::json!(ids),
            "{v}"
        );
        let mut strings = Vec::new();
        collect(v, &mut strings);
        for s in strings {
            assert_inert(&s, own);
        }
    }

    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| k.as_str() != "allowed_mentions")
                .for_each(|(_, x)| collect(x, out)),
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn alert_text_never_pings(title in hostile(), service in hostile(), change in hostile(), note in hostile()) {
            let c = CardView {
                title: title.clone(),
                service: service.clone(),
                changes: vec![change],
                ..crate::chat::sample_card(Status::Triggered, "<@11>", "<@12>")
            };
            let v = serde_json::to_value(create(&ChatMessage::Card(c))).unwrap();
            check(&v, &["<@11>", "<@12>"], &["11", "12"]);
            let p = PageContent { incident: IncidentId(1), title: title.clone(), severity: Severity::Sev1,
                service, step: 1, round: 1 };
            let v = serde_json::to_value(create(&ChatMessage::Page(p))).unwrap();
            check(&v, &[], &[]);
            use crate::templates::{Markup, Templates};
            let t = Templates::load(None).unwrap();
            let mut ctx = crate::templates::sample_context("resolved.md");
            ctx["note"] = note.into();
            ctx["by"] = "<@13>".into();
            ctx["incident"]["title"] = title.into();
            let out = t.render_for(Markup::Discord, "resolved.md", &ctx).unwrap();
            let v = serde_json::to_value(create(&ChatMessage::Text(out))).unwrap();
            check(&v, &[], &[]);
            let md = markdown(&escape("*a* \\*b*"));
            prop_assert_eq!(md, "\\*a\\* \\\\\\*b\\*");
        }
    }

    #[test]
    fn template_mentions_marked_safe_ping_and_nothing_else() {
        use crate::templates::{Markup, Templates};
        let t = Templates::load(None).unwrap();
        let mut ctx = crate::templates::sample_context("runbook_card.md");
        ctx["steps"][0]["owner_user"] = "<@99>".into();
        let out = t
            .render_for(Markup::Discord, "runbook_card.md", &ctx)
            .unwrap();
        // A JSON string is a value like any other: escaped.
        assert!(out.contains("\\<@99\\>"), "{out}");
        assert_eq!(mentioned_ids(&out), Vec::<u64>::new());
        let safe = minijinja::context! { incident => minijinja::Value::from(minijinja::value::Serde(
            crate::templates::sample_context("acknowledged.md")["incident"].clone())),
        by => Markup::safe("<@7>"), tta => 5 };
        let out = t
            .render_for(Markup::Discord, "acknowledged.md", safe)
            .unwrap();
        assert!(out.contains("*<@7>*"), "{out}");
        assert_eq!(mentioned_ids(&out), vec![7]);
    }
}
