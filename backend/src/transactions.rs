//! Transactions held open across calls (Flight SQL's `BeginTransaction`,
//! which ADBC and DB-API with autocommit off send at connect and after every
//! commit): they cost nothing until they write.
//!
//! - **Reading.** A transaction that has not written holds no connection.
//!   Its first statement fixes its snapshot (as PostgreSQL's repeatable read
//!   takes its snapshot at the first statement, not at `BEGIN`); every read
//!   after it runs on any pooled connection pinned to that snapshot
//!   (DuckLake's time travel), read as the lake now while the lake is still
//!   there. A thousand idle DB-API connections cost a thousand handles.
//! - **Writing.** The first statement that writes takes a connection of its
//!   own and begins a DuckDB transaction there, if the lake is still at the
//!   transaction's snapshot (else the write is a conflict: its reads and its
//!   write would see different lakes). Writing transactions are bounded in
//!   total (`flight.max_writing_transactions`, half the pool by default, so
//!   the rest always serves other requests) and per key, and one that waits
//!   for its client longer than `flight.transaction_idle_timeout_ms` is
//!   rolled back; its next call is told why.
//! - **Ending.** A commit or rollback works at any point: a statement still
//!   running is stopped (a commit then rolls back and says so). A
//!   transaction that only read has nothing to commit.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use uuid::Uuid;

use crate::{
    audit::{Outcome, Trail},
    auth::Caller,
    engine::{
        session::writes_need_a_connection,
        stream::{QueryStream, Session, TransactionMode},
        timetravel::Pin,
        QueryRequest,
    },
    error::Error,
    format::encode::Format,
    role::Role,
    services::Services,
};

/// How long the reason a transaction ended on its own is kept for its
/// client's next call.
const ENDED_KEPT: Duration = Duration::from_secs(3600);
/// Reasons kept at most (the oldest go first).
const ENDED_MAX: usize = 100_000;

/// The open transactions of this replica.
pub struct Transactions {
    open: Mutex<HashMap<Uuid, Arc<Transaction>>>,
    /// Transactions that ended on their own, with why and when.
    ended: Mutex<HashMap<Uuid, (String, Instant)>>,
    /// Transactions holding a connection.
    writing: AtomicUsize,
    idle_timeout: Duration,
    max_writing: usize,
    max_writing_per_key: usize,
    max_open_per_key: usize,
}

/// One open transaction.
pub struct Transaction {
    key: Option<Uuid>,
    /// Begun by the service for one call (a prepared update's rows, all or
    /// nothing): it waits for a connection like any request, outside the
    /// writing limits, and ends with the call.
    within_a_call: bool,
    state: Mutex<State>,
    /// Taken while the transaction takes its connection (two writes at once
    /// take one).
    upgrading: tokio::sync::Mutex<()>,
    last_used: Mutex<Instant>,
    audit: Option<Trail>,
}

#[derive(Clone)]
enum State {
    /// Holds no connection; the snapshot of its first statement, once run.
    Reading(Option<i64>),
    /// Wrote: holds a connection until it ends.
    Writing(Arc<Session>),
}

/// Open transactions by what they hold, for `/metrics` and `/ready`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counts {
    /// Not written yet: no connection held.
    pub reading: usize,
    /// Wrote, a statement running on its connection.
    pub writing_active: usize,
    /// Wrote, its connection waiting for the client's next call.
    pub writing_idle: usize,
}

impl Transactions {
    pub fn new(config: &crate::config::Config) -> Self {
        let flight = &config.flight;
        let max_writing = match flight.max_writing_transactions {
            0 => (config.duckdb.connections / 2).max(1),
            n => n,
        };
        Self {
            open: Default::default(),
            ended: Default::default(),
            writing: AtomicUsize::new(0),
            idle_timeout: Duration::from_millis(flight.transaction_idle_timeout_ms),
            max_writing,
            max_writing_per_key: flight.max_writing_transactions_per_key,
            max_open_per_key: flight.max_open_transactions_per_key,
        }
    }

