//! Streaming a query result to the client, batch by batch.
//!
//! A blocking thread owns the pooled connection: it prepares, binds and
//! executes the request, reads DuckDB's streaming result one chunk at a time,
//! encodes it in the requested format and sends the bytes through a bounded
//! channel (at most [`CHANNEL_CHUNKS`] chunks of at most [`MAX_CHUNK_BYTES`]
//! wait there; an Arrow chunk is one DuckDB chunk's batch), so memory stays
//! flat whatever the result size. Once a result outgrows the
//! first window, encoding moves to a thread of its own
//! ([`Pipelined`](crate::format::encode::Pipelined)) and overlaps DuckDB.
//!
//! The first [`WINDOW_BYTES`] are held back: a result that ends within them is
//! answered whole, with an exact `Content-Length`, row count and truncation
//! flag in the headers, and an error is still a proper JSON error response.
//! A longer result streams with chunked transfer encoding, unless the client
//! set `max_rows`: then the head waits for the row limit or the end (the
//! bytes beyond the window wait in a temporary file), so the headers carry
//! the row count and truncation in every format. An error after the
//! first bytes left (a timeout, an outage) aborts the response without its
//! terminating chunk, which every HTTP client reports as an incomplete body.
//! A client that goes away drops the body: that stops the request's
//! statements ([`Stop`], which also covers the ones not yet started) and the
//! connection goes back to the pool.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use duckdb::arrow::array::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use crate::{
    audit::{Outcome, Trail},
    cache::{Answer, CacheStatus, Capture},
    engine::{
        body::StreamGuard,
        catalog::{current_snapshot, last_change, last_committed, same_schema},
        database::Engine,
        query::Params,
        sandbox,
        session::{record_writes, Write},
        stop::Stop,
        timetravel,
        timetz::timetz_as_text,
    },
    error::Error,
    format::encode::{Format, Pipelined, ResultHead, Summary},
    format::types::{Column, DuckType},
    role::Role,
};

/// Bytes held back before the response starts.
pub const WINDOW_BYTES: usize = 256 * 1024;
/// Size of one chunk of a streamed response.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting in the channel at most.
const CHANNEL_CHUNKS: usize = 8;
/// The largest chunk the channel takes whole; a larger one (a Parquet row
/// group, flushed at once) goes as [`CHUNK_BYTES`] slices of it. Arrow's
/// chunks stay whole (each is whole IPC messages of one DuckDB chunk, which
/// Flight frames without copying).
const MAX_CHUNK_BYTES: usize = 4 * CHUNK_BYTES;

pub use super::{
    body::BodyStream,
    session::{Session, TransactionMode},
};

/// One SQL request as the engine sees it.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    pub sql: String,
    pub params: Params,
    pub timeout_ms: Option<u64>,
    pub max_rows: Option<u64>,
    /// What the caller may do; the sandbox refuses anything beyond it.
    pub role: crate::role::Role,
    /// Read the lake as of this snapshot (SELECT statements only).
    pub pin: Option<timetravel::Pin>,
    /// The client's `If-None-Match`: a matching, still valid ETag answers
    /// "not modified" instead of the result.
    pub if_none_match: Option<String>,
    /// Set to read DuckDB's progress estimate while the request runs.
    pub progress: Option<super::progress::ProgressProbe>,
    /// Where the request's writes and refused statements are recorded.
    pub audit: Option<crate::audit::Trail>,
    /// Carry a TIME WITH TIME ZONE as DuckDB's text (which keeps its
    /// offset) in every format, Arrow too: a job's spooled result, which
    /// is read later in any format. Text formats always do.
    pub timetz_as_text: bool,
    /// The open transaction this request runs in (with
    /// `TransactionMode::Session`).
    pub session: Option<Arc<Session>>,
    /// Read the lake itself: no kept answer, no hot table copy (the
    /// client's `Cache-Control: no-cache`).
    pub fresh: bool,
    /// A statement of a transaction that has not written yet (see
    /// [`crate::transactions`]): it runs read-only, pinned to the
    /// transaction's snapshot (read as the lake now while the lake is still
    /// there), and a write answers [`super::session::writes_need_a_connection`]
    /// instead of a refusal, so the transaction can take a connection of
    /// its own and run it again.
    pub deferred: bool,
}

/// What one result may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Rows at most; beyond, the result is cut and flagged truncated.
    pub max_rows: u64,
    /// Encoded bytes at most; beyond, the result is cut after that batch.
    pub max_bytes: u64,
}

/// The start of a response: its columns and what is already encoded.
pub struct QueryStream {
    pub columns: Vec<Column>,
    /// DuckDB's logical type of each column (what the JSON mapping needs
    /// beside the Arrow schema).
    pub types: Vec<DuckType>,
    /// Set when the result ended before the response started: the whole
    /// result fit in the window (`body` then holds all of it), or the
    /// client set `max_rows` and the head waited for the end.
    pub complete: Option<Summary>,
    /// Bytes of a complete body that did not fit in the window (they wait
    /// in a temporary file and stream from there).
    pub held_length: Option<u64>,
    pub body: BodyStream,
    pub versions: Versions,
}

/// Which snapshot a response read or created, and its cache validator.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    /// The snapshot read (reads) or created by the last commit (writes;
    /// known only when the result fit in the first window).
    pub snapshot: Option<i64>,
    /// Reads of deterministic queries only.
    pub etag: Option<String>,
    /// The client's ETag still holds: answer 304, no body.
    pub not_modified: bool,
    /// What the result cache did (`X-Cache`).
    pub cache: CacheStatus,
    /// The kept answer a hit is served from (whose digest a file read's
    /// ETag names, computed once when first asked for).
    pub kept: Option<Arc<crate::cache::Entry>>,
}

