//! Discord's escaping: text from alerts and people goes out as text.
//!
//! Markdown specials get a backslash (Discord drops a backslash before any
//! punctuation), `<` too so `<@123>`, `<@&123>` and `<#123>` are no
//! mention syntax, `@everyone` and `@here` get a zero-width space after
//! the `@`, and control and bidi characters are dropped.

use super::is_unsafe_char;

/// `text` as Discord shows it literally.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut line_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_unsafe_char(c) {
            continue;
        }
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '-' | '+' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '@' => {
                out.push('@');
                let rest: String = chars.clone().take(8).collect();
                let lower = rest.to_ascii_lowercase();
                if lower.starts_with("everyone") || lower.starts_with("here") {
                    out.push('\u{200B}');
                }
            }
            c => out.push(c),
        }
        if c == '\n' {
            line_start = true;
        } else if !(line_start && (c == ' ' || c == '\t')) {
            line_start = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_markdown_arrive_as_text() {
        assert_eq!(
            escape("Disk <@123> *full* @everyone @here"),
            "Disk \\<@123\\> \\*full\\* @\u{200B}everyone @\u{200B}here"
        );
        assert_eq!(escape("# h\n- item\na-b"), "\\# h\n\\- item\na-b");
        assert_eq!(escape("a\u{202E}b\u{0000}c"), "abc");
        assert_eq!(
            escape("`x` | [l](u) ~s~ _i_ \\"),
            "\\`x\\` \\| \\[l\\]\\(u\\) \\~s\\~ \\_i\\_ \\\\"
        );
    }
}
