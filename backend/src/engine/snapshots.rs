//! DuckLake's snapshots as its catalog tells them, with no engine around
//! them: the snapshot a transaction reads, and what the snapshots after
//! one changed (one indexed read of DuckLake's `ducklake_snapshot` and
//! `ducklake_snapshot_changes`, the same SQL on PostgreSQL and through
//! DuckDB). The result cache's check ([`super::freshness`]) and the hot
//! tables' ([`super::hot`]) both decide with [`since`].

use duckdb::Connection;

use super::lake::quote_identifier;
use crate::error::Error;

/// The snapshot the connection's transaction reads. Fully qualified
/// (`lake.main.current_snapshot()`): with two parts, a schema named like
/// the lake would make the name ambiguous.
pub(crate) fn current_snapshot(conn: &Connection, lake: &str) -> Result<i64, Error> {
    conn.query_row(
        &format!(
            "SELECT id FROM {}.main.current_snapshot()",
            quote_identifier(lake)
        ),
        [],
        |row| row.get(0),
    )
    .map_err(Error::from_duckdb)
}

/// One snapshot: its schema version and DuckLake's list of what it
/// changed (`inserted_into_table:3,created_view:"main"."v"` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChanges {
    pub id: i64,
    pub schema_version: i64,
    pub changes: String,
}

/// What the snapshots since an answer was read say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No DDL, and none of its tables has new data.
    Unchanged,
    Changed,
    /// The snapshots cannot tell (one expired): ask the engine.
    Unknown,
}

/// The catalog's tables under `prefix` (`public.` on PostgreSQL, the
/// metadata database's name and a dot through DuckDB).
pub mod sql {
    /// The latest snapshot, and whether `$1` (a pinned snapshot) exists.
    pub fn head_pinned(prefix: &str) -> String {
        format!(
            "SELECT (SELECT max(snapshot_id) FROM {prefix}ducklake_snapshot), \
             EXISTS (SELECT 1 FROM {prefix}ducklake_snapshot WHERE snapshot_id = $1)"
        )
    }

    /// The latest snapshot alone (half the work of [`head_pinned`]).
    pub fn head(prefix: &str) -> String {
        format!("SELECT max(snapshot_id), true FROM {prefix}ducklake_snapshot")
    }

    /// [`head_pinned`] when there is a pin, else [`head`].
    pub fn head_for(prefix: &str, pinned: Option<i64>) -> String {
        match pinned {
            Some(_) => head_pinned(prefix),
            None => head(prefix),
        }
    }

    /// `$1`: the snapshot an answer read; `$2`..`$3`: the snapshots after
    /// `$2` up to `$3`. Primary-key lookups and one range.
    pub fn changes(prefix: &str) -> String {
        format!(
            "SELECT s.snapshot_id, s.schema_version, coalesce(c.changes_made, '') \
             FROM {prefix}ducklake_snapshot s \
             LEFT JOIN {prefix}ducklake_snapshot_changes c ON c.snapshot_id = s.snapshot_id \
             WHERE s.snapshot_id = $1 OR (s.snapshot_id > $2 AND s.snapshot_id <= $3) \
             ORDER BY s.snapshot_id"
        )
    }

    /// `$1`, `$2`: schema and table name; `$3`: the snapshot they are read at.
    pub fn table_id(prefix: &str) -> String {
        format!(
            "SELECT t.table_id FROM {prefix}ducklake_table t \
             JOIN {prefix}ducklake_schema s ON s.schema_id = t.schema_id \
             WHERE s.schema_name = $1 AND t.table_name = $2 \
             AND s.begin_snapshot <= $3 AND (s.end_snapshot IS NULL OR s.end_snapshot > $3) \
             AND t.begin_snapshot <= $3 AND (t.end_snapshot IS NULL OR t.end_snapshot > $3)"
        )
    }
}

/// Changes that touch one table's data, by its id. Anything else a
/// snapshot lists (DDL, which also moves the schema version, or a kind
/// this list does not know) counts as a change to every answer.
const DATA_CHANGES: &[&str] = &[
    "inserted_into_table",
    "deleted_from_table",
    "inlined_insert",
    "inlined_delete",
    "inline_flush",
    "compacted_table",
];

