//! Hot tables: in-memory copies of small lake tables that are read often.
//!
//! A point lookup on a DuckLake table reads and decompresses a whole row
//! group of its Parquet file (~6 ms for a 100k-row table here); the same
//! lookup on a DuckDB table in memory takes a tenth of that. Most lake
//! tables change far less often than they are read, and DuckLake says
//! exactly when one changed, so a read can be served from a copy as long
//! as the service knows the copy is the table as the read's snapshot has
//! it.
//!
//! - **Which tables.** A lake table read by [`HotTables::after_reads`]
//!   plain reads is copied (`CREATE TABLE memory.main.__ducklake_hot_<n> AS SELECT *
//!   FROM` the table, in one transaction that also reads the snapshot it
//!   copies) by a thread of its own, off every request's path. A table
//!   whose copy would outgrow `max_table_bytes` is never copied; copies
//!   beyond `max_bytes` go least recently used first.
//! - **When a copy is used.** Only for a single plain read (not a write,
//!   not in a transaction, not pinned to a snapshot, no `AT`), after the
//!   sandbox checked the statement as the client sent it. The request's
//!   own DuckLake transaction reads snapshot `now`; a copy made at
//!   snapshot `s` serves it only if `s <= now` and, unless already known
//!   for `now`, DuckLake's tables of snapshots and their changes say so
//!   (the result cache's check, [`snapshots::since`], read through
//!   [`CatalogReads`]): every snapshot since is there (none expired),
//!   with the schema version of `s` (no DDL), listing only data changes to
//!   other tables. A copy found changed is dropped (and made again
//!   after more reads).
//! - **How.** The statement's parse tree (DuckDB's own) has each base
//!   table that names a usable copy replaced by the copy, aliased as the
//!   table was (so `t.id` still binds); CTE names are left alone. A name
//!   whose resolution could be in doubt (a two-part name whose first part
//!   is also a database, an `AT`) leaves the whole statement as it was, as
//!   does any reference to DuckLake's virtual columns (`rowid`,
//!   `snapshot_id`, `filename`, ...), which a copy does not have or has
//!   with other values, a `DESCRIBE`/`SUMMARIZE` (a copy has no column
//!   defaults) and a sample (a `REPEATABLE` one picks rows by where they
//!   are stored). A rewritten statement DuckDB cannot prepare (a
//!   column qualified with the schema, a copy dropped meanwhile) runs as
//!   sent.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Weak,
    },
};

use duckdb::Connection;
use parking_lot::Mutex;
use serde_json::Value;

use super::{
    lake::{quote_identifier, quote_literal},
    parse_tree,
    snapshots::{self, current_snapshot, SnapshotChanges},
};
use crate::error::{Error, INTERNAL_TABLE_PREFIX};

/// DuckLake's virtual columns: a copy has none of them (or, `rowid`, its
/// own).
const VIRTUAL_COLUMNS: &[&str] = &[
    "rowid",
    "snapshot_id",
    "filename",
    "file_row_number",
    "file_index",
];

/// Where the copies live (the root connection's in-memory database, which
/// the sandbox refuses to user SQL).
const COPIES: &str = "memory";

/// Bytes a copied value takes at least, for the estimate that keeps a
/// large table from being copied at all.
const MIN_CELL_BYTES: u64 = 4;

/// A table by its lowercase schema and name (DuckDB's names are
/// case-insensitive).
type Key = (String, String);

fn key(schema: &str, table: &str) -> Key {
    (schema.to_lowercase(), table.to_lowercase())
}

/// Reads of DuckLake's own tables of snapshots and their changes, on a
/// connection of their own: never in a request's transaction, which holds
/// one catalog connection already (a second one from the same bounded pool
/// can wait forever). The service's own pool on PostgreSQL, the catalog
/// reader connection on the local file.
pub trait CatalogReads: Send + Sync {
    /// [`snapshots::sql::changes`].
    fn changes(&self, read: i64, from: i64, to: i64) -> Result<Vec<SnapshotChanges>, Error>;
    /// [`snapshots::sql::table_id`]: `None` unless exactly one table answers.
    fn table_id(&self, schema: &str, table: &str, at: i64) -> Result<Option<i64>, Error>;
}

