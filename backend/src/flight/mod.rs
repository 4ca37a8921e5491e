//! Arrow Flight SQL: the lake for ADBC, JDBC and BI drivers, a thin edge
//! over the same core as the HTTP API ([`Services`]): the same
//! authentication, engine (sandbox, roles, limits, timeouts, admission
//! control), audit trail and metrics, with the domain errors mapped to gRPC
//! statuses in [`status`] alone.
//!
//! A statement runs when its `GetFlightInfo` arrives, so a refused or
//! broken statement fails there, and the `FlightInfo` carries the result's
//! real schema; its stream then waits (holding its connection, under the
//! request's timeout, at most `flight.ticket_ttl_ms`) for the `DoGet` of its
//! ticket. The ticket also carries the statement itself: a `DoGet` that
//! finds no waiting stream (another replica, or it expired) runs it again,
//! read-only, so a write never runs twice. A dropped `DoGet` stream, or
//! `CancelFlightInfo`, interrupts DuckDB. A stream that ends early ends with
//! an error status, never as a short result.

mod answered;
mod ingest;
pub mod ipc;
pub mod metadata;
pub mod params;
mod service;
pub mod status;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};

use arrow_array::RecordBatch;
use arrow_flight::{
    decode::FlightRecordBatchStream,
    flight_service_server::FlightServiceServer,
    sql::{server::PeekableFlightDataStream, Any, ProstMessageExt, TicketStatementQuery},
    CancelStatus, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket,
};
use base64::Engine as _;
use futures_util::{Stream, StreamExt, TryStreamExt};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    auth::Caller,
    engine::{stream::TransactionMode, timetravel::Pin as SnapshotPin, Params, QueryRequest},
    error::Error,
    format::encode::Format,
    meter::{Metered, QueryMeter},
    services::Services,
};
use answered::SnapshotSlot;
use ipc::{Message, Messages};

/// Call headers that pin every read, as the HTTP `snapshot`/`as_of` do.
pub use answered::SNAPSHOT_HEADER;
pub const AS_OF_HEADER: &str = "x-ducklake-as-of";
/// A call header with the statement's timeout, milliseconds (capped by the
/// server's `query.max_timeout_ms`, as the HTTP `timeout_ms` is).
pub const TIMEOUT_HEADER: &str = "x-ducklake-timeout-ms";

type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// What a ticket or prepared-statement handle holds: the statement itself,
/// so any replica can run it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Handle {
    /// The statement started by `GetFlightInfo` and waiting for its `DoGet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    sql: String,
    /// Bound parameters, as the HTTP API's JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Params>,
    /// Several rows of parameters bound at once: for an update, which runs
    /// once per row; a query refuses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    param_rows: Vec<Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    as_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    /// The open transaction it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transaction: Option<Uuid>,
}

impl Handle {
    fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a handle always serialises")
            .into()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes).map_err(|e| {
            status::status(Error::InvalidRequest(format!(
                "the ticket or statement handle is not one of this service's: {e}"
            )))
        })
    }

    fn params(&self) -> Result<Params, Error> {
        if !self.param_rows.is_empty() {
            return Err(Error::InvalidParameters(format!(
                "a query binds one row of parameters; {} rows were bound",
                self.param_rows.len()
            )));
        }
        Ok(self.params.clone().unwrap_or_default())
    }

    fn pin(&self) -> Result<Option<SnapshotPin>, Error> {
        match (self.snapshot, &self.as_of) {
            (Some(_), Some(_)) => Err(Error::InvalidParameters(format!(
                "give {SNAPSHOT_HEADER} or {AS_OF_HEADER}, not both"
            ))),
            (Some(version), None) => Ok(Some(SnapshotPin::Version(version))),
            (None, Some(time)) => Ok(Some(SnapshotPin::Time(time.clone()))),
            (None, None) => Ok(None),
        }
    }

    /// The statement with the pin and timeout of the call's headers.
    fn with_call_headers<T>(mut self, request: &Request<T>) -> Result<Self, Status> {
        let header = |name: &str| -> Result<Option<String>, Status> {
            request
                .metadata()
                .get(name)
                .map(|v| {
                    v.to_str().map(str::to_string).map_err(|_| {
                        status::status(Error::InvalidParameters(format!("{name} is not text")))
                    })
                })
                .transpose()
        };
        if let Some(text) = header(SNAPSHOT_HEADER)? {
            self.snapshot = Some(text.trim().parse().map_err(|_| {
                status::status(Error::InvalidParameters(format!(
                    "{SNAPSHOT_HEADER} must be a snapshot id, not `{text}`"
                )))
            })?);
        }
        if let Some(text) = header(AS_OF_HEADER)? {
            self.as_of = Some(text);
        }
        if let Some(text) = header(TIMEOUT_HEADER)? {
            let ms: u64 = text.trim().parse().map_err(|_| {
                status::status(Error::InvalidParameters(format!(
                    "{TIMEOUT_HEADER} must be milliseconds, not `{text}`"
                )))
            })?;
            if ms == 0 {
                return Err(status::status(Error::InvalidParameters(format!(
                    "{TIMEOUT_HEADER} must be more than 0"
                ))));
            }
            self.timeout_ms = Some(ms);
        }
        Ok(self)
    }
}

