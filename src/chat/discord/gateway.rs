//! Gateway mode, for bots without a public URL: a serenity client keeps a
//! gateway connection, and its `interaction_create` feeds the same answering
//! as the HTTP endpoint. Responses go through the interaction's
//! `create_response` (the callback endpoint) instead of the HTTP answer.

use super::http::{DiscordState, Incoming};
use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, Interaction, Ready, async_trait,
};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Feeds interactions from the gateway to the shared answering.
pub struct Handler {
    state: DiscordState,
}

impl Handler {
    /// A handler answering with `state`.
    pub fn new(state: DiscordState) -> Self {
        Self { state }
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        info!(user = %ready.user.name, session = %ready.session_id, "Discord gateway ready");
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Some(incoming) = Incoming::from_serenity(&interaction) else {
            return;
        };
        let (first, later) = self.state.answer(incoming).await;
        let sent = match &interaction {
            Interaction::Command(c) => c.create_response(&ctx.http, first).await,
            Interaction::Component(c) => c.create_response(&ctx.http, first).await,
            Interaction::Ping(p) => {
                ctx.http
                    .create_interaction_response(p.id, &p.token, &first, Vec::new())
                    .await
            }
            _ => Ok(()),
        };
        if let Err(e) = sent {
            warn!(error = %e, "Could not answer a Discord interaction");
            return;
        }
        if let Some(later) = later {
            later.await;
        }
    }
}

/// Runs the gateway client until `stop`, reconnecting after failures.
pub async fn run(state: DiscordState, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let http = state.platform.new_http();
        // Interactions arrive whatever the intents: ask for none.
        let built = ClientBuilder::new_with_http(http, GatewayIntents::empty())
            .event_handler(Handler::new(state.clone()))
            .await;
        let mut client = match built {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Could not set up the Discord gateway client");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        let shards = client.shard_manager.clone();
        tokio::select! {
            r = client.start() => {
                match r {
                    Ok(()) => info!("The Discord gateway connection ended"),
                    Err(e) => warn!(error = %e, "The Discord gateway connection failed"),
                }
            }
            _ = stop.changed() => {
                shards.shutdown_all().await;
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}
