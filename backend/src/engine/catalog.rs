//! What is in the lake: schemas, tables, columns, snapshots — read from
//! DuckLake's own SQL surface (`ducklake_table_info`, `ducklake_snapshots`)
//! and its catalog tables, by SQL the service writes itself (trusted: it
//! does not pass the sandbox, and every name in it is quoted or bound).
//!
//! Lists are keyset-paginated: a page ends at a key and the opaque cursor
//! carries that key, so tables created or dropped meanwhile never shift a
//! later page (nothing is skipped or repeated that existed throughout).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use duckdb::{params_from_iter, types::Value, Connection};
use serde::Serialize;

pub(crate) use super::snapshots::current_snapshot;
use super::{
    database::Engine,
    lake::{quote_identifier, quote_literal},
};
use crate::{engine::query::query_vec, error::Error};

/// Longest schema or table name the API accepts (PostgreSQL's limit is
/// lower, 63 bytes, and gives its own error).
const MAX_NAME_CHARS: usize = 255;

/// One page of a list, and where the next one starts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaEntry {
    pub name: String,
    /// Tables in the schema now.
    pub table_count: i64,
    /// The snapshot that created it.
    pub created_snapshot: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    pub row_count: i64,
    /// Parquet data files of the table now.
    pub data_file_count: i64,
    /// Bytes of those data files.
    pub size_bytes: i64,
    /// Delete files (rows removed from data files) and their bytes.
    pub delete_file_count: i64,
    pub delete_size_bytes: i64,
    /// The last snapshot that changed the table (data, schema or layout).
    pub last_change_snapshot: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableDetail {
    #[serde(flatten)]
    pub table: TableEntry,
    pub columns: Vec<ColumnEntry>,
    /// Partition keys in order; empty when the table is not partitioned.
    pub partitioning: Vec<PartitionKey>,
    /// The snapshot this description was read at.
    pub snapshot: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnEntry {
    pub name: String,
    /// DuckDB's type name.
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
    /// DuckLake's table-level statistics, when it keeps them.
    pub stats: Option<ColumnStats>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnStats {
    pub min: Option<String>,
    pub max: Option<String>,
    pub contains_null: Option<bool>,
    pub contains_nan: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartitionKey {
    pub column: String,
    /// identity, year, month, day, hour, bucket ...
    pub transform: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotEntry {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub schema_version: i64,
    /// DuckLake's change set: kind → tables/schemas (ids or names).
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub author: Option<String>,
    pub commit_message: Option<String>,
}

/// Filters and position of a table list.
#[derive(Debug, Default, Clone)]
pub struct TableFilter {
    pub schema: Option<String>,
    pub prefix: Option<String>,
    pub limit: usize,
    pub after: Option<(String, String)>,
}

/// Checks a schema or table name from a request: any text (it is always
/// quoted), but not empty, not absurdly long, and no control characters.
pub fn validate_name(kind: &str, name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::InvalidParameters(format!(
            "the {kind} name is empty"
        )));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidParameters(format!(
            "the {kind} name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidParameters(format!(
            "the {kind} name contains a control character"
        )));
    }
    Ok(())
}

/// An opaque cursor for the key a page ended at.
pub fn encode_cursor(key: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("strings serialise"))
}

