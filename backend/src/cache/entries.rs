//! The kept answers, their byte budget and which one goes first.
//!
//! Eviction is GreedyDual-Size-Frequency: an entry's value is what it
//! saves (the milliseconds its query took, times how often it was served)
//! per byte it holds, plus the cache's clock, which rises to the value of
//! each entry evicted. The cheapest answer per byte, least used and least
//! recently valued, goes first; an old entry does not stay forever on
//! its past hits.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use super::key::Key;
use crate::format::{
    encode::Summary,
    types::{Column, DuckType},
};

/// What the engine knows of an answer besides its bytes.
#[derive(Debug)]
pub struct Answer {
    pub columns: Vec<Column>,
    pub types: Vec<DuckType>,
    pub summary: Summary,
    /// The ETag the answer was given when it was made.
    pub etag: Option<String>,
    /// The snapshot it was read at.
    pub snapshot: i64,
    /// Set for a read pinned to a snapshot: the answer never changes, but
    /// holds only while that snapshot is not expired.
    pub pinned: Option<i64>,
    /// The lake tables its plan scanned, (schema, table).
    pub tables: Vec<(String, String)>,
}

/// One kept answer.
#[derive(Debug)]
pub struct Entry {
    /// The whole encoded result, in the format of its key.
    pub body: Bytes,
    pub answer: Answer,
    /// The latest snapshot at which it was last known current.
    validated_at: AtomicI64,
    /// The catalog's ids of its tables, once looked up.
    table_ids: std::sync::OnceLock<Vec<i64>>,
    /// The SHA-256 of `body` in hex, once asked for.
    digest: std::sync::OnceLock<String>,
}

impl Entry {
    pub fn new(body: Bytes, mut answer: Answer) -> Self {
        answer.tables.sort();
        answer.tables.dedup();
        Self {
            body,
            validated_at: AtomicI64::new(answer.snapshot),
            answer,
            table_ids: std::sync::OnceLock::new(),
            digest: std::sync::OnceLock::new(),
        }
    }

    /// The SHA-256 of the body in hex (computed once).
    pub fn digest(&self) -> &str {
        self.digest
            .get_or_init(|| crate::digest::sha256_hex(&self.body))
    }

    /// The catalog's ids of its tables, if looked up already.
    pub fn table_ids(&self) -> Option<&[i64]> {
        self.table_ids.get().map(Vec::as_slice)
    }

    /// Remembers the ids of its tables (they do not change while the
    /// schema does not, which every check requires).
    pub fn set_table_ids(&self, ids: Vec<i64>) {
        let _ = self.table_ids.set(ids);
    }

    pub fn validated_at(&self) -> i64 {
        self.validated_at.load(Ordering::SeqCst)
    }

    /// Records that the answer was checked current at `snapshot`.
    pub fn validated(&self, snapshot: i64) {
        self.validated_at.fetch_max(snapshot, Ordering::SeqCst);
    }

    fn weight(&self) -> u64 {
        weight_of(self.body.len() as u64)
    }
}

/// Bytes an answer with a body of `body` bytes holds against the budget
/// (the body, and a fixed share for the rest).
fn weight_of(body: u64) -> u64 {
    body + 512
}

/// The cache's Prometheus counters (`ducklake_cache_*`).
#[derive(Clone)]
pub struct CacheCounters {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub bypass: IntCounter,
    pub evictions: IntCounter,
    pub invalidations: IntCounter,
    /// Requests that waited for another request's run of the same query.
    pub waits: IntCounter,
    pub bytes: IntGauge,
    pub entries: IntGauge,
}

impl CacheCounters {
    /// Counters registered nowhere (tests, tools).
    pub fn detached() -> Self {
        let counter = |name: &str| IntCounter::new(name, name).expect("valid name");
        let gauge = |name: &str| IntGauge::new(name, name).expect("valid name");
        Self {
            hits: counter("hits"),
            misses: counter("misses"),
            bypass: counter("bypass"),
            evictions: counter("evictions"),
            invalidations: counter("invalidations"),
            waits: counter("waits"),
            bytes: gauge("bytes"),
            entries: gauge("entries"),
        }
    }
}

