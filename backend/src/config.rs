//! The service's one configuration type.
//!
//! Layers, later ones winning: built-in defaults < an optional TOML file
//! (`--config` or `DUCKLAKE_CONFIG`) < environment variables. The environment
//! uses the names of the origin deployment (`DB_POSTGRES_HOST`,
//! `STORAGE_MINIO_ENDPOINT`, `FEATURE_ENABLE_*` ...), mapped explicitly onto
//! the nested keys below. Every problem is reported at once, one line each.
//! Secrets are [`Secret`]s: they print as `***` everywhere, including the
//! effective-configuration summary.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "DUCKLAKE_CONFIG";

/// Prefixes of the environment variables, and the config section each feeds.
const ENV_SECTIONS: &[(&str, &str)] = &[
    ("DB_POSTGRES_", "postgres"),
    ("DB_DUCKLAKE_", "ducklake"),
    ("STORAGE_", "storage"),
    ("FEATURE_", "features"),
    ("SERVER_", "server"),
    ("DUCKDB_", "duckdb"),
    ("QUERY_", "query"),
    ("AUTH_", "auth"),
    ("INGEST_", "ingest"),
    ("MAINTENANCE_", "maintenance"),
    ("JOBS_", "jobs"),
    ("FLIGHT_", "flight"),
];

/// Top-level keys read from environment variables of the same name.
const ENV_TOP_LEVEL: &[&str] = &["ENVIRONMENT", "DEBUG", "LOG_LEVEL", "DATA_DIR"];

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
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8815,
            tls_cert: None,
            tls_key: None,
            ticket_ttl_ms: 30_000,
        }
    }
}

/// Loading files into tables (`POST /api/v1/tables/{schema}/{table}/data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Largest upload accepted; a longer body is cut off with 413 and
    /// nothing is loaded.
    pub max_upload_bytes: u64,
    /// Time one load may take (after the upload), like a query timeout.
    pub timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// Timeout of a query that does not ask for one.
    pub timeout_ms: u64,
    /// The largest timeout a request may ask for.
    pub max_timeout_ms: u64,
    /// Rows returned at most; a longer result is cut and flagged `truncated`.
    pub max_rows: u64,
    /// Bytes of one encoded result at most; a larger result is cut after
    /// the batch that crossed the limit and flagged `truncated`.
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// Setting it switches the DuckLake catalog to PostgreSQL.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub host: Option<String>,
    pub port: u16,
    #[serde(deserialize_with = "lenient::string")]
    pub db: String,
    #[serde(deserialize_with = "lenient::string")]
    pub user: String,
    pub password: Option<Secret>,
    /// Connections of the service's own pool (our tables, readiness).
    pub pool_size: usize,
    /// Connections DuckDB's postgres extension may hold to the catalog
    /// (`pg_pool_max_connections`, acquired in `wait` mode so it is a cap).
    pub duckdb_pool_size: usize,
    /// How DuckDB's postgres extension acquires a catalog connection when
    /// `duckdb_pool_size` are in use: `force` (open one more; the size then
    /// bounds idle connections, and `duckdb.connections` bounds the rest) or
    /// `wait` (a hard cap). `force` is the default because with the postgres
    /// extension of DuckDB 1.5.5 a PostgreSQL restart under load can leave a
    /// `wait` pool holding dead slots, and every query then waits forever
    /// (tests/load.rs found it).
    pub duckdb_pool_acquire_mode: AcquireMode,
    /// Idle catalog connections of both pools close after this long.
    pub idle_timeout_ms: u64,
    /// Apply pending migrations of our own schema at start-up instead of
    /// refusing to start (the default: run `ducklake-backend migrate`).
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DuckLakeConfig {
    /// Name the lake is attached under, and the default database of every query.
    #[serde(deserialize_with = "lenient::string")]
    pub catalog_name: String,
    pub encrypted: bool,
    pub data_inlining_row_limit: Option<u64>,
    pub connection_retries: u32,
    /// Seconds.
    pub connection_timeout: f64,
    /// DuckLake's own commit retries when another writer took the next
    /// snapshot id first (`ducklake_max_retry_count`); replicas need many.
    pub max_retry_count: u64,
    /// First wait between commit retries (`ducklake_retry_wait_ms`).
    pub retry_wait_ms: u64,
    /// Growth of that wait per retry (`ducklake_retry_backoff`).
    pub retry_backoff: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Setting it switches the data path to `s3://default_bucket/prefix/`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub minio_endpoint: Option<String>,
    pub minio_access_key: Option<Secret>,
    pub minio_secret_key: Option<Secret>,
    pub minio_secure: bool,
    /// A PEM file of certificate authorities to trust for the endpoint's
    /// TLS (a private CA, a self-signed certificate), besides the system's.
    pub minio_ca_file: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub default_bucket: String,
    #[serde(deserialize_with = "lenient::string")]
    pub prefix: String,
    #[serde(deserialize_with = "lenient::string")]
    pub region: String,
    /// Create the bucket at start-up when it does not exist.
    pub create_bucket: bool,
    /// KMS key for server-side encryption (with features.enable_s3_encryption).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub kms_key_id: Option<String>,
    /// Where `url=` ingest may load from in the bucket; empty means
    /// `<prefix>-ingest`, beside the data path like the job results (inside
    /// it, DuckLake's orphan cleanup would delete the files).
    #[serde(deserialize_with = "lenient::string")]
    pub ingest_prefix: String,
}