struct Head {
    columns: Vec<Column>,
    types: Vec<DuckType>,
    prefix: Vec<u8>,
    complete: Option<Summary>,
    held_length: Option<u64>,
    versions: Versions,
}

impl Engine {
    /// Starts `request` and answers once the first window is encoded, the
    /// result ended, or it failed before producing output.
    pub async fn stream(
        &self,
        request: QueryRequest,
        format: Format,
        mode: TransactionMode,
    ) -> Result<QueryStream, Error> {
        let limits = self.limits_for(&request);
        self.stream_with(request, format, mode, limits).await
    }

    /// What a request may take: its timeout and row limit within the
    /// server's, and the server's byte limit.
    fn limits_for(&self, request: &QueryRequest) -> Limits {
        Limits {
            timeout: self.timeout_for(request.timeout_ms),
            max_rows: self.max_rows_for(request.max_rows),
            max_bytes: self.max_result_bytes,
        }
    }

    /// [`Engine::stream`] whose answer goes into the result cache if it
    /// turns out cacheable (a read that gets an ETag) and arrives whole.
    pub async fn stream_capturing(
        &self,
        request: QueryRequest,
        format: Format,
        mode: TransactionMode,
        capture: Capture,
    ) -> Result<QueryStream, Error> {
        let limits = self.limits_for(&request);
        self.run_stream(request, format, mode, limits, Some(capture))
            .await
    }

    /// The answer kept by the cache, as a stream. `snapshot` is the one it
    /// was checked current at.
    pub fn kept(
        entry: &Arc<crate::cache::Entry>,
        snapshot: i64,
        not_modified: bool,
    ) -> QueryStream {
        let body = if not_modified {
            Bytes::new()
        } else {
            entry.body.clone()
        };
        let answer = &entry.answer;
        QueryStream {
            columns: answer.columns.clone(),
            types: answer.types.clone(),
            complete: Some(answer.summary),
            held_length: None,
            body: BodyStream::whole(body, answer.summary.row_count),
            versions: Versions {
                snapshot: Some(snapshot),
                etag: answer.etag.clone(),
                not_modified,
                cache: CacheStatus::Hit,
                kept: Some(Arc::clone(entry)),
            },
        }
    }

    /// [`Engine::stream`] under limits of the caller's choosing (async
    /// jobs have their own timeout and fail rather than truncate).
    pub async fn stream_with(
        &self,
        request: QueryRequest,
        format: Format,
        mode: TransactionMode,
        limits: Limits,
    ) -> Result<QueryStream, Error> {
        self.run_stream(request, format, mode, limits, None).await
    }

    async fn run_stream(
        &self,
        request: QueryRequest,
        format: Format,
        mode: TransactionMode,
        limits: Limits,
        capture: Option<Capture>,
    ) -> Result<QueryStream, Error> {
        let started = Instant::now();
        self.check_sql_text(&request.sql)?;
        // Before the timeout runs: an empty request is the client's mistake
        // however short its timeout.
        // (Only blanks here, on the async side: a text of comments alone is
        // found empty by DuckDB's parser, on the query's thread.)
        if request.sql.trim().is_empty() {
            return Err(Error::InvalidParameters("sql is empty".into()));
        }
        let Limits {
            timeout,
            max_rows,
            max_bytes,
        } = limits;
        let session = request.session.clone();
        if session.is_some() != (mode == TransactionMode::Session) {
            return Err(Error::internal(anyhow::anyhow!(
                "a session request must run in session mode, and only it"
            )));
        }
        let mut conn = match &session {
            Some(session) => session.take()?,
            None => self.acquire().await?,
        };
        let stop = Stop::new(conn.interrupt_handle());
        if let Some(session) = &session {
            session.running(stop.clone());
        }
        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let stop = stop.clone();
            let timed_out = Arc::clone(&timed_out);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                timed_out.store(true, Ordering::SeqCst);
                stop.stop();
            })
        };
        let mut guard = StreamGuard {
            stop: Some(stop.clone()),
            watchdog: Some(watchdog.abort_handle()),
        };
        let (head_tx, head_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let flag = Arc::clone(&timed_out);
        let rows = Arc::new(AtomicU64::new(0));
        let rows_sent = Arc::clone(&rows);
        let lake = self.lake.name.clone();
        let shutting_down = Arc::clone(&self.shutting_down);
        let hot = Arc::clone(&self.hot);
        let commit_sql = format!("{}; COMMIT", self.pool.reset_sql());
        // A statement of a held transaction runs to its end before its
        // answer starts (what does not fit in memory waits on disk): its
        // connection goes back to the transaction at once, so a commit or
        // rollback never waits for a client reading slowly, or not at all.
        let hold = (request.max_rows.is_some() || mode == TransactionMode::Session)
            .then(|| Held::new(self.tmp_dir.clone()));
        if let Some(probe) = &request.progress {
            probe.attach(conn.interrupt_handle());
        }
        // The query thread's log lines belong to the request.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _request = span.enter();
            let mut producer = Producer {
                shutting_down,
                pinned: request.pin.is_some(),
                deferred: request.deferred,
                session: session.clone(),
                client_max_rows: request.max_rows.is_some(),
                tail: None,
                commit_sql,
                settled: false,
                reads: Reads::default(),
                versions: Versions::default(),
                lake,
                max_bytes,
                sent_bytes: 0,
                head_tx: Some(head_tx),
                tx,
                timed_out: flag,
                timeout,
                rows: rows_sent,
                types: Vec::new(),
                hold,
                audit: request.audit.clone(),
                writes: Vec::new(),
                capture,
                hot,
                whole_chunks: format == Format::Arrow,
            };
            let mut outcome = producer.run(&conn, &request, format, mode, max_rows, started);
            // A single auto-commit statement that lost a commit race (after
            // DuckLake's own retries) can safely run once more, as long as
            // nothing of its answer has left yet.
            if matches!(outcome, Err(Error::TransactionConflict(_)))
                && mode == TransactionMode::AutoCommit
                && producer.head_tx.is_some()
                && sandbox::count_statements(&request.sql).is_ok_and(|n| n == Ok(1))
            {
                tracing::info!(
                    "write conflict on a single auto-commit statement: running it again"
                );
                let _ = conn.execute_batch("ROLLBACK");
                producer.reads = Reads::default();
                producer.versions = Versions::default();
                producer.writes.clear();
                producer.sent_bytes = 0;
                producer.hold = producer.hold.take().map(|held| Held::new(held.dir));
                outcome = producer.run(&conn, &request, format, mode, max_rows, started);
            }
            if let (Err(_), Some(session)) = (&outcome, &session) {
                session.failed.store(true, Ordering::SeqCst);
            }
            let failure = outcome.err().map(|err| {
                let err = producer.overruled(err);
                // What did not commit is recorded as failed.
                producer.audit_writes(Outcome::Failed, None, Some(&err));
                err
            });
            if let Some(probe) = &request.progress {
                probe.detach();
            }
            stop.release();
            if let Some(session) = &session {
                // The connection is back before the client hears anything:
                // its next call (a commit, a rollback, another statement)
                // finds it there.
                session.writes.lock().append(&mut producer.writes);
                session.put_back(conn);
                match failure {
                    Some(err) => producer.fail(err),
                    None => producer.send_tail(),
                }
            } else {
                if let Some(err) = failure {
                    producer.fail(err);
                }
                if producer.settled {
                    conn.settled();
                }
                // The response ends with the producer (its channel); the
                // connection's reset, if any, comes after.
                drop(producer);
                drop(conn);
            }
        });
        match head_rx.await {
            Ok(Ok(head)) => Ok(QueryStream {
                versions: head.versions,
                columns: head.columns,
                types: head.types,
                complete: head.complete,
                held_length: head.held_length,
                body: BodyStream {
                    prefix: Some(Bytes::from(head.prefix)),
                    rx,
                    guard,
                    rows,
                },
            }),
            Ok(Err(err)) => {
                guard.disarm();
                self.count_conflict(&err);
                Err(err)
            }
            Err(_) => {
                guard.disarm();
                Err(Error::internal(anyhow::anyhow!(
                    "the query thread ended without an answer"
                )))
            }
        }
    }
}

