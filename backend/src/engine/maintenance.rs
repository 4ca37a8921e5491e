//! DuckLake's maintenance, as the service runs it: merge adjacent small
//! files, expire old snapshots, delete files no snapshot needs any more
//! (and, on request, orphaned files no snapshot ever referenced). Each can
//! be a dry run that reports what it would do and changes nothing.

use chrono::{DateTime, Utc};
use duckdb::Connection;
use serde::Serialize;

use super::{
    lake::{quote_identifier, quote_literal},
    Engine,
};
use crate::{engine::query::query_vec, error::Error};

/// DuckLake's default target file size: files below it are merge candidates.
const DEFAULT_TARGET_FILE_BYTES: i64 = 512 * 1024 * 1024;

/// What the catalog holds: the files of the lake now and of its history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CatalogFiles {
    /// Data files of the current tables, and their bytes.
    pub live_data_files: i64,
    pub live_data_bytes: i64,
    /// Data and delete files any snapshot still references.
    pub referenced_files: i64,
    pub referenced_bytes: i64,
    /// Files no snapshot needs that wait for cleanup.
    pub scheduled_for_deletion: i64,
    pub snapshots: i64,
}

/// One table's merge: done, or (dry run) the small files that would be merged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Merge {
    pub schema: String,
    pub table: String,
    pub files_processed: i64,
    pub files_created: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Expired {
    pub snapshot: i64,
    pub time: DateTime<Utc>,
}

/// Which snapshots to expire.
#[derive(Debug, Clone)]
pub enum ExpireWhat {
    OlderThan(DateTime<Utc>),
    /// Every snapshot before this id (the current one is never expired).
    Before(i64),
}

fn timestamp(at: DateTime<Utc>) -> String {
    format!("{}::TIMESTAMPTZ", quote_literal(&at.to_rfc3339()))
}

impl Engine {
    pub async fn catalog_files(&self) -> Result<CatalogFiles, Error> {
        let meta = quote_identifier(&format!("__ducklake_metadata_{}", self.lake.name));
        self.run_blocking(self.timeout_for(None), move |conn| {
            conn.query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM {meta}.ducklake_data_file WHERE end_snapshot IS NULL), \
                            (SELECT coalesce(sum(file_size_bytes), 0) FROM {meta}.ducklake_data_file WHERE end_snapshot IS NULL), \
                            (SELECT count(*) FROM {meta}.ducklake_data_file) + (SELECT count(*) FROM {meta}.ducklake_delete_file), \
                            (SELECT coalesce(sum(file_size_bytes), 0) FROM {meta}.ducklake_data_file) \
                              + (SELECT coalesce(sum(file_size_bytes), 0) FROM {meta}.ducklake_delete_file), \
                            (SELECT count(*) FROM {meta}.ducklake_files_scheduled_for_deletion), \
                            (SELECT count(*) FROM {meta}.ducklake_snapshot)"
                ),
                [],
                |row| {
                    Ok(CatalogFiles {
                        live_data_files: row.get(0)?,
                        live_data_bytes: row.get::<_, i128>(1)? as i64,
                        referenced_files: row.get(2)?,
                        referenced_bytes: row.get::<_, i128>(3)? as i64,
                        scheduled_for_deletion: row.get(4)?,
                        snapshots: row.get(5)?,
                    })
                },
            )
            .map_err(Error::from_duckdb)
        })
        .await
    }

    /// Merges adjacent small files of one table, or of every table.
    pub async fn compact(
        &self,
        table: Option<(String, String)>,
        dry_run: bool,
    ) -> Result<Vec<Merge>, Error> {
        let lake = quote_literal(&self.lake.name);
        let meta = quote_identifier(&format!("__ducklake_metadata_{}", self.lake.name));
        self.run_blocking(self.timeout_for(Some(u64::MAX)), move |conn| {
            if dry_run {
                return merge_candidates(conn, &lake, &meta, table.as_ref());
            }
            let call = match &table {
                Some((schema, name)) => format!(
                    "ducklake_merge_adjacent_files({lake}, {}, schema => {})",
                    quote_literal(name),
                    quote_literal(schema)
                ),
                None => format!("ducklake_merge_adjacent_files({lake})"),
            };
            let merges = query_vec(conn, &format!(
                    "SELECT schema_name, table_name, files_processed, files_created FROM {call} ORDER BY 1, 2"
                ), [], |row| {
                    Ok(Merge {
                        schema: row.get(0)?,
                        table: row.get(1)?,
                        files_processed: row.get(2)?,
                        files_created: row.get(3)?,
                    })
                }).map_err(Error::from_duckdb)?;
            Ok(merges)
        })
        .await
    }

    pub async fn expire_snapshots(
        &self,
        what: ExpireWhat,
        dry_run: bool,
    ) -> Result<Vec<Expired>, Error> {
        let lake = quote_literal(&self.lake.name);
        self.run_blocking(self.timeout_for(Some(u64::MAX)), move |conn| {
            let selector = match what {
                ExpireWhat::OlderThan(at) => format!("older_than => {}", timestamp(at)),
                ExpireWhat::Before(id) => {
                    let ids: Vec<i64> = query_vec(
                        conn,
                        &format!(
                            "SELECT snapshot_id FROM ducklake_snapshots({lake}) \
                             WHERE snapshot_id < least(?, (SELECT max(snapshot_id) FROM ducklake_snapshots({lake}))) \
                             ORDER BY 1"
                        ),
                        [id],
                        |row| row.get(0),
                    )
                    .map_err(Error::from_duckdb)?;
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    format!(
                        "versions => [{}]",
                        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                    )
                }
            };
            let expired = query_vec(conn, &format!(
                    "SELECT snapshot_id, epoch_us(snapshot_time) FROM \
                     ducklake_expire_snapshots({lake}, dry_run => {dry_run}, {selector}) ORDER BY 1"
                ), [], |row| {
                    Ok(Expired {
                        snapshot: row.get(0)?,
                        time: DateTime::from_timestamp_micros(row.get(1)?).unwrap_or_default(),
                    })
                }).map_err(Error::from_duckdb)?;
            Ok(expired)
        })
        .await
    }

    /// Deletes files scheduled for deletion (all, or those scheduled before
    /// `older_than`) and, with `orphans_older_than`, files in the data path
    /// that no snapshot references and that are older than that (younger
    /// ones may belong to a transaction still writing). Answers the paths.
    pub async fn cleanup_files(
        &self,
        older_than: Option<DateTime<Utc>>,
        orphans_older_than: Option<DateTime<Utc>>,
        dry_run: bool,
    ) -> Result<Vec<String>, Error> {
        let lake = quote_literal(&self.lake.name);
        self.run_blocking(self.timeout_for(Some(u64::MAX)), move |conn| {
            let selector = match older_than {
                Some(at) => format!("older_than => {}", timestamp(at)),
                None => "cleanup_all => true".into(),
            };
            let mut paths = paths_of(
                conn,
                &format!("ducklake_cleanup_old_files({lake}, dry_run => {dry_run}, {selector})"),
            )?;
            if let Some(at) = orphans_older_than {
                paths.extend(paths_of(
                    conn,
                    &format!(
                        "ducklake_delete_orphaned_files({lake}, dry_run => {dry_run}, older_than => {})",
                        timestamp(at)
                    ),
                )?);
            }
            Ok(paths)
        })
        .await
    }
}

