//! The engine itself: one embedded DuckDB database per process, opened with
//! its extensions and the attached lake, and the pool of connections user
//! SQL runs on. The other engine modules add to `Engine` what they own
//! (streaming, catalog listings, sessions); this one imports none of them.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use duckdb::{Config as DuckConfig, Connection};

use super::{
    extensions::{self, ExtensionSet},
    lake::{self, quote_identifier, LakeSpec},
    pool::{ConnectionPool, PooledConnection},
    query, stop,
};
use crate::{config::Config, error::Error};

/// Why the engine could not start. Each message tells the operator what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    MissingExtension(#[from] extensions::MissingExtension),
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{step} failed: {message}")]
    Setup { step: &'static str, message: String },
}

/// Versions reported by `--version`, `/ready` and the config endpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineInfo {
    pub duckdb_version: String,
    pub platform: String,
    pub extensions: Vec<(String, String)>,
}

pub struct Engine {
    pub(super) pool: Arc<ConnectionPool>,
    /// One per pooled connection: stops whatever it runs (shutdown).
    pub(super) interrupts: Vec<Arc<duckdb::InterruptHandle>>,
    /// Set once the shutdown grace period is over: an interrupted query then
    /// answers `shutting_down`, not a SQL error.
    pub(crate) shutting_down: Arc<std::sync::atomic::AtomicBool>,
    pub(super) lake: LakeSpec,
    pub(super) info: EngineInfo,
    pub(super) default_timeout: Duration,
    pub(super) max_timeout: Duration,
    pub(super) max_rows: u64,
    pub(crate) max_result_bytes: u64,
    /// `data_dir/tmp`: DuckDB's spill files, and held results.
    pub(crate) tmp_dir: std::path::PathBuf,
    pub(super) max_sql_bytes: usize,
    pub(super) max_queued: usize,
    pub(super) queue_timeout: Duration,
    /// Requests waiting for a connection right now.
    pub(super) queued: AtomicUsize,
    /// Requests that ended in `write_conflict` (DuckLake's own commit
    /// retries, which happen inside DuckDB, are not visible from here).
    pub(super) write_conflicts: std::sync::atomic::AtomicU64,
    /// A connection of its own for readiness checks, so a busy pool does not
    /// make a healthy replica look down.
    pub(super) probe: Arc<parking_lot::Mutex<Connection>>,
    pub(super) probe_interrupt: Arc<duckdb::InterruptHandle>,
    /// The last successful lake check: when it started, and the snapshot it
    /// read. Concurrent checks wait for the running one and share its answer.
    pub(super) last_probe: tokio::sync::Mutex<Option<(std::time::Instant, i64)>>,
    /// A connection of its own for the result cache's reads of the
    /// catalog's tables, outside the lake (its default database is the
    /// in-memory one: a query there starts no DuckLake transaction).
    pub(super) catalog_reader: Arc<parking_lot::Mutex<Connection>>,
    /// In-memory copies of small lake tables read often.
    pub(super) hot: Arc<super::hot::HotTables>,
    /// Keeps the database open for as long as the engine lives.
    pub(super) _root: parking_lot::Mutex<Connection>,
}

