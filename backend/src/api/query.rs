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
    cache::CacheStatus,
    engine::{
        stream::{QueryStream, TransactionMode, Versions},
        timetravel::{self, Pin},
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
            fresh: asks_for_fresh(req),
            deferred: false,
        })
    }
}

/// The client's `Cache-Control: no-cache` (or `no-store`): the answer is
/// read from the lake itself, neither from the result cache nor from a
/// hot table copy (it may still be kept for the next request).
fn asks_for_fresh(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::CACHE_CONTROL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| {
            let directive = directive.trim();
            directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        })
}

pub const STREAMED_HEADER: &str = "x-result-streamed";
/// What the result cache did: `hit`, `miss` or `bypass`.
pub const CACHE_HEADER: &str = "x-cache";

/// How the GET form reads like a file: `HEAD` for the length, `Range` for
/// a part (served from a kept answer).
#[derive(Debug, Default)]
pub(crate) struct FileRead {
    /// The GET form (or its HEAD): ranges are served.
    pub form: bool,
    /// A `HEAD` request: the headers and length, no body.
    pub head: bool,
    /// The `Range` header, when its `If-Range` (if any) still matches.
    pub range: Option<String>,
}

impl FileRead {
    fn of(req: &HttpRequest) -> Self {
        let text = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            form: true,
            head: req.method() == actix_web::http::Method::HEAD,
            range: text(header::RANGE),
        }
        .if_range(text(header::IF_RANGE))
    }

    /// Keeps the range only while `If-Range` names the answer's current
    /// ETag (checked once the answer is known; see [`FileRead::part`]).
    fn if_range(mut self, if_range: Option<String>) -> Self {
        if let (Some(range), Some(tag)) = (&self.range, if_range) {
            self.range = Some(format!("{tag}\n{range}"));
        }
        self
    }

    /// The byte range to answer of a body of `length` bytes with `etag`:
    /// `None` for the whole body (no Range, a stale If-Range, several
    /// ranges, or a header that does not parse, which HTTP says to
    /// ignore), `Err` for a range past the end (416).
    fn part(&self, length: u64, etag: Option<&str>) -> Result<Option<(u64, u64)>, ()> {
        let Some(range) = &self.range else {
            return Ok(None);
        };
        let range = match range.split_once('\n') {
            // Compared strongly: a weak validator never matches.
            Some((tag, range)) if Some(tag.trim()) == etag && !tag.trim().starts_with("W/") => {
                range
            }
            Some(_) => return Ok(None),
            None => range,
        };
        // A suffix longer than the answer is all of it (RFC 9110 14.1.3):
        // polars asks for the last 256 KiB of whatever it reads.
        if let Some(suffix) = range
            .strip_prefix("bytes=-")
            .and_then(|n| n.parse::<u64>().ok())
        {
            if suffix >= length && length > 0 {
                return Ok(Some((0, length - 1)));
            }
        }
        let Ok(parsed) = http_range_header::parse_range_header(range) else {
            return Ok(None);
        };
        match parsed.validate(length) {
            Ok(ranges) if ranges.len() == 1 => Ok(Some((*ranges[0].start(), *ranges[0].end()))),
            Ok(_) => Ok(None),
            Err(_) => Err(()),
        }
    }
}

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
    let file = FileRead::of(&req);
    let request = body.into_request(&caller, &req)?;
    run_read(
        &state,
        &caller,
        request,
        format,
        TransactionMode::ReadOnly,
        file,
    )
    .await
}

/// `HEAD` of the GET form: the headers a GET would answer, with the
/// result's exact `Content-Length`, and no body. The result runs (and is
/// kept by the cache when it can be, so the ranges a reader asks next are
/// served from it).
#[utoipa::path(
    head,
    path = "/api/v1/query",
    tag = "query",
    params(QueryParams),
    responses(crate::api::answer::QueryResponses)
)]
pub async fn query_head(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<QueryParams>,
) -> Result<HttpResponse, Error> {
    query_get(caller, state, req, params).await
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
    run_read(state, caller, request, format, mode, FileRead::default()).await
}

