//! The services of the core that every transport shares (engine, store,
//! object store, jobs, audit, maintenance, authentication, metrics) and the
//! configuration: one value, built once by [`crate::startup`], handed to the
//! HTTP API (as its `web::Data`) and to the Flight SQL edge alike, so no
//! path has rules the other lacks. It knows no transport.

use std::sync::{atomic::AtomicBool, Arc};

use crate::{
    bucket::Bucket,
    cache::{CacheStatus, Capture, Entry, Key, KeyParts, ResultCache, Turn},
    config::Config,
    engine::{
        freshness::{self, LakeHead, Since, SnapshotChanges},
        stream::{QueryStream, TransactionMode},
        timetravel::Pin,
        Engine, QueryRequest,
    },
    error::Error,
    format::encode::Format,
    store::Store,
};

/// Everything the transports share.
pub struct Services {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// Our own tables (and, with PostgreSQL, the catalog readiness check).
    pub store: Store,
    /// The lake's data path as an object store.
    pub bucket: Arc<Bucket>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// dotted config key → "default" | "file `<path>`" | "environment VAR"
    pub config_sources: Arc<std::collections::BTreeMap<String, String>>,
    pub performance: Arc<crate::performance::Tracker>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Set on SIGTERM: /ready answers 503 and new requests are refused.
    pub draining: Arc<AtomicBool>,
    /// Async query jobs.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The audit trail's queue.
    pub audit: crate::audit::Audit,
    /// Compaction, expiry, cleanup and the periodic round.
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// The Flight SQL listener, when it is on.
    pub flight: Option<FlightListener>,
    /// Answers to repeated reads (see [`Services::query`]).
    pub cache: Arc<ResultCache>,
    /// Transactions open across calls (Flight SQL's).
    pub transactions: crate::transactions::Transactions,
    /// The disk the files being received share (HTTP uploads, Flight SQL
    /// ingests).
    pub uploads: crate::uploads::SpoolBudget,
}

/// Where the Flight SQL edge listens, and whether it still serves (its
/// server task clears the flag when it ends), for `/ready`.
#[derive(Clone)]
pub struct FlightListener {
    pub address: std::net::SocketAddr,
    pub serving: Arc<AtomicBool>,
}

impl Load<'_> {
    /// What the engine loads.
    pub fn file(&self) -> crate::engine::ingest::FileLoad {
        crate::engine::ingest::FileLoad {
            schema: self.schema.to_string(),
            table: self.table.to_string(),
            location: self.location.clone(),
            format: self.format,
            mode: self.mode,
        }
    }
}

/// One load of a file into a lake table, as a transport asks for it.
pub struct Load<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    /// A path under the spill directory or an object in the lake's bucket.
    pub location: String,
    pub format: crate::engine::ingest::FileFormat,
    pub mode: crate::engine::ingest::LoadMode,
    /// Bytes the client sent (0 for a file already in the bucket).
    pub bytes: u64,
    /// The `s3://` URL it came from, if it was there already.
    pub source: Option<&'a str>,
}

impl Services {
    /// Loads a file into a table in one transaction, and records it: in the
    /// audit trail (ok with its snapshot, or failed with its code), the
    /// ingest metrics and the log. Every transport's ingest comes here.
    pub async fn load(
        &self,
        trail: Option<&crate::audit::Trail>,
        load: Load<'_>,
    ) -> Result<crate::engine::ingest::Loaded, crate::error::Error> {
        let timeout = std::time::Duration::from_millis(self.config.ingest.timeout_ms);
        let loaded = self.engine.load_file(load.file(), timeout).await;
        if let Some(trail) = trail {
            let outcome = match &loaded {
                Ok(_) => crate::audit::Outcome::Ok,
                Err(_) => crate::audit::Outcome::Failed,
            };
            let mut event = trail
                .event("ingest", outcome)
                .target(format!("{}.{}", load.schema, load.table))
                .detail("mode", load.mode)
                .detail("format", load.format)
                .detail("bytes", load.bytes)
                .detail("url", load.source);
            event = match &loaded {
                Ok(loaded) => event
                    .snapshot(Some(loaded.snapshot))
                    .detail("rows_loaded", loaded.rows_loaded),
                Err(err) => event.detail("error", err.code()),
            };
            trail.record(event);
        }
        let loaded = loaded?;
        if self.config.features.enable_prometheus_metrics {
            self.metrics.ingest_rows.inc_by(loaded.rows_loaded);
            self.metrics.ingest_bytes.inc_by(load.bytes);
        }
        tracing::info!(
            rows = loaded.rows_loaded,
            bytes = load.bytes,
            snapshot = loaded.snapshot,
            "file loaded"
        );
        Ok(loaded)
    }
}

