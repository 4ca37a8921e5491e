//! DuckDB's own progress estimate of a running query (what its progress
//! bar shows), read from another thread while the query runs.
//!
//! The duckdb crate exposes the C API's `duckdb_query_progress` nowhere, and
//! keeps the raw connection handle private. Its `InterruptHandle` (public,
//! thread-safe, made for exactly this kind of cross-thread call) is a struct
//! with one field, `Mutex<ffi::duckdb_connection>`, nulled when the
//! connection closes; [`query_progress`] reads that field. The crate is
//! pinned to one version (`=1.10505.0`) and the layout is checked at compile
//! time.

use std::sync::{Arc, Mutex};

use duckdb::{ffi, InterruptHandle};

const _: () = {
    assert!(
        std::mem::size_of::<InterruptHandle>()
            == std::mem::size_of::<Mutex<ffi::duckdb_connection>>()
    );
    assert!(
        std::mem::align_of::<InterruptHandle>()
            == std::mem::align_of::<Mutex<ffi::duckdb_connection>>()
    );
};

/// DuckDB's estimate (0–100) of how far the query on the connection behind
/// `handle` is; `None` when nothing runs or DuckDB has no estimate yet.
pub fn query_progress(handle: &InterruptHandle) -> Option<f64> {
    // SAFETY: `InterruptHandle` (duckdb 1.10505.0, inner_connection.rs) is
    // `struct { conn: Mutex<ffi::duckdb_connection> }`: a single field, so it
    // sits at offset 0 with the struct's size and alignment (checked above).
    let conn =
        unsafe { &*(handle as *const InterruptHandle).cast::<Mutex<ffi::duckdb_connection>>() };
    let conn = conn.lock().ok()?;
    if conn.is_null() {
        return None;
    }
    // SAFETY: the handle is live (not nulled) while the lock is held, the
    // same way the crate's own `interrupt` calls the C API.
    let progress = unsafe { ffi::duckdb_query_progress(*conn) };
    (progress.percentage >= 0.0).then_some(progress.percentage.min(100.0))
}

/// Where a running request's connection can be asked for its progress: set
/// while the request holds the connection, cleared before it goes back to
/// the pool (so it never reports another request's query).
#[derive(Clone, Default)]
pub struct ProgressProbe(Arc<parking_lot::Mutex<Option<Arc<InterruptHandle>>>>);

impl std::fmt::Debug for ProgressProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressProbe")
    }
}

impl ProgressProbe {
    pub(crate) fn attach(&self, handle: Arc<InterruptHandle>) {
        *self.0.lock() = Some(handle);
    }

    pub(crate) fn detach(&self) {
        *self.0.lock() = None;
    }

    /// DuckDB's estimate (0–100) for the request's query, when it runs and
    /// DuckDB has one.
    pub fn percent(&self) -> Option<f64> {
        let handle = self.0.lock().clone()?;
        query_progress(&handle)
    }
}
