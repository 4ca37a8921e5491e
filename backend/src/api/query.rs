//! `POST /api/v1/query` and `GET /api/v1/query?sql=...`: run SQL on the lake
//! and stream its rows in the format the client asked for.
//!
//! The format comes from the `format` field (body or query string), else the
//! `Accept` header, else JSON. See [`crate::engine::stream`] for how results
//! stream and how a late error shows.

use crate::api::{
    access::{Authorized, Reader},
    routes::{serve, Routes},
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::{
    api::state::AppState,
    auth::Caller,
    engine::{
        stream::{TransactionMode, Versions},
        timetravel::Pin,
        Params, QueryRequest,
    },
    error::Error,
    format::encode::Format,
    meter::{Metered, QueryMeter},
};

pub const TRUNCATED_HEADER: &str = "x-result-truncated";
pub const ROW_COUNT_HEADER: &str = "x-row-count";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The SQL to run; several statements separated by `;` run in order and
    /// the last one's result is returned.
    pub sql: String,
    /// Positional (`[1, "a"]` for `?`/`$1`) or named (`{"id": 1}` for `$id`).
    /// Numbers keep their exact text until DuckDB casts them.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Box<serde_json::value::RawValue>>,
    /// Per-request timeout, capped by the server's `query.max_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Row limit, capped by the server's `query.max_rows`.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Result format: json (default), json_objects, ndjson, csv, tsv, arrow, parquet.
    #[serde(default)]
    pub format: Option<String>,
    /// Run all statements in one transaction: all or nothing.
    #[serde(default)]
    pub transaction: bool,
    /// Read the lake as of this snapshot id (DuckLake's `AT (VERSION => n)`
    /// on every table without an AT of its own; SELECT statements only).
    #[serde(default)]
    pub snapshot: Option<i64>,
    /// Read the lake as of this time (RFC 3339; `AT (TIMESTAMP => t)`).
    #[serde(default)]
    pub as_of: Option<String>,
}

impl QueryBody {
    fn into_request(self, caller: &Caller, req: &HttpRequest) -> Result<QueryRequest, Error> {
        let pin = match (self.snapshot, self.as_of) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidParameters(
                    "give snapshot or as_of, not both".into(),
                ))
            }
            (Some(version), None) => Some(Pin::Version(version)),
            (None, Some(time)) => Some(Pin::Time(time)),
            (None, None) => None,
        };
        let if_none_match = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let params = Params::from_raw(self.params.as_deref())?;
        if self.timeout_ms == Some(0) {
            return Err(Error::InvalidParameters(
                "timeout_ms must be more than 0".into(),
            ));
        }
        Ok(QueryRequest {
            sql: self.sql,
            params,
            timeout_ms: self.timeout_ms,
            max_rows: self.max_rows,
            role: caller.role,
            pin,
            if_none_match,
            progress: None,
            audit: crate::api::trail::trail(req),
            timetz_as_text: false,
            session: None,
        })
    }
}

pub const STREAMED_HEADER: &str = "x-result-streamed";

/// Run SQL: the result streams in the format asked for.
#[utoipa::path(post, path = "/api/v1/query", tag = "query", request_body = QueryBody, responses(crate::api::answer::QueryResponses))]
pub async fn query(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<QueryBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let format = negotiate(body.format.as_deref(), &req)?;
    let mode = if body.transaction {
        TransactionMode::Single
    } else {
        TransactionMode::AutoCommit
    };
    let request = body.into_request(&caller, &req)?;
    run(&state, &caller, request, format, mode).await
}

/// The query string of `GET /api/v1/query`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueryParams {
    pub sql: String,
    /// Parameters as JSON text: `[1, "a"]` or `{"id": 1}`.
    #[serde(default)]
    pub params: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_rows: Option<u64>,
    #[serde(default)]
    pub format: Option<String>,
    /// As in the POST body.
    #[serde(default)]
    pub snapshot: Option<i64>,
    #[serde(default)]
    pub as_of: Option<String>,
}

