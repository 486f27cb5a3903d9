//! The web console, through HTTP as a browser speaks it: sign-in and its
//! cookie, CSRF, scopes, actions on the timeline, escaping, live events
//! and paging.

use crate::common::*;
use std::sync::Arc;
use tocsin::access::Scope;
use tocsin::clock::ManualClock;

const CONSOLE: &str = r#"
[[users]]
name = "alice"
[[users]]
name = "bob"
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-11-30T09:00:00"
handoff = "0 0 9 * * Mon"
[console]
enabled = true
session_key = "console-test-key-0123456789abcdef0123"
session_ttl = "1h"
"#;

fn t0() -> chrono::DateTime<chrono::Utc> {
    "2026-12-02T10:00:00Z".parse().unwrap()
}

/// A browser: no redirects followed, the cookie carried by hand.
struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(std::time::Duration::from_millis(500))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn login(&mut self, token: &str) -> reqwest::Response {
        let resp = self
            .http
            .post(self.app.url("/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        if let Some(c) = resp.headers().get("set-cookie") {
            let c = c.to_str().unwrap();
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        resp
    }

    fn get_req(&self, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.get(self.app.url(path));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.get_req(path).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(self.app.url(path)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_string()
}

async fn console(clock: Option<Arc<ManualClock>>) -> TestApp {
    match clock {
        Some(c) => spawn_app_with(c, None, CONSOLE).await,
        None => spawn_app_with(Arc::new(ManualClock::new(t0())), None, CONSOLE).await,
    }
}

async fn token(app: &TestApp, user: &str, scope: Scope) -> String {
    app.service
        .create_token(user, scope, "test")
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn signing_in_sets_a_signed_http_only_same_site_cookie() {
    let app = console(None).await;
    let alice = token(&app, "alice", Scope::Write).await;
    let mut b = Browser::new(&app);
    let resp = b.login(&alice).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/incidents");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("tocsin_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains(&alice[4..]), "the cookie holds no token");
    let (s, page) = b.get("/incidents").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("alice (write scope)"), "{page}");
    // Browsers send Origin on form posts; the console's own is accepted, and
    // its referrer policy lets browsers send it (no-referrer makes it "null").
    let resp = b
        .http
        .post(app.url("/login"))
        .header("origin", format!("http://{}", app.addr))
        .form(&[("token", alice.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["referrer-policy"], "same-origin");
    let resp = b
        .http
        .post(app.url("/login"))
        .header("origin", "null")
        .form(&[("token", alice.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Signing out forgets the cookie.
    let csrf = csrf_of(&page);
    let resp = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_no_cookie_means_the_sign_in_page() {
    let clock = Arc::new(ManualClock::new(t0()));
    let app = console(Some(clock.clone())).await;
    let mut b = Browser::new(&app);
    let (s, _) = b.get("/incidents").await;
    assert_eq!(s, 303);
    let resp = b.get_req("/incidents/INC-1").send().await.unwrap();
    assert_eq!(resp.headers()["location"], "/login");
    let resp = b.login("tsn_000000000000_nope").await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.text().await.unwrap().contains("wrong or was revoked"));
    // A forged cookie is no session.
    b.cookie = Some("tocsin_session=000000000000.9999999999.00.00".into());
    assert_eq!(b.get("/incidents").await.0, 303);
    // A session ends when it expires, and when its token is revoked.
    let alice = token(&app, "alice", Scope::Read).await;
    b.login(&alice).await;
    assert_eq!(b.get("/incidents").await.0, 200);
    clock.advance(chrono::Duration::minutes(61));
    assert_eq!(b.get("/incidents").await.0, 303);
    b.login(&alice).await;
    assert_eq!(b.get("/incidents").await.0, 200);
    let id = &alice[4..16];
    app.service.revoke_token(id, "test").await.unwrap();
    assert_eq!(b.get("/incidents").await.0, 303);
    app.stop().await;
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_is_refused_and_changes_nothing() {
    let app = console(None).await;
    app.pd("trigger", "a", "Disk full").await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains(">Acknowledge</button>"), "{page}");
    let resp = b.post("/incidents/INC-1/acknowledge", &[]).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("CSRF"));
    let resp = b
        .post("/incidents/INC-1/acknowledge", &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(resp.status(), 403);
    // Another session's token is no good either.
    let mut other = Browser::new(&app);
    other.login(&token(&app, "bob", Scope::Write).await).await;
    let (_, theirs) = other.get("/incidents/INC-1").await;
    let resp = b
        .post(
            "/incidents/INC-1/acknowledge",
            &[("csrf", &csrf_of(&theirs))],
        )
        .await;
    assert_eq!(resp.status(), 403);
    // A cross-site form is refused even with the token.
    let resp = b
        .http
        .post(app.url("/incidents/INC-1/acknowledge"))
        .header("cookie", b.cookie.as_ref().unwrap())
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "triggered"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_read_token_sees_no_buttons_and_its_posts_are_refused() {
    let app = console(None).await;
    app.pd("trigger", "a", "Disk full").await;
    let entries = app.incident("INC-1").await["timeline"]
        .as_array()
        .unwrap()
        .len();
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    let (s, page) = b.get("/incidents/INC-1").await;
    assert_eq!(s, 200);
    assert!(page.contains("Disk full"));
    for button in ["Acknowledge", "Resolve", "Escalate", "Snooze", "Add note"] {
        assert!(
            !page.contains(&format!(">{button}</button>")),
            "{button} shown"
        );
    }
    let csrf = csrf_of(&page); // the sign-out form's
    for action in ["acknowledge", "resolve", "escalate", "note"] {
        let resp = b
            .post(
                &format!("/incidents/INC-1/{action}"),
                &[("csrf", &csrf), ("text", "x")],
            )
            .await;
        assert_eq!(resp.status(), 403, "{action}");
    }
    let (_, week) = b.get("/schedules/primary").await;
    assert!(!week.contains("Add override"), "{week}");
    let resp = b
        .post(
            "/schedules/primary/overrides",
            &[
                ("csrf", &csrf),
                ("user", "bob"),
                ("start", "2026-12-02T12:00"),
                ("end", "2026-12-02T14:00"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let shown = app.incident("INC-1").await;
    assert_eq!(shown["incident"]["status"], "triggered");
    assert_eq!(shown["timeline"].as_array().unwrap().len(), entries);
    app.stop().await;
}

#[tokio::test]
async fn acting_from_the_console_records_the_user_and_token_on_the_timeline() {
    let app = console(None).await;
    app.pd("trigger", "a", "Disk full").await;
    let alice = token(&app, "alice", Scope::Write).await;
    let mut b = Browser::new(&app);
    b.login(&alice).await;
    let (_, page) = b.get("/incidents/INC-1").await;
    let csrf = csrf_of(&page);
    let resp = b
        .post("/incidents/INC-1/acknowledge", &[("csrf", &csrf)])
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/incidents/INC-1");
    b.post(
        "/incidents/INC-1/note",
        &[("csrf", &csrf), ("text", "rotated the logs")],
    )
    .await;
    b.post(
        "/incidents/INC-1/severity",
        &[("csrf", &csrf), ("severity", "sev1")],
    )
    .await;
    let shown = app.incident("INC-1").await;
    assert_eq!(shown["incident"]["status"], "acknowledged");
    assert_eq!(shown["incident"]["severity"], "sev1");
    let ack = timeline_entry(&shown["timeline"], "acknowledged");
    assert_eq!(ack["actor"]["name"]["user"], "alice");
    assert_eq!(
        ack["actor"]["name"]["principal"],
        format!("token:{}", &alice[4..16])
    );
    let note = timeline_entry(&shown["timeline"], "note");
    assert_eq!(note["actor"]["name"]["user"], "alice");
    // The page shows it, and a conflict is explained, not applied.
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(
        page.contains("Acknowledged</dt><dd>2026-12-02 10:00:00 UTC by alice"),
        "{page}"
    );
    assert!(page.contains("rotated the logs"));
    assert!(!page.contains(">Acknowledge</button>"));
    let resp = b
        .post("/incidents/INC-1/acknowledge", &[("csrf", &csrf)])
        .await;
    assert_eq!(resp.status(), 409);
    b.post(
        "/incidents/INC-1/resolve",
        &[("csrf", &csrf), ("note", "freed space")],
    )
    .await;
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains("<h2>Summary</h2>"), "{page}");
    assert!(page.contains("<table>"), "the summary's table is rendered");
    assert_eq!(
        app.incident("INC-1").await["incident"]["status"],
        "resolved"
    );
    app.stop().await;
}

#[tokio::test]
async fn hostile_alert_text_is_escaped_on_every_page() {
    let app = console(None).await;
    let evil = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    app.pd("trigger", "a", evil).await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    for path in ["/incidents", "/incidents/INC-1"] {
        let (s, page) = b.get(path).await;
        assert_eq!(s, 200);
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}");
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "{path}: {page}"
        );
    }
    let resp = b.get_req("/incidents/INC-1").send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    app.stop().await;
}

#[tokio::test]
async fn the_event_stream_delivers_a_new_incident_row() {
    let app = console(None).await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    assert_eq!(
        Browser::new(&app).get("/events").await.0,
        303,
        "no session, no stream"
    );
    let mut stream = b.get_req("/events?status=open").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    app.pd("trigger", "a", "Queue <backed> up").await;
    let mut seen = String::new();
    let read = async {
        while !seen.contains("\n\n") {
            let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an event within 10 s");
    assert!(seen.contains("event: incident"), "{seen}");
    assert!(seen.contains("id: INC-1"), "{seen}");
    let data = seen.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["key"], "INC-1");
    let html = v["html"].as_str().unwrap();
    assert!(html.starts_with(r#"<tr id="row-INC-1""#), "{html}");
    assert!(html.contains("Queue &lt;backed&gt; up"), "{html}");
    drop(stream);
    app.stop().await;
}

#[tokio::test]
async fn history_is_paged_with_a_cursor() {
    let app = console(None).await;
    for i in 0..30 {
        app.pd("trigger", &format!("k{i}"), &format!("alert {i}"))
            .await;
    }
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    let (_, first) = b.get("/incidents").await;
    assert_eq!(first.matches("<tr id=\"row-").count(), 25);
    assert!(first.contains("row-INC-30"));
    assert!(!first.contains("row-INC-5\""));
    assert!(
        first.contains(r#"href="/incidents?before=INC-6""#),
        "{first}"
    );
    let (_, second) = b.get("/incidents?before=INC-6").await;
    assert_eq!(second.matches("<tr id=\"row-").count(), 5);
    assert!(second.contains("row-INC-5\"") && second.contains("row-INC-1\""));
    assert!(!second.contains("Older incidents"));
    assert!(!second.contains("data-live"), "history pages are not live");
    // Filters narrow the list and are kept in the cursor's link.
    let (_, filtered) = b.get("/incidents?status=open&service=payments").await;
    assert!(
        filtered.contains("status=open&amp;service=payments&amp;before=INC-6"),
        "{filtered}"
    );
    let (_, none) = b.get("/incidents?service=api").await;
    assert!(none.contains("No incidents."));
    app.stop().await;
}

#[tokio::test]
async fn an_admin_adds_and_removes_an_override_on_the_week_view() {
    let app = console(None).await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Admin).await).await;
    let (_, oncall) = b.get("/oncall").await;
    assert!(
        oncall.contains(r#"<a href="/schedules/primary">primary</a></td><td>alice"#),
        "{oncall}"
    );
    let (_, week) = b.get("/schedules/primary").await;
    let csrf = csrf_of(&week);
    let resp = b
        .post(
            "/schedules/primary/overrides",
            &[
                ("csrf", &csrf),
                ("user", "bob"),
                ("start", "2026-12-02T09:00"),
                ("end", "2026-12-02T18:00"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (_, oncall) = b.get("/oncall").await;
    assert!(oncall.contains("</a></td><td>bob"), "{oncall}");
    let (_, week) = b.get("/schedules/primary?from=2026-12-02").await;
    assert!(
        week.contains(r#"<div class="shift override"><strong>bob</strong><br>09:00–18:00"#),
        "{week}"
    );
    let (_, api) = app.get("/v1/schedules/primary/overrides").await;
    let id = api["overrides"][0]["id"].as_u64().unwrap();
    assert_eq!(api["overrides"][0]["created_by"], "alice");
    let resp = b
        .post(
            &format!("/schedules/primary/overrides/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (_, api) = app.get("/v1/schedules/primary/overrides").await;
    assert_eq!(api["overrides"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn the_console_is_off_unless_enabled() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_console_is_on_the_api_listener_only() {
    let app = spawn_split(CONSOLE, "").await;
    let public = app.http.get(app.public_url("/login")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let api = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(api.status(), 200);
    let page = api.text().await.unwrap();
    assert!(
        page.contains(r#"<input type="password" name="token""#),
        "{page}"
    );
    app.stop().await;
}

/// MTTA and MTTR come from the stored incidents: the API's CSV, the
/// console's chart and table, and `tocsin report` agree.
#[tokio::test]
async fn response_reports_by_service_and_week() {
    let clock = Arc::new(ManualClock::new(t0()));
    let app = console(Some(clock.clone())).await;
    app.pd("trigger", "a", "one").await; // payments, INC-1
    app.pd("trigger", "b", "two").await; // INC-2
    clock.advance(chrono::Duration::minutes(4));
    app.post_with_token(
        "/v1/incidents/INC-1/acknowledge",
        Some(API_TOKEN),
        &serde_json::json!({}),
    )
    .await;
    clock.advance(chrono::Duration::minutes(2));
    app.post_with_token(
        "/v1/incidents/INC-2/acknowledge",
        Some(API_TOKEN),
        &serde_json::json!({}),
    )
    .await;
    clock.advance(chrono::Duration::minutes(24));
    app.post_with_token(
        "/v1/incidents/INC-1/resolve",
        Some(API_TOKEN),
        &serde_json::json!({}),
    )
    .await;
    let resp = app
        .http
        .get(app.url("/v1/reports/response?since=7d&format=csv"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "service,week,week_start,incidents,acknowledged,mtta_seconds,resolved,mttr_seconds\n\
         payments,2026-W49,2026-11-30,2,2,300,1,1800\n"
    );
    let (s, body) = app.get("/v1/reports/response?since=banana").await;
    assert_eq!(s, 400, "{body}");
    // By severity: both incidents are SEV2 (PagerDuty's "error").
    let (_, json) = app.get("/v1/reports/response?since=7d").await;
    assert_eq!(json["by_severity"][0]["severity"], "SEV2", "{json}");
    assert_eq!(json["by_severity"][0]["incidents"], 2, "{json}");
    let by_severity = app
        .http
        .get(app.url("/v1/reports/response?since=7d&format=csv&by=severity"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        by_severity,
        "severity,week,week_start,incidents,acknowledged,mtta_seconds,resolved,mttr_seconds\n\
         SEV2,2026-W49,2026-11-30,2,2,300,1,1800\n"
    );
    let (s, body) = app.get("/v1/reports/response?format=csv&by=colour").await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.to_string().contains("use service or severity"),
        "{body}"
    );

    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    let (s, page) = b.get("/reports?since=7d").await;
    assert_eq!(s, 200);
    assert!(page.contains("<svg"), "{page}");
    assert!(page.contains(">payments 2026-W49</text>"), "{page}");
    assert!(
        page.contains("<td>payments</td><td>2026-W49</td><td>2</td><td>2</td><td>5m 00s</td><td>1</td><td>30m 00s</td>"),
        "{page}"
    );
    let (s, csv) = b.get("/reports.csv?since=7d").await;
    assert_eq!(s, 200);
    assert!(csv.ends_with("payments,2026-W49,2026-11-30,2,2,300,1,1800\n"));
    assert!(
        page.contains("<td>SEV2</td><td>2026-W49</td><td>2</td><td>2</td><td>5m 00s</td><td>1</td><td>30m 00s</td>"),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="/reports.csv?since=7d&amp;by=severity">Download CSV</a>"#),
        "{page}"
    );
    let (s, csv) = b.get("/reports.csv?since=7d&by=severity").await;
    assert_eq!(s, 200);
    assert_eq!(csv, by_severity);

    let url = app.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "report", "--since", "7d", "--url", &url, "--token", API_TOKEN,
            ])
            .env_remove("TOCSIN_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("payments  2026-W49          2      2     5m 00s         1    30m 00s"),
        "{text}"
    );
    assert!(
        text.contains("SEV2      2026-W49          2      2     5m 00s         1    30m 00s"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_bootstrap_token_signs_in_as_api_with_admin_scope() {
    let app = console(None).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.login(API_TOKEN).await.status(), 303);
    let cookie = b.cookie.clone().unwrap();
    assert!(!cookie.contains(API_TOKEN), "{cookie}");
    let (s, page) = b.get("/schedules/primary").await;
    assert_eq!(s, 200);
    assert!(
        page.contains("api (admin scope)") && page.contains("Add override"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn runbook_steps_are_marked_done_from_the_console() {
    let app = console(None).await;
    app.pd("trigger", "a", "API down").await;
    app.service
        .attach_runbook(
            tocsin::incident::IncidentId(1),
            "service-outage",
            tocsin::incident::Actor::user("alice"),
        )
        .await
        .unwrap();
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains("Detection and reporting (current)"), "{page}");
    assert!(
        page.contains(r#"name="step" value="confirm-outage""#),
        "{page}"
    );
    assert!(page.contains(">Next phase</button>"));
    let csrf = csrf_of(&page);
    let resp = b
        .post(
            "/incidents/INC-1/step",
            &[
                ("csrf", &csrf),
                ("step", "confirm-outage"),
                ("note", "curl from two regions: 503"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(
        page.contains("done by alice: curl from two regions: 503"),
        "{page}"
    );
    assert!(!page.contains(r#"name="step" value="confirm-outage""#));
    let shown = app.incident("INC-1").await;
    let step = &shown["incident"]["runbook"]["steps"]["confirm-outage"];
    assert_eq!(step["by"], "alice", "{step}");
    app.stop().await;
}

#[test]
fn check_reports_every_console_problem() {
    let text = config_text_with(
        std::path::Path::new("/tmp/unused"),
        "127.0.0.1:0",
        None,
        "[console]\nenabled = true\nsession_ttl = \"1m\"\ncolour = \"red\"\n",
    );
    let err = tocsin::config::Config::from_toml_str(&text, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("console"), "{err}");
    assert!(err.contains("colour"), "an unknown key is refused: {err}");
    let text = text.replace("colour = \"red\"\n", "");
    let err = tocsin::config::Config::from_toml_str(&text, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("console.session_ttl: must be between 5m and 30d"),
        "{err}"
    );
    assert!(err.contains("console.session_key: is required"), "{err}");
}

/// [`CONSOLE`] with an escalation policy on payments, flapping, and a
/// configured weekly window.
fn with_policy() -> String {
    format!(
        r#"{CONSOLE}
[[escalation_policies]]
name = "payments"
repeat = 2
[[escalation_policies.steps]]
targets = [{{ schedule = "primary" }}]
delay = "5m"
[[escalation_policies.steps]]
targets = [{{ user = "bob" }}]
delay = "15m"
[[maintenance]]
name = "weekly patching"
services = ["api"]
reason = "OS updates"
cron = "0 0 2 * * Sun"
duration = "2h"
"#
    )
}

async fn console_with_policy() -> TestApp {
    spawn_app_with(
        Arc::new(ManualClock::new(t0())),
        Some("payments"),
        &with_policy(),
    )
    .await
}

#[tokio::test]
async fn a_window_started_from_the_console_holds_pages_and_ends_with_end() {
    let app = console_with_policy().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let (s, page) = b.get("/maintenance").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains(r#"<a href="/maintenance">Maintenance</a>"#));
    assert!(
        page.contains("weekly patching"),
        "the config window: {page}"
    );
    assert!(page.contains(">Start window</button>"), "{page}");
    let csrf = csrf_of(&page);
    let resp = b
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf),
                ("service", "payments"),
                ("duration", "2h"),
                ("reason", "db upgrade"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/maintenance");
    // The API lists it as made by alice, active for two hours.
    let (_, list) = app.get("/v1/maintenance").await;
    let w = list["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["source"] == "api")
        .expect("the console's window")
        .clone();
    assert_eq!(w["created_by"], "alice");
    assert_eq!(w["services"], serde_json::json!(["payments"]));
    assert_eq!(w["reason"], "db upgrade");
    assert_eq!(w["active"], true);
    assert_eq!(w["end"], "2026-12-02T12:00:00Z");
    let (_, page) = b.get("/maintenance").await;
    assert!(page.contains("db upgrade"), "{page}");
    assert!(page.contains("made by alice"), "{page}");
    assert!(page.contains(">End</button>"), "{page}");

    // An alert during it pages nobody, and its page says why.
    app.pd("trigger", "db-1", "Payments DB down").await;
    let (_, inc) = b.get("/incidents/INC-1").await;
    assert!(
        inc.contains("suppressed by maintenance window payments (db upgrade) until 2026-12-02 12:00 UTC: nobody paged"),
        "{inc}"
    );
    assert!(inc.contains("Nobody was paged."), "{inc}");

    // End stops it, recorded as alice; an alert after it pages.
    let resp = b
        .post(
            &format!("/maintenance/{}/end", w["id"].as_str().unwrap()),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (_, list) = app.get("/v1/maintenance").await;
    let ended = list["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == w["id"])
        .unwrap()
        .clone();
    assert_eq!(ended["active"], false);
    assert_eq!(ended["ended_by"], "alice");
    let (_, page) = b.get("/maintenance").await;
    assert!(!page.contains(">End</button>"), "{page}");
    assert!(page.contains("ended by alice"), "{page}");
    app.pd("trigger", "db-2", "Payments API slow").await;
    let (_, inc) = b.get("/incidents/INC-2").await;
    assert!(!inc.contains("suppressed by"), "{inc}");
    assert!(!inc.contains("Nobody was paged."), "{inc}");
    // A configured window has no End: it is ended by editing the config.
    let resp = b
        .post(
            "/maintenance/config:weekly%20patching/end",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(resp.status(), 409);
    app.stop().await;
}

#[tokio::test]
async fn a_read_session_sees_windows_but_no_form_and_its_posts_are_refused() {
    let app = console_with_policy().await;
    let (s, _) = app
        .post_with_token(
            "/v1/maintenance",
            Some(API_TOKEN),
            &serde_json::json!({"services": ["payments"], "duration": "1h", "reason": "rack move"}),
        )
        .await;
    assert_eq!(s, 201);
    let mut b = Browser::new(&app);
    b.login(&token(&app, "bob", Scope::Read).await).await;
    let (s, page) = b.get("/maintenance").await;
    assert_eq!(s, 200);
    assert!(page.contains("rack move"), "{page}");
    assert!(!page.contains("Start window"), "{page}");
    assert!(!page.contains(">End</button>"), "{page}");
    let csrf = csrf_of(&page); // the sign-out form's
    let resp = b
        .post(
            "/maintenance",
            &[("csrf", &csrf), ("service", "payments"), ("duration", "1h")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let resp = b.post("/maintenance/1/end", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 403);
    let (_, list) = app.get("/v1/maintenance").await;
    let runtime: Vec<_> = list["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["source"] == "api")
        .collect();
    assert_eq!(runtime.len(), 1, "{list}");
    assert_eq!(runtime[0]["active"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_maintenance_post_without_the_csrf_token_is_refused() {
    let app = console_with_policy().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let resp = b
        .post(
            "/maintenance",
            &[("service", "payments"), ("duration", "1h")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("CSRF"));
    let resp = b
        .post(
            "/maintenance",
            &[
                ("csrf", &"0".repeat(64)),
                ("service", "payments"),
                ("duration", "1h"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let (_, list) = app.get("/v1/maintenance").await;
    assert!(
        !list["windows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["source"] == "api"),
        "{list}"
    );
    // A bad duration is explained, not applied.
    let (_, page) = b.get("/maintenance").await;
    let resp = b
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf_of(&page)),
                ("service", "payments"),
                ("duration", "soon"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("soon"));
    app.stop().await;
}

#[tokio::test]
async fn a_hostile_window_reason_is_escaped() {
    let app = console_with_policy().await;
    let evil = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let (_, page) = b.get("/maintenance").await;
    let resp = b
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf_of(&page)),
                ("service", "payments"),
                ("duration", "1h"),
                ("reason", evil),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    app.pd("trigger", "db-1", "Payments DB down").await;
    for path in ["/maintenance", "/incidents/INC-1"] {
        let (s, page) = b.get(path).await;
        assert_eq!(s, 200);
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}");
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "{path}: {page}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_services_page_lists_each_policy_and_its_steps() {
    let app = console_with_policy().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "bob", Scope::Read).await).await;
    let (s, page) = b.get("/services").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains(r#"<a href="/services">Services</a>"#));
    assert!(page.contains("<h2>api</h2>"), "{page}");
    assert!(
        page.contains("<dt>Escalation policy</dt><dd>none: nobody is paged</dd>"),
        "api has none: {page}"
    );
    assert!(
        page.contains("<dt>Escalation policy</dt><dd>payments, repeats its steps 2 more times"),
        "{page}"
    );
    assert!(
        page.contains(r#"<li>Step 1: whoever is on call in <a href="/schedules/primary">primary</a>; after 5m unacknowledged, the next step</li>"#),
        "{page}"
    );
    assert!(
        page.contains("<li>Step 2: user bob; after 15m unacknowledged, the next step</li>"),
        "{page}"
    );
    assert!(
        page.contains("weekly patching <code>0 0 2 * * Sun</code> (UTC) for 2h: OS updates"),
        "api's configured window: {page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_flapping_incident_and_its_service_say_so() {
    let extra = format!(
        r#"{}
[[services]]
name = "checkout"
escalation_policy = "payments"
flapping = {{ changes = 2, within = "10m" }}
reopen_within = "1h"
[[integrations]]
name = "shop"
kind = "generic"
key = "console-shop-key"
service = "checkout"
"#,
        with_policy()
    );
    let app = spawn_app_with(Arc::new(ManualClock::new(t0())), Some("payments"), &extra).await;
    for fire in [true, false, true, false, true] {
        let body = if fire {
            serde_json::json!({"summary": "Checkout errors", "dedup_key": "errors"})
        } else {
            serde_json::json!({"dedup_key": "errors", "status": "resolve"})
        };
        let (s, out) = app.post_json("/hooks/console-shop-key", &body).await;
        assert_eq!(s, 202, "{out}");
        app.tick().await;
    }
    let mut b = Browser::new(&app);
    b.login(&token(&app, "bob", Scope::Read).await).await;
    let (_, inc) = b.get("/incidents/INC-1").await;
    assert!(
        inc.contains(r#"<dt>Flapping</dt><dd class="flapping">flapping: "#),
        "{inc}"
    );
    assert!(!inc.contains("suppressed by"), "{inc}");
    let (_, page) = b.get("/services").await;
    assert!(
        page.contains("<dt>Flapping</dt><dd>more than 2 changes within 10m: held in one incident, paged once</dd>"),
        "{page}"
    );
    assert!(
        page.contains("<dt>Reopens</dt><dd>an incident resolved less than 1h ago</dd>"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_status_update_and_the_status_page_toggle_from_the_console() {
    let app = console(None).await;
    app.pd("trigger", "a", "Checkout slow").await;
    let alice = token(&app, "alice", Scope::Write).await;
    let mut b = Browser::new(&app);
    b.login(&alice).await;
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains(">Post status update</button>"), "{page}");
    assert!(page.contains(">Show on status page</button>"), "{page}");
    let csrf = csrf_of(&page);
    let resp = b
        .post(
            "/incidents/INC-1/update",
            &[("csrf", &csrf), ("text", "  ")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = b
        .post(
            "/incidents/INC-1/update",
            &[
                ("csrf", &csrf),
                ("text", "Checkout is slow <for some>; we are on it."),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let resp = b
        .post(
            "/incidents/INC-1/public",
            &[("csrf", &csrf), ("public", "true")],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains("<h2>Status updates</h2>"), "{page}");
    assert!(page.contains("On the public status page."));
    assert!(page.contains("alice: Checkout is slow &lt;for some&gt;; we are on it."));
    assert!(page.contains(">Take off status page</button>"));
    let shown = app.incident("INC-1").await;
    assert_eq!(shown["incident"]["public"], true);
    let update = timeline_entry(&shown["timeline"], "status_update");
    assert_eq!(update["actor"]["name"]["user"], "alice");
    let resp = b
        .post(
            "/incidents/INC-1/public",
            &[("csrf", &csrf), ("public", "maybe")],
        )
        .await;
    assert_eq!(resp.status(), 400);
    app.stop().await;
}

/// A Berlin schedule: a weekly rotation round the clock, an office-hours
/// layer on top (weekdays 09:00-17:00 Berlin), and a configured override.
/// carol keeps New York time.
const LAYERED: &str = r#"
[[users]]
name = "carol"
time_zone = "America/New_York"
[[schedules]]
name = "team"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob"]
start = "2026-10-05T00:00:00"
handoff = "0 0 0 * * Mon"
[[schedules.layers]]
name = "office"
users = ["carol"]
start = "2026-10-05T00:00:00"
handoff = "0 0 0 * * Mon"
[[schedules.layers.restrictions]]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:00"
[[schedules.overrides]]
user = "bob"
start = "2026-12-02T12:00:00+01:00"
end = "2026-12-02T14:00:00+01:00"
"#;

async fn layered() -> TestApp {
    spawn_app_with(
        Arc::new(ManualClock::new(t0())),
        None,
        &format!("{CONSOLE}{LAYERED}"),
    )
    .await
}

/// The seven day cells of the week row labelled `label`, each as
/// "user HH:MM–HH:MM" per shift, joined by ", ".
fn week_row(page: &str, label: &str) -> Vec<String> {
    let head = format!(r#"<th scope="row">{label}</th>"#);
    let at = page
        .find(&head)
        .unwrap_or_else(|| panic!("no row {label}: {page}"))
        + head.len();
    let row = &page[at..at + page[at..].find("</tr>").unwrap()];
    row.split("<td>")
        .skip(1)
        .map(|cell| {
            cell.split("<strong>")
                .skip(1)
                .map(|s| {
                    let (user, rest) = s.split_once("</strong><br>").unwrap();
                    let times = rest.split("<br>").next().unwrap();
                    format!("{user} {times}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect()
}

#[tokio::test]
async fn the_week_shows_each_layer_the_overrides_and_the_final_schedule() {
    let app = layered().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    let (s, page) = b.get("/schedules/team?from=2026-11-30").await;
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("Times in UTC; the schedule's zone is Europe/Berlin."),
        "{page}"
    );
    // Rows in order: the layers as listed, the overrides, the result.
    let order: Vec<usize> = ["weekly", "office", "Overrides", "Final schedule"]
        .iter()
        .map(|l| page.find(&format!(r#"<th scope="row">{l}</th>"#)).unwrap())
        .collect();
    assert!(order.is_sorted(), "{page}");
    // Monday 00:00 Berlin is Sunday 23:00 UTC.
    let mut weekly = vec!["alice 00:00–24:00".to_string(); 6];
    weekly.push("alice 00:00–23:00, bob 23:00–24:00".into());
    assert_eq!(week_row(&page, "weekly"), weekly);
    // The office layer only inside its windows: 09:00-17:00 Berlin.
    let mut office = vec!["carol 08:00–16:00".to_string(); 5];
    office.extend(["".into(), "".into()]);
    assert_eq!(week_row(&page, "office"), office);
    assert_eq!(
        week_row(&page, "Overrides"),
        ["", "", "bob 11:00–13:00", "", "", "", ""]
    );
    let last = week_row(&page, "Final schedule");
    assert_eq!(
        last[0],
        "alice 00:00–08:00, carol 08:00–16:00, alice 16:00–24:00"
    );
    assert_eq!(
        last[2],
        "alice 00:00–08:00, carol 08:00–11:00, bob 11:00–13:00, carol 13:00–16:00, alice 16:00–24:00"
    );
    assert_eq!(last[5], "alice 00:00–24:00");
    assert_eq!(last[6], "alice 00:00–23:00, bob 23:00–24:00");
    // The shifts keep their markup and classes.
    assert!(
        page.contains(r#"<div class="shift layer"><strong>carol</strong><br>08:00–16:00<br><span class="muted">office</span></div>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<div class="shift override"><strong>bob</strong><br>11:00–13:00<br><span class="muted">override</span></div>"#),
        "{page}"
    );
    // alice has no zone of her own: UTC and the schedule's to choose from.
    assert!(!page.contains("(yours)"), "{page}");
    assert!(
        page.contains(r#"<a href="/schedules/team?from=2026-11-30&amp;tz=Europe%2FBerlin">Europe/Berlin</a> (the schedule's)"#),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_week_in_another_zone_shifts_the_times_and_keeps_the_zone() {
    let app = layered().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "carol", Scope::Read).await).await;
    let (s, page) = b
        .get("/schedules/team?from=2026-11-30&tz=America/New_York")
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("Times in America/New_York; the schedule's zone is Europe/Berlin."),
        "{page}"
    );
    // New York is six hours behind Berlin in December.
    assert_eq!(week_row(&page, "office")[0], "carol 03:00–11:00");
    assert_eq!(week_row(&page, "Overrides")[2], "bob 06:00–08:00");
    assert_eq!(
        week_row(&page, "weekly")[6],
        "alice 00:00–18:00, bob 18:00–24:00"
    );
    assert_eq!(
        week_row(&page, "Final schedule")[2],
        "alice 00:00–03:00, carol 03:00–06:00, bob 06:00–08:00, carol 08:00–11:00, alice 11:00–24:00"
    );
    // Previous and next keep the zone; carol's own zone is offered.
    for week in ["2026-11-23", "2026-12-07"] {
        let link = format!(r#"href="/schedules/team?from={week}&amp;tz=America%2FNew_York""#);
        assert!(page.contains(&link), "{link}: {page}");
    }
    assert!(
        page.contains(r#"<a href="/schedules/team?from=2026-11-30&amp;tz=America%2FNew_York" aria-current="true">America/New_York</a> (yours)"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="/schedules/team?from=2026-11-30&amp;tz=UTC">UTC</a>"#),
        "{page}"
    );
    // The default stays UTC, with links that name no zone.
    let (_, page) = b.get("/schedules/team?from=2026-11-30").await;
    assert!(page.contains("Times in UTC;"), "{page}");
    assert!(
        page.contains(r#"<a href="/schedules/team?from=2026-11-23">← previous week</a>"#),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_week_across_a_dst_change_has_a_25_hour_day() {
    let app = layered().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    // New York falls back on Sunday 2026-11-01 (EDT -> EST); Berlin did a
    // week earlier. The weekly handoff is Monday 00:00 Berlin.
    let (s, page) = b
        .get("/schedules/team?from=2026-10-27&tz=America/New_York")
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains(r#"<th>Sun 01 Nov <span class="muted">(25 h)</span></th>"#),
        "{page}"
    );
    assert!(page.contains("<th>Mon 02 Nov</th>"), "{page}");
    let weekly = week_row(&page, "weekly");
    // Until Sunday 06:00 UTC Berlin is five hours ahead (CET, EDT), then
    // six (EST). Sunday runs to local midnight, 05:00 UTC, and Monday
    // starts there, not an hour early.
    assert_eq!(weekly[0], "bob 00:00–24:00");
    assert_eq!(weekly[5], "bob 00:00–18:00, alice 18:00–24:00");
    assert_eq!(weekly[6], "alice 00:00–24:00");
    let office = week_row(&page, "office");
    assert_eq!(office[0], "carol 04:00–12:00");
    assert_eq!(office[5], "");
    assert_eq!(office[6], "carol 03:00–11:00");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_and_escaped() {
    let app = layered().await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Read).await).await;
    let (s, page) = b.get("/schedules/team?tz=Mars/Olympus_Mons").await;
    assert_eq!(s, 400, "{page}");
    assert!(
        page.contains("unknown time zone &#39;Mars/Olympus_Mons&#39;; use an IANA name"),
        "{page}"
    );
    let (s, page) = b.get("/schedules/team?tz=%3Cb%3Ex%3C%2Fb%3E").await;
    assert_eq!(s, 400, "{page}");
    assert!(!page.contains("<b>x</b>"), "{page}");
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;"), "{page}");
    // A week past the end of the calendar is refused, not a crash.
    let (s, page) = b.get("/schedules/team?from=%2B262142-12-28").await;
    assert_eq!(s, 400, "{page}");
    assert!(page.contains("out of the calendar"), "{page}");
    // An empty zone (the form left blank) is the default.
    let (s, page) = b.get("/schedules/team?from=2026-11-30&tz=").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Times in UTC;"), "{page}");
    app.stop().await;
}

/// From the browser as from chat: a write token declares an incident
/// (`/incident new`), which then escalates; an admin gives a role, a write
/// token may not.
#[tokio::test]
async fn declaring_an_incident_and_giving_a_role_from_the_console() {
    let app = console(None).await;
    let mut b = Browser::new(&app);
    b.login(&token(&app, "alice", Scope::Write).await).await;
    let (_, list) = b.get("/incidents").await;
    assert!(
        list.contains(r#"<form method="post" action="/incidents" class="filters declare">"#),
        "{list}"
    );
    let csrf = csrf_of(&list);
    let resp = b
        .post(
            "/incidents",
            &[
                ("csrf", &csrf),
                ("title", "Checkout <b>down</b>"),
                ("severity", "sev1"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/incidents/INC-1");
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["title"], "Checkout <b>down</b>");
    assert_eq!(inc["incident"]["severity"], "sev1");
    let (_, page) = b.get("/incidents/INC-1").await;
    assert!(page.contains("Checkout &lt;b&gt;down&lt;/b&gt;"), "{page}");
    assert!(
        !page.contains("Give role"),
        "a write token gives no roles: {page}"
    );
    // A write token may not give a role; a title is required.
    let resp = b
        .post(
            "/incidents/INC-1/role",
            &[("csrf", &csrf), ("role", "commander"), ("user", "bob")],
        )
        .await;
    assert_eq!(resp.status(), 403);
    let resp = b
        .post("/incidents", &[("csrf", &csrf), ("title", " ")])
        .await;
    assert_eq!(resp.status(), 400);
    // Without the CSRF token, nothing is declared.
    let resp = b.post("/incidents", &[("title", "forged")]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(app.incidents().await.len(), 1);

    let mut admin = Browser::new(&app);
    admin.login(&token(&app, "bob", Scope::Admin).await).await;
    let (_, page) = admin.get("/incidents/INC-1").await;
    assert!(page.contains("Give role"), "{page}");
    let csrf = csrf_of(&page);
    let resp = admin
        .post(
            "/incidents/INC-1/role",
            &[("csrf", &csrf), ("role", "commander"), ("user", "alice")],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let inc = app.incident("INC-1").await;
    assert_eq!(inc["incident"]["roles"]["commander"], "alice", "{inc}");
    for (role, user) in [("captain", "alice"), ("scribe", "mallory")] {
        let resp = admin
            .post(
                "/incidents/INC-1/role",
                &[("csrf", &csrf), ("role", role), ("user", user)],
            )
            .await;
        assert_eq!(resp.status(), 400, "{role} {user}");
    }
    let (_, timeline) = app.get("/v1/incidents/INC-1/timeline").await;
    assert!(timeline.to_string().contains("commander"), "{timeline}");
    app.stop().await;
}
