//! The configuration's shape: [`Config`], the service's own sections (server,
//! DuckDB, queries, auth, ingest, maintenance, jobs, Flight, features) and
//! their defaults. The lake's sections are in `lake.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    enums::Environment,
    lake::{DuckLakeConfig, PostgresConfig, StorageConfig},
    lenient,
    secret::Secret,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// development | test | staging | production
    pub environment: Environment,
    pub debug: bool,
    /// trace | debug | info | warn | error (any case)
    pub log_level: String,
    /// Root of everything the service writes locally: embedded catalog,
    /// embedded data path, spill files.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub duckdb: DuckDbConfig,
    pub query: QueryConfig,
    pub postgres: PostgresConfig,
    pub ducklake: DuckLakeConfig,
    pub storage: StorageConfig,
    pub features: FeatureConfig,
    pub auth: AuthConfig,
    pub ingest: IngestConfig,
    pub maintenance: MaintenanceConfig,
    pub jobs: JobsConfig,
    pub flight: FlightConfig,
    pub cache: CacheConfig,
    pub hot_tables: HotTablesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            debug: false,
            log_level: "info".into(),
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            duckdb: DuckDbConfig::default(),
            query: QueryConfig::default(),
            postgres: PostgresConfig::default(),
            ducklake: DuckLakeConfig::default(),
            storage: StorageConfig::default(),
            features: FeatureConfig::default(),
            auth: AuthConfig::default(),
            ingest: IngestConfig::default(),
            maintenance: MaintenanceConfig::default(),
            jobs: JobsConfig::default(),
            flight: FlightConfig::default(),
            cache: CacheConfig::default(),
            hot_tables: HotTablesConfig::default(),
        }
    }
}

impl Config {
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long `/ready` waits for each dependency, milliseconds.
    pub ready_timeout_ms: u64,
    /// After SIGTERM, how long in-flight queries and streams may run before
    /// they are interrupted, milliseconds. Keep it below the orchestrator's
    /// termination grace period (Kubernetes: 30 s by default).
    pub shutdown_grace_ms: u64,
    /// Host names requests may address besides the bind address,
    /// `localhost`, `127.0.0.1` and `[::1]`, comma-separated. Checked on
    /// every request while authentication is off (DNS rebinding), and
    /// whenever set.
    #[serde(deserialize_with = "lenient::string")]
    pub allowed_hosts: String,
    /// Web origins (`https://app.example:8443`) whose pages may call the
    /// API, comma-separated: their preflights are answered and their
    /// responses carry CORS headers. A page of any other origin cannot
    /// change anything (403 `origin_not_allowed`).
    #[serde(deserialize_with = "lenient::string")]
    pub cors_origins: String,
    /// PEM certificate chain and private key: both set serves HTTPS only
    /// (a file that cannot be read stops the start).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            workers: 0,
            max_body_bytes: 16 * 1024 * 1024,
            ready_timeout_ms: 2_000,
            shutdown_grace_ms: 20_000,
            allowed_hosts: String::new(),
            cors_origins: String::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DuckDbConfig {
    /// Where the loadable extensions live; unset means DuckDB's own default
    /// (`~/.duckdb/extensions`), which is where `scripts/fetch-extensions.sh` puts them.
    pub extension_directory: Option<PathBuf>,
    /// DuckDB worker threads; 0 means DuckDB's default (one per core).
    pub threads: usize,
    /// DuckDB memory limit such as `4GB` or `75%`; unset means 60% of the
    /// memory DuckDB sees (the container's cgroup limit, else the machine's),
    /// leaving room for the service itself in a small container.
    pub memory_limit: Option<String>,
    /// Cap on the spill files DuckDB writes to `data_dir/tmp` when a query
    /// needs more memory than the limit, e.g. `1GiB`; beyond it the query
    /// fails with 503 `resources_exhausted`.
    #[serde(deserialize_with = "lenient::string")]
    pub max_temp_directory_size: String,
    /// Connections in the pool, i.e. queries that run at the same time.
    pub connections: usize,
}

impl Default for DuckDbConfig {
    fn default() -> Self {
        Self {
            extension_directory: None,
            threads: 0,
            memory_limit: None,
            max_temp_directory_size: "1GiB".into(),
            connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// Timeout of a query that does not ask for one.
    pub timeout_ms: u64,
    /// The largest timeout a request may ask for.
    pub max_timeout_ms: u64,
    /// Rows returned at most; a longer result is cut and flagged `truncated`
    /// (or refused where a cut cannot be marked). 0: no limit (the default).
    pub max_rows: u64,
    /// Bytes of one encoded result at most; a larger result is cut after
    /// the batch that crossed the limit, as for `max_rows`. 0: no limit
    /// (the default).
    pub max_result_bytes: u64,
    /// Longest SQL text a request may carry; longer gets 413.
    pub max_sql_bytes: usize,
    /// Requests that may wait for a free connection; beyond, 429.
    pub max_queued: usize,
    /// How long a request waits for a free connection before 429.
    pub queue_timeout_ms: u64,
    /// Queries running at least this long get a `slow query` log line.
    pub slow_query_ms: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            max_timeout_ms: 600_000,
            max_rows: 0,
            max_result_bytes: 0,
            max_sql_bytes: 1024 * 1024,
            max_queued: 64,
            queue_timeout_ms: 30_000,
            slow_query_ms: 1_000,
        }
    }
}

/// API keys (see [`crate::auth`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Require `Authorization: Bearer <key>` on everything but /health,
    /// /ready, /metrics and the API docs. Off is allowed only on a loopback
    /// address and never with `environment = production`.
    pub enabled: bool,
    /// An admin key the operator chooses (at least 32 characters), stored
    /// at start-up if no key with its hash exists yet.
    pub bootstrap_key: Option<Secret>,
    /// A file holding the bootstrap key (a mounted secret).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub bootstrap_key_file: Option<String>,
}

