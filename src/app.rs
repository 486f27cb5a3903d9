//! Wiring: opens the store, builds the service and serves HTTP until shutdown.

mod hosts;

use crate::chat::deliver::PlatformDelivery;
use crate::chat::discord::{Discord, DiscordPlatform};
use crate::chat::handler::ChatHandler;
use crate::chat::replay::ReplayGuard;
use crate::chat::slack::SlackPlatform;
use crate::chat::slack::http::{SlackState, router as slack_router};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{AppState, routes};
use crate::notify::worker::{ChatDelivery, Notifiers, Worker};
use crate::service::{Directory, Service};
use crate::store::{PostgresStore, SledStore, Store, StoreError};
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A notifier could not be set up.
    #[error("setting up notifications: {0}")]
    Notify(String),
    /// Runbooks or templates could not be loaded.
    #[error("loading runbooks and templates:\n{0}")]
    Setup(String),
}

/// How long in-flight deliveries may take to finish at shutdown.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The assembled application: what [`run`] serves, and what tests drive.
pub struct App {
    /// Every route, for one listener serving everything (no
    /// `[server] public_listen`).
    pub router: axum::Router,
    /// What the public listener serves: intake, Slack, Discord, `/healthz`.
    pub public_router: axum::Router,
    /// What the API listener serves: `/v1/*`, `/metrics`, `/readyz`,
    /// `/healthz`.
    pub api_router: axum::Router,
    /// The one writer.
    pub service: Service,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The outbox worker.
    pub worker: Worker,
    /// Discord's command registration and gateway client, if configured.
    pub discord: Option<Discord>,
}

/// `[smtp]` as the service's mailer, for sign-in links.
struct SmtpMailer(crate::notify::email::EmailSender);

impl crate::service::sign_in::Mailer for SmtpMailer {
    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        text: String,
    ) -> crate::service::sign_in::MailFuture<'a> {
        Box::pin(self.0.send_text(to, subject, text))
    }
}

impl App {
    /// Wires the service, the notifiers and the routes over an open store.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let config = Arc::new(config);
        let directory =
            Arc::new(Directory::load(config.clone()).map_err(|e| AppError::Setup(e.join("\n")))?);
        let service = Service::new(store.clone(), clock, directory)?;
        if let Some(smtp) = &config.smtp {
            let sender =
                crate::notify::email::EmailSender::new(smtp, config.notify.request_timeout)
                    .map_err(AppError::Notify)?;
            service.set_mailer(Arc::new(SmtpMailer(sender)));
        }
        let slack = match &config.slack {
            Some(c) => Some(Arc::new(SlackPlatform::new(c).map_err(AppError::Notify)?)),
            None => None,
        };
        let discord_platform = match &config.discord {
            Some(c) => Some(Arc::new(
                DiscordPlatform::new(c, config.notify.request_timeout).map_err(AppError::Notify)?,
            )),
            None => None,
        };
        let mut chat: Vec<Arc<dyn ChatDelivery>> = Vec::new();
        if let Some(s) = &slack {
            chat.push(Arc::new(PlatformDelivery::new(service.clone(), s.clone())));
        }
        if let Some(d) = &discord_platform {
            chat.push(Arc::new(PlatformDelivery::new(service.clone(), d.clone())));
        }
        let notifiers = Arc::new(Notifiers::new(config.clone(), chat).map_err(AppError::Notify)?);
        let worker = Worker::new(service.clone(), notifiers);
        let handler = ChatHandler::new(service.clone());
        let slack_state = match (&config.slack, slack) {
            (Some(c), Some(platform)) => Some(SlackState {
                workspace: crate::chat::slack::http::Workspace {
                    team_id: c.team_id.clone(),
                    enterprise_id: c.enterprise_id.clone(),
                },
                handler: handler.clone(),
                platform,
                verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
                    c.signing_secret.expose().to_string(),
                )),
                clock: service.clock().clone(),
                replay: Arc::new(ReplayGuard::new(
                    crate::chat::slack::http::MAX_AGE_SECONDS,
                    crate::chat::replay::DEFAULT_CAPACITY,
                )),
                http: reqwest::Client::builder()
                    .timeout(config.notify.request_timeout)
                    .build()
                    .map_err(|e| AppError::Notify(e.to_string()))?,
            }),
            _ => None,
        };
        let discord = match (&config.discord, discord_platform) {
            (Some(c), Some(platform)) => Some(
                Discord::new(c, platform, handler.clone(), service.clock().clone())
                    .map_err(AppError::Notify)?,
            ),
            _ => None,
        };
        let state = AppState {
            service: service.clone(),
            config,
        };
        let max_body = state.config.server.max_body_bytes;
        let routes = routes(state);
        let mut public = routes.public;
        if let Some(s) = slack_state {
            public = public.merge(slack_router(s));
        }
        if let Some(r) = discord.as_ref().and_then(Discord::router) {
            public = public.merge(r);
        }
        let finish = |r: axum::Router| crate::http::finish(r, max_body);
        Ok(Self {
            router: finish(
                public
                    .clone()
                    .merge(routes.api.clone())
                    .merge(routes.health.clone()),
            ),
            public_router: finish(public.merge(routes.health.clone())),
            api_router: finish(routes.api.merge(routes.health)),
            service,
            store,
            worker,
            discord,
        })
    }

    /// Starts the escalation scheduler and the outbox worker (and Discord's
    /// command registration and gateway client); they stop when `stop`
    /// turns true.
    pub fn spawn_background(
        &self,
        stop: &tokio::sync::watch::Sender<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let service = self.service.clone();
        let scheduler_stop = stop.subscribe();
        let mut tasks = vec![
            tokio::spawn(async move {
                // Heartbeats are armed before the first timer fires, so one
                // overdue while tocsin was down gets its grace first.
                if let Err(e) = service.start_heartbeats().await {
                    tracing::error!(error = %e, "Arming the heartbeat timers failed; pings still arm them");
                }
                crate::escalation::scheduler::run(service, scheduler_stop).await
            }),
            tokio::spawn(self.worker.clone().run(stop.subscribe(), SHUTDOWN_GRACE)),
            tokio::spawn(self.service.clone().run_election(stop.subscribe())),
            tokio::spawn(self.service.clone().run_retention(stop.subscribe())),
        ];
        if let Some(d) = &self.discord {
            tasks.push(tokio::spawn(
                d.clone().run(stop.subscribe(), self.service.leader_watch()),
            ));
        }
        tasks
    }
}