/// What `/metrics/performance` and the console show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub bypass: u64,
    pub evictions: u64,
    pub invalidations: u64,
    /// Reads that waited for another request's run of the same query.
    pub waits: u64,
    /// hits / (hits + misses), when there were any.
    pub hit_ratio: Option<f64>,
}

struct Slot {
    entry: Arc<Entry>,
    /// Its place in `order`.
    rank: (u64, u64),
    served: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    /// (value as ordered bits, sequence) → key; the first goes first.
    order: BTreeSet<((u64, u64), Key)>,
    bytes: u64,
    clock: f64,
    sequence: u64,
}

impl Inner {
    fn rank(&mut self, entry: &Entry, served: u64) -> (u64, u64) {
        let saves = entry.answer.summary.elapsed_ms.max(0.01) * (served + 1) as f64;
        let value = self.clock + saves * 1024.0 / entry.weight() as f64;
        self.sequence += 1;
        // Non-negative floats order like their bits.
        (value.max(0.0).to_bits(), self.sequence)
    }

    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.slots.remove(key)?;
        self.order.remove(&(slot.rank, *key));
        self.bytes -= slot.entry.weight();
        Some(slot)
    }
}

/// The kept answers of this replica.
pub struct ResultCache {
    enabled: bool,
    max_bytes: u64,
    max_entry_bytes: u64,
    inner: Mutex<Inner>,
    counters: CacheCounters,
    running: super::leader::Running,
}

impl ResultCache {
    pub fn new(
        enabled: bool,
        max_bytes: u64,
        max_entry_bytes: u64,
        counters: CacheCounters,
    ) -> Self {
        Self {
            enabled: enabled && max_bytes > 0,
            max_bytes,
            max_entry_bytes: max_entry_bytes.min(max_bytes),
            inner: Mutex::new(Inner::default()),
            counters,
            running: Default::default(),
        }
    }

    /// The keys being run now (see [`super::Turn`]).
    pub(super) fn running(&self) -> &super::leader::Running {
        &self.running
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Entries larger than this are not kept.
    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// Whether an answer with a body of `body` bytes may be kept.
    pub fn fits(&self, body: u64) -> bool {
        self.enabled && weight_of(body) <= self.max_entry_bytes
    }

    pub fn counters(&self) -> &CacheCounters {
        &self.counters
    }

    /// The entry kept under `key`, if any (not yet checked current).
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.inner
            .lock()
            .slots
            .get(key)
            .map(|slot| Arc::clone(&slot.entry))
    }

    /// Records that the entry under `key` was served: it is worth more.
    pub fn served(&self, key: &Key) {
        let mut inner = self.inner.lock();
        let Some((entry, old, served)) = inner
            .slots
            .get(key)
            .map(|s| (Arc::clone(&s.entry), s.rank, s.served + 1))
        else {
            return;
        };
        let rank = inner.rank(&entry, served);
        inner.order.remove(&(old, *key));
        inner.order.insert((rank, *key));
        let slot = inner.slots.get_mut(key).expect("looked up above");
        slot.rank = rank;
        slot.served = served;
    }

    /// Drops the entry under `key`, if it is still `entry` (a newer one
    /// made meanwhile stays): it was found out of date.
    pub fn invalidate(&self, key: &Key, entry: &Arc<Entry>) {
        let mut inner = self.inner.lock();
        if inner
            .slots
            .get(key)
            .is_some_and(|slot| Arc::ptr_eq(&slot.entry, entry))
        {
            inner.remove(key);
            self.counters.invalidations.inc();
            self.publish(&inner);
        }
    }

    /// Keeps `entry` under `key`, evicting the least valuable entries to
    /// make room. An entry over the per-entry limit is not kept.
    pub fn insert(&self, key: Key, entry: Entry) {
        if !self.fits(entry.body.len() as u64) {
            return;
        }
        let entry = Arc::new(entry);
        let mut inner = self.inner.lock();
        inner.remove(&key);
        while inner.bytes + entry.weight() > self.max_bytes {
            let Some(&(rank, victim)) = inner.order.iter().next() else {
                break;
            };
            inner.clock = f64::from_bits(rank.0);
            inner.remove(&victim);
            self.counters.evictions.inc();
        }
        let rank = inner.rank(&entry, 0);
        inner.bytes += entry.weight();
        inner.order.insert((rank, key));
        inner.slots.insert(
            key,
            Slot {
                entry,
                rank,
                served: 0,
            },
        );
        self.publish(&inner);
    }