/// [`CatalogReads`] through DuckDB, on a connection outside the lake.
pub struct LocalReads {
    pub conn: Arc<Mutex<Connection>>,
    pub prefix: String,
}

impl CatalogReads for LocalReads {
    fn changes(&self, read: i64, from: i64, to: i64) -> Result<Vec<SnapshotChanges>, Error> {
        snapshots::read_changes(&self.conn.lock(), &self.prefix, read, from, to)
    }

    fn table_id(&self, schema: &str, table: &str, at: i64) -> Result<Option<i64>, Error> {
        snapshots::read_table_id(&self.conn.lock(), &self.prefix, schema, table, at)
    }
}

/// What the hot tables may hold.
#[derive(Debug, Clone, Copy)]
pub struct HotLimits {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_table_bytes: u64,
    pub after_reads: u32,
}

pub struct HotTables {
    limits: HotLimits,
    lake: String,
    /// The attached databases' names (lowercase): a two-part name starting
    /// with one of them may name that database's table.
    databases: Vec<String>,
    state: Mutex<State>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The copies' thread, until [`HotTables::stop`].
    worker: Mutex<Option<Worker>>,
    /// The service stops: no copy is made any more.
    stopping: std::sync::atomic::AtomicBool,
    /// Unset: no copy is made or used (yet).
    catalog: parking_lot::RwLock<Option<Arc<dyn CatalogReads>>>,
    reads: AtomicU64,
    builds: AtomicU64,
    invalidations: AtomicU64,
    too_large: AtomicU64,
}

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    bytes: u64,
    /// Counts uses, for least-recently-used eviction.
    tick: u64,
    /// Names the next copy.
    next: u64,
}

enum Slot {
    Cold { reads: u32 },
    Building,
    Copied(Copied),
    TooLarge,
}

#[derive(Debug, Clone)]
struct Copied {
    name: String,
    /// The snapshot it copies.
    snapshot: i64,
    /// The table is known unchanged from `snapshot` up to this one.
    verified: i64,
    /// DuckLake's id of the table, as the snapshots' changes name it.
    table_id: i64,
    bytes: u64,
    used: u64,
}

enum Job {
    Build { schema: String, table: String },
    Drop { name: String },
}

struct Worker {
    /// Interrupts what the thread's connection runs.
    interrupt: Arc<duckdb::InterruptHandle>,
    /// Ends with the number of copies the stop cut short or skipped.
    thread: std::thread::JoinHandle<u64>,
}

/// What `/metrics` and `/metrics/performance` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HotStats {
    pub enabled: bool,
    pub tables: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub max_table_bytes: u64,
    /// Copies asked for and not made yet (queued or under way).
    pub copying: u64,
    /// Requests served (in part) from copies.
    pub reads: u64,
    pub builds: u64,
    /// Copies dropped because their table changed.
    pub invalidations: u64,
    /// Tables found too large to copy.
    pub too_large: u64,
}

impl HotTables {
    /// Starts the thread that makes and drops copies on `conn` (whose
    /// default database is the lake's), if enabled.
    pub fn start(
        limits: HotLimits,
        lake: String,
        databases: Vec<String>,
        conn: Connection,
    ) -> Arc<Self> {
        let hot = Arc::new(Self {
            limits,
            lake,
            databases: databases.iter().map(|d| d.to_lowercase()).collect(),
            state: Mutex::new(State::default()),
            jobs: Mutex::new(None),
            worker: Mutex::new(None),
            stopping: Default::default(),
            catalog: parking_lot::RwLock::new(None),
            reads: AtomicU64::new(0),
            builds: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        });
        if limits.enabled && limits.max_table_bytes > 0 {
            let (tx, rx) = mpsc::channel();
            *hot.jobs.lock() = Some(tx);
            let weak = Arc::downgrade(&hot);
            let interrupt = conn.interrupt_handle();
            let spawned = std::thread::Builder::new()
                .name("hot-tables".into())
                .spawn(move || work(weak, rx, conn));
            match spawned {
                Ok(thread) => *hot.worker.lock() = Some(Worker { interrupt, thread }),
                Err(err) => {
                    tracing::warn!(error = %err, "hot tables off: no thread for them");
                    *hot.jobs.lock() = None;
                }
            }
        }
        hot
    }

