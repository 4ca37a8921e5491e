//! `client query`: SQL from an argument, a file or stdin, through
//! `POST /api/v1/query`, its result printed as a table or streamed out in
//! one of the API's formats.

use std::{
    io::{IsTerminal, Read},
    path::PathBuf,
};

use clap::Args;
use reqwest::Method;
use serde::Serialize;

use super::{
    connection::Api,
    failure::Failure,
    output::{OutputArgs, ResultFormat},
};

/// Where the SQL comes from.
#[derive(Debug, Args)]
pub struct SqlSource {
    /// The SQL; `-` (or nothing, with --file absent) reads it from stdin.
    pub sql: Option<String>,
    /// Read the SQL from FILE.
    #[arg(short, long, value_name = "FILE", conflicts_with = "sql")]
    pub file: Option<PathBuf>,
    /// Parameters as JSON: an array binds `?`/`$1`, an object binds `$name`.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
}

impl SqlSource {
    pub fn read(&self) -> Result<(String, Option<serde_json::Value>), Failure> {
        let sql = match (&self.sql, &self.file) {
            (_, Some(path)) => std::fs::read_to_string(path)
                .map_err(|err| Failure::usage(format!("cannot read {}: {err}", path.display())))?,
            (Some(sql), None) if sql != "-" => sql.clone(),
            _ => {
                if std::io::stdin().is_terminal() {
                    return Err(Failure::usage(
                        "no SQL: give it as an argument, with --file, or on stdin",
                    ));
                }
                let mut sql = String::new();
                std::io::stdin()
                    .read_to_string(&mut sql)
                    .map_err(|err| Failure::usage(format!("cannot read stdin: {err}")))?;
                sql
            }
        };
        if sql.trim().is_empty() {
            return Err(Failure::usage("no SQL: the statement is empty"));
        }
        let params = self
            .params
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|err| Failure::usage(format!("--params is not JSON: {err}")))?;
        Ok((sql, params))
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub source: SqlSource,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Read the lake as of this snapshot id (time travel).
    #[arg(long, conflicts_with = "as_of")]
    pub snapshot: Option<i64>,
    /// Read the lake as of this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// Interrupt the query after this long (capped by the service).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Return at most this many rows (capped by the service).
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// Run all statements in one transaction: all or nothing.
    #[arg(long)]
    pub transaction: bool,
}

/// The body of `POST /api/v1/query`.
#[derive(Serialize)]
struct QueryBody<'a> {
    sql: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<serde_json::Value>,
    format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_rows: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    transaction: bool,
}

pub fn run(api: &Api, args: QueryArgs) -> Result<(), Failure> {
    let format: ResultFormat = args.output.resolve()?;
    let (sql, params) = args.source.read()?;
    let body = QueryBody {
        sql,
        params,
        format: format.api_name(),
        snapshot: args.snapshot,
        as_of: args.as_of,
        timeout_ms: args.timeout_ms,
        max_rows: args.max_rows,
        transaction: args.transaction,
    };
    let response = api.send(
        api.request(Method::POST, &["api", "v1", "query"])
            .json(&body),
    )?;
    args.output.write_result(format, response)
}