/// Whether the snapshots after `from` up to `to` leave an answer read at
/// `read` (of the tables `ids`) as it was. `rows` are [`sql::changes`]'s.
pub fn since(read: i64, from: i64, to: i64, rows: &[SnapshotChanges], ids: &[i64]) -> Since {
    let Some(at_read) = rows.iter().find(|row| row.id == read) else {
        return Since::Unknown;
    };
    let between: Vec<&SnapshotChanges> = rows
        .iter()
        .filter(|row| row.id > from && row.id <= to)
        .collect();
    // Snapshot ids are consecutive: a gap is an expired snapshot whose
    // changes are gone.
    if between.len() as i64 != to - from {
        return Since::Unknown;
    }
    for row in between {
        if row.schema_version != at_read.schema_version {
            return Since::Changed;
        }
        for change in row.changes.split(',').filter(|c| !c.is_empty()) {
            let harmless = change.split_once(':').is_some_and(|(kind, id)| {
                DATA_CHANGES.contains(&kind) && id.parse::<i64>().is_ok_and(|id| !ids.contains(&id))
            });
            if !harmless {
                return Since::Changed;
            }
        }
    }
    Since::Unchanged
}

/// The catalog's tables as DuckDB names them for the lake `lake`
/// (`"__ducklake_metadata_lake".`).
pub(crate) fn metadata_prefix(lake: &str) -> String {
    format!(
        "{}.",
        quote_identifier(&format!("__ducklake_metadata_{lake}"))
    )
}

/// [`sql::changes`] read through DuckDB on `conn`.
pub(crate) fn read_changes(
    conn: &Connection,
    prefix: &str,
    read: i64,
    from: i64,
    to: i64,
) -> Result<Vec<SnapshotChanges>, Error> {
    let mut stmt = conn
        .prepare_cached(&sql::changes(prefix))
        .map_err(Error::from_duckdb)?;
    stmt.query_map([read, from, to], |row| {
        Ok(SnapshotChanges {
            id: row.get(0)?,
            schema_version: row.get(1)?,
            changes: row.get(2)?,
        })
    })
    .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
    .map_err(Error::from_duckdb)
}

/// DuckLake's id of the table `schema`.`table` at snapshot `at`, through
/// DuckDB on `conn`; `None` unless exactly one table answers.
pub(crate) fn read_table_id(
    conn: &Connection,
    prefix: &str,
    schema: &str,
    table: &str,
    at: i64,
) -> Result<Option<i64>, Error> {
    let mut stmt = conn
        .prepare_cached(&sql::table_id(prefix))
        .map_err(Error::from_duckdb)?;
    let found = stmt
        .query_map(duckdb::params![schema, table, at], |row| {
            row.get::<_, i64>(0)
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(Error::from_duckdb)?;
    Ok(match found[..] {
        [id] => Some(id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, schema_version: i64, changes: &str) -> SnapshotChanges {
        SnapshotChanges {
            id,
            schema_version,
            changes: changes.into(),
        }
    }

    #[test]
    fn only_data_changes_to_other_tables_leave_an_answer_as_it_was() {
        // Read at 3 (of table 1), last checked at 4, the lake now at 6.
        let base = [
            row(3, 2, "inlined_insert:1"),
            row(5, 2, "inserted_into_table:2"),
        ];
        let with = |changes: &str| {
            let mut rows = base.to_vec();
            rows.push(row(6, 2, changes));
            since(3, 4, 6, &rows, &[1])
        };
        assert_eq!(
            with("inlined_insert:2,deleted_from_table:7"),
            Since::Unchanged
        );
        assert_eq!(with(""), Since::Unchanged);
        for changed in [
            "inlined_insert:1",
            "inserted_into_table:2,deleted_from_table:1",
            "compacted_table:1",
            "altered_table:2",
            "created_view:\"main\".\"v\"",
            "dropped_table:9",
            "some_future_change:2",
            "inserted_into_table:not-a-number",
        ] {
            assert_eq!(with(changed), Since::Changed, "{changed}");
        }
        // DDL moves the schema version whatever it lists.
        let mut rows = base.to_vec();
        rows.push(row(6, 3, "inlined_insert:2"));
        assert_eq!(since(3, 4, 6, &rows, &[1]), Since::Changed);
        // A snapshot missing in between, or the one read: cannot tell.
        assert_eq!(since(3, 4, 7, &rows, &[1]), Since::Unknown);
        assert_eq!(since(2, 4, 6, &rows, &[1]), Since::Unknown);
    }
}