impl StorageConfig {
    /// The data path's prefix in the bucket, without slashes.
    pub fn data_prefix(&self) -> &str {
        self.prefix.trim_matches('/')
    }

    /// The ingest prefix in the bucket, without slashes.
    pub fn ingest_prefix(&self) -> String {
        match self.ingest_prefix.trim_matches('/') {
            "" => format!("{}-ingest", self.data_prefix()),
            set => set.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    pub enable_memory_monitoring: bool,
    pub enable_performance_tracking: bool,
    pub enable_prometheus_metrics: bool,
    pub enable_s3_encryption: bool,
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
        }
    }
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
        }
    }
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

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            max_timeout_ms: 600_000,
            max_rows: 100_000,
            max_result_bytes: 2 * 1024 * 1024 * 1024,
            max_sql_bytes: 1024 * 1024,
            max_queued: 64,
            queue_timeout_ms: 30_000,
            slow_query_ms: 1_000,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 5432,
            db: "ducklakedb".into(),
            user: "postgres".into(),
            password: None,
            pool_size: 4,
            duckdb_pool_size: 4,
            duckdb_pool_acquire_mode: AcquireMode::Force,
            idle_timeout_ms: 60_000,
            migrate_on_start: false,
        }
    }
}

impl Default for DuckLakeConfig {
    fn default() -> Self {
        Self {
            catalog_name: "lake".into(),
            encrypted: false,
            data_inlining_row_limit: None,
            connection_retries: 3,
            connection_timeout: 30.0,
            max_retry_count: 100,
            retry_wait_ms: 20,
            retry_backoff: 1.5,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            minio_endpoint: None,
            minio_access_key: None,
            minio_secret_key: None,
            minio_secure: false,
            minio_ca_file: None,
            default_bucket: "ducklake-data".into(),
            prefix: "lake".into(),
            region: "us-east-1".into(),
            create_bucket: true,
            kms_key_id: None,
            ingest_prefix: String::new(),
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

/// A configuration value that must never be printed: `Debug`, `Display` and
/// `Serialize` all show `***`. Read it with [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

/// Where the service runs: production refuses authentication off, and
/// development logs in a human format instead of JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    pub const NAMES: [&'static str; 4] = ["development", "test", "staging", "production"];

    /// The environment named `name`, in any case (`PRODUCTION` too).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "development" => Some(Self::Development),
            "test" => Some(Self::Test),
            "staging" => Some(Self::Staging),
            "production" => Some(Self::Production),
            _ => None,
        }
    }
}

/// How DuckDB's postgres extension acquires a catalog connection when its
/// pool is in use (`pg_pool_acquire_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquireMode {
    /// Wait for a free one: the pool size is a hard cap.
    Wait,
    /// Open one more: the pool size bounds idle connections.
    Force,
}

