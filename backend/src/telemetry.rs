//! Logging: the tracing subscriber (JSON lines, or human-readable in
//! development). The per-request span is the HTTP edge's
//! (`crate::api::middleware`).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{log_filter, Config};

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(config: &Config) {
    let level = if config.debug {
        "debug"
    } else {
        log_filter(&config.log_level).unwrap_or("info")
    };
    // Our own crate at the configured level; noisy dependencies one step quieter.
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,ducklake_backend={level},actix_server=info"))
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.is_development() {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}