/// A statement started by `GetFlightInfo`, waiting for its `DoGet`.
struct Waiting {
    /// Who started it: only they may fetch it.
    key: Option<Uuid>,
    schema: Message,
    rest: Messages<Metered>,
    snapshot: Option<i64>,
}

/// Statements started and not yet fetched, and the cancel switch of each
/// statement started or streaming.
#[derive(Default)]
struct Registry {
    waiting: HashMap<Uuid, Waiting>,
    cancels: HashMap<Uuid, (Option<Uuid>, tokio::sync::oneshot::Sender<()>)>,
    /// Statements ended by `CancelFlightInfo`, with when: their tickets
    /// answer CANCELLED instead of running again (kept for two ticket
    /// lifetimes).
    cancelled: HashMap<Uuid, std::time::Instant>,
}

/// The Flight SQL service.
pub struct LakeFlight {
    services: Arc<Services>,
    registry: Arc<parking_lot::Mutex<Registry>>,
    ticket_ttl: Duration,
    sql_info: arrow_flight::sql::metadata::SqlInfoData,
}

/// A statement's first message (its schema) and the rest.
struct Started {
    schema: Message,
    rest: Messages<Metered>,
    snapshot: Option<i64>,
}

impl LakeFlight {
    pub fn new(services: Arc<Services>) -> Self {
        let ticket_ttl = Duration::from_millis(services.config.flight.ticket_ttl_ms);
        Self {
            sql_info: metadata::sql_info(&services),
            services,
            registry: Default::default(),
            ticket_ttl,
        }
    }

    /// The caller behind the call's `authorization` header: `Bearer <key>`,
    /// or `Basic` with the key as the password (what drivers send).
    async fn caller<T>(
        &self,
        request: &Request<T>,
        method: &'static str,
    ) -> Result<Caller, Status> {
        self.services.metrics.flight_call(method);
        if self.services.draining.load(Ordering::SeqCst) {
            return Err(status::status(Error::ShuttingDown(
                "the service is shutting down; retry on another replica".into(),
            )));
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let bearer = header.map(|value| match basic_password(value) {
            Some(password) => format!("Bearer {password}"),
            None => value.to_string(),
        });
        let caller = self
            .services
            .auth
            .authenticate(bearer.as_deref())
            .await
            .map_err(status::status)?;
        tracing::info!(key = %caller.prefix, call = method, "flight call");
        Ok(caller)
    }

    fn trail(&self, caller: &Caller) -> crate::audit::Trail {
        self.services.audit.trail(crate::audit::Actor {
            key_prefix: caller.prefix.clone(),
            owner: caller.owner.clone(),
            request_id: Some(Uuid::new_v4().to_string()),
        })
    }

    /// Runs `handle`'s statement up to its first message, the schema.
    async fn start(
        &self,
        caller: &Caller,
        handle: &Handle,
        mode: TransactionMode,
    ) -> Result<Started, Error> {
        let request = QueryRequest {
            session: None,
            deferred: false,
            sql: handle.sql.clone(),
            params: handle.params()?,
            timeout_ms: handle.timeout_ms,
            max_rows: None,
            role: caller.role,
            pin: handle.pin()?,
            if_none_match: None,
            progress: None,
            audit: Some(self.trail(caller)),
            timetz_as_text: false,
            fresh: false,
        };
        let meter = QueryMeter::start(&self.services, &request.sql, &caller.prefix);
        let stream = match handle.transaction {
            Some(id) => {
                self.services
                    .query_in_transaction(caller, id, request, Format::Arrow)
                    .await
            }
            None => self.services.query(request, Format::Arrow, mode).await,
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                meter.finish(err.code(), 0, 0);
                return Err(err);
            }
        };
        let snapshot = stream.versions.snapshot;
        let mut rest = Messages::new(Metered::new(stream.body, meter));
        let schema = rest.next().await.unwrap_or_else(|| {
            Err(Error::internal(anyhow::anyhow!(
                "the result stream ended before its schema"
            )))
        })?;
        Ok(Started {
            schema,
            rest,
            snapshot,
        })
    }

