//! What the read and write endpoints answer besides their bodies' own
//! types: the snapshot header, and the documented shape of a query's
//! result in every format (for the API document).

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::api::error::ErrorResponse;

/// The snapshot a response read or a write created.
pub const SNAPSHOT_HEADER: &str = "x-ducklake-snapshot";

/// `format=json` (the default). `json_objects` has the same shape with each
/// row an object keyed by column name.
#[derive(Serialize, ToSchema)]
pub struct JsonResult {
    pub columns: Vec<ColumnDoc>,
    /// One array per row, values by the JSON type mapping of the docs (reference/types.md).
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
    /// The result had more than `max_rows` rows and was cut.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

#[derive(Serialize, ToSchema)]
pub struct ColumnDoc {
    pub name: String,
    /// DuckDB's type name, e.g. `DECIMAL(18,3)` or `STRUCT(a INTEGER)`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What both forms of the query endpoint answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum QueryResponses {
    /// The result, in the negotiated format: JSON (this schema), JSON objects,
    /// NDJSON, CSV, TSV, Arrow IPC stream or Parquet. Headers: X-Row-Count and
    /// X-Result-Truncated when the result fit in the first window or the
    /// request set max_rows, X-Result-Streamed otherwise.
    #[response(status = 200)]
    Ok(JsonResult),
    /// sql_error, invalid_request
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// unauthorized: no valid API key (missing, unknown, expired, revoked)
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// forbidden_statement (the sandbox refused it), insufficient_role,
    /// read_only (a write through the GET form)
    #[response(status = 403)]
    Forbidden(ErrorResponse),
    /// not_found
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// unsupported_format
    #[response(status = 406)]
    NotAcceptable(ErrorResponse),
    /// already_exists, write_conflict, constraint_violation, not_empty
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// payload_too_large
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// invalid_parameters; result_too_large (past query.max_rows or
    /// query.max_result_bytes in a format that cannot mark a cut, without
    /// max_rows in the request)
    #[response(status = 422)]
    Unprocessable(ErrorResponse),
    /// too_many_requests, with Retry-After
    #[response(status = 429)]
    TooMany(ErrorResponse),
    /// catalog_unavailable, storage_unavailable, resources_exhausted
    #[response(status = 503)]
    Unavailable(ErrorResponse),
    /// query_timeout
    #[response(status = 504)]
    Timeout(ErrorResponse),
}
