//! Start-up and shutdown: [`Application::build`] assembles exactly what
//! `ducklake-backend serve` runs (object storage checked, our store opened
//! and migrated, the engine, jobs, audit, maintenance, the HTTP server on a
//! bound listener), so integration tests start the same app on port 0;
//! [`Application::run_until_stopped`] drains on SIGTERM and closes DuckDB
//! before the process exits.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{dev::Server, middleware, web, App, HttpServer};

use crate::{
    api, api::AppState, audit, auth, bucket, bucket::Bucket, config::Config, engine,
    engine::Engine, jobs, maintenance, metrics, performance, store, store::Store,
};

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
    #[error("catalog database: {0}")]
    Store(#[from] store::StoreError),
    #[error("object storage: {0}")]
    Bucket(#[from] bucket::BucketError),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("Flight SQL: {0}")]
    Flight(String),
    #[error("HTTPS: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Opens our own store and checks its schema: applies pending migrations when
/// `migrate` is set (always for the local store, which no other process can
/// reach), else refuses a schema that is behind or differs from this build.
pub async fn open_store(config: &Config, migrate: bool) -> Result<Store, StartupError> {
    let store = Store::open(config)?;
    store
        .wait_until_reachable(config.ducklake.connection_retries)
        .await?;
    if migrate || matches!(store, Store::Local(_)) {
        let report = store.migrate().await?;
        tracing::info!(version = report.version, applied = ?report.applied, "schema migrated");
    } else {
        let version = store.verify().await?;
        tracing::info!(version, "schema verified");
    }
    Ok(store)
}

/// Stores the operator's bootstrap admin key (once: later starts find its
/// hash) and says at start-up how requests are authenticated.
async fn bootstrap_auth(config: &Config, store: &Store) -> Result<(), StartupError> {
    if !config.auth.enabled {
        tracing::warn!(
            host = %config.server.host,
            "authentication is off (AUTH_ENABLED=false): every caller is an admin; \
             allowed only on a loopback address"
        );
        return Ok(());
    }
    let key = config.auth.bootstrap_key().map_err(StartupError::Auth)?;
    if let Some(key) = key {
        let row = auth::stored_key(key.expose(), "bootstrap", crate::role::Role::Admin, None);
        let prefix = row.record.prefix.clone();
        if store.insert_key(&row).await? {
            tracing::info!(prefix, "bootstrap admin key stored");
        }
    } else if store.list_keys().await?.is_empty() {
        tracing::warn!(
            "authentication is on and no API key exists: create one with \
             `ducklake-backend keys create --owner <name> --role admin` or set AUTH_BOOTSTRAP_KEY"
        );
    }
    Ok(())
}

pub struct Application {
    /// The services (held by the server while it runs): what the
    /// shutdown ends first.
    services: std::sync::Weak<AppState>,
    server: Server,
    port: u16,
    audit: audit::Audit,
    engine: Arc<Engine>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    grace: Duration,
    flight_port: Option<u16>,
    flight_stop: Option<tokio::sync::oneshot::Sender<()>>,
    flight_task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// How long an idle keep-alive connection stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

impl Application {
    /// Opens the engine (on a blocking thread) and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_sources(config, Default::default()).await
    }

    /// [`Application::build`], remembering where each setting came from
    /// (shown by `/config/summary`).
    pub async fn build_with_sources(
        config: Config,
        sources: std::collections::BTreeMap<String, String>,
    ) -> Result<Self, StartupError> {
        let missing = config.missing_for(crate::config::Uses::EVERYTHING);
        if !missing.is_empty() {
            return Err(crate::config::ConfigError(missing).into());
        }
        let config = Arc::new(config);
        let data = Arc::new(Bucket::from_config(&config)?);
        let bucket = data
            .wait_until_reachable(
                config.ducklake.connection_retries,
                config.storage.create_bucket,
            )
            .await?;
        tracing::info!(storage = data.kind(), ?bucket, "object storage reachable");
        let store = open_store(&config, config.postgres.migrate_on_start).await?;
        bootstrap_auth(&config, &store).await?;
        spawn_idle_reaper(
            &store,
            Duration::from_millis(config.postgres.idle_timeout_ms),
        );
        let engine_config = Arc::clone(&config);
        let engine =
            Arc::new(tokio::task::spawn_blocking(move || Engine::open(&engine_config)).await??);

        // Read with the listener's binding: a broken file fails the start,
        // it does not serve plain HTTP.
        let tls = crate::tls::http_server_config(&config.server).map_err(StartupError::Tls)?;
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();

        let metrics = Arc::new(metrics::Metrics::new());
        let info = engine.info();
        let extensions = info
            .extensions
            .iter()
            .map(|(name, version)| format!("{name}={version}"))
            .collect::<Vec<_>>()
            .join(",");
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), &info.duckdb_version, &extensions])
            .set(1);
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let jobs = jobs::Jobs::start(
            Arc::clone(&engine),
            store.clone(),
            data.beside_data_path(&config, "jobs")?,
            config.jobs.clone(),
            Arc::clone(&draining),
        )
        .await?;
        let audit = audit::Audit::start(store.clone(), metrics.audit_counters());
        let maintenance = Arc::new(maintenance::Maintenance::new(
            Arc::clone(&engine),
            Arc::clone(&data),
            store.clone(),
            audit.clone(),
            config.maintenance.clone(),
            metrics.maintenance_rounds.clone(),
            Arc::clone(&draining),
        ));
        maintenance.spawn_rounds();
        let flight = match config.flight.enabled {
            false => None,
            true => Some(bind_flight(&config)?),
        };
        let (cache_bytes, cache_entry_bytes) = config.cache.budget(
            engine
                .memory_limit_bytes()
                .await
                .unwrap_or(1024 * 1024 * 1024),
        );
        let cache = Arc::new(crate::cache::ResultCache::new(
            config.cache.enabled,
            cache_bytes,
            cache_entry_bytes,
            metrics.cache_counters(),
        ));
        tracing::info!(
            enabled = cache.enabled(),
            max_bytes = cache_bytes,
            max_entry_bytes = cache_entry_bytes,
            "result cache"
        );
        let services = Arc::new(AppState {
            engine: Arc::clone(&engine),
            config: Arc::clone(&config),
            store: store.clone(),
            bucket: data,
            metrics,
            config_sources: Arc::new(sources),
            performance: Arc::new(performance::Tracker::default()),
            auth: Arc::new(auth::Authenticator::new(config.auth.enabled, store.clone())),
            draining: Arc::clone(&draining),
            jobs: Arc::new(jobs),
            audit: audit.clone(),
            maintenance,
            flight: flight.as_ref().map(|(_, _, listener)| listener.clone()),
            cache,
            transactions: crate::transactions::Transactions::new(&config),
            uploads: crate::uploads::SpoolBudget::new(config.ingest.max_spool_bytes),
        });
        services.connect_hot_tables();
        let state = web::Data::from(Arc::clone(&services));
        let flight_port = services.flight.as_ref().map(|f| f.address.port());
        let (flight_stop, flight_task) = match flight {
            None => (None, None),
            Some((listener, tls, info)) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                tracing::info!(address = %info.address, tls = tls.is_some(), "Flight SQL listening");
                let task = tokio::spawn(crate::flight::serve(
                    Arc::clone(&services),
                    listener,
                    tls,
                    Arc::clone(&info.serving),
                    async move {
                        let _ = stopped.await;
                    },
                ));
                (Some(stop), Some(task))
            }
        };
        let weak_services = Arc::downgrade(&services);
        drop(services);
        let max_body = config.server.max_body_bytes;
        let guard = web::Data::new(api::guard::Guard::from_config(&config));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(guard.clone())
                .wrap(middleware::Compress::default())
                .wrap(middleware::from_fn(api::guard::guard))
                .wrap(middleware::from_fn(api::middleware::log_request))
                .configure(|cfg| api::configure(cfg, max_body))
        })
        // SIGTERM/SIGINT are ours (see `drain`): actix only stops when told.
        .disable_signals()
        // A client that closes its end has gone away: drop its request at
        // once, which interrupts its query (actix otherwise keeps a
        // half-closed connection's request running until it writes the
        // answer, so an abandoned query held its connection to the end).
        .h1_allow_half_closed(false)
        // An idle keep-alive connection stays open longer than the idle
        // timeout of clients and load balancers (60 s is common): with the
        // server closing first (actix's default is 5 s), a client that
        // reuses the connection at that moment gets a broken response.
        .keep_alive(KEEP_ALIVE)
        .shutdown_timeout(5);
        if config.server.workers > 0 {
            server = server.workers(config.server.workers);
        }
        let https = tls.is_some();
        let server = match tls {
            None => server.listen(listener),
            Some(tls) => server.listen_rustls_0_23(listener, tls),
        }
        .map_err(|source| StartupError::Bind {
            address: format!("port {port}"),
            source,
        })?
        .run();
        tracing::info!(host = %config.server.host, port, tls = https, "listening");

        Ok(Self {
            services: weak_services,
            server,
            port,
            audit,
            engine,
            draining,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
            flight_port,
            flight_stop,
            flight_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Flight SQL port, when Flight SQL is on.
    pub fn flight_port(&self) -> Option<u16> {
        self.flight_port
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped: by a handle, or by SIGTERM/SIGINT
    /// after draining (see [`drain`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let engine = Arc::clone(&self.engine);
        let draining = Arc::clone(&self.draining);
        let grace = self.grace;
        let services = self.services.clone();
        let on_signal = tokio::spawn(async move {
            if let Some(signal) = termination().await {
                // Transactions held open cannot commit after this: rolled
                // back now, their connections are not waited for.
                if let Some(services) = services.upgrade() {
                    draining.store(true, std::sync::atomic::Ordering::SeqCst);
                    services.end_all_transactions().await;
                }
                drain(&engine, &draining, grace, signal).await;
                handle.stop(true).await;
            }
        });
        let result = self.server.await;
        on_signal.abort();
        stop_flight(self.flight_stop, self.flight_task).await;
        // What was recorded before the server stopped goes into the log.
        self.audit.flush(Duration::from_secs(5)).await;
        close(self.engine).await;
        result
    }
}

/// Stops the Flight SQL server with the HTTP one: its open calls get a
/// moment to end, then it is aborted (an idle driver connection would
/// otherwise hold it open).
async fn stop_flight(
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
) {
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    let Some(mut task) = task else { return };
    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        Ok(Ok(Err(err))) => tracing::error!(error = %err, "Flight SQL server"),
        Ok(_) => {}
        Err(_) => task.abort(),
    }
}

