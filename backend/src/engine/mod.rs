//! The lake engine: one embedded DuckDB database per process, its extensions,
//! the attached DuckLake, and a pool of connections that run user SQL.
//!
//! Everything here that touches DuckDB runs on blocking threads
//! (`spawn_blocking`); the async API only awaits it. The engine knows no HTTP.

pub mod body;
pub mod catalog;
pub mod database;
pub mod extensions;
pub mod freshness;
pub mod hot;
pub mod ingest;
pub mod lake;
pub mod maintenance;
pub mod parse_tree;
pub mod pool;
pub mod progress;
pub mod query;
pub mod sandbox;
pub mod session;
pub mod snapshots;
pub mod stop;
pub mod stream;
pub mod timetravel;
mod timetz;

pub use database::{Engine, EngineError, EngineInfo};
pub use query::Params;
pub use stream::QueryRequest;