struct Producer {
    shutting_down: Arc<AtomicBool>,
    /// The request reads at a snapshot pin.
    pinned: bool,
    /// A statement of a transaction that has not written
    /// ([`QueryRequest::deferred`]).
    deferred: bool,
    /// The transaction the request runs in, if any.
    session: Option<Arc<Session>>,
    /// The client set `max_rows`: a cut result is flagged, not refused.
    client_max_rows: bool,
    /// A held result of a transaction's statement, sent once the
    /// connection is back with the transaction.
    tail: Option<Tail>,
    /// The commit that ends a request, with the pool's reset before it.
    commit_sql: String,
    /// The request committed with [`Producer::commit_sql`]: the connection
    /// needs no reset.
    settled: bool,
    /// What the statements checked so far read and did.
    reads: Reads,
    /// Sent with the head.
    versions: Versions,
    /// The lake's catalog name, for the sandbox.
    lake: String,
    /// Encoded bytes of one result at most (`query.max_result_bytes`).
    max_bytes: u64,
    /// Encoded bytes handed on so far.
    sent_bytes: u64,
    head_tx: Option<oneshot::Sender<Result<Head, Error>>>,
    tx: mpsc::Sender<Result<Bytes, Error>>,
    timed_out: Arc<AtomicBool>,
    timeout: Duration,
    /// Rows encoded so far, shared with the body for metrics.
    rows: Arc<AtomicU64>,
    /// The result's column types, for the head.
    types: Vec<DuckType>,
    /// With `max_rows` from the client: where the result waits until its
    /// row count and truncation are known, so every format gets them as
    /// headers.
    hold: Option<Held>,
    /// Where writes and refusals are recorded.
    audit: Option<Trail>,
    /// Write statements checked and run but not yet committed.
    writes: Vec<Write>,
    /// Where a cacheable answer goes, as it is encoded.
    capture: Option<Capture>,
    /// Copies of lake tables a plain read may be served from.
    hot: Arc<super::hot::HotTables>,
    /// Chunks go whole, however large (see [`MAX_CHUNK_BYTES`]).
    whole_chunks: bool,
}

/// A result held back until its end: the first window in memory, the rest
/// in an unnamed temporary file (gone when closed).
struct Held {
    dir: std::path::PathBuf,
    prefix: Option<Vec<u8>>,
    spill: Option<std::fs::File>,
    length: u64,
}

impl Held {
    fn new(dir: std::path::PathBuf) -> Self {
        Self {
            dir,
            prefix: None,
            spill: None,
            length: 0,
        }
    }

    fn push(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        use std::io::Write;
        self.length += bytes.len() as u64;
        if self.prefix.is_none() {
            self.prefix = Some(bytes);
            return Ok(());
        }
        if self.spill.is_none() {
            self.spill = Some(tempfile::tempfile_in(&self.dir).map_err(Error::internal)?);
        }
        let spill = self.spill.as_mut().expect("created above");
        spill.write_all(&bytes).map_err(Error::internal)
    }
}

/// A held result waiting to be sent: see [`Producer::send_tail`].
struct Tail {
    columns: Vec<Column>,
    held: Held,
    rest: Vec<u8>,
    summary: Summary,
}

/// What a request's statements touch, from their plans.
#[derive(Default)]
struct Reads {
    tables: Vec<(String, String)>,
    /// A statement needs more than the read role.
    wrote: bool,
    /// A statement calls a function whose result varies between runs.
    volatile: bool,
    /// A statement reads a virtual column of a lake table (which a copy
    /// does not have).
    virtual_columns: bool,
    /// A statement reads a source with no lake version (see
    /// [`sandbox::Inspection::unversioned`]).
    unversioned: bool,
}

