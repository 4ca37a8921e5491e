//! The `query_jobs` table: rows in, rows out, for both stores. Knows nothing
//! of running jobs (that is [`crate::jobs`]). Every time is the database's
//! own `now()`, so replicas with skewed clocks agree on heartbeats and expiry.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql::{local_error, text, Arg, Cell};
use super::{blocking, pg_error, pool_error, Store, StoreError};

/// Where a job is in its life; the `status` column holds its name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Queued or running: not finished yet.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `ducklake_backend.query_jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: Uuid,
    pub owner: String,
    pub key_prefix: Option<String>,
    pub sql: String,
    /// The parameters as JSON text.
    pub params: Option<String>,
    pub format: String,
    pub status: JobStatus,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub rows_produced: Option<i64>,
    pub result_bytes: Option<i64>,
    pub result_location: Option<String>,
    /// The result's columns and DuckDB types as JSON text.
    pub result_columns: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The replica that runs (or ran) the job.
    pub instance: Option<String>,
    pub cancel_requested: bool,
    /// DuckDB's estimate while running, 0–10000.
    pub progress_basis_points: Option<i64>,
}

/// A new job, as submitted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub owner: String,
    pub key_prefix: String,
    pub sql: String,
    pub params: Option<String>,
    pub format: String,
    pub instance: String,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        rows: i64,
        bytes: i64,
        location: String,
        columns: String,
    },
    Failed {
        code: String,
        message: String,
    },
    Cancelled,
}

/// Which jobs a listing shows, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this owner's jobs.
    pub owner: Option<String>,
    pub status: Option<JobStatus>,
    /// Jobs submitted before this one (micros since the epoch, id).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

const TABLE: &str = "ducklake_backend.query_jobs";
/// `$1` as a job id (text in both stores, so one statement serves both).
const BY_ID: &str = "id = CAST(CAST($1 AS VARCHAR) AS UUID)";
const LIVE: &str = "status IN ('queued', 'running')";

