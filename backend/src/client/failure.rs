//! How a client command fails: [`Failure`], the error every command returns,
//! and its exit code (1 API error, 2 usage, 3 service, 4 failed job). A leaf:
//! it imports none of its siblings, so every one of them may use it.

use std::fmt;

/// Why a client command failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The API answered 4xx: exit 1.
    Api { code: String, message: String },
    /// Bad arguments or configuration, or a local file that cannot be read
    /// or written: exit 2 (as clap's own usage errors).
    Usage(String),
    /// The service cannot be reached, answered 5xx, or its response broke
    /// off: exit 3.
    Service(String),
    /// The API answered 5xx with an error body: exit 3.
    ServiceError { code: String, message: String },
    /// A job ended failed or cancelled: exit 4.
    Job { code: String, message: String },
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } => 1,
            Self::Usage(_) => 2,
            Self::Service(_) | Self::ServiceError { .. } => 3,
            Self::Job { .. } => 4,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api { code, message }
            | Self::ServiceError { code, message }
            | Self::Job { code, message } => write!(f, "{code}: {message}"),
            Self::Usage(message) | Self::Service(message) => f.write_str(message),
        }
    }
}