impl fmt::Display for AcquireMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wait => "wait",
            Self::Force => "force",
        })
    }
}

/// An optional secret's value, or empty when it is unset.
pub fn exposed(secret: &Option<Secret>) -> &str {
    secret.as_ref().map(Secret::expose).unwrap_or_default()
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient::string(d).map(Secret::new)
    }
}

/// Environment values are parsed by figment (`5432` becomes a number), so
/// string settings such as a password of digits accept any scalar.
mod lenient {
    use serde::{de, Deserializer};
    use std::fmt;

    struct AnyScalar;

    impl de::Visitor<'_> for AnyScalar {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(AnyScalar)
    }

    struct OptScalar;

    impl<'de> de::Visitor<'de> for OptScalar {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            string(d).map(|s| Some(s).filter(|s| !s.is_empty()))
        }
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(OptScalar)
    }
}

/// One thing wrong with the configuration, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {} = {}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

/// Every problem found, so the operator fixes them in one round.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// One setting of the effective configuration: its dotted key, its value
/// (a secret as `***`) and where it came from (None: the default).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: serde_json::Value,
    pub source: Option<String>,
}

/// Every setting of `config`, in key order, with its source from `sources`
/// (dotted key → "file <path>" | "environment VAR"): the one rendering that
/// `/config/summary` and `check-config` show.
pub fn settings(config: &Config, sources: &BTreeMap<String, String>) -> Vec<Setting> {
    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    leaves("", &config.redacted(), &mut out);
    out.into_iter()
        .map(|(key, value)| Setting {
            source: sources.get(&key).cloned(),
            key,
            value,
        })
        .collect()
}

/// The loaded configuration and where each value came from.
pub struct LoadedConfig {
    pub config: Config,
    /// dotted key → "default" | "file <path>" | "environment VAR"
    pub sources: BTreeMap<String, String>,
}

