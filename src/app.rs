//! Wiring: opens the store, builds the service and serves HTTP until shutdown.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{AppState, router};
use crate::service::Service;
use crate::store::{SledStore, StoreError};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The assembled application: what [`run`] serves, and what tests drive.
pub struct App {
    /// The HTTP routes.
    pub router: axum::Router,
    /// The one writer.
    pub service: Service,
    /// The store.
    pub store: Arc<SledStore>,
}

impl App {
    /// Wires the service and the routes over an open store.
    pub fn new(config: Config, store: Arc<SledStore>, clock: Arc<dyn Clock>) -> Self {
        let service = Service::new(store.clone(), clock);
        let state = AppState {
            service: service.clone(),
            config: Arc::new(config),
        };
        Self {
            router: router(state),
            service,
            store,
        }
    }
}

/// Runs tocsin on `listener` until `shutdown` completes, then drains
/// in-flight requests and flushes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with_clock(config, listener, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let path = config.storage.path.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || SledStore::open(&path))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??,
    );
    let app = App::new(config, store.clone(), clock);
    info!(addr = %listener.local_addr()?, "Listening");
    axum::serve(listener, app.router)
        .with_graceful_shutdown(shutdown)
        .await?;
    info!("Draining done; flushing the store");
    tokio::task::spawn_blocking(move || store.flush_blocking())
        .await
        .map_err(|e| StoreError::Backend(format!("final flush: {e}")))??;
    info!("Stopped");
    Ok(())
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