impl Store {
    pub async fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {TABLE} (id, owner, key_prefix, sql_text, params, format, status, \
             instance, heartbeat_at, cancel_requested) VALUES (CAST(CAST($1 AS VARCHAR) AS UUID), \
             $2, $3, $4, $5, $6, 'queued', $7, now(), false)"
        );
        let args = vec![
            text(job.id.to_string()),
            text(&job.owner),
            text(&job.key_prefix),
            text(&job.sql),
            Arg::Text(job.params.clone()),
            text(&job.format),
            text(&job.instance),
        ];
        self.execute(sql, args).await.map(drop)
    }

    pub async fn job(&self, id: Uuid) -> Result<Option<JobRow>, StoreError> {
        let rows = self
            .jobs_select(
                |c| format!("SELECT {c} FROM {TABLE} WHERE {BY_ID}"),
                vec![text(id.to_string())],
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
        let micros = self.micros("submitted_at");
        let mut clauses = Vec::new();
        let mut args = Vec::new();
        let mut arg = |value: Arg| {
            args.push(value);
            format!("${}", args.len())
        };
        if let Some(owner) = &filter.owner {
            clauses.push(format!("owner = {}", arg(text(owner))));
        }
        if let Some(status) = &filter.status {
            clauses.push(format!("status = {}", arg(text(status.as_str()))));
        }
        if let Some((at, id)) = &filter.before {
            let at_a = arg(Arg::Int(Some(*at)));
            let at_b = arg(Arg::Int(Some(*at)));
            let id = arg(text(id));
            clauses.push(format!(
                "({micros} < {at_a} OR ({micros} = {at_b} AND CAST(id AS VARCHAR) < {id}))"
            ));
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = filter.limit;
        self.jobs_select(
            |c| {
                format!(
                    "SELECT {c} FROM {TABLE} {filter_sql} \
                     ORDER BY submitted_at DESC, CAST(id AS VARCHAR) DESC LIMIT {limit}"
                )
            },
            args,
        )
        .await
    }

    /// queued → running; false when the job is no longer queued (cancelled).
    pub async fn start_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {TABLE} SET status = 'running', started_at = now(), heartbeat_at = now() \
             WHERE {BY_ID} AND status = 'queued' AND NOT coalesce(cancel_requested, false)"
        );
        Ok(self.execute(sql, vec![text(id.to_string())]).await? == 1)
    }

    /// Records how a queued or running job ended; false when it had already
    /// ended (cancelled by another replica, or failed as stale).
    pub async fn finish_job(
        &self,
        id: Uuid,
        outcome: Outcome,
        retention_secs: u64,
    ) -> Result<bool, StoreError> {
        let expires = self.now_plus(retention_secs as i64 * 1000);
        let mut args = vec![text(id.to_string())];
        let set = match outcome {
            Outcome::Succeeded {
                rows,
                bytes,
                location,
                columns,
            } => {
                args.extend([
                    Arg::Int(Some(rows)),
                    Arg::Int(Some(bytes)),
                    text(location),
                    text(columns),
                ]);
                "status = 'succeeded', rows_produced = $2, result_bytes = $3, \
                 result_location = $4, result_columns = $5"
            }
            Outcome::Failed { code, message } => {
                args.extend([text(code), text(message)]);
                "status = 'failed', error_code = $2, error_message = $3"
            }
            Outcome::Cancelled => {
                "status = 'cancelled', error_code = 'cancelled', \
                 error_message = 'the job was cancelled'"
            }
        };
        let sql = format!(
            "UPDATE {TABLE} SET {set}, finished_at = now(), expires_at = {expires} \
             WHERE {BY_ID} AND {LIVE}"
        );
        Ok(self.execute(sql, args).await? == 1)
    }

    /// Asks the job's replica to stop it; a job still queued is cancelled
    /// here and now. Returns the row afterwards.
    pub async fn request_cancel(
        &self,
        id: Uuid,
        retention_secs: u64,
    ) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("UPDATE {TABLE} SET cancel_requested = true WHERE {BY_ID} AND {LIVE}");
        self.execute(sql, vec![text(id.to_string())]).await?;
        let sql = format!(
            "UPDATE {TABLE} SET status = 'cancelled', error_code = 'cancelled', \
             error_message = 'the job was cancelled before it started', finished_at = now(), \
             expires_at = {} WHERE {BY_ID} AND status = 'queued'",
            self.now_plus(retention_secs as i64 * 1000)
        );
        self.execute(sql, vec![text(id.to_string())]).await?;
        self.job(id).await
    }

    /// The replica's heartbeat: its live jobs `ids` are alive, the running
    /// ones with their progress. Returns the ids of those whose
    /// cancellation was requested.
    pub async fn heartbeat_jobs(
        &self,
        ids: &[Uuid],
        progress: &[(Uuid, i64, i64, Option<i64>)],
    ) -> Result<Vec<Uuid>, StoreError> {
        for (id, rows, bytes, basis_points) in progress {
            let sql = format!(
                "UPDATE {TABLE} SET rows_produced = $2, result_bytes = $3, \
                 progress_basis_points = $4 WHERE {BY_ID} AND status = 'running'"
            );
            let args = vec![
                text(id.to_string()),
                Arg::Int(Some(*rows)),
                Arg::Int(Some(*bytes)),
                Arg::Int(*basis_points),
            ];
            self.execute(sql, args).await?;
        }
        // Ids are our own UUIDs, so they can be spelled out as literals.
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .jobs_select(
                |c| {
                    format!(
                        "UPDATE {TABLE} SET heartbeat_at = now() \
                         WHERE CAST(id AS VARCHAR) IN ({list}) AND {LIVE} RETURNING {c}"
                    )
                },
                Vec::new(),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.cancel_requested)
            .map(|r| r.id)
            .collect())
    }

    /// Fails live jobs whose replica has not beaten for `stale_ms` (or, with
    /// `stale_ms` None, every live job: the local store at start-up, which no
    /// other process can hold). Returns how many.
    pub async fn fail_orphaned_jobs(
        &self,
        stale_ms: Option<u64>,
        message: &str,
        retention_secs: u64,
    ) -> Result<u64, StoreError> {
        let stale = match stale_ms {
            Some(ms) => format!("AND heartbeat_at < {}", self.now_plus(-(ms as i64))),
            None => String::new(),
        };
        let sql = format!(
            "UPDATE {TABLE} SET status = 'failed', error_code = 'replica_lost', \
             error_message = $1, finished_at = now(), expires_at = {} WHERE {LIVE} {stale}",
            self.now_plus(retention_secs as i64 * 1000)
        );
        self.execute(sql, vec![text(message)]).await
    }

    /// Finished jobs past their retention.
    pub async fn expired_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.jobs_select(
            |c| format!("SELECT {c} FROM {TABLE} WHERE expires_at < now() AND NOT {LIVE}"),
            Vec::new(),
        )
        .await
    }

    /// Deletes a finished job's row; false when there is none (or it is live).
    pub async fn delete_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {TABLE} WHERE {BY_ID} AND NOT {LIVE}");
        Ok(self.execute(sql, vec![text(id.to_string())]).await? == 1)
    }

    /// Jobs by status, over all replicas.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!("SELECT status, count(*) FROM {TABLE} GROUP BY status");
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                let rows = client.query(&sql, &[]).await.map_err(pg_error)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let conn = conn.lock();
                    let mut stmt = conn.prepare(&sql).map_err(local_error)?;
                    let rows = stmt
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(local_error)?;
                    rows.collect::<duckdb::Result<Vec<_>>>()
                        .map_err(local_error)
                })
                .await
            }
        }
    }
}

