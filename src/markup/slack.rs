//! Slack's escaping: text from alerts and people goes out as text.
//!
//! Slack reads `<...>` as a control sequence (`<!channel>`, `<@U123>`,
//! `<#C1>`, links) and `&` as the start of an entity, so `& < >` are sent
//! as `&amp; &lt; &gt;`. Control characters (but newline and tab) and
//! bidirectional overrides are dropped, so nobody can reorder what a
//! message appears to say. `* _ ~` and backticks stay: mrkdwn has no
//! backslash escape, zero-width joiners would spoil copying and searching,
//! and formatting is cosmetic, while a mention or a link is not.

use super::is_unsafe_char;

/// `text` as Slack shows it literally: `&`, `<`, `>` as entities, control
/// and bidi characters dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if is_unsafe_char(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_arrive_as_text() {
        assert_eq!(
            escape("Disk <!channel> full & <@U999>"),
            "Disk &lt;!channel&gt; full &amp; &lt;@U999&gt;"
        );
        assert_eq!(escape("a\u{202E}b\u{0007}c\nd\te"), "abc\nd\te");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }
}