    /// `GetFlightInfo` of a statement: starts it, keeps its stream for the
    /// ticket's `DoGet`, and answers with its schema and snapshot.
    async fn flight_info(
        &self,
        caller: Caller,
        mut handle: Handle,
        answered: &SnapshotSlot,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        if handle.sql.trim().is_empty() {
            return Err(status::status(Error::InvalidParameters(
                "sql is empty".into(),
            )));
        }
        let started = self
            .start(&caller, &handle, TransactionMode::AutoCommit)
            .await?;
        let id = Uuid::new_v4();
        handle.id = Some(id);
        let schema = started.schema.encapsulated();
        let snapshot = started.snapshot;
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        {
            let mut registry = self.registry.lock();
            registry.waiting.insert(
                id,
                Waiting {
                    key: caller.key_id,
                    schema: started.schema,
                    rest: started.rest,
                    snapshot,
                },
            );
            registry.cancels.insert(id, (caller.key_id, cancel));
        }
        self.expire(id, cancelled);
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode(),
        };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket {
            ticket: ticket.as_any().encode_to_vec().into(),
        });
        let mut info = FlightInfo::new()
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true)
            .with_total_records(-1)
            .with_total_bytes(-1);
        info.schema = schema;
        answered.fill(snapshot);
        Ok(Response::new(info))
    }

    /// Drops a waiting statement (which interrupts it) when it is cancelled
    /// or its ticket expires before its `DoGet`.
    fn expire(&self, id: Uuid, cancelled: tokio::sync::oneshot::Receiver<()>) {
        let registry = Arc::clone(&self.registry);
        let ttl = self.ticket_ttl;
        tokio::spawn(async move {
            let cancelled = tokio::select! {
                _ = tokio::time::sleep(ttl) => false,
                outcome = cancelled => outcome.is_ok(),
            };
            let waiting = {
                let mut registry = registry.lock();
                let waiting = registry.waiting.remove(&id);
                if waiting.is_some() || cancelled {
                    registry.cancels.remove(&id);
                }
                waiting
            };
            if waiting.is_some() {
                tracing::info!(%id, cancelled, "a Flight statement was not fetched: stopped");
            }
            drop(waiting);
        });
    }

    /// `DoGet` of a ticket: the waiting stream when this replica has it for
    /// this caller, else the statement run again, read-only.
    async fn fetch(
        &self,
        caller: Caller,
        handle: Handle,
        answered: &SnapshotSlot,
    ) -> Result<Response<FlightStream>, Status> {
        if let Some(id) = handle.id {
            let mut registry = self.registry.lock();
            if registry.cancelled.contains_key(&id) {
                registry.waiting.remove(&id);
                return Err(Status::cancelled(
                    "[cancelled] this statement was cancelled (CancelFlightInfo): its ticket \
                     ends there; run the statement again for a new one",
                ));
            }
        }
        let waiting = handle.id.and_then(|id| {
            let mut registry = self.registry.lock();
            match registry.waiting.get(&id) {
                Some(w) if w.key == caller.key_id => registry.waiting.remove(&id),
                _ => None,
            }
        });
        let (id, started) = match waiting {
            Some(w) => (
                handle.id.expect("found by its id"),
                Started {
                    schema: w.schema,
                    rest: w.rest,
                    snapshot: w.snapshot,
                },
            ),
            None if handle.transaction.is_some() => {
                return Err(status::status(Error::InvalidRequest(
                    "this statement of a transaction is no longer waiting for its DoGet \
                     (flight.ticket_ttl_ms): run it again"
                        .into(),
                )))
            }
            None => {
                let started = self
                    .start(&caller, &handle, TransactionMode::ReadOnly)
                    .await?;
                let id = Uuid::new_v4();
                (id, started)
            }
        };
        // A fresh switch, whose receiver this stream holds (the one it was
        // started with ends its expiry watch).
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        self.registry
            .lock()
            .cancels
            .insert(id, (caller.key_id, cancel));
        let snapshot = started.snapshot;
        let body = Cancellable {
            id,
            schema: Some(started.schema),
            rest: Some(started.rest),
            cancelled,
            registry: Arc::clone(&self.registry),
        };
        answered.fill(snapshot);
        Ok(Response::new(Box::pin(body) as FlightStream))
    }

    /// Runs a statement for its effect and answers its row count: DuckDB's
    /// `Count` for INSERT, UPDATE and DELETE, -1 where it has none.
    async fn update(
        &self,
        caller: &Caller,
        handle: &Handle,
        answered: &SnapshotSlot,
    ) -> Result<i64, Status> {
        let started = self
            .start(caller, handle, TransactionMode::AutoCommit)
            .await?;
        answered.fill(started.snapshot);
        let mut data = vec![started.schema.into_flight_data()];
        let mut rest = started.rest;
        while let Some(message) = rest.next().await {
            data.push(message.map_err(status::status)?.into_flight_data());
        }
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            futures_util::stream::iter(data.into_iter().map(Ok)),
        )
        .try_collect()
        .await
        .map_err(|e| status::status(Error::internal(e)))?;
        Ok(affected_rows(&batches))
    }

    /// The parameter rows sent with a prepared statement (none when the
    /// stream holds no batch).
    async fn parameter_rows(stream: PeekableFlightDataStream) -> Result<Vec<Params>, Status> {
        // A call without parameters sends its command alone, headerless.
        let data = stream
            .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
            .map_err(Into::into);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .map_err(|e| {
                status::status(Error::InvalidParameters(format!(
                    "the parameters are not a readable Arrow stream: {e}"
                )))
            })?;
        let mut rows = Vec::new();
        for batch in &batches {
            rows.extend(params::rows(batch)?);
        }
        Ok(rows)
    }

    async fn cancel(
        &self,
        caller: &Caller,
        info: Option<FlightInfo>,
    ) -> Result<CancelStatus, Status> {
        let handles = info
            .into_iter()
            .flat_map(|info| info.endpoint)
            .filter_map(|endpoint| endpoint.ticket)
            .filter_map(|ticket| {
                let any = Any::decode(ticket.ticket).ok()?;
                let ticket: TicketStatementQuery = any.unpack().ok()??;
                Handle::decode(&ticket.statement_handle).ok()
            });
        let mut status = CancelStatus::NotCancellable;
        for handle in handles {
            let Some(id) = handle.id else { continue };
            let cancel = {
                let mut registry = self.registry.lock();
                let found = match registry.cancels.get(&id) {
                    Some((key, _)) if *key == caller.key_id => registry.cancels.remove(&id),
                    _ => None,
                };
                if found.is_some() {
                    let keep = self.ticket_ttl * 2;
                    registry.cancelled.retain(|_, at| at.elapsed() < keep);
                    registry.cancelled.insert(id, std::time::Instant::now());
                }
                found
            };
            if let Some((_, cancel)) = cancel {
                let _ = cancel.send(());
                status = CancelStatus::Cancelled;
                tracing::info!(%id, key = %caller.prefix, "Flight statement cancelled");
            }
        }
        Ok(status)
    }
}

