//! The published specs the fakes check every request against, so a test
//! cannot pass on a request the platform would refuse:
//! - Slack: `slack/slack_web_openapi_v2.methods.json` (Slack's Web API
//!   OpenAPI v2, per method: its arguments, where they go, their types,
//!   which are required).
//! - Discord: `discord/openapi.json` (Discord's OpenAPI 3.1): a request
//!   body is validated against its operation's `requestBody` schema, with
//!   the document's components as the `$ref` targets, plus the documented
//!   limits the schema leaves out (6,000 characters over a message's
//!   embeds).
//!
//! The files are read from `../shared/reference/` beside the crate, never
//! copied into the repository.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A file of the published references.
pub fn reference(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(rel)
}

fn load(rel: &str) -> Value {
    let path = reference(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the published spec {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn slack_methods() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| load("slack/slack_web_openapi_v2.methods.json")["methods"].clone())
}

/// Arguments Slack documents (api.slack.com) that the OpenAPI file, older
/// than they are, lacks. Anything else unknown is refused: Slack ignores an
/// unknown argument, so a misspelt one would silently do nothing.
const NEWER_THAN_THE_SPEC: &[(&str, &str)] = &[
    ("conversations.invite", "force"),
    ("chat.postMessage", "metadata"),
    ("chat.update", "metadata"),
    ("conversations.history", "include_all_metadata"),
];

/// Methods Slack documents (api.slack.com) that the OpenAPI file, older
/// than they are, lacks: the external upload that replaced `files.upload`.
fn newer_methods() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        json!({
            "files.getUploadURLExternal": {"params": {
                "token": {"type": "string", "required": true},
                "filename": {"type": "string", "required": true},
                "length": {"type": "integer", "required": true},
                "alt_txt": {"type": "string"},
                "snippet_type": {"type": "string"},
            }},
            "files.completeUploadExternal": {"params": {
                "token": {"type": "string", "required": true},
                "files": {"type": "string", "required": true},
                "channel_id": {"type": "string"},
                "channels": {"type": "string"},
                "thread_ts": {"type": "string"},
                "initial_comment": {"type": "string"},
                "blocks": {"type": "string"},
            }},
        })
    })
}

/// Arguments api.slack.com marks required that the file marks optional.
const REQUIRED_BY_THE_DOCS: &[(&str, &str)] = &[
    ("conversations.create", "name"),
    ("conversations.invite", "channel"),
    ("conversations.invite", "users"),
    ("conversations.setTopic", "channel"),
    ("conversations.setTopic", "topic"),
    ("conversations.archive", "channel"),
    ("conversations.history", "channel"),
];

/// Arguments that are JSON: a JSON body may carry them as JSON values
/// rather than as encoded strings.
const JSON_ARGUMENTS: &[&str] = &["blocks", "attachments", "metadata", "files"];

fn type_ok(kind: &str, v: &Value, json_body: bool, name: &str) -> bool {
    let numeric = |s: &str| s.trim().parse::<f64>().is_ok();
    match (kind, v) {
        ("string", Value::String(_)) => true,
        ("string", Value::Array(_) | Value::Object(_)) => {
            json_body && JSON_ARGUMENTS.contains(&name)
        }
        ("boolean", Value::Bool(_)) => true,
        ("boolean", Value::String(s)) => matches!(s.as_str(), "true" | "false" | "1" | "0"),
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("integer", Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        ("number", Value::Number(_)) => true,
        ("number", Value::String(s)) => numeric(s),
        _ => false,
    }
}

/// What is wrong with a call of `method` with `params` (query, form or
/// JSON body, merged), by Slack's published spec; empty if nothing.
/// `authorized`: a bearer token came in the `Authorization` header.
pub fn slack_violations(
    method: &str,
    params: &Value,
    authorized: bool,
    json_body: bool,
) -> Vec<String> {
    let Some(spec) = slack_methods()
        .get(method)
        .or_else(|| newer_methods().get(method))
    else {
        return vec![format!("{method}: no such Web API method")];
    };
    let declared = spec["params"].as_object().cloned().unwrap_or_default();
    let given = params.as_object().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (name, value) in &given {
        let Some(arg) = declared.get(name) else {
            if !NEWER_THAN_THE_SPEC.contains(&(method, name.as_str())) {
                out.push(format!("{method}: unknown argument `{name}`"));
            }
            continue;
        };
        let kind = arg["type"].as_str().unwrap_or("string");
        if !type_ok(kind, value, json_body, name) {
            out.push(format!("{method}: `{name}` must be a {kind}, not {value}"));
        }
        if let Some(allowed) = arg.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(format!("{method}: `{name}` must be one of {allowed:?}"));
        }
    }
    for (name, arg) in &declared {
        let required = arg["required"] == true || REQUIRED_BY_THE_DOCS.contains(&(method, name));
        let present = if name == "token" {
            authorized || given.contains_key("token")
        } else {
            given.get(name).is_some_and(|v| !v.is_null())
        };
        if required && !present {
            out.push(format!("{method}: missing required argument `{name}`"));
        }
    }
    if method == "chat.postMessage"
        && ["text", "blocks", "attachments"]
            .iter()
            .all(|k| given.get(*k).is_none_or(|v| v.as_str() == Some("")))
    {
        out.push(format!(
            "{method}: one of `text`, `blocks` or `attachments` is required"
        ));
    }
    out
}