impl Config {
    /// Loads defaults, then `file` (or `$DUCKLAKE_CONFIG`), then the process environment.
    pub fn load(file: Option<PathBuf>) -> Result<LoadedConfig, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// Like [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<PathBuf>,
        vars: &[(String, String)],
    ) -> Result<LoadedConfig, ConfigError> {
        let defaults = Config::default();
        // The keys we accept: every leaf of the default configuration.
        let known: Vec<String> = settings(&defaults, &BTreeMap::new())
            .into_iter()
            .map(|setting| setting.key)
            .collect();
        let file = file.or_else(|| {
            vars.iter()
                .find(|(k, _)| k == CONFIG_FILE_ENV)
                .map(|(_, v)| PathBuf::from(v))
        });

        let mut figment = Figment::from(Serialized::defaults(&defaults));
        let mut sources: BTreeMap<String, String> = known
            .iter()
            .map(|k| (k.clone(), "default".to_string()))
            .collect();
        let mut problems = Vec::new();
        if let Some(path) = &file {
            if !path.is_file() {
                problems.push(ConfigProblem {
                    key: "config file".into(),
                    value: path.display().to_string(),
                    expected: "a readable TOML file".into(),
                });
            } else {
                let layer = Figment::from(Toml::file_exact(path));
                for key in &known {
                    if layer.find_value(key).is_ok() {
                        sources.insert(key.clone(), format!("file {}", path.display()));
                    }
                }
                figment = figment.merge(Toml::file_exact(path));
            }
        }
        // The environment layer is built from `vars` (the process environment in
        // production), parsed the way figment's Env provider parses values.
        for (name, value) in vars {
            if let Some(key) = env_key(name).filter(|k| known.contains(k)) {
                let parsed = value
                    .parse::<figment::value::Value>()
                    .unwrap_or_else(|_| value.as_str().into());
                figment = figment.merge(Serialized::default(&key, parsed));
                sources.insert(key, format!("environment {name}"));
            }
        }

        let config = extract_sections(&figment, &mut problems);
        if let Some(config) = &config {
            problems.extend(config.validate());
        }
        match config {
            Some(config) if problems.is_empty() => Ok(LoadedConfig { config, sources }),
            _ => Err(ConfigError(problems)),
        }
    }

    /// Semantic checks that types alone cannot express.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, expected: &str| {
            if !ok {
                problems.push(ConfigProblem {
                    key: key.into(),
                    value,
                    expected: expected.into(),
                });
            }
        };
        check(
            log_filter(&self.log_level).is_some(),
            "log_level",
            self.log_level.clone(),
            "one of trace, debug, info, warn, error",
        );
        check(
            !self.server.host.is_empty(),
            "server.host",
            String::new(),
            "a host name or IP address",
        );
        let loopback = is_loopback(&self.server.host);
        check(
            self.auth.enabled || loopback,
            "auth.enabled",
            "false".into(),
            "true when server.host is not a loopback address (AUTH_ENABLED=true)",
        );
        check(
            self.auth.enabled || self.environment != Environment::Production,
            "auth.enabled",
            "false".into(),
            "true in production (AUTH_ENABLED=true)",
        );
        check(
            !(self.auth.bootstrap_key.is_some() && self.auth.bootstrap_key_file.is_some()),
            "auth.bootstrap_key_file",
            self.auth.bootstrap_key_file.clone().unwrap_or_default(),
            "unset when auth.bootstrap_key is set (one source for the key)",
        );
        if let Some(key) = &self.auth.bootstrap_key {
            check(
                key.expose().chars().count() >= 32,
                "auth.bootstrap_key",
                "***".into(),
                "at least 32 characters",
            );
        }
        check(
            self.flight.tls_cert.is_some() == self.flight.tls_key.is_some(),
            "flight.tls_key",
            if self.flight.tls_key.is_some() {
                "set"
            } else {
                "unset"
            }
            .into(),
            "set together with flight.tls_cert (FLIGHT_TLS_CERT and FLIGHT_TLS_KEY)",
        );
        check(
            !self.flight.enabled || self.flight.port == 0 || self.flight.port != self.server.port,
            "flight.port",
            self.flight.port.to_string(),
            "a port other than server.port",
        );
        check(
            self.flight.ticket_ttl_ms >= 100,
            "flight.ticket_ttl_ms",
            self.flight.ticket_ttl_ms.to_string(),
            "at least 100",
        );
        check(
            self.server.max_body_bytes >= 1024,
            "server.max_body_bytes",
            self.server.max_body_bytes.to_string(),
            "at least 1024",
        );
        check(
            (1..=1024).contains(&self.duckdb.connections),
            "duckdb.connections",
            self.duckdb.connections.to_string(),
            "between 1 and 1024",
        );
        check(
            is_memory_size(&self.duckdb.max_temp_directory_size)
                && !self.duckdb.max_temp_directory_size.ends_with('%'),
            "duckdb.max_temp_directory_size",
            self.duckdb.max_temp_directory_size.clone(),
            "a size such as 1GiB or 500MB",
        );
        check(
            self.query.max_sql_bytes >= 16,
            "query.max_sql_bytes",
            self.query.max_sql_bytes.to_string(),
            "at least 16",
        );
        check(
            self.query.max_result_bytes >= 1024,
            "query.max_result_bytes",
            self.query.max_result_bytes.to_string(),
            "at least 1024",
        );
        if let Some(limit) = &self.duckdb.memory_limit {
            check(
                is_memory_size(limit),
                "duckdb.memory_limit",
                limit.clone(),
                "a size such as 512MB, 4GiB or 75%",
            );
        }
        check(
            self.query.timeout_ms > 0,
            "query.timeout_ms",
            self.query.timeout_ms.to_string(),
            "more than 0",
        );
        check(
            self.query.max_timeout_ms >= self.query.timeout_ms,
            "query.max_timeout_ms",
            self.query.max_timeout_ms.to_string(),
            "at least query.timeout_ms",
        );
        check(
            self.query.max_rows > 0,
            "query.max_rows",
            self.query.max_rows.to_string(),
            "more than 0",
        );
        check(
            is_identifier(&self.ducklake.catalog_name),
            "ducklake.catalog_name",
            self.ducklake.catalog_name.clone(),
            "a plain identifier (letters, digits, underscore; not starting with a digit)",
        );
        check(
            self.ducklake.connection_timeout.is_finite() && self.ducklake.connection_timeout > 0.0,
            "ducklake.connection_timeout",
            self.ducklake.connection_timeout.to_string(),
            "a positive number of seconds",
        );
        check(
            self.ducklake.retry_backoff.is_finite() && self.ducklake.retry_backoff >= 1.0,
            "ducklake.retry_backoff",
            self.ducklake.retry_backoff.to_string(),
            "a number of at least 1.0",
        );
        check(
            is_bucket_name(&self.storage.default_bucket),
            "storage.default_bucket",
            self.storage.default_bucket.clone(),
            "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
        );
        check(
            !self.storage.prefix.contains("..") && !self.storage.prefix.starts_with('/'),
            "storage.prefix",
            self.storage.prefix.clone(),
            "a relative object key prefix",
        );
        check(
            self.server.ready_timeout_ms > 0,
            "server.ready_timeout_ms",
            self.server.ready_timeout_ms.to_string(),
            "more than 0",
        );
        check(
            (1..=1000).contains(&self.postgres.pool_size),
            "postgres.pool_size",
            self.postgres.pool_size.to_string(),
            "between 1 and 1000",
        );
        check(
            (1..=1000).contains(&self.postgres.duckdb_pool_size),
            "postgres.duckdb_pool_size",
            self.postgres.duckdb_pool_size.to_string(),
            "between 1 and 1000",
        );
        let jobs = &self.jobs;
        check(
            (1..=1024).contains(&jobs.max_concurrent),
            "jobs.max_concurrent",
            jobs.max_concurrent.to_string(),
            "between 1 and 1024",
        );
        for (key, value) in [
            ("jobs.max_result_bytes", jobs.max_result_bytes),
            ("jobs.retention_secs", jobs.retention_secs),
            ("jobs.timeout_ms", jobs.timeout_ms),
            ("jobs.heartbeat_ms", jobs.heartbeat_ms),
            ("jobs.sweep_interval_ms", jobs.sweep_interval_ms),
        ] {
            check(value > 0, key, value.to_string(), "more than 0");
        }
        check(
            jobs.stale_after_ms >= 2 * jobs.heartbeat_ms,
            "jobs.stale_after_ms",
            jobs.stale_after_ms.to_string(),
            "at least twice jobs.heartbeat_ms",
        );
        if self.features.enable_s3_encryption {
            check(
                self.storage.kms_key_id.is_some(),
                "storage.kms_key_id",
                "(unset)".into(),
                "a KMS key id when features.enable_s3_encryption is on \
                 (DuckDB's S3 writer encrypts with SSE-KMS)",
            );
        }
        if self.storage.minio_endpoint.is_some() {
            check(
                self.storage.minio_access_key.is_some(),
                "storage.minio_access_key",
                "(unset)".into(),
                "set when storage.minio_endpoint is set",
            );
            check(
                self.storage.minio_secret_key.is_some(),
                "storage.minio_secret_key",
                "(unset)".into(),
                "set when storage.minio_endpoint is set",
            );
            // Job results and ingest files live beside the data path; with
            // the lake at the bucket's root they would be inside it, where
            // DuckLake's orphan cleanup deletes every file it does not know.
            let data = self.storage.data_prefix();
            check(
                !data.is_empty(),
                "storage.prefix",
                format!("{:?}", self.storage.prefix),
                "a non-empty prefix: job results (<prefix>-jobs) and ingest files must live                  outside the data path, which DuckLake's orphan cleanup empties of unknown files",
            );
            let ingest = self.storage.ingest_prefix();
            check(
                data.is_empty() || (ingest != data && !ingest.starts_with(&format!("{data}/"))),
                "storage.ingest_prefix",
                ingest.clone(),
                "a prefix outside the data path (storage.prefix), which orphan cleanup empties",
            );
            check(
                !ingest.contains(['*', '?', '[', '{', '\\'])
                    && !ingest.split('/').any(|p| p == ".."),
                "storage.ingest_prefix",
                ingest,
                "a plain prefix (no glob characters or ..)",
            );
        }
        problems
    }

    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// The effective configuration as a JSON tree, secrets shown as `***`.
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("Config serialises to JSON")
    }
}

