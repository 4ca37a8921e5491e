//! What every handler shares, behind `web::Data`: the services of the core
//! (engine, store, object store, jobs, audit, maintenance) and the
//! configuration. Built once by [`crate::startup`].

use std::sync::Arc;

use crate::{bucket::Bucket, config::Config, engine::Engine, store::Store};

/// Everything handlers share, behind `web::Data`.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// Our own tables (and, with PostgreSQL, the catalog readiness check).
    pub store: Store,
    /// The lake's data path as an object store.
    pub bucket: Arc<Bucket>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// dotted config key → "default" | "file <path>" | "environment VAR"
    pub config_sources: Arc<std::collections::BTreeMap<String, String>>,
    pub performance: Arc<crate::performance::Tracker>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Set on SIGTERM: /ready answers 503 and new requests are refused.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Async query jobs.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The audit trail's queue.
    pub audit: crate::audit::Audit,
    /// Compaction, expiry, cleanup and the periodic round.
    pub maintenance: Arc<crate::maintenance::Maintenance>,
}
