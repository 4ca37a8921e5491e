//! What the result cache's validity check costs per hit, on a PostgreSQL
//! catalog (one query on the service's own pool) and on the local catalog
//! file (a read through DuckDB), when the lake is unchanged since the
//! answer was last checked and when another table was written just before
//! each hit (the check then also reads the snapshots since).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::json;

use super::Service;

const PG_PASSWORD: &str = "postgres-test-pw";
const HITS: usize = 2000;
const MOVED: usize = 200;

/// A throwaway PostgreSQL server (scripts/pg.sh), stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Option<Self> {
        let installed = std::fs::read_dir("/usr/lib/postgresql").is_ok();
        if !installed {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let ok = Command::new(script("pg.sh"))
            .args(["start", dir.path().to_str().unwrap(), &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let created = Command::new("psql")
            .env("PGPASSWORD", PG_PASSWORD)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-qc", "CREATE DATABASE bench"])
            .status()
            .is_ok_and(|s| s.success());
        created.then_some(Self { dir, port })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script("pg.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// The sum and count of the check's histogram.
fn check_seconds(client: &reqwest::blocking::Client, base: &str) -> (f64, f64) {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("ducklake_cache_check_duration_seconds_sum"),
        value("ducklake_cache_check_duration_seconds_count"),
    )
}

/// Mean check per hit (µs), the hits' mean and p50 latency (ms), lake
/// unchanged; then the mean check per hit when a write to another table
/// came first.
fn measure(client: &reqwest::blocking::Client, base: &str) -> (f64, f64, f64, f64) {
    let sql = |sql: &str| {
        let res = client
            .post(format!("{base}/api/v1/query"))
            .json(&json!({ "sql": sql }))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "{sql}");
    };
    sql("CREATE TABLE checked AS SELECT range AS id, 'n' || range AS name FROM range(1000)");
    sql("CREATE TABLE other (x INT)");
    let hit = || {
        let res = client
            .post(format!("{base}/api/v1/query"))
            .json(&json!({"sql": "SELECT * FROM checked WHERE id = ?", "params": [7]}))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
        let cache = res.headers()["x-cache"].to_str().unwrap().to_string();
        res.bytes().unwrap();
        cache
    };
    hit();
    assert_eq!(hit(), "hit", "the second run is served from the cache");
    let (sum0, count0) = check_seconds(client, base);
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..HITS {
        let started = Instant::now();
        assert_eq!(hit(), "hit");
        latencies
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
    }
    let (sum1, count1) = check_seconds(client, base);
    for n in 0..MOVED {
        sql(&format!("INSERT INTO other VALUES ({n})"));
        assert_eq!(hit(), "hit", "a write to another table keeps the answer");
    }
    let (sum2, count2) = check_seconds(client, base);
    (
        (sum1 - sum0) / (count1 - count0) * 1e6,
        latencies.mean() / 1000.0,
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        (sum2 - sum1) / (count2 - count1) * 1e6,
    )
}

pub fn check_cost(client: &reqwest::blocking::Client) {
    println!();
    println!("## The result cache's validity check, per hit");
    println!();
    println!(
        "{HITS} hits of one point lookup from one client with the lake unchanged, then {MOVED} \
         hits each after a write to another table (the check then reads the snapshots since)."
    );
    println!();
    println!("| catalog | check, lake unchanged (µs, mean) | hit (ms, mean / p50) | check / hit (means) | check, lake moved (µs, mean) |");
    println!("|---|---:|---:|---:|---:|");
    let print = |name: &str, (check, mean, p50, moved): (f64, f64, f64, f64)| {
        println!(
            "| {name} | {check:.0} | {mean:.2} / {p50:.2} | {:.0}% | {moved:.0} |",
            check / 10.0 / mean
        );
    };
    let local = Service::start_with(&[]);
    print("local DuckDB file", measure(client, &local.base));
    drop(local);
    match Postgres::start() {
        None => println!("| PostgreSQL | not measured: PostgreSQL is not installed here | | | |"),
        Some(pg) => {
            let service = Service::start_with(&[
                ("DB_POSTGRES_HOST", "127.0.0.1".into()),
                ("DB_POSTGRES_PORT", pg.port.to_string()),
                ("DB_POSTGRES_DB", "bench".into()),
                ("DB_POSTGRES_PASSWORD", PG_PASSWORD.into()),
                ("DB_POSTGRES_MIGRATE_ON_START", "true".into()),
            ]);
            print("PostgreSQL (loopback)", measure(client, &service.base));
            drop(service);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
