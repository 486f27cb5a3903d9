//! Alert intake: one pure parser per source, from request bytes to
//! normalised [`AlertEvent`]s.
//!
//! Parsers take `now` (Prometheus tells firing from resolved by comparing
//! `endsAt` with the present) and do no I/O. Grouping rules:
//!
//! - PagerDuty Events v2 and generic: the incident is the `dedup_key`; the
//!   alert inside it is the same key.
//! - Alertmanager webhook and Grafana unified alerting: the incident is the
//!   notification group (`groupKey`); each alert in it is keyed by its
//!   `fingerprint`, and the incident resolves when all of them have.
//! - Prometheus `/api/v2/alerts`: the incident is the `alertname`, each
//!   series (label set) an alert in it.
//! - Grafana legacy: the incident is the rule.

pub mod alertmanager;
pub mod generic;
pub mod grafana;
pub mod pagerduty;
pub mod prometheus;
pub mod time;

pub use crate::incident::{AlertAction, AlertEvent, AlertLink};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Longest accepted dedup key, as PagerDuty's.
pub const MAX_DEDUP_KEY: usize = 255;
/// Longest accepted summary, as PagerDuty's.
pub const MAX_SUMMARY: usize = 1024;

/// What a parser made of one request: its events, and the fields it did not
/// know (kept in the events' details, counted, never a refusal).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The events, in order.
    pub events: Vec<AlertEvent>,
    /// Paths of the fields this parser does not know (`description`,
    /// `alerts[0].UpdatedAt`), at most [`MAX_REPORTED_UNKNOWN`].
    pub unknown_fields: Vec<String>,
}

/// How many unknown field names a parse reports (a sender with a new field
/// in each of 10,000 alerts says the same thing 10,000 times).
pub const MAX_REPORTED_UNKNOWN: usize = 20;

/// Notes unknown fields `extra` found at `path` (`""` for the top level).
pub(crate) fn note_unknown(
    unknown: &mut Vec<String>,
    path: &str,
    extra: &BTreeMap<String, serde_json::Value>,
) {
    for k in extra.keys() {
        if unknown.len() >= MAX_REPORTED_UNKNOWN {
            return;
        }
        let name = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if !unknown.contains(&name) {
            unknown.push(name);
        }
    }
}

/// `null` (or absent, with `#[serde(default)]`) as the type's default: senders
/// write `"links": null` for an empty list (Kapacitor, Go's nil slices).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A label map that also takes `null`, and numbers or booleans as values
/// (written as text); `null` values are dropped.
pub(crate) fn labels<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde_json::Value;
    let raw = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Null => {}
            Value::Number(_) | Value::Bool(_) => {
                out.insert(k, v.to_string());
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "label '{k}' must be a string, not {}",
                    json_kind(&other)
                )));
            }
        }
    }
    Ok(out)
}

/// `string`, `number`, ... for messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a payload was refused. Each message names the field concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// The body is not the JSON we expect (syntax, types, unknown keys).
    #[error("{0}")]
    Malformed(String),
    /// The JSON is well formed but fields are invalid; one message per field.
    #[error("invalid event: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl IntakeError {
    /// The individual problems, one per entry.
    pub fn messages(&self) -> Vec<String> {
        match self {
            Self::Malformed(m) => vec![m.clone()],
            Self::Invalid(v) => v.clone(),
        }
    }
}

/// Parses JSON with a message that says where it went wrong.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, IntakeError> {
    parse_json_seed(body, std::marker::PhantomData::<T>)
}

/// [`parse_json`] with a seed: for visitors that check or hand on the
/// elements of a large array one at a time instead of keeping them.
pub(crate) fn parse_json_seed<'a, S: serde::de::DeserializeSeed<'a>>(
    body: &'a [u8],
    seed: S,
) -> Result<S::Value, IntakeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|v| de.end().map(|()| v));
    result.map_err(|inner| {
        let path = track.path().to_string();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." {
            format!("invalid JSON body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        IntakeError::Malformed(what)
    })
}