/// `localhost`, 127.0.0.0/8 or ::1: reachable from this machine only.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Maps an environment variable name to a dotted config key, if it is one of ours.
fn env_key(name: &str) -> Option<String> {
    if ENV_TOP_LEVEL.contains(&name) {
        return Some(name.to_ascii_lowercase());
    }
    ENV_SECTIONS.iter().find_map(|(prefix, section)| {
        name.strip_prefix(prefix)
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{section}.{}", rest.to_ascii_lowercase()))
    })
}

/// Extracts each section on its own so every type error is reported, not just the first.
fn extract_sections(figment: &Figment, problems: &mut Vec<ConfigProblem>) -> Option<Config> {
    #[derive(Deserialize)]
    struct General {
        #[serde(deserialize_with = "lenient::string")]
        environment: String,
        debug: bool,
        #[serde(deserialize_with = "lenient::string")]
        log_level: String,
        data_dir: PathBuf,
    }
    fn section<T: DeserializeOwned>(
        figment: &Figment,
        key: Option<&str>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<T> {
        let result = match key {
            Some(key) => figment.extract_inner::<T>(key),
            None => figment.extract::<T>(),
        };
        result
            .map_err(|errors| {
                for e in errors {
                    // figment's path holds the section and the field, in no order we rely on.
                    let field: Vec<&str> = e
                        .path
                        .iter()
                        .map(String::as_str)
                        .filter(|p| Some(*p) != key)
                        .collect();
                    let key = match key {
                        Some(section) if field.is_empty() => section.to_string(),
                        Some(section) => format!("{section}.{}", field.join(".")),
                        None => field.join("."),
                    };
                    let (value, expected) = describe_kind(&e.kind);
                    problems.push(ConfigProblem {
                        key,
                        value,
                        expected,
                    });
                }
            })
            .ok()
    }
    let general = section::<General>(figment, None, problems);
    let server = section(figment, Some("server"), problems);
    let duckdb = section(figment, Some("duckdb"), problems);
    let query = section(figment, Some("query"), problems);
    let postgres = section(figment, Some("postgres"), problems);
    let ducklake = section(figment, Some("ducklake"), problems);
    let storage = section(figment, Some("storage"), problems);
    let features = section(figment, Some("features"), problems);
    let auth = section(figment, Some("auth"), problems);
    let ingest = section(figment, Some("ingest"), problems);
    let maintenance = section(figment, Some("maintenance"), problems);
    let jobs = section(figment, Some("jobs"), problems);
    let flight = section(figment, Some("flight"), problems);
    let general = general?;
    Some(Config {
        environment: Environment::parse(&general.environment).unwrap_or_else(|| {
            problems.push(ConfigProblem {
                key: "environment".into(),
                value: general.environment.clone(),
                expected: format!("one of {}", Environment::NAMES.join(", ")),
            });
            Environment::Development
        }),
        debug: general.debug,
        log_level: general.log_level,
        data_dir: general.data_dir,
        server: server?,
        duckdb: duckdb?,
        query: query?,
        postgres: postgres?,
        ducklake: ducklake?,
        storage: storage?,
        features: features?,
        auth: auth?,
        ingest: ingest?,
        maintenance: maintenance?,
        jobs: jobs?,
        flight: flight?,
    })
}

fn describe_kind(kind: &figment::error::Kind) -> (String, String) {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) => (actual.to_string(), expected.clone()),
        Kind::InvalidValue(actual, expected) => (actual.to_string(), expected.clone()),
        Kind::InvalidLength(len, expected) => (format!("length {len}"), expected.clone()),
        Kind::UnknownVariant(v, expected) => (v.clone(), format!("one of {}", expected.join(", "))),
        other => (String::from("?"), other.to_string()),
    }
}

