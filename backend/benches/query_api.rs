//! End-to-end benchmark of the query API, printed as ratios against
//! baselines measured in the same run:
//!
//! - large results (1M and 10M rows) over HTTP in every format, against
//!   DuckDB producing the same result in process as Arrow batches (the floor);
//! - the same large results over Arrow Flight SQL (`GetFlightInfo` +
//!   `DoGet`), against the floor and against HTTP's Arrow;
//! - point-lookup throughput and latency at 1, 16 and 64 concurrent clients,
//!   against the same lookups on a DuckLake table on one in-process connection,
//!   and over Flight SQL against HTTP at 1 and 16 clients;
//! - the service's peak resident memory while it streams the 10M-row results,
//!   against its resident memory when idle.
//!
//! Run: `./build.sh bench`. To rerun a part: `BENCH_FORMATS=arrow,json`
//! (large results in these formats only), `BENCH_ROWS=10000000` (these row
//! counts only), `BENCH_LOOKUPS=0` (no point lookups).
//! The service is the real binary, started as a child process on an embedded
//! lake in a temporary directory.

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ducklake-backend");
const LOOKUP_ROWS: i64 = 100_000;
/// Runs of each large-result measurement, the best one counting: the same
/// for the floor and for every format, so that a noisy moment on a shared
/// machine weighs on neither side.
const RUNS: usize = 5;

fn large_sql(rows: u64) -> String {
    format!(
        "SELECT range AS id, range * 0.5 AS price, 'item-' || (range % 1000) AS label, \
         DATE '2024-01-01' + (range % 365)::INT AS day FROM range({rows})"
    )
}

struct Service {
    child: Child,
    base: String,
    flight: String,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let flight_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(BIN);
        cmd.env("DATA_DIR", dir.path())
            .env("SERVER_PORT", port.to_string())
            .env("FLIGHT_PORT", flight_port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("ENVIRONMENT", "test")
            .env("QUERY_MAX_ROWS", "20000000")
            .env("QUERY_TIMEOUT_MS", "600000")
            .env("QUERY_MAX_QUEUED", "1000")
            .env("QUERY_SLOW_QUERY_MS", "3600000")
            .env("DUCKDB_CONNECTIONS", "16")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("the service starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = reqwest::blocking::get(format!("{base}/ready")) {
                if res.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the service did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            base,
            flight: format!("http://127.0.0.1:{flight_port}"),
            _dir: dir,
        }
    }

