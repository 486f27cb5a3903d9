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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn check_warns_of_contact_ids_that_look_malformed_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.toml");
    std::fs::write(
        &path,
        r#"
[[users]]
name = "alice"
slack_id = "U0ALICE"
discord_id = "12345"
email = "alice(at)example.com"
contact_methods = [{ kind = "log" }]
[[users]]
name = "bob"
slack_id = "U024BE7LH"
discord_id = "80351110224678912"
email = "bob@example.com"
contact_methods = [{ kind = "log" }]
"#,
    )
    .unwrap();
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK ("));
    assert!(stderr.contains("3 warning(s)"), "{stderr}");
    for line in [
        "warning: users[0].slack_id: 'U0ALICE' does not look like a Slack user id",
        "warning: users[0].discord_id: '12345' does not look like a Discord user id",
        "warning: users[0].email: 'alice(at)example.com' does not look like an email address",
    ] {
        assert!(stderr.contains(line), "{line} not in: {stderr}");
    }
    assert!(!stderr.contains("users[1]"), "{stderr}");
}

#[test]
fn check_warns_that_a_numeric_weekday_counts_as_in_crontab() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cron.toml");
    std::fs::write(
        &path,
        r#"
[[users]]
name = "alice"
contact_methods = [{ kind = "log" }]
[[schedules]]
name = "weekly"
time_zone = "UTC"
[[schedules.layers]]
name = "main"
users = ["alice"]
start = "2026-01-05T09:00"
handoff = "0 0 9 * * 1"
"#,
    )
    .unwrap();
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: schedules[0].layers[0].handoff: '0 0 9 * * 1' names weekdays by number, read as crontab counts them (0 and 7 Sunday, 1 Monday): it hands off on Mon"),
        "{stderr}"
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
    let run = |args: &[&str]| server.cli(args);
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
    // Pages of history: the list says how to get the next one.
    run(&[
        "alert",
        "send",
        "--summary",
        "Second",
        "--dedup-key",
        "cli-2",
    ]);
    let first = run(&["incidents", "list", "--limit", "1"]);
    assert!(
        first.contains("INC-2") && !first.contains("INC-1 "),
        "{first}"
    );
    assert!(first.contains("--before INC-2"), "{first}");
    let older = run(&["incidents", "list", "--limit", "1", "--before", "INC-2"]);
    assert!(
        older.contains("CLI smoke") && !older.contains("Second"),
        "{older}"
    );
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
        .args([
            "incidents",
            "show",
            "INC-9",
            "--url",
            &server.base,
            "--token",
            API_TOKEN,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("incident INC-9 does not exist"));
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_debug() {
    use crate::common::fake_slack::FakeSlack;
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "[slack]\nbot_token = \"xoxb-super-secret-bot-token\"\nsigning_secret = \"super-secret-signing\"\nteam_id = \"T0TEAM\"\napi_url = \"{}\"\n",
        fake.api_url()
    );
    let config = dir.path().join("tocsin.toml");
    std::fs::write(
        &config,
        config_text_with(
            &dir.path().join("data"),
            &format!("127.0.0.1:{port}"),
            None,
            &extra,
        ),
    )
    .unwrap();
    let log = dir.path().join("tocsin.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("TOCSIN__LOG__FORMAT", "json")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Keys in URLs and headers, a wrong token, a Slack request, an incident that opens a channel.
    http.post(format!("{base}/hooks/{GENERIC_KEY}"))
        .json(&serde_json::json!({"summary": "log test"}))
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/hooks"))
        .bearer_auth(AM_KEY)
        .body("{")
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v1/incidents/1/acknowledge"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/slack/commands"))
        .body("x=1")
        .send()
        .await
        .unwrap();
    fake.wait_until("the channel", |f| {
        !f.ok_calls("chat.postMessage").is_empty()
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.lines().count() > 10,
        "expected debug logs, got: {logs}"
    );
    assert!(
        logs.lines().filter(|l| l.starts_with('{')).count() > 5,
        "JSON log lines"
    );
    for secret in [
        GENERIC_KEY,
        AM_KEY,
        API_TOKEN,
        PD_KEY,
        "xoxb-super-secret-bot-token",
        "super-secret-signing",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test]
async fn health_subcommand_reports_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), port).await;
    let out = tocsin()
        .args(["health", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\":\"ready\""));
    drop(server);
    let out = tocsin()
        .args(["health", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Error messages that say what is wrong: a second server on the same data
/// directory, an unset `${VAR}` behind `tocsin health`, no configuration,
/// a policy repeated past the cap.
#[tokio::test]
async fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = ServerProcess::start(dir.path(), port).await;
    // The same config (same data directory) on another port.
    let text = std::fs::read_to_string(&server.config).unwrap().replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let second = dir.path().join("second.toml");
    std::fs::write(&second, text).unwrap();
    let out = tocsin()
        .args(["serve", "--config"])
        .arg(&second)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("another tocsin is using this data directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("WouldBlock"), "{stderr}");
    drop(server);

    let unset = dir.path().join("unset.toml");
    std::fs::write(
        &unset,
        "[server]\nlisten = \"127.0.0.1:1\"\n[api]\ntoken = \"${TOCSIN_TEST_SURELY_UNSET}\"\n",
    )
    .unwrap();
    let out = tocsin()
        .args(["health", "--config"])
        .arg(&unset)
        .env_remove("TOCSIN_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("TOCSIN_TEST_SURELY_UNSET"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let out = tocsin()
        .arg("check")
        .current_dir(empty.path())
        .env_remove("TOCSIN_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for word in [
        "--config",
        "TOCSIN_CONFIG",
        "tocsin.toml",
        "tocsin.example.toml",
    ] {
        assert!(stderr.contains(word), "{word} not in: {stderr}");
    }

    let repeat = dir.path().join("repeat.toml");
    std::fs::write(
        &repeat,
        r#"
[[services]]
name = "api"
escalation_policy = "p"
[[users]]
name = "alice"
[[escalation_policies]]
name = "p"
repeat = 25
[[escalation_policies.steps]]
targets = [{ user = "alice" }]
delay = "5m"
"#,
    )
    .unwrap();
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&repeat)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("escalation_policies[0].repeat: at most 19"),
        "{stderr}"
    );
}

/// `tocsin incidents ack|escalate|snooze|resolve` act on a running server
/// with the config's API token, name the acting user, and print the
/// incident as it now is; the timeline records each.
#[tokio::test]
async fn incidents_can_be_worked_from_the_cli() {
    let recv = crate::common::receiver::Receiver::start().await;
    let extra = crate::paging::paging_config(&recv, 2525, "");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), free_port(), Some("payments"), &extra).await;
    let body = serde_json::json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "cli",
        "payload": {"summary": "Checkout is down", "source": "t", "severity": "critical"}});
    let r = reqwest::Client::new()
        .post(format!("{}/v2/enqueue", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let out = server.cli(&[
        "incidents",
        "list",
        "--service",
        "payments",
        "--severity",
        "sev1",
    ]);
    assert!(out.contains("INC-1"), "{out}");
    let out = server.cli(&["incidents", "list", "--status", "open", "--service", "api"]);
    assert!(!out.contains("INC-1"), "{out}");
    let out = server.cli(&["incidents", "escalate", "INC-1", "--by", "bob"]);
    assert!(
        out.contains("INC-1 is triggered: Checkout is down"),
        "{out}"
    );
    let out = server.cli(&["incidents", "ack", "INC-1", "--by", "bob"]);
    assert!(out.contains("INC-1 is acknowledged"), "{out}");
    let out = server.cli(&[
        "incidents",
        "note",
        "INC-1",
        "cache hit rate fell to 3%",
        "--by",
        "bob",
    ]);
    assert!(out.contains("INC-1 is acknowledged"), "{out}");
    // An empty note is refused with what to send.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/incidents/INC-1/notes", server.base))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"text": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("'text' is required"));
    let out = server.cli(&[
        "incidents",
        "snooze",
        "INC-1",
        "--for",
        "30m",
        "--by",
        "bob",
    ]);
    assert!(out.contains("INC-1 is"), "{out}");
    let out = server.cli(&[
        "incidents",
        "resolve",
        "INC-1",
        "--note",
        "rolled back",
        "--by",
        "bob",
    ]);
    assert!(out.contains("INC-1 is resolved"), "{out}");
    let timeline = reqwest::Client::new()
        .get(format!("{}/v1/incidents/INC-1/timeline", server.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "escalat",
        "acknowledged",
        "cache hit rate fell to 3%",
        "snooze",
        "rolled back",
        "bob",
    ] {
        assert!(timeline.contains(needle), "{needle}: {timeline}");
    }
    // A refused action fails the command with the server's reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["incidents", "ack", "INC-9", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("INC-9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_validates_the_chat_access_keys_of_the_example_once_uncommented() {
    // The example's commented [slack] and [chat] blocks, and the payments
    // service's commented keys, uncommented: they pass as written...
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tocsin.example.toml"))
            .unwrap();
    let mut on = String::new();
    for line in example.lines() {
        let keys = [
            "# [slack]",
            "# bot_token",
            "# signing_secret",
            "# team_id",
            "# [chat]",
            "# admins = ",
            "# archive_after = ",
            "# private_severities = ",
            "# responders = ",
            "# private = ",
            "# permissions = ",
            "# reopen_within = ",
        ];
        match keys.iter().find(|k| line.starts_with(*k)) {
            Some(_) => on.push_str(&line[2..]),
            None => on.push_str(line),
        }
        on.push('\n');
    }
    for key in [
        "team_id = ",
        "private_severities = ",
        "responders = ",
        "permissions = ",
        "reopen_within = ",
    ] {
        assert!(
            on.lines().any(|l| l.starts_with(key)),
            "{key} is not in the example"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("on.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        tocsin()
            .args(["check", "--config"])
            .arg(&path)
            .env("SLACK_BOT_TOKEN", "xoxb-a-real-looking-token")
            .env("SLACK_SIGNING_SECRET", "a-real-looking-signing-secret")
            .output()
            .unwrap()
    };
    let out = check(&on);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and each is checked.
    let broken = on
        .replace("team_id = \"T0123ABCD\"", "")
        .replace(
            "private_severities = [\"SEV1\"]",
            "private_severities = [\"SEV0\"]",
        )
        .replace("respond = \"responders\"", "respond = \"everyone\"");
    let out = check(&broken);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for problem in [
        "slack.team_id: is required",
        "chat.private_severities: unknown severity 'SEV0'",
        "services[1].permissions.respond: unknown variant `everyone`",
    ] {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    let out = check(&on.replace("responders = [\"bob\"]", "responders = [\"zed\"]"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services[1].responders[0]: unknown user 'zed'"),
        "{stderr}"
    );
    let out = check(&on.replace("reopen_within = \"15m\"", "reopen_within = \"0s\""));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services[1].reopen_within: must be longer than 0s"),
        "{stderr}"
    );
}

/// The example's commented heartbeat is valid once uncommented.
#[test]
fn the_example_heartbeat_is_valid_once_uncommented() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tocsin.example.toml"))
            .unwrap();
    let mut out = String::new();
    let mut in_block = false;
    for line in example.lines() {
        if line.trim() == "# [[heartbeats]]" {
            in_block = true;
        } else if !line.starts_with("# ") {
            in_block = false;
        }
        if in_block {
            out.push_str(line.trim_start_matches("# "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(
        out.contains("\n[[heartbeats]]\nname = \"db-backup\""),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, out).unwrap();
    let runbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks");
    let out = tocsin()
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DB_BACKUP_HEARTBEAT_KEY", "a-real-heartbeat-key-9f3e")
        .env("TOCSIN__RUNBOOKS__DIR", runbooks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example's commented retention keys pass `tocsin check` once
/// uncommented (with an export directory that exists), and check refuses a
/// retention under a day or an export into a missing directory.
#[test]
fn check_validates_the_example_retention_keys_once_uncommented() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tocsin.example.toml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("retired.jsonl");
    let with = |retention: &str, export: &std::path::Path| {
        let uncommented = example
            .replace(
                "# retention = \"365d\"",
                &format!("retention = \"{retention}\""),
            )
            .replace(
                "# retention_export = \"/var/lib/tocsin/retired.jsonl\"",
                &format!("retention_export = \"{}\"", export.display()),
            );
        assert_ne!(uncommented, example);
        let path = dir.path().join("tocsin.toml");
        std::fs::write(&path, uncommented).unwrap();
        tocsin()
            .args(["check", "--config"])
            .arg(&path)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "TOCSIN__RUNBOOKS__DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks"),
            )
            .output()
            .unwrap()
    };
    let out = with("365d", &export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with("12h", &dir.path().join("missing").join("retired.jsonl"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("storage.retention: must be at least 1d"),
        "{stderr}"
    );
    assert!(
        stderr.contains("storage.retention_export: its directory"),
        "{stderr}"
    );
}
