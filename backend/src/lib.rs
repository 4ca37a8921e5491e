//! ducklake-backend: SQL over HTTP on a DuckLake lakehouse.
//!
//! [`Application::build`] assembles exactly what `ducklake-backend serve`
//! runs — engine, state, routes, bound listener — so integration tests start
//! the same app on port 0.

pub mod api;
pub mod config;
pub mod engine;
pub mod error;
pub mod format;
pub mod telemetry;

use std::{net::TcpListener, sync::Arc};

use actix_web::{dev::Server, middleware, web, App, HttpServer};

use crate::{api::AppState, config::Config, engine::Engine};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct Application {
    server: Server,
    port: u16,
    engine: Arc<Engine>,
}

impl Application {
    /// Opens the engine (on a blocking thread) and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        let engine_config = Arc::clone(&config);
        let engine =
            Arc::new(tokio::task::spawn_blocking(move || Engine::open(&engine_config)).await??);

        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();

        let state = web::Data::new(AppState {
            engine: Arc::clone(&engine),
            config: Arc::clone(&config),
        });
        let max_body = config.server.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(middleware::from_fn(telemetry::log_request))
                .configure(|cfg| api::configure(cfg, max_body))
        })
        .shutdown_timeout(30);
        if config.server.workers > 0 {
            server = server.workers(config.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                address: format!("port {port}"),
                source,
            })?
            .run();
        tracing::info!(host = %config.server.host, port, "listening");
        Ok(Self {
            server,
            port,
            engine,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM or a handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