impl AuthConfig {
    /// The bootstrap key from the setting or its file, if any.
    pub fn bootstrap_key(&self) -> Result<Option<Secret>, String> {
        if let Some(key) = &self.bootstrap_key {
            return Ok(Some(key.clone()));
        }
        let Some(path) = &self.bootstrap_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth.bootstrap_key_file {path}: {e}"))?;
        // The same rule as for auth.bootstrap_key, which `validate` checks.
        let key = text.trim();
        if key.chars().count() < 32 {
            return Err(format!(
                "auth.bootstrap_key_file {path} holds a key of {} characters: at least 32",
                key.chars().count()
            ));
        }
        Ok(Some(Secret::new(key)))
    }
}

/// Loading files into tables (`POST /api/v1/tables/{schema}/{table}/data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Largest upload accepted; a longer body is cut off with 413 and
    /// nothing is loaded.
    pub max_upload_bytes: u64,
    /// Bytes all uploads being received at once may hold on disk
    /// (`data_dir/tmp/uploads`); an upload that would pass it answers 429
    /// and keeps nothing. 0: no limit but each upload's own.
    pub max_spool_bytes: u64,
    /// Time one load may take (after the upload), like a query timeout.
    pub timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            max_spool_bytes: 0,
            timeout_ms: 3_600_000,
        }
    }
}

/// Periodic lake maintenance in the service (off by default). Only one
/// replica runs a round at a time (a PostgreSQL advisory lock).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MaintenanceConfig {
    pub enabled: bool,
    /// Seconds between rounds.
    pub interval_secs: u64,
    /// A round merges adjacent small files.
    pub compact: bool,
    /// A round expires snapshots older than this many seconds (0: none).
    pub expire_older_than_secs: u64,
    /// A round deletes files scheduled for deletion longer ago than this.
    pub cleanup_older_than_secs: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: 24 * 3600,
            compact: true,
            expire_older_than_secs: 7 * 24 * 3600,
            cleanup_older_than_secs: 24 * 3600,
        }
    }
}

/// Async query jobs (see [`crate::jobs`]); limits are per replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// Jobs running at once on this replica (each holds a DuckDB connection).
    pub max_concurrent: usize,
    /// Jobs waiting on this replica for a free run slot; beyond, 429.
    pub max_queued: usize,
    /// Bytes of one spooled result (Arrow IPC) at most; beyond, the job fails
    /// with `result_too_large`.
    pub max_result_bytes: u64,
    /// A finished job and its result are deleted this long after it ended.
    pub retention_secs: u64,
    /// Timeout of a job that does not ask for one, and the largest it may ask for.
    pub timeout_ms: u64,
    /// How often a replica records that its jobs are alive (and reads cancel requests).
    pub heartbeat_ms: u64,
    /// A queued or running job whose replica has not recorded a heartbeat for
    /// this long is marked failed (the replica stopped).
    pub stale_after_ms: u64,
    /// How often expired jobs and jobs of stopped replicas are swept.
    pub sweep_interval_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_queued: 64,
            max_result_bytes: 10 * 1024 * 1024 * 1024,
            retention_secs: 24 * 3600,
            timeout_ms: 3_600_000,
            heartbeat_ms: 1_000,
            stale_after_ms: 30_000,
            sweep_interval_ms: 10_000,
        }
    }
}

