//! This replica's jobs: the state the service and the runs share, the
//! heartbeat that records them alive (and reads cancellations another
//! replica recorded), and the sweep of stale and expired jobs.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

use super::spool;
use crate::{
    bucket::SideStore,
    config::JobsConfig,
    engine::{progress::ProgressProbe, Engine},
    error::Error,
    store::{jobs::JobRow, Store},
};

/// A job this replica runs or will run.
pub(super) struct LocalJob {
    pub(super) cancel: watch::Sender<bool>,
    /// The key that submitted it (none with authentication off): checked at
    /// every heartbeat, so a revoked or expired key's jobs stop.
    pub(super) key_id: Option<Uuid>,
    /// Set when the job was stopped because its key no longer works.
    pub(super) key_gone: Arc<AtomicBool>,
    /// DuckDB's progress estimate of the job's query while it runs.
    pub(super) probe: ProgressProbe,
    pub(super) rows: Arc<AtomicU64>,
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) running: Arc<AtomicBool>,
}

pub(super) struct Inner {
    pub(super) engine: Arc<Engine>,
    pub(super) store: Store,
    pub(super) spool: SideStore,
    pub(super) config: JobsConfig,
    /// This replica's name in job records (unique per start, so a restarted
    /// process never mistakes an old record for its own).
    pub(super) instance: String,
    pub(super) slots: Arc<Semaphore>,
    pub(super) local: parking_lot::Mutex<HashMap<Uuid, LocalJob>>,
    /// Set on SIGTERM: queued jobs no longer start.
    pub(super) draining: Arc<AtomicBool>,
}

impl Inner {
    /// Records this replica's jobs as alive with their progress, and stops
    /// those whose cancellation another replica recorded.
    pub(super) async fn heartbeat(&self) {
        type Beat = (Uuid, i64, i64, Option<i64>);
        let (ids, progress): (Vec<Uuid>, Vec<Beat>) = {
            let local = self.local.lock();
            let ids = local.keys().copied().collect();
            let progress = local
                .iter()
                .filter(|(_, j)| j.running.load(Ordering::Relaxed))
                .map(|(id, j)| {
                    let rows = j.rows.load(Ordering::Relaxed) as i64;
                    let basis_points = j.probe.percent().map(|p| (p * 100.0).round() as i64);
                    (
                        *id,
                        rows,
                        j.bytes.load(Ordering::Relaxed) as i64,
                        basis_points,
                    )
                })
                .collect();
            (ids, progress)
        };
        if ids.is_empty() {
            return;
        }
        self.stop_jobs_of_lost_keys().await;
        match self.store.heartbeat_jobs(&ids, &progress).await {
            Ok(cancelled) => {
                let local = self.local.lock();
                for id in cancelled {
                    if let Some(job) = local.get(&id) {
                        let _ = job.cancel.send(true);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not record the jobs' heartbeat"),
        }
    }

    /// Stops this replica's queued and running jobs whose key was revoked or
    /// has expired since they were submitted.
    pub(super) async fn stop_jobs_of_lost_keys(&self) {
        let keys: std::collections::BTreeSet<Uuid> = self
            .local
            .lock()
            .values()
            .filter_map(|job| job.key_id)
            .collect();
        for key in keys {
            let valid = match self.store.key_is_valid(key).await {
                Ok(valid) => valid,
                Err(err) => {
                    // Unknown for now: checked again at the next heartbeat.
                    tracing::warn!(error = %err, "could not check a job's key");
                    continue;
                }
            };
            if valid {
                continue;
            }
            for (id, job) in self.local.lock().iter() {
                if job.key_id == Some(key) && !job.key_gone.swap(true, Ordering::SeqCst) {
                    tracing::warn!(job = %id, "the job's key was revoked or expired: stopping it");
                    let _ = job.cancel.send(true);
                }
            }
        }
    }

    /// Fails jobs whose replica stopped beating; deletes expired jobs and
    /// their results. Any replica may do it; doing it twice is harmless.
    pub(super) async fn sweep(&self) {
        let stale = self.config.stale_after_ms;
        let message = format!(
            "the replica running this job stopped (no heartbeat for {} s); submit it again",
            stale / 1000
        );
        match self
            .store
            .fail_orphaned_jobs(Some(stale), &message, self.config.retention_secs)
            .await
        {
            Ok(0) => {}
            Ok(failed) => tracing::warn!(failed, "jobs of a stopped replica marked failed"),
            Err(err) => tracing::warn!(error = %err, "could not sweep stale jobs"),
        }
        match self.store.expired_jobs().await {
            Ok(expired) => {
                for row in expired {
                    if let Err(err) = self.delete(&row).await {
                        tracing::warn!(job = %row.id, error = %err, "could not delete an expired job");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not list expired jobs"),
        }
    }

    /// Deletes a finished job's result, then its record.
    pub(super) async fn delete(&self, row: &JobRow) -> Result<(), Error> {
        if let Some(location) = &row.result_location {
            spool::delete(&self.spool, location).await?;
        }
        self.store.delete_job(row.id).await?;
        Ok(())
    }
}

/// Runs `tick` every `every_ms` for as long as the jobs service lives.
pub(super) fn spawn_loop<F, Fut>(inner: Weak<Inner>, every_ms: u64, tick: F)
where
    F: Fn(Arc<Inner>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(every_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(inner) = inner.upgrade() else {
                break;
            };
            tick(inner).await;
        }
    });
}
