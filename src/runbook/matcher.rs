//! Prometheus-style label matchers: `name="v"`, `name!="v"`, `name=~"re"`,
//! `name!~"re"`. Regexes are anchored, as in Prometheus.

use regex::Regex;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// The comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// The label.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern.
    pub value: String,
    regex: Option<Regex>,
    source: String,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for LabelMatcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl LabelMatcher {
    /// Parses one matcher.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let name = &t[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("'{text}' does not start with a label name"));
        }
        let rest = &t[name_end..];
        let (op, raw) = if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(format!(
                "'{text}' needs one of =, !=, =~, !~ after '{name}'"
            ));
        };
        let raw = raw.trim();
        let value = match raw.strip_prefix('"') {
            Some(inner) => inner
                .strip_suffix('"')
                .ok_or_else(|| format!("'{text}': the value's closing quote is missing"))?
                .replace("\\\"", "\""),
            None => raw.to_string(),
        };
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    format!(
                        "'{text}': bad regex: {}",
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
            source: t.to_string(),
        })
    }

    /// Whether `labels` satisfy it (a missing label counts as empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => self.regex.as_ref().is_some_and(|r| !r.is_match(v)),
        }
    }
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
    fn the_four_operators() {
        let l = labels(&[("alertname", "HighErrorRate"), ("env", "prod")]);
        assert!(LabelMatcher::parse(r#"env="prod""#).unwrap().matches(&l));
        assert!(LabelMatcher::parse("env=prod").unwrap().matches(&l));
        assert!(!LabelMatcher::parse(r#"env!="prod""#).unwrap().matches(&l));
        assert!(
            LabelMatcher::parse(r#"alertname=~"(?i).*error.*""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            !LabelMatcher::parse(r#"alertname=~"Error""#)
                .unwrap()
                .matches(&l),
            "anchored"
        );
        assert!(LabelMatcher::parse(r#"team!~"db.*""#).unwrap().matches(&l));
    }

    #[test]
    fn bad_matchers_say_why() {
        assert!(
            LabelMatcher::parse("=x")
                .unwrap_err()
                .contains("label name")
        );
        assert!(LabelMatcher::parse("env>prod").unwrap_err().contains("=~"));
        assert!(
            LabelMatcher::parse(r#"a=~"(""#)
                .unwrap_err()
                .contains("bad regex")
        );
        assert!(
            LabelMatcher::parse(r#"a="x"#)
                .unwrap_err()
                .contains("closing quote")
        );
    }
}