impl LakeFlight {
    /// A transaction id as the client sends it back.
    fn transaction_id(bytes: &[u8]) -> Result<Uuid, Error> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| Uuid::parse_str(text).ok())
            .ok_or_else(|| Error::InvalidRequest("not a transaction id of this service".into()))
    }

    /// `BeginTransaction`: a handle; the transaction holds a connection
    /// only once it writes (see [`crate::transactions`]).
    /// `within_a_call`: the service's own, for one call's rows.
    fn begin(&self, caller: &Caller, within_a_call: bool) -> Result<Uuid, Error> {
        let id =
            self.services
                .begin_transaction(caller, Some(self.trail(caller)), within_a_call)?;
        tracing::info!(%id, key = %caller.prefix, "transaction begun");
        Ok(id)
    }

    /// `EndTransaction`: commit or roll back; the snapshot a commit created
    /// (none when it wrote nothing).
    async fn end(&self, caller: &Caller, id: Uuid, commit: bool) -> Result<Option<i64>, Error> {
        let snapshot = self.services.end_transaction(caller, id, commit).await?;
        tracing::info!(%id, commit, ?snapshot, "transaction ended");
        Ok(snapshot)
    }
}

/// A `Basic` header's password (the key), if it is one.
fn basic_password(header: &str) -> Option<String> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    // Drivers differ: ADBC sends unpadded base64, others padded.
    const PADDED_OR_NOT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = PADDED_OR_NOT.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// DuckDB answers a write with one `Count` column and one row.