/// The client went away: stop producing.
struct Gone;

/// `bytes` as the chunks the channel takes: cut into [`CHUNK_BYTES`] slices
/// (no copy) while more than [`MAX_CHUNK_BYTES`] are left.
fn pieces(mut bytes: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        let take = if bytes.len() > MAX_CHUNK_BYTES {
            CHUNK_BYTES
        } else {
            bytes.len()
        };
        (take > 0).then(|| bytes.split_to(take))
    })
}

/// How long a leading run waits for its client to take a chunk before the
/// requests waiting for its answer go (see [`Capture::release_followers`]):
/// a client that takes [`CHUNK_BYTES`] slower than this reads at a few
/// hundred KB/s, or not at all.
const LEADER_PATIENCE: Duration = Duration::from_millis(250);

enum Room {
    Sent,
    Gone,
    /// No room within [`LEADER_PATIENCE`]: the chunk back.
    Full(Result<Bytes, Error>),
}

/// Sends `chunk` if the channel has room now or within [`LEADER_PATIENCE`].
fn wait_for_room(tx: &mpsc::Sender<Result<Bytes, Error>>, chunk: Result<Bytes, Error>) -> Room {
    let chunk = match tx.try_send(chunk) {
        Ok(()) => return Room::Sent,
        Err(mpsc::error::TrySendError::Closed(_)) => return Room::Gone,
        Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Room::Full(chunk);
    };
    match runtime.block_on(tokio::time::timeout(LEADER_PATIENCE, tx.reserve())) {
        Ok(Ok(permit)) => {
            permit.send(chunk);
            Room::Sent
        }
        Ok(Err(_)) => Room::Gone,
        Err(_) => Room::Full(chunk),
    }
}