impl Services {
    /// Runs one SQL request for a transport, through the result cache: a
    /// kept answer is served once it is checked current (the lake's
    /// latest snapshot, and when that moved, the answer's tables and the
    /// schema); anything else runs on the engine, and a cacheable answer
    /// that arrives whole is kept on its way to the client.
    pub async fn query(
        &self,
        request: QueryRequest,
        format: Format,
        mode: TransactionMode,
    ) -> Result<QueryStream, Error> {
        let Some(key) = self.cache_key(&request, format, mode) else {
            let stream = self.engine.stream(request, format, mode).await?;
            self.cache.counters().bypass.inc();
            return Ok(stream);
        };
        let mut request = request;
        let mut followed = false;
        let lead = loop {
            if let Some(entry) = self.cache.get(&key) {
                match self.current_at(&entry).await {
                    Ok(Some(snapshot)) => {
                        let not_modified = request
                            .if_none_match
                            .as_deref()
                            .zip(entry.answer.etag.as_deref())
                            .is_some_and(|(held, etag)| {
                                crate::engine::timetravel::names_version(held, etag)
                            });
                        self.cache.served(&key);
                        self.cache.counters().hits.inc();
                        return Ok(Engine::kept(&entry, snapshot, not_modified));
                    }
                    Ok(None) => self.cache.invalidate(&key, &entry),
                    // The query itself will meet the outage and say so.
                    Err(err) => {
                        tracing::warn!(error = %err, "the result cache could not check an entry")
                    }
                }
            }
            match self.cache.turn(key) {
                Turn::Lead(lead) => break Some(lead),
                // The same answer is being made: wait for it (within the
                // request's timeout, which the wait uses up), then look
                // again, once.
                Turn::Follow(following) if !followed => {
                    followed = true;
                    self.cache.counters().waits.inc();
                    let timeout = self.engine.timeout_for(request.timeout_ms);
                    let started = std::time::Instant::now();
                    let _ = tokio::time::timeout(timeout, following.done()).await;
                    let left = timeout.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(Error::QueryTimeout(format!(
                            "the same query, run for another request, did not end within \
                             this request's timeout of {} ms",
                            timeout.as_millis()
                        )));
                    }
                    request.timeout_ms = Some(left.as_millis().max(1) as u64);
                }
                Turn::Follow(_) => break None,
            }
        };
        let capture = Capture::new(Arc::clone(&self.cache), key, lead);
        let stream = self
            .engine
            .stream_capturing(request, format, mode, capture)
            .await?;
        match stream.versions.cache {
            CacheStatus::Miss => self.cache.counters().misses.inc(),
            _ => self.cache.counters().bypass.inc(),
        }
        Ok(stream)
    }

    /// The cache key of a request that may be cached; `None` for what
    /// never is: the cache off, a transaction, a pin by time (which moves
    /// with new snapshots), a job's or a session's run, a client asking for
    /// a fresh read (`Cache-Control: no-cache`).
    fn cache_key(
        &self,
        request: &QueryRequest,
        format: Format,
        mode: TransactionMode,
    ) -> Option<Key> {
        if !self.cache.enabled()
            || !matches!(
                mode,
                TransactionMode::AutoCommit | TransactionMode::ReadOnly
            )
            || request.session.is_some()
            || request.progress.is_some()
            || request.timetz_as_text
            || request.fresh
            || matches!(request.pin, Some(Pin::Time(_)))
        {
            return None;
        }
        let params = request.params.to_json_text();
        Some(Key::of(&KeyParts {
            sql: &request.sql,
            params: &params,
            format: format.name(),
            max_rows: self.engine.max_rows_for(request.max_rows),
            client_max_rows: request.max_rows.is_some(),
            max_result_bytes: self.engine.max_result_bytes,
            pin: match request.pin {
                Some(Pin::Version(version)) => Some(version),
                _ => None,
            },
            role: request.role,
            read_only: mode == TransactionMode::ReadOnly,
        }))
    }

    /// The snapshot at which `entry` is the answer now, or `None` when the
    /// lake changed under it. Timed into `ducklake_cache_check_duration_seconds`.
    async fn current_at(&self, entry: &Entry) -> Result<Option<i64>, Error> {
        let _timer = self.metrics.cache_check_duration.start_timer();
        let answer = &entry.answer;
        let head = self.lake_head(answer.pinned).await?;
        if let Some(pinned) = answer.pinned {
            // A pinned answer never changes, while its snapshot exists.
            return Ok(head.pinned_exists.then_some(pinned));
        }
        let known = entry.validated_at();
        if head.latest == known {
            return Ok(Some(known));
        }
        if head.latest < known {
            // The catalog went back (it was replaced): nothing holds.
            return Ok(None);
        }
        // The lake moved: what did the snapshots since change?
        let ids = match entry.table_ids() {
            Some(ids) => ids.to_vec(),
            None => match self.table_ids(answer.snapshot, &answer.tables).await? {
                Some(ids) => {
                    entry.set_table_ids(ids.clone());
                    ids
                }
                None => return Ok(None),
            },
        };
        let rows = self
            .snapshot_changes(answer.snapshot, known, head.latest)
            .await?;
        let now = match freshness::since(answer.snapshot, known, head.latest, &rows, &ids) {
            Since::Unchanged => Some(head.latest),
            Since::Changed => None,
            Since::Unknown => {
                self.engine
                    .unchanged_since(answer.snapshot, answer.tables.clone())
                    .await?
            }
        };
        if let Some(now) = now {
            entry.validated(now);
        }
        Ok(now)
    }

    /// The catalog database as the service's own pool reaches it, when it
    /// is PostgreSQL (DuckLake's tables in its `public` schema).
    fn catalog_pool(&self) -> Option<&deadpool_postgres::Pool> {
        match &self.store {
            Store::Postgres(pool) if !self.engine.catalog_is_local() => Some(pool),
            _ => None,
        }
    }

    /// The lake's latest snapshot (and whether `pinned` still exists): with
    /// a PostgreSQL catalog one query on our own pool, with the local
    /// catalog file the same read through DuckDB.
    pub async fn lake_head(&self, pinned: Option<i64>) -> Result<LakeHead, Error> {
        let Some(pool) = self.catalog_pool() else {
            return self.engine.lake_head(pinned).await;
        };
        let pin = pinned.unwrap_or(-1);
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = match pinned {
            Some(_) => &[&pin],
            None => &[],
        };
        let sql = freshness::sql::head_for("public.", pinned);
        let rows = catalog_query(pool, &sql, params).await?;
        let row = rows.first().ok_or_else(|| unavailable("no answer"))?;
        Ok(LakeHead {
            latest: row.get::<_, Option<i64>>(0).unwrap_or(0),
            pinned_exists: row.get(1),
        })
    }

    async fn snapshot_changes(
        &self,
        read: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<SnapshotChanges>, Error> {
        let Some(pool) = self.catalog_pool() else {
            return self.engine.snapshot_changes(read, from, to).await;
        };
        pool_changes(pool, read, from, to).await
    }

    async fn table_ids(
        &self,
        at: i64,
        tables: &[(String, String)],
    ) -> Result<Option<Vec<i64>>, Error> {
        let Some(pool) = self.catalog_pool() else {
            return self.engine.table_ids(at, tables.to_vec()).await;
        };
        let mut ids = Vec::new();
        for (schema, table) in tables {
            match pool_table_id(pool, schema, table, at).await? {
                Some(id) => ids.push(id),
                None => return Ok(None),
            }
        }
        Ok(Some(ids))
    }

    /// With a PostgreSQL catalog, the hot tables read it through the
    /// service's own pool (the local catalog file's reads are the engine's
    /// own, set when it opened).
    pub fn connect_hot_tables(&self) {
        if let Some(pool) = self.catalog_pool() {
            self.engine.hot().read_catalog_with(Arc::new(PoolReads {
                pool: pool.clone(),
                runtime: tokio::runtime::Handle::current(),
            }));
        }
    }
}

