//! A response body as it leaves the engine: the held-back window, then the
//! chunks the producer sends; dropping it before its end stops the
//! request's statements.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::stop::Stop;
use crate::error::Error;

/// Stops the request's statements if the body is dropped before it ended,
/// and the timeout watchdog either way.
pub(super) struct StreamGuard {
    pub(super) stop: Option<Stop>,
    pub(super) watchdog: tokio::task::AbortHandle,
}

impl StreamGuard {
    pub(super) fn disarm(&mut self) {
        self.stop = None;
        self.watchdog.abort();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.watchdog.abort();
        if let Some(stop) = self.stop.take() {
            stop.stop();
        }
    }
}

/// The response body: the held-back window, then the chunks as they come.
pub struct BodyStream {
    pub(super) prefix: Option<Bytes>,
    pub(super) rx: mpsc::Receiver<Result<Bytes, Error>>,
    pub(super) guard: StreamGuard,
    pub(super) rows: Arc<AtomicU64>,
}

impl BodyStream {
    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Collects the whole body (for tests and small internal uses).
    pub async fn collect(mut self) -> Result<Vec<u8>, Error> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(prefix) = self.prefix.take() {
            if !prefix.is_empty() {
                return Poll::Ready(Some(Ok(prefix)));
            }
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                self.guard.disarm();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                self.guard.disarm();
                Poll::Ready(Some(Err(err)))
            }
            other => other,
        }
    }
}
