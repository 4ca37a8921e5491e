//! Transactions: how a request's statements are wrapped, and a transaction
//! held open across requests (Flight SQL's `BeginTransaction`) on a
//! connection of its own, with the writes it waits to audit.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    catalog::{current_snapshot, last_committed},
    database::Engine,
    pool::PooledConnection,
    stop::Stop,
};
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

/// What a statement of a transaction that has not written answers when it
/// would write ([`super::stream::QueryRequest::deferred`]): a marker, never
/// shown to a client.
pub const WRITES_NEED_A_CONNECTION: &str =
    "this statement writes: the transaction takes a connection of its own";

/// Whether `err` is [`WRITES_NEED_A_CONNECTION`].
pub fn writes_need_a_connection(err: &Error) -> bool {
    matches!(err, Error::ReadOnly(message) if message == WRITES_NEED_A_CONNECTION)
}

/// A transaction held open across requests (Flight SQL's
/// `BeginTransaction`, once it writes): its connection between statements,
/// and the writes waiting for its end to be audited as committed or not.
pub struct Session {
    pub(super) conn: parking_lot::Mutex<Option<PooledConnection>>,
    /// Rung when the connection comes back.
    returned: tokio::sync::Notify,
    /// The transaction is ending: a statement stopped now was stopped by
    /// its end.
    pub(super) ending: AtomicBool,
    /// The stop switch of the statement holding the connection.
    running: parking_lot::Mutex<Option<Stop>>,
    /// Since when the connection waits for the client's next call (`None`
    /// while a statement holds it).
    idle_since: parking_lot::Mutex<Option<Instant>>,
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
        let conn = self.conn.lock().take().ok_or_else(|| {
            Error::InvalidRequest(
                "another statement of this transaction is running: a transaction runs one \
                 statement at a time"
                    .into(),
            )
        })?;
        *self.idle_since.lock() = None;
        Ok(conn)
    }

    /// The statement that took the connection can be stopped with `stop`.
    pub(super) fn running(&self, stop: Stop) {
        *self.running.lock() = Some(stop);
    }

    pub(super) fn put_back(&self, conn: PooledConnection) {
        *self.running.lock() = None;
        *self.idle_since.lock() = Some(Instant::now());
        *self.conn.lock() = Some(conn);
        self.returned.notify_waiters();
    }

    /// How long the connection has waited for the client (`None` while a
    /// statement holds it).
    pub fn idle_for(&self) -> Option<Duration> {
        self.idle_since.lock().map(|since| since.elapsed())
    }

    /// The connection for the transaction's end: the running statement, if
    /// any, is stopped and its connection waited for.
    async fn take_to_end(&self) -> PooledConnection {
        loop {
            let returned = self.returned.notified();
            if let Some(conn) = self.conn.lock().take() {
                return conn;
            }
            if let Some(stop) = self.running.lock().as_ref() {
                self.ending.store(true, Ordering::SeqCst);
                stop.stop();
            }
            returned.await;
        }
    }
}

impl Engine {
    /// Opens a transaction on a connection of its own (waiting for one like
    /// any request, under admission control). With `snapshot`, the
    /// transaction has read the lake at that snapshot already: the lake must
    /// still be there, or its write would rest on reads of another lake
    /// (a conflict).
    pub async fn begin_session(
        &self,
        audit: Option<Trail>,
        snapshot: Option<i64>,
    ) -> Result<Arc<Session>, Error> {
        let conn = self.acquire().await?;
        let lake = self.lake.name.clone();
        let conn = tokio::task::spawn_blocking(move || {
            conn.execute_batch("BEGIN TRANSACTION")
                .map_err(Error::from_duckdb)?;
            if let Some(read) = snapshot {
                let now = current_snapshot(&conn, &lake)?;
                if now != read {
                    return Err(Error::TransactionConflict(format!(
                        "the lake changed since this transaction first read it (snapshot \
                         {read}, now {now}): its reads and this write would see different \
                         data; roll it back and run it again"
                    )));
                }
            }
            Ok(conn)
        })
        .await
        .map_err(Error::internal)??;
        Ok(Arc::new(Session {
            returned: tokio::sync::Notify::new(),
            ending: AtomicBool::new(false),
            running: Default::default(),
            idle_since: parking_lot::Mutex::new(Some(Instant::now())),
            conn: parking_lot::Mutex::new(Some(conn)),
            writes: Default::default(),
            audit,
            failed: AtomicBool::new(false),
        }))
    }

    /// Ends a session: COMMIT (answering the snapshot it created, if it
    /// wrote) or ROLLBACK; its connection goes back to the pool either way
    /// and its writes are audited with how they ended. A statement still
    /// running is stopped first (which fails it, so a commit then rolls
    /// back and says so).
    pub async fn end_session(&self, session: &Session, commit: bool) -> Result<Option<i64>, Error> {
        let conn = session.take_to_end().await;
        let failed = session.failed.swap(false, Ordering::SeqCst);
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