/// Binds the Flight SQL listener on `server.host` and reads its TLS
/// identity: both fail the start rather than serve without them.
fn bind_flight(
    config: &Config,
) -> Result<
    (
        tokio::net::TcpListener,
        Option<tonic::transport::ServerTlsConfig>,
        crate::services::FlightListener,
    ),
    StartupError,
> {
    let address = format!("{}:{}", config.server.host, config.flight.port);
    let bind_error = |source| StartupError::Bind {
        address: address.clone(),
        source,
    };
    let listener = TcpListener::bind(&address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    let tls = crate::flight::tls(&config.flight).map_err(StartupError::Flight)?;
    Ok((
        listener,
        tls,
        crate::services::FlightListener {
            address: local,
            serving: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        },
    ))
}

/// After the server stopped: closes DuckDB here, once the server's workers
/// (on threads of their own) have let go of the engine, so the process never
/// exits while DuckDB is still at work on another thread (a request's
/// connection being reset, a database being torn down): C++ destructors
/// running at exit under such a thread crash the process. A holder that
/// does not let go within the bound (a job still running its query) keeps
/// the engine open to the end, as before.
async fn close(engine: Arc<Engine>) {
    // The hot tables' own thread (not a holder of the engine) lets go of
    // DuckDB first, whether or not the engine closes below.
    let hot = Arc::clone(engine.hot());
    let _ = tokio::task::spawn_blocking(move || hot.stop()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while Arc::strong_count(&engine) > 1 {
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(
                holders = Arc::strong_count(&engine) - 1,
                "the engine is still in use (a running job?): not closed before exit"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Dropping the last connection closes the database: blocking work.
    let _ = tokio::task::spawn_blocking(move || drop(engine)).await;
    tracing::info!("engine closed");
}

/// Waits for SIGTERM or SIGINT; None when signals cannot be watched.
async fn termination() -> Option<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    tokio::select! {
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
    }
}

/// Graceful shutdown: `/ready` answers 503 and new requests are refused at
/// once; queries and streams in flight may finish within `grace`, then are
/// interrupted (their clients see `shutting_down`, or a stream cut short).
async fn drain(
    engine: &Engine,
    draining: &std::sync::atomic::AtomicBool,
    grace: Duration,
    signal: &str,
) {
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let in_flight = engine.in_flight();
    tracing::info!(
        signal,
        in_flight,
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    let deadline = tokio::time::Instant::now() + grace;
    while engine.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = engine.in_flight();
    if left > 0 {
        let interrupted = engine.interrupt_all();
        tracing::warn!(
            interrupted,
            "grace period over: interrupted the queries still running"
        );
        // Let the interrupted queries answer and give their connections back.
        let settle = tokio::time::Instant::now() + Duration::from_secs(2);
        while engine.in_flight() > 0 && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tracing::info!("drained; stopping");
}

/// Closes our pool's catalog connections once idle for `idle`, so a quiet
/// replica holds none (DuckDB's own pool has its reaper thread).
fn spawn_idle_reaper(store: &Store, idle: Duration) {
    if let Store::Postgres(_) = store {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(250)));
            loop {
                tick.tick().await;
                store.reap_idle(idle);
            }
        });
    }
}
