//! The command-line client, `ducklake-backend client ...`: talks to a running
//! service over its public HTTP API only (never the engine or the store), so
//! it works against any replica, local or remote, with any key.
//!
//! Exit codes are part of its interface (see [`Failure::exit_code`]): scripts
//! tell an API error (1) from a usage error (2), an unreachable or failing
//! service (3) and a failed job (4). Errors print as the API worded them:
//! `error: <code>: <message>`. Progress bars go to stderr, and only when it is
//! a terminal; results go to stdout or `--output`.

mod connection;
mod failure;
mod ingest;
mod jobs;
mod lake;
mod output;
mod query;

use std::{path::Path, process::ExitCode};

use clap::{Args, Subcommand};

pub use connection::Api;
pub use failure::Failure;

/// `ducklake-backend client`: flags shared by every client command.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The service's base URL [default: http://127.0.0.1:8000, or `url` in the config file].
    #[arg(long, env = "DUCKLAKE_URL", global = true)]
    pub url: Option<String>,
    /// API key, sent as `Authorization: Bearer` [or `key` in the config file].
    /// Prefer the environment variable or the config file: flags show in `ps`.
    #[arg(long, env = "DUCKLAKE_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Never draw progress bars (they are drawn only when stderr is a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Run SQL (from an argument, --file or stdin) and print or save its result.
    Query(query::QueryArgs),
    /// Load a CSV, TSV, NDJSON or Parquet file into a table, streaming it from disk.
    Ingest(ingest::IngestArgs),
    /// List the lake's tables (every page, or --limit).
    Tables(lake::TablesArgs),
    /// One table's columns, statistics and partitioning.
    Describe(lake::DescribeArgs),
    /// List the lake's schemas.
    Schemas(lake::SchemasArgs),
    /// List the lake's snapshots, newest first.
    Snapshots(lake::SnapshotsArgs),
    /// Async query jobs: submit, watch, fetch results, cancel.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The service's liveness and readiness of each dependency; exit 3 when not ready.
    Health(lake::HealthArgs),
    /// The audit trail, newest first: writes, ingests, key changes,
    /// maintenance and refused statements (admin key).
    Audit(lake::AuditArgs),
}

/// Runs one client command; `config` is the global `--config` flag, which
/// for the client names its TOML file (url, key).
pub fn run(args: ClientArgs, config: Option<&Path>) -> ExitCode {
    match dispatch(args, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn dispatch(args: ClientArgs, config: Option<&Path>) -> Result<(), Failure> {
    let api = Api::connect(args.url, args.key, config)?;
    let progress = output::Progress::new(args.no_progress);
    match args.command {
        ClientCommand::Query(args) => query::run(&api, args),
        ClientCommand::Ingest(args) => ingest::run(&api, args, &progress),
        ClientCommand::Tables(args) => lake::tables(&api, args),
        ClientCommand::Describe(args) => lake::describe(&api, args),
        ClientCommand::Schemas(args) => lake::schemas(&api, args),
        ClientCommand::Snapshots(args) => lake::snapshots(&api, args),
        ClientCommand::Jobs { command } => jobs::run(&api, command, &progress),
        ClientCommand::Health(args) => lake::health(&api, args),
        ClientCommand::Audit(args) => lake::audit(&api, args),
    }
}
