//! One query's measurements, the same for every transport: the active
//! gauge while it runs, then its count, latency, rows and bytes in the
//! metrics, the slow-query log line and the performance tracker, recorded
//! once whether it ends whole, with an error, or because its client went
//! away.

use crate::{error::Error, services::Services};

/// One query's metrics: active while it runs, counted once when it ends.
pub struct QueryMeter {
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    performance: Option<std::sync::Arc<crate::performance::Tracker>>,
    fingerprint: String,
    slow: std::time::Duration,
    kind: &'static str,
    /// The caller's key prefix.
    principal: String,
    started: std::time::Instant,
    /// Counted already (by `finish`, or on drop).
    recorded: bool,
    /// The request's span: a streamed body ends after the request's own
    /// span was left, and its line still names the request.
    span: tracing::Span,
}

impl QueryMeter {
    pub fn start(state: &Services, sql: &str, principal: &str) -> Self {
        let kind = crate::metrics::query_kind(sql);
        let performance = state
            .config
            .features
            .enable_performance_tracking
            .then(|| std::sync::Arc::clone(&state.performance));
        let metrics = state
            .config
            .features
            .enable_prometheus_metrics
            .then(|| std::sync::Arc::clone(&state.metrics));
        if let Some(m) = &metrics {
            m.queries_active.inc();
        }
        Self {
            metrics,
            performance,
            fingerprint: crate::performance::fingerprint(sql),
            slow: std::time::Duration::from_millis(state.config.query.slow_query_ms),
            kind,
            principal: principal.to_string(),
            started: std::time::Instant::now(),
            recorded: false,
            span: tracing::Span::current(),
        }
    }

    pub fn finish(mut self, outcome: &str, rows: u64, bytes: u64) {
        self.record(outcome, rows, bytes);
    }

    fn record(&mut self, outcome: &str, rows: u64, bytes: u64) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let _request = self.span.enter();
        if elapsed >= self.slow {
            tracing::warn!(
                fingerprint = %self.fingerprint,
                kind = self.kind,
                key = %self.principal,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                rows,
                outcome,
                "slow query"
            );
        }
        if let Some(tracker) = self.performance.take() {
            tracker.record_query(
                crate::performance::SlowQuery {
                    fingerprint: std::mem::take(&mut self.fingerprint),
                    kind: self.kind,
                    duration_ms: elapsed.as_secs_f64() * 1000.0,
                    rows,
                    outcome: outcome.to_string(),
                    principal: std::mem::take(&mut self.principal),
                    at_unix_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis(),
                },
                elapsed,
            );
        }
        if let Some(m) = &self.metrics {
            m.queries_active.dec();
            m.query_finished(
                self.kind,
                outcome,
                self.started.elapsed().as_secs_f64(),
                rows,
                bytes,
            );
        }
    }
}

/// A request dropped before it answered (its client went away while the
/// query waited for a connection or for its first window) ends its query
/// too: `queries_active` would otherwise count it for good.
impl Drop for QueryMeter {
    fn drop(&mut self) {
        self.record("client_disconnected", 0, 0);
    }
}

/// A streamed body that counts its bytes and records the query when it ends
/// (completely, with an error, or because the client went away).
pub struct Metered {
    body: crate::engine::stream::BodyStream,
    meter: Option<QueryMeter>,
    bytes: u64,
    outcome: &'static str,
}

impl Metered {
    /// Counts the query when the body ends or is dropped (a client that
    /// goes away before the end counts as `client_disconnected`).
    pub fn new(body: crate::engine::stream::BodyStream, meter: QueryMeter) -> Self {
        Self {
            body,
            meter: Some(meter),
            bytes: 0,
            outcome: "client_disconnected",
        }
    }
}

impl futures_util::Stream for Metered {
    type Item = Result<bytes::Bytes, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(chunk))) => self.bytes += chunk.len() as u64,
            std::task::Poll::Ready(Some(Err(err))) => self.outcome = err.code(),
            std::task::Poll::Ready(None) => {
                if self.outcome == "client_disconnected" {
                    self.outcome = "ok";
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.finish(self.outcome, self.body.rows(), self.bytes);
        }
    }
}
