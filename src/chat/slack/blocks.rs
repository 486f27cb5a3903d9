//! Block Kit for the incident card, pages and plain text.

use super::escape;
use crate::chat::{Button, CardView, ChatMessage, SummaryPost, is_unsafe_char};
use crate::incident::{Severity, Status};
use crate::notify::PageContent;
use serde_json::{Value, json};

// Block Kit's limits: Slack answers `invalid_blocks` past the per-block
// ones and `msg_blocks_too_long` past about 12,000 characters of block
// text in one message. Messages are built within them, never refused.

/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// A section's text.
pub const SECTION_MAX: usize = 3000;
/// A section field's text.
pub const FIELD_MAX: usize = 2000;
/// A header's plain text.
pub const HEADER_MAX: usize = 150;
/// The top-level fallback `text` (Slack truncates it beyond).
pub const FALLBACK_MAX: usize = 4000;
/// All block text of one message: under Slack's ~12,000, with room.
pub const BLOCK_TEXT_MAX: usize = 11_000;

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
        ChatMessage::Card(c) => (fallback(&escape(&c.headline())), card(c)),
        ChatMessage::Page(p) => (
            fallback(&format!("You are paged: {}", escape(&p.headline()))),
            page(p),
        ),
        ChatMessage::Text(t) => (fallback(t), text(t)),
        ChatMessage::Summary(p) => (fallback(&p.text), text(&p.text)),
    }
}

/// Whether `t` goes out as blocks whole, nothing cut.
pub fn fits(t: &str) -> bool {
    !text_cut(t, 0).1
}

/// The longest `initial_comment` of a summary's file share: a short card.
pub const SUMMARY_COMMENT_MAX: usize = 3000;

/// The short card a long summary's file is shared with (its
/// `initial_comment`, mrkdwn): the key figures and the first lines, the
/// values escaped.
pub fn summary_comment(p: &SummaryPost) -> String {
    let mut out = format!(
        ":memo: *Summary of {}*: {}\n",
        p.id,
        truncate(&escape(&p.title), 200)
    );
    let figures: Vec<String> = p
        .figures()
        .into_iter()
        .map(|(name, value, _)| format!("*{name}:* {}", truncate(&escape(&value), 200)))
        .collect();
    out.push_str(&figures.join(" · "));
    if !p.first_lines.is_empty() {
        out.push_str("\n*First lines*");
        for l in &p.first_lines {
            out.push_str("\n• ");
            out.push_str(&truncate(&escape(l), 300));
        }
    }
    out.push_str(&format!(
        "\n_The whole summary is the attached file `{}`._",
        p.filename()
    ));
    truncate(&out, SUMMARY_COMMENT_MAX)
}

/// A message's top-level fallback `text`, within Slack's limit.
pub fn fallback(t: &str) -> String {
    truncate(t, FALLBACK_MAX)
}

/// A fresh number for each card rendered: Slack asks for new block ids
/// when a message is updated. It starts at random, so ids after a restart
/// do not repeat those before it.
fn render_seq() -> u64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: OnceLock<AtomicU64> = OnceLock::new();
    SEQ.get_or_init(|| AtomicU64::new(u64::from(rand::random::<u32>())))
        .fetch_add(1, Ordering::Relaxed)
}

/// The incident card; its actions block gets a fresh `block_id`.
pub fn card(c: &CardView) -> Value {
    card_rendered(c, render_seq())
}

