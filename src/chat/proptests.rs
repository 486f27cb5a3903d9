//! Whatever text alerts, people, runbooks and the config put into a
//! message, every user-facing template rendered for a platform and built
//! into that platform's message carries it as text: no mention, channel or
//! mass-ping token tocsin did not write, no control or bidi character.
//! (The card and page builders have their own properties, next to them.)

use super::{ChatMessage, is_unsafe_char};
use crate::templates::{Markup, NAMES, Templates, sample_context};
use proptest::prelude::*;
use serde_json::Value;

/// Text biased towards what breaks chat messages.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<!channel>".to_string()),
        Just("<!here>".to_string()),
        Just("<@U123>".to_string()),
        Just("<#C1>".to_string()),
        Just("<@&5>".to_string()),
        Just("<https://evil.example|click>".to_string()),
        Just("@everyone".to_string()),
        Just("@here".to_string()),
        Just("&lt;".to_string()),
        Just("*".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        Just("\u{202E}".to_string()),
        Just("\u{2066}".to_string()),
        Just("\u{0007}".to_string()),
        Just("\n".to_string()),
        "[a-z <>&!@#|]{0,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

/// Replaces every string in a template context (but timestamps, which
/// filters parse) with the next of `pool`.
fn poison(v: &mut Value, pool: &[String], i: &mut usize) {
    match v {
        Value::String(s) => {
            *s = pool[*i % pool.len()].clone();
            *i += 1;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| poison(x, pool, i)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !k.ends_with("_at") && k != "at" {
                    poison(x, pool, i);
                }
            }
        }
        _ => {}
    }
}

/// Every string in a built message.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Discord Markdown outside code spans (where Discord reads no mentions):
/// a backslash outside a span escapes the next character, a backtick opens
/// or closes a span.
fn outside_code(text: &str) -> String {
    let mut out = String::new();
    let (mut in_code, mut chars) = (false, text.chars());
    while let Some(c) = chars.next() {
        match (in_code, c) {
            (false, '\\') => {
                out.push(c);
                out.extend(chars.next());
            }
            (_, '`') => in_code = !in_code,
            (false, c) => out.push(c),
            (true, _) => {}
        }
    }
    out
}

fn assert_inert(platform: &str, template: &str, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !text.chars().any(is_unsafe_char),
        "{platform} {template}: {text:?}"
    );
    // Discord shows a backslash-escaped `\<` as text; Slack has no
    // backslash escape, so any `<` there would be markup.
    static DISCORD_TOKEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(^|[^\\])(\\\\)*<[@#!h]").expect("valid regex")
    });
    let formed = match platform {
        "discord" => DISCORD_TOKEN.is_match(&outside_code(text)),
        _ => ["<!", "<@", "<#", "<http"].iter().any(|t| text.contains(t)),
    };
    prop_assert!(!formed, "{platform} {template}: {text:?}");
    // On Slack only `<!here>` pings (tocsin never sets link_names), so a
    // literal `@here` is text; on Discord allowed_mentions is empty too,
    // and the escaping breaks the word besides.
    if platform == "discord" {
        let outside = outside_code(text);
        prop_assert!(
            !outside.contains("@everyone") && !outside.contains("@here"),
            "{template}: {text:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_template_on_every_platform_carries_text_as_text(
        pool in prop::collection::vec(hostile(), 1..6),
    ) {
        let t = Templates::load(None).unwrap();
        for name in NAMES {
            let mut ctx = sample_context(name);
            poison(&mut ctx, &pool, &mut 0);
            for platform in ["slack", "discord"] {
                let out = t
                    .render_for(Markup::of_platform(platform), name, &ctx)
                    .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                let message = ChatMessage::Text(out);
                let mut all = Vec::new();
                if platform == "slack" {
                    let (fallback, blocks) = super::slack::blocks::render(&message);
                    all.push(fallback);
                    strings(&blocks, &mut all);
                } else {
                    let v = serde_json::to_value(super::discord::embeds::create(&message)).unwrap();
                    prop_assert_eq!(&v["allowed_mentions"]["parse"], &serde_json::json!([]));
                    strings(&v, &mut all);
                }
                for s in &all {
                    assert_inert(platform, name, s)?;
                }
            }
        }
    }
}
