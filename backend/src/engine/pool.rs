//! A fixed pool of DuckDB connections to the one database of the process.
//!
//! A checked-out connection is moved onto a blocking thread, used, reset to
//! a clean state (no open transaction, the lake as default database) and
//! handed back. The async side only waits for a permit; it never touches a
//! connection.

use std::sync::Arc;

use duckdb::Connection;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ConnectionPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: usize,
    /// Run on a connection before it goes back: undoes what a request may have left.
    reset_sql: String,
}

impl ConnectionPool {
    pub fn new(connections: Vec<Connection>, reset_sql: String) -> Self {
        let size = connections.len();
        Self {
            idle: Mutex::new(connections),
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
        self.lend(permit)
    }

    /// A free connection, if there is one right now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<PooledConnection> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        Some(self.lend(permit))
    }

    /// The idle connection `permit` stands for, on loan.
    fn lend(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> PooledConnection {
        let conn = self
            .idle
            .lock()
            .pop()
            .expect("a permit guarantees an idle connection");
        PooledConnection {
            conn: Some(conn),
            settled: false,
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// What puts a connection back in its clean state: the lake as its
    /// default database.
    pub fn reset_sql(&self) -> &str {
        &self.reset_sql
    }
}

/// A connection on loan; returns itself to the pool when dropped, reset
/// unless [`PooledConnection::settled`] says it is clean already.
pub struct PooledConnection {
    conn: Option<Connection>,
    settled: bool,
    pool: Arc<ConnectionPool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConnection {
    /// The loan ended clean: its last statement ran [`ConnectionPool::reset_sql`]
    /// inside the transaction it then committed, so no transaction is open
    /// and the lake is the default database. The reset is skipped: run on
    /// its own it costs a DuckLake transaction (about a millisecond of
    /// catalog reads), which every response waited for.
    pub fn settled(&mut self) {
        self.settled = true;
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.settled {
                self.pool.idle.lock().push(conn);
                return;
            }
            // ROLLBACK fails harmlessly when no transaction is open.
            let _ = conn.execute_batch("ROLLBACK");
            if let Err(err) = conn.execute_batch(&self.pool.reset_sql) {
                tracing::error!(error = %err, "could not reset a pooled connection");
            }
            self.pool.idle.lock().push(conn);
        }
    }
}
