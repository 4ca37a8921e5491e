//! Async query jobs: SQL submitted now, run in the background, its result
//! spooled to object storage and read back later in any format.
//!
//! A job runs on the replica that accepted it, with the submitter's role
//! (the sandbox applies), at most `jobs.max_concurrent` at once and
//! `jobs.max_queued` waiting; its record lives in `ducklake_backend.query_jobs`,
//! so every replica answers for every job. The result is spooled once as an
//! Arrow IPC stream of DuckDB's own batches, beside the lake's data path
//! (`<prefix>-jobs/` in the bucket, or `data_dir/jobs/`), and transcoded on
//! each read: the JSON type mapping stays exact because the DuckDB types are
//! stored with it. The running replica beats a heartbeat for its jobs and
//! reads cancel requests from the record, so a job can be cancelled from any
//! replica; jobs whose replica stopped beating are failed by any replica's
//! sweep, which also deletes expired jobs and their results.
//!
//! Knows no HTTP: [`crate::api::jobs`] is the thin layer over this.

mod record;
mod run;
pub mod spool;

pub use record::{Job, JobError};

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

use crate::{
    auth::Caller,
    bucket::SideStore,
    config::JobsConfig,
    engine::{progress::ProgressProbe, Engine, Params},
    error::Error,
    format::encode::Format,
    role::Role,
    store::{
        jobs::{JobFilter, JobRow, JobStatus, NewJob},
        Store,
    },
};

/// What a client submits.
#[derive(Debug, Clone)]
pub struct Submission {
    pub sql: String,
    pub params: Option<Box<serde_json::value::RawValue>>,
    pub format: Format,
    pub format_name: String,
    pub timeout_ms: Option<u64>,
    /// Records the job's writes and refusals, as the submitter's.
    pub audit: Option<crate::audit::Trail>,
}

/// A job this replica runs or will run.
struct LocalJob {
    cancel: watch::Sender<bool>,
    /// The key that submitted it (none with authentication off): checked at
    /// every heartbeat, so a revoked or expired key's jobs stop.
    key_id: Option<Uuid>,
    /// Set when the job was stopped because its key no longer works.
    key_gone: Arc<AtomicBool>,
    /// DuckDB's progress estimate of the job's query while it runs.
    probe: ProgressProbe,
    rows: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    store: Store,
    spool: SideStore,
    config: JobsConfig,
    /// This replica's name in job records (unique per start, so a restarted
    /// process never mistakes an old record for its own).
    instance: String,
    slots: Arc<Semaphore>,
    local: parking_lot::Mutex<HashMap<Uuid, LocalJob>>,
    /// Set on SIGTERM: queued jobs no longer start.
    draining: Arc<AtomicBool>,
}

