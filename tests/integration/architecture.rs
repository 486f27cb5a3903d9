//! Arrows point down: no file of a lower module of `src/` names an upper
//! one. A lower layer owns the trait or the type; the upper layer
//! implements or uses it (issue 16).

use std::path::{Path, PathBuf};

/// The domain and its leaves: they know nothing of chat, HTTP, the writer
/// or the wiring.
const LOWER: &[&str] = &[
    "access",
    "clock",
    "config",
    "escalation",
    "incident",
    "intake",
    "markup",
    "matchers",
    "metrics",
    "notify",
    "oncall",
    "runbook",
    "secret",
    "store",
    "summary",
    "templates",
];

/// The layers that call the ones below.
const UPPER: &[&str] = &["app", "chat", "http", "service"];

/// `(file under src/, upper module, why)`: the arrows that may point up.
/// None today; an entry here must say why the arrow cannot point down.
const ALLOWED: &[(&str, &str, &str)] = &[];

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
fn no_lower_module_names_an_upper_one() {
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
        if !LOWER.contains(&top) {
            continue;
        }
        seen_lower += 1;
        let source = std::fs::read_to_string(file).unwrap();
        for name in crate_modules(&source) {
            if UPPER.contains(&name.as_str())
                && !ALLOWED.iter().any(|(f, m, _)| *f == rel && *m == name)
            {
                up.push(format!("src/{rel} names crate::{name}"));
            }
        }
    }
    // Every lower module was found, so a rename cannot empty the check.
    for m in LOWER {
        assert!(
            src.join(format!("{m}.rs")).exists() || src.join(m).join("mod.rs").exists(),
            "lower module {m} is gone; update LOWER"
        );
    }
    assert!(seen_lower > LOWER.len(), "{seen_lower} files");
    up.dedup();
    assert!(up.is_empty(), "arrows pointing up:\n{}", up.join("\n"));
}