/// The key inside a cursor from [`encode_cursor`]; 400 for anything else.
pub fn decode_cursor(cursor: &str, parts: usize) -> Result<Vec<String>, Error> {
    let invalid = || Error::InvalidParameters("cursor is not one this service gave out".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let key: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if key.len() != parts {
        return Err(invalid());
    }
    Ok(key)
}

/// SQL fragments naming the lake and its catalog database.
struct Names {
    /// The lake's name as it is.
    name: String,
    lake_literal: String,
    lake: String,
    meta: String,
}

impl Names {
    fn new(lake: &str) -> Self {
        Self {
            name: lake.to_string(),
            lake_literal: quote_literal(lake),
            lake: quote_identifier(lake),
            meta: quote_identifier(&format!("__ducklake_metadata_{lake}")),
        }
    }

    /// Live schemas and tables with DuckLake's file statistics and the last
    /// snapshot that touched each table. Change sets name tables by id,
    /// except `*_created` which use names (the table's own begin snapshot
    /// covers those).
    /// [`Self::tables_sql`] for one (schema, table), bound as parameters.
    fn table_sql(&self) -> String {
        format!(
            "SELECT * FROM ({}) WHERE schema_name = ? AND table_name = ?",
            self.tables_sql()
        )
    }

    fn tables_sql(&self) -> String {
        let Self {
            lake_literal, meta, ..
        } = self;
        format!(
            "WITH s AS (SELECT schema_id, schema_name FROM {meta}.ducklake_schema WHERE end_snapshot IS NULL), \
             t AS (SELECT t.table_id, s.schema_name, t.table_name, t.begin_snapshot \
                   FROM {meta}.ducklake_table t JOIN s USING (schema_id) WHERE t.end_snapshot IS NULL), \
             touched AS (SELECT e.value AS ids, snapshot_id \
                   FROM (SELECT unnest(map_entries(changes)) AS e, snapshot_id FROM ducklake_snapshots({lake_literal})) \
                   WHERE NOT suffix(e.key, '_created')), \
             last AS (SELECT id, max(snapshot_id) AS snapshot_id \
                   FROM (SELECT unnest(ids) AS id, snapshot_id FROM touched) GROUP BY id) \
             SELECT t.schema_name, t.table_name, coalesce(i.file_count, 0), coalesce(i.file_size_bytes, 0), \
                    coalesce(i.delete_file_count, 0), coalesce(i.delete_file_size_bytes, 0), \
                    greatest(t.begin_snapshot, coalesce(last.snapshot_id, 0)), t.table_id \
             FROM t LEFT JOIN ducklake_table_info({lake_literal}) i USING (table_id) \
             LEFT JOIN last ON last.id = t.table_id::VARCHAR"
        )
    }
}

impl Engine {
    /// Runs trusted catalog SQL in one read-only transaction on a pooled
    /// connection, off the async executor.
    async fn read_catalog<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Names) -> Result<T, Error> + Send + 'static,
    {
        let names = Names::new(&self.lake.name);
        self.run_blocking(self.timeout_for(None), move |conn| {
            conn.execute_batch("BEGIN TRANSACTION READ ONLY")
                .map_err(Error::from_duckdb)?;
            let out = work(conn, &names)?;
            conn.execute_batch("COMMIT").map_err(Error::from_duckdb)?;
            Ok(out)
        })
        .await
    }

    /// Runs trusted DDL in one transaction; answers the snapshot it created.
    async fn write_catalog<F>(&self, work: F) -> Result<i64, Error>
    where
        F: FnOnce(&Connection, &Names) -> Result<(), Error> + Send + 'static,
    {
        let names = Names::new(&self.lake.name);
        self.run_blocking(self.timeout_for(None), move |conn| {
            conn.execute_batch("BEGIN TRANSACTION")
                .map_err(Error::from_duckdb)?;
            work(conn, &names)?;
            conn.execute_batch("COMMIT").map_err(Error::from_duckdb)?;
            last_committed(conn, &names.name)
        })
        .await
    }

    pub async fn list_schemas(
        &self,
        limit: usize,
        after: Option<String>,
        prefix: Option<String>,
    ) -> Result<Page<SchemaEntry>, Error> {
        self.read_catalog(move |conn, names| {
            let meta = &names.meta;
            let sql = format!(
                "SELECT s.schema_name, s.begin_snapshot, \
                        (SELECT count(*) FROM {meta}.ducklake_table t \
                         WHERE t.schema_id = s.schema_id AND t.end_snapshot IS NULL) \
                 FROM {meta}.ducklake_schema s \
                 WHERE s.end_snapshot IS NULL AND s.schema_name > ? AND starts_with(s.schema_name, ?) \
                 ORDER BY s.schema_name LIMIT ?"
            );
            let rows = query_vec(conn, &sql, duckdb::params![
                        after.unwrap_or_default(),
                        prefix.unwrap_or_default(),
                        (limit + 1) as i64
                    ], |row| {
                        Ok(SchemaEntry {
                            name: row.get(0)?,
                            created_snapshot: row.get(1)?,
                            table_count: row.get(2)?,
                        })
                    }).map_err(Error::from_duckdb)?;
            Ok(page(rows, limit, |s| encode_cursor(&[&s.name])))
        })
        .await
    }

    pub async fn list_tables(&self, filter: TableFilter) -> Result<Page<TableEntry>, Error> {
        self.read_catalog(move |conn, names| {
            let (after_schema, after_table) = filter.after.clone().unwrap_or_default();
            let sql = format!(
                "SELECT * FROM ({}) WHERE (? IS NULL OR schema_name = ?) AND starts_with(table_name, ?) \
                 AND (schema_name > ? OR (schema_name = ? AND table_name > ?)) \
                 ORDER BY schema_name, table_name LIMIT ?",
                names.tables_sql()
            );
            let values = [
                filter.schema.clone().map_or(Value::Null, Value::Text),
                filter.schema.clone().map_or(Value::Null, Value::Text),
                Value::Text(filter.prefix.clone().unwrap_or_default()),
                Value::Text(after_schema.clone()),
                Value::Text(after_schema),
                Value::Text(after_table),
                Value::BigInt((filter.limit + 1) as i64),
            ];
            let entries = query_tables(conn, &sql, &values)?;
            let mut page = page(entries, filter.limit, |t| encode_cursor(&[&t.schema, &t.name]));
            for table in &mut page.items {
                table.row_count = row_count(conn, names, &table.schema, &table.name)?;
            }
            Ok(page)
        })
        .await
    }

    pub async fn describe_table(
        &self,
        schema: String,
        table: String,
    ) -> Result<TableDetail, Error> {
        let lake = self.lake.name.clone();
        self.read_catalog(move |conn, names| {
            let found = query_tables(
                conn,
                &names.table_sql(),
                &[Value::Text(schema.clone()), Value::Text(table.clone())],
            )?;
            let Some(mut entry) = found.into_iter().next() else {
                return Err(Error::NotFound(format!(
                    "no table {}.{} in the lake",
                    quote_identifier(&schema),
                    quote_identifier(&table)
                )));
            };
            entry.row_count = row_count(conn, names, &schema, &table)?;
            let table_id = table_id(conn, names, &schema, &table)?;
            let meta = &names.meta;
            let columns = query_vec(conn, &format!(
                    "SELECT c.column_name, c.data_type, c.is_nullable, c.column_default, \
                            st.min_value, st.max_value, st.contains_null, st.contains_nan, st.table_id IS NOT NULL \
                     FROM duckdb_columns() c \
                     LEFT JOIN {meta}.ducklake_column dc ON dc.table_id = ? AND dc.end_snapshot IS NULL \
                          AND dc.parent_column IS NULL AND dc.column_name = c.column_name \
                     LEFT JOIN {meta}.ducklake_table_column_stats st \
                          ON st.table_id = dc.table_id AND st.column_id = dc.column_id \
                     WHERE c.database_name = ? AND c.schema_name = ? AND c.table_name = ? \
                     ORDER BY c.column_index"
                ), duckdb::params![table_id, lake, schema, table], |row| {
                        let has_stats: bool = row.get(8)?;
                        Ok(ColumnEntry {
                            name: row.get(0)?,
                            type_name: row.get(1)?,
                            nullable: row.get(2)?,
                            default: row.get(3)?,
                            stats: has_stats
                                .then(|| -> duckdb::Result<ColumnStats> {
                                    Ok(ColumnStats {
                                        min: row.get(4)?,
                                        max: row.get(5)?,
                                        contains_null: row.get(6)?,
                                        contains_nan: row.get(7)?,
                                    })
                                })
                                .transpose()?,
                        })
                    }).map_err(Error::from_duckdb)?;
            let partitioning = query_vec(conn, &format!(
                    "SELECT c.column_name, pc.transform FROM {meta}.ducklake_partition_info p \
                     JOIN {meta}.ducklake_partition_column pc USING (partition_id) \
                     JOIN {meta}.ducklake_column c ON c.table_id = p.table_id AND c.column_id = pc.column_id \
                          AND c.end_snapshot IS NULL \
                     WHERE p.table_id = ? AND p.end_snapshot IS NULL ORDER BY pc.partition_key_index"
                ), [table_id], |row| {
                    Ok(PartitionKey {
                        column: row.get(0)?,
                        transform: row.get(1)?,
                    })
                }).map_err(Error::from_duckdb)?;
            let snapshot = current_snapshot(conn, &names.name)?;
            Ok(TableDetail {
                table: entry,
                columns,
                partitioning,
                snapshot,
            })
        })
        .await
    }

    /// Newest first; `before` is the id the previous page ended at.
    pub async fn list_snapshots(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Page<SnapshotEntry>, Error> {
        self.read_catalog(move |conn, names| {
            let sql = format!(
                "SELECT snapshot_id, epoch_us(snapshot_time), schema_version, to_json(changes)::VARCHAR, \
                        author, commit_message \
                 FROM ducklake_snapshots({}) WHERE snapshot_id < ? ORDER BY snapshot_id DESC LIMIT ?",
                names.lake_literal
            );
            let rows = query_vec(conn, &sql, duckdb::params![before.unwrap_or(i64::MAX), (limit + 1) as i64], |row| {
                        let changes: Option<String> = row.get(3)?;
                        Ok(SnapshotEntry {
                            id: row.get(0)?,
                            time: DateTime::from_timestamp_micros(row.get(1)?).unwrap_or_default(),
                            schema_version: row.get(2)?,
                            changes: changes
                                .and_then(|text| serde_json::from_str(&text).ok())
                                .unwrap_or(serde_json::Value::Null),
                            author: row.get(4)?,
                            commit_message: row.get(5)?,
                        })
                    }).map_err(Error::from_duckdb)?;
            Ok(page(rows, limit, |s| encode_cursor(&[&s.id.to_string()])))
        })
        .await
    }

    /// The lake's current snapshot, and whether the table exists in it.
    pub async fn table_exists(&self, schema: String, table: String) -> Result<i64, Error> {
        self.read_catalog(move |conn, names| {
            table_id(conn, names, &schema, &table)?;
            current_snapshot(conn, &names.name)
        })
        .await
    }

    pub async fn create_schema(&self, name: String) -> Result<i64, Error> {
        self.write_catalog(move |conn, names| {
            conn.execute_batch(&format!(
                "CREATE SCHEMA {}.{}",
                names.lake,
                quote_identifier(&name)
            ))
            .map_err(Error::from_duckdb)
        })
        .await
    }

    /// Drops a schema; with `cascade` its tables and views go too, else a
    /// schema that still holds anything answers 409.
    pub async fn drop_schema(&self, name: String, cascade: bool) -> Result<i64, Error> {
        if name.eq_ignore_ascii_case("main") {
            return Err(Error::Forbidden(
                "the lake's default schema main cannot be dropped".into(),
            ));
        }
        self.write_catalog(move |conn, names| {
            let (schemas, tables): (i64, i64) = conn
                .query_row(
                    &format!(
                        "SELECT count(DISTINCT s.schema_id), count(t.table_id) FROM {meta}.ducklake_schema s \
                         LEFT JOIN {meta}.ducklake_table t ON t.schema_id = s.schema_id AND t.end_snapshot IS NULL \
                         WHERE s.schema_name = ? AND s.end_snapshot IS NULL",
                        meta = names.meta
                    ),
                    [&name],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(Error::from_duckdb)?;
            if schemas == 0 {
                return Err(Error::NotFound(format!(
                    "no schema {} in the lake",
                    quote_identifier(&name)
                )));
            }
            if tables > 0 && !cascade {
                return Err(Error::NotEmpty(format!(
                    "the schema {} still has {tables} table(s); drop them first or pass cascade=true",
                    quote_identifier(&name)
                )));
            }
            conn.execute_batch(&format!(
                "DROP SCHEMA {}.{}{}",
                names.lake,
                quote_identifier(&name),
                if cascade { " CASCADE" } else { "" }
            ))
            .map_err(Error::from_duckdb)
        })
        .await
    }
}

fn page<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

fn query_tables(conn: &Connection, sql: &str, values: &[Value]) -> Result<Vec<TableEntry>, Error> {
    let rows = query_vec(conn, sql, params_from_iter(values.iter()), |row| {
        Ok(TableEntry {
            schema: row.get(0)?,
            name: row.get(1)?,
            row_count: 0,
            data_file_count: row.get(2)?,
            size_bytes: row.get(3)?,
            delete_file_count: row.get(4)?,
            delete_size_bytes: row.get(5)?,
            last_change_snapshot: row.get(6)?,
        })
    })
    .map_err(Error::from_duckdb)?;
    Ok(rows)
}

/// Rows in the table now (DuckLake answers from its file metadata and
/// delete files, without reading the data).
fn row_count(conn: &Connection, names: &Names, schema: &str, table: &str) -> Result<i64, Error> {
    conn.query_row(
        &format!(
            "SELECT count(*) FROM {}.{}.{}",
            names.lake,
            quote_identifier(schema),
            quote_identifier(table)
        ),
        [],
        |row| row.get(0),
    )
    .map_err(Error::from_duckdb)
}

fn table_id(conn: &Connection, names: &Names, schema: &str, table: &str) -> Result<i64, Error> {
    let meta = &names.meta;
    let id: Option<i64> = conn
        .query_row(
            &format!(
                "SELECT max(t.table_id) FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema s USING (schema_id) \
                 WHERE s.schema_name = ? AND t.table_name = ? AND s.end_snapshot IS NULL AND t.end_snapshot IS NULL"
            ),
            [schema, table],
            |row| row.get(0),
        )
        .map_err(Error::from_duckdb)?;
    id.ok_or_else(|| {
        Error::NotFound(format!(
            "no table {}.{} in the lake",
            quote_identifier(schema),
            quote_identifier(table)
        ))
    })
}

/// The last snapshot that changed any of `tables` (schema, table): the
/// tables' `last_change_snapshot` as the table list reads it; 0 for none.
pub(crate) fn last_change(
    conn: &Connection,
    lake: &str,
    tables: &[(String, String)],
) -> Result<i64, Error> {
    let names = Names::new(lake);
    let sql = names.table_sql();
    let mut last = 0;
    for (schema, table) in tables {
        let key = [Value::Text(schema.clone()), Value::Text(table.clone())];
        for entry in query_tables(conn, &sql, &key)? {
            last = last.max(entry.last_change_snapshot);
        }
    }
    Ok(last)
}

/// Whether the lake's schema (tables, views, columns: anything DDL changes)
/// is the same at snapshots `old` and `new`. DuckLake numbers schema versions
/// upwards, so equal versions at both ends mean no DDL in between. An
/// expired (unknown) snapshot counts as changed.
pub(crate) fn same_schema(
    conn: &Connection,
    lake: &str,
    old: i64,
    new: i64,
) -> Result<bool, Error> {
    conn.query_row(
        &format!(
            "SELECT count(*) = 2 AND min(schema_version) = max(schema_version) \
             FROM ducklake_snapshots({}) WHERE snapshot_id IN (?, ?)",
            quote_literal(lake)
        ),
        [old, new],
        |row| row.get(0),
    )
    .map_err(Error::from_duckdb)
}

/// The snapshot the connection committed last.
pub(crate) fn last_committed(conn: &Connection, lake: &str) -> Result<i64, Error> {
    conn.query_row(
        &format!(
            "SELECT id FROM {}.main.last_committed_snapshot()",
            quote_identifier(lake)
        ),
        [],
        |row| row.get::<_, Option<i64>>(0),
    )
    .map_err(Error::from_duckdb)?
    .map_or_else(|| current_snapshot(conn, lake), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let cursor = encode_cursor(&["s\"1", "x\"; DROP TABLE y; --"]);
        assert_eq!(
            decode_cursor(&cursor, 2).unwrap(),
            vec!["s\"1".to_string(), "x\"; DROP TABLE y; --".to_string()]
        );
        assert!(decode_cursor(&cursor, 1).is_err());
        assert!(decode_cursor("not base64!", 2).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("{}"), 2).is_err());
    }

    #[test]
    fn names_are_checked_not_escaped_away() {
        assert!(validate_name("table", "x\"; DROP TABLE y; --").is_ok());
        assert!(validate_name("table", "  ").is_err());
        assert!(validate_name("table", "a\nb").is_err());
        assert!(validate_name("table", &"x".repeat(256)).is_err());
    }
}
