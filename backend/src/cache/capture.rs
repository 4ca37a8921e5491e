//! A miss on its way into the cache: the encoded bytes as they are
//! produced, kept only if the whole answer arrives and fits.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    entries::{Answer, Entry, ResultCache},
    key::Key,
    leader::Leading,
};

/// Collects a result's bytes for the cache. Dropped without
/// [`Capture::keep`] (the client went away, the query failed, the result
/// was not cacheable), it keeps nothing. Its end, either way, ends the
/// leader's turn it holds.
pub struct Capture {
    cache: Arc<ResultCache>,
    key: Key,
    bytes: Vec<u8>,
    /// Past the per-entry limit: collecting stopped.
    over: bool,
    /// This run's turn (none for a follower that runs after all, once the
    /// answer outgrew what may be kept, or once its client held it back).
    lead: Option<Leading>,
}

impl Capture {
    pub fn new(cache: Arc<ResultCache>, key: Key, lead: Option<Leading>) -> Self {
        Self {
            cache,
            key,
            bytes: Vec::new(),
            over: false,
            lead,
        }
    }

    /// Appends encoded bytes, in order.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.over {
            return;
        }
        if !self.cache.fits((self.bytes.len() + bytes.len()) as u64) {
            self.over = true;
            self.bytes = Vec::new();
            // Nothing will be kept: requests waiting for this answer run
            // their own now rather than after this one's end.
            self.lead = None;
            return;
        }
        self.bytes.extend_from_slice(bytes);
    }

    /// Whether requests wait for this run's answer.
    pub fn leads(&self) -> bool {
        self.lead.is_some()
    }

    /// Lets the requests waiting for this run's answer go, each to run its
    /// own: this run goes at its client's pace (a slow reader, a Flight
    /// `DoGet` not yet called), which is not theirs. Its answer may still be
    /// kept.
    pub fn release_followers(&mut self) {
        self.lead = None;
    }

    /// Keeps the collected answer (and then ends the turn: followers find
    /// it).
    pub fn keep(self, answer: Answer) {
        if !self.over {
            self.cache
                .insert(self.key, Entry::new(Bytes::from(self.bytes), answer));
        }
    }
}
