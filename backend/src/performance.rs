//! Rolling latency statistics for `/metrics/performance`: per route and per
//! query kind, counts, error rate, throughput and p50/p90/p99/max over the
//! last 1 minute, 5 minutes and 1 hour, from HDR histograms kept in
//! 10-second buckets (1-minute window) and 1-minute buckets (the others);
//! plus the slowest recent queries by fingerprint (literals stripped).

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Longest latency a histogram records exactly (longer ones are clamped).
const MAX_MICROS: u64 = 3_600_000_000;
const SLOWEST_KEPT: usize = 20;

struct Bucket {
    /// Start of the bucket, in bucket units since the epoch.
    slot: u64,
    histogram: Histogram<u32>,
    errors: u64,
}

/// Buckets of one width in a ring.
struct Ring {
    width_secs: u64,
    buckets: Vec<Option<Bucket>>,
}

impl Ring {
    fn new(width_secs: u64, count: usize) -> Self {
        Self {
            width_secs,
            buckets: (0..count).map(|_| None).collect(),
        }
    }

    fn record(&mut self, now_secs: u64, micros: u64, error: bool) {
        let slot = now_secs / self.width_secs;
        let index = (slot % self.buckets.len() as u64) as usize;
        let bucket = &mut self.buckets[index];
        if bucket.as_ref().is_none_or(|b| b.slot != slot) {
            *bucket = Some(Bucket {
                slot,
                histogram: Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid bounds"),
                errors: 0,
            });
        }
        let bucket = bucket.as_mut().expect("just set");
        bucket
            .histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
        if error {
            bucket.errors += 1;
        }
    }

    /// Merged statistics of the buckets within the last `window_secs`.
    fn window(&self, now_secs: u64, window_secs: u64) -> WindowStats {
        let newest = now_secs / self.width_secs;
        let oldest = newest.saturating_sub(window_secs / self.width_secs - 1);
        let mut merged = Histogram::<u32>::new_with_bounds(1, MAX_MICROS, 2).expect("valid bounds");
        let mut errors = 0;
        for bucket in self.buckets.iter().flatten() {
            if (oldest..=newest).contains(&bucket.slot) {
                let _ = merged.add(&bucket.histogram);
                errors += bucket.errors;
            }
        }
        let count = merged.len();
        let ms = |q: f64| merged.value_at_quantile(q) as f64 / 1000.0;
        WindowStats {
            count,
            errors,
            error_rate: if count == 0 {
                0.0
            } else {
                errors as f64 / count as f64
            },
            per_second: count as f64 / window_secs as f64,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: merged.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowStats {
    pub count: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

struct Series {
    ten_seconds: Ring,
    minutes: Ring,
}

impl Series {
    fn new() -> Self {
        Self {
            ten_seconds: Ring::new(10, 7),
            minutes: Ring::new(60, 61),
        }
    }

    fn record(&mut self, now: u64, micros: u64, error: bool) {
        self.ten_seconds.record(now, micros, error);
        self.minutes.record(now, micros, error);
    }

    fn stats(&self, now: u64) -> serde_json::Value {
        serde_json::json!({
            "1m": self.ten_seconds.window(now, 60),
            "5m": self.minutes.window(now, 300),
            "1h": self.minutes.window(now, 3600),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SlowQuery {
    pub fingerprint: String,
    pub kind: &'static str,
    pub duration_ms: f64,
    pub rows: u64,
    pub outcome: String,
    /// Who ran it: the API key's prefix once authentication exists.
    pub principal: String,
    pub at_unix_ms: u128,
}

#[derive(Default)]
pub struct Tracker {
    routes: Mutex<HashMap<String, Series>>,
    kinds: Mutex<HashMap<&'static str, Series>>,
    slowest: Mutex<Vec<SlowQuery>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Tracker {
    pub fn record_request(&self, route: &str, method: &str, elapsed: Duration, error: bool) {
        let key = format!("{method} {route}");
        self.routes
            .lock()
            .entry(key)
            .or_insert_with(Series::new)
            .record(now_secs(), elapsed.as_micros() as u64, error);
    }

    pub fn record_query(&self, query: SlowQuery, elapsed: Duration) {
        let error = query.outcome != "ok";
        self.kinds
            .lock()
            .entry(query.kind)
            .or_insert_with(Series::new)
            .record(now_secs(), elapsed.as_micros() as u64, error);
        let mut slowest = self.slowest.lock();
        let hour_ago = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .saturating_sub(3_600_000);
        slowest.retain(|q| q.at_unix_ms >= hour_ago);
        slowest.push(query);
        slowest.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        slowest.truncate(SLOWEST_KEPT);
    }

    pub fn report(&self) -> serde_json::Value {
        let now = now_secs();
        let routes: serde_json::Map<String, serde_json::Value> = self
            .routes
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.stats(now)))
            .collect();
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .lock()
            .iter()
            .map(|(k, s)| (k.to_string(), s.stats(now)))
            .collect();
        serde_json::json!({
            "routes": routes,
            "query_kinds": kinds,
            "slowest_queries": *self.slowest.lock(),
        })
    }
}

/// The SQL with every literal replaced by `?` and whitespace collapsed:
/// string and numeric literals never leave the process through it.
pub fn fingerprint(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut last_space = true;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A string literal, with '' escapes.
                while let Some(n) = chars.next() {
                    if n == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
                last_space = false;
            }
            '-' if chars.peek() == Some(&'-') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_ascii_digit()
                && !out
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_alphanumeric() || p == '_') =>
            {
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.' || *n == '_')
                {
                    chars.next();
                }
                out.push('?');
                last_space = false;
            }
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            c => {
                out.push(c);
                last_space = false;
            }
        }
    }
    let trimmed = out.trim();
    match trimmed.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_strip_literals() {
        assert_eq!(
            fingerprint(
                "SELECT * FROM t WHERE name = 'Bob''s' AND id = 42 -- secret\n AND x IN (1.5, 2)"
            ),
            "SELECT * FROM t WHERE name = ? AND id = ? AND x IN (?, ?)"
        );
        assert_eq!(fingerprint("select col1 from t2"), "select col1 from t2");
    }

    #[test]
    fn windows_count_and_rank() {
        let mut ring = Ring::new(60, 61);
        for ms in [1u64, 2, 3, 4, 100] {
            ring.record(1_000_000, ms * 1000, ms == 100);
        }
        ring.record(1_000_000 - 3600, 5_000_000, false); // an hour ago: outside
        let stats = ring.window(1_000_000, 3600);
        assert_eq!((stats.count, stats.errors), (5, 1));
        assert!((stats.p50_ms - 3.0).abs() < 0.1, "{stats:?}");
        assert!((stats.max_ms - 100.0).abs() < 1.0, "{stats:?}");
    }
}
