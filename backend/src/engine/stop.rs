//! Stopping what runs on one pooled connection, so that it stays stopped.
//!
//! DuckDB clears a connection's interrupt flag when the connection's next
//! statement starts (`ClientContext::InitialCleanup`). A request runs several
//! statements (its `BEGIN`, the sandbox's plan checks, the snapshot read, the
//! query), so one interrupt that lands between two of them is lost and the
//! query runs on as if nobody had asked. A [`Stop`] holds instead: once asked,
//! it interrupts the connection again every [`REPEAT`] until the holder
//! releases the connection, and never after that (the connection may then run
//! another request's query).

use std::{sync::Arc, time::Duration};

use duckdb::InterruptHandle;
use parking_lot::Mutex;

/// How often a stop asked for interrupts the connection again.
const REPEAT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Stopping,
    Released,
}

/// The stop switch of one connection while one request holds it.
#[derive(Clone)]
pub struct Stop(Arc<Inner>);

struct Inner {
    handle: Arc<InterruptHandle>,
    state: Mutex<State>,
}

impl Stop {
    pub fn new(handle: Arc<InterruptHandle>) -> Self {
        Self(Arc::new(Inner {
            handle,
            state: Mutex::new(State::Running),
        }))
    }

    /// Stops the holder's statements, the running one and every one it
    /// starts until it releases the connection. Needs a Tokio runtime to
    /// repeat the interrupt; without one it interrupts once.
    pub fn stop(&self) {
        {
            let mut state = self.0.state.lock();
            if *state != State::Running {
                return;
            }
            *state = State::Stopping;
            self.0.handle.interrupt();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let stop = self.clone();
        runtime.spawn(async move {
            while stop.interrupt_again() {
                tokio::time::sleep(REPEAT).await;
            }
        });
    }

    /// Interrupts once more unless the connection was released; `false`
    /// once it was.
    fn interrupt_again(&self) -> bool {
        let state = self.0.state.lock();
        if *state == State::Released {
            return false;
        }
        // Under the lock: `release` cannot slip in between the check and
        // the interrupt.
        self.0.handle.interrupt();
        true
    }

    /// The holder is done with the connection: no interrupt reaches it from
    /// this stop any more. Call it before the connection goes back to the
    /// pool.
    pub fn release(&self) {
        *self.0.state.lock() = State::Released;
    }

    /// Whether a stop was asked for (and the connection not yet released).
    pub fn stopping(&self) -> bool {
        *self.0.state.lock() == State::Stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flaw this type exists for, and its cure: an interrupt between two
    /// statements does not stop the next one, a stop does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_between_two_statements_stops_the_next_one() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let long = "SELECT count(*) FROM range(2000000000000)";

        // DuckDB alone: the interrupt is cleared when the next statement
        // starts, so that statement would run to its end. (Only its start
        // is run here: preparing it is enough to clear the flag.)
        conn.interrupt_handle().interrupt();
        conn.execute_batch("SELECT 1").unwrap();

        let stop = Stop::new(conn.interrupt_handle());
        stop.stop();
        assert!(stop.stopping());
        let conn = tokio::task::spawn_blocking(move || {
            conn.execute_batch("SELECT 1").ok();
            let err = conn
                .query_row(long, [], |row| row.get::<_, i64>(0))
                .expect_err("the statement after a stop must be interrupted");
            assert!(err.to_string().contains("INTERRUPT"), "{err}");
            stop.release();
            assert!(!stop.stopping());
            (conn, stop)
        })
        .await
        .unwrap();
        // Released: the connection runs the next request's statements.
        let (conn, stop) = conn;
        stop.stop();
        let n: i64 = tokio::task::spawn_blocking(move || {
            conn.query_row("SELECT count(*) FROM range(1000)", [], |row| row.get(0))
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(n, 1000);
    }
}