    fn publish(&self, inner: &Inner) {
        self.counters.bytes.set(inner.bytes as i64);
        self.counters.entries.set(inner.slots.len() as i64);
    }

    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = {
            let inner = self.inner.lock();
            (inner.slots.len() as u64, inner.bytes)
        };
        let c = &self.counters;
        let (hits, misses) = (c.hits.get(), c.misses.get());
        CacheStats {
            enabled: self.enabled,
            entries,
            bytes,
            max_bytes: self.max_bytes,
            max_entry_bytes: self.max_entry_bytes,
            hits,
            misses,
            bypass: c.bypass.get(),
            evictions: c.evictions.get(),
            invalidations: c.invalidations.get(),
            waits: c.waits.get(),
            hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyParts;

    fn key(n: u64) -> Key {
        Key::of(&KeyParts {
            sql: &format!("SELECT {n}"),
            params: "",
            format: "json",
            max_rows: 1,
            client_max_rows: false,
            max_result_bytes: 1,
            pin: None,
            role: crate::role::Role::Read,
            read_only: false,
        })
    }

    fn entry(bytes: usize, elapsed_ms: f64) -> Entry {
        Entry::new(
            Bytes::from(vec![0; bytes]),
            Answer {
                columns: Vec::new(),
                types: Vec::new(),
                summary: Summary {
                    row_count: 1,
                    truncated: false,
                    elapsed_ms,
                },
                etag: None,
                snapshot: 1,
                pinned: None,
                tables: Vec::new(),
            },
        )
    }

    #[test]
    fn the_budget_holds_and_the_least_valuable_goes_first() {
        let cache = ResultCache::new(true, 10_000, 5_000, CacheCounters::detached());
        // Three entries of ~2.5 KB: a slow one, a fast one, a fast one served often.
        cache.insert(key(1), entry(2_000, 50.0));
        cache.insert(key(2), entry(2_000, 1.0));
        cache.insert(key(3), entry(2_000, 1.0));
        for _ in 0..100 {
            cache.served(&key(3));
        }
        assert_eq!(cache.stats().entries, 3);
        // A fourth needs room: the fast entry never served goes.
        cache.insert(key(4), entry(3_000, 1.0));
        let stats = cache.stats();
        assert!(stats.bytes <= 10_000, "{stats:?}");
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(1)).is_some() && cache.get(&key(3)).is_some());
        assert_eq!(stats.evictions, 1);
        // Over the per-entry limit: not kept, nothing evicted for it.
        cache.insert(key(5), entry(6_000, 100.0));
        assert!(cache.get(&key(5)).is_none());
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn an_invalidated_entry_is_gone_but_a_newer_one_stays() {
        let cache = ResultCache::new(true, 10_000, 5_000, CacheCounters::detached());
        cache.insert(key(1), entry(10, 1.0));
        let old = cache.get(&key(1)).unwrap();
        cache.insert(key(1), entry(20, 1.0));
        cache.invalidate(&key(1), &old);
        assert_eq!(cache.get(&key(1)).unwrap().body.len(), 20);
        let new = cache.get(&key(1)).unwrap();
        cache.invalidate(&key(1), &new);
        assert!(cache.get(&key(1)).is_none());
        assert_eq!(cache.stats().bytes, 0);
        assert_eq!(cache.stats().invalidations, 1);
    }

    #[test]
    fn off_keeps_nothing() {
        let cache = ResultCache::new(false, 10_000, 5_000, CacheCounters::detached());
        cache.insert(key(1), entry(10, 1.0));
        assert!(cache.get(&key(1)).is_none());
        assert!(!cache.enabled());
    }

    #[test]
    fn validation_only_moves_forward() {
        let e = entry(1, 1.0);
        e.validated(5);
        e.validated(3);
        assert_eq!(e.validated_at(), 5);
    }
}