impl Producer {
    fn run(
        &mut self,
        conn: &duckdb::Connection,
        request: &QueryRequest,
        format: Format,
        mode: TransactionMode,
        max_rows: u64,
        started: Instant,
    ) -> Result<(), Error> {
        let pieces = sandbox::split_statements(&request.sql)?;
        if pieces.is_empty() {
            return Err(Error::InvalidParameters("sql is empty".into()));
        }
        // Every statement is checked and run inside one transaction, so the
        // plan the sandbox inspected is the plan DuckDB runs (a view
        // replaced in between cannot slip through).
        let read_only = mode == TransactionMode::ReadOnly;
        let begin = if read_only {
            "BEGIN TRANSACTION READ ONLY"
        } else {
            "BEGIN TRANSACTION"
        };
        let lake = self.lake.clone();
        let ask = sandbox::Ask {
            lake: &lake,
            role: request.role,
            read_only,
            copies: &[],
        };
        if mode != TransactionMode::Session {
            conn.execute_batch(begin).map_err(|e| self.duck(e))?;
        }
        // A transaction's read while the lake is still at its snapshot.
        let mut pinned_now = false;
        let pieces = match &request.pin {
            // A transaction's read while the lake is still at its snapshot:
            // the lake now is the lake then, no rewrite needed (every scan
            // is still checked to read that snapshot).
            Some(timetravel::Pin::Version(version))
                if self.deferred && current_snapshot(conn, &self.lake)? == *version =>
            {
                self.versions.snapshot = Some(*version);
                pinned_now = true;
                pieces.into_iter().map(str::to_string).collect()
            }
            Some(pin) if self.deferred => {
                let (snapshot, clause) = timetravel::resolve(conn, &self.lake, pin)?;
                self.versions.snapshot = Some(snapshot);
                let mut pinned = Vec::with_capacity(pieces.len());
                for piece in &pieces {
                    match timetravel::pin_statement(conn, piece, &clause) {
                        Ok(sql) => pinned.push(sql),
                        Err(err) => return Err(self.unpinnable(conn, piece, snapshot, err, ask)),
                    }
                }
                pinned
            }
            Some(pin) => {
                let (snapshot, clause) = timetravel::resolve(conn, &self.lake, pin)?;
                self.versions.snapshot = Some(snapshot);
                pieces
                    .iter()
                    .map(|piece| timetravel::pin_statement(conn, piece, &clause))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                self.versions.snapshot = Some(current_snapshot(conn, &self.lake)?);
                pieces.into_iter().map(str::to_string).collect()
            }
        };
        let (last, leading) = pieces.split_last().expect("pieces is not empty");
        // Parameters bind to the last statement only: an earlier one is
        // checked and run with none, and one of its placeholders is the
        // client's mistake.
        let earlier = |err: Error| match err {
            Error::InvalidParameters(_) => Error::InvalidParameters(
                "parameters bind to the last statement of a request only; an earlier \
                 statement has a placeholder"
                    .into(),
            ),
            other => other,
        };
        for piece in leading {
            let checked = self
                .check(conn, piece, &Params::None, ask)
                .map_err(earlier)?;
            if let Some(checked) = checked {
                checked.execute(conn, |e| self.duck(e)).map_err(earlier)?;
                if mode == TransactionMode::AutoCommit {
                    conn.execute_batch("COMMIT; BEGIN TRANSACTION")
                        .map_err(|e| self.duck(e))?;
                    if !self.writes.is_empty() {
                        let snapshot = last_committed(conn, &self.lake).ok();
                        self.audit_writes(Outcome::Ok, snapshot, None);
                    }
                }
            }
        }
        let Some(checked) = self.check(conn, last, &request.params, ask)? else {
            return Err(Error::InvalidParameters(
                "the last statement of the request is empty".into(),
            ));
        };
        // What the plan cannot show (a table function's arguments, an AT
        // clause's time) is read from DuckDB's parse tree of the statement.
        let mut tree = None;
        if !self.reads.wrote && !self.reads.volatile && !self.reads.unversioned {
            let (variance, parsed) = sandbox::hidden_variance(conn, &checked)?;
            if let Some(reason) = variance {
                tracing::debug!(reason, "the answer may vary: not kept, no ETag");
                self.reads.volatile = true;
            }
            tree = Some(parsed);
        }
        // An ETag only for what can be revalidated exactly: a read of lake
        // tables (and fixed sources) alone, whose last change is known.
        if !self.reads.wrote && !self.reads.volatile && !self.reads.unversioned {
            // The same rule decides what the result cache may keep.
            if self.capture.is_some() {
                self.versions.cache = CacheStatus::Miss;
            }
            let hash = request_hash(request, format, max_rows);
            let read = self.versions.snapshot.unwrap_or_default();
            if let Some(held) = &request.if_none_match {
                for old in timetravel::matching_snapshots(held, &hash) {
                    // Unchanged since `old`: no DDL in the lake (a view
                    // redefined, a table dropped or altered changes what
                    // the same SQL reads, and no table's data shows it),
                    // and none of the tables read has new data.
                    let still = old == read
                        || (request.pin.is_none()
                            && old < read
                            && same_schema(conn, &self.lake, old, read)?
                            && last_change(conn, &self.lake, &self.reads.tables)? <= old);
                    if still {
                        self.versions.etag = Some(timetravel::etag(old, &hash));
                        self.versions.not_modified = true;
                        let _ = self.send(&[], Vec::new(), Some(Summary::default()));
                        return Ok(());
                    }
                }
            }
            self.versions.etag = Some(timetravel::etag(read, &hash));
        }
        if self.versions.cache != CacheStatus::Miss {
            // Not for the cache after all: requests waiting for this run's
            // answer run their own now.
            self.capture = None;
        }
        // A plain read may be served from copies of the tables it reads:
        // the service's rewrite onto them is checked like any statement,
        // allowed to read those copies and nothing else besides the lake.
        let mut copies: Vec<String> = Vec::new();
        let hot = if mode != TransactionMode::Session
            // (copies are of the lake now, which a transaction's read at
            // the lake's current snapshot reads too)
            && (request.pin.is_none() || pinned_now)
            && !request.fresh
            && leading.is_empty()
            && !self.reads.wrote
            && !self.reads.tables.is_empty()
            && !checked.is_explain()
            // A copy has no virtual columns, and a varying function such as
            // current_query() would show the rewrite.
            && !self.reads.virtual_columns
            && !self.reads.volatile
        {
            let now = self.versions.snapshot.unwrap_or_default();
            match self
                .hot
                .rewrite(conn, checked.sql(), tree, &self.reads.tables, now)?
            {
                Some((sql, named)) => {
                    copies = named;
                    let ask = sandbox::Ask {
                        copies: &copies,
                        ..ask
                    };
                    // A rewrite DuckDB cannot plan (a copy dropped meanwhile,
                    // a column qualified with the table's schema) is not
                    // used; one the sandbox refuses fails the request.
                    match checked.derive(conn, &sql, ask, &|e| self.duck(e)) {
                        Ok(derived) => derived,
                        Err(err) if is_refusal(&err) => return Err(err),
                        Err(_) => None,
                    }
                }
                None => None,
            }
        } else {
            None
        };
        let run = match &hot {
            Some(rewritten) => match rewritten.start(conn, |e| self.duck(e)) {
                Ok(started) => {
                    self.hot.served();
                    Some((rewritten, started))
                }
                Err(_) => None,
            },
            None => None,
        };
        // A listing of tables (duckdb_tables(), information_schema ...)
        // leaves the copies out: it runs rewritten, checked like any other.
        let unlisted = match run {
            None if sandbox::lists_tables(checked.inspection()) => {
                match sandbox::without_copies(conn, checked.sql())? {
                    Some(sql) => checked.derive(conn, &sql, ask, &|e| self.duck(e))?,
                    None => None,
                }
            }
            _ => None,
        };
        let run = match (&unlisted, run) {
            (Some(rewritten), _) => Some((rewritten, rewritten.start(conn, |e| self.duck(e))?)),
            (None, run) => run,
        };
        let (ran, (mut stmt, mut schema)) = match run {
            Some(run) => run,
            None => (&checked, checked.start(conn, |e| self.duck(e))?),
        };
        let count = stmt.column_count();
        let types: Vec<DuckType> = (0..count)
            .map(|i| {
                DuckType::from_logical(&stmt.column_logical_type(i), schema.field(i).data_type())
            })
            .collect();
        // DuckDB's Arrow export drops a TIME WITH TIME ZONE's offset. A text
        // format (and a job's spool) gets it as DuckDB's own text instead:
        // the read runs again (nothing of it was fetched, and it writes
        // nothing) with those columns cast to VARCHAR (nested ones too),
        // keeping their names and reported types.
        // A statement that cannot be wrapped (SHOW, PIVOT ...) keeps
        // DuckDB's Arrow rendering.
        // The wrapping is a statement of its own, checked like any other.
        if (format.is_text() || request.timetz_as_text) && !self.reads.wrote {
            if let Some(sql) = timetz_as_text(ran.sql(), &types, &stmt) {
                drop(stmt);
                let ask = sandbox::Ask {
                    copies: &copies,
                    ..ask
                };
                let wrapped = match ran.derive(conn, &sql, ask, &|e| self.duck(e)) {
                    Ok(Some(wrapped)) => wrapped.start(conn, |e| self.duck(e)),
                    Ok(None) => Err(Error::InvalidRequest("nothing to run".into())),
                    Err(err) => Err(err),
                };
                (stmt, schema) = match wrapped {
                    Ok(rewritten) => rewritten,
                    Err(_) => ran.start(conn, |e| self.duck(e))?,
                };
            }
        }
        let columns: Vec<Column> = (0..count)
            .map(|i| Column {
                name: stmt.column_name(i).cloned().unwrap_or_default(),
                type_name: types[i].name.clone(),
            })
            .collect();
        let head = ResultHead {
            columns: columns.clone(),
            types,
            schema,
        };
        self.types = head.types.clone();
        let mut encoder = format.encoder(&head)?;
        let mut pipelined = false;
        let mut summary = Summary::default();
        loop {
            let Some(chunk) = stmt.step().map_err(|e| self.duck(e))? else {
                break;
            };
            let batch = RecordBatch::from(&chunk);
            let room = (max_rows - summary.row_count) as usize;
            let batch = if batch.num_rows() > room {
                summary.truncated = true;
                batch.slice(0, room)
            } else {
                batch
            };
            summary.row_count += batch.num_rows() as u64;
            self.rows.store(summary.row_count, Ordering::Relaxed);
            encoder.batch(&batch)?;
            let over_bytes = self.sent_bytes + encoder.pending() as u64 >= self.max_bytes;
            if over_bytes {
                summary.truncated = true;
            }
            if summary.truncated {
                self.refuse_a_silent_cut(format, max_rows, over_bytes)?;
                break;
            }
            // The first window stays in memory whatever happens (a held
            // result that ends within it never touches the disk).
            let window = match &self.hold {
                None => self.head_tx.is_some(),
                Some(held) => held.prefix.is_none(),
            };
            let threshold = if window { WINDOW_BYTES } else { CHUNK_BYTES };
            if encoder.pending() >= threshold {
                let bytes = encoder.take();
                self.capture(&bytes);
                if let Some(hold) = &mut self.hold {
                    self.sent_bytes += bytes.len() as u64;
                    hold.push(bytes)?;
                    if self.head_tx.as_ref().is_some_and(|head| head.is_closed()) {
                        return Ok(()); // the client went away
                    }
                } else if self.send(&columns, bytes, None).is_err() {
                    return Ok(());
                }
            }
            // A result longer than the window: encode it beside DuckDB.
            let long = self.head_tx.is_none()
                || self
                    .hold
                    .as_ref()
                    .is_some_and(|h| h.length >= WINDOW_BYTES as u64);
            if !pipelined && long {
                encoder = Box::new(Pipelined::start(encoder)?);
                pipelined = true;
            }
        }
        drop(stmt);
        if mode == TransactionMode::Session {
            // Nothing is committed yet: no snapshot to name for a write,
            // and its writes wait for the session's end (see above).
            if self.reads.wrote {
                self.versions.snapshot = None;
            }
        } else {
            // The pool's reset rides in the transaction (a default database
            // is no transactional state: it holds after the commit).
            conn.execute_batch(&self.commit_sql)
                .map_err(|e| self.duck(e))?;
            self.settled = true;
            if self.reads.wrote {
                self.versions.snapshot = Some(last_committed(conn, &self.lake)?);
            }
            self.audit_writes(Outcome::Ok, self.versions.snapshot, None);
        }
        summary.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        encoder.finish(&summary)?;
        let rest = encoder.take();
        self.capture(&rest);
        self.keep(request, &columns, summary);
        match self.hold.take() {
            // A transaction's statement: sent once its connection is back.
            Some(held) if mode == TransactionMode::Session => {
                self.tail = Some(Tail {
                    columns,
                    held,
                    rest,
                    summary,
                });
                Ok(())
            }
            Some(held) => self.send_held(&columns, held, rest, summary),
            None => {
                let _ = self.send(&columns, rest, Some(summary));
                Ok(())
            }
        }
    }

