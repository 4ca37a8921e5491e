//! The domain [`Error`] as a gRPC status: the one place the Flight SQL edge
//! chooses status codes, as `crate::api::error` is for HTTP. The message
//! starts with the stable error code in brackets, and the code also rides
//! in the `x-ducklake-error-code` trailer, so a driver that shows only the
//! message still names it.

use tonic::{metadata::MetadataValue, Code, Status};

use crate::error::Error;

/// The trailer naming the error's stable code.
pub const ERROR_CODE_HEADER: &str = "x-ducklake-error-code";

/// The gRPC code of each error.
pub fn code_of(err: &Error) -> Code {
    match err {
        Error::SqlError(_)
        | Error::InvalidRequest(_)
        | Error::InvalidParameters(_)
        | Error::InvalidData(_)
        | Error::UnsupportedMediaType(_)
        | Error::UnsupportedFormat(_) => Code::InvalidArgument,
        Error::NotFound(_) | Error::RouteNotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::TransactionConflict(_) | Error::TransactionEnded(_) => Code::Aborted,
        Error::NotEmpty(_) | Error::ConstraintViolation(_) | Error::ResultUnavailable(_) => {
            Code::FailedPrecondition
        }
        Error::PayloadTooLarge(_) | Error::ResultTooLarge(_) => Code::OutOfRange,
        Error::MethodNotAllowed(_) => Code::Unimplemented,
        Error::QueryTimeout(_) => Code::DeadlineExceeded,
        Error::ResourcesExhausted(_) | Error::TooManyRequests { .. } => Code::ResourceExhausted,
        Error::Unavailable(_)
        | Error::CatalogUnavailable(_)
        | Error::StorageUnavailable(_)
        | Error::ShuttingDown(_) => Code::Unavailable,
        Error::Unauthorized(_) => Code::Unauthenticated,
        Error::ReadOnly(_)
        | Error::Forbidden(_)
        | Error::InsufficientRole(_)
        | Error::HostNotAllowed(_)
        | Error::OriginNotAllowed(_) => Code::PermissionDenied,
        Error::Internal(_) => Code::Internal,
    }
}

/// `err` as the status a Flight client receives.
pub fn status(err: Error) -> Status {
    if let Error::Internal(source) = &err {
        tracing::error!(error = ?source, "internal error");
    }
    let err = flight_advice(err);
    let code = err.code();
    let mut status = Status::new(code_of(&err), format!("[{code}] {err}"));
    status
        .metadata_mut()
        .insert(ERROR_CODE_HEADER, MetadataValue::from_static(code));
    status
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        status(err)
    }
}

/// A result past the server's limit, with what a Flight client can do (it
/// cannot set the HTTP API's `max_rows` or pick a format that marks a cut).
fn flight_advice(err: Error) -> Error {
    match err {
        Error::ResultTooLarge(message) => match message.split_once(": set max_rows") {
            Some((what, _http_advice)) => Error::ResultTooLarge(format!(
                "{what}: a Flight stream cannot mark a cut, so none is sent; add a LIMIT to the \
                 statement, or ask the operator to raise or unset the limit (it is unset by \
                 default)"
            )),
            None => Error::ResultTooLarge(message),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_the_code_in_its_message_and_trailer() {
        let s = status(Error::Forbidden("no files".into()));
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "[forbidden_statement] no files");
        assert_eq!(
            s.metadata().get(ERROR_CODE_HEADER).unwrap(),
            "forbidden_statement"
        );
        let s = status(Error::internal(anyhow::anyhow!("secret detail")));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("secret"), "{}", s.message());
    }
}
