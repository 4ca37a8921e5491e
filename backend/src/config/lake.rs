//! The sections that say where the lake lives: its catalog
//! ([`PostgresConfig`], [`DuckLakeConfig`]) and its data path in object
//! storage ([`StorageConfig`]), with their defaults.

use serde::{Deserialize, Serialize};

use super::{enums::AcquireMode, lenient, secret::Secret};

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
