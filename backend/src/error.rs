//! The service's one error type, free of any transport.
//!
//! Every failure a client can see is an [`Error`], named for what went wrong
//! for the user, with a stable code ([`Error::code`]); the engine, the store,
//! the object store, jobs and maintenance all return it. Each transport maps
//! it at its edge: HTTP statuses, headers and the JSON body live in
//! `crate::api::error` alone. Internal errors keep their source chain for the
//! log and show the client a generic message.

#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A transaction the client still names ended on its own (idle too
    /// long after writing, or pushed out by its key's newer ones).
    #[error("{0}")]
    TransactionEnded(String),
    /// A bug of ours. The client sees a generic message; the log gets the chain.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<crate::store::StoreError> for Error {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Unavailable(message) => Self::CatalogUnavailable(message),
            StoreError::Schema(e) => Self::Unavailable(e.to_string()),
            StoreError::Failed(message) => Self::internal(anyhow::anyhow!(message)),
        }
    }
}

impl From<crate::bucket::BucketError> for Error {
    fn from(err: crate::bucket::BucketError) -> Self {
        use crate::bucket::BucketError;
        match err {
            BucketError::Unavailable(m) | BucketError::MissingBucket(m) => {
                Self::StorageUnavailable(m)
            }
            BucketError::NotFound(m) => Self::NotFound(m),
            BucketError::InvalidPath(m) => Self::InvalidParameters(m),
            BucketError::Failed(m) => Self::internal(anyhow::anyhow!(m)),
        }
    }
}

impl Error {
    /// The stable code of each variant, as the client reads it (the HTTP
    /// status of each is chosen at the edge: `crate::api::error`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SqlError(_) => "sql_error",
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::TransactionConflict(_) => "write_conflict",
            Self::NotEmpty(_) => "not_empty",
            Self::InvalidData(_) => "invalid_data",
            Self::ConstraintViolation(_) => "constraint_violation",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidParameters(_) => "invalid_parameters",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::ResultTooLarge(_) => "result_too_large",
            Self::RouteNotFound(_) => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::QueryTimeout(_) => "query_timeout",
            Self::ResourcesExhausted(_) => "resources_exhausted",
            Self::Unavailable(_) => "service_unavailable",
            Self::CatalogUnavailable(_) => "catalog_unavailable",
            Self::StorageUnavailable(_) => "storage_unavailable",
            Self::ReadOnly(_) => "read_only",
            Self::Forbidden(_) => "forbidden_statement",
            Self::Unauthorized(_) => "unauthorized",
            Self::ShuttingDown(_) => "shutting_down",
            Self::InsufficientRole(_) => "insufficient_role",
            Self::HostNotAllowed(_) => "host_not_allowed",
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::ResultUnavailable(_) => "result_unavailable",
            Self::TransactionEnded(_) => "transaction_ended",
            Self::Internal(_) => "internal_error",
        }
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
        let message = without_internal_hint(message);
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

/// The names of the service's own tables (the in-memory copies of hot lake
/// tables) start with this. User SQL cannot read them, and an error never
/// suggests one.
pub const INTERNAL_TABLE_PREFIX: &str = "__ducklake_hot_";

/// `message` without DuckDB's spelling hint (`Did you mean "x"?`) when the
/// hint names one of the service's own tables: a typo's answer must not
/// point at a table the caller cannot read and never created.
fn without_internal_hint(message: String) -> String {
    const HINT: &str = "Did you mean ";
    let Some(start) = message.find(HINT) else {
        return message;
    };
    let end = message[start..]
        .find('\n')
        .map_or(message.len(), |line| start + line);
    if !message[start..end].contains(INTERNAL_TABLE_PREFIX) {
        return message;
    }
    let start = if message[..start].ends_with('\n') {
        start - 1
    } else {
        start
    };
    format!("{}{}", &message[..start], &message[end..])
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

    #[test]
    fn a_hint_naming_the_services_own_table_is_dropped_and_others_kept() {
        let own = "Catalog Error: Table with name ducklake_hot does not exist!\n\
                   Did you mean \"memory.__ducklake_hot_3\"?\n\nLINE 1: SELECT * FROM ducklake_hot";
        let err = Error::from_duckdb(failure(own));
        assert_eq!(err.code(), "not_found");
        assert_eq!(
            err.to_string(),
            "Catalog Error: Table with name ducklake_hot does not exist!\n\n\
             LINE 1: SELECT * FROM ducklake_hot"
        );
        let lake = "Catalog Error: Table with name itme does not exist!\n\
                    Did you mean \"items\"?\n\nLINE 1: SELECT * FROM itme";
        assert_eq!(Error::from_duckdb(failure(lake)).to_string(), lake);
        let last =
            "Catalog Error: Table with name h does not exist!\nDid you mean \"__ducklake_hot_1\"?";
        assert_eq!(
            Error::from_duckdb(failure(last)).to_string(),
            "Catalog Error: Table with name h does not exist!"
        );
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
            let err = Error::from_duckdb(failure(message));
            assert_eq!(err.code(), code, "{message}");
            assert_eq!(
                crate::api::error::status(&err).as_u16(),
                status,
                "{message}"
            );
        }
    }

    #[test]
    fn internal_errors_hide_their_source() {
        let err = Error::internal(anyhow::anyhow!("password=hunter2 leaked"));
        assert_eq!(err.to_string(), "internal error");
    }
}