    /// Hands encoded bytes to the cache's capture, for a cacheable read.
    fn capture(&mut self, bytes: &[u8]) {
        if self.versions.cache == CacheStatus::Miss {
            if let Some(capture) = &mut self.capture {
                capture.push(bytes);
            }
        }
    }

    /// The whole answer is encoded: the cache keeps it.
    fn keep(&mut self, request: &QueryRequest, columns: &[Column], summary: Summary) {
        if self.versions.cache != CacheStatus::Miss {
            return;
        }
        let Some(capture) = self.capture.take() else {
            return;
        };
        capture.keep(Answer {
            columns: columns.to_vec(),
            types: self.types.clone(),
            summary,
            etag: self.versions.etag.clone(),
            snapshot: self.versions.snapshot.unwrap_or_default(),
            pinned: match &request.pin {
                Some(timetravel::Pin::Version(version)) => Some(*version),
                _ => None,
            },
            tables: self.reads.tables.clone(),
        });
    }

    /// A result cut by the server's own limit (not a `max_rows` the client
    /// asked for) is only answered in a format whose body says so (JSON's
    /// `truncated`). In any other format the cut would look whole to its
    /// reader, so the request fails instead: with a JSON error while no byte
    /// has left, else by aborting the response (no final chunk; an Arrow
    /// stream without its end marker, a Parquet file without its footer),
    /// which every HTTP client and reader reports as broken.
    fn refuse_a_silent_cut(
        &self,
        format: Format,
        max_rows: u64,
        over_bytes: bool,
    ) -> Result<(), Error> {
        if format.carries_metadata() || (self.hold.is_some() && self.client_max_rows) {
            return Ok(());
        }
        let limit = if over_bytes {
            format!(
                "the server's limit of {} bytes (query.max_result_bytes)",
                self.max_bytes
            )
        } else {
            format!("the server's limit of {max_rows} rows (query.max_rows)")
        };
        Err(Error::ResultTooLarge(format!(
            "the result is larger than {limit}, and a cut {} result would look complete: \
             set max_rows to receive the first rows with X-Row-Count and X-Result-Truncated, \
             ask for format json (its body says truncated), or submit the query as a job",
            format.name()
        )))
    }

