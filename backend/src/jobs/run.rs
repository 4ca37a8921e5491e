//! Running one job: wait for a run slot, stream the SQL's result from the
//! engine as Arrow IPC into the spool, record how it ended. A cancel request
//! (local, or read from the record by the heartbeat) drops the engine's
//! stream, which interrupts DuckDB, and aborts the upload.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use super::{replica::Inner, spool};
use crate::{
    engine::{
        progress::ProgressProbe,
        stream::{Limits, QueryStream, TransactionMode},
        Params, QueryRequest,
    },
    error::Error,
    format::encode::Format,
    role::Role,
    store::jobs::Outcome,
};

/// A job waiting for a run slot.
pub(super) struct Queued {
    pub id: Uuid,
    pub sql: String,
    pub params: Params,
    pub role: Role,
    pub timeout_ms: Option<u64>,
    /// Records the job's writes and refusals.
    pub audit: Option<crate::audit::Trail>,
}

/// Shared with the heartbeat: what the job has produced, and whether to stop.
pub(super) struct Progress {
    pub probe: ProgressProbe,
    pub rows: Arc<AtomicU64>,
    pub bytes: Arc<AtomicU64>,
    pub running: Arc<AtomicBool>,
    pub cancelled: watch::Receiver<bool>,
    /// Set when the job is stopped because its key was revoked or expired.
    pub key_gone: Arc<AtomicBool>,
}

/// Resolves once cancellation is requested (never if it cannot be anymore).
async fn cancel_requested(cancelled: &mut watch::Receiver<bool>) {
    if cancelled.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn failed(err: &Error) -> Outcome {
    Outcome::Failed {
        code: err.code().into(),
        message: err.to_string(),
    }
}

impl Inner {
    /// The whole life of a job on this replica, from queued to recorded.
    pub(super) async fn drive(self: Arc<Self>, job: Queued, progress: Progress) {
        let id = job.id;
        let key_gone = Arc::clone(&progress.key_gone);
        let mut outcome = self.run(job, progress).await;
        if matches!(outcome, Outcome::Cancelled) && key_gone.load(Ordering::SeqCst) {
            outcome = failed(&Error::Unauthorized(
                "the API key that submitted this job was revoked or has expired".into(),
            ));
        }
        let label = match &outcome {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled => "cancelled",
        };
        let recorded = self
            .store
            .finish_job(id, outcome.clone(), self.config.retention_secs)
            .await;
        match recorded {
            Ok(true) => tracing::info!(job = %id, outcome = label, "job finished"),
            Ok(false) => {
                // It was ended elsewhere meanwhile (cancelled while queued,
                // or failed by a sweep): its result has no record to belong to.
                if let Outcome::Succeeded { location, .. } = &outcome {
                    let _ = spool::delete(&self.spool, location).await;
                }
            }
            Err(err) => tracing::error!(job = %id, error = %err, "could not record a job's end"),
        }
        self.local.lock().remove(&id);
    }

    async fn run(&self, job: Queued, mut progress: Progress) -> Outcome {
        let permit = tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => permit,
            _ = cancel_requested(&mut progress.cancelled) => return Outcome::Cancelled,
        };
        let Ok(_permit) = permit else {
            return Outcome::Cancelled;
        };
        if self.draining.load(Ordering::SeqCst) {
            return failed(&Error::ShuttingDown(
                "the replica shut down before this job started; submit it again".into(),
            ));
        }
        match self.store.start_job(job.id).await {
            Ok(true) => {}
            // Cancelled while queued: already recorded.
            Ok(false) => return Outcome::Cancelled,
            Err(err) => return failed(&err.into()),
        }
        progress.running.store(true, Ordering::Relaxed);
        tracing::info!(job = %job.id, "job started");
        self.execute(&job, &mut progress).await
    }

    async fn execute(&self, job: &Queued, progress: &mut Progress) -> Outcome {
        let started = tokio::select! {
            started = self.start_query(job, &progress.probe) => started,
            _ = cancel_requested(&mut progress.cancelled) => return Outcome::Cancelled,
        };
        let stream = match started {
            Ok(stream) => stream,
            Err(err) => return failed(&err),
        };
        let columns = spool::columns_json(&stream.columns, &stream.types);
        let location = spool::location(&self.spool, job.id);
        let mut upload = match spool::Upload::start(&self.spool, &location).await {
            Ok(upload) => upload,
            Err(err) => return failed(&err),
        };
        let mut body = stream.body;
        let max = self.config.max_result_bytes;
        let mut bytes = 0u64;
        let ended = loop {
            let next = tokio::select! {
                next = body.next() => next,
                _ = cancel_requested(&mut progress.cancelled) => break Some(Outcome::Cancelled),
            };
            match next {
                Some(Ok(chunk)) => {
                    bytes += chunk.len() as u64;
                    progress.rows.store(body.rows(), Ordering::Relaxed);
                    progress.bytes.store(bytes, Ordering::Relaxed);
                    if bytes > max {
                        break Some(Outcome::Failed {
                            code: "result_too_large".into(),
                            message: format!(
                                "the result is larger than the limit of {max} bytes \
                                 (jobs.max_result_bytes); select fewer rows or columns"
                            ),
                        });
                    }
                    if let Err(err) = upload.write(chunk).await {
                        break Some(failed(&err));
                    }
                }
                Some(Err(err)) => break Some(failed(&err)),
                None => break None,
            }
        };
        let rows = body.rows();
        // Dropping the body interrupts DuckDB if it still runs.
        drop(body);
        match ended {
            Some(outcome) => {
                upload.abort().await;
                outcome
            }
            None => match upload.finish().await {
                Ok(()) => Outcome::Succeeded {
                    rows: rows as i64,
                    bytes: bytes as i64,
                    location,
                    columns,
                },
                Err(err) => failed(&err),
            },
        }
    }

    /// Starts the query, waiting while every connection of the pool is busy
    /// (a job waits its turn rather than failing with 429).
    async fn start_query(&self, job: &Queued, probe: &ProgressProbe) -> Result<QueryStream, Error> {
        let timeout_ms = job
            .timeout_ms
            .unwrap_or(self.config.timeout_ms)
            .min(self.config.timeout_ms);
        let request = QueryRequest {
            sql: job.sql.clone(),
            params: job.params.clone(),
            timeout_ms: Some(timeout_ms),
            max_rows: None,
            role: job.role,
            pin: None,
            progress: Some(probe.clone()),
            if_none_match: None,
            audit: job.audit.clone(),
            timetz_as_text: true,
            session: None,
            fresh: false,
            deferred: false,
        };
        let limits = Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_rows: u64::MAX,
            max_bytes: u64::MAX,
        };
        loop {
            let attempt = self
                .engine
                .stream_with(
                    request.clone(),
                    Format::Arrow,
                    TransactionMode::AutoCommit,
                    limits,
                )
                .await;
            match attempt {
                Err(Error::TooManyRequests { .. }) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }
}
