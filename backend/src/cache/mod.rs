//! The result cache: answers to repeated reads, kept in memory and served
//! only while they are provably current.
//!
//! An entry is keyed on everything that determines its bytes ([`Key`]) and
//! remembers the snapshot it was read at and the lake tables its plan
//! scanned. Whether it is still current is not assumed: the caller
//! ([`crate::services::Services::query`]) checks the lake's latest snapshot
//! before every hit and, when the lake moved, that none of the entry's
//! tables and nothing of the schema changed since (the ETag's rule). Only
//! reads that get an ETag are kept, so the same fail-closed rule decides
//! what may be cached: no writes, no volatile functions, no source without
//! a lake version.
//!
//! This module holds the entries, their byte budget and eviction, and the
//! counters; it runs no SQL and knows no transport.

mod capture;
mod entries;
mod key;
mod leader;

pub use capture::Capture;
pub use entries::{Answer, CacheCounters, CacheStats, Entry, ResultCache};
pub use key::{Key, KeyParts};
pub use leader::{Following, Leading, Turn};

/// What the cache did for one response (`X-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// Served from a kept, checked entry.
    Hit,
    /// Could be kept, was not there (and is kept now if it fits).
    Miss,
    /// Not for the cache: a write, a volatile or unversioned read, a
    /// transaction, or the cache is off.
    #[default]
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}