    /// Sends encoded bytes: as the head while it is unsent, else as a chunk.
    fn send(
        &mut self,
        columns: &[Column],
        bytes: Vec<u8>,
        complete: Option<Summary>,
    ) -> Result<(), Gone> {
        if let Some(head_tx) = self.head_tx.take() {
            self.sent_bytes += bytes.len() as u64;
            let mut versions = self.versions.clone();
            // A write whose answer starts before its commit has no snapshot
            // to name yet (the one it read is not the one it will create).
            if self.reads.wrote && complete.is_none() {
                versions.snapshot = None;
            }
            return head_tx
                .send(Ok(Head {
                    columns: columns.to_vec(),
                    types: self.types.clone(),
                    prefix: bytes,
                    complete,
                    held_length: None,
                    versions,
                }))
                .map_err(|_| Gone);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.sent_bytes += bytes.len() as u64;
        let bytes = Bytes::from(bytes);
        if self.whole_chunks {
            return self.send_chunk(bytes);
        }
        pieces(bytes).try_for_each(|piece| self.send_chunk(piece))
    }

    /// Sends one chunk through the channel, waiting for room.
    fn send_chunk(&mut self, bytes: Bytes) -> Result<(), Gone> {
        let chunk = Ok(bytes);
        // Requests waiting for this answer wait for DuckDB, not for this
        // request's client: if it takes no chunk for a while, they go.
        let chunk = match self.capture.as_mut().filter(|c| c.leads()) {
            Some(capture) => match wait_for_room(&self.tx, chunk) {
                Room::Sent => return Ok(()),
                Room::Gone => return Err(Gone),
                Room::Full(chunk) => {
                    capture.release_followers();
                    chunk
                }
            },
            None => chunk,
        };
        self.tx.blocking_send(chunk).map_err(|_| Gone)
    }

    fn fail(&mut self, err: Error) {
        match self.head_tx.take() {
            Some(head_tx) => {
                let _ = head_tx.send(Err(err));
            }
            None => {
                tracing::warn!(error = %err, "the query failed after its response began");
                let _ = self.tx.blocking_send(Err(err));
            }
        }
    }

    /// Sends the held result of a transaction's statement, if it ended with
    /// one (after its connection went back to the transaction).
    fn send_tail(&mut self) {
        if let Some(Tail {
            columns,
            held,
            rest,
            summary,
        }) = self.tail.take()
        {
            if let Err(err) = self.send_held(&columns, held, rest, summary) {
                self.fail(err);
            }
        }
    }

    /// A statement of a transaction whose snapshot the lake has moved past
    /// could not be pinned to it (`err`): a write is a conflict (its reads
    /// and its write would see different lakes), anything else cannot read
    /// the past.
    fn unpinnable(
        &mut self,
        conn: &duckdb::Connection,
        sql: &str,
        snapshot: i64,
        err: Error,
        ask: sandbox::Ask<'_>,
    ) -> Error {
        let now = current_snapshot(conn, &self.lake).unwrap_or_default();
        match self.check(conn, sql, &Params::None, ask) {
            Err(Error::ReadOnly(_)) => Error::TransactionConflict(format!(
                "the lake changed since this transaction first read it (snapshot {snapshot}, \
                 now {now}): its reads and this write would see different data; roll it back \
                 and run it again"
            )),
            _ => match err {
                Error::InvalidParameters(_) => Error::InvalidParameters(format!(
                    "this transaction reads the lake as of its first read (snapshot {snapshot}); \
                     the lake has moved on (snapshot {now}) and only a SELECT can read the past: \
                     end the transaction to run this statement on the lake as it is now"
                )),
                other => other,
            },
        }
    }

    /// Sends a held result: the head with its summary and length, then
    /// what waited on disk, then the end.
    fn send_held(
        &mut self,
        columns: &[Column],
        mut held: Held,
        rest: Vec<u8>,
        summary: Summary,
    ) -> Result<(), Error> {
        use std::io::{Read, Seek};
        let Some(head_tx) = self.head_tx.take() else {
            return Err(Error::internal(anyhow::anyhow!(
                "a held result's head was already sent"
            )));
        };
        let length = held.length + rest.len() as u64;
        let mut prefix = held.prefix.take().unwrap_or_default();
        let spill = held.spill.take();
        let rest = match spill {
            Some(_) => rest,
            // Everything fit in memory after all: one piece.
            None => {
                prefix.extend_from_slice(&rest);
                Vec::new()
            }
        };
        let head = Head {
            columns: columns.to_vec(),
            types: self.types.clone(),
            prefix,
            complete: Some(summary),
            held_length: spill.is_some().then_some(length),
            versions: self.versions.clone(),
        };
        if head_tx.send(Ok(head)).is_err() {
            return Ok(());
        }
        if let Some(mut spill) = spill {
            spill
                .seek(std::io::SeekFrom::Start(0))
                .map_err(Error::internal)?;
            loop {
                let mut chunk = vec![0; CHUNK_BYTES];
                let n = spill.read(&mut chunk).map_err(Error::internal)?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                if self.tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                    return Ok(());
                }
            }
        }
        if !rest.is_empty() {
            let _ = self.tx.blocking_send(Ok(Bytes::from(rest)));
        }
        Ok(())
    }

    /// Records the pending writes with how they ended.
    fn audit_writes(&mut self, outcome: Outcome, snapshot: Option<i64>, err: Option<&Error>) {
        let writes = std::mem::take(&mut self.writes);
        if let Some(trail) = &self.audit {
            record_writes(trail, writes, outcome, snapshot, err);
        }
    }

