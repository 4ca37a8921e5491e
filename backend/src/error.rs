//! The service's one error type.
//!
//! Every failure a client can see is an [`ApiError`]. Its [`ApiError::kind`]
//! table is the only place that chooses an HTTP status and a stable error
//! code; the body is always `{"error": {"code": "...", "message": "..."}}`.
//! Internal errors keep their source chain for the log and show the client a
//! generic message.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// DuckDB rejected the SQL: parse, bind, type or conversion errors.
    #[error("{0}")]
    SqlError(String),
    /// A table, schema or other catalog entry does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A catalog entry already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Concurrent writers conflicted; retrying may succeed.
    #[error("{0}")]
    TransactionConflict(String),
    /// An uploaded or referenced file cannot be loaded as it is.
    #[error("{0}")]
    InvalidData(String),
    /// A schema to drop still holds tables.
    #[error("{0}")]
    NotEmpty(String),
    /// A constraint (NOT NULL, PRIMARY KEY, CHECK ...) was violated.
    #[error("{0}")]
    ConstraintViolation(String),
    /// The request body is not valid JSON or not the expected shape.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request is well-formed JSON but a field has an unusable value.
    #[error("{0}")]
    InvalidParameters(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A result beyond the server's row or byte limit, in a format whose body
    /// cannot say it was cut: refused rather than cut silently.
    #[error("{0}")]
    ResultTooLarge(String),
    #[error("{0}")]
    RouteNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The query ran past its timeout and was interrupted.
    #[error("{0}")]
    QueryTimeout(String),
    /// DuckDB ran out of memory or disk for this query.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// The lake, the catalog or the storage cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The PostgreSQL catalog cannot be reached; retrying later may succeed.
    #[error("{0}")]
    CatalogUnavailable(String),
    /// The object storage holding the lake's data cannot be reached.
    #[error("{0}")]
    StorageUnavailable(String),
    /// The sandbox refused the statement: host files, network, extensions,
    /// settings or other databases.
    #[error("{0}")]
    Forbidden(String),
    /// The replica is draining for shutdown: retry elsewhere.
    #[error("{0}")]
    ShuttingDown(String),
    /// No valid API key: missing, unknown, expired or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// The request addressed a Host this service does not answer to (DNS
    /// rebinding, with authentication off).
    #[error("{0}")]
    HostNotAllowed(String),
    /// A web page of another origin tried to change something.
    #[error("{0}")]
    OriginNotAllowed(String),
    /// The key is valid but its role may not do this.
    #[error("{0}")]
    InsufficientRole(String),
    /// A write was attempted where only reads are allowed (the GET form).
    #[error("{0}")]
    ReadOnly(String),
    /// No result format the client asked for (format field or Accept header).
    #[error("{0}")]
    UnsupportedFormat(String),
    /// Every query slot is busy and the wait queue is full; retry after a while.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// An async job's result was asked for, but the job has none (yet).
    #[error("{0}")]
    ResultUnavailable(String),
    /// A bug of ours. The client sees a generic message; the log gets the chain.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Unavailable(message) => Self::CatalogUnavailable(message),
            StoreError::Schema(e) => Self::Unavailable(e.to_string()),
            StoreError::Failed(message) => Self::internal(anyhow::anyhow!(message)),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(err: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError;
        match err {
            StorageError::Unavailable(m) | StorageError::MissingBucket(m) => {
                Self::StorageUnavailable(m)
            }
            StorageError::NotFound(m) => Self::NotFound(m),
            StorageError::InvalidPath(m) => Self::InvalidParameters(m),
            StorageError::Failed(m) => Self::internal(anyhow::anyhow!(m)),
        }
    }
}

