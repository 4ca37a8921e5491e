//! Running one SQL request on a connection, on a blocking thread.
//!
//! Parameters are bound through a prepared statement, never spliced into the
//! SQL. Results are read from DuckDB's streaming result batch by batch and
//! encoded as they arrive, stopping at `max_rows`.

use duckdb::{arrow::array::RecordBatch, types::Value, Connection};
use serde::Serialize;

use crate::{engine::types::DuckType, error::ApiError, format::json};

/// Query parameters: positional (`?`, `$1`) or named (`$name`).
#[derive(Debug, Clone, Default)]
pub enum Params {
    #[default]
    None,
    Positional(Vec<serde_json::Value>),
    Named(serde_json::Map<String, serde_json::Value>),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A finished query: its columns and its rows already encoded as a JSON array.
#[derive(Debug)]
pub struct QueryOutput {
    pub columns: Vec<Column>,
    /// `[[...],[...]]`: one JSON array per row.
    pub rows_json: Vec<u8>,
    pub row_count: u64,
    pub truncated: bool,
}

/// Prepares, binds, executes and encodes. Blocking: call it off the executor.
pub fn run_query(
    conn: &Connection,
    sql: &str,
    params: &Params,
    max_rows: u64,
) -> Result<QueryOutput, ApiError> {
    if sql.trim().is_empty() {
        return Err(ApiError::InvalidParameters("sql is empty".into()));
    }
    let mut stmt = conn.prepare(sql).map_err(ApiError::from_duckdb)?;
    let values = bind_values(&stmt, params)?;
    let schema = stmt
        .stream_arrow(duckdb::params_from_iter(values.iter()))
        .map_err(ApiError::from_duckdb)?
        .get_schema();
    let column_count = stmt.column_count();
    let types: Vec<DuckType> = (0..column_count)
        .map(|i| DuckType::from_logical(&stmt.column_logical_type(i), schema.field(i).data_type()))
        .collect();
    let columns = (0..column_count)
        .map(|i| Column {
            name: stmt.column_name(i).cloned().unwrap_or_default(),
            type_name: types[i].name.clone(),
        })
        .collect();

    let mut rows_json = Vec::with_capacity(4096);
    rows_json.push(b'[');
    let mut row_count = 0u64;
    let mut truncated = false;
    while let Some(chunk) = stmt.step().map_err(ApiError::from_duckdb)? {
        let batch = RecordBatch::from(&chunk);
        let room = max_rows - row_count;
        let take = (batch.num_rows() as u64).min(room) as usize;
        encode_rows(&mut rows_json, &batch, &types, take, row_count == 0);
        row_count += take as u64;
        if take < batch.num_rows() {
            truncated = true;
            break;
        }
    }
    rows_json.push(b']');
    Ok(QueryOutput {
        columns,
        rows_json,
        row_count,
        truncated,
    })
}

fn encode_rows(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    types: &[DuckType],
    rows: usize,
    first: bool,
) {
    for row in 0..rows {
        if row > 0 || !first {
            out.push(b',');
        }
        out.push(b'[');
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::write_value(out, column.as_ref(), row, &types[i]);
        }
        out.push(b']');
    }
}

/// Orders the request's parameters the way the statement numbers them.
fn bind_values(stmt: &duckdb::Statement<'_>, params: &Params) -> Result<Vec<Value>, ApiError> {
    let expected = stmt.parameter_count();
    match params {
        Params::None if expected == 0 => Ok(Vec::new()),
        Params::None => Err(ApiError::InvalidParameters(format!(
            "the statement takes {expected} parameter(s) and none were given"
        ))),
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(ApiError::InvalidParameters(format!(
                    "the statement takes {expected} parameter(s), {} were given",
                    values.len()
                )));
            }
            Ok(values.iter().map(json_to_value).collect())
        }
        Params::Named(map) => {
            let mut values = Vec::with_capacity(expected);
            for i in 1..=expected {
                let name = stmt.parameter_name(i).map_err(ApiError::from_duckdb)?;
                let value = map.get(&name).ok_or_else(|| {
                    ApiError::InvalidParameters(format!("no value given for parameter ${name}"))
                })?;
                values.push(json_to_value(value));
            }
            if let Some(extra) = map.keys().find(|k| {
                !(1..=expected).any(|i| stmt.parameter_name(i).ok().as_deref() == Some(k.as_str()))
            }) {
                return Err(ApiError::InvalidParameters(format!(
                    "the statement has no parameter ${extra}"
                )));
            }
            Ok(values)
        }
    }
}

/// JSON scalars bind as themselves; arrays and objects bind as their JSON
/// text, which DuckDB casts to LIST, STRUCT or JSON where the statement needs it.
fn json_to_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::BigInt(i),
            (None, Some(u), _) => Value::UBigInt(u),
            (_, _, Some(f)) => Value::Double(f),
            _ => Value::Text(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}
