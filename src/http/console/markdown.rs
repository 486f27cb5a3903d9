//! HTML escaping, and a Markdown subset for the post-incident summary:
//! headings, paragraphs, lists (with `[x]` check boxes), pipe tables,
//! fenced code, `code`, `**bold**` and `*emphasis*`. Every character of
//! the source is escaped first, so no tag or attribute in an incident's
//! title, alert or note reaches the page; links are not made at all.

pub use crate::markup::html::escape;

/// Inline markup of one escaped line: `code`, then `**bold**`, `*em*`.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::new();
    // Code spans first, so their content is not read as emphasis.
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(&emphasis(part));
        }
    }
    // An unpaired backtick was split off as a code span: acceptable for a
    // summary, and still escaped.
    out
}

fn emphasis(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split("**").enumerate() {
        if i % 2 == 1 && !part.is_empty() {
            out.push_str("<strong>");
            out.push_str(part);
            out.push_str("</strong>");
        } else {
            let mut rest = part;
            // `*x*` with no space inside the stars.
            while let Some(start) = rest.find('*') {
                let after = &rest[start + 1..];
                match after.find('*') {
                    Some(end)
                        if end > 0 && !after.starts_with(' ') && !after[..end].ends_with(' ') =>
                    {
                        out.push_str(&rest[..start]);
                        out.push_str("<em>");
                        out.push_str(&after[..end]);
                        out.push_str("</em>");
                        rest = &after[end + 1..];
                    }
                    _ => {
                        out.push_str(&rest[..=start]);
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
        }
    }
    out
}

fn table_cells(line: &str) -> Vec<&str> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(str::trim).collect()
}

fn is_rule(line: &str) -> bool {
    let cells = table_cells(line);
    !cells.is_empty()
        && cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
}

/// The Markdown subset as HTML.
pub fn render(md: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, out: &mut String| {
        if !para.is_empty() {
            out.push_str("<p>");
            out.push_str(&para.iter().map(|l| inline(l)).collect::<Vec<_>>().join(" "));
            out.push_str("</p>\n");
            para.clear();
        }
    };
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if trimmed.is_empty() {
            flush(&mut para, &mut out);
            i += 1;
        } else if trimmed.starts_with("```") {
            flush(&mut para, &mut out);
            i += 1;
            out.push_str("<pre><code>");
            while i < lines.len() && !lines[i].trim().starts_with("```") {
                out.push_str(&escape(lines[i]));
                out.push('\n');
                i += 1;
            }
            out.push_str("</code></pre>\n");
            i += 1;
        } else if let Some((level, text)) = heading(trimmed) {
            flush(&mut para, &mut out);
            out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            i += 1;
        } else if trimmed.starts_with('|') && i + 1 < lines.len() && is_rule(lines[i + 1]) {
            flush(&mut para, &mut out);
            out.push_str("<table>\n<thead><tr>");
            for c in table_cells(trimmed) {
                out.push_str(&format!("<th>{}</th>", inline(c)));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                out.push_str("<tr>");
                for c in table_cells(lines[i]) {
                    out.push_str(&format!("<td>{}</td>", inline(c)));
                }
                out.push_str("</tr>\n");
                i += 1;
            }
            out.push_str("</tbody>\n</table>\n");
        } else if list_item(trimmed).is_some() {
            flush(&mut para, &mut out);
            out.push_str("<ul>\n");
            while i < lines.len() {
                let Some(item) = list_item(lines[i].trim()) else {
                    break;
                };
                let (mark, text) = match item.get(..4) {
                    Some("[x] ") => ("<span class=\"done\">&#x2611;</span> ", &item[4..]),
                    Some("[~] ") => ("<span class=\"skipped\">&#x2612;</span> ", &item[4..]),
                    Some("[ ] ") => ("<span class=\"todo\">&#x2610;</span> ", &item[4..]),
                    _ => ("", item),
                };
                out.push_str(&format!("<li>{mark}{}</li>\n", inline(text)));
                i += 1;
            }
            out.push_str("</ul>\n");
        } else {
            para.push(trimmed);
            i += 1;
        }
    }
    flush(&mut para, &mut out);
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&level) {
        line[level..].strip_prefix(' ').map(|t| (level, t.trim()))
    } else {
        None
    }
}

fn list_item(line: &str) -> Option<&str> {
    line.strip_prefix("- ").or_else(|| line.strip_prefix("* "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let md = "# <script>alert(1)</script>\n\n| a | b |\n| --- | --- |\n| <img src=x onerror=alert(1)> | \"q\" |\n\n- `<b>` and **<i>**\n\n```\n</pre><script>\n```\n";
        let html = render(md);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(html.contains("<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>"));
        assert!(html.contains("<td>&lt;img src=x onerror=alert(1)&gt;</td>"));
        assert!(html.contains("<code>&lt;b&gt;</code>"));
        assert!(html.contains("<strong>&lt;i&gt;</strong>"));
    }

    #[test]
    fn the_subset_renders() {
        let html = render(
            "## Runbook\n\n*Disk full* (`disk`): 1 done.\n\n- [x] contain / `a`: did it\n- [ ] recover / `b`: not yet\n\nplain\ntext\n",
        );
        assert_eq!(
            html,
            "<h2>Runbook</h2>\n<p><em>Disk full</em> (<code>disk</code>): 1 done.</p>\n<ul>\n<li><span class=\"done\">&#x2611;</span> contain / <code>a</code>: did it</li>\n<li><span class=\"todo\">&#x2610;</span> recover / <code>b</code>: not yet</li>\n</ul>\n<p>plain text</p>\n"
        );
        assert_eq!(render("a * b * c"), "<p>a * b * c</p>\n");
    }
}