fn paths_of(conn: &Connection, call: &str) -> Result<Vec<String>, Error> {
    let paths = query_vec(
        conn,
        &format!("SELECT path FROM {call} ORDER BY 1"),
        [],
        |row| row.get(0),
    )
    .map_err(Error::from_duckdb)?;
    Ok(paths)
}

/// Tables with two or more live data files below the target file size:
/// what a merge would take.
fn merge_candidates(
    conn: &Connection,
    lake: &str,
    meta: &str,
    table: Option<&(String, String)>,
) -> Result<Vec<Merge>, Error> {
    let target: i64 = conn
        .query_row(
            &format!(
                "SELECT max(TRY_CAST(value AS BIGINT)) FROM ducklake_options({lake}) \
                 WHERE option_name = 'target_file_size'"
            ),
            [],
            |row| row.get::<_, Option<i64>>(0),
        )
        .map_err(Error::from_duckdb)?
        .unwrap_or(DEFAULT_TARGET_FILE_BYTES);
    let (schema, name) = table.cloned().unzip();
    let merges = query_vec(
        conn,
        &format!(
            "SELECT s.schema_name, t.table_name, count(*) FROM {meta}.ducklake_data_file d \
             JOIN {meta}.ducklake_table t ON t.table_id = d.table_id AND t.end_snapshot IS NULL \
             JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL \
             WHERE d.end_snapshot IS NULL AND d.file_size_bytes < ? \
               AND (? IS NULL OR s.schema_name = ?) AND (? IS NULL OR t.table_name = ?) \
             GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2"
        ),
        duckdb::params![target, schema, schema, name, name],
        |row| {
            Ok(Merge {
                schema: row.get(0)?,
                table: row.get(1)?,
                files_processed: row.get(2)?,
                files_created: 0,
            })
        },
    )
    .map_err(Error::from_duckdb)?;
    Ok(merges)
}