impl Jobs {
    /// Starts the heartbeat and sweep loops; they end when this is dropped.
    /// With the local store (which only this process can open) every job
    /// left queued or running by a previous run is failed at once.
    pub async fn start(
        engine: Arc<Engine>,
        store: Store,
        spool: SideStore,
        config: JobsConfig,
        draining: Arc<AtomicBool>,
    ) -> Result<Self, crate::store::StoreError> {
        if let Store::Local(_) = store {
            let failed = store
                .fail_orphaned_jobs(
                    None,
                    "the service restarted while this job was queued or running; submit it again",
                    config.retention_secs,
                )
                .await?;
            if failed > 0 {
                tracing::warn!(failed, "jobs of the previous run marked failed");
            }
        }
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            instance: format!(
                "{}-{}",
                crate::instance::instance_id(),
                &Uuid::new_v4().simple().to_string()[..6]
            ),
            engine,
            store,
            spool,
            config,
            local: parking_lot::Mutex::new(HashMap::new()),
            draining,
        });
        spawn_loop(
            Arc::downgrade(&inner),
            inner.config.heartbeat_ms,
            |inner| async move { inner.heartbeat().await },
        );
        spawn_loop(
            Arc::downgrade(&inner),
            inner.config.sweep_interval_ms,
            |inner| async move { inner.sweep().await },
        );
        tracing::info!(instance = %inner.instance, spool = %inner.spool.display, "jobs ready");
        Ok(Self { inner })
    }

    /// Records the job and queues it here; 429 when this replica's queue is full.
    pub async fn submit(&self, caller: &Caller, submission: Submission) -> Result<Job, Error> {
        let inner = &self.inner;
        inner.engine.check_sql_text(&submission.sql)?;
        let params = Params::from_raw(submission.params.as_deref())?;
        if submission.timeout_ms == Some(0) {
            return Err(Error::InvalidParameters(
                "timeout_ms must be more than 0".into(),
            ));
        }
        let capacity = inner.config.max_concurrent + inner.config.max_queued;
        let id = Uuid::new_v4();
        let (cancel, cancelled) = watch::channel(false);
        let key_gone = Arc::new(AtomicBool::new(false));
        let local = LocalJob {
            cancel,
            key_id: caller.key_id,
            key_gone: Arc::clone(&key_gone),
            probe: ProgressProbe::default(),
            rows: Arc::default(),
            bytes: Arc::default(),
            running: Arc::default(),
        };
        let progress = run::Progress {
            probe: local.probe.clone(),
            rows: Arc::clone(&local.rows),
            bytes: Arc::clone(&local.bytes),
            running: Arc::clone(&local.running),
            cancelled,
            key_gone,
        };
        {
            let mut jobs = inner.local.lock();
            if jobs.len() >= capacity {
                return Err(Error::TooManyRequests {
                    message: format!(
                        "this replica already runs {} jobs and has {} waiting; retry later",
                        inner.config.max_concurrent, inner.config.max_queued
                    ),
                    retry_after_secs: 5,
                });
            }
            jobs.insert(id, local);
        }
        let record = NewJob {
            id,
            owner: caller.owner.clone(),
            key_prefix: caller.prefix.clone(),
            sql: submission.sql.clone(),
            params: submission.params.as_ref().map(|p| p.get().to_string()),
            format: submission.format_name.clone(),
            instance: inner.instance.clone(),
        };
        if let Err(err) = inner.store.insert_job(&record).await {
            inner.local.lock().remove(&id);
            return Err(err.into());
        }
        let queued = run::Queued {
            id,
            sql: submission.sql,
            params,
            role: caller.role,
            timeout_ms: submission.timeout_ms,
            audit: submission.audit.clone(),
        };
        // The record as submitted, read before the job can start.
        let job = match self.get(caller, id).await {
            Ok(job) => job,
            Err(err) => {
                // Never started here: the sweep fails it once its heartbeat is stale.
                inner.local.lock().remove(&id);
                return Err(err);
            }
        };
        tokio::spawn(Arc::clone(inner).drive(queued, progress));
        tracing::info!(job = %id, key = %caller.prefix, "job submitted");
        Ok(job)
    }

    /// The job, if the caller may see it.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Job, Error> {
        Ok(self.row(caller, id).await?.into())
    }

    /// A finished job's row, for reading its result.
    pub async fn row(&self, caller: &Caller, id: Uuid) -> Result<JobRow, Error> {
        match self.inner.store.job(id).await? {
            Some(row) if visible(caller, &row.owner) => Ok(row),
            _ => Err(Error::NotFound(format!("no job {id}"))),
        }
    }

    /// Jobs newest first; a non-admin caller sees only its owner's.
    pub async fn list(&self, caller: &Caller, mut filter: JobFilter) -> Result<Vec<Job>, Error> {
        if caller.role < Role::Admin {
            filter.owner = Some(caller.owner.clone());
        }
        let rows = self.inner.store.list_jobs(&filter).await?;
        Ok(rows.into_iter().map(Job::from).collect())
    }

    /// Cancels a queued or running job (on whichever replica runs it), or
    /// deletes a finished one and its result. Returns the job afterwards, or
    /// None when it was deleted.
    pub async fn cancel_or_delete(&self, caller: &Caller, id: Uuid) -> Result<Option<Job>, Error> {
        let inner = &self.inner;
        let row = self.row(caller, id).await?;
        if !row.status.is_live() {
            inner.delete(&row).await?;
            tracing::info!(job = %id, key = %caller.prefix, "job deleted");
            return Ok(None);
        }
        inner
            .store
            .request_cancel(id, inner.config.retention_secs)
            .await?;
        if let Some(local) = inner.local.lock().get(&id) {
            let _ = local.cancel.send(true);
        }
        tracing::info!(job = %id, key = %caller.prefix, "job cancellation requested");
        // The replica running it stops it within a heartbeat: wait a little
        // so the answer usually shows the end.
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(inner.config.heartbeat_ms * 3).min(Duration::from_secs(10));
        loop {
            let row = self.row(caller, id).await?;
            if !row.status.is_live() || tokio::time::Instant::now() >= deadline {
                return Ok(Some(row.into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The spool of results.
    pub fn spool(&self) -> &SideStore {
        &self.inner.spool
    }

    /// Jobs by status over all replicas, for `/metrics`.
    pub async fn counts(&self) -> Result<Vec<(&'static str, i64)>, Error> {
        let counts = self.inner.store.job_counts().await?;
        Ok(JobStatus::ALL
            .iter()
            .map(|status| {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (status.as_str(), n)
            })
            .collect())
    }
}

/// With authentication on, a non-admin key sees only its owner's jobs.
fn visible(caller: &Caller, owner: &str) -> bool {
    caller.role >= Role::Admin || caller.owner == owner
}

impl Inner {
    /// Records this replica's jobs as alive with their progress, and stops
    /// those whose cancellation another replica recorded.
    async fn heartbeat(&self) {
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
    async fn stop_jobs_of_lost_keys(&self) {
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
    async fn sweep(&self) {
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
    async fn delete(&self, row: &JobRow) -> Result<(), Error> {
        if let Some(location) = &row.result_location {
            spool::delete(&self.spool, location).await?;
        }
        self.store.delete_job(row.id).await?;
        Ok(())
    }
}

/// Runs `tick` every `every_ms` for as long as the jobs service lives.
fn spawn_loop<F, Fut>(inner: Weak<Inner>, every_ms: u64, tick: F)
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
