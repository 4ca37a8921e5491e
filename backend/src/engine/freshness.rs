//! How current a kept answer is, as the lake's catalog tells it: the
//! latest snapshot (the check before every cache hit), and, when the lake
//! moved, what the snapshots since changed (one indexed read of DuckLake's
//! `ducklake_snapshot` and `ducklake_snapshot_changes`). The same SQL runs
//! on PostgreSQL through the service's own pool and on the local catalog
//! file through DuckDB; [`Engine::unchanged_since`] (the ETag's check, on a
//! pooled connection) answers what that read cannot.

use super::{
    catalog::{current_snapshot, last_change, same_schema},
    lake::CatalogLocation,
    Engine,
};
use crate::error::Error;

use super::snapshots::{metadata_prefix, read_changes, read_table_id};
pub use super::snapshots::{since, sql, Since, SnapshotChanges};

/// The latest snapshot of the lake, and whether `pinned` still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LakeHead {
    pub latest: i64,
    pub pinned_exists: bool,
}

impl Engine {
    /// Whether the catalog is a local DuckDB file (read through this
    /// process's DuckDB), rather than PostgreSQL (read directly).
    pub fn catalog_is_local(&self) -> bool {
        matches!(self.lake.catalog, CatalogLocation::LocalFile(_))
    }

    /// The catalog's tables as DuckDB names them (`"__ducklake_metadata_lake".`).
    fn metadata_prefix(&self) -> String {
        metadata_prefix(&self.lake.name)
    }

    /// Runs a read of the catalog's own tables on the connection kept for
    /// it, off the async executor.
    async fn read_catalog_tables<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&duckdb::Connection) -> Result<T, Error> + Send + 'static,
    {
        let reader = std::sync::Arc::clone(&self.catalog_reader);
        tokio::task::spawn_blocking(move || work(&reader.lock()))
            .await
            .map_err(Error::internal)?
    }

    /// [`LakeHead`] read through DuckDB, from the catalog database it
    /// attached (a plain read of the metadata table: no DuckLake
    /// transaction).
    pub async fn lake_head(&self, pinned: Option<i64>) -> Result<LakeHead, Error> {
        let sql = sql::head_for(&self.metadata_prefix(), pinned);
        self.read_catalog_tables(move |conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| {
                    let params: Vec<i64> = pinned.into_iter().collect();
                    stmt.query_row(duckdb::params_from_iter(params), |row| {
                        Ok(LakeHead {
                            latest: row.get::<_, Option<i64>>(0)?.unwrap_or(0),
                            pinned_exists: row.get(1)?,
                        })
                    })
                })
                .map_err(Error::from_duckdb)
        })
        .await
    }

    /// [`sql::changes`] read through DuckDB.
    pub async fn snapshot_changes(
        &self,
        read: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<SnapshotChanges>, Error> {
        let prefix = self.metadata_prefix();
        self.read_catalog_tables(move |conn| read_changes(conn, &prefix, read, from, to))
            .await
    }

    /// The ids of `tables` at snapshot `at`, through DuckDB; `None` when
    /// one of them does not resolve to exactly one table.
    pub async fn table_ids(
        &self,
        at: i64,
        tables: Vec<(String, String)>,
    ) -> Result<Option<Vec<i64>>, Error> {
        let prefix = self.metadata_prefix();
        self.read_catalog_tables(move |conn| {
            let mut ids = Vec::new();
            for (schema, table) in &tables {
                match read_table_id(conn, &prefix, schema, table, at)? {
                    Some(id) => ids.push(id),
                    None => return Ok(None),
                }
            }
            Ok(Some(ids))
        })
        .await
    }

    /// The snapshot the lake is at now, if since `read` the lake's schema
    /// is the same and none of `tables` has new data (the ETag's check, in
    /// a DuckLake transaction on a pooled connection). `None` when
    /// something changed (or `read` expired).
    pub async fn unchanged_since(
        &self,
        read: i64,
        tables: Vec<(String, String)>,
    ) -> Result<Option<i64>, Error> {
        let lake = self.lake.name.clone();
        self.run_blocking(self.timeout_for(None), move |conn| {
            conn.execute_batch("BEGIN TRANSACTION READ ONLY")
                .map_err(Error::from_duckdb)?;
            let now = current_snapshot(conn, &lake)?;
            let unchanged = now == read
                || (now > read
                    && same_schema(conn, &lake, read, now)?
                    && last_change(conn, &lake, &tables)? <= read);
            conn.execute_batch("COMMIT").map_err(Error::from_duckdb)?;
            Ok(unchanged.then_some(now))
        })
        .await
    }
}