    /// Stops the copies' thread, interrupting a copy under way, and waits
    /// for it to let go of DuckDB: the process must not exit while that
    /// thread is still at work inside DuckDB (see `startup::close`). The
    /// copies made stay until the database closes; reads may still use them.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        *self.jobs.lock() = None;
        let Some(worker) = self.worker.lock().take() else {
            return;
        };
        // A copy starting just after an interrupt would miss it: again
        // until the thread ends (it takes no new job once stopping).
        while !worker.thread.is_finished() {
            worker.interrupt.interrupt();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let stopped = worker.thread.join().unwrap_or(0);
        tracing::info!(copies_stopped = stopped, "hot tables stopped");
    }

    /// Where the copies' checks read the catalog; until it is set, no copy
    /// is made or used.
    pub fn read_catalog_with(&self, catalog: Arc<dyn CatalogReads>) {
        *self.catalog.write() = Some(catalog);
    }

    fn catalog(&self) -> Option<Arc<dyn CatalogReads>> {
        self.catalog.read().clone()
    }

    pub fn stats(&self) -> HotStats {
        let state = self.state.lock();
        HotStats {
            enabled: self.jobs.lock().is_some(),
            tables: state
                .slots
                .values()
                .filter(|slot| matches!(slot, Slot::Copied(_)))
                .count() as u64,
            bytes: state.bytes,
            copying: state
                .slots
                .values()
                .filter(|slot| matches!(slot, Slot::Building))
                .count() as u64,
            max_bytes: self.limits.max_bytes,
            max_table_bytes: self.limits.max_table_bytes,
            reads: self.reads.load(Ordering::Relaxed),
            builds: self.builds.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }

    /// A read rewritten by [`HotTables::rewrite`] is served.
    pub fn served(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn send(&self, job: Job) -> bool {
        self.jobs
            .lock()
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok())
    }

    /// `sql` (one plain read, already checked by the sandbox) with the
    /// tables it reads from usable copies, if any, and the copies it names
    /// (the rewrite then goes through the sandbox's check, allowed to read
    /// those); `tree` its parse tree if the caller has it, `tables` the
    /// lake tables its plan scans, `now`
    /// the snapshot its transaction reads on `conn`. Counts the read of
    /// each table towards its copy.
    pub fn rewrite(
        &self,
        conn: &Connection,
        sql: &str,
        tree: Option<Value>,
        tables: &[(String, String)],
        now: i64,
    ) -> Result<Option<(String, Vec<String>)>, Error> {
        if self.jobs.lock().is_none() {
            return Ok(None);
        }
        let Some(catalog) = self.catalog() else {
            return Ok(None);
        };
        let candidates = self.candidates(tables);
        let mut usable: HashMap<Key, String> = HashMap::new();
        for (key, copy) in candidates {
            if now < copy.snapshot {
                continue; // the copy is newer than this read
            }
            if now > copy.verified {
                // A check that cannot answer leaves the copy unused: the
                // read goes to the lake, which answers or fails on its own.
                let rows = match catalog.changes(copy.snapshot, copy.verified, now) {
                    Ok(rows) => rows,
                    Err(err) => {
                        tracing::info!(error = %err, "a hot table's check failed; reading the lake");
                        continue;
                    }
                };
                let unchanged =
                    snapshots::since(copy.snapshot, copy.verified, now, &rows, &[copy.table_id])
                        == snapshots::Since::Unchanged;
                if !self.verified(&key, &copy.name, unchanged, now) {
                    continue;
                }
            }
            usable.insert(key, copy.name);
        }
        if usable.is_empty() {
            return Ok(None);
        }
        let mut tree = match tree {
            Some(tree) => tree,
            None => parse_tree::serialize(conn, sql)?,
        };
        if tree["error"].as_bool() != Some(false) || leaves_doubt(&tree) {
            return Ok(None);
        }
        if !self.replace_tables(&mut tree, &usable) {
            return Ok(None);
        }
        let copies = usable.into_values().collect();
        parse_tree::deserialize(conn, &tree).map(|sql| Some((sql, copies)))
    }

    /// The copies of `tables` there are, each marked used; a read counted
    /// towards each table without one (which may start its copy).
    fn candidates(&self, tables: &[(String, String)]) -> Vec<(Key, Copied)> {
        let mut found: Vec<(Key, Copied)> = Vec::new();
        let mut builds = Vec::new();
        {
            let mut state = self.state.lock();
            let state = &mut *state;
            for (schema, table) in tables {
                let key = key(schema, table);
                let slot = state
                    .slots
                    .entry(key.clone())
                    .or_insert(Slot::Cold { reads: 0 });
                match slot {
                    Slot::Copied(copy) => {
                        state.tick += 1;
                        copy.used = state.tick;
                        if !found.iter().any(|(seen, _)| *seen == key) {
                            found.push((key, copy.clone()));
                        }
                    }
                    Slot::Cold { reads } => {
                        *reads += 1;
                        if *reads >= self.limits.after_reads {
                            *slot = Slot::Building;
                            builds.push((schema.clone(), table.clone()));
                        }
                    }
                    Slot::Building | Slot::TooLarge => {}
                }
            }
        }
        for (schema, table) in builds {
            if !self.send(Job::Build {
                schema: schema.clone(),
                table: table.clone(),
            }) {
                self.state.lock().slots.remove(&key(&schema, &table));
            }
        }
        found
    }

    /// Records what the check of copy `name` found at `now`; whether it
    /// may serve.
    fn verified(&self, key: &Key, name: &str, unchanged: bool, now: i64) -> bool {
        let mut state = self.state.lock();
        let Some(Slot::Copied(copy)) = state.slots.get_mut(key) else {
            return unchanged;
        };
        if copy.name != name {
            return unchanged;
        }
        if unchanged {
            copy.verified = copy.verified.max(now);
            return true;
        }
        let bytes = copy.bytes;
        state.slots.insert(key.clone(), Slot::Cold { reads: 0 });
        state.bytes -= bytes;
        drop(state);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.send(Job::Drop {
            name: name.to_string(),
        });
        false
    }

    /// Points each base table of `tree` that names a copy in `usable` at
    /// it; false when nothing was replaced or a name leaves doubt.
    fn replace_tables(&self, tree: &mut Value, usable: &HashMap<Key, String>) -> bool {
        let mut replaced = false;
        let mut doubt = false;
        parse_tree::for_each_table(tree, &mut |table| {
            if !table.get("at_clause").is_some_and(Value::is_null) {
                doubt = true;
                return;
            }
            let text = |field: &str| table.get(field).and_then(Value::as_str).unwrap_or("");
            let (catalog, schema, name) = (
                text("catalog_name"),
                text("schema_name"),
                text("table_name"),
            );
            let schema = match (catalog, schema) {
                ("", "") => "main",
                ("", schema) if self.databases.contains(&schema.to_lowercase()) => {
                    doubt = true;
                    return;
                }
                ("", schema) => schema,
                (catalog, schema) if catalog.eq_ignore_ascii_case(&self.lake) => {
                    if schema.is_empty() {
                        "main"
                    } else {
                        schema
                    }
                }
                _ => return,
            };
            let Some(copy) = usable.get(&key(schema, name)) else {
                return;
            };
            if text("alias").is_empty() {
                let alias = Value::String(name.to_string());
                table.insert("alias".into(), alias);
            }
            table.insert("catalog_name".into(), COPIES.into());
            table.insert("schema_name".into(), "main".into());
            table.insert("table_name".into(), copy.clone().into());
            replaced = true;
        });
        replaced && !doubt
    }
}

/// Whether `node` reads something a copy would answer differently: a
/// column reference naming one of DuckLake's virtual columns (in any part:
/// `t.rowid` too), a `DESCRIBE` / `SUMMARIZE` / `SHOW` (a copy has no
/// column defaults), or a sample (a `REPEATABLE` one picks rows by where
/// they are stored).
fn leaves_doubt(node: &Value) -> bool {
    match node {
        Value::Object(map) => {
            let text = |key: &str| map.get(key).and_then(Value::as_str);
            let virtual_column = text("class") == Some("COLUMN_REF")
                && map["column_names"].as_array().is_some_and(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|name| VIRTUAL_COLUMNS.iter().any(|v| v.eq_ignore_ascii_case(name)))
                });
            let sampled = map.get("sample").is_some_and(|sample| !sample.is_null());
            virtual_column
                || sampled
                || text("type") == Some("SHOW_REF")
                || map.values().any(leaves_doubt)
        }
        Value::Array(items) => items.iter().any(leaves_doubt),
        _ => false,
    }
}