impl Engine {
    /// Opens DuckDB, loads the extensions, attaches the lake, fills the pool.
    /// Blocking: call from a blocking context or before the server starts.
    pub fn open(config: &Config) -> Result<Self, EngineError> {
        let lake = LakeSpec::from_config(config);
        let extensions = ExtensionSet::locate(
            config.duckdb.extension_directory.clone(),
            lake.required_extensions(),
        )?;
        let tmp_dir = config.data_dir.join("tmp");
        for dir in lake.local_dirs().into_iter().chain([tmp_dir.as_path()]) {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }

        let setup = |step: &'static str| {
            move |e: duckdb::Error| EngineError::Setup {
                step,
                message: e.to_string(),
            }
        };
        let mut duck_config = DuckConfig::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| {
                c.with(
                    "extension_directory",
                    extensions.directory().to_string_lossy(),
                )
            })
            .and_then(|c| c.with("temp_directory", tmp_dir.to_string_lossy()))
            .and_then(|c| {
                c.with(
                    "max_temp_directory_size",
                    &config.duckdb.max_temp_directory_size,
                )
            })
            .map_err(setup("configuring DuckDB"))?;
        if config.duckdb.threads > 0 {
            duck_config = duck_config
                .threads(config.duckdb.threads as i64)
                .map_err(setup("setting threads"))?;
        }
        if let Some(limit) = &config.duckdb.memory_limit {
            duck_config = duck_config
                .max_memory(limit)
                .map_err(setup("setting the memory limit"))?;
        }
        let root =
            Connection::open_in_memory_with_flags(duck_config).map_err(setup("opening DuckDB"))?;
        if config.duckdb.memory_limit.is_none() {
            // DuckDB's default is 80% of the memory it sees (cgroup-aware);
            // take 60%, so the service, its buffers and the allocator's
            // slack fit beside it in a small container.
            root.execute_batch(
                "SET memory_limit = CAST(parse_formatted_bytes(current_setting('memory_limit')) \
                 * 3 // 4 AS VARCHAR) || 'B'",
            )
            .map_err(setup("setting the default memory limit"))?;
        }

        for name in extensions.names() {
            root.execute_batch(&format!("LOAD {name}"))
                .map_err(setup("loading an extension"))?;
        }
        if let lake::CatalogLocation::Postgres { .. } = lake.catalog {
            // DuckDB's postgres extension keeps its own pool of catalog
            // connections. Bound it: `wait` mode makes the size a cap (the
            // default `force` mode ignores it), idle connections are reaped.
            let pg = &config.postgres;
            root.execute_batch(&format!(
                "SET pg_pool_max_connections = {}; SET pg_pool_acquire_mode = '{}'; \
                 SET pg_pool_idle_timeout_millis = {}; SET pg_pool_enable_reaper_thread = true; \
                 SET pg_pool_wait_timeout_millis = {}",
                pg.duckdb_pool_size,
                pg.duckdb_pool_acquire_mode,
                pg.idle_timeout_ms,
                config.query.max_timeout_ms
            ))
            .map_err(setup("bounding the catalog connection pool"))?;
        }
        root.execute_batch("SET TimeZone = 'UTC'")
            .map_err(setup("setting the time zone"))?;
        let retries = &config.ducklake;
        root.execute_batch(&format!(
            "SET GLOBAL ducklake_max_retry_count = {}; SET GLOBAL ducklake_retry_wait_ms = {}; \
             SET GLOBAL ducklake_retry_backoff = {}",
            retries.max_retry_count, retries.retry_wait_ms, retries.retry_backoff
        ))
        .map_err(setup("setting DuckLake's commit retries"))?;
        for statement in lake::secret_statements(config, &lake) {
            root.execute_batch(&statement)
                .map_err(setup("setting up the lake's credentials and TLS"))?;
        }
        attach_with_retries(&root, &lake, config)?;

        // Catalog and schema both: `USE lake` alone is ambiguous once the
        // lake holds a schema named like itself.
        let use_lake = format!("USE {}.main", quote_identifier(&lake.name));
        let connections = (0..config.duckdb.connections)
            .map(|_| {
                let conn = root.try_clone()?;
                conn.execute_batch(&use_lake)?;
                // DuckDB's progress estimate (async jobs read it), computed
                // after half a second of a query's run and never printed.
                conn.execute_batch(
                    "SET enable_progress_bar = true; SET enable_progress_bar_print = false; \
                     SET progress_bar_time = 500",
                )?;
                Ok(conn)
            })
            .collect::<duckdb::Result<Vec<_>>>()
            .map_err(setup("opening pool connections"))?;
        let catalog_reader = root
            .try_clone()
            .and_then(|conn| conn.execute_batch("USE memory").map(|()| conn))
            .map_err(setup("opening the catalog reader connection"))?;
        let probe = root
            .try_clone()
            .and_then(|conn| conn.execute_batch(&use_lake).map(|()| conn))
            .map_err(setup("opening the probe connection"))?;
        let info = read_info(&root, extensions.names()).map_err(setup("reading versions"))?;
        let hot = open_hot_tables(&root, config, &lake.name, &use_lake)
            .map_err(setup("starting the hot tables"))?;
        let catalog_reader = Arc::new(parking_lot::Mutex::new(catalog_reader));
        if let lake::CatalogLocation::LocalFile(_) = lake.catalog {
            // On PostgreSQL the service's own pool reads the catalog for
            // them (set when the service starts).
            hot.read_catalog_with(Arc::new(super::hot::LocalReads {
                conn: Arc::clone(&catalog_reader),
                prefix: super::snapshots::metadata_prefix(&lake.name),
            }));
        }
        // The sandbox: from here on, SQL reaches no file or URL outside the
        // lake's data path, loads no extension, and changes no setting.
        root.execute_batch(&lake.lockdown_sql(&tmp_dir))
            .map_err(setup("locking DuckDB down"))?;
        tracing::info!(
            catalog = %lake.catalog_display(),
            data_path = %lake.data_path(),
            connections = connections.len(),
            duckdb = %info.duckdb_version,
            "lake attached"
        );
        let interrupts = connections
            .iter()
            .map(Connection::interrupt_handle)
            .collect();
        Ok(Self {
            pool: Arc::new(ConnectionPool::new(connections, use_lake)),
            interrupts,
            shutting_down: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            lake,
            info,
            default_timeout: Duration::from_millis(config.query.timeout_ms),
            max_timeout: Duration::from_millis(config.query.max_timeout_ms),
            // 0: no limit (the default: a streamed result uses constant
            // memory however long).
            max_rows: match config.query.max_rows {
                0 => u64::MAX,
                n => n,
            },
            max_result_bytes: match config.query.max_result_bytes {
                0 => u64::MAX,
                n => n,
            },
            tmp_dir,
            max_sql_bytes: config.query.max_sql_bytes,
            max_queued: config.query.max_queued,
            queue_timeout: Duration::from_millis(config.query.queue_timeout_ms),
            queued: AtomicUsize::new(0),
            write_conflicts: std::sync::atomic::AtomicU64::new(0),
            catalog_reader,
            probe_interrupt: probe.interrupt_handle(),
            probe: Arc::new(parking_lot::Mutex::new(probe)),
            last_probe: tokio::sync::Mutex::new(None),
            hot,
            _root: parking_lot::Mutex::new(root),
        })
    }

    /// The hot tables: their figures, where their checks read the catalog.
    pub fn hot(&self) -> &Arc<super::hot::HotTables> {
        &self.hot
    }

    pub fn lake(&self) -> &LakeSpec {
        &self.lake
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn pool(&self) -> &Arc<ConnectionPool> {
        &self.pool
    }

    /// The request's timeout, capped by the server's maximum.
    pub fn timeout_for(&self, requested_ms: Option<u64>) -> Duration {
        requested_ms
            .map(Duration::from_millis)
            .unwrap_or(self.default_timeout)
            .min(self.max_timeout)
    }

    /// Connections checked out of the pool (streaming requests included).
    fn busy(&self) -> usize {
        self.pool.size() - self.pool.available()
    }

    /// Requests holding or waiting for a connection.
    pub fn in_flight(&self) -> usize {
        self.busy() + self.queued.load(Ordering::SeqCst)
    }

    /// Interrupts every running query (the end of the shutdown grace
    /// period); returns how many connections were busy.
    pub fn interrupt_all(&self) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        for interrupt in &self.interrupts {
            interrupt.interrupt();
        }
        self.busy()
    }

    /// 413 for SQL longer than the server allows, 400 for a NUL character
    /// (which C strings, and so DuckDB's API, cannot carry).
    pub fn check_sql_text(&self, sql: &str) -> Result<(), Error> {
        if sql.contains('\0') {
            return Err(Error::InvalidRequest(
                "the SQL contains a NUL character".into(),
            ));
        }
        if sql.len() > self.max_sql_bytes {
            return Err(Error::PayloadTooLarge(format!(
                "the SQL is {} bytes; the limit is {} (query.max_sql_bytes)",
                sql.len(),
                self.max_sql_bytes
            )));
        }
        Ok(())
    }

    /// The request's row limit, capped by the server's maximum.
    pub fn max_rows_for(&self, requested: Option<u64>) -> u64 {
        requested.unwrap_or(self.max_rows).min(self.max_rows).max(1)
    }

    /// A connection for a client request: waits in a bounded queue, and
    /// answers 429 when the queue is full or the wait is too long.
    pub async fn acquire(&self) -> Result<PooledConnection, Error> {
        if let Some(conn) = self.pool.try_acquire() {
            return Ok(conn);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::TooManyRequests {
                message: format!(
                    "all {} query slots are busy and {} requests are already waiting; retry later",
                    self.pool.size(),
                    self.max_queued
                ),
                retry_after_secs: 1,
            });
        }
        let waited = tokio::time::timeout(self.queue_timeout, self.pool.acquire()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        waited.map_err(|_| Error::TooManyRequests {
            message: format!(
                "no query slot became free within {} ms; retry later",
                self.queue_timeout.as_millis()
            ),
            retry_after_secs: 1,
        })
    }

    /// Requests waiting for a connection.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Counts a request that ended in a write conflict.
    pub(crate) fn count_conflict(&self, err: &Error) {
        if matches!(err, Error::TransactionConflict(_)) {
            let total = self.write_conflicts.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(write_conflicts_total = total, error = %err, "write conflict");
        }
    }

    /// DuckDB's memory by tag and its temporary storage, from
    /// `duckdb_memory()`, read on the probe connection.
    pub async fn memory_usage(&self) -> Result<Vec<(String, i64, i64)>, Error> {
        self.on_probe(|conn| {
            query::query_vec(
                conn,
                "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() ORDER BY tag",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(Error::from_duckdb)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Runs `work` on the probe connection on a blocking thread (the
    /// connection of readiness and state checks, never of user SQL); any
    /// transaction it opened is rolled back.
    fn on_probe<T, F>(&self, work: F) -> tokio::task::JoinHandle<Result<T, Error>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let probe = Arc::clone(&self.probe);
        tokio::task::spawn_blocking(move || {
            let conn = probe.lock();
            let result = work(&conn);
            let _ = conn.execute_batch("ROLLBACK");
            result
        })
    }

    /// DuckDB's configured memory limit in bytes.
    pub async fn memory_limit_bytes(&self) -> Result<u64, Error> {
        self.probe_value(MEMORY_LIMIT_SQL).await
    }

    /// The one value `sql` answers, on the probe connection.
    async fn probe_value<T: duckdb::types::FromSql + Send + 'static>(
        &self,
        sql: &'static str,
    ) -> Result<T, Error> {
        self.on_probe(move |conn| {
            conn.query_row(sql, [], |row| row.get(0))
                .map_err(Error::from_duckdb)
        })
        .await
        .map_err(Error::internal)?
    }

    /// DuckDB's configured memory limit, as DuckDB prints it.
    pub async fn memory_limit(&self) -> Result<String, Error> {
        self.probe_value("SELECT current_setting('memory_limit')")
            .await
    }

    /// Requests that ended in `write_conflict` since start.
    pub fn write_conflicts(&self) -> u64 {
        self.write_conflicts.load(Ordering::Relaxed)
    }

    /// Runs `work` on a pooled connection on a blocking thread, interrupting
    /// DuckDB when `timeout` passes or when this future is dropped.
    pub async fn run_blocking<T, F>(&self, timeout: Duration, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let conn = self.pool.acquire().await;
        let stop = stop::Stop::new(conn.interrupt_handle());
        let interrupt = StopOnDrop(Some(stop.clone()));
        let task = tokio::task::spawn_blocking(move || {
            let outcome = work(&conn);
            stop.release();
            outcome
        });
        let outcome = tokio::time::timeout(timeout, task).await;
        match outcome {
            Ok(joined) => {
                interrupt.disarm();
                joined.map_err(Error::internal)?
            }
            Err(_) => {
                // Dropping the guard stops the work's statements; its thread
                // then finishes with an error and returns the connection.
                drop(interrupt);
                Err(Error::QueryTimeout(format!(
                    "the query ran longer than its timeout of {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }

    /// The lake's current snapshot id, read through DuckLake (so it touches
    /// the catalog): the readiness check of the lake, and the version a
    /// request reads.
    pub async fn current_snapshot(&self, timeout: Duration) -> Result<i64, Error> {
        let sql = format!(
            "SELECT id FROM {}.main.current_snapshot()",
            quote_identifier(&self.lake.name)
        );
        let arrived = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let too_slow = || {
            Error::QueryTimeout(format!(
                "the lake did not answer within {} ms",
                timeout.as_millis()
            ))
        };
        let mut last = tokio::time::timeout_at(deadline, self.last_probe.lock())
            .await
            .map_err(|_| too_slow())?;
        if let Some((started, snapshot)) = *last {
            if started >= arrived {
                return Ok(snapshot);
            }
        }
        let started = std::time::Instant::now();
        let stop = stop::Stop::new(Arc::clone(&self.probe_interrupt));
        let interrupt = StopOnDrop(Some(stop.clone()));
        let task = self.on_probe(move |conn| {
            let snapshot = conn
                .query_row(&sql, [], |row| row.get(0))
                .map_err(Error::from_duckdb);
            stop.release();
            snapshot
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(joined) => {
                interrupt.disarm();
                let snapshot = joined.map_err(Error::internal)??;
                *last = Some((started, snapshot));
                Ok(snapshot)
            }
            Err(_) => Err(too_slow()),
        }
    }
}

/// Attaches the lake, retrying with exponential backoff when it lives on
/// servers (PostgreSQL, S3) that may still be starting: up to
/// `ducklake.connection_retries` attempts, each logged.
fn attach_with_retries(
    root: &Connection,
    lake: &LakeSpec,
    config: &Config,
) -> Result<(), EngineError> {
    let remote = lake.is_remote();
    let attempts = if remote {
        config.ducklake.connection_retries.max(1)
    } else {
        1
    };
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=attempts {
        match root.execute_batch(&lake.attach_sql()) {
            Ok(()) => return Ok(()),
            Err(err) if attempt < attempts => {
                tracing::warn!(
                    attempt,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    catalog = %lake.catalog_display(),
                    error = %err,
                    "the lake is not reachable yet"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                return Err(EngineError::Setup {
                    step: "attaching the lake",
                    message: format!("{err} (gave up after {attempt} attempt(s))"),
                })
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Stops the work on a pooled connection unless disarmed.
struct StopOnDrop(Option<stop::Stop>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.stop();
        }
    }
}

fn read_info(conn: &Connection, loaded: &[&str]) -> duckdb::Result<EngineInfo> {
    let (duckdb_version, platform): (String, String) = conn.query_row(
        "SELECT library_version, (SELECT platform FROM pragma_platform()) FROM pragma_version()",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let extensions = query::query_vec(
        conn,
        "SELECT extension_name, coalesce(extension_version, '') FROM duckdb_extensions() WHERE loaded ORDER BY 1",
        [],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )?
    .into_iter()
        .filter(|(name, _)| loaded.contains(&name.as_str()) || name == "parquet" || name == "json")
        .collect();
    Ok(EngineInfo {
        duckdb_version,
        platform,
        extensions,
    })
}

/// DuckDB's memory limit in bytes.
const MEMORY_LIMIT_SQL: &str = "SELECT parse_formatted_bytes(current_setting('memory_limit'))";

/// The hot tables, their budget a share of DuckDB's memory limit, their
/// copies made on a connection of their own.
fn open_hot_tables(
    root: &Connection,
    config: &Config,
    lake: &str,
    use_lake: &str,
) -> duckdb::Result<Arc<super::hot::HotTables>> {
    let memory_limit: u64 = root.query_row(MEMORY_LIMIT_SQL, [], |row| row.get(0))?;
    let (max_bytes, max_table_bytes) = config.hot_tables.budget(memory_limit);
    let databases = root
        .prepare("SELECT database_name FROM duckdb_databases()")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<duckdb::Result<Vec<_>>>()?;
    let conn = root.try_clone()?;
    conn.execute_batch(use_lake)?;
    let limits = super::hot::HotLimits {
        enabled: config.hot_tables.enabled,
        max_bytes,
        max_table_bytes,
        after_reads: config.hot_tables.after_reads.max(1),
    };
    tracing::info!(
        enabled = limits.enabled,
        max_bytes,
        max_table_bytes,
        after_reads = limits.after_reads,
        "hot tables"
    );
    Ok(super::hot::HotTables::start(
        limits,
        lake.to_string(),
        databases,
        conn,
    ))
}