    /// Asks the sandbox about one statement of the request: the statement
    /// to run, `None` when it holds nothing to run, an error when the
    /// request may not run it. A refusal is recorded in the audit trail;
    /// what the statement reads and writes is noted for the ETag, the cache
    /// and the audit.
    fn check(
        &mut self,
        conn: &duckdb::Connection,
        sql: &str,
        params: &Params,
        ask: sandbox::Ask<'_>,
    ) -> Result<Option<sandbox::Checked>, Error> {
        let checked = sandbox::check(conn, sql, params, ask, &|e| self.duck(e));
        if let (Err(err), Some(trail)) = (&checked, &self.audit) {
            let a_write_to_defer = self.deferred && matches!(err, Error::ReadOnly(_));
            if is_refusal(err) && !a_write_to_defer {
                trail.record(
                    trail
                        .event("statement", Outcome::Refused)
                        .detail("error", err.code())
                        .detail("reason", err.to_string())
                        .sql(sql),
                );
            }
        }
        let checked = match checked {
            // The statement would write: the transaction takes a connection.
            Err(Error::ReadOnly(_)) if self.deferred => {
                return Err(Error::ReadOnly(
                    super::session::WRITES_NEED_A_CONNECTION.into(),
                ))
            }
            checked => checked,
        };
        let Some(checked) = checked? else {
            return Ok(None);
        };
        let inspection = checked.inspection();
        self.reads.volatile |= !inspection
            .functions
            .iter()
            .all(|f| sandbox::is_deterministic(f));
        // Every DuckLake scan reads the request's snapshot (the pinned one,
        // or the transaction's), as DuckDB bound it: a view, a macro or an
        // AT clause reaching another makes a pinned read refused (it would
        // mix snapshots under one label) and any other read unversioned.
        if let Some(other) = inspection
            .snapshots
            .iter()
            .find(|s| Some(**s) != self.versions.snapshot)
        {
            if self.pinned {
                return Err(Error::InvalidParameters(format!(
                    "this read reaches lake tables at snapshot {other} (through a view, a \
                     macro or an AT clause), not at the pinned snapshot {}: a pin applies to \
                     the tables the statement names; name them, or leave the pin out",
                    self.versions.snapshot.unwrap_or_default()
                )));
            }
            self.reads.unversioned = true;
        }
        self.reads.virtual_columns |= inspection.virtual_columns;
        self.reads.wrote |= checked.needs() > Role::Read;
        self.reads.tables.extend(inspection.tables.iter().cloned());
        self.reads.unversioned |= !inspection.unversioned.is_empty();
        if !inspection.writes.is_empty() {
            let mut touched: Vec<String> = inspection
                .targets
                .iter()
                .chain(&inspection.tables)
                .map(|(schema, name)| {
                    if name.is_empty() {
                        schema.clone()
                    } else {
                        format!("{schema}.{name}")
                    }
                })
                .collect();
            touched.sort();
            touched.dedup();
            // The statement that runs, which is the statement checked.
            self.writes.push(Write {
                sql: checked.sql().to_string(),
                kind: inspection.writes.iter().cloned().collect(),
                tables: touched,
            });
        }
        Ok(Some(checked))
    }

    /// A DuckDB error, or the timeout when the watchdog interrupted it, or
    /// the end of the shutdown grace period.
    fn duck(&self, err: duckdb::Error) -> Error {
        self.overruled(Error::from_duckdb(err))
    }

    /// `err`, unless the request was stopped by its timeout or the end of
    /// the shutdown grace period: then that, whichever statement (or read of
    /// ours) the interrupt met.
    fn overruled(&self, err: Error) -> Error {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Error::ShuttingDown(
                "the service is shutting down and stopped this query; retry on another replica"
                    .into(),
            );
        }
        if let Some(session) = &self.session {
            if session.ending.load(Ordering::SeqCst) {
                return Error::TransactionEnded(
                    "the transaction ended while this statement ran: the statement was \
                     stopped and the transaction rolled back"
                        .into(),
                );
            }
        }
        if self.timed_out.load(Ordering::SeqCst) {
            Error::QueryTimeout(format!(
                "the query ran longer than its timeout of {} ms",
                self.timeout.as_millis()
            ))
        } else {
            err
        }
    }
}

/// The sandbox said no (as opposed to DuckDB failing the statement).
fn is_refusal(err: &Error) -> bool {
    matches!(
        err,
        Error::Forbidden(_) | Error::InsufficientRole(_) | Error::ReadOnly(_)
    )
}

/// What makes two requests the same for their ETag.
fn request_hash(request: &QueryRequest, format: Format, max_rows: u64) -> String {
    let params = request.params.to_json_text();
    let key = format!(
        "{}\0{params}\0{format:?}\0{max_rows}\0{:?}",
        request.sql, request.pin
    );
    crate::digest::sha256_hex(key.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_above_the_largest_whole_one_go_in_slices() {
        let sizes = |len: usize| -> Vec<usize> {
            pieces(Bytes::from(vec![7u8; len]))
                .map(|p| p.len())
                .collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(100), [100]);
        assert_eq!(sizes(MAX_CHUNK_BYTES), [MAX_CHUNK_BYTES]);
        // A 10 MiB row group: 64 KiB slices, the last up to 256 KiB.
        let row_group = sizes(10 << 20);
        let (last, slices) = row_group.split_last().unwrap();
        assert!(slices.iter().all(|&n| n == CHUNK_BYTES), "{row_group:?}");
        assert!(*last > CHUNK_BYTES && *last <= MAX_CHUNK_BYTES, "{last}");
        assert_eq!(row_group.iter().sum::<usize>(), 10 << 20);
        // Slices of the same bytes, in order.
        let bytes: Vec<u8> = (0..MAX_CHUNK_BYTES * 3).map(|i| (i % 251) as u8).collect();
        let joined: Vec<u8> = pieces(Bytes::from(bytes.clone())).flatten().collect();
        assert_eq!(joined, bytes);
    }
}
