//! The service's one configuration type.
//!
//! Layers, later ones winning: built-in defaults < an optional TOML file
//! (`--config` or `DUCKLAKE_CONFIG`) < environment variables. The environment
//! uses the names of the origin deployment (`DB_POSTGRES_HOST`,
//! `STORAGE_MINIO_ENDPOINT`, `FEATURE_ENABLE_*` ...), mapped explicitly onto
//! the nested keys below. Every problem is reported at once, one line each.
//! Secrets are [`Secret`]s: they print as `***` everywhere, including the
//! effective-configuration summary.
//!
//! Layout, each file using only the ones before it: `lenient` (serde
//! helpers), `secret`, `enums`, `lake` and `sections` (the shape and its
//! defaults), `problem`, `settings` (the redacted rendering), `validate`,
//! `load`. This file only re-exports.

mod enums;
mod lake;
mod lenient;
mod load;
mod problem;
mod secret;
mod sections;
mod settings;
mod validate;

pub use enums::{log_filter, AcquireMode, Environment};
pub use lake::{DuckLakeConfig, PostgresConfig, StorageConfig};
pub use load::{LoadedConfig, Unknown, CONFIG_FILE_ENV};
pub use problem::{ConfigError, ConfigProblem};
pub use secret::{exposed, Secret};
pub use sections::{
    AuthConfig, CacheConfig, Config, DuckDbConfig, FeatureConfig, FlightConfig, HotTablesConfig,
    IngestConfig, JobsConfig, MaintenanceConfig, QueryConfig, ServerConfig,
};
pub use settings::{settings, Setting};
pub use validate::{is_identifier, Uses};
