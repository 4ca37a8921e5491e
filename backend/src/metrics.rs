//! Prometheus metrics (`/metrics`, when `features.enable_prometheus_metrics`).
//!
//! Event metrics (HTTP requests, queries, rows, bytes) are recorded as they
//! happen; state metrics (DuckDB memory, process memory and CPU, pools,
//! dependencies, the lake's snapshot) are read at scrape time. Labels are
//! bounded: route templates, methods, status classes, query kinds, error
//! codes, dependency names, DuckDB memory tags. Never SQL or table names.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub queries: IntCounterVec,
    pub query_duration: HistogramVec,
    pub rows_returned: IntCounter,
    pub bytes_returned: IntCounter,
    pub queries_active: IntGauge,
    pub queries_queued: IntGauge,
    pub transactions_open: IntGaugeVec,
    pub write_conflicts: IntCounter,
    pub duckdb_memory: IntGaugeVec,
    pub duckdb_temp_storage: IntGauge,
    pub process_resident_memory: IntGauge,
    pub process_cpu_seconds: prometheus::Counter,
    pub catalog_pool: IntGaugeVec,
    pub catalog_connections: IntGaugeVec,
    pub dependency_up: IntGaugeVec,
    pub dependency_check_seconds: prometheus::GaugeVec,
    pub lake_snapshot: IntGauge,
    pub build_info: IntGaugeVec,
    pub maintenance_rounds: IntCounterVec,
    pub ingest_rows: IntCounter,
    /// Flight SQL calls by method (their queries count in `queries_total`
    /// like the HTTP API's).
    pub flight_calls: IntCounterVec,
    pub ingest_bytes: IntCounter,
    pub jobs: IntGaugeVec,
    pub audit_written: IntCounter,
    pub audit_dropped: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_bypass: IntCounter,
    pub cache_evictions: IntCounter,
    pub cache_invalidations: IntCounter,
    pub cache_waits: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
    /// The check before each cache hit: the lake's latest snapshot, and
    /// when the lake moved, whether the answer's tables changed.
    pub cache_check_duration: prometheus::Histogram,
    pub hot_tables: IntGauge,
    pub hot_bytes: IntGauge,
    pub hot_reads: IntCounter,
    pub hot_builds: IntCounter,
    pub hot_invalidations: IntCounter,
}