    fn status_kb(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds for DuckDB to produce `sql` in process, as Arrow batches (best of
/// [`RUNS`]).
fn floor_seconds(sql: &str) -> f64 {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut stmt = conn.prepare(sql).unwrap();
            let rows: usize = stmt.stream_arrow([]).unwrap().map(|b| b.num_rows()).sum();
            assert!(rows > 0);
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Seconds and bytes for one HTTP request reading the whole body (best of
/// [`RUNS`]).
fn http_seconds(
    client: &reqwest::blocking::Client,
    base: &str,
    sql: &str,
    format: &str,
) -> (f64, u64) {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut res = client
                .post(format!("{base}/api/v1/query"))
                .json(&json!({"sql": sql, "format": format}))
                .send()
                .unwrap();
            assert_eq!(res.status(), 200, "{format}");
            let bytes = std::io::copy(&mut res, &mut std::io::sink()).unwrap();
            (started.elapsed().as_secs_f64(), bytes)
        })
        .fold(
            (f64::INFINITY, 0),
            |best, run| if run.0 < best.0 { run } else { best },
        )
}

type Flight = arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>;

async fn flight_client(uri: &str) -> Flight {
    let channel = tonic::transport::Endpoint::from_shared(uri.to_string())
        .unwrap()
        .connect()
        .await
        .expect("the Flight SQL port answers");
    Flight::new(channel)
}

/// Runs `sql` over Flight SQL and reads every batch; returns the rows.
async fn flight_rows(client: &mut Flight, sql: &str) -> usize {
    use futures_util::TryStreamExt;
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let mut rows = 0;
    for endpoint in info.endpoint {
        let mut stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        while let Some(batch) = stream.try_next().await.unwrap() {
            rows += batch.num_rows();
        }
    }
    rows
}

/// Seconds for one Flight SQL statement read whole (best of [`RUNS`]).
fn flight_seconds(runtime: &tokio::runtime::Runtime, uri: &str, sql: &str, rows: u64) -> f64 {
    runtime.block_on(async {
        let mut client = flight_client(uri).await;
        let mut best = f64::INFINITY;
        for _ in 0..RUNS {
            let started = Instant::now();
            assert_eq!(flight_rows(&mut client, sql).await as u64, rows);
            best = best.min(started.elapsed().as_secs_f64());
        }
        best
    })
}

fn main() {
    let service = Service::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let idle_rss_kb = service.status_kb("VmRSS:");
    println!("# ducklake-backend query API benchmark");
    println!();
    println!(
        "machine: {} cores, {} ; DuckDB 1.5.5 ; dev profile, opt-level 3",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    println!();
    println!("## Large results: HTTP end to end vs. DuckDB in process (Arrow batches)");
    println!();
    println!("| rows | format | seconds | MB | MB/s | × floor |");
    println!("|---:|---|---:|---:|---:|---:|");
    let formats: Vec<String> = chosen(
        "BENCH_FORMATS",
        &[
            "arrow",
            "parquet",
            "csv",
            "tsv",
            "ndjson",
            "json",
            "json_objects",
        ],
    );
    let row_counts: Vec<u64> = chosen("BENCH_ROWS", &["1000000", "10000000"])
        .iter()
        .map(|r| r.parse().expect("BENCH_ROWS holds row counts"))
        .collect();
    for rows in row_counts {
        let sql = large_sql(rows);
        let floor = floor_seconds(&sql);
        println!("| {rows} | floor (in process) | {floor:.3} | | | 1.00 |");
        let mut arrow_seconds = None;
        for format in &formats {
            let (seconds, bytes) = http_seconds(&client, &service.base, &sql, format);
            let mb = bytes as f64 / 1e6;
            if format == "arrow" {
                arrow_seconds = Some((seconds, mb));
            }
            println!(
                "| {rows} | {format} | {seconds:.3} | {mb:.0} | {:.0} | {:.2} |",
                mb / seconds,
                seconds / floor
            );
        }
        let seconds = flight_seconds(&runtime, &service.flight, &sql, rows);
        let versus_http = arrow_seconds
            .map(|(http, _)| format!(" ({:.2}× HTTP arrow)", seconds / http))
            .unwrap_or_default();
        let mb = arrow_seconds.map(|(_, mb)| mb).unwrap_or(0.0);
        println!(
            "| {rows} | Flight SQL DoGet{versus_http} | {seconds:.3} | {mb:.0} | {:.0} | {:.2} |",
            mb / seconds,
            seconds / floor
        );
    }
    let peak_rss_kb = service.status_kb("VmHWM:");
    println!();
    println!("## Memory");
    println!();
    println!(
        "service RSS idle {} MB; peak while streaming every format at 10M rows {} MB ({:.2}× idle, +{} MB)",
        idle_rss_kb / 1024,
        peak_rss_kb / 1024,
        peak_rss_kb as f64 / idle_rss_kb.max(1) as f64,
        peak_rss_kb.saturating_sub(idle_rss_kb) / 1024
    );

    if std::env::var("BENCH_LOOKUPS").is_ok_and(|v| v == "0") {
        return;
    }
    // Point lookups.
    let setup = client
        .post(format!("{}/api/v1/query", service.base))
        .json(&json!({"sql": format!(
            "CREATE TABLE items AS SELECT range AS id, 'item-' || range AS name, range * 0.5 AS price FROM range({LOOKUP_ROWS})")}))
        .send()
        .unwrap();
    assert_eq!(setup.status(), 200);
    // The floor: the same lookups on a DuckLake table in process (DuckLake
    // reads the catalog and the Parquet file on every query, like the service).
    let lake_dir = tempfile::tempdir().unwrap();
    let in_process_rps = {
        let config = duckdb::Config::default()
            .enable_autoload_extension(false)
            .unwrap();
        let conn = duckdb::Connection::open_in_memory_with_flags(config).unwrap();
        conn.execute_batch(&format!(
            "LOAD ducklake; ATTACH 'ducklake:{dir}/catalog.ducklake' AS lake (DATA_PATH '{dir}/data/'); USE lake; \
             CREATE TABLE items AS SELECT range AS id, 'item-' || range AS name, range * 0.5 AS price FROM range({LOOKUP_ROWS})",
            dir = lake_dir.path().display()
        ))
        .unwrap();
        let mut stmt = conn.prepare("SELECT * FROM items WHERE id = ?").unwrap();
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(3) {
            let id = (n * 7919) as i64 % LOOKUP_ROWS;
            let rows: usize = stmt.query_arrow([id]).unwrap().map(|b| b.num_rows()).sum();
            assert_eq!(rows, 1);
            n += 1;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    println!();
    println!("## Point lookups (`SELECT * FROM items WHERE id = ?`, JSON)");
    println!();
    println!(
        "in-process baseline: {in_process_rps:.0} lookups/s on one connection to a DuckLake table"
    );
    println!();
    println!("| clients | requests/s | × in-process | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|");
    let mut http_rps = std::collections::HashMap::new();
    for clients in [1usize, 16, 64] {
        let (rps, p50, p99) =
            runtime.block_on(lookups(&service.base, clients, Duration::from_secs(5)));
        println!(
            "| {clients} | {rps:.0} | {:.2} | {p50:.2} | {p99:.2} |",
            rps / in_process_rps
        );
        http_rps.insert(clients, rps);
    }
    println!();
    println!("## Point lookups over Flight SQL (`GetFlightInfo` + `DoGet` per lookup)");
    println!();
    println!("| clients | lookups/s | × HTTP JSON | × in-process | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for clients in [1usize, 16] {
        let (rps, p50, p99) = runtime.block_on(flight_lookups(
            &service.flight,
            clients,
            Duration::from_secs(5),
        ));
        println!(
            "| {clients} | {rps:.0} | {:.2} | {:.2} | {p50:.2} | {p99:.2} |",
            rps / http_rps[&clients],
            rps / in_process_rps
        );
    }
}

/// Point lookups over Flight SQL: each client on its own connection, as a
/// driver holds one.
async fn flight_lookups(uri: &str, clients: usize, duration: Duration) -> (f64, f64, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let uri = uri.to_string();
            tokio::spawn(async move {
                let mut client = flight_client(&uri).await;
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut n = c as i64;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    let sql = format!("SELECT * FROM items WHERE id = {}", n * 7919 % LOOKUP_ROWS);
                    assert_eq!(flight_rows(&mut client, &sql).await, 1);
                    histogram.record(t.elapsed().as_micros() as u64).unwrap();
                    n += clients as i64;
                }
                histogram
            })
        })
        .collect();
    throughput(tasks, started).await
}

/// The comma-separated values of `var`, else `all`.
fn chosen(var: &str, all: &[&str]) -> Vec<String> {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|v| v.trim().to_string()).collect()
        }
        _ => all.iter().map(|v| v.to_string()).collect(),
    }
}

async fn lookups(base: &str, clients: usize, duration: Duration) -> (f64, f64, f64) {
    let client = reqwest::Client::new();
    let url = Arc::new(format!("{base}/api/v1/query"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let url = Arc::clone(&url);
            tokio::spawn(async move {
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut n = c as i64;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    let res = client
                        .post(url.as_str())
                        .json(&json!({"sql": "SELECT * FROM items WHERE id = ?", "params": [n * 7919 % LOOKUP_ROWS]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                    res.bytes().await.unwrap();
                    histogram.record(t.elapsed().as_micros() as u64).unwrap();
                    n += clients as i64;
                }
                histogram
            })
        })
        .collect();
    throughput(tasks, started).await
}

/// Requests per second, p50 and p99 (ms) of the clients' latency histograms.
async fn throughput(
    tasks: Vec<tokio::task::JoinHandle<hdrhistogram::Histogram<u64>>>,
    started: Instant,
) -> (f64, f64, f64) {
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for task in tasks {
        all.add(task.await.unwrap()).unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    (
        all.len() as f64 / seconds,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
    )
}
