//! `/api/v1/jobs`: async query jobs (see [`crate::jobs`]). Any replica
//! answers for any job; a non-admin key sees only its owner's jobs.

use crate::api::{
    access::{Authorized, Reader},
    routes::{serve, Routes},
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    api::state::AppState,
    error::Error,
    format::encode::Format,
    jobs::{spool, Job, Submission},
    store::jobs::{JobFilter, JobStatus},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobBody {
    /// The SQL to run, as for `POST /api/v1/query`.
    pub sql: String,
    /// Positional (`[1, "a"]`) or named (`{"id": 1}`) parameters; numbers
    /// keep their exact text until DuckDB casts them.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Box<serde_json::value::RawValue>>,
    /// The result's default format: json (default), json_objects, ndjson,
    /// csv, tsv, arrow, parquet. Any format can be asked for when reading.
    #[serde(default)]
    pub format: Option<String>,
    /// Timeout, capped by the server's `jobs.timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Submit SQL to run in the background: 202 with the job; poll it, then read its result.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", operation_id = "submit_job", request_body = JobBody, responses(
    (status = 202, body = Job, description = "Queued; `Location` names the job"),
    (status = 406, description = "unsupported_format", body = crate::api::error::ErrorResponse),
    (status = 413, description = "payload_too_large (the SQL)", body = crate::api::error::ErrorResponse),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
    (status = 429, description = "too_many_requests: this replica's job queue is full (Retry-After)", body = crate::api::error::ErrorResponse),
))]
pub async fn submit(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<JobBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let format_name = body.format.unwrap_or_else(|| "json".into());
    let submission = Submission {
        format: Format::from_name(&format_name)?,
        format_name: format_name.trim().to_ascii_lowercase(),
        sql: body.sql,
        params: body.params,
        timeout_ms: body.timeout_ms,
        audit: crate::api::trail::trail(&req),
    };
    let job = state.jobs.submit(&caller, submission).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/jobs/{}", job.id)))
        .json(job))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs with this status: queued, running, succeeded, failed, cancelled.
    #[serde(default)]
    pub status: Option<String>,
    /// Jobs per page, 1–1000 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Jobs, newest first, a page at a time (a non-admin key sees its owner's only).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", operation_id = "list_jobs", params(ListParams), responses(
    (status = 200, body = JobPage),
    (status = 422, description = "invalid_parameters: unknown status, bad limit or cursor", body = crate::api::error::ErrorResponse),
))]
pub async fn list(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, Error> {
    let params = params.into_inner();
    let status = params
        .status
        .as_deref()
        .map(|name| {
            JobStatus::parse(name).ok_or_else(|| {
                let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                Error::InvalidParameters(format!(
                    "unknown status {name:?}; one of {}",
                    names.join(", ")
                ))
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::InvalidParameters(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = JobFilter {
        owner: None,
        status,
        before: params.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut jobs = state.jobs.list(&caller, filter).await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(encode_cursor)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(JobPage { jobs, next_cursor }))
}

fn encode_cursor(job: &Job) -> String {
    let text = format!("{}:{}", job.submitted_at.timestamp_micros(), job.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), Error> {
    let invalid = || Error::InvalidParameters("cursor is not one this API gave".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((micros.parse().map_err(|_| invalid())?, id.to_string()))
}

/// One job: status, progress (rows and bytes so far), timings, row count, error.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", operation_id = "get_job", params(("id" = Uuid, Path, description = "job id")), responses(
    (status = 200, body = Job),
    (status = 404, description = "not_found: no such job (or not the caller's)", body = crate::api::error::ErrorResponse),
))]
pub async fn get(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(state.jobs.get(&caller, *id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultParams {
    /// json, json_objects, ndjson, csv, tsv, arrow, parquet; else `Accept`,
    /// else the format the job was submitted with.
    #[serde(default)]
    pub format: Option<String>,
}

/// A succeeded job's result, in any format, as often as wanted until it expires.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/result", tag = "jobs", operation_id = "get_job_result", params(("id" = Uuid, Path, description = "job id"), ResultParams), responses(
    (status = 200, body = crate::api::answer::JsonResult, description = "The result in the negotiated format; X-Row-Count"),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
    (status = 406, description = "unsupported_format", body = crate::api::error::ErrorResponse),
    (status = 409, description = "result_unavailable: the job is queued, running, failed or cancelled", body = crate::api::error::ErrorResponse),
    (status = 503, description = "storage_unavailable", body = crate::api::error::ErrorResponse),
))]
pub async fn result(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    params: web::Query<ResultParams>,
) -> Result<HttpResponse, Error> {
    let row = state.jobs.row(&caller, *id).await?;
    if row.status != JobStatus::Succeeded {
        let why = match (&row.error_code, &row.error_message) {
            (Some(code), Some(message)) => format!(": {code}: {message}"),
            _ => String::new(),
        };
        return Err(Error::ResultUnavailable(format!(
            "job {} is {} and has no result{why}",
            row.id, row.status
        )));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or("").trim());
    let format = match (params.format.as_deref(), accept) {
        (Some(name), _) => Format::from_name(name)?,
        (None, None | Some("" | "*/*")) => Format::from_name(&row.format)?,
        (None, Some(accept)) => Format::from_accept(accept)?,
    };
    let body = spool::read(state.jobs.spool(), &row, format).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(format.content_type())
        .insert_header((
            crate::api::query::ROW_COUNT_HEADER,
            row.rows_produced.unwrap_or(0).to_string(),
        ))
        .insert_header((crate::api::query::TRUNCATED_HEADER, "false"));
    if let Some(name) = match format {
        Format::Parquet => Some("result.parquet"),
        Format::Arrow => Some("result.arrows"),
        _ => None,
    } {
        response.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ));
    }
    Ok(response.streaming(body))
}

/// Cancel a queued or running job (on whichever replica runs it), or delete
/// a finished one and its result.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs", operation_id = "cancel_job", params(("id" = Uuid, Path, description = "job id")), responses(
    (status = 200, body = Job, description = "The job was stopped: status cancelled"),
    (status = 202, body = Job, description = "Cancellation requested; the replica running it has not stopped it yet"),
    (status = 204, description = "The finished job and its result were deleted"),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
))]
pub async fn cancel(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    Ok(match state.jobs.cancel_or_delete(&caller, *id).await? {
        None => HttpResponse::NoContent().finish(),
        Some(job) if job.status.is_live() => HttpResponse::Accepted().json(job),
        Some(job) => HttpResponse::Ok().json(job),
    })
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, submit, list, get, result, cancel);
}