    /// Open transactions by what they hold.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for transaction in self.open.lock().values() {
            match &*transaction.state.lock() {
                State::Reading(_) => counts.reading += 1,
                State::Writing(session) => match session.idle_for() {
                    Some(_) => counts.writing_idle += 1,
                    None => counts.writing_active += 1,
                },
            }
        }
        counts
    }

    /// The caller's open transaction `id`.
    fn get(&self, caller: &Caller, id: Uuid) -> Result<Arc<Transaction>, Error> {
        let found = self.open.lock().get(&id).cloned();
        match found {
            Some(transaction) if transaction.key == caller.key_id => {
                *transaction.last_used.lock() = Instant::now();
                Ok(transaction)
            }
            _ => Err(self.gone(id)),
        }
    }

    /// Why `id` is not open.
    fn gone(&self, id: Uuid) -> Error {
        match self.ended.lock().get(&id) {
            Some((why, _)) => Error::TransactionEnded(format!("transaction {id} {why}")),
            None => Error::NotFound(format!(
                "no open transaction {id}: it ended, or is another key's"
            )),
        }
    }

    /// Notes why `id` ended on its own, for its client's next call.
    fn note_ended(&self, id: Uuid, why: String) {
        let mut ended = self.ended.lock();
        ended.retain(|_, (_, at)| at.elapsed() < ENDED_KEPT);
        if ended.len() >= ENDED_MAX {
            if let Some(oldest) = ended
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| *id)
            {
                ended.remove(&oldest);
            }
        }
        ended.insert(id, (why, Instant::now()));
    }

    /// Counts one more transaction that writes for `key`, within the limits.
    fn admit_writer(&self, key: Option<Uuid>) -> Result<(), Error> {
        let busy = |message: String| Error::TooManyRequests {
            message,
            retry_after_secs: 1,
        };
        if self.writing_of(key) >= self.max_writing_per_key {
            return Err(busy(format!(
                "this key already has {} transactions that wrote and are still open \
                 (flight.max_writing_transactions_per_key): commit or roll one back first",
                self.max_writing_per_key
            )));
        }
        // Counted before the connection is taken, so two at once cannot both
        // pass the limit.
        if self.writing.fetch_add(1, Ordering::SeqCst) >= self.max_writing {
            self.writing.fetch_sub(1, Ordering::SeqCst);
            return Err(busy(format!(
                "{} transactions that wrote are open, the most this replica holds \
                 (flight.max_writing_transactions): retry when one ends",
                self.max_writing
            )));
        }
        Ok(())
    }

    fn writing_of(&self, key: Option<Uuid>) -> usize {
        self.open
            .lock()
            .values()
            .filter(|t| {
                t.key == key && !t.within_a_call && matches!(*t.state.lock(), State::Writing(_))
            })
            .count()
    }
}

impl Services {
    /// `BeginTransaction`: a handle, nothing more. Beyond
    /// `flight.max_open_transactions_per_key`, the caller's least recently
    /// used transaction that has not written is ended.
    pub fn begin_transaction(
        &self,
        caller: &Caller,
        audit: Option<Trail>,
        within_a_call: bool,
    ) -> Result<Uuid, Error> {
        let transactions = &self.transactions;
        let id = Uuid::new_v4();
        let mut open = transactions.open.lock();
        let mine: Vec<(Uuid, Instant, bool)> = open
            .iter()
            .filter(|(_, t)| t.key == caller.key_id)
            .map(|(id, t)| {
                let reading = matches!(*t.state.lock(), State::Reading(_));
                (*id, *t.last_used.lock(), reading)
            })
            .collect();
        if mine.len() >= transactions.max_open_per_key {
            let oldest = mine
                .iter()
                .filter(|(_, _, reading)| *reading)
                .min_by_key(|(_, used, _)| *used)
                .map(|(id, _, _)| *id);
            let Some(oldest) = oldest else {
                return Err(Error::TooManyRequests {
                    message: format!(
                        "this key has {} transactions open, every one holding writes: commit \
                         or roll one back",
                        mine.len()
                    ),
                    retry_after_secs: 1,
                });
            };
            open.remove(&oldest);
            drop(open);
            transactions.note_ended(
                oldest,
                format!(
                    "was ended: its key opened more than {} transactions \
                     (flight.max_open_transactions_per_key) and it was the least recently used",
                    transactions.max_open_per_key
                ),
            );
            open = transactions.open.lock();
        }
        open.insert(
            id,
            Arc::new(Transaction {
                key: caller.key_id,
                within_a_call,
                state: Mutex::new(State::Reading(None)),
                upgrading: Default::default(),
                last_used: Mutex::new(Instant::now()),
                audit,
            }),
        );
        Ok(id)
    }