/// [`freshness::sql::changes`] on the catalog through the service's pool.
async fn pool_changes(
    pool: &deadpool_postgres::Pool,
    read: i64,
    from: i64,
    to: i64,
) -> Result<Vec<SnapshotChanges>, Error> {
    let rows = catalog_query(
        pool,
        &freshness::sql::changes("public."),
        &[&read, &from, &to],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| SnapshotChanges {
            id: row.get(0),
            schema_version: row.get(1),
            changes: row.get(2),
        })
        .collect())
}

/// [`freshness::sql::table_id`] on the catalog through the service's pool.
async fn pool_table_id(
    pool: &deadpool_postgres::Pool,
    schema: &str,
    table: &str,
    at: i64,
) -> Result<Option<i64>, Error> {
    let sql = freshness::sql::table_id("public.");
    let rows = catalog_query(pool, &sql, &[&schema, &table, &at]).await?;
    Ok(match rows[..] {
        [ref row] => Some(row.get(0)),
        _ => None,
    })
}

/// The hot tables' catalog reads on the service's pool, from their
/// blocking threads (a request's query thread, the copies' thread).
struct PoolReads {
    pool: deadpool_postgres::Pool,
    runtime: tokio::runtime::Handle,
}

/// How long a hot table's catalog read may take (a request's own timeout
/// cannot stop it: it runs beside DuckDB, not in it).
const POOL_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl PoolReads {
    fn bounded<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.runtime.block_on(async {
            tokio::time::timeout(POOL_READ_LIMIT, read)
                .await
                .map_err(|_| {
                    unavailable(format!("no answer within {} s", POOL_READ_LIMIT.as_secs()))
                })?
        })
    }
}

impl crate::engine::hot::CatalogReads for PoolReads {
    fn changes(&self, read: i64, from: i64, to: i64) -> Result<Vec<SnapshotChanges>, Error> {
        self.bounded(pool_changes(&self.pool, read, from, to))
    }

    fn table_id(&self, schema: &str, table: &str, at: i64) -> Result<Option<i64>, Error> {
        self.bounded(pool_table_id(&self.pool, schema, table, at))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::CatalogUnavailable(format!("the catalog database did not answer: {e}"))
}

/// One statement on the catalog database through the service's own pool.
async fn catalog_query(
    pool: &deadpool_postgres::Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let client = pool.get().await.map_err(unavailable)?;
    let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
    client.query(&statement, params).await.map_err(unavailable)
}