fn discord_doc() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| load("discord/openapi.json"))
}

/// The documented path template a request path (after `/api/v10`) is.
fn discord_template(parts: &[&str]) -> Option<&'static str> {
    let paths = discord_doc()["paths"].as_object()?;
    paths.keys().map(String::as_str).find(|t| {
        let segs: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
        segs.len() == parts.len()
            && segs
                .iter()
                .zip(parts)
                .all(|(s, p)| s.starts_with('{') || s == p)
    })
}

type Compiled = Arc<jsonschema::Validator>;

/// The validator of an operation's JSON body, compiled once.
fn body_validator(template: &str, verb: &str) -> Option<Compiled> {
    static CACHE: OnceLock<parking_lot::Mutex<HashMap<String, Option<Compiled>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = format!("{verb} {template}");
    if let Some(v) = cache.lock().get(&key) {
        return v.clone();
    }
    let doc = discord_doc();
    let compiled = doc["paths"][template][verb]["requestBody"]["content"]["application/json"]
        .get("schema")
        .map(|schema| {
            // The components travel with the schema: its `$ref`s are
            // `#/components/schemas/...` of this same root.
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [schema],
            });
            Arc::new(
                jsonschema::draft202012::new(&root)
                    .unwrap_or_else(|e| panic!("{key}: the spec's schema: {e}")),
            )
        });
    cache.lock().insert(key, compiled.clone());
    compiled
}

/// Discord's "Invalid Form Body" with one error per place.
fn invalid_form_body(errors: Vec<(String, String, String)>) -> Value {
    let mut map = serde_json::Map::new();
    for (path, code, message) in errors {
        let entry = map
            .entry(if path.is_empty() {
                "_body".into()
            } else {
                path
            })
            .or_insert_with(|| json!({"_errors": []}));
        entry["_errors"]
            .as_array_mut()
            .unwrap()
            .push(json!({"code": code, "message": message}));
    }
    json!({"code": 50035, "message": "Invalid Form Body", "errors": map})
}

/// Limits Discord documents for embeds that the schema does not carry:
/// their characters together at most 6,000.
fn embed_limits(body: &Value) -> Vec<(String, String, String)> {
    let Some(embeds) = body.get("embeds").and_then(Value::as_array) else {
        return Vec::new();
    };
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let total: usize = embeds
        .iter()
        .map(|e| {
            chars(&e["title"])
                + chars(&e["description"])
                + chars(&e["footer"]["text"])
                + chars(&e["author"]["name"])
                + e["fields"].as_array().map_or(0, |f| {
                    f.iter()
                        .map(|f| chars(&f["name"]) + chars(&f["value"]))
                        .sum()
                })
        })
        .sum();
    if total > 6000 {
        return vec![(
            "embeds".into(),
            "MAX_EMBED_SIZE_EXCEEDED".into(),
            "Embed size exceeds maximum size of 6000".into(),
        )];
    }
    Vec::new()
}

/// Discord's 400 for a request whose body the published spec refuses
/// (`parts`: the path after `/api/v10`), and what was wrong; `None` if it
/// is fine. A route the spec does not have is refused too.
pub fn discord_refusal(method: &str, parts: &[&str], body: &Value) -> Option<(Value, String)> {
    let verb = method.to_ascii_lowercase();
    let Some(template) = discord_template(parts) else {
        let why = format!("{method} /{}: no such route in the spec", parts.join("/"));
        return Some((json!({"message": "404: Not Found", "code": 0}), why));
    };
    if discord_doc()["paths"][template].get(&verb).is_none() {
        let why = format!("{method} {template}: no such operation in the spec");
        return Some((
            json!({"message": "405: Method Not Allowed", "code": 0}),
            why,
        ));
    }
    let mut errors: Vec<(String, String, String)> = Vec::new();
    // Discord's docs give an upload's attachment id as the file's index, a
    // number (`"attachments": [{"id": 0, ...}]`); the schema types every
    // snowflake as a string. Both are taken.
    let mut body = body.clone();
    if let Some(list) = body.get_mut("attachments").and_then(Value::as_array_mut) {
        for a in list {
            if let Some(n) = a.get("id").and_then(Value::as_u64) {
                a["id"] = json!(n.to_string());
            }
        }
    }
    let body = &body;
    if let Some(validator) = body_validator(template, &verb) {
        for e in validator.iter_errors(body) {
            let path = e
                .instance_path()
                .to_string()
                .trim_start_matches('/')
                .replace('/', ".");
            errors.push((path, "SPEC_INVALID".into(), e.to_string()));
        }
    }
    if verb == "post" || verb == "patch" {
        errors.extend(embed_limits(body));
    }
    if errors.is_empty() {
        return None;
    }
    let why = format!(
        "{method} {template}: {}",
        errors
            .iter()
            .map(|(p, _, m)| format!("{p}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Some((invalid_form_body(errors), why))
}
