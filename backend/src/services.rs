//! The services of the core that every transport shares (engine, store,
//! object store, jobs, audit, maintenance, authentication, metrics) and the
//! configuration: one value, built once by [`crate::startup`], handed to the
//! HTTP API (as its `web::Data`) and to the Flight SQL edge alike, so no
//! path has rules the other lacks. It knows no transport.

use std::sync::{atomic::AtomicBool, Arc};

use crate::{bucket::Bucket, config::Config, engine::Engine, store::Store};

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
}

/// Where the Flight SQL edge listens, and whether it still serves (its
/// server task clears the flag when it ends), for `/ready`.
#[derive(Clone)]
pub struct FlightListener {
    pub address: std::net::SocketAddr,
    pub serving: Arc<AtomicBool>,
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
        let loaded = self
            .engine
            .load_file(
                load.schema.to_string(),
                load.table.to_string(),
                load.location,
                load.format,
                load.mode,
                timeout,
            )
            .await;
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