const NS: &str = "ducklake";

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NS);
        let seconds = |name: &str, help: &str| {
            HistogramOpts::new(name, help)
                .namespace(NS)
                .buckets(exponential_buckets(0.0005, 2.5, 14).expect("valid buckets"))
        };
        let metrics = Self {
            http_requests: IntCounterVec::new(
                opts("http_requests_total", "HTTP requests by route template, method and status class."),
                &["route", "method", "status_class"],
            )
            .unwrap(),
            http_duration: HistogramVec::new(
                seconds("http_request_duration_seconds", "HTTP request duration until the response head, by route."),
                &["route", "method"],
            )
            .unwrap(),
            queries: IntCounterVec::new(
                opts("queries_total", "Queries by kind (read, write, ddl, maintenance, other) and outcome (ok or error code)."),
                &["kind", "outcome"],
            )
            .unwrap(),
            query_duration: HistogramVec::new(
                seconds("query_duration_seconds", "Query duration until the result was complete, by kind."),
                &["kind"],
            )
            .unwrap(),
            rows_returned: IntCounter::with_opts(opts("query_rows_returned_total", "Rows returned to clients.")).unwrap(),
            bytes_returned: IntCounter::with_opts(opts("query_bytes_returned_total", "Result bytes sent to clients (before compression).")).unwrap(),
            queries_active: IntGauge::with_opts(opts("queries_active", "Queries running now.")).unwrap(),
            queries_queued: IntGauge::with_opts(opts("queries_queued", "Queries waiting for a connection.")).unwrap(),
            transactions_open: IntGaugeVec::new(
                opts("transactions_open", "Flight SQL transactions open, by state: reading (holds no connection), writing_active (a statement runs on its connection), writing_idle (its connection waits for the client)."),
                &["state"],
            )
            .unwrap(),
            write_conflicts: IntCounter::with_opts(opts("write_conflicts_total", "Requests that ended in write_conflict.")).unwrap(),
            duckdb_memory: IntGaugeVec::new(
                opts("duckdb_memory_bytes", "DuckDB memory in use, by DuckDB's tag (duckdb_memory())."),
                &["tag"],
            )
            .unwrap(),
            duckdb_temp_storage: IntGauge::with_opts(opts("duckdb_temporary_storage_bytes", "DuckDB temporary (spill) storage in use.")).unwrap(),
            process_resident_memory: IntGauge::with_opts(Opts::new("process_resident_memory_bytes", "Resident memory of the process.")).unwrap(),
            process_cpu_seconds: prometheus::Counter::with_opts(Opts::new("process_cpu_seconds_total", "CPU time the process has used.")).unwrap(),
            catalog_pool: IntGaugeVec::new(
                opts("catalog_pool_connections", "The service's own catalog pool: size, available and waiting."),
                &["state"],
            )
            .unwrap(),
            catalog_connections: IntGaugeVec::new(
                opts("catalog_connections", "Connections this replica holds to the catalog database (pg_stat_activity), by pool: duckdb (the postgres extension) or service (ours)."),
                &["pool"],
            )
            .unwrap(),
            dependency_up: IntGaugeVec::new(
                opts("dependency_up", "1 when the dependency answered its last check."),
                &["dependency"],
            )
            .unwrap(),
            dependency_check_seconds: prometheus::GaugeVec::new(
                opts("dependency_check_duration_seconds", "Latency of the last check of each dependency."),
                &["dependency"],
            )
            .unwrap(),
            lake_snapshot: IntGauge::with_opts(opts("lake_snapshot_id", "The lake's current DuckLake snapshot id.")).unwrap(),
            build_info: IntGaugeVec::new(
                opts("build_info", "Versions of the service, DuckDB and its extensions (value 1)."),
                &["version", "duckdb_version", "extensions"],
            )
            .unwrap(),
            maintenance_rounds: IntCounterVec::new(
                opts("maintenance_rounds_total", "Periodic maintenance rounds of this replica, by outcome: ok, error, or locked (another replica held the lock)."),
                &["outcome"],
            )
            .unwrap(),
            flight_calls: IntCounterVec::new(
                opts("flight_calls_total", "Arrow Flight SQL calls, by method (statement_query, do_get, prepare, get_tables ...)."),
                &["method"],
            )
            .unwrap(),
            ingest_rows: IntCounter::with_opts(opts("ingest_rows_total", "Rows loaded into tables by ingest.")).unwrap(),
            ingest_bytes: IntCounter::with_opts(opts("ingest_bytes_total", "Bytes uploaded to ingest.")).unwrap(),
            jobs: IntGaugeVec::new(
                opts("jobs", "Async query jobs in the store (all replicas) by status: queued, running, succeeded, failed, cancelled."),
                &["status"],
            )
            .unwrap(),
            audit_written: IntCounter::with_opts(opts("audit_events_written_total", "Audit events written to the audit log.")).unwrap(),
            audit_dropped: IntCounter::with_opts(opts("audit_events_dropped_total", "Audit events dropped: the queue was full or the store refused their batch.")).unwrap(),
            cache_hits: IntCounter::with_opts(opts("cache_hits_total", "Reads answered from the result cache after their check.")).unwrap(),
            cache_misses: IntCounter::with_opts(opts("cache_misses_total", "Cacheable reads not in the result cache (run, and kept if they fit).")).unwrap(),
            cache_bypass: IntCounter::with_opts(opts("cache_bypass_total", "Requests not for the result cache: writes, volatile or unversioned reads, transactions, or the cache off.")).unwrap(),
            cache_evictions: IntCounter::with_opts(opts("cache_evictions_total", "Kept answers evicted to make room.")).unwrap(),
            cache_invalidations: IntCounter::with_opts(opts("cache_invalidations_total", "Kept answers dropped because the lake changed under them.")).unwrap(),
            cache_waits: IntCounter::with_opts(opts("cache_waits_total", "Reads that waited for the same query's run in another request instead of running it.")).unwrap(),
            cache_bytes: IntGauge::with_opts(opts("cache_bytes", "Bytes of kept answers in the result cache.")).unwrap(),
            cache_entries: IntGauge::with_opts(opts("cache_entries", "Answers kept in the result cache.")).unwrap(),
            cache_check_duration: prometheus::Histogram::with_opts(
                HistogramOpts::new("cache_check_duration_seconds", "The check that a kept answer is current, before each hit.")
                    .namespace(NS)
                    .buckets(exponential_buckets(0.00005, 2.5, 14).expect("valid buckets")),
            )
            .unwrap(),
            hot_tables: IntGauge::with_opts(opts("hot_tables", "Lake tables held as in-memory copies.")).unwrap(),
            hot_bytes: IntGauge::with_opts(opts("hot_table_bytes", "Bytes the in-memory copies of hot tables take.")).unwrap(),
            hot_reads: IntCounter::with_opts(opts("hot_table_reads_total", "Reads served (in part) from in-memory copies of their tables.")).unwrap(),
            hot_builds: IntCounter::with_opts(opts("hot_table_copies_total", "In-memory copies of lake tables made.")).unwrap(),
            hot_invalidations: IntCounter::with_opts(opts("hot_table_invalidations_total", "In-memory copies dropped because their table changed.")).unwrap(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.http_requests.clone()),
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.queries.clone()),
            Box::new(metrics.query_duration.clone()),
            Box::new(metrics.rows_returned.clone()),
            Box::new(metrics.bytes_returned.clone()),
            Box::new(metrics.queries_active.clone()),
            Box::new(metrics.queries_queued.clone()),
            Box::new(metrics.transactions_open.clone()),
            Box::new(metrics.write_conflicts.clone()),
            Box::new(metrics.duckdb_memory.clone()),
            Box::new(metrics.duckdb_temp_storage.clone()),
            Box::new(metrics.process_resident_memory.clone()),
            Box::new(metrics.process_cpu_seconds.clone()),
            Box::new(metrics.catalog_pool.clone()),
            Box::new(metrics.catalog_connections.clone()),
            Box::new(metrics.maintenance_rounds.clone()),
            Box::new(metrics.ingest_rows.clone()),
            Box::new(metrics.flight_calls.clone()),
            Box::new(metrics.ingest_bytes.clone()),
            Box::new(metrics.dependency_up.clone()),
            Box::new(metrics.dependency_check_seconds.clone()),
            Box::new(metrics.lake_snapshot.clone()),
            Box::new(metrics.build_info.clone()),
            Box::new(metrics.jobs.clone()),
            Box::new(metrics.audit_written.clone()),
            Box::new(metrics.audit_dropped.clone()),
            Box::new(metrics.cache_hits.clone()),
            Box::new(metrics.cache_misses.clone()),
            Box::new(metrics.cache_bypass.clone()),
            Box::new(metrics.cache_evictions.clone()),
            Box::new(metrics.cache_invalidations.clone()),
            Box::new(metrics.cache_waits.clone()),
            Box::new(metrics.cache_bytes.clone()),
            Box::new(metrics.cache_entries.clone()),
            Box::new(metrics.cache_check_duration.clone()),
            Box::new(metrics.hot_tables.clone()),
            Box::new(metrics.hot_bytes.clone()),
            Box::new(metrics.hot_reads.clone()),
            Box::new(metrics.hot_builds.clone()),
            Box::new(metrics.hot_invalidations.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("unique metric names");
        }
        metrics
    }

    /// Counts one Flight SQL call (`method` from the edge's closed list).
    pub fn flight_call(&self, method: &'static str) {
        self.flight_calls.with_label_values(&[method]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Records the end of one query.
    pub fn query_finished(&self, kind: &str, outcome: &str, seconds: f64, rows: u64, bytes: u64) {
        self.queries.with_label_values(&[kind, outcome]).inc();
        if outcome == "ok" {
            self.query_duration
                .with_label_values(&[kind])
                .observe(seconds);
        }
        self.rows_returned.inc_by(rows);
        self.bytes_returned.inc_by(bytes);
    }
}

impl Metrics {
    /// The audit trail's counters.
    pub fn audit_counters(&self) -> crate::audit::AuditCounters {
        crate::audit::AuditCounters {
            written: self.audit_written.clone(),
            dropped: self.audit_dropped.clone(),
        }
    }
}

impl Metrics {
    /// The result cache's counters.
    pub fn cache_counters(&self) -> crate::cache::CacheCounters {
        crate::cache::CacheCounters {
            hits: self.cache_hits.clone(),
            misses: self.cache_misses.clone(),
            bypass: self.cache_bypass.clone(),
            evictions: self.cache_evictions.clone(),
            invalidations: self.cache_invalidations.clone(),
            waits: self.cache_waits.clone(),
            bytes: self.cache_bytes.clone(),
            entries: self.cache_entries.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves a counter up to a total read elsewhere (the counter only grows).
pub fn sync_int_counter(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// [`sync_int_counter`] for float counters.
pub fn sync_counter(counter: &prometheus::Counter, total: f64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// `2xx`, `4xx` ... : a bounded label for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The kind of a request's last statement by its leading keyword, for
/// metrics only (authorisation will use DuckDB's own parse).
pub fn query_kind(sql: &str) -> &'static str {
    let code: String = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let last = code
        .split(';')
        .map(str::trim)
        .rfind(|s| !s.is_empty())
        .unwrap_or("");
    let keyword = last
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    match keyword.as_str() {
        "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE" | "SHOW" | "DESCRIBE" | "EXPLAIN"
        | "SUMMARIZE" => "read",
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "UPSERT" => "write",
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" | "COMMENT" => "ddl",
        "CALL" | "VACUUM" | "CHECKPOINT" | "ANALYZE" => "maintenance",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_classes_are_bounded() {
        assert_eq!(query_kind("  select 1"), "read");
        assert_eq!(query_kind("WITH t AS (SELECT 1) SELECT * FROM t"), "read");
        assert_eq!(
            query_kind("CREATE TABLE t (x INT); INSERT INTO t VALUES (1);"),
            "write"
        );
        assert_eq!(query_kind("drop table t"), "ddl");
        assert_eq!(
            query_kind("CALL ducklake_merge_adjacent_files('lake')"),
            "maintenance"
        );
        assert_eq!(query_kind("-- comment only"), "other");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        let m = Metrics::new();
        m.query_finished("read", "ok", 0.01, 5, 100);
        let text = m.render();
        assert!(
            text.contains("ducklake_queries_total{kind=\"read\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ducklake_query_rows_returned_total 5"),
            "{text}"
        );
    }
}