/// The sockets tocsin serves on.
pub struct Listeners {
    /// `[server] listen`: the API, or everything without `public`.
    pub api: TcpListener,
    /// `[server] public_listen`: intake and the chat platforms.
    pub public: Option<TcpListener>,
}

impl Listeners {
    /// Binds `[server] listen` and, if set, `[server] public_listen`.
    pub async fn bind(server: &crate::config::ServerConfig) -> std::io::Result<Self> {
        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))
        };
        let api = bind(server.listen).await?;
        let public = match server.public_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { api, public })
    }
}

/// Serves `app` on `listeners` until `shutdown` resolves; each listener
/// has its own connection limit, and both drain for the grace period.
pub async fn serve(
    app: &App,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: crate::http::Limits,
) -> std::io::Result<()> {
    // The console's event streams end at shutdown, so they do not hold the drain.
    let feed = app.service.feed().clone();
    let shutdown = async move {
        shutdown.await;
        feed.close();
    };
    let Some(public) = listeners.public else {
        info!(addr = %listeners.api.local_addr()?, "Listening (API and public routes)");
        return crate::http::serve(listeners.api, app.router.clone(), shutdown, limits).await;
    };
    info!(api = %listeners.api.local_addr()?, public = %public.local_addr()?, "Listening (API; public routes)");
    let (stop, _) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = crate::http::serve(
        listeners.api,
        app.api_router.clone(),
        stopped(stop.subscribe()),
        limits,
    );
    let public = crate::http::serve(
        public,
        app.public_router.clone(),
        stopped(stop.subscribe()),
        limits,
    );
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
        Ok(())
    };
    tokio::try_join!(api, public, signal).map(|_| ())
}

/// Runs tocsin on `listeners` until `shutdown` completes, then drains
/// in-flight requests and flushes the store.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with_clock(config, listeners, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let storage = config.storage.clone();
    let store = tokio::task::spawn_blocking(move || open_store(&storage))
        .await
        .map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??;
    let limits = crate::http::Limits::from_config(&config.server, SHUTDOWN_GRACE);
    warn_if_files_run_short(limits.max_connections);
    let app = App::new(config, store.clone(), clock)?;
    let (stop, _) = tokio::sync::watch::channel(false);
    let background = app.spawn_background(&stop);
    serve(&app, listeners, shutdown, limits).await?;
    info!("HTTP drained; stopping the scheduler and the outbox");
    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }
    info!("Flushing the store");
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| StoreError::Backend(format!("final flush: {e}")))??;
    info!("Stopped");
    Ok(())
}

/// Opens the store `[storage]` names: sled in `path`, or PostgreSQL at
/// `url` (its schema brought up to date). Blocks; call it off the runtime.
pub fn open_store(storage: &crate::config::StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    match storage.backend {
        crate::config::StorageBackend::Sled => {
            let cache = storage.cache_mb.saturating_mul(1024 * 1024);
            Ok(Arc::new(SledStore::open_with_cache(&storage.path, cache)?))
        }
        crate::config::StorageBackend::Postgres => {
            let url = storage.url.as_ref().ok_or_else(|| {
                StoreError::Backend("[storage] backend = \"postgres\" needs a url".into())
            })?;
            let store = PostgresStore::open(url.expose(), storage.pool_size)?;
            info!(pool_size = storage.pool_size, "Opened the PostgreSQL store");
            Ok(Arc::new(store))
        }
    }
}

/// Warns when the process's file limit leaves too little room above
/// `[server] max_connections` (the store, the outbound connections and the
/// listener need descriptors too).
fn warn_if_files_run_short(max_connections: usize) {
    // Linux only; elsewhere there is nothing to read and nothing to say.
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < max_connections + 256
    {
        warn!(
            file_limit = soft,
            max_connections,
            "The open-file limit leaves little room above [server] max_connections; raise it (LimitNOFILE=65536) or lower max_connections"
        );
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    info!("Shutting down: finishing in-flight requests (signal again to exit at once)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("Second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
