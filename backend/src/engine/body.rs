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
    pub(super) watchdog: Option<tokio::task::AbortHandle>,
}

impl StreamGuard {
    pub(super) fn disarm(&mut self) {
        self.stop = None;
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
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
    /// A body that is already whole (a kept answer): nothing runs behind it.
    pub fn whole(bytes: Bytes, rows: u64) -> Self {
        let (_, rx) = mpsc::channel(1);
        Self {
            prefix: Some(bytes),
            rx,
            guard: StreamGuard {
                stop: None,
                watchdog: None,
            },
            rows: Arc::new(AtomicU64::new(rows)),
        }
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Reads the body into memory while it stays within `cap` bytes: the
    /// whole body (`Ok(Ok(bytes))`), or, past the cap, the body again with
    /// what was read put back in front (`Ok(Err(body))`).
    pub async fn read_up_to(mut self, cap: u64) -> Result<Result<Bytes, Self>, Error> {
        use futures_util::StreamExt;
        let mut read = Vec::new();
        while let Some(chunk) = self.next().await {
            read.extend_from_slice(&chunk?);
            if read.len() as u64 > cap {
                self.prefix = Some(Bytes::from(read));
                return Ok(Err(self));
            }
        }
        Ok(Ok(Bytes::from(read)))
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