fn affected_rows(batches: &[RecordBatch]) -> i64 {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return -1;
    };
    if batch.num_columns() != 1 || batch.schema().field(0).name() != "Count" {
        return -1;
    }
    arrow_cast::cast(batch.column(0), &arrow_schema::DataType::Int64)
        .ok()
        .and_then(|column| {
            column
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(-1)
}

/// A `DoGet` body: the schema, then the rest as it comes; ends with a
/// `cancelled` status when cancelled (dropping the rest stops DuckDB).
struct Cancellable {
    id: Uuid,
    schema: Option<Message>,
    rest: Option<Messages<Metered>>,
    cancelled: tokio::sync::oneshot::Receiver<()>,
    registry: Arc<parking_lot::Mutex<Registry>>,
}

impl Stream for Cancellable {
    type Item = Result<FlightData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.rest.is_none() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Ok(())) = Pin::new(&mut self.cancelled).poll(cx) {
            self.rest = None;
            return Poll::Ready(Some(Err(status::status(Error::InvalidRequest(
                "the statement was cancelled".into(),
            ))
            .with_code(tonic::Code::Cancelled))));
        }
        if let Some(schema) = self.schema.take() {
            return Poll::Ready(Some(Ok(schema.into_flight_data())));
        }
        let rest = self.rest.as_mut().expect("checked above");
        match Pin::new(rest).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message.into_flight_data()))),
            Poll::Ready(Some(Err(err))) => {
                self.rest = None;
                Poll::Ready(Some(Err(status::status(err))))
            }
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        self.registry.lock().cancels.remove(&self.id);
    }
}

use std::future::Future as _;

trait WithCode {
    fn with_code(self, code: tonic::Code) -> Status;
}

impl WithCode for Status {
    fn with_code(self, code: tonic::Code) -> Status {
        let mut status = Status::new(code, self.message().to_string());
        *status.metadata_mut() = self.metadata().clone();
        status
    }
}

/// The TLS identity of `flight.tls_cert`/`flight.tls_key`, read at start-up
/// (a missing or broken file stops the start, it does not serve plain).
pub fn tls(
    config: &crate::config::FlightConfig,
) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    crate::tls::install_crypto_provider();
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}

/// Serves Flight SQL on `listener` until `shutdown` resolves; clears
/// `serving` when it stops.
pub async fn serve(
    services: Arc<Services>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    serving: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // One span per call, as the HTTP API has one per request: every line
    // logged for it (its query's too) names the protocol and the method.
    let mut builder = tonic::transport::Server::builder().trace_fn(|request| {
        tracing::info_span!(
            "call",
            protocol = "flight",
            method = %request.uri().path(),
            request_id = %Uuid::new_v4(),
        )
    });
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("the TLS certificate or key is not usable: {e}"))?;
    }
    let max_message = services.config.server.max_body_bytes.max(64 * 1024 * 1024);
    let service = FlightServiceServer::new(LakeFlight::new(Arc::clone(&services)))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let service = answered::WithSnapshotHeader(service);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serving.store(true, Ordering::SeqCst);
    let outcome = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("the Flight SQL server stopped: {e}"));
    serving.store(false, Ordering::SeqCst);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Basic credentials as every driver sends them: padded base64 (most)
    /// or unpadded (ADBC), any user name, any length.
    #[test]
    fn basic_credentials_are_read_padded_or_not() {
        use base64::Engine as _;
        let key = "dlk_0123456789abcdef";
        for user in ["", "a", "me", "etl", "user", "dbeaver"] {
            let pair = format!("{user}:{key}");
            for encoded in [
                base64::engine::general_purpose::STANDARD.encode(&pair),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&pair),
            ] {
                for scheme in ["Basic", "basic"] {
                    let header = format!("{scheme} {encoded}");
                    assert_eq!(basic_password(&header).as_deref(), Some(key), "{header}");
                }
            }
        }
        assert_eq!(basic_password("Bearer abc"), None);
        assert_eq!(basic_password("Basic !!!"), None);
        assert_eq!(basic_password("Basic bm9jb2xvbg"), None, "no colon");
    }
}
