//! Lake maintenance as operations with a before/after report, and the
//! optional periodic round (config `maintenance.*`, off by default): merge
//! small files, expire old snapshots, delete what nobody needs any more.
//! Only one replica runs a round at a time: it must hold the maintenance
//! advisory lock in PostgreSQL ([`crate::store::Store::try_maintenance_lock`]).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde::Serialize;

use crate::{
    api::AppState,
    audit::{Outcome, Trail},
    engine::maintenance::{CatalogFiles, ExpireWhat},
    error::Error,
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

pub async fn usage(state: &AppState) -> Result<LakeUsage, Error> {
    let catalog = state.engine.catalog_files().await?;
    let (storage_files, storage_bytes) = state.storage.usage().await?;
    Ok(LakeUsage {
        catalog,
        storage_files,
        storage_bytes,
    })
}

/// Runs `operation` between two usage readings.
pub async fn measured<T, F>(
    state: &AppState,
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
    let before = usage(state).await?;
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
        usage(state).await?
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
/// application (it holds the state weakly).
pub fn spawn(state: &Arc<AppState>) {
    let config = &state.config.maintenance;
    if !config.enabled {
        return;
    }
    let every = Duration::from_secs(config.interval_secs.max(1));
    let weak = Arc::downgrade(state);
    tracing::info!(interval_secs = every.as_secs(), "periodic maintenance on");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            let Some(state) = weak.upgrade() else { return };
            if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let result = round(&state).await;
            let event = |outcome| {
                crate::audit::Event::new(
                    &crate::audit::Actor::service(),
                    "maintenance.round",
                    outcome,
                )
            };
            match &result {
                Ok(true) => state.audit.record(event(Outcome::Ok)),
                Ok(false) => {}
                Err(err) => state
                    .audit
                    .record(event(Outcome::Failed).detail("error", err.code())),
            }
            let outcome = match result {
                Ok(true) => "ok",
                Ok(false) => "locked",
                Err(err) => {
                    tracing::warn!(error = %err, "maintenance round failed");
                    "error"
                }
            };
            state
                .metrics
                .maintenance_rounds
                .with_label_values(&[outcome])
                .inc();
        }
    });
}

/// One round; `false` when another replica holds the lock.
async fn round(state: &AppState) -> Result<bool, Error> {
    let Some(lock) = state.store.try_maintenance_lock().await? else {
        tracing::info!("maintenance skipped: another replica holds the lock");
        return Ok(false);
    };
    let config = &state.config.maintenance;
    let engine = &state.engine;
    let before = usage(state).await?;
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
        .await?;
    let after = usage(state).await?;
    drop(lock);
    tracing::info!(
        files_before = before.storage_files,
        files_after = after.storage_files,
        bytes_before = before.storage_bytes,
        bytes_after = after.storage_bytes,
        "maintenance round done"
    );
    Ok(true)
}
