//! The command line, against the real binary.

use crate::common::*;
use std::process::Command;

fn tocsin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
}

#[test]
fn check_accepts_the_example_config() {
    let out = tocsin()
        .args(["check", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tocsin.example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("OK (4 integrations, 2 services, 6 runbooks, 7 templates)")
    );
}

#[test]
fn check_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "nowhere"
[[services]]
name = "api"
[[integrations]]
name = "x"
kind = "nagios"
key = "0123456789"
service = "api"
[[integrations]]
name = "y"
kind = "generic"
key = "short"
service = "ghost"
"#,
    )
    .unwrap();
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 problem(s)"), "{err}");
    for path in [
        "server.listen",
        "integrations[0].kind",
        "integrations[1].key",
        "integrations[1].service",
    ] {
        assert!(err.contains(path), "missing {path} in {err}");
    }
}

#[test]
fn check_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[integrations]]\nname = \"x\"\nkind = \"generic\"\nkey = \"super-secret-value\"\nservice = \"ghost\"\n",
    )
    .unwrap();
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("super-secret-value"), "{all}");
}

#[tokio::test]
async fn alert_send_and_incidents_commands() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), port).await;
    let run = |args: &[&str]| {
        let out = tocsin()
            .args(args)
            .arg("--config")
            .arg(&server.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let sent = run(&[
        "alert",
        "send",
        "--summary",
        "CLI smoke",
        "--severity",
        "critical",
        "--dedup-key",
        "cli-1",
    ]);
    assert!(sent.contains("Event processed (dedup_key cli-1)"), "{sent}");
    let list = run(&["incidents", "list"]);
    assert!(
        list.contains("INC-1") && list.contains("triggered") && list.contains("SEV1"),
        "{list}"
    );
    assert!(list.contains("CLI smoke"), "{list}");
    run(&[
        "alert",
        "send",
        "--action",
        "resolve",
        "--dedup-key",
        "cli-1",
    ]);
    let shown = run(&["incidents", "show", "INC-1"]);
    assert!(shown.contains("resolved"), "{shown}");
    assert!(shown.contains("Opened as SEV1: CLI smoke"), "{shown}");
    let out = tocsin()
        .args(["incidents", "show", "INC-9", "--url", &server.base])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("incident INC-9 does not exist"));
}
