//! The settings that take one of a few named values: [`Environment`],
//! [`AcquireMode`], and the log level ([`log_filter`]). A leaf.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the service runs: production refuses authentication off, and
/// development logs in a human format instead of JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    pub const NAMES: [&'static str; 4] = ["development", "test", "staging", "production"];

    /// The environment named `name`, in any case (`PRODUCTION` too).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "development" => Some(Self::Development),
            "test" => Some(Self::Test),
            "staging" => Some(Self::Staging),
            "production" => Some(Self::Production),
            _ => None,
        }
    }
}

/// How DuckDB's postgres extension acquires a catalog connection when its
/// pool is in use (`pg_pool_acquire_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquireMode {
    /// Wait for a free one: the pool size is a hard cap.
    Wait,
    /// Open one more: the pool size bounds idle connections.
    Force,
}

impl fmt::Display for AcquireMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wait => "wait",
            Self::Force => "force",
        })
    }
}

/// The tracing filter directive for a LOG_LEVEL value (origin documents write `INFO`).
pub fn log_filter(level: &str) -> Option<&'static str> {
    match level.to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" | "critical" => Some("error"),
        _ => None,
    }
}
