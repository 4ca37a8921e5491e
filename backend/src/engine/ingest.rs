//! Loading a file into a lake table in one transaction: DuckDB reads the
//! file (CSV, TSV, NDJSON or Parquet, streamed, never whole in memory) and
//! DuckLake writes it as Parquet. Any failure — a malformed file, a value
//! that does not fit its column on row ten million, an interrupt — rolls
//! the transaction back, so the table is exactly as it was.

use std::time::Duration;

use duckdb::Connection;
use serde::{Deserialize, Serialize};

use super::{
    catalog::last_committed,
    lake::{quote_identifier, quote_literal},
    Engine,
};
use crate::{engine::query::query_vec, error::Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// With a header row; types detected by DuckDB.
    Csv,
    Tsv,
    /// One JSON object per line.
    Ndjson,
    Parquet,
}

impl FileFormat {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "tsv" => Some(Self::Tsv),
            "ndjson" | "jsonl" | "json_lines" => Some(Self::Ndjson),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// From a Content-Type (parameters ignored).
    pub fn from_media_type(media: &str) -> Option<Self> {
        let essence = media.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "text/csv" | "application/csv" => Some(Self::Csv),
            "text/tab-separated-values" => Some(Self::Tsv),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/jsonlines" => Some(Self::Ndjson),
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Ndjson => "ndjson",
            Self::Parquet => "parquet",
        }
    }

    /// The DuckDB table function reading `location`.
    fn reader(self, location: &str) -> String {
        let path = quote_literal(location);
        match self {
            Self::Csv => format!("read_csv({path}, header = true)"),
            Self::Tsv => format!("read_csv({path}, header = true, delim = '\\t')"),
            Self::Ndjson => format!("read_json({path}, format = 'newline_delimited')"),
            Self::Parquet => format!("read_parquet({path})"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Add the rows (columns matched by name; missing ones get their default).
    #[default]
    Append,
    /// Replace every row of the table with the file's.
    Replace,
    /// Create the table with the file's columns and types.
    Create,
}

/// What a load did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Loaded {
    pub rows_loaded: u64,
    /// The snapshot the load's commit created.
    pub snapshot: i64,
}

/// A failure while reading the file is the file's fault: 422 with DuckDB's
/// words. Outages, conflicts and timeouts keep their own codes.
fn load_error(err: duckdb::Error) -> Error {
    match Error::from_duckdb(err) {
        Error::SqlError(message) | Error::ConstraintViolation(message) => {
            Error::InvalidData(message)
        }
        other => other,
    }
}

/// One file to load into a lake table.
#[derive(Debug, Clone)]
pub struct FileLoad {
    pub schema: String,
    pub table: String,
    /// A path under the spill directory or an object in the lake's bucket.
    pub location: String,
    pub format: FileFormat,
    pub mode: LoadMode,
}

impl Engine {
    /// Loads a file into its table, in a DuckLake transaction of its own.
    pub async fn load_file(&self, load: FileLoad, timeout: Duration) -> Result<Loaded, Error> {
        let lake_name = self.lake.name.clone();
        self.run_blocking(timeout, move |conn| {
            conn.execute_batch("BEGIN TRANSACTION")
                .map_err(Error::from_duckdb)?;
            let rows = load_on(conn, &lake_name, &load, false)?;
            conn.execute_batch("COMMIT").map_err(Error::from_duckdb)?;
            Ok(Loaded {
                rows_loaded: rows,
                snapshot: last_committed(conn, &lake_name)?,
            })
        })
        .await
    }

    /// [`Engine::load_file`] inside a transaction held open across calls:
    /// its rows count; they commit (or not) with the transaction. A load
    /// that fails dooms the transaction.
    pub async fn load_in_session(
        &self,
        session: &std::sync::Arc<super::session::Session>,
        load: FileLoad,
        timeout: Duration,
    ) -> Result<u64, Error> {
        let FileLoad {
            schema,
            table,
            mode,
            ..
        } = &load;
        let conn = session.take()?;
        // Audited with how the transaction ends, as its statements are.
        session.writes.lock().push(super::session::Write {
            sql: format!("-- bulk ingest ({mode:?}) into {schema}.{table}"),
            kind: vec!["INGEST".into()],
            tables: vec![format!("{schema}.{table}")],
        });
        let stop = super::stop::Stop::new(conn.interrupt_handle());
        session.running(stop.clone());
        let watchdog = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                stop.stop();
            })
        };
        let lake_name = self.lake.name.clone();
        let session = std::sync::Arc::clone(session);
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = load_on(&conn, &lake_name, &load, true);
            stop.release();
            // A load refused before it wrote (no such table, or it exists
            // already) leaves the transaction as it was.
            if !matches!(
                loaded,
                Ok(_) | Err(Error::NotFound(_) | Error::AlreadyExists(_))
            ) {
                session
                    .failed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            session.put_back(conn);
            loaded
        })
        .await
        .map_err(Error::internal)?;
        let timed_out = watchdog.is_finished();
        watchdog.abort();
        match loaded {
            Err(_) if timed_out => Err(Error::QueryTimeout(format!(
                "the load ran longer than its timeout of {} ms",
                timeout.as_millis()
            ))),
            other => other,
        }
    }
}