/// Read-only ad-hoc queries: the statements run in a read-only transaction,
/// so any write fails.
#[utoipa::path(
    get,
    path = "/api/v1/query",
    tag = "query",
    params(QueryParams),
    responses(crate::api::answer::QueryResponses)
)]
pub async fn query_get(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<QueryParams>,
) -> Result<HttpResponse, Error> {
    let form = params.into_inner();
    let format = negotiate(form.format.as_deref(), &req)?;
    let params = match form.params {
        None => None,
        Some(text) => Some(
            serde_json::value::RawValue::from_string(text)
                .map_err(|e| Error::InvalidParameters(format!("params is not valid JSON: {e}")))?,
        ),
    };
    let body = QueryBody {
        sql: form.sql,
        params,
        timeout_ms: form.timeout_ms,
        max_rows: form.max_rows,
        format: None,
        transaction: false,
        snapshot: form.snapshot,
        as_of: form.as_of,
    };
    run(
        &state,
        &caller,
        body.into_request(&caller, &req)?,
        format,
        TransactionMode::ReadOnly,
    )
    .await
}

/// `format` wins over `Accept`.
pub(crate) fn negotiate(format: Option<&str>, req: &HttpRequest) -> Result<Format, Error> {
    match format {
        Some(name) => Format::from_name(name),
        None => match req.headers().get(header::ACCEPT) {
            None => Ok(Format::Json),
            Some(value) => Format::from_accept(value.to_str().unwrap_or("")),
        },
    }
}

pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    request: QueryRequest,
    format: Format,
    mode: TransactionMode,
) -> Result<HttpResponse, Error> {
    let meter = QueryMeter::start(state, &request.sql, &caller.prefix);
    let stream = match state.engine.stream(request, format, mode).await {
        Ok(stream) => stream,
        Err(err) => {
            meter.finish(err.code(), 0, 0);
            return Err(err);
        }
    };
    let versions = stream.versions.clone();
    if versions.not_modified {
        // Reading the (empty) body to its end disarms its interrupt guard.
        stream.body.collect().await?;
        meter.finish("not_modified", 0, 0);
        let mut response = HttpResponse::NotModified();
        version_headers(&mut response, &versions);
        return Ok(response.finish());
    }
    let mut response = HttpResponse::Ok();
    response.content_type(format.content_type());
    version_headers(&mut response, &versions);
    if format == Format::Parquet || format == Format::Arrow {
        let name = if format == Format::Parquet {
            "result.parquet"
        } else {
            "result.arrows"
        };
        response.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ));
    }
    let Some(summary) = stream.complete else {
        tracing::info!("query streaming");
        return Ok(response
            .insert_header((STREAMED_HEADER, "true"))
            .streaming(Metered::new(stream.body, meter)));
    };
    tracing::info!(
        rows = summary.row_count,
        truncated = summary.truncated,
        elapsed_ms = summary.elapsed_ms,
        "query finished"
    );
    response
        .insert_header((ROW_COUNT_HEADER, summary.row_count.to_string()))
        .insert_header((TRUNCATED_HEADER, summary.truncated.to_string()));
    match stream.held_length {
        // Held until its end (max_rows from the client): the body streams
        // from where it waited, with its exact length.
        Some(length) => Ok(response.body(actix_web::body::SizedStream::new(
            length,
            Metered::new(stream.body, meter),
        ))),
        None => {
            let body = stream.body.collect().await?;
            meter.finish("ok", summary.row_count, body.len() as u64);
            Ok(response.body(body))
        }
    }
}

/// `X-DuckLake-Snapshot`, and for reads `ETag` with `Cache-Control:
/// no-cache` (caches keep the result but ask again, and get 304 while the
/// tables it read are unchanged).
fn version_headers(response: &mut actix_web::HttpResponseBuilder, versions: &Versions) {
    if let Some(snapshot) = versions.snapshot {
        response.insert_header((crate::api::answer::SNAPSHOT_HEADER, snapshot.to_string()));
    }
    if let Some(etag) = &versions.etag {
        response
            .insert_header((header::ETAG, etag.as_str()))
            .insert_header((header::CACHE_CONTROL, "private, no-cache"));
    }
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, query, query_get);
}
