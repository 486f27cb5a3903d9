//! Label matchers in Alertmanager's syntax: `severity=critical`,
//! `team=~"db|storage"`, `env!=staging`, `job!~"test.*"`.
//!
//! As in Alertmanager, a regular expression must match the whole value
//! (it is anchored), a label that is absent has the empty value (so
//! `env!=staging` matches an alert without `env`), and values may be
//! quoted with `"` (escapes `\"`, `\\`, `\n`) or bare. A string wrapped in
//! braces, `{severity="critical", team="db"}`, holds several matchers.

use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One parsed matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: Op,
    /// The value or the regular expression, unquoted.
    pub value: String,
    regex: Option<Regex>,
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// Parses one matcher, or several in braces.
    pub fn parse_all(text: &str) -> Result<Vec<Self>, String> {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("'{text}' opens a brace it does not close"))?;
            return split_outside_quotes(inner)
                .into_iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| Self::parse(&p))
                .collect();
        }
        Ok(vec![Self::parse(t)?])
    }

    /// Parses one matcher.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let at = t.find(['=', '!']).ok_or_else(|| {
            format!(
                "'{text}' has no operator: use name=value, name!=value, name=~regex or name!~regex"
            )
        })?;
        let name = t[..at].trim();
        let rest = &t[at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Equal, v)
        } else {
            return Err(format!(
                "'{text}': '!' must be followed by '=' or '~' (name!=value, name!~regex)"
            ));
        };
        let name = name.trim_matches('"');
        if name.is_empty() {
            return Err(format!(
                "'{text}' does not start with a label name (it names no label before its operator)"
            ));
        }
        let value = unquote(value.trim()).map_err(|why| format!("'{text}': {why}"))?;
        let regex = match op {
            Op::Regex | Op::NotRegex => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    format!(
                        "'{text}': bad regex, it does not parse: {}",
                        e.to_string().lines().last().unwrap_or("invalid")
                    )
                })?)
            }
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether `labels` satisfy it (an absent label is empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(r)) => r.is_match(v),
            (Op::NotRegex, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

/// Parses every string of a list; the first problem, naming the string.
pub fn parse_list(items: &[String]) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for i in items {
        out.extend(Matcher::parse_all(i)?);
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(body) = v.strip_prefix('"') else {
        if v.contains('"') {
            return Err("a value with a quote must be quoted whole, like \"a\\\"b\"".into());
        }
        return Ok(v.to_string());
    };
    let mut out = String::new();
    let mut chars = body.chars();
    loop {
        match chars.next() {
            None => {
                return Err("the quoted value is not closed (its closing quote is missing)".into());
            }
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Regexes keep their own escapes: `\d`, `\.`.
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("the quoted value ends in a backslash".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!(
            "unexpected '{}' after the quoted value",
            chars.as_str().trim()
        ));
    }
    Ok(out)
}

fn split_outside_quotes(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            parts.push(String::new());
            continue;
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn alertmanager_forms_parse_and_match() {
        let l = labels(&[("severity", "critical"), ("team", "storage")]);
        for (m, want) in [
            ("severity=critical", true),
            ("severity = \"critical\"", true),
            ("severity!=critical", false),
            ("team=~\"db|storage\"", true),
            ("team=~db", false),
            ("team=~stor", false),
            ("team!~\"db.*\"", true),
            ("env!=staging", true),
            ("env=\"\"", true),
            ("env=~\".+\"", false),
        ] {
            let parsed = Matcher::parse(m).unwrap();
            assert_eq!(parsed.matches(&l), want, "{m}");
        }
        let all = Matcher::parse_all("{severity=\"critical\", team=~\"db|sto,rage\"}").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].value, "db|sto,rage");
        let q = Matcher::parse(r#"msg="say \"hi\"\n""#).unwrap();
        assert_eq!(q.value, "say \"hi\"\n");
        let re = Matcher::parse(r#"host=~"db\d+\.example""#).unwrap();
        assert!(re.matches(&labels(&[("host", "db12.example")])));
    }

    #[test]
    fn bad_matchers_say_what_is_wrong() {
        for (m, why) in [
            ("severity", "no operator"),
            ("=critical", "names no label"),
            ("a!b", "must be followed"),
            ("a=\"open", "not closed"),
            ("a=~\"(\"", "does not parse"),
            ("a=\"x\" y", "unexpected"),
            ("{a=b", "does not close"),
        ] {
            let e = Matcher::parse_all(m).unwrap_err();
            assert!(e.contains(why), "{m}: {e}");
        }
    }
}