/// The tracing filter directive for a LOG_LEVEL value (origin documents write `INFO`).
pub fn log_filter(level: &str) -> Option<&'static str> {
    match level.to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" | "critical" => Some("error"),
        _ => None,
    }
}

fn is_memory_size(value: &str) -> bool {
    let v = value.trim();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let unit = unit.trim().to_ascii_uppercase();
    number.parse::<f64>().is_ok_and(|n| n > 0.0)
        && matches!(
            unit.as_str(),
            "B" | "KB" | "MB" | "GB" | "TB" | "KIB" | "MIB" | "GIB" | "TIB" | "%"
        )
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_lake_on_loopback() {
        let loaded = Config::load_from(None, &[]).expect("defaults are valid");
        assert_eq!(loaded.config.server.host, "127.0.0.1");
        assert_eq!(loaded.config.server.port, 8000);
        assert!(loaded.config.postgres.host.is_none());
        assert!(loaded.config.storage.minio_endpoint.is_none());
        assert_eq!(loaded.sources["server.port"], "default");
    }

    #[test]
    fn authentication_may_be_off_only_on_loopback_and_never_in_production() {
        let problems = |vars: &[(&str, &str)]| -> Vec<String> {
            match Config::load_from(None, &env(vars)) {
                Ok(_) => Vec::new(),
                Err(e) => e.0.iter().map(|p| p.key.clone()).collect(),
            }
        };
        assert!(
            problems(&[]).is_empty(),
            "loopback without auth is the default"
        );
        assert!(problems(&[("SERVER_HOST", "::1")]).is_empty());
        assert_eq!(problems(&[("SERVER_HOST", "0.0.0.0")]), ["auth.enabled"]);
        assert_eq!(problems(&[("ENVIRONMENT", "production")]), ["auth.enabled"]);
        assert!(problems(&[("SERVER_HOST", "0.0.0.0"), ("AUTH_ENABLED", "true")]).is_empty());
        assert_eq!(
            problems(&[("AUTH_ENABLED", "true"), ("AUTH_BOOTSTRAP_KEY", "short")]),
            ["auth.bootstrap_key"]
        );
        let loaded = Config::load_from(
            None,
            &env(&[
                ("AUTH_ENABLED", "true"),
                ("AUTH_BOOTSTRAP_KEY", "0123456789abcdef0123456789abcdef"),
            ]),
        )
        .expect("valid");
        assert!(!format!("{:?}", loaded.config).contains("0123456789abcdef"));
        assert!(!loaded
            .config
            .redacted()
            .to_string()
            .contains("0123456789abcdef"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-a-mounted-secret-0123456789abcdef\n").unwrap();
        let auth = AuthConfig {
            enabled: true,
            bootstrap_key: None,
            bootstrap_key_file: Some(file.display().to_string()),
        };
        assert_eq!(
            auth.bootstrap_key().unwrap().unwrap().expose(),
            "from-a-mounted-secret-0123456789abcdef"
        );
        // A key from the file obeys the same minimum as one set directly.
        std::fs::write(&file, "short-key\n").unwrap();
        let err = auth.bootstrap_key().unwrap_err();
        assert!(
            err.contains("holds a key of 9 characters: at least 32"),
            "{err}"
        );
        assert!(!err.contains("short-key"), "{err}");
    }

    #[test]
    fn job_results_and_ingest_files_stay_outside_the_data_path() {
        let problems = |vars: &[(&str, &str)]| -> Vec<String> {
            let mut all = vec![
                ("STORAGE_MINIO_ENDPOINT", "minio:9000"),
                ("STORAGE_MINIO_ACCESS_KEY", "ak"),
                ("STORAGE_MINIO_SECRET_KEY", "sk"),
            ];
            all.extend_from_slice(vars);
            match Config::load_from(None, &env(&all)) {
                Ok(loaded) => {
                    assert_eq!(loaded.config.storage.ingest_prefix(), "lake-ingest");
                    Vec::new()
                }
                Err(e) => e.0.iter().map(|p| p.key.clone()).collect(),
            }
        };
        assert!(problems(&[]).is_empty());
        assert_eq!(problems(&[("STORAGE_PREFIX", "")]), ["storage.prefix"]);
        for inside in ["lake", "lake/ingest", "/lake/x/"] {
            assert_eq!(
                problems(&[("STORAGE_INGEST_PREFIX", inside)]),
                ["storage.ingest_prefix"],
                "{inside}"
            );
        }
        for bad in ["uploads/*", "../other"] {
            assert_eq!(
                problems(&[("STORAGE_INGEST_PREFIX", bad)]),
                ["storage.ingest_prefix"]
            );
        }
        let storage = StorageConfig {
            ingest_prefix: "/drop/zone/".into(),
            ..Default::default()
        };
        assert_eq!(storage.ingest_prefix(), "drop/zone");
    }

    #[test]
    fn origin_environment_names_map_onto_keys() {
        let loaded = Config::load_from(
            None,
            &env(&[
                ("DB_POSTGRES_HOST", "pg.internal"),
                ("DB_POSTGRES_PASSWORD", "12345"),
                ("DB_DUCKLAKE_DATA_INLINING_ROW_LIMIT", "1000"),
                ("DB_DUCKLAKE_CONNECTION_TIMEOUT", "30.0"),
                ("STORAGE_MINIO_ENDPOINT", "minio:9000"),
                ("STORAGE_MINIO_ACCESS_KEY", "ak"),
                ("STORAGE_MINIO_SECRET_KEY", "sk"),
                ("FEATURE_ENABLE_S3_ENCRYPTION", "true"),
                ("STORAGE_KMS_KEY_ID", "alias/lake"),
                ("LOG_LEVEL", "INFO"),
                ("SERVER_PORT", "9100"),
                ("SOME_UNRELATED_VAR", "x"),
            ]),
        )
        .expect("valid");
        let c = loaded.config;
        assert_eq!(c.postgres.host.as_deref(), Some("pg.internal"));
        assert_eq!(
            c.postgres.password.as_ref().map(Secret::expose),
            Some("12345")
        );
        assert_eq!(c.ducklake.data_inlining_row_limit, Some(1000));
        assert!(c.features.enable_s3_encryption);
        assert_eq!(c.storage.kms_key_id.as_deref(), Some("alias/lake"));
        assert_eq!(c.server.port, 9100);
        assert_eq!(loaded.sources["server.port"], "environment SERVER_PORT");
    }

    #[test]
    fn every_problem_is_reported_with_key_value_and_expectation() {
        let err = Config::load_from(
            None,
            &env(&[
                ("SERVER_PORT", "eighty"),
                ("LOG_LEVEL", "loud"),
                ("DUCKDB_MEMORY_LIMIT", "lots"),
            ]),
        )
        .err()
        .expect("invalid");
        let text = err.to_string();
        assert!(text.contains("server.port = "), "{text}");
        assert!(text.contains("eighty"), "{text}");
        // The server section failed to parse, so semantic checks do not run;
        // the other sections' type errors are still all there.
        let err = Config::load_from(
            None,
            &env(&[("LOG_LEVEL", "loud"), ("DUCKDB_MEMORY_LIMIT", "lots")]),
        )
        .err()
        .expect("invalid");
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err
            .to_string()
            .contains("log_level = loud: expected one of trace"));
        assert!(err.to_string().contains("duckdb.memory_limit = lots"));
    }

    #[test]
    fn secrets_never_print() {
        let loaded =
            Config::load_from(None, &env(&[("DB_POSTGRES_PASSWORD", "hunter2-secret")])).unwrap();
        let c = loaded.config;
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.redacted().to_string().contains("hunter2"));
        assert_eq!(c.redacted()["postgres"]["password"], "***");
    }

    #[test]
    fn toml_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n[auth]\nenabled = true\n",
        )
        .unwrap();
        let loaded =
            Config::load_from(Some(path.clone()), &env(&[("SERVER_PORT", "9001")])).unwrap();
        assert_eq!(loaded.config.server.host, "0.0.0.0");
        assert_eq!(loaded.config.server.port, 9001);
        assert!(loaded.sources["server.host"].starts_with("file "));
    }
}
