//! A job as the API shows it, made from its record.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::store::jobs::{JobRow, JobStatus};

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub status: JobStatus,
    /// The submitting key's owner (`anonymous` with authentication off).
    pub owner: String,
    pub sql: String,
    pub params: Option<serde_json::Value>,
    /// The result's format when `GET .../result` names none.
    pub format: String,
    pub submitted_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the job and its result will be deleted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Running time so far, or in all once finished.
    pub elapsed_ms: Option<f64>,
    /// Progress: rows produced so far while running (updated every
    /// heartbeat); the result's rows once succeeded.
    pub row_count: Option<i64>,
    /// Bytes spooled so far while running; the spooled result's size once succeeded.
    pub result_bytes: Option<i64>,
    /// DuckDB's own estimate (0–100) of how far the running query is, from
    /// the last heartbeat; absent before DuckDB has one (it starts after
    /// about half a second, and not every operator reports it); 100 once
    /// succeeded.
    pub progress_percent: Option<f64>,
    pub error: Option<JobError>,
    pub cancel_requested: bool,
    /// The replica that runs or ran it.
    pub replica: Option<String>,
    /// Where to read the result, once succeeded.
    pub result_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobError {
    /// A stable code: an API error code (`sql_error`, `query_timeout` ...),
    /// `result_too_large`, `replica_lost` or `cancelled`.
    pub code: String,
    pub message: String,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        let elapsed_ms = row.started_at.map(|start| {
            let end = row.finished_at.unwrap_or_else(Utc::now);
            (end - start).num_microseconds().unwrap_or(0) as f64 / 1000.0
        });
        let result_url =
            (row.status == JobStatus::Succeeded).then(|| format!("/api/v1/jobs/{}/result", row.id));
        let progress_percent = if row.status == JobStatus::Succeeded {
            Some(100.0)
        } else {
            row.progress_basis_points.map(|bp| bp as f64 / 100.0)
        };
        Self {
            id: row.id,
            params: row.params.and_then(|p| serde_json::from_str(&p).ok()),
            error: row.error_code.map(|code| JobError {
                code,
                message: row.error_message.unwrap_or_default(),
            }),
            status: row.status,
            owner: row.owner,
            sql: row.sql,
            format: row.format,
            submitted_at: row.submitted_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            expires_at: row.expires_at,
            elapsed_ms,
            row_count: row.rows_produced,
            result_bytes: row.result_bytes,
            progress_percent,
            cancel_requested: row.cancel_requested,
            replica: row.instance,
            result_url,
        }
    }
}
