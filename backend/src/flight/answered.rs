//! The snapshot a call read or wrote, as its `x-ducklake-snapshot`
//! response header.
//!
//! arrow-rs builds a `DoPut`'s response after the handler returns a row
//! count, so no handler can set a header there. Instead every call carries
//! a [`SnapshotSlot`] in its extensions, its handler (`GetFlightInfo`,
//! `DoGet`, `DoPut`) fills it, and [`WithSnapshotHeader`] (wrapped around
//! the whole Flight service) turns it into the header once the handler's
//! response exists, before anything is sent.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    codegen::{http, Service},
    server::NamedService,
};

/// The call and response header naming a snapshot: on a call it pins
/// every read; on an answer it names the snapshot read or created.
pub const SNAPSHOT_HEADER: &str = "x-ducklake-snapshot";

/// Where a handler leaves the snapshot its call read or created.
#[derive(Debug, Clone, Default)]
pub(super) struct SnapshotSlot(Arc<parking_lot::Mutex<Option<i64>>>);

impl SnapshotSlot {
    /// The slot of `request`'s call (a detached one outside the wrapper).
    pub(super) fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_default()
    }

    /// Records the snapshot the call read or created (the last one wins).
    pub(super) fn fill(&self, snapshot: Option<i64>) {
        if snapshot.is_some() {
            *self.0.lock() = snapshot;
        }
    }
}

/// The Flight service, answering each call's [`SnapshotSlot`] as the
/// `x-ducklake-snapshot` header.
#[derive(Debug, Clone)]
pub(super) struct WithSnapshotHeader<S>(pub(super) S);

impl<S: NamedService> NamedService for WithSnapshotHeader<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for WithSnapshotHeader<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let slot = SnapshotSlot::default();
        request.extensions_mut().insert(slot.clone());
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            let snapshot = *slot.0.lock();
            if let Some(snapshot) = snapshot {
                response
                    .headers_mut()
                    .insert(SNAPSHOT_HEADER, http::HeaderValue::from(snapshot));
            }
            Ok(response)
        })
    }
}