/// Loads the file into `schema.table` on `conn`, inside the transaction
/// open there (one held across calls: `in_transaction`): the rows loaded.
fn load_on(
    conn: &Connection,
    lake_name: &str,
    load: &FileLoad,
    in_transaction: bool,
) -> Result<u64, Error> {
    let FileLoad {
        schema,
        table,
        location,
        format,
        mode,
    } = load;
    let (format, mode) = (*format, *mode);
    let lake = quote_identifier(lake_name);
    let meta = quote_identifier(&format!("__ducklake_metadata_{lake_name}"));
    let target = format!(
        "{lake}.{}.{}",
        quote_identifier(schema),
        quote_identifier(table)
    );
    let (schema_exists, table_exists) = match in_transaction {
        // DuckDB's own catalog views see what the transaction created.
        true => existence_in_transaction(conn, lake_name, schema, table)?,
        false => existence(conn, &meta, schema, table)?,
    };
    let named = || format!("{}.{}", quote_identifier(schema), quote_identifier(table));
    if !schema_exists {
        return Err(Error::NotFound(format!(
            "no schema {} in the lake",
            quote_identifier(schema)
        )));
    }
    match (mode, table_exists) {
        (LoadMode::Create, true) => {
            return Err(Error::AlreadyExists(format!(
                "the table {} already exists; use mode=append or mode=replace",
                named()
            )))
        }
        (LoadMode::Append | LoadMode::Replace, false) => {
            return Err(Error::NotFound(format!(
                "no table {} in the lake; use mode=create to make it from the file",
                named()
            )))
        }
        _ => {}
    }
    let reader = format.reader(location);
    // Read the whole file once without writing anything: a bad value
    // anywhere in it fails here, before DuckLake writes a file.
    validate(conn, &reader, mode, lake_name, schema, table)?;
    Ok(match mode {
        LoadMode::Create => {
            conn.execute_batch(&format!("CREATE TABLE {target} AS SELECT * FROM {reader}"))
                .map_err(load_error)?;
            conn.query_row(&format!("SELECT count(*) FROM {target}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(Error::from_duckdb)? as u64
        }
        LoadMode::Replace | LoadMode::Append => {
            if mode == LoadMode::Replace {
                conn.execute(&format!("DELETE FROM {target}"), [])
                    .map_err(Error::from_duckdb)?;
            }
            conn.execute(
                &format!("INSERT INTO {target} BY NAME SELECT * FROM {reader}"),
                [],
            )
            .map_err(load_error)? as u64
        }
    })
}

/// Reads every row of the file through the casts the load will apply and
/// the table's NOT NULL columns: 422 `invalid_data` for the first problem.
fn validate(
    conn: &Connection,
    reader: &str,
    mode: LoadMode,
    lake: &str,
    schema: &str,
    table: &str,
) -> Result<(), Error> {
    if mode == LoadMode::Create {
        conn.query_row(&format!("SELECT sum(hash(f)) FROM {reader} f"), [], |row| {
            row.get::<_, Option<i128>>(0)
        })
        .map_err(load_error)?;
        return Ok(());
    }
    let file_columns = query_vec(
        conn,
        &format!("DESCRIBE SELECT * FROM {reader}"),
        [],
        |row| row.get::<_, String>(0),
    )
    .map_err(load_error)?;
    let table_columns = query_vec(
        conn,
        "SELECT column_name, data_type, NOT is_nullable FROM duckdb_columns() \
             WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [lake, schema, table],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
            ))
        },
    )
    .map_err(Error::from_duckdb)?;
    let mut casts = Vec::new();
    let mut required = Vec::new();
    for column in &file_columns {
        let Some((_, data_type, not_null)) = table_columns
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(column))
        else {
            return Err(Error::InvalidData(format!(
                "the file has a column {} that the table does not have",
                quote_identifier(column)
            )));
        };
        let value = format!("f.{}", quote_identifier(column));
        casts.push(format!("CAST({value} AS {data_type})"));
        if *not_null {
            required.push(format!("{value} IS NULL"));
        }
    }
    let missing_required: Vec<&str> = table_columns
        .iter()
        .filter(|(name, _, not_null)| {
            *not_null && !file_columns.iter().any(|c| c.eq_ignore_ascii_case(name))
        })
        .map(|(name, _, _)| name.as_str())
        .collect();
    if !missing_required.is_empty() {
        return Err(Error::InvalidData(format!(
            "the file lacks the NOT NULL column(s) {}",
            missing_required.join(", ")
        )));
    }
    let nulls = if required.is_empty() {
        "0".to_string()
    } else {
        format!("count(*) FILTER (WHERE {})", required.join(" OR "))
    };
    let (_, empty): (Option<i128>, i64) = conn
        .query_row(
            &format!(
                "SELECT sum(hash({})), {nulls} FROM {reader} f",
                casts.join(", ")
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(load_error)?;
    if empty > 0 {
        return Err(Error::InvalidData(format!(
            "{empty} row(s) of the file leave a NOT NULL column empty"
        )));
    }
    Ok(())
}

/// [`existence`] as a transaction held open across calls sees it (its own
/// tables included).
fn existence_in_transaction(
    conn: &Connection,
    lake: &str,
    schema: &str,
    table: &str,
) -> Result<(bool, bool), Error> {
    conn.query_row(
        "SELECT (SELECT count(*) > 0 FROM duckdb_schemas() \
                 WHERE database_name = ? AND schema_name = ?), \
                (SELECT count(*) > 0 FROM duckdb_tables() \
                 WHERE database_name = ? AND schema_name = ? AND table_name = ?)",
        [lake, schema, lake, schema, table],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .map_err(Error::from_duckdb)
}

fn existence(
    conn: &Connection,
    meta: &str,
    schema: &str,
    table: &str,
) -> Result<(bool, bool), Error> {
    conn.query_row(
        &format!(
            "SELECT count(*) > 0, count(t.table_id) > 0 FROM {meta}.ducklake_schema s \
             LEFT JOIN {meta}.ducklake_table t ON t.schema_id = s.schema_id \
                  AND t.end_snapshot IS NULL AND t.table_name = ? \
             WHERE s.schema_name = ? AND s.end_snapshot IS NULL"
        ),
        [table, schema],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .map_err(Error::from_duckdb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_names_and_media_types() {
        assert_eq!(FileFormat::from_name("JSONL"), Some(FileFormat::Ndjson));
        assert_eq!(
            FileFormat::from_media_type("text/csv; charset=utf-8"),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            FileFormat::from_media_type("application/vnd.apache.parquet"),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_media_type("application/json"), None);
        assert_eq!(FileFormat::from_name("xlsx"), None);
    }

    #[test]
    fn readers_quote_the_location() {
        let sql = FileFormat::Csv.reader("/tmp/it's.csv");
        assert_eq!(sql, "read_csv('/tmp/it''s.csv', header = true)");
    }
}
