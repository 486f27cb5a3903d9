//! Prometheus-style label matchers: `name="v"`, `name!="v"`, `name=~"re"`,
//! `name!~"re"`. Regexes are anchored, as in Prometheus.

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

/// One label matcher: the project's one matcher parser
/// ([`crate::matchers::Matcher`]), kept with the text it was written as.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// The label.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern.
    pub value: String,
    inner: crate::matchers::Matcher,
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
        use crate::matchers::{Matcher, Op};
        let inner = Matcher::parse(text)?;
        let op = match inner.op {
            Op::Equal => MatchOp::Eq,
            Op::NotEqual => MatchOp::Ne,
            Op::Regex => MatchOp::Re,
            Op::NotRegex => MatchOp::NotRe,
        };
        Ok(Self {
            name: inner.name.clone(),
            op,
            value: inner.value.clone(),
            inner,
            source: text.trim().to_string(),
        })
    }

    /// Whether `labels` satisfy it (a missing label counts as empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.inner.matches(labels)
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
