//! Access control over HTTP: per-user tokens and their scopes on every API
//! route, `by`, the two listeners, the API's `Host` check, `/metrics`'
//! networks, and the content types intake refuses.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use tocsin::clock::SystemClock;

/// alice and bob, and a schedule for the override routes.
pub const PEOPLE: &str = r#"
[[users]]
name = "alice"
contact_methods = [{ kind = "log" }]
[[users]]
name = "bob"
contact_methods = [{ kind = "log" }]
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "everyone"
users = ["alice", "bob"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * Mon"
"#;

async fn app() -> TestApp {
    spawn_app_with(Arc::new(SystemClock), None, PEOPLE).await
}

/// Sends `method path` with `token` and a JSON body: the status and body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Makes a token with the bootstrap token: (id, token).
async fn token(app: &TestApp, user: &str, scope: &str) -> (String, String) {
    let (s, b) = call(
        app,
        Method::POST,
        "/v1/tokens",
        Some(API_TOKEN),
        Some(&json!({ "user": user, "scope": scope })),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    (
        b["token"]["id"].as_str().unwrap().to_string(),
        b["token"]["token"].as_str().unwrap().to_string(),
    )
}

/// The last timeline entry's actor, as `GET .../timeline` shows it.
async fn last_actor(app: &TestApp, id: &str) -> Value {
    let (s, t) = app.get(&format!("/v1/incidents/{id}/timeline")).await;
    assert_eq!(s, 200, "{t}");
    t["timeline"].as_array().unwrap().last().unwrap()["actor"].clone()
}

#[tokio::test]
async fn every_api_route_needs_a_token_with_enough_scope() {
    let app = app().await;
    for key in ["a", "b", "c", "d"] {
        assert_eq!(app.pd("trigger", key, key).await.0, 202);
    }
    let (_, read) = token(&app, "alice", "read").await;
    let (_, write) = token(&app, "alice", "write").await;
    let (_, admin) = token(&app, "bob", "admin").await;
    let (revoked_id, revoked) = token(&app, "bob", "admin").await;
    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/v1/tokens/{revoked_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, o) = call(
        &app,
        Method::POST,
        "/v1/schedules/primary/overrides",
        Some(API_TOKEN),
        Some(
            &json!({"user": "bob", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{o}");
    let override_id = o["override"]["id"].as_u64().unwrap();
    let (target_id, _) = token(&app, "alice", "read").await;

    let override_body =
        json!({"user": "alice", "start": "2026-12-02T09:00:00Z", "end": "2026-12-02T10:00:00Z"});
    let token_body = json!({"user": "alice", "scope": "read"});
    let snooze = json!({"duration": "30m"});
    // (method, path, body, the scope it needs). Each write acts on its own
    // incident, so the first allowed call succeeds.
    let routes: Vec<(Method, String, Option<&Value>, &str)> = vec![
        (Method::GET, "/v1/incidents".into(), None, "read"),
        (Method::GET, "/v1/incidents/INC-1".into(), None, "read"),
        (
            Method::GET,
            "/v1/incidents/INC-1/notifications".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/v1/incidents/INC-1/summary".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/v1/incidents/INC-1/timeline".into(),
            None,
            "read",
        ),
        (Method::GET, "/v1/oncall".into(), None, "read"),
        (
            Method::GET,
            "/v1/schedules/primary/shifts".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/v1/schedules/primary/ical".into(),
            None,
            "read",
        ),
        (
            Method::GET,
            "/v1/schedules/primary/overrides".into(),
            None,
            "read",
        ),
        (Method::GET, "/v1/stats".into(), None, "read"),
        (
            Method::POST,
            "/v1/incidents/INC-1/acknowledge".into(),
            None,
            "write",
        ),
        (
            Method::POST,
            "/v1/incidents/INC-2/escalate".into(),
            None,
            "write",
        ),
        (
            Method::POST,
            "/v1/incidents/INC-3/snooze".into(),
            Some(&snooze),
            "write",
        ),
        (
            Method::POST,
            "/v1/incidents/INC-4/resolve".into(),
            None,
            "write",
        ),
        (Method::GET, "/v1/backup".into(), None, "admin"),
        (Method::GET, "/v1/tokens".into(), None, "admin"),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(&token_body),
            "admin",
        ),
        (
            Method::DELETE,
            format!("/v1/tokens/{target_id}"),
            None,
            "admin",
        ),
        (
            Method::POST,
            "/v1/schedules/primary/overrides".into(),
            Some(&override_body),
            "admin",
        ),
        (
            Method::DELETE,
            format!("/v1/schedules/primary/overrides/{override_id}"),
            None,
            "admin",
        ),
    ];
    let rank = |s: &str| {
        ["read", "write", "admin"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    for (method, path, body, needs) in &routes {
        let before = app.store_counts();
        for (who, t) in [
            ("no token", None),
            ("a revoked token", Some(revoked.as_str())),
        ] {
            let (s, b) = call(&app, method.clone(), path, t, *body).await;
            assert_eq!(s, 401, "{method} {path} with {who}: {b}");
            assert_eq!(b["error"], "unauthorized", "{b}");
        }
        let (s, b) = call(
            &app,
            method.clone(),
            path,
            Some("tsn_000000000000_00"),
            *body,
        )
        .await;
        assert_eq!(s, 401, "{method} {path} with a made-up token: {b}");
        for (scope, t) in [("read", &read), ("write", &write), ("admin", &admin)] {
            let (s, b) = call(&app, method.clone(), path, Some(t), *body).await;
            if rank(scope) < rank(needs) {
                assert_eq!(s, 403, "{method} {path} with {scope}: {b}");
                assert!(
                    b["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("needs a {needs} token")),
                    "{b}"
                );
            } else {
                assert!(
                    ![401, 403].contains(&s),
                    "{method} {path} with {scope}: {s} {b}"
                );
            }
        }
        assert_eq!(app.store_counts(), before, "{method} {path}");
    }
    // What the refused calls would have changed did not change: INC-1 was
    // acknowledged by the first token that was allowed to, alice's write.
    let (_, inc) = app.get("/v1/incidents/INC-1").await;
    assert_eq!(inc["incident"]["status"], "acknowledged");
    app.stop().await;
}

#[tokio::test]
async fn the_tokens_user_is_the_actor_and_by_is_for_admins() {
    let app = app().await;
    for key in ["a", "b", "c"] {
        app.pd("trigger", key, key).await;
    }
    let (write_id, write) = token(&app, "alice", "write").await;
    let (admin_id, admin) = token(&app, "bob", "admin").await;
    let ack = |n: u32| format!("/v1/incidents/INC-{n}/acknowledge");

    // A write token may not act for someone else, nor for a made-up name;
    // an admin may, for a configured user only, with no control characters.
    for (t, by, status, says) in [
        (&write, "bob", 403, "admin token"),
        (&write, "the-ceo", 403, "admin token"),
        (&admin, "the-ceo", 400, "configured user"),
        (
            &admin,
            "bob\n# Resolved by the CEO",
            400,
            "control characters",
        ),
    ] {
        let (s, b) = call(
            &app,
            Method::POST,
            &ack(1),
            Some(t),
            Some(&json!({"by": by})),
        )
        .await;
        assert_eq!(s, status, "{by:?}: {b}");
        let message = b["message"].as_str().unwrap();
        assert!(message.contains("'by'") && message.contains(says), "{b}");
    }
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );

    // The token's user acts, and the timeline names the token.
    let (s, b) = call(&app, Method::POST, &ack(1), Some(&write), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        last_actor(&app, "INC-1").await,
        json!({"kind": "user", "name": {"user": "alice", "principal": format!("token:{write_id}")}})
    );
    // `by` naming the token's own user is fine.
    let (s, b) = call(
        &app,
        Method::POST,
        &ack(2),
        Some(&write),
        Some(&json!({"by": "alice"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // An admin acting for alice: alice, vouched for by the admin's token.
    let (s, b) = call(
        &app,
        Method::POST,
        &ack(3),
        Some(&admin),
        Some(&json!({"by": "alice"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        last_actor(&app, "INC-3").await,
        json!({"kind": "user", "name": {"user": "alice", "principal": format!("token:{admin_id}")}})
    );
    // The bootstrap token is no one: `api`, or a configured `by`.
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/incidents/INC-3/resolve",
        Some(API_TOKEN),
        Some(&json!({"note": "done"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        last_actor(&app, "INC-3").await,
        json!({"kind": "user", "name": {"user": "api", "principal": "config-token"}})
    );
    // Overrides record who made them the same way.
    let (s, o) = call(
        &app,
        Method::POST,
        "/v1/schedules/primary/overrides",
        Some(&admin),
        Some(&json!({"user": "alice", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(o["override"]["created_by"], "bob");
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secrets_and_revoked() {
    let app = app().await;
    let (id, secret) = token(&app, "alice", "read").await;
    assert!(secret.starts_with(&format!("tsn_{id}_")), "{secret}");
    assert_eq!(app.get_as("/v1/incidents", Some(&secret)).await.0, 200);
    let (s, list) = app.get("/v1/tokens").await;
    assert_eq!(s, 200);
    let listed = &list["tokens"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["user"], "alice");
    assert_eq!(listed["scope"], "read");
    assert_eq!(listed["created_by"], "config-token");
    assert_eq!(listed["revoked_at"], Value::Null);
    let text = list.to_string();
    assert!(
        !text.contains(&secret[17..]),
        "the secret is never listed: {text}"
    );
    assert!(
        listed.get("hash").is_none() && listed.get("token").is_none(),
        "{listed}"
    );
    // Nor is it stored: the store holds its SHA-256 only.
    let stored = tocsin::store::Store::token(app.store.as_ref(), &id)
        .unwrap()
        .unwrap();
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains(&secret[17..])
    );

    for (body, field) in [
        (json!({"user": "mallory", "scope": "read"}), "'user'"),
        (json!({"user": "alice", "scope": "root"}), "'scope'"),
    ] {
        let (s, b) = call(
            &app,
            Method::POST,
            "/v1/tokens",
            Some(API_TOKEN),
            Some(&body),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        assert!(b["message"].as_str().unwrap().contains(field), "{b}");
    }
    assert_eq!(
        app.get("/v1/tokens").await.1["tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (s, b) = call(
        &app,
        Method::DELETE,
        &format!("/v1/tokens/{id}"),
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["token"]["revoked_at"].is_string(), "{b}");
    let (s, b) = app.get_as("/v1/incidents", Some(&secret)).await;
    assert_eq!(s, 401, "{b}");
    assert!(b["message"].as_str().unwrap().contains("revoked"), "{b}");
    let (s, _) = call(
        &app,
        Method::DELETE,
        "/v1/tokens/0123456789ab",
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn each_listener_serves_only_its_routes() {
    let app = spawn_split(PEOPLE, "").await;
    assert_ne!(app.addr, app.public_addr);
    let public = |p: &str| app.public_url(p);
    // Intake on the public listener.
    let (s, b) = app.pd("trigger", "a", "disk full").await;
    assert_eq!(s, 202, "{b}");
    // The API, /metrics and /readyz are not there, even with a token.
    for path in [
        "/v1/incidents",
        "/v1/incidents/INC-1",
        "/metrics",
        "/readyz",
        "/v1/backup",
    ] {
        let resp = app
            .http
            .get(public(path))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "public {path}");
    }
    let resp = app
        .http
        .post(public("/v1/incidents/INC-1/acknowledge"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // Intake is not on the API listener.
    let resp = app
        .http
        .post(app.url("/v2/enqueue"))
        .json(&json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "b", "payload": {"summary": "x", "source": "t", "severity": "error"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(app.store_counts().1, 1);
    // Calendar apps send the token as a basic-auth password.
    let ical = app
        .http
        .get(app.url("/v1/schedules/primary/ical"))
        .basic_auth("calendar", Some(API_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(ical.status().as_u16(), 200);
    let wrong = app
        .http
        .get(app.url("/v1/schedules/primary/ical"))
        .basic_auth(API_TOKEN, None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.status().as_u16(),
        401,
        "the token goes in the password"
    );
    // The API and health where they belong.
    assert_eq!(app.get("/v1/incidents/INC-1").await.0, 200);
    assert_eq!(app.get_as("/readyz", None).await.0, 503); // no scheduler in tests
    for url in [app.url("/healthz"), public("/healthz")] {
        assert_eq!(
            app.http.get(&url).send().await.unwrap().status(),
            200,
            "{url}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_api_refuses_other_host_names() {
    let app = spawn_app_with_server(
        Arc::new(SystemClock),
        None,
        PEOPLE,
        test_limits(),
        "api_hosts = [\"tocsin.internal\"]",
    )
    .await;
    let port = app.addr.port();
    let with_host = |host: String| {
        app.http
            .get(app.url("/v1/incidents"))
            .bearer_auth(API_TOKEN)
            .header("host", host)
    };
    // A page on evil.example whose name now resolves to this address.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("127.0.0.1:{}", port + 1),
    ] {
        let resp = with_host(host.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 421, "{host}");
        let b: Value = resp.json().await.unwrap();
        assert!(b["message"].as_str().unwrap().contains("api_hosts"), "{b}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "tocsin.internal".into(),
        format!("tocsin.internal:{port}"),
    ] {
        assert_eq!(
            with_host(host.clone()).send().await.unwrap().status(),
            200,
            "{host}"
        );
    }
    // Public routes answer any name (Slack and senders use the public one).
    let resp = app
        .http
        .post(app.url("/v2/enqueue"))
        .header("host", "tocsin.example.com")
        .json(&json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "h", "payload": {"summary": "x", "source": "t", "severity": "error"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn metrics_need_a_read_token_outside_the_metrics_networks() {
    // Loopback is the default network: the scrape needs no token.
    let app = app().await;
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    app.stop().await;
    let app = spawn_app_with_server(
        Arc::new(SystemClock),
        None,
        PEOPLE,
        test_limits(),
        "metrics_networks = [\"10.0.0.0/8\"]",
    )
    .await;
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let b: Value = resp.json().await.unwrap();
    assert!(
        b["message"].as_str().unwrap().contains("metrics_networks"),
        "{b}"
    );
    let (_, read) = token(&app, "alice", "read").await;
    let resp = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("tocsin_"));
    app.stop().await;
}

#[tokio::test]
async fn webhooks_refuse_form_content_types() {
    let app = app().await;
    let body = String::from_utf8(fixture("alertmanager/firing.json")).unwrap();
    let post = |path: String, ct: Option<&'static str>| {
        let mut req = app.http.post(app.public_url(&path)).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    for path in [format!("/hooks/{AM_KEY}"), format!("/hooks/{AM_KEY}/")] {
        for ct in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "Text/Plain",
        ] {
            let resp = post(path.clone(), Some(ct)).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 415, "{path} {ct}");
            let b: Value = resp.json().await.unwrap();
            assert!(
                b["message"].as_str().unwrap().contains("application/json"),
                "{b}"
            );
        }
    }
    let alerts = format!("/hooks/{AM_KEY}/api/v2/alerts");
    let resp = app
        .http
        .post(app.public_url(&alerts))
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(app.store_counts(), (0, 0), "nothing was stored");
    // JSON, and no content type at all (Python requests with data=), work.
    for ct in [Some("application/json; charset=utf-8"), None] {
        let resp = post(format!("/hooks/{AM_KEY}"), ct).send().await.unwrap();
        assert!(resp.status().is_success(), "{ct:?}: {}", resp.status());
    }
    // PagerDuty's routes keep taking forms: Netdata sends its JSON so.
    let resp = app
        .http
        .post(app.public_url("/v2/enqueue"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "n", "payload": {"summary": "x", "source": "t", "severity": "error"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    app.stop().await;
}

#[tokio::test]
async fn the_cli_creates_lists_and_revokes_tokens() {
    // Two listeners: `alert send` finds the public one, the rest the API.
    let dir = tempfile::tempdir().unwrap();
    let (port, public) = (free_port(), free_port());
    let text = config_text_with(
        &dir.path().join("data"),
        &format!("127.0.0.1:{port}"),
        None,
        PEOPLE,
    )
    .replacen(
        "[server]\n",
        &format!("[server]\npublic_listen = \"127.0.0.1:{public}\"\n"),
        1,
    );
    std::fs::write(dir.path().join("tocsin.toml"), text).unwrap();
    let mut server = ServerProcess::start_with(dir.path(), port, None, PEOPLE).await;
    let out = server.cli(&["token", "create", "--user", "alice", "--scope", "write"]);
    assert!(out.contains("for alice (write)"), "{out}");
    assert!(out.contains("shown only this once"), "{out}");
    let secret = out
        .lines()
        .find(|l| l.starts_with("tsn_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string();
    let id = secret[4..16].to_string();
    let list = server.cli(&["token", "list"]);
    assert!(
        list.contains(&id) && list.contains("alice") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&secret), "{list}");
    // The new token works from the CLI, and its user acts.
    server.cli(&["alert", "send", "--summary", "disk full"]);
    let on_public = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{public}/v1/incidents"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(on_public.status().as_u16(), 404);
    let out = server.cli(&["incidents", "ack", "INC-1", "--token", &secret]);
    assert!(out.contains("INC-1 is acknowledged"), "{out}");
    let shown = server.cli(&["incidents", "show", "INC-1", "--token", &secret]);
    assert!(shown.contains("alice"), "{shown}");
    let out = server.cli(&["token", "revoke", &id]);
    assert!(out.contains("is revoked"), "{out}");
    assert!(server.cli(&["token", "list"]).contains("revoked"));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["incidents", "list", "--token", &secret, "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
    // SIGTERM drains both listeners and exits 0.
    assert!(server.terminate().success());
}
