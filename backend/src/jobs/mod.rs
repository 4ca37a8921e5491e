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
mod replica;
mod run;
pub mod spool;

pub use record::{Job, JobError};

use std::{
    collections::HashMap,
    sync::{atomic::AtomicBool, Arc},
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
use replica::{spawn_loop, Inner, LocalJob};

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

pub struct Jobs {
    inner: Arc<Inner>,
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
