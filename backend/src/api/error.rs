//! How a domain [`Error`] answers over HTTP: its status (this file's
//! table is the only place that chooses one), its headers, and the body,
//! always `{"error": {"code": "...", "message": "..."}}` ([`ErrorResponse`],
//! which is also the API document's schema for it).

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code such as `sql_error`, `query_timeout`, `too_many_requests`.
    pub code: String,
    pub message: String,
}

/// The HTTP status of each error.
pub fn status(err: &Error) -> StatusCode {
    match err {
        Error::SqlError(_) => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) => StatusCode::CONFLICT,
        Error::TransactionConflict(_) => StatusCode::CONFLICT,
        Error::NotEmpty(_) => StatusCode::CONFLICT,
        Error::InvalidData(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::ConstraintViolation(_) => StatusCode::CONFLICT,
        Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::InvalidParameters(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::ResultTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::RouteNotFound(_) => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::QueryTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::ResourcesExhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::CatalogUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::ReadOnly(_) => StatusCode::FORBIDDEN,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::ShuttingDown(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::InsufficientRole(_) => StatusCode::FORBIDDEN,
        Error::HostNotAllowed(_) => StatusCode::FORBIDDEN,
        Error::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
        Error::UnsupportedFormat(_) => StatusCode::NOT_ACCEPTABLE,
        Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::ResultUnavailable(_) => StatusCode::CONFLICT,
        Error::TransactionEnded(_) => StatusCode::CONFLICT,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        status(self)
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(source) = self {
            tracing::error!(error = ?source, "internal error");
        }
        let mut response = HttpResponse::build(status(self));
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
        response.json(ErrorResponse {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's Errors table lists every code with its status: one
    /// value of each variant (the match below fails to compile when a
    /// variant is added and not listed here).
    #[test]
    fn the_docs_list_every_error_code() {
        let readme = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/src/reference/errors.md"
        ))
        .expect("the docs beside the crate");
        let m = || String::from("m");
        let every = [
            Error::SqlError(m()),
            Error::NotFound(m()),
            Error::AlreadyExists(m()),
            Error::TransactionConflict(m()),
            Error::NotEmpty(m()),
            Error::InvalidData(m()),
            Error::ConstraintViolation(m()),
            Error::InvalidRequest(m()),
            Error::InvalidParameters(m()),
            Error::UnsupportedMediaType(m()),
            Error::PayloadTooLarge(m()),
            Error::ResultTooLarge(m()),
            Error::RouteNotFound(m()),
            Error::MethodNotAllowed(m()),
            Error::QueryTimeout(m()),
            Error::ResourcesExhausted(m()),
            Error::Unavailable(m()),
            Error::CatalogUnavailable(m()),
            Error::StorageUnavailable(m()),
            Error::ReadOnly(m()),
            Error::Forbidden(m()),
            Error::Unauthorized(m()),
            Error::ShuttingDown(m()),
            Error::InsufficientRole(m()),
            Error::HostNotAllowed(m()),
            Error::OriginNotAllowed(m()),
            Error::UnsupportedFormat(m()),
            Error::TooManyRequests {
                message: m(),
                retry_after_secs: 1,
            },
            Error::ResultUnavailable(m()),
            Error::TransactionEnded(m()),
            Error::Internal(anyhow::anyhow!("m")),
        ];
        for err in &every {
            // Exhaustive: a new variant must be added to `every` too.
            match err {
                Error::SqlError(_)
                | Error::NotFound(_)
                | Error::AlreadyExists(_)
                | Error::TransactionConflict(_)
                | Error::NotEmpty(_)
                | Error::InvalidData(_)
                | Error::ConstraintViolation(_)
                | Error::InvalidRequest(_)
                | Error::InvalidParameters(_)
                | Error::UnsupportedMediaType(_)
                | Error::PayloadTooLarge(_)
                | Error::ResultTooLarge(_)
                | Error::RouteNotFound(_)
                | Error::MethodNotAllowed(_)
                | Error::QueryTimeout(_)
                | Error::ResourcesExhausted(_)
                | Error::Unavailable(_)
                | Error::CatalogUnavailable(_)
                | Error::StorageUnavailable(_)
                | Error::ReadOnly(_)
                | Error::Forbidden(_)
                | Error::Unauthorized(_)
                | Error::ShuttingDown(_)
                | Error::InsufficientRole(_)
                | Error::HostNotAllowed(_)
                | Error::OriginNotAllowed(_)
                | Error::UnsupportedFormat(_)
                | Error::TooManyRequests { .. }
                | Error::ResultUnavailable(_)
                | Error::TransactionEnded(_)
                | Error::Internal(_) => {}
            }
            let (status, code) = (status(err), err.code());
            let row = format!("| `{code}` | {} |", status.as_u16());
            assert!(
                readme.contains(&row),
                "docs/src/reference/errors.md has no row {row}"
            );
        }
    }
}
