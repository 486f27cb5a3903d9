//! The integration tests' fake Slack Web API (`tests/integration/common/
//! fake_slack.rs`) as a program, for the interop scripts under
//! `tests/interop/`: the same code answers both, so there is one fake Slack.
//!
//! `cargo run --example fake_slack -- PORT [--rate-limit-first-post]`
//!
//! It serves the Web API under `http://127.0.0.1:PORT/api/` and lists the
//! calls it got at `GET /_calls`. With `--rate-limit-first-post`, the first
//! `chat.postMessage` is answered 429 with `Retry-After: 1`, as Slack does.

#[allow(dead_code)]
#[path = "../tests/integration/common/fake_slack.rs"]
mod fake_slack;
// The published specs the fake checks each call against.
#[allow(dead_code)]
#[path = "../tests/integration/common/spec.rs"]
mod spec;

use fake_slack::{Fail, FakeSlack};
use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: fake_slack PORT [--rate-limit-first-post]");
        std::process::exit(2);
    };
    let fake = FakeSlack::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await;
    if args.iter().any(|a| a == "--rate-limit-first-post") {
        fake.fail("chat.postMessage", &[Fail::RateLimited(1)]);
    }
    println!("fake Slack Web API at {}", fake.api_url());
    let _ = tokio::signal::ctrl_c().await;
}