impl ApiError {
    /// The status and stable code of each variant: the one table of them.
    pub fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            Self::SqlError(_) => (StatusCode::BAD_REQUEST, "sql_error"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            Self::TransactionConflict(_) => (StatusCode::CONFLICT, "write_conflict"),
            Self::NotEmpty(_) => (StatusCode::CONFLICT, "not_empty"),
            Self::InvalidData(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_data"),
            Self::ConstraintViolation(_) => (StatusCode::CONFLICT, "constraint_violation"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidParameters(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameters"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::ResultTooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "result_too_large"),
            Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::QueryTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "query_timeout"),
            Self::ResourcesExhausted(_) => (StatusCode::SERVICE_UNAVAILABLE, "resources_exhausted"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            Self::CatalogUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog_unavailable"),
            Self::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::ReadOnly(_) => (StatusCode::FORBIDDEN, "read_only"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden_statement"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::ShuttingDown(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Self::InsufficientRole(_) => (StatusCode::FORBIDDEN, "insufficient_role"),
            Self::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "host_not_allowed"),
            Self::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Self::UnsupportedFormat(_) => (StatusCode::NOT_ACCEPTABLE, "unsupported_format"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::ResultUnavailable(_) => (StatusCode::CONFLICT, "result_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind().1
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// Classifies an error DuckDB returned for user SQL. DuckDB prefixes its
    /// messages with the exception type ("Catalog Error: ..."), which is stable
    /// across versions; the message itself is kept because it helps the user.
    pub fn from_duckdb(err: duckdb::Error) -> Self {
        match err {
            duckdb::Error::DuckDBFailure(_, Some(message)) => Self::from_duckdb_message(message),
            duckdb::Error::DuckDBFailure(..) => Self::from_duckdb_message(err.to_string()),
            duckdb::Error::InvalidParameterCount(given, expected) => Self::InvalidParameters(
                format!("the statement takes {expected} parameter(s), {given} were given"),
            ),
            duckdb::Error::InvalidParameterName(name) => Self::SqlError(name),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }

    /// Classifies a DuckDB error message ("<Type> Error: <what>").
    pub fn from_duckdb_message(message: String) -> Self {
        let kind = message
            .split_once(" Error:")
            .map(|(kind, _)| kind.trim())
            .unwrap_or("");
        if message.contains("read-only transaction")
            || message.contains("transaction is launched in read-only mode")
        {
            return Self::ReadOnly(message);
        }
        if kind == "Permission"
            || message.contains("the configuration has been locked")
            || message.contains("Loading external extensions is disabled")
        {
            return Self::Forbidden(format!("refused by the sandbox: {message}"));
        }
        if says_any(&message, CATALOG_OUTAGE) {
            return Self::CatalogUnavailable(message);
        }
        if matches!(kind, "IO" | "HTTP")
            && message.contains("HTTP")
            && says_any(&message, STORAGE_OUTAGE)
        {
            return Self::StorageUnavailable(message);
        }
        // The store's certificate is not one the service trusts.
        if matches!(kind, "IO" | "HTTP") && says_any(&message, UNTRUSTED_CERTIFICATE) {
            return Self::StorageUnavailable(format!(
                "the object store's TLS certificate is not trusted (check \
                 STORAGE_MINIO_CA_FILE): {message}"
            ));
        }
        // The store refused the service's own credentials: not the
        // client's mistake, and nothing a retry with other SQL fixes.
        if kind == "HTTP" && says_any(&message, STORAGE_REFUSAL) {
            return Self::StorageUnavailable(format!(
                "the object store refused the service's credentials (check \
                 STORAGE_MINIO_ACCESS_KEY and STORAGE_MINIO_SECRET_KEY): {message}"
            ));
        }
        match kind {
            "Catalog" if message.contains("does not exist") => Self::NotFound(message),
            "Catalog" if message.contains("already exists") => Self::AlreadyExists(message),
            "TransactionContext" | "Transaction" => Self::TransactionConflict(message),
            "Constraint" => Self::ConstraintViolation(message),
            "Out of Memory" => Self::ResourcesExhausted(message),
            "INTERNAL" | "FATAL" => Self::Internal(anyhow::anyhow!(message)),
            _ => Self::SqlError(message),
        }
    }
}

/// libpq's words for "the catalog server is not there".
const CATALOG_OUTAGE: &[&str] = &[
    "Unable to connect to Postgres",
    "server closed the connection unexpectedly",
    "no connection to the server",
    "terminating connection due to administrator command",
];

/// httpfs's words, in a message about HTTP, for "the object store is not
/// there" (not: "no such file").
const STORAGE_OUTAGE: &[&str] = &[
    "Could not connect to server",
    "Could not resolve hostname",
    "Connection refused",
    "Timeout",
];

/// httpfs's words (curl's and OpenSSL's) for "this certificate is not
/// vouched for".
const UNTRUSTED_CERTIFICATE: &[&str] = &[
    "SSL peer certificate or SSH remote key was not OK",
    "certificate verify failed",
    "SSL certificate problem",
];

/// httpfs's words for "the object store refused these credentials".
const STORAGE_REFUSAL: &[&str] = &["(HTTP 403 Forbidden)", "(HTTP 401 Unauthorized)"];

fn says_any(message: &str, words: &[&str]) -> bool {
    words.iter().any(|needle| message.contains(needle))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.kind();
        if let Self::Internal(source) = self {
            tracing::error!(error = ?source, "internal error");
        }
        let mut response = HttpResponse::build(status);
        if let Self::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Self::ShuttingDown(_) = self {
            response.insert_header(("Retry-After", "1"));
            response.insert_header(("Connection", "close"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(message: &str) -> duckdb::Error {
        duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error {
                code: duckdb::ffi::ErrorCode::Unknown,
                extended_code: 1,
            },
            Some(message.to_string()),
        )
    }

    /// README.md's Errors table lists every code with its status: one
    /// value of each variant (the match below fails to compile when a
    /// variant is added and not listed here).
    #[test]
    fn the_readme_lists_every_error_code() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md beside the crate");
        let m = || String::from("m");
        let every = [
            ApiError::SqlError(m()),
            ApiError::NotFound(m()),
            ApiError::AlreadyExists(m()),
            ApiError::TransactionConflict(m()),
            ApiError::NotEmpty(m()),
            ApiError::InvalidData(m()),
            ApiError::ConstraintViolation(m()),
            ApiError::InvalidRequest(m()),
            ApiError::InvalidParameters(m()),
            ApiError::UnsupportedMediaType(m()),
            ApiError::PayloadTooLarge(m()),
            ApiError::ResultTooLarge(m()),
            ApiError::RouteNotFound(m()),
            ApiError::MethodNotAllowed(m()),
            ApiError::QueryTimeout(m()),
            ApiError::ResourcesExhausted(m()),
            ApiError::Unavailable(m()),
            ApiError::CatalogUnavailable(m()),
            ApiError::StorageUnavailable(m()),
            ApiError::ReadOnly(m()),
            ApiError::Forbidden(m()),
            ApiError::Unauthorized(m()),
            ApiError::ShuttingDown(m()),
            ApiError::InsufficientRole(m()),
            ApiError::HostNotAllowed(m()),
            ApiError::OriginNotAllowed(m()),
            ApiError::UnsupportedFormat(m()),
            ApiError::TooManyRequests {
                message: m(),
                retry_after_secs: 1,
            },
            ApiError::ResultUnavailable(m()),
            ApiError::Internal(anyhow::anyhow!("m")),
        ];
        for err in &every {
            // Exhaustive: a new variant must be added to `every` too.
            match err {
                ApiError::SqlError(_)
                | ApiError::NotFound(_)
                | ApiError::AlreadyExists(_)
                | ApiError::TransactionConflict(_)
                | ApiError::NotEmpty(_)
                | ApiError::InvalidData(_)
                | ApiError::ConstraintViolation(_)
                | ApiError::InvalidRequest(_)
                | ApiError::InvalidParameters(_)
                | ApiError::UnsupportedMediaType(_)
                | ApiError::PayloadTooLarge(_)
                | ApiError::ResultTooLarge(_)
                | ApiError::RouteNotFound(_)
                | ApiError::MethodNotAllowed(_)
                | ApiError::QueryTimeout(_)
                | ApiError::ResourcesExhausted(_)
                | ApiError::Unavailable(_)
                | ApiError::CatalogUnavailable(_)
                | ApiError::StorageUnavailable(_)
                | ApiError::ReadOnly(_)
                | ApiError::Forbidden(_)
                | ApiError::Unauthorized(_)
                | ApiError::ShuttingDown(_)
                | ApiError::InsufficientRole(_)
                | ApiError::HostNotAllowed(_)
                | ApiError::OriginNotAllowed(_)
                | ApiError::UnsupportedFormat(_)
                | ApiError::TooManyRequests { .. }
                | ApiError::ResultUnavailable(_)
                | ApiError::Internal(_) => {}
            }
            let (status, code) = err.kind();
            let row = format!("| `{code}` | {} |", status.as_u16());
            assert!(
                readme.contains(&row),
                "README.md's Errors table has no row {row}"
            );
        }
    }

    #[test]
    fn duckdb_exception_types_map_to_codes() {
        let cases = [
            (
                "Parser Error: syntax error at or near \"SELEC\"",
                "sql_error",
                400,
            ),
            (
                "Catalog Error: Table with name nope does not exist!",
                "not_found",
                404,
            ),
            (
                "Catalog Error: Table with name t already exists!",
                "already_exists",
                409,
            ),
            (
                "TransactionContext Error: Catalog write-write conflict",
                "write_conflict",
                409,
            ),
            (
                "Constraint Error: NOT NULL constraint failed: t.a",
                "constraint_violation",
                409,
            ),
            (
                "Binder Error: Referenced column \"x\" not found",
                "sql_error",
                400,
            ),
            (
                "Conversion Error: Could not convert string 'a' to INT32",
                "sql_error",
                400,
            ),
            ("INTERNAL Error: something broke", "internal_error", 500),
            (
                "IO Error: Failed to query most recent snapshot for DuckLake: Unable to connect to Postgres at \"host=h\"",
                "catalog_unavailable",
                503,
            ),
            (
                "IO Error: Could not connect to server error for HTTP GET to 'http://127.0.0.1:9/b/x.parquet'",
                "storage_unavailable",
                503,
            ),
            (
                "HTTP Error: HTTP GET error reading 'http://127.0.0.1:9/b/x.parquet' in region 'us-east-1' (HTTP 403 Forbidden)",
                "storage_unavailable",
                503,
            ),
            (
                "IO Error: SSL peer certificate or SSH remote key was not OK error for HTTP GET to 'https://127.0.0.1:9/b/x.parquet'",
                "storage_unavailable",
                503,
            ),
            (
                "IO Error: No files found that match the pattern \"s3://b/missing.parquet\"",
                "sql_error",
                400,
            ),
        ];
        for (message, code, status) in cases {
            let err = ApiError::from_duckdb(failure(message));
            assert_eq!(err.code(), code, "{message}");
            assert_eq!(err.kind().0.as_u16(), status, "{message}");
        }
    }

    #[test]
    fn internal_errors_hide_their_source() {
        let err = ApiError::internal(anyhow::anyhow!("password=hunter2 leaked"));
        assert_eq!(err.to_string(), "internal error");
    }
}
