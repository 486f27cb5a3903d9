//! Chat calls paced by the platforms' rate limits: a burst into one
//! channel waits its turn instead of meeting a 429, on both platforms.

use crate::common::fake_discord::FakeDiscord;
use crate::common::fake_slack::FakeSlack;
use crate::discord::{platform, posted_text};
use std::time::{Duration, Instant};
use tocsin::chat::{ChatMessage, ChatPlatform};

/// Posts in one burst: more than either platform takes at once.
const BURST: usize = 10;

fn slack_platform(fake: &FakeSlack) -> tocsin::chat::slack::SlackPlatform {
    let cfg = tocsin::config::Config::from_toml_str(
        &format!(
            "[slack]\nbot_token = \"xoxb-test-token\"\nsigning_secret = \"s\"\nteam_id = \"T0TEAM\"\napi_url = \"{}\"\n",
            fake.api_url()
        ),
        &Default::default(),
    )
    .unwrap();
    tocsin::chat::slack::SlackPlatform::new(cfg.slack.as_ref().unwrap()).unwrap()
}

/// Posts `BURST` numbered messages to `channel` one after the other, as
/// the outbox does with an incident's posts; how long they took.
async fn burst(platform: &dyn ChatPlatform, channel: &str) -> Duration {
    let started = Instant::now();
    for i in 0..BURST {
        let text = ChatMessage::Text(format!("update {i:02}"));
        platform
            .post(channel, &text)
            .await
            .unwrap_or_else(|e| panic!("{} post {i}: {e:?}", platform.name()));
    }
    started.elapsed()
}

#[tokio::test]
async fn a_burst_into_one_channel_arrives_whole_in_order_with_no_429_on_either_platform() {
    let (slack_fake, discord_fake) = (FakeSlack::start().await, FakeDiscord::start().await);
    let slack = slack_platform(&slack_fake);
    let discord = platform(&discord_fake);
    slack_fake.add_channel("C0INC7", "inc-7-payments", false, true);
    let channel = discord_fake.add_channel(0, "inc-7-payments", None);
    let (slack_took, discord_took) =
        tokio::join!(burst(&slack, "C0INC7"), burst(&discord, &channel));
    println!("{BURST} posts into one channel: Slack {slack_took:?}, Discord {discord_took:?}");
    let want: Vec<String> = (0..BURST).map(|i| format!("update {i:02}")).collect();

    assert_eq!(slack_fake.rate_limited(), 0);
    let posts = slack_fake.calls();
    assert!(posts.iter().all(|c| c.status == 200), "{posts:#?}");
    let slack_texts: Vec<String> = posts
        .iter()
        .filter(|c| c.method == "chat.postMessage")
        .map(|c| c.params["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(slack_texts, want);
    // Slack: 4 at once, then about one a second.
    assert!(slack_took >= Duration::from_millis(1050 * (BURST as u64 - 4)));

    assert_eq!(discord_fake.rate_limited(), 0);
    let discord_texts: Vec<String> = discord_fake
        .messages(&channel)
        .iter()
        .map(posted_text)
        .collect();
    assert_eq!(discord_texts, want);
    assert!(
        discord_fake.calls().iter().all(|c| c.status == 200),
        "{:#?}",
        discord_fake.calls()
    );
    // Discord: 5 per 5 s, the 6th waited for the bucket's reset.
    assert!(discord_took >= Duration::from_millis(4900));
}

#[tokio::test]
async fn the_slack_fake_refuses_a_burst_past_slacks_limit_with_retry_after() {
    // Straight at the fake, unpaced: what tocsin's pacing avoids.
    let fake = FakeSlack::start().await;
    fake.add_channel("C1", "incident", false, true);
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..7 {
        let resp = http
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .bearer_auth("xoxb-test-token")
            .json(&serde_json::json!({"channel": "C1", "text": format!("m{i}")}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = resp.headers().get("retry-after").cloned();
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(
                body,
                serde_json::json!({"ok": false, "error": "ratelimited"})
            );
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(fake.rate_limited(), 2);
    // Another channel is not limited.
    let resp = http
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth("xoxb-test-token")
        .json(&serde_json::json!({"channel": "C2", "text": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_discord_fake_describes_its_buckets_like_discord() {
    let fake = FakeDiscord::start().await;
    let channel = fake.add_channel(0, "inc-8", None);
    let other = fake.add_channel(0, "inc-9", None);
    let http = reqwest::Client::new();
    let post = |ch: &str| {
        http.post(format!("{}/api/v10/channels/{ch}/messages", fake.api_url()))
            .header("authorization", "Bot t")
            .json(&serde_json::json!({"content": "hi"}))
            .send()
    };
    let header = |r: &reqwest::Response, k: &str| {
        r.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let r = post(&channel).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), "5");
        assert_eq!(
            header(&r, "x-ratelimit-bucket"),
            crate::common::fake_discord::BUCKET_HASH
        );
        let reset: f64 = header(&r, "x-ratelimit-reset-after").parse().unwrap();
        assert!(reset > 4.0 && reset <= 5.0, "{reset}");
        assert!(header(&r, "x-ratelimit-reset-after").contains('.'));
        remaining.push(header(&r, "x-ratelimit-remaining"));
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    let r = post(&channel).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-ratelimit-scope"), "user");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&r, "retry-after"), "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    assert!(body["retry_after"].as_f64().unwrap() > 4.0);
    assert_eq!(fake.rate_limited(), 1);
    // The same hash, another channel: another bucket.
    let r = post(&other).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining"), "4");
}