async fn run_read(
    state: &AppState,
    caller: &Caller,
    request: QueryRequest,
    format: Format,
    mode: TransactionMode,
    file: FileRead,
) -> Result<HttpResponse, Error> {
    let meter = QueryMeter::start(state, &request.sql, &caller.prefix);
    let stream = match state.query(request, format, mode).await {
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
    if file.head {
        // The length is the body's: count it (the query runs to its end,
        // and the cache keeps what it can), and its digest for the ETag.
        let (length, tag) = {
            use futures_util::StreamExt;
            use sha2::Digest;
            // Hashed on the way only when a tag will name the bytes and no
            // kept answer knows their digest already.
            let mut hash =
                (versions.etag.is_some() && versions.kept.is_none()).then(sha2::Sha256::new);
            let mut body = stream.body;
            let mut length = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                length += chunk.len() as u64;
                if let Some(hash) = &mut hash {
                    hash.update(&chunk);
                }
            }
            let tag = content_tag(&versions, || {
                let hash = hash.expect("hashed whenever a tag is made without a kept answer");
                crate::digest::hex(&hash.finalize())
            });
            (length, tag)
        };
        if let Some(tag) = tag {
            response.insert_header((header::ETAG, tag));
        }
        meter.finish("ok", 0, 0);
        if ranges_served(state, &versions, length) {
            response.insert_header((header::ACCEPT_RANGES, "bytes"));
        }
        response.insert_header((header::CONTENT_ENCODING, "identity"));
        // The body's declared size is what a HEAD answer's length says;
        // actix writes no body for HEAD.
        let nothing = futures_util::stream::empty::<Result<bytes::Bytes, Error>>();
        return Ok(response.body(actix_web::body::SizedStream::new(length, nothing)));
    }
    if file.form && versions.cache == CacheStatus::Hit {
        response.insert_header((header::ACCEPT_RANGES, "bytes"));
    }
    if let (true, Some(summary)) = (file.range.is_some(), stream.complete) {
        response
            .insert_header((ROW_COUNT_HEADER, summary.row_count.to_string()))
            .insert_header((TRUNCATED_HEADER, summary.truncated.to_string()));
    }
    // Only an answer that is the same on every run (one the cache may keep)
    // is served in parts: parts of different runs would not make one file.
    let stream = if file.range.is_some() && versions.cache != CacheStatus::Bypass {
        // A range is a slice of the whole answer: a kept one is whole in
        // memory already; another is read whole when it fits the cache's
        // entry limit (the cache keeps it meanwhile), else the whole
        // answer streams with 200, as HTTP allows.
        match stream
            .body
            .read_up_to(state.cache.max_entry_bytes())
            .await?
        {
            Ok(body) => return Ok(ranged(response, body, &file, &versions, meter)),
            Err(body) => QueryStream { body, ..stream },
        }
    } else {
        stream
    };
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

/// The part of a whole answer that `file` asks for: 206 with its
/// `Content-Range`, 416 past the end, or the whole answer with 200. Never
/// compressed: a range is of the bytes as they are.
fn ranged(
    mut response: actix_web::HttpResponseBuilder,
    body: bytes::Bytes,
    file: &FileRead,
    versions: &Versions,
    meter: QueryMeter,
) -> HttpResponse {
    let length = body.len() as u64;
    response
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_ENCODING, "identity"));
    let tag = content_tag(versions, || crate::digest::sha256_hex(&body));
    if let Some(tag) = &tag {
        response.insert_header((header::ETAG, tag.as_str()));
    }
    match file.part(length, tag.as_deref()) {
        Ok(None) => {
            meter.finish("ok", 0, length);
            response.body(body)
        }
        Ok(Some((first, last))) => {
            meter.finish("ok", 0, last - first + 1);
            response
                .status(actix_web::http::StatusCode::PARTIAL_CONTENT)
                .insert_header((
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{length}"),
                ))
                .body(body.slice(first as usize..=last as usize))
        }
        Err(()) => {
            meter.finish("ok", 0, 0);
            HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{length}")))
                .finish()
        }
    }
}

/// The strong ETag of a whole answer served as a file (HEAD, ranges): its
/// version and the digest of its bytes (see [`timetravel::content_etag`]),
/// the kept answer's, else `digest()` of the bytes served; none (and no
/// digest computed) for an answer without a version.
fn content_tag(versions: &Versions, digest: impl FnOnce() -> String) -> Option<String> {
    let etag = versions.etag.as_deref()?;
    let digest = match &versions.kept {
        Some(entry) => entry.digest().to_string(),
        None => digest(),
    };
    timetravel::content_etag(etag, &digest)
}

/// Whether a range of this answer will be served from the cache: it was
/// served from it, or was just kept by it.
fn ranges_served(state: &AppState, versions: &Versions, length: u64) -> bool {
    match versions.cache {
        CacheStatus::Hit => true,
        CacheStatus::Miss => state.cache.fits(length),
        CacheStatus::Bypass => false,
    }
}

/// `X-DuckLake-Snapshot`, and for reads `ETag` with `Cache-Control:
/// no-cache` (caches keep the result but ask again, and get 304 while the
/// tables it read are unchanged), and what the result cache did.
fn version_headers(response: &mut actix_web::HttpResponseBuilder, versions: &Versions) {
    response.insert_header((CACHE_HEADER, versions.cache.as_str()));
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
    serve!(routes, query, query_get, query_head);
}

#[cfg(test)]
mod tests {
    use super::FileRead;

    fn asking(range: &str, if_range: Option<&str>) -> FileRead {
        FileRead {
            form: true,
            head: false,
            range: Some(range.to_string()),
        }
        .if_range(if_range.map(str::to_string))
    }

    #[test]
    fn ranges_are_read_as_parquet_readers_send_them() {
        let part = |range: &str| asking(range, None).part(1000, Some("\"s1-a.0f\""));
        assert_eq!(part("bytes=0-99"), Ok(Some((0, 99))));
        assert_eq!(part("bytes=990-"), Ok(Some((990, 999))));
        // polars asks for the last 256 KiB of any file: all of a smaller one.
        assert_eq!(part("bytes=-262144"), Ok(Some((0, 999))));
        assert_eq!(part("bytes=-8"), Ok(Some((992, 999))));
        // An end past the file is cut to it; a start past it is 416.
        assert_eq!(part("bytes=900-5000"), Ok(Some((900, 999))));
        assert_eq!(part("bytes=1000-"), Err(()));
        // Several ranges, or a header that does not parse: the whole answer.
        assert_eq!(part("bytes=0-1,5-6"), Ok(None));
        assert_eq!(part("lines=0-1"), Ok(None));
        // If-Range: the part while the validator is the answer's, else all.
        let tagged = |tag: &str, etag: &str| asking("bytes=0-9", Some(tag)).part(1000, Some(etag));
        assert_eq!(tagged("\"s1-a.0f\"", "\"s1-a.0f\""), Ok(Some((0, 9))));
        assert_eq!(tagged("\"s1-a.1e\"", "\"s1-a.0f\""), Ok(None));
        // Weak validators are compared strongly (RFC 9110 13.1.5): never.
        assert_eq!(tagged("W/\"s1-a\"", "W/\"s1-a\""), Ok(None));
        let none = FileRead::default();
        assert_eq!(none.part(1000, None), Ok(None));
    }
}