impl Store {
    fn job_columns(&self) -> String {
        let t = |c: &str| self.micros(c);
        format!(
            "CAST(id AS VARCHAR), owner, key_prefix, sql_text, params, format, status, {}, {}, \
             {}, {}, {}, rows_produced, result_bytes, result_location, result_columns, \
             error_code, error_message, instance, coalesce(cancel_requested, false), \
             progress_basis_points",
            t("submitted_at"),
            t("started_at"),
            t("finished_at"),
            t("expires_at"),
            t("heartbeat_at"),
        )
    }

    /// Runs a statement returning job rows; `sql` gets this store's column list.
    async fn jobs_select(
        &self,
        sql: impl FnOnce(&str) -> String,
        args: Vec<Arg>,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = sql(&self.job_columns());
        self.select(sql, args, job_row).await
    }
}

fn job_row(cell: &dyn Fn(usize) -> Cell) -> Result<JobRow, StoreError> {
    let text = |i| cell(i).text;
    let time = |i| cell(i).int.and_then(DateTime::from_timestamp_micros);
    let id = text(0).unwrap_or_default();
    Ok(JobRow {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Failed(format!("job id {id}: {e}")))?,
        owner: text(1).unwrap_or_default(),
        key_prefix: text(2),
        sql: text(3).unwrap_or_default(),
        params: text(4),
        format: text(5).unwrap_or_else(|| "json".into()),
        status: {
            let status = text(6).unwrap_or_default();
            JobStatus::parse(&status)
                .ok_or_else(|| StoreError::Failed(format!("job {id}: unknown status {status:?}")))?
        },
        submitted_at: time(7).unwrap_or_default(),
        started_at: time(8),
        finished_at: time(9),
        expires_at: time(10),
        heartbeat_at: time(11),
        rows_produced: cell(12).int,
        result_bytes: cell(13).int,
        result_location: text(14),
        result_columns: text(15),
        error_code: text(16),
        error_message: text(17),
        instance: text(18),
        cancel_requested: cell(19).flag.unwrap_or(false),
        progress_basis_points: cell(20).int,
    })
}
