//! A fixed pool of DuckDB connections to the one database of the process.
//!
//! A checked-out connection is moved onto a blocking thread, used, reset to
//! a clean state (no open transaction, the lake as default database) and
//! handed back. The async side only waits for a permit; it never touches a
//! connection.
//!
//! Each place in the pool holds two connections: one that keeps DuckDB's
//! progress estimate (what a job reports while it runs) and one that does
//! not, which every other request uses. The estimate costs an interactive
//! point lookup about a tenth of its time, and DuckDB's settings are locked
//! once the sandbox is up, so the choice is made by connection, not by
//! `SET`. A request takes one place whichever it uses.

use std::sync::Arc;

use duckdb::Connection;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One place in the pool: the same session twice, with and without
/// DuckDB's progress estimate.
pub struct Slot {
    pub quiet: Connection,
    pub tracked: Connection,
}

pub struct ConnectionPool {
    idle: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
    size: usize,
    /// Run on a connection before it goes back: undoes what a request may have left.
    reset_sql: String,
}

impl ConnectionPool {
    pub fn new(slots: Vec<Slot>, reset_sql: String) -> Self {
        let size = slots.len();
        Self {
            idle: Mutex::new(slots),
            permits: Arc::new(Semaphore::new(size)),
            size,
            reset_sql,
        }
    }

    /// Waits for a free connection.
    pub async fn acquire(self: &Arc<Self>) -> PooledConnection {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let slot = self
            .idle
            .lock()
            .pop()
            .expect("a permit guarantees an idle connection");
        PooledConnection {
            slot: Some(slot),
            tracked: false,
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    /// A free connection, if there is one right now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<PooledConnection> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        let slot = self
            .idle
            .lock()
            .pop()
            .expect("a permit guarantees an idle connection");
        Some(PooledConnection {
            slot: Some(slot),
            tracked: false,
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A connection on loan; returns itself to the pool when dropped. It is the
/// place's quiet connection unless [`PooledConnection::track_progress`]
/// chose the other.
pub struct PooledConnection {
    slot: Option<Slot>,
    tracked: bool,
    pool: Arc<ConnectionPool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConnection {
    /// From here on, the connection that keeps DuckDB's progress estimate
    /// (before anything ran on the loan: the two are separate sessions).
    pub fn track_progress(&mut self) {
        self.tracked = true;
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        let slot = self.slot.as_ref().expect("present until drop");
        if self.tracked {
            &slot.tracked
        } else {
            &slot.quiet
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let conn = if self.tracked {
                &slot.tracked
            } else {
                &slot.quiet
            };
            // ROLLBACK fails harmlessly when no transaction is open.
            let _ = conn.execute_batch("ROLLBACK");
            if let Err(err) = conn.execute_batch(&self.pool.reset_sql) {
                tracing::error!(error = %err, "could not reset a pooled connection");
            }
            self.pool.idle.lock().push(slot);
        }
    }
}