/// The incident card, its actions block `tocsin_card_{n}_{render}`.
fn card_rendered(c: &CardView, render: u64) -> Value {
    let id = c.id.to_string();
    // The header is plain text: `&<>` need no entities there.
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
            "text": truncate(&format!("{} {}: {}", severity_icon(c.severity), id, escape(&c.title)), HEADER_MAX)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Severity*\n{}", c.severity)},
            {"type": "mrkdwn", "text": format!("*Status*\n{}", status_word(c.status))},
            {"type": "mrkdwn", "text": truncate(&format!("*Service*\n{}", escape(&c.service)), 500)},
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
    if let Some(f) = &c.flapping {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!(":repeat: *{}*: paged once, pages again only if it stays firing", escape(f))}]}));
    }
    if !c.changes.is_empty() {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            &format!("*Recent changes*\n{}", c.changes.iter().map(|l| escape(l)).collect::<Vec<_>>().join("\n")), SECTION_MAX)}}),
        );
    }
    if let Some(m) = &c.maintenance {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&format!("🔧 {}", escape(m)), SECTION_MAX)}]}));
    }
    if !c.buttons.is_empty() {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("tocsin_card_{}_{render}", c.id.0),
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
                // A step id from a runbook file: no bidi or control
                // characters in the label either.
                let arg: String = arg.chars().filter(|c| !is_unsafe_char(*c)).collect();
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

/// Plain Markdown, split into sections of at most 3,000 characters, at
/// most [`MAX_BLOCKS`] of them and [`BLOCK_TEXT_MAX`] characters in all.
pub fn text(t: &str) -> Value {
    text_leaving(t, 0)
}

/// [`text`], leaving room for `reserve` more blocks (a reply's buttons).
/// Text beyond the limits is cut with `…` and a last line saying where
/// the whole is: for an incident's summary (its first line names `INC-n`)
/// the API path and the CLI command.
pub fn text_leaving(t: &str, reserve: usize) -> Value {
    text_cut(t, reserve).0
}

/// [`text_leaving`], and whether the text was cut.
fn text_cut(t: &str, reserve: usize) -> (Value, bool) {
    let note = cut_note(t);
    let max_blocks = MAX_BLOCKS.saturating_sub(reserve).max(2);
    // Room for the `…` and the note, should the text be cut.
    let budget = BLOCK_TEXT_MAX - note.chars().count() - 2;
    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    let mut total = 0;
    let mut cut = false;
    for line in t.lines() {
        let line = truncate(line, SECTION_MAX);
        let len = line.chars().count();
        let sep = usize::from(!current.is_empty());
        if total + sep + len > budget {
            // What fits of the line still goes.
            let room = budget.saturating_sub(total + sep);
            if room > 20 && current_len + sep + room <= SECTION_MAX {
                if sep == 1 {
                    current.push('\n');
                }
                current.push_str(&truncate(&line, room));
                current_len += sep + room;
            }
            cut = true;
            break;
        }
        if current_len + sep + len > SECTION_MAX {
            // This section, the next, and a note must still fit.
            if sections.len() + 3 > max_blocks {
                cut = true;
                break;
            }
            sections.push(std::mem::take(&mut current));
            current_len = 0;
        } else if sep == 1 {
            current.push('\n');
            current_len += 1;
            total += 1;
        }
        current.push_str(&line);
        current_len += len;
        total += len;
    }
    if cut {
        if current.is_empty() {
            current.push('…');
        } else if !current.ends_with('…') {
            if current_len + 2 <= SECTION_MAX {
                current.push_str("\n…");
            } else {
                current = truncate(&format!("{current}…"), SECTION_MAX);
            }
        }
    }
    if !current.is_empty() || sections.is_empty() {
        sections.push(if current.is_empty() {
            " ".to_string()
        } else {
            current
        });
    }
    if cut {
        sections.push(note);
    }
    let blocks = Value::Array(
        sections
            .into_iter()
            .map(|s| json!({"type": "section", "text": {"type": "mrkdwn", "text": s}}))
            .collect(),
    );
    (blocks, cut)
}

/// The last line of a cut message.
fn cut_note(t: &str) -> String {
    match summary_of(t) {
        Some(id) => format!(
            "_The summary is cut to fit Slack. The full summary: `GET /v1/incidents/{id}/summary` or `tocsin incidents summary {id}`._"
        ),
        None => "_The message is cut to fit Slack._".to_string(),
    }
}

/// The `INC-n` an incident summary's heading (its first line) names.
fn summary_of(t: &str) -> Option<&str> {
    let first = t.lines().next()?;
    if !first.starts_with('#') {
        return None;
    }
    let start = first.find("INC-")?;
    let digits = first[start + 4..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(first.len() - start - 4);
    (digits > 0).then(|| &first[start..start + 4 + digits])
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
        insta::assert_json_snapshot!(card_rendered(&view(Status::Triggered), 1));
    }

    #[test]
    fn card_resolved_has_no_buttons() {
        insta::assert_json_snapshot!(card_rendered(&view(Status::Resolved), 1));
    }

    #[test]
    fn card_says_it_is_flapping() {
        let c = CardView {
            flapping: Some("flapping: 5 changes in 30m".into()),
            ..view(Status::Triggered)
        };
        let text = card(&c).to_string();
        assert!(
            text.contains("*flapping: 5 changes in 30m*: paged once"),
            "{text}"
        );
        assert!(
            !card(&view(Status::Triggered))
                .to_string()
                .contains("flapping")
        );
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

    /// Why Slack would refuse these blocks and this fallback, if it would.
    pub(crate) fn over_limits(fallback: &str, blocks: &Value) -> Option<String> {
        let n = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        if fallback.chars().count() > FALLBACK_MAX {
            return Some(format!("fallback of {}", fallback.chars().count()));
        }
        let list = blocks.as_array()?;
        if list.len() > MAX_BLOCKS {
            return Some(format!("{} blocks", list.len()));
        }
        let mut total = 0;
        let mut ids = std::collections::HashSet::new();
        for b in list {
            if let Some(id) = b["block_id"].as_str()
                && !ids.insert(id)
            {
                return Some(format!("block_id {id} twice"));
            }
            let t = n(&b["text"]["text"]);
            total += t;
            let max = if b["type"] == "header" {
                HEADER_MAX
            } else {
                SECTION_MAX
            };
            if t > max {
                return Some(format!("a {} of {t}", b["type"]));
            }
            for f in b["fields"].as_array().into_iter().flatten() {
                if n(&f["text"]) > FIELD_MAX {
                    return Some(format!("a field of {}", n(&f["text"])));
                }
                total += n(&f["text"]);
            }
        }
        (total > BLOCK_TEXT_MAX).then(|| format!("{total} characters of block text"))
    }

    #[test]
    fn a_900_alert_summary_is_cut_within_the_limits_and_says_where_the_rest_is() {
        let mut md = String::from("# INC-77: Nodes down\n\n## Timeline\n\n");
        for i in 0..900 {
            md.push_str(&format!(
                "- 2026-12-01 10:00:00 UTC alertmanager: NodeDown node-{i:04}:9100 is down (ip-10-0-3-{i}.eu-west-1.compute.internal)\n"
            ));
        }
        assert!(md.chars().count() > 60_000);
        let (fallback, blocks) = render(&ChatMessage::Text(md));
        assert_eq!(over_limits(&fallback, &blocks), None);
        let list = blocks.as_array().unwrap();
        let last = list.last().unwrap()["text"]["text"].as_str().unwrap();
        assert!(
            last.contains("`GET /v1/incidents/INC-77/summary`")
                && last.contains("`tocsin incidents summary INC-77`"),
            "{last}"
        );
        let before = list[list.len() - 2]["text"]["text"].as_str().unwrap();
        assert!(before.ends_with('…'), "{before}");
        assert!(before.contains("node-0000") || list[0].to_string().contains("node-0000"));
    }

    #[test]
    fn a_long_summary_does_not_fit_and_its_card_carries_the_figures_as_text() {
        let text: String = (0..900)
            .map(|i| format!("- 10:00:00 alertmanager: node-{i:04} is down\n"))
            .collect();
        assert!(!fits(&text));
        assert!(fits("# INC-1: short\n\nall good"));
        let p = SummaryPost {
            id: IncidentId(3),
            title: "<!channel> db down".into(),
            status: "resolved".into(),
            duration_seconds: Some(3780),
            alerts: 900,
            events: 1800,
            acknowledged_by: Some("user:alice".into()),
            resolved_by: Some("<@U1>".into()),
            first_lines: vec!["10:00:00 alertmanager: a & b".into()],
            text: text.clone(),
            markdown: text,
        };
        let c = summary_comment(&p);
        assert!(c.chars().count() <= SUMMARY_COMMENT_MAX);
        assert!(
            c.starts_with(":memo: *Summary of INC-3*: &lt;!channel&gt; db down\n"),
            "{c}"
        );
        for want in [
            "*Status:* resolved",
            "*Duration:* 1h 3m",
            "*Alerts:* 900 alert(s), 1800 event(s)",
            "*Acknowledged by:* user:alice",
            "*Resolved by:* &lt;@U1&gt;",
            "• 10:00:00 alertmanager: a &amp; b",
            "`summary-INC-3.md`",
        ] {
            assert!(c.contains(want), "{want}: {c}");
        }
    }

    #[test]
    fn short_text_is_not_cut_and_cards_get_fresh_block_ids() {
        let v = text("hello\nworld");
        assert_eq!(
            v,
            json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hello\nworld"}}])
        );
        let id = |v: &Value| v.as_array().unwrap().last().unwrap()["block_id"].clone();
        let c = view(Status::Triggered);
        let (a, b) = (card(&c), card(&c));
        assert_ne!(id(&a), id(&b));
        assert!(id(&a).as_str().unwrap().starts_with("tocsin_card_42_"));
        assert_eq!(summary_of("# [DRILL] INC-9: x"), Some("INC-9"));
        assert_eq!(summary_of("see INC-9"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_is_built_within_slacks_limits(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => "[a-z &<>]{0,80}",
                    1 => "[a-zé€😀&]{0,3500}",
                    1 => proptest::strategy::Just(String::new()),
                ],
                0..150,
            ),
            heading in proptest::bool::ANY,
            reserve in 0usize..3,
        ) {
            let mut t = lines.join("\n");
            if heading {
                t = format!("# INC-5: title\n{t}");
            }
            let blocks = text_leaving(&t, reserve);
            let (fallback, _) = render(&ChatMessage::Text(t.clone()));
            proptest::prop_assert_eq!(over_limits(&fallback, &blocks), None);
            proptest::prop_assert!(blocks.as_array().unwrap().len() + reserve <= MAX_BLOCKS);
            let parsed: Vec<slack_morphism::prelude::SlackBlock> =
                serde_json::from_value(blocks.clone()).unwrap();
            proptest::prop_assert_eq!(parsed.len(), blocks.as_array().unwrap().len());
            // Uncut text keeps every line (blank lines between sections aside).
            if t.chars().count() < 9000 && t.lines().all(|l| l.chars().count() <= SECTION_MAX) {
                let kept: Vec<String> = blocks.as_array().unwrap().iter()
                    .flat_map(|b| b["text"]["text"].as_str().unwrap().lines().map(str::to_string).collect::<Vec<_>>())
                    .filter(|l| !l.trim().is_empty())
                    .collect();
                let given: Vec<&str> = t.lines().filter(|l| !l.trim().is_empty()).collect();
                proptest::prop_assert_eq!(kept, given);
            }
        }

        #[test]
        fn any_card_is_built_within_slacks_limits(title in ".{0,400}", service in "[a-z&]{0,3000}", change in "[a-z&<]{0,4000}") {
            let c = CardView {
                title,
                service,
                changes: vec![change; 3],
                ..view(Status::Triggered)
            };
            let (fallback, blocks) = render(&ChatMessage::Card(c));
            proptest::prop_assert_eq!(over_limits(&fallback, &blocks), None);
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
