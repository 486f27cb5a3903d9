//! Arrows point down: no file of a lower module of `src/` names an upper
//! one. A lower layer owns the trait or the type; the upper layer
//! implements or uses it (issue 16).

use std::path::{Path, PathBuf};

/// The domain and its leaves, bottom layer first: they know nothing of
/// chat, HTTP, the writer or the wiring, and each names only layers below
/// its own.
const LAYERS: &[&[&str]] = &[
    &["access", "clock", "markup", "matchers", "secret"],
    &["oncall", "templates"],
    &["incident"],
    &["config", "intake"],
    &["escalation", "runbook", "maintenance"],
    &["notify", "summary"],
    // It persists every domain type.
    &["store"],
    // It encodes the store's gauges; only the upper layers record into it.
    &["metrics"],
];

/// The layers that call the ones below.
const UPPER: &[&str] = &["app", "chat", "http", "service"];

/// `(file under src/, module it names, why)`: the arrows that may point
/// up. Each entry must say why the arrow cannot point down.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "incident/mod.rs",
        "escalation",
        "an incident carries its EscalationState and expiry Timer, while \
         escalation names IncidentId and config, and config names \
         incident's Severity: breaking the circle means moving the ids and \
         Severity to a leaf, a rename across store and service, which \
         others are editing now",
    ),
    (
        "incident/mod.rs",
        "runbook",
        "an incident carries its runbook Progress and checks step commands \
         against the Runbook, while runbooks match on the Incident: the \
         progress would have to move into incident, left for its own change",
    ),
];

/// The layer of top-level module `name` among the lower ones.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&name))
}

/// The top-level modules `source` names through `crate::` (one path, or
/// each path of a `crate::{...}` group). Comment lines are skipped.
fn crate_modules(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `tocsin_crate::` or `some_crate::` are other paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of each item at depth 0 of the group.
            let (mut depth, mut item, mut done) = (0usize, String::new(), false);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth > 0 => depth -= 1,
                    '}' | ',' if depth == 0 => {
                        if !done && !item.is_empty() {
                            found.push(std::mem::take(&mut item));
                        }
                        item.clear();
                        done = false;
                        if c == '}' {
                            break;
                        }
                    }
                    ':' if depth == 0 && !done && !item.is_empty() => {
                        found.push(std::mem::take(&mut item));
                        done = true;
                    }
                    c if depth == 0 && !done && (c.is_alphanumeric() || c == '_') => item.push(c),
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_scanner_sees_single_paths_and_groups() {
    let names = crate_modules(
        "use crate::{chat::ChatPlatform, store::{Store, StoreError}, clock};\n\
         // crate::http in a comment is no arrow\n\
         fn f() { crate::service::Service::new(); other_crate::app::x(); }\n",
    );
    assert_eq!(names, ["chat", "store", "clock", "service"]);
}

#[test]
fn every_arrow_in_src_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut up = Vec::new();
    let mut seen_lower = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let Some(own) = layer(top) else {
            continue;
        };
        seen_lower += 1;
        let source = std::fs::read_to_string(file).unwrap();
        for name in crate_modules(&source) {
            let points_up = UPPER.contains(&name.as_str())
                || (name != top && layer(&name).is_none_or(|l| l >= own));
            if points_up && !ALLOWED.iter().any(|(f, m, _)| *f == rel && *m == name) {
                up.push(format!("src/{rel} ({top}) names crate::{name}"));
            }
        }
    }
    // Every listed module exists, so a rename cannot empty the check.
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            src.join(format!("{m}.rs")).exists() || src.join(m).join("mod.rs").exists(),
            "module {m} is gone; update LAYERS"
        );
    }
    assert!(seen_lower > 20, "{seen_lower} files");
    up.dedup();
    assert!(up.is_empty(), "arrows pointing up:\n{}", up.join("\n"));
}
