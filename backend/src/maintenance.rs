//! Lake maintenance as a service: operations with a before/after report,
//! and the optional periodic round (config `maintenance.*`, off by
//! default): merge small files, expire old snapshots, delete what nobody
//! needs any more. Only one replica runs a round at a time: it must hold
//! the maintenance advisory lock in PostgreSQL
//! ([`crate::store::Store::try_maintenance_lock`]). Built with its handles
//! like [`crate::jobs::Jobs`]; knows no transport.

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use chrono::Utc;
use prometheus::IntCounterVec;
use serde::Serialize;

use crate::{
    audit::{Actor, Audit, Outcome, Trail},
    bucket::Bucket,
    config::MaintenanceConfig,
    engine::{
        maintenance::{CatalogFiles, ExpireWhat},
        Engine,
    },
    error::Error,
    store::Store,
};

/// The lake's files as the catalog and the object store see them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LakeUsage {
    #[serde(flatten)]
    pub catalog: CatalogFiles,
    /// Every object under the data path (referenced or not).
    pub storage_files: u64,
    pub storage_bytes: u64,
}

/// What a maintenance operation did (or, dry, would do).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report<T: Serialize> {
    pub operation: &'static str,
    pub dry_run: bool,
    pub before: LakeUsage,
    /// Equal to `before` on a dry run.
    pub after: LakeUsage,
    pub changes: T,
    pub elapsed_ms: f64,
}

/// The maintenance service.
pub struct Maintenance {
    engine: Arc<Engine>,
    bucket: Arc<Bucket>,
    store: Store,
    audit: Audit,
    config: MaintenanceConfig,
    /// `ducklake_maintenance_rounds_total{outcome}`.
    rounds: IntCounterVec,
    draining: Arc<AtomicBool>,
}

impl Maintenance {
    pub fn new(
        engine: Arc<Engine>,
        bucket: Arc<Bucket>,
        store: Store,
        audit: Audit,
        config: MaintenanceConfig,
        rounds: IntCounterVec,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            engine,
            bucket,
            store,
            audit,
            config,
            rounds,
            draining,
        }
    }

    /// The lake's files and bytes, as the catalog and the object store see them.
    pub async fn usage(&self) -> Result<LakeUsage, Error> {
        let catalog = self.engine.catalog_files().await?;
        let (storage_files, storage_bytes) = self.bucket.usage().await?;
        Ok(LakeUsage {
            catalog,
            storage_files,
            storage_bytes,
        })
    }

    /// Runs `work` between two usage readings, records how it ended in the
    /// audit trail (`maintenance.<operation>`) and logs the change: the one
    /// measurement of the endpoints and of the periodic round.
    pub async fn measured<T, F>(
        &self,
        trail: Option<Trail>,
        operation: &'static str,
        dry_run: bool,
        work: F,
    ) -> Result<Report<T>, Error>
    where
        T: Serialize,
        F: std::future::Future<Output = Result<T, Error>>,
    {
        let started = std::time::Instant::now();
        let before = self.usage().await?;
        let changes = match work.await {
            Ok(changes) => changes,
            Err(err) => {
                if let Some(trail) = &trail {
                    trail.record(
                        trail
                            .event(format!("maintenance.{operation}"), Outcome::Failed)
                            .detail("dry_run", dry_run)
                            .detail("error", err.code()),
                    );
                }
                return Err(err);
            }
        };
        let after = if dry_run {
            before.clone()
        } else {
            self.usage().await?
        };
        if let Some(trail) = &trail {
            trail.record(
                trail
                    .event(format!("maintenance.{operation}"), Outcome::Ok)
                    .detail("dry_run", dry_run)
                    .detail("before", &before)
                    .detail("after", &after),
            );
        }
        tracing::info!(
            operation,
            dry_run,
            files_before = before.storage_files,
            files_after = after.storage_files,
            bytes_before = before.storage_bytes,
            bytes_after = after.storage_bytes,
            "maintenance"
        );
        Ok(Report {
            operation,
            dry_run,
            before,
            after,
            changes,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Starts the periodic rounds when configured. The task ends with the
    /// service (it holds it weakly) or when the replica drains.
    pub fn spawn_rounds(self: &Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        let every = Duration::from_secs(self.config.interval_secs.max(1));
        let weak = Arc::downgrade(self);
        tracing::info!(interval_secs = every.as_secs(), "periodic maintenance on");
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticker.tick().await;
                let Some(service) = weak.upgrade() else {
                    return;
                };
                if service.draining.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let outcome = match service.round().await {
                    Ok(true) => "ok",
                    Ok(false) => "locked",
                    Err(err) => {
                        tracing::warn!(error = %err, "maintenance round failed");
                        "error"
                    }
                };
                service.rounds.with_label_values(&[outcome]).inc();
            }
        });
    }

    /// One round (audited as `maintenance.round` by the service itself);
    /// `false` when another replica holds the lock.
    async fn round(&self) -> Result<bool, Error> {
        let Some(lock) = self.store.try_maintenance_lock().await? else {
            tracing::info!("maintenance skipped: another replica holds the lock");
            return Ok(false);
        };
        let config = &self.config;
        let engine = &self.engine;
        let trail = self.audit.trail(Actor::service());
        let work = async {
            if config.compact {
                engine.compact(None, false).await?;
            }
            let now = Utc::now();
            let ago = |secs: u64| now - chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64);
            if config.expire_older_than_secs > 0 {
                engine
                    .expire_snapshots(
                        ExpireWhat::OlderThan(ago(config.expire_older_than_secs)),
                        false,
                    )
                    .await?;
            }
            let older = ago(config.cleanup_older_than_secs);
            engine
                .cleanup_files(Some(older), Some(older), false)
                .await
                .map(drop)
        };
        self.measured(Some(trail), "round", false, work).await?;
        drop(lock);
        Ok(true)
    }
}