/// Reads a JSON array one element at a time, calling `f(index, element)`
/// and keeping nothing; its value is the number of elements. An error from
/// `f` stops the read.
pub(crate) struct Each<T, F>(F, std::marker::PhantomData<T>);

impl<T, F> Each<T, F> {
    pub(crate) fn new(f: F) -> Self {
        Self(f, std::marker::PhantomData)
    }
}

impl<'de, T, F> serde::de::DeserializeSeed<'de> for Each<T, F>
where
    T: Deserialize<'de>,
    F: FnMut(usize, T) -> Result<(), String>,
{
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, F> serde::de::Visitor<'de> for Each<T, F>
where
    T: Deserialize<'de>,
    F: FnMut(usize, T) -> Result<(), String>,
{
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<T>()? {
            (self.0)(i, item).map_err(serde::de::Error::custom)?;
            i += 1;
        }
        Ok(i)
    }
}

/// Problems found in a request, at most [`MAX_REPORTED_ERRORS`] of them
/// named (a body of 100,000 bad alerts says so in a few lines).
#[derive(Debug, Default)]
pub(crate) struct Problems {
    named: Vec<String>,
    more: usize,
}

/// How many problems one refusal names.
pub const MAX_REPORTED_ERRORS: usize = 20;

impl Problems {
    pub(crate) fn push(&mut self, p: String) {
        if self.named.len() < MAX_REPORTED_ERRORS {
            self.named.push(p);
        } else {
            self.more += 1;
        }
    }

    pub(crate) fn into_result(self) -> Result<(), IntakeError> {
        if self.named.is_empty() {
            return Ok(());
        }
        let mut all = self.named;
        if self.more > 0 {
            all.push(format!("... and {} more like these", self.more));
        }
        Err(IntakeError::Invalid(all))
    }
}

/// Where a checked request's events go, one at a time; an error stops it.
pub type Sink<'a> = dyn FnMut(AlertEvent) -> Result<(), String> + 'a;

/// A request that was read through and found valid, whose events can now
/// be produced one at a time (so a 16 MiB body of small alerts never sits
/// in memory as 100,000 events at once).
pub trait Checked: Send {
    /// Fields the sender sent that tocsin does not know.
    fn unknown_fields(&self) -> &[String];
    /// Produces the events, in order, from the same body.
    fn stream(self: Box<Self>, body: &[u8], sink: &mut Sink<'_>) -> Result<(), IntakeError>;
}

impl Checked for Parsed {
    fn unknown_fields(&self) -> &[String] {
        &self.unknown_fields
    }

    fn stream(self: Box<Self>, _body: &[u8], sink: &mut Sink<'_>) -> Result<(), IntakeError> {
        for e in self.events {
            sink(e).map_err(IntakeError::Malformed)?;
        }
        Ok(())
    }
}

/// Checks a request and collects all its events (tests, small bodies).
pub fn collect(checked: Box<dyn Checked>, body: &[u8]) -> Result<Parsed, IntakeError> {
    let unknown_fields = checked.unknown_fields().to_vec();
    let mut events = Vec::new();
    checked.stream(body, &mut |e| {
        events.push(e);
        Ok(())
    })?;
    Ok(Parsed {
        events,
        unknown_fields,
    })
}

/// A stable short fingerprint of a label set (sorted by name).
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    hex::encode(&h.finalize()[..8])
}

/// A dedup key no longer than [`MAX_DEDUP_KEY`]: long keys (Alertmanager
/// group keys can be) are replaced by a hash of themselves.
pub fn bounded_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    if key.len() <= MAX_DEDUP_KEY {
        key.to_string()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// Truncates to at most `max` characters, on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// A fresh dedup key for a trigger that came without one.
pub fn generate_dedup_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
pub(crate) mod test_support {
    /// Reads a fixture file from `tests/fixtures/`.
    pub fn fixture(path: &str) -> Vec<u8> {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path);
        std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
    }
}
