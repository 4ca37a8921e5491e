//! The integration tests: one binary (one link of the bundled DuckDB),
//! a module per area. Each test starts what it needs: the app in-process
//! (`common::spawn_app`), the real binary, PostgreSQL, the S3 server.
//! `load` and `streaming_memory` are binaries of their own: they want the
//! machine to themselves (load generation, a peak-memory figure).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod backup;
mod bad_input;
mod cache;
mod cli;
mod container;
mod docs;
mod exact;
mod flight;
mod formats;
mod hot;
mod ingest;
mod jobs;
mod jobs_stack;
mod lake;
mod limits;
mod maintenance;
mod observability;
mod one_parser;
mod process;
mod sandbox;
mod schemathesis;
mod stack;
mod tls;
mod transactions;
mod types;
mod ui;