/// Arrow Flight SQL beside the HTTP API, on `server.host`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FlightConfig {
    pub enabled: bool,
    /// Its own port (0: any free one).
    pub port: u16,
    /// PEM certificate chain and private key: both set serves TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a statement started by `GetFlightInfo` waits for its
    /// `DoGet` (its connection is held meanwhile), milliseconds.
    pub ticket_ttl_ms: u64,
    /// A transaction that wrote holds a connection: one that waits longer
    /// than this for its client's next call is rolled back (PostgreSQL's
    /// `idle_in_transaction_session_timeout`), milliseconds.
    pub transaction_idle_timeout_ms: u64,
    /// Transactions that wrote (each holds a connection) at most, over all
    /// keys; 0: half of `duckdb.connections` (at least 1), so the rest
    /// always serve other requests.
    pub max_writing_transactions: usize,
    /// Transactions that wrote at most per API key (with authentication
    /// off: for everyone together).
    pub max_writing_transactions_per_key: usize,
    /// Open transactions at most per API key; beyond, the least recently
    /// used one that has not written is ended (it holds no connection,
    /// only its snapshot id).
    pub max_open_transactions_per_key: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8815,
            tls_cert: None,
            tls_key: None,
            ticket_ttl_ms: 30_000,
            transaction_idle_timeout_ms: 60_000,
            max_writing_transactions: 0,
            max_writing_transactions_per_key: 2,
            max_open_transactions_per_key: 10_000,
        }
    }
}

/// The result cache of repeated reads (see [`crate::cache`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of kept answers at most; unset: a sixteenth of DuckDB's
    /// memory limit.
    pub max_bytes: Option<u64>,
    /// A larger answer is not kept; unset: a sixteenth of `max_bytes` (so
    /// answers being collected by the connections at once stay within
    /// half the budget beside it).
    pub max_entry_bytes: Option<u64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: None,
            max_entry_bytes: None,
        }
    }
}

impl CacheConfig {
    /// The budget and the per-entry limit, given DuckDB's memory limit.
    pub fn budget(&self, memory_limit_bytes: u64) -> (u64, u64) {
        budget(self.max_bytes, self.max_entry_bytes, memory_limit_bytes, 16)
    }
}

/// In-memory copies of small lake tables that are read often (see
/// [`crate::engine::hot`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HotTablesConfig {
    pub enabled: bool,
    /// Bytes of copies at most; unset: a sixteenth of DuckDB's memory
    /// limit.
    pub max_bytes: Option<u64>,
    /// A larger table is not copied; unset: a quarter of `max_bytes`.
    pub max_table_bytes: Option<u64>,
    /// Reads of a table (at any snapshot) before it is copied.
    pub after_reads: u32,
}

impl Default for HotTablesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: None,
            max_table_bytes: None,
            after_reads: 3,
        }
    }
}

impl HotTablesConfig {
    /// The budget and the per-table limit, given DuckDB's memory limit.
    pub fn budget(&self, memory_limit_bytes: u64) -> (u64, u64) {
        budget(self.max_bytes, self.max_table_bytes, memory_limit_bytes, 4)
    }
}

/// A memory budget and the most one item of it may take: `max` (unset, a
/// sixteenth of DuckDB's memory limit) and `each` (unset, `max / share`),
/// never more than `max`.
fn budget(max: Option<u64>, each: Option<u64>, memory_limit_bytes: u64, share: u64) -> (u64, u64) {
    let max = max.unwrap_or(memory_limit_bytes / 16);
    (max, each.unwrap_or(max / share).min(max))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    pub enable_memory_monitoring: bool,
    pub enable_performance_tracking: bool,
    pub enable_prometheus_metrics: bool,
    pub enable_s3_encryption: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            enable_memory_monitoring: true,
            enable_performance_tracking: true,
            enable_prometheus_metrics: true,
            enable_s3_encryption: false,
        }
    }
}