    /// Runs `request` (its role and audit the caller's) in the caller's
    /// transaction `id`.
    pub async fn query_in_transaction(
        self: &Arc<Self>,
        caller: &Caller,
        id: Uuid,
        request: QueryRequest,
        format: Format,
    ) -> Result<QueryStream, Error> {
        let transaction = self.transactions.get(caller, id)?;
        loop {
            let state = transaction.state.lock().clone();
            let snapshot = match state {
                State::Writing(session) => {
                    let request = QueryRequest {
                        session: Some(session),
                        ..request
                    };
                    return self.query(request, format, TransactionMode::Session).await;
                }
                State::Reading(snapshot) => snapshot,
            };
            // A pin of the caller's own (a call header) reads where it says.
            let own_pin = request.pin.is_some();
            let read = QueryRequest {
                deferred: true,
                pin: request.pin.clone().or(snapshot.map(Pin::Version)),
                ..request.clone()
            };
            match self.query(read, format, TransactionMode::ReadOnly).await {
                Ok(stream) => {
                    if own_pin {
                        return Ok(stream);
                    }
                    if let State::Reading(first @ None) = &mut *transaction.state.lock() {
                        *first = stream.versions.snapshot;
                    }
                    return Ok(stream);
                }
                // A key that may not write takes no connection for trying:
                // refused (and audited) as the sandbox refuses it.
                Err(err) if writes_need_a_connection(&err) && caller.role < Role::Write => {
                    let refusal = Error::InsufficientRole(format!(
                        "this statement writes, which needs the write role; the request has \
                         the {} role",
                        caller.role
                    ));
                    if let Some(trail) = &request.audit {
                        trail.record(
                            trail
                                .event("statement", Outcome::Refused)
                                .detail("error", refusal.code())
                                .detail("reason", refusal.to_string())
                                .sql(&request.sql),
                        );
                    }
                    return Err(refusal);
                }
                Err(err) if writes_need_a_connection(&err) => {
                    self.hold_a_connection(caller, id, &transaction, snapshot)
                        .await?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A bulk ingest that names the caller's transaction `id`: it joins it
    /// (taking the transaction's connection, as a write does); the rows
    /// loaded, committed or not with the transaction.
    pub async fn load_in_transaction(
        self: &Arc<Self>,
        caller: &Caller,
        id: Uuid,
        load: crate::services::Load<'_>,
    ) -> Result<u64, Error> {
        let transaction = self.transactions.get(caller, id)?;
        let session = loop {
            let state = transaction.state.lock().clone();
            match state {
                State::Writing(session) => break session,
                State::Reading(snapshot) => {
                    self.hold_a_connection(caller, id, &transaction, snapshot)
                        .await?
                }
            }
        };
        let timeout = Duration::from_millis(self.config.ingest.timeout_ms);
        self.engine
            .load_in_session(&session, load.file(), timeout)
            .await
    }

    /// The transaction's first write: a connection of its own, within the
    /// limits, and its idle watch.
    async fn hold_a_connection(
        self: &Arc<Self>,
        caller: &Caller,
        id: Uuid,
        transaction: &Arc<Transaction>,
        snapshot: Option<i64>,
    ) -> Result<(), Error> {
        let _upgrading = transaction.upgrading.lock().await;
        if matches!(*transaction.state.lock(), State::Writing(_)) {
            return Ok(());
        }
        // The service's own transaction for one call is outside the limits.
        let counted = !transaction.within_a_call;
        if counted {
            self.transactions.admit_writer(caller.key_id)?;
        }
        let session = match self
            .engine
            .begin_session(transaction.audit.clone(), snapshot)
            .await
        {
            Ok(session) => session,
            Err(err) => {
                if counted {
                    self.transactions.writing.fetch_sub(1, Ordering::SeqCst);
                }
                return Err(err);
            }
        };
        *transaction.state.lock() = State::Writing(Arc::clone(&session));
        tracing::info!(%id, key = %caller.prefix, "transaction writes: it holds a connection");
        // Also a call dropped half-way is left to the idle watch.
        self.watch_idle(id, Arc::downgrade(transaction), Arc::downgrade(&session));
        Ok(())
    }

    /// Rolls back the transaction once its connection waits for the client
    /// longer than `flight.transaction_idle_timeout_ms`.
    fn watch_idle(
        self: &Arc<Self>,
        id: Uuid,
        transaction: Weak<Transaction>,
        session: Weak<Session>,
    ) {
        let services = Arc::downgrade(self);
        let timeout = self.transactions.idle_timeout;
        tokio::spawn(async move {
            loop {
                let idle = match session.upgrade() {
                    Some(session) => session.idle_for(),
                    None => return,
                };
                let wait = match idle {
                    Some(idle) if idle >= timeout => Duration::ZERO,
                    Some(idle) => timeout - idle,
                    None => timeout,
                };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let (Some(services), Some(transaction)) =
                    (services.upgrade(), transaction.upgrade())
                else {
                    return;
                };
                let removed = {
                    let mut open = services.transactions.open.lock();
                    match open.get(&id) {
                        Some(t) if Arc::ptr_eq(t, &transaction) => open.remove(&id),
                        _ => None,
                    }
                };
                if removed.is_none() {
                    return;
                }
                services.transactions.note_ended(
                    id,
                    format!(
                        "was rolled back: it wrote and then waited for its client longer than \
                         {} ms (flight.transaction_idle_timeout_ms)",
                        timeout.as_millis()
                    ),
                );
                tracing::warn!(%id, "a transaction that wrote was left idle: rolled back");
                let _ = services.finish(&transaction, false).await;
                return;
            }
        });
    }

    /// `EndTransaction`: commit or roll back; the snapshot a commit created
    /// (none when it wrote nothing).
    pub async fn end_transaction(
        &self,
        caller: &Caller,
        id: Uuid,
        commit: bool,
    ) -> Result<Option<i64>, Error> {
        let transaction = self.transactions.get(caller, id)?;
        // Only the call that takes it out ends it (two ends may race).
        let taken = {
            let mut open = self.transactions.open.lock();
            match open.get(&id) {
                Some(t) if Arc::ptr_eq(t, &transaction) => open.remove(&id),
                _ => None,
            }
        };
        if taken.is_none() {
            return Err(self.transactions.gone(id));
        }
        self.finish(&transaction, commit).await
    }

    /// Rolls back every open transaction (the service is shutting down);
    /// their next calls are told why.
    pub async fn end_all_transactions(&self) {
        let all: Vec<(Uuid, Arc<Transaction>)> = self.transactions.open.lock().drain().collect();
        if all.is_empty() {
            return;
        }
        tracing::info!(open = all.len(), "rolling back the open transactions");
        for (id, transaction) in all {
            self.transactions
                .note_ended(id, "was rolled back: the service shut down".to_string());
            let _ = self.finish(&transaction, false).await;
        }
    }

    /// Ends a transaction taken out of the open ones.
    async fn finish(&self, transaction: &Transaction, commit: bool) -> Result<Option<i64>, Error> {
        // A write taking its connection finishes first.
        let _upgrading = transaction.upgrading.lock().await;
        let state = std::mem::replace(&mut *transaction.state.lock(), State::Reading(None));
        match state {
            State::Reading(_) => Ok(None),
            State::Writing(session) => {
                let ended = self.engine.end_session(&session, commit).await;
                if !transaction.within_a_call {
                    self.transactions.writing.fetch_sub(1, Ordering::SeqCst);
                }
                ended
            }
        }
    }
}