/// The copies' thread: makes and drops them, one at a time, until the
/// hot tables are gone or stopped. Returns the number of copies the stop
/// cut short or skipped.
fn work(hot: Weak<HotTables>, jobs: mpsc::Receiver<Job>, conn: Connection) -> u64 {
    let mut stopped = 0;
    while let Ok(job) = jobs.recv() {
        let Some(hot) = hot.upgrade() else {
            break;
        };
        let stopping = || hot.stopping.load(Ordering::SeqCst);
        match job {
            Job::Build { .. } if stopping() => stopped += 1,
            Job::Build { schema, table } => {
                if let Err(err) = hot.build(&conn, &schema, &table) {
                    let _ = conn.execute_batch("ROLLBACK");
                    if stopping() {
                        stopped += 1;
                    } else {
                        tracing::debug!(%schema, %table, error = %err, "hot table not copied");
                    }
                    hot.state
                        .lock()
                        .slots
                        .insert(key(&schema, &table), Slot::Cold { reads: 0 });
                }
            }
            Job::Drop { .. } if stopping() => {}
            Job::Drop { name } => drop_copy(&conn, &name),
        }
    }
    stopped
}

fn drop_copy(conn: &Connection, name: &str) {
    let sql = format!(
        "DROP TABLE IF EXISTS {COPIES}.main.{}",
        quote_identifier(name)
    );
    if let Err(err) = conn.execute_batch(&sql) {
        tracing::warn!(copy = %name, error = %err, "a hot table copy was not dropped");
    }
}

