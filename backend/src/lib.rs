//! ducklake-backend: SQL over HTTP on a DuckLake lakehouse.
//!
//! The layers, from the bottom: leaves ([`instance`], [`retry`], [`role`]),
//! [`config`] (with the listeners' [`tls`]), the domain [`error`], our own
//! tables ([`store`]) and the object store ([`bucket`]), the DuckDB [`engine`] and its result
//! [`format`]s, the services over it ([`auth`], [`audit`], [`jobs`],
//! [`maintenance`]) with what they share ([`services`], [`meter`], [`uploads`]), and at
//! the top the transports: the HTTP [`api`], Arrow Flight SQL ([`flight`])
//! and the command-line [`client`]. [`startup`] wires them together. A module only
//! imports from the layers below it (`scripts/module-cycles.py` checks).

pub mod api;
pub mod audit;
pub mod auth;
pub mod bucket;
pub mod cache;
pub mod client;
pub mod config;
pub mod digest;
pub mod engine;
pub mod error;
pub mod flight;
pub mod format;
pub mod instance;
pub mod jobs;
pub mod maintenance;
pub mod meter;
pub mod metrics;
pub mod performance;
pub mod retry;
pub mod role;
pub mod services;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transactions;
pub mod uploads;

pub use startup::{open_store, Application, StartupError, KEEP_ALIVE};
