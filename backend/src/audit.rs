//! The audit trail: every change to the lake and to the service's keys,
//! every maintenance run and every refused statement, with who asked (the
//! key's visible prefix and owner), the request id and the time.
//!
//! Recording never waits and never fails the request it records: events go
//! into a bounded queue ([`QUEUE_EVENTS`]) that one task drains into the
//! store's `audit_log` table in batches. When the queue is full (the store
//! is slow or down) the event is dropped and counted
//! (`ducklake_audit_events_dropped_total`), as is a batch the store refused.

use std::time::Duration;

use prometheus::IntCounter;

use tokio::sync::{mpsc, oneshot};

pub use crate::store::audit::{Actor, AuditEntry, AuditFilter, Event, Outcome, MAX_SQL_CHARS};
use crate::store::Store;

/// Events waiting to be written at most; beyond, new ones are dropped.
pub const QUEUE_EVENTS: usize = 10_000;
/// Events written in one statement at most.
const BATCH_EVENTS: usize = 200;

enum Message {
    Event(Box<Event>),
    /// Answered once every event queued before it was written (or dropped).
    Flush(oneshot::Sender<()>),
}

/// Counters of the trail (registered in [`crate::metrics::Metrics`]).
#[derive(Clone)]
pub struct AuditCounters {
    pub written: IntCounter,
    pub dropped: IntCounter,
}

/// The queue into the audit log. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Message>,
    counters: AuditCounters,
}

impl Audit {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, counters: AuditCounters) -> Self {
        Self::with_capacity(store, counters, QUEUE_EVENTS)
    }

    fn with_capacity(store: Store, counters: AuditCounters, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(write_events(store, rx, counters.clone()));
        Self { tx, counters }
    }

    /// Queues `event`; never waits. A full queue drops it (counted).
    pub fn record(&self, event: Event) {
        if self.tx.try_send(Message::Event(Box::new(event))).is_err() {
            self.counters.dropped.inc();
        }
    }

    /// Waits until what was queued before is in the store, at most `bound`
    /// (the drain on shutdown).
    pub async fn flush(&self, bound: Duration) {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(bound, self.tx.send(Message::Flush(done))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(bound, wait).await;
        }
    }

    /// A recorder for one request's events.
    pub fn trail(&self, actor: Actor) -> Trail {
        Trail {
            audit: self.clone(),
            actor,
        }
    }
}

/// An [`Audit`] with the actor of one request: what the engine is handed
/// to record a request's statements.
#[derive(Clone)]
pub struct Trail {
    audit: Audit,
    pub actor: Actor,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").field("actor", &self.actor).finish()
    }
}

impl Trail {
    pub fn event(&self, action: impl Into<String>, outcome: Outcome) -> Event {
        Event::new(&self.actor, action, outcome)
    }

    pub fn record(&self, event: Event) {
        self.audit.record(event);
    }
}

async fn write_events(store: Store, mut rx: mpsc::Receiver<Message>, counters: AuditCounters) {
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH_EVENTS);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => batch.push(*event),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_EVENTS {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match store.insert_audit(&batch).await {
                Ok(()) => counters.written.inc_by(n),
                Err(e) => {
                    counters.dropped.inc_by(n);
                    tracing::warn!(error = %e, events = n, "audit events could not be written: dropped");
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_are_cut_and_details_collect() {
        let actor = Actor::service();
        let event = Event::new(&actor, "statement", Outcome::Refused)
            .sql(&"x".repeat(MAX_SQL_CHARS + 10))
            .detail("reason", "no");
        let sql = event.detail["sql"].as_str().unwrap();
        assert_eq!(sql.chars().count(), MAX_SQL_CHARS + 1);
        assert!(sql.ends_with('…'));
        assert_eq!(event.detail["reason"], "no");
        assert_eq!(Outcome::parse("refused"), Some(Outcome::Refused));
        assert_eq!(Outcome::parse("maybe"), None);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::load_from(None, &[]).unwrap().config;
        config.data_dir = dir.path().to_path_buf();
        let store = Store::open(&config).unwrap();
        store.migrate().await.unwrap();
        let counters = AuditCounters {
            written: IntCounter::new("w", "w").unwrap(),
            dropped: IntCounter::new("d", "d").unwrap(),
        };
        // A queue of one: the writer can take at most a few at a time, so
        // most of a burst must be dropped, and recording never blocks.
        let audit = Audit::with_capacity(store.clone(), counters.clone(), 1);
        let actor = Actor::service();
        for _ in 0..1000 {
            audit.record(Event::new(&actor, "test", Outcome::Ok));
        }
        audit.flush(Duration::from_secs(60)).await;
        let written = counters.written.get();
        let dropped = counters.dropped.get();
        assert_eq!(written + dropped, 1000, "every event is written or counted");
        assert!(dropped > 0, "a queue of one cannot take a burst of 1000");
        let stored = store
            .list_audit(&AuditFilter {
                limit: 2000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len() as u64, written);
    }
}