/// Bytes DuckDB's in-memory tables take now.
fn in_memory_bytes(conn: &Connection) -> Result<u64, Error> {
    conn.query_row(
        "SELECT coalesce(sum(memory_usage_bytes), 0)::UBIGINT FROM duckdb_memory() \
         WHERE tag = 'IN_MEMORY_TABLE'",
        [],
        |row| row.get(0),
    )
    .map_err(Error::from_duckdb)
}

impl HotTables {
    /// Copies one table (the copies' thread only).
    fn build(&self, conn: &Connection, schema: &str, table: &str) -> Result<(), Error> {
        let source = format!(
            "{}.{}.{}",
            quote_identifier(&self.lake),
            quote_identifier(schema),
            quote_identifier(table)
        );
        conn.execute_batch("BEGIN TRANSACTION")
            .map_err(Error::from_duckdb)?;
        let snapshot = current_snapshot(conn, &self.lake)?;
        let catalog = self.catalog().ok_or_else(|| {
            Error::internal(anyhow::anyhow!("the hot tables read no catalog yet"))
        })?;
        let table_id = catalog.table_id(schema, table, snapshot)?.ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "DuckLake names no one table {schema}.{table}"
            ))
        })?;
        let (rows, columns): (u64, u64) = conn
            .query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM {source}), \
                     (SELECT count(*) FROM duckdb_columns() WHERE database_name = {} \
                      AND schema_name = {} AND table_name = {})",
                    quote_literal(&self.lake),
                    quote_literal(schema),
                    quote_literal(table)
                ),
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(Error::from_duckdb)?;
        let estimate = rows * columns.max(1) * MIN_CELL_BYTES;
        if estimate > self.limits.max_table_bytes {
            conn.execute_batch("ROLLBACK").map_err(Error::from_duckdb)?;
            self.too_large(schema, table, estimate);
            return Ok(());
        }
        let name = {
            let mut state = self.state.lock();
            state.next += 1;
            format!("{INTERNAL_TABLE_PREFIX}{}", state.next)
        };
        let before = in_memory_bytes(conn)?;
        conn.execute_batch(&format!(
            "CREATE TABLE {COPIES}.main.{} AS SELECT * FROM {source}; COMMIT",
            quote_identifier(&name)
        ))
        .map_err(Error::from_duckdb)?;
        let bytes = in_memory_bytes(conn)?.saturating_sub(before).max(estimate);
        if bytes > self.limits.max_table_bytes {
            drop_copy(conn, &name);
            self.too_large(schema, table, bytes);
            return Ok(());
        }
        self.builds.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut state = self.state.lock();
            state.tick += 1;
            let copy = Copied {
                name: name.clone(),
                snapshot,
                verified: snapshot,
                table_id,
                bytes,
                used: state.tick,
            };
            state.bytes += bytes;
            state.slots.insert(key(schema, table), Slot::Copied(copy));
            let mut evicted = Vec::new();
            while state.bytes > self.limits.max_bytes {
                let oldest = state
                    .slots
                    .iter()
                    .filter_map(|(k, slot)| match slot {
                        Slot::Copied(copy) => Some((copy.used, k.clone())),
                        _ => None,
                    })
                    .min();
                let Some((_, oldest)) = oldest else {
                    break;
                };
                if let Some(Slot::Copied(copy)) =
                    state.slots.insert(oldest, Slot::Cold { reads: 0 })
                {
                    state.bytes -= copy.bytes;
                    evicted.push(copy.name);
                }
            }
            evicted
        };
        tracing::info!(%schema, %table, rows, bytes, snapshot, "hot table copied");
        for name in evicted {
            drop_copy(conn, &name);
        }
        Ok(())
    }

    fn too_large(&self, schema: &str, table: &str, bytes: u64) {
        tracing::info!(%schema, %table, bytes, "hot table too large to copy");
        self.too_large.fetch_add(1, Ordering::Relaxed);
        self.state
            .lock()
            .slots
            .insert(key(schema, table), Slot::TooLarge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(conn: &Connection, sql: &str) -> Value {
        parse_tree::serialize(conn, sql).unwrap()
    }

    /// Which names a statement's tables get: copies where the name surely
    /// is the lake's table, nothing where a name leaves doubt.
    #[test]
    fn only_names_that_surely_are_the_table_are_replaced() {
        let conn = Connection::open_in_memory().unwrap();
        let hot = HotTables::start(
            HotLimits {
                enabled: false,
                max_bytes: 0,
                max_table_bytes: 0,
                after_reads: 1,
            },
            "lake".into(),
            vec!["lake".into(), "memory".into(), "system".into()],
            Connection::open_in_memory().unwrap(),
        );
        let usable: HashMap<Key, String> = [(key("main", "t"), "hot_1".to_string())].into();
        let rewrite = |sql: &str| {
            let mut tree = tree(&conn, sql);
            hot.replace_tables(&mut tree, &usable)
                .then(|| parse_tree::deserialize(&conn, &tree).unwrap())
        };
        assert_eq!(
            rewrite("SELECT t.id FROM T WHERE id = ?").as_deref(),
            Some("SELECT t.id FROM memory.main.hot_1 AS T WHERE (id = $1)")
        );
        assert_eq!(
            rewrite("SELECT * FROM lake.main.t x JOIN main.t USING (id)").as_deref(),
            Some(
                "SELECT * FROM memory.main.hot_1 AS x INNER JOIN memory.main.hot_1 AS t USING (id)"
            )
        );
        // A CTE named like the table, in its scope.
        assert_eq!(
            rewrite("WITH t AS (SELECT 1 AS id) SELECT * FROM t").as_deref(),
            None
        );
        // Another table, another database, a database's name as first part,
        // an AT clause.
        for sql in [
            "SELECT * FROM u",
            "SELECT * FROM other.main.t",
            "SELECT * FROM lake.t, t",
            "SELECT * FROM t AT (VERSION => 1)",
        ] {
            assert_eq!(rewrite(sql), None, "{sql}");
        }
        for (sql, doubt) in [
            ("SELECT rowid FROM t", true),
            ("SELECT t.filename FROM t", true),
            ("SELECT * FROM t ORDER BY SNAPSHOT_ID", true),
            ("SELECT * FROM t, (DESCRIBE t)", true),
            ("SUMMARIZE t", true),
            (
                "SELECT * FROM t TABLESAMPLE reservoir(10 ROWS) REPEATABLE (1)",
                true,
            ),
            ("SELECT * FROM t USING SAMPLE 5", true),
            (
                "SELECT id, name FROM t WHERE id IN (SELECT id FROM t)",
                false,
            ),
        ] {
            assert_eq!(leaves_doubt(&tree(&conn, sql)), doubt, "{sql}");
        }
    }
}
