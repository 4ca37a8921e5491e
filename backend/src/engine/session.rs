//! Transactions: how a request's statements are wrapped, and a transaction
//! held open across requests (Flight SQL's `BeginTransaction`) on a
//! connection of its own, with the writes it waits to audit.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use super::{catalog::last_committed, database::Engine, pool::PooledConnection};
use crate::{
    audit::{Outcome, Trail},
    error::Error,
};

/// How the statements of a request are wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionMode {
    /// Each statement commits on its own (DuckDB's auto-commit).
    #[default]
    AutoCommit,
    /// All statements in one transaction: all or nothing.
    Single,
    /// One read-only transaction: any write fails (the GET form).
    ReadOnly,
    /// Inside a transaction held open across requests ([`Session`]): no
    /// BEGIN, no COMMIT; the session's end commits or rolls back.
    Session,
}

/// A transaction held open across requests (Flight SQL's
/// `BeginTransaction`): its connection between statements, and the writes
/// waiting for its end to be audited as committed or not.
pub struct Session {
    pub(super) conn: parking_lot::Mutex<Option<PooledConnection>>,
    pub(super) writes: parking_lot::Mutex<Vec<Write>>,
    pub(super) audit: Option<Trail>,
    /// A statement failed: the transaction can only be rolled back (DuckDB
    /// keeps some transactions usable after an error; we never commit what
    /// a failed statement may have left half-done).
    pub(super) failed: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("idle", &self.conn.lock().is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The connection, for one statement at a time.
    pub(super) fn take(&self) -> Result<PooledConnection, Error> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::InvalidRequest(
                "a statement of this transaction failed: roll it back".into(),
            ));
        }
        self.conn.lock().take().ok_or_else(|| {
            Error::InvalidRequest(
                "a statement of this transaction is still running or streaming: read its \
                 result to the end first"
                    .into(),
            )
        })
    }

    pub(super) fn put_back(&self, conn: PooledConnection) {
        *self.conn.lock() = Some(conn);
    }
}

impl Engine {
    /// Opens a transaction on a connection of its own (waiting for one like
    /// any request, under admission control).
    pub async fn begin_session(&self, audit: Option<Trail>) -> Result<Arc<Session>, Error> {
        let conn = self.acquire().await?;
        let conn = tokio::task::spawn_blocking(move || {
            conn.execute_batch("BEGIN TRANSACTION")
                .map(|()| conn)
                .map_err(Error::from_duckdb)
        })
        .await
        .map_err(Error::internal)??;
        Ok(Arc::new(Session {
            conn: parking_lot::Mutex::new(Some(conn)),
            writes: Default::default(),
            audit,
            failed: AtomicBool::new(false),
        }))
    }

    /// Ends a session: COMMIT (answering the snapshot it created, if it
    /// wrote) or ROLLBACK; its connection goes back to the pool either way
    /// and its writes are audited with how they ended.
    pub async fn end_session(&self, session: &Session, commit: bool) -> Result<Option<i64>, Error> {
        let failed = session.failed.swap(false, Ordering::SeqCst);
        let conn = session.take().inspect_err(|_| {
            session.failed.store(failed, Ordering::SeqCst);
        })?;
        let refused = commit && failed;
        let commit = commit && !failed;
        let writes = std::mem::take(&mut *session.writes.lock());
        let lake = self.lake.name.clone();
        let audit = session.audit.clone();
        tokio::task::spawn_blocking(move || {
            let ended = if commit {
                conn.execute_batch("COMMIT")
                    .map_err(Error::from_duckdb)
                    .and_then(|()| match writes.is_empty() {
                        true => Ok(None),
                        false => last_committed(&conn, &lake).map(Some),
                    })
            } else {
                conn.execute_batch("ROLLBACK")
                    .map(|()| None)
                    .map_err(Error::from_duckdb)
            };
            if let Some(trail) = &audit {
                let outcome = match (&ended, commit) {
                    (Ok(_), true) => Outcome::Ok,
                    _ => Outcome::Failed,
                };
                let snapshot = ended.as_ref().ok().copied().flatten();
                record_writes(trail, writes, outcome, snapshot, ended.as_ref().err());
            }
            drop(conn);
            match refused {
                true => Err(Error::InvalidRequest(
                    "a statement of this transaction failed: it was rolled back".into(),
                )),
                false => ended,
            }
        })
        .await
        .map_err(Error::internal)?
    }
}

/// A write statement, for the audit trail once its fate is known.
pub(super) struct Write {
    pub(super) sql: String,
    pub(super) kind: Vec<String>,
    pub(super) tables: Vec<String>,
}

/// Records writes in the audit trail with how they ended.
pub(super) fn record_writes(
    trail: &Trail,
    writes: Vec<Write>,
    outcome: Outcome,
    snapshot: Option<i64>,
    err: Option<&Error>,
) {
    for write in writes {
        let mut event = trail
            .event("statement", outcome)
            .snapshot(snapshot.filter(|_| outcome == Outcome::Ok))
            .detail("kind", &write.kind)
            .detail("tables", &write.tables)
            .sql(&write.sql);
        if let [table] = write.tables.as_slice() {
            event = event.target(table.clone());
        }
        if let Some(err) = err {
            event = event.detail("error", err.code());
        }
        trail.record(event);
    }
}
