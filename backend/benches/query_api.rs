//! End-to-end benchmark of the query API, printed as ratios against
//! baselines measured in the same run:
//!
//! - large results (1M and 10M rows) over HTTP in every format, against
//!   DuckDB producing the same result in process as Arrow batches (the floor);
//! - the same large results over Arrow Flight SQL (`GetFlightInfo` +
//!   `DoGet`), against the floor and against HTTP's Arrow;
//! - the transport floor: the floor's batches written as an Arrow IPC stream
//!   to a loopback socket and read back as batches by another thread, with
//!   no service in between (what crossing a process boundary costs on the
//!   machine, to tell the service's own share from the transport's);
//! - the service's peak resident memory while it streams the 10M-row results,
//!   against its resident memory when idle;
//! - point lookups (`SELECT * FROM items WHERE id = ?` on a 100k-row DuckLake
//!   table) at 1 and 32 concurrent clients, 5 s a figure, throughput and
//!   p50/p99 latency (issue 19):
//!   - uncached: every request a different id (the keys walked with a stride,
//!     distinct across clients and figures, never repeated within a run), for
//!     the service (HTTP JSON, the id a parameter; with hot tables on, as it
//!     ships, its reads are served from the in-memory copy of the table, and
//!     the run says how many), the FastAPI + DuckDB stack
//!     of origin document 004 (`scripts/fastapi-baseline.py`, same query and
//!     parameter, its own lake of the same shape) and DuckDB in process (one
//!     connection at 1 client; at 32, one thread per core, each with its own
//!     connection and the statement prepared);
//!   - repeated: the same 100 ids cycled, the service against in process,
//!     with the share of responses that carried `X-Cache: hit`;
//!   - the uncached lookups over Flight SQL, against HTTP;
//!   - uncached lookups from one client while the lake moves (an insert into
//!     another table before each, not timed), against in process.
//!
//! Run: `./build.sh bench`. To rerun a part: `BENCH_FORMATS=arrow,json`
//! (large results in these formats only), `BENCH_ROWS=10000000` (these row
//! counts only), `BENCH_LARGE=0` (no large results, no memory figure),
//! `BENCH_LOOKUPS=0` (no point lookups). The service's own settings pass
//! through (`CACHE_ENABLED=false ./build.sh bench`).
//! The service is the real binary, started as a child process on an embedded
//! lake in a temporary directory. The FastAPI baseline runs in a virtual
//! environment of its own (`BENCH_FASTAPI_VENV`, default
//! `~/.cache/ducklake-backend/fastapi-baseline-venv`), where the benchmark
//! pip-installs the script's pinned versions when `--check` finds them
//! missing; it is a child process too, killed when the benchmark ends or
//! panics.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ducklake-backend");
const LOOKUP_ROWS: i64 = 100_000;
const LOOKUP_SQL: &str = "SELECT * FROM items WHERE id = ?";
/// Uncached lookups take key `k * STRIDE % LOOKUP_ROWS` for the k-th request:
/// a prime not dividing 100 000, so the first 100 000 requests all differ.
const STRIDE: u64 = 7919;
/// Distinct ids the repeated lookups cycle through.
const REPEATED: u64 = 100;
/// Length of each point-lookup figure.
const FIGURE: Duration = Duration::from_secs(5);
const CLIENTS: [usize; 2] = [1, 32];
const FASTAPI_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/fastapi-baseline.py"
);
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

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[path = "support/check.rs"]
mod check;

impl Service {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// The service with `env` added to the benchmark's settings.
    fn start_with(env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let flight_port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
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

/// Seconds for the floor's batches to cross a loopback socket as an Arrow
/// IPC stream and be read back as batches by another thread (best of
/// [`RUNS`]): what moving the result between two processes costs on this
/// machine before any service is involved (the same two cores run DuckDB,
/// the encoding, the kernel's copies and the reader).
fn transport_floor_seconds(sql: &str) -> f64 {
    use std::io::{BufReader, BufWriter};
    let conn = duckdb::Connection::open_in_memory().unwrap();
    (0..RUNS)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                let (socket, _) = listener.accept().unwrap();
                let batches = arrow_ipc::reader::StreamReader::try_new(
                    BufReader::with_capacity(1 << 20, socket),
                    None,
                )
                .unwrap();
                batches.map(|b| b.unwrap().num_rows()).sum::<usize>()
            });
            let started = Instant::now();
            let socket = std::net::TcpStream::connect(addr).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let batches = stmt.stream_arrow([]).unwrap();
            let schema = batches.get_schema();
            let mut writer = arrow_ipc::writer::StreamWriter::try_new(
                BufWriter::with_capacity(1 << 20, socket),
                &schema,
            )
            .unwrap();
            for batch in batches {
                writer.write(&batch).unwrap();
            }
            writer.finish().unwrap();
            drop(writer);
            assert!(reader.join().unwrap() > 0);
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
    flight_rows_in(client, sql, None).await
}

/// [`flight_rows`] inside transaction `txn`, if any.
async fn flight_rows_in(client: &mut Flight, sql: &str, txn: Option<bytes::Bytes>) -> usize {
    use futures_util::TryStreamExt;
    let info = client.execute(sql.to_string(), txn).await.unwrap();
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
    // The large results measure the streaming path, so their service keeps
    // nothing (best of five runs would otherwise be four cache hits); the
    // point lookups run on one with the result cache as it ships.
    let service = Service::start_with(&[("CACHE_ENABLED", "false".into())]);
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
    if !off("BENCH_LARGE") {
        large_results(&service, &client, &runtime, idle_rss_kb);
    }
    drop(service);
    if !off("BENCH_LOOKUPS") {
        point_lookups(&Service::start(), &client, &runtime);
    }
    if !off("BENCH_CACHE_CHECK") {
        check::check_cost(&client);
    }
}

/// Whether `var` is set to `0`.
fn off(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "0")
}

/// Large results over HTTP in every format and over Flight, against the
/// floor; then the service's memory.
fn large_results(
    service: &Service,
    client: &reqwest::blocking::Client,
    runtime: &tokio::runtime::Runtime,
    idle_rss_kb: u64,
) {
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
        let transport = transport_floor_seconds(&sql);
        println!(
            "| {rows} | floor + Arrow IPC over loopback to a reader (no service) | {transport:.3} | | | {:.2} |",
            transport / floor
        );
        let mut arrow_seconds = None;
        for format in &formats {
            let (seconds, bytes) = http_seconds(client, &service.base, &sql, format);
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
        let seconds = flight_seconds(runtime, &service.flight, &sql, rows);
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

/// The ids one target's lookups take, shared by its clients (and, for the
/// service, by its HTTP and Flight figures).
#[derive(Clone)]
enum Keys {
    /// Every request a key not asked before in this run.
    Walk(Arc<AtomicU64>),
    /// The same [`REPEATED`] ids over and over.
    Cycle(Arc<AtomicU64>),
}

impl Keys {
    fn walk() -> Self {
        Keys::Walk(Arc::default())
    }

    fn cycle() -> Self {
        Keys::Cycle(Arc::default())
    }

    fn next(&self) -> i64 {
        match self {
            Keys::Walk(n) => {
                (n.fetch_add(1, Ordering::Relaxed) * STRIDE % LOOKUP_ROWS as u64) as i64
            }
            Keys::Cycle(n) => {
                let k = n.fetch_add(1, Ordering::Relaxed) % REPEATED;
                (k * (LOOKUP_ROWS as u64 / REPEATED) + 17) as i64
            }
        }
    }

    /// Requests that took a key already asked in this run.
    fn repeats(&self) -> u64 {
        match self {
            Keys::Walk(n) => n.load(Ordering::Relaxed).saturating_sub(LOOKUP_ROWS as u64),
            Keys::Cycle(n) => n.load(Ordering::Relaxed).saturating_sub(REPEATED),
        }
    }
}

/// One measured figure: throughput, latency, and the `X-Cache` headers seen.
#[derive(Default)]
struct Figure {
    requests: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Responses with `X-Cache: hit`.
    hits: u64,
    /// Responses with any `X-Cache` header.
    tagged: u64,
}

impl Figure {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn from_parts(parts: Vec<(hdrhistogram::Histogram<u64>, u64, u64)>, started: Instant) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let (mut hits, mut tagged) = (0, 0);
        for (histogram, h, t) in parts {
            all.add(histogram).unwrap();
            hits += h;
            tagged += t;
        }
        Figure {
            requests: all.len(),
            seconds,
            p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
            hits,
            tagged,
        }
    }

    /// The share of `X-Cache: hit` responses, or why there is none.
    fn hit_share(&self) -> String {
        if self.tagged == 0 {
            "no header".into()
        } else {
            format!(
                "{:.1}%",
                100.0 * self.hits as f64 / self.requests.max(1) as f64
            )
        }
    }
}

/// One lookup of `id` posted to `url`, answered 200.
async fn lookup(client: &reqwest::Client, url: &str, id: i64) -> reqwest::Response {
    let res = client
        .post(url)
        .json(&json!({"sql": LOOKUP_SQL, "params": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res
}

/// `rounds` lookups on each target, off its own keys, answers read whole
/// (not measured).
fn warm_up(runtime: &tokio::runtime::Runtime, targets: &[(&String, &Keys)], rounds: u64) {
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..rounds {
            for (url, keys) in targets {
                lookup(&client, url, keys.next())
                    .await
                    .bytes()
                    .await
                    .unwrap();
            }
        }
    });
}

/// `clients` concurrent HTTP clients posting the lookup for [`FIGURE`], each
/// waiting for its answer before the next request (one connection each).
async fn http_lookups(url: &str, clients: usize, keys: &Keys) -> Figure {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, keys) = (client.clone(), url.to_string(), keys.clone());
            tokio::spawn(async move {
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let (mut hits, mut tagged) = (0, 0);
                while started.elapsed() < FIGURE {
                    let t = Instant::now();
                    let res = lookup(&client, &url, keys.next()).await;
                    if let Some(cache) = res.headers().get("x-cache") {
                        tagged += 1;
                        hits += u64::from(cache.as_bytes().eq_ignore_ascii_case(b"hit"));
                    }
                    res.bytes().await.unwrap();
                    histogram.record(t.elapsed().as_micros() as u64).unwrap();
                }
                (histogram, hits, tagged)
            })
        })
        .collect();
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap());
    }
    Figure::from_parts(parts, started)
}

/// One lookup of `id` in process, its one row read, its time recorded.
fn local_lookup(
    stmt: &mut duckdb::Statement<'_>,
    id: i64,
    histogram: &mut hdrhistogram::Histogram<u64>,
) {
    let started = Instant::now();
    let rows: usize = stmt.query_arrow([id]).unwrap().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1);
    histogram
        .record(started.elapsed().as_micros() as u64)
        .unwrap();
}

/// The lookups in process for [`FIGURE`]: `threads` threads, each with its
/// own connection to `db`'s lake and the statement prepared.
fn in_process_lookups(db: &duckdb::Connection, threads: usize, keys: &Keys) -> Figure {
    let connections: Vec<_> = (0..threads).map(|_| db.try_clone().unwrap()).collect();
    let started = Instant::now();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .into_iter()
            .map(|conn| {
                let keys = keys.clone();
                scope.spawn(move || {
                    conn.execute_batch("USE lake.main").unwrap();
                    let mut stmt = conn.prepare(LOOKUP_SQL).unwrap();
                    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                    while started.elapsed() < FIGURE {
                        local_lookup(&mut stmt, keys.next(), &mut histogram);
                    }
                    (histogram, 0, 0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Figure::from_parts(parts, started)
}

/// Lookups between two commits of a transaction, as the benchmark's
/// DB-API-like clients make them.
const LOOKUPS_PER_COMMIT: usize = 20;

/// Point lookups over Flight SQL (`GetFlightInfo` + `DoGet`, the id a
/// literal): each client on its own connection, as a driver holds one.
/// With `commit_every`, as DB-API drivers with autocommit off (their
/// default) make them: each client in a transaction, committed every that
/// many lookups and begun again at once (what ADBC does after a commit).
async fn flight_lookups(
    uri: &str,
    clients: usize,
    keys: &Keys,
    commit_every: Option<usize>,
) -> Figure {
    use arrow_flight::sql::EndTransaction::Commit;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (uri, keys) = (uri.to_string(), keys.clone());
            tokio::spawn(async move {
                let mut client = flight_client(&uri).await;
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut txn = match commit_every {
                    Some(_) => Some(client.begin_transaction().await.unwrap()),
                    None => None,
                };
                let mut done = 0;
                while started.elapsed() < FIGURE {
                    let t = Instant::now();
                    let sql = format!("SELECT * FROM items WHERE id = {}", keys.next());
                    assert_eq!(flight_rows_in(&mut client, &sql, txn.clone()).await, 1);
                    done += 1;
                    if let (Some(every), Some(open)) = (commit_every, &txn) {
                        if done % every == 0 {
                            client.end_transaction(open.clone(), Commit).await.unwrap();
                            txn = Some(client.begin_transaction().await.unwrap());
                        }
                    }
                    histogram.record(t.elapsed().as_micros() as u64).unwrap();
                }
                if let Some(open) = txn {
                    client.end_transaction(open, Commit).await.unwrap();
                }
                (histogram, 0, 0)
            })
        })
        .collect();
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap());
    }
    Figure::from_parts(parts, started)
}

/// The FastAPI + DuckDB baseline (`scripts/fastapi-baseline.py`) under
/// uvicorn, on a lake of its own in a temporary directory. Dropping it
/// (at the end, or while a panic unwinds) kills the process.
struct FastApi {
    child: Child,
    base: String,
    /// The pinned packages, for the report.
    versions: String,
    _dir: tempfile::TempDir,
}

impl FastApi {
    fn start() -> Self {
        let python = fastapi_python();
        let versions = String::from_utf8(
            Command::new(&python)
                .args([FASTAPI_SCRIPT, "--requirements"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(", ");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .arg(FASTAPI_SCRIPT)
            .env("LAKE_DIR", dir.path())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the FastAPI baseline starts");
        let mut baseline = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            versions,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(res) = reqwest::blocking::get(format!("{}/health", baseline.base)) {
                if res.status() == 200 {
                    break;
                }
            }
            if let Some(status) = baseline.child.try_wait().unwrap() {
                panic!("the FastAPI baseline exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the FastAPI baseline did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        baseline
    }
}

impl Drop for FastApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the baseline's virtual environment, made and filled with the
/// script's pinned packages when its `--check` fails.
fn fastapi_python() -> PathBuf {
    let venv = std::env::var_os("BENCH_FASTAPI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/ducklake-backend/fastapi-baseline-venv")
        });
    let python = venv.join("bin/python");
    let run = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !python.exists() {
        eprintln!("fastapi baseline: creating {}", venv.display());
        assert!(
            run(
                Path::new("python3"),
                &["-m", "venv", venv.to_str().unwrap()]
            ),
            "python3 -m venv {} failed",
            venv.display()
        );
    }
    if !run(&python, &[FASTAPI_SCRIPT, "--check"]) {
        let requirements = String::from_utf8(
            Command::new(&python)
                .args([FASTAPI_SCRIPT, "--requirements"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let requirements: Vec<&str> = requirements.split_whitespace().collect();
        eprintln!("fastapi baseline: pip install {}", requirements.join(" "));
        let mut args = vec![
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ];
        args.extend(&requirements);
        assert!(
            run(&python, &args),
            "pip install of the FastAPI baseline failed"
        );
        assert!(
            run(&python, &[FASTAPI_SCRIPT, "--check"]),
            "the FastAPI baseline's pinned packages are still not installed"
        );
    }
    python
}

/// Lookups made while the lake moves.
const MOVING_ROUNDS: usize = 200;

/// Uncached lookups from one client, each after a write to another table
/// (not timed): the service's copy of `items` is then checked against the
/// snapshots since before it serves, DuckDB in process reads the lake.
fn moving_lake_lookups(
    client: &reqwest::blocking::Client,
    base: &str,
    db: &duckdb::Connection,
    service_keys: &Keys,
    local_keys: &Keys,
) {
    let url = format!("{base}/api/v1/query");
    let post = |sql: &str, params: serde_json::Value| {
        let res = client
            .post(&url)
            .json(&json!({ "sql": sql, "params": params }))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "{sql}");
        res.bytes().unwrap();
    };
    post("CREATE TABLE moving (n BIGINT)", json!(null));
    db.execute_batch("USE lake.main; CREATE TABLE moving (n BIGINT)")
        .unwrap();
    let (copies, copied_before) = hot_reads(client, base);
    let mut service = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for round in 0..MOVING_ROUNDS {
        post("INSERT INTO moving VALUES (?)", json!([round]));
        let started = Instant::now();
        post(LOOKUP_SQL, json!([service_keys.next()]));
        service
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
    }
    let (_, copied_after) = hot_reads(client, base);
    let mut local = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut stmt = db.prepare(LOOKUP_SQL).unwrap();
    for round in 0..MOVING_ROUNDS {
        db.execute("INSERT INTO moving VALUES (?)", [round as i64])
            .unwrap();
        local_lookup(&mut stmt, local_keys.next(), &mut local);
    }
    println!();
    println!("## Point lookups while the lake moves (a write to another table before each)");
    println!();
    println!(
        "{MOVING_ROUNDS} uncached lookups from one client, each after an insert into another \
         table (not timed). Hot tables {}: {} of the service's were served from the copy of \
         `items`, each after the check of the snapshots since.",
        if copies { "on" } else { "off" },
        copied_after - copied_before
    );
    println!();
    println!("| target | mean ms | p50 ms | p99 ms | in process × service (means) |");
    println!("|---|---:|---:|---:|---:|");
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (name, h) in [
        ("service (HTTP JSON)", &service),
        ("in process (1 connection)", &local),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            h.mean() / 1000.0,
            ms(h, 0.5),
            ms(h, 0.99),
            local.mean() / h.mean()
        );
    }
}

/// Whether `base` keeps hot tables, and how many reads it served from them.
fn hot_reads(client: &reqwest::blocking::Client, base: &str) -> (bool, u64) {
    let report: serde_json::Value = client
        .get(format!("{base}/metrics/performance"))
        .send()
        .and_then(|res| res.error_for_status())
        .and_then(|res| res.json())
        .expect("the service reports its performance");
    let hot = &report["hot_tables"];
    (
        hot["enabled"].as_bool().unwrap_or(false),
        hot["reads"].as_u64().unwrap_or(0),
    )
}

/// Checks that `base` answers the lookup with the one row asked for.
fn check_lookup(client: &reqwest::blocking::Client, base: &str, name: &str) {
    let res = client
        .post(format!("{base}/api/v1/query"))
        .json(&json!({"sql": LOOKUP_SQL, "params": [4242]}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200, "{name}");
    let body: serde_json::Value = res.json().unwrap();
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{name}: {body}");
    assert_eq!(rows[0][0], 4242, "{name}: {body}");
}

/// `service × other`, and whether it reaches `goal`.
fn versus(service: &Figure, other: &Figure, goal: f64) -> (f64, &'static str) {
    let ratio = service.rps() / other.rps();
    (ratio, if ratio >= goal { "met" } else { "NOT met" })
}

fn row(clients: usize, target: &str, figure: &Figure, hits: &str, ratio: f64) {
    println!(
        "| {clients} | {target} | {:.0} | {:.2} | {:.2} | {hits} | {ratio:.2} |",
        figure.rps(),
        figure.p50_ms,
        figure.p99_ms
    );
}

fn point_lookups(
    service: &Service,
    client: &reqwest::blocking::Client,
    runtime: &tokio::runtime::Runtime,
) {
    let items = format!(
        "CREATE TABLE items AS SELECT range AS id, 'item-' || range AS name, \
         range * 0.5 AS price FROM range({LOOKUP_ROWS})"
    );
    let setup = client
        .post(format!("{}/api/v1/query", service.base))
        .json(&json!({ "sql": items }))
        .send()
        .unwrap();
    assert_eq!(setup.status(), 200);
    // In process: the same table in a DuckLake of its own (DuckLake reads the
    // catalog and the Parquet file on every query, as in the service).
    let lake_dir = tempfile::tempdir().unwrap();
    let config = duckdb::Config::default()
        .enable_autoload_extension(false)
        .unwrap();
    let db = duckdb::Connection::open_in_memory_with_flags(config).unwrap();
    db.execute_batch(&format!(
        "LOAD ducklake; ATTACH 'ducklake:{dir}/catalog.ducklake' AS lake (DATA_PATH '{dir}/data/'); \
         USE lake; {items}",
        dir = lake_dir.path().display()
    ))
    .unwrap();
    let fastapi = FastApi::start();
    let service_url = format!("{}/api/v1/query", service.base);
    let fastapi_url = format!("{}/api/v1/query", fastapi.base);
    check_lookup(client, &service.base, "service");
    check_lookup(client, &fastapi.base, "FastAPI baseline");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = |clients: usize| clients.min(cores);

    // Uncached: each target walks the keys on its own, from its first figure
    // to its last, after a few warm-up lookups off the same walk.
    let (service_keys, fastapi_keys, local_keys) = (Keys::walk(), Keys::walk(), Keys::walk());
    warm_up(
        runtime,
        &[(&service_url, &service_keys), (&fastapi_url, &fastapi_keys)],
        20,
    );
    println!();
    println!("## Point lookups, uncached (`{LOOKUP_SQL}`, a different id each request)");
    println!();
    println!(
        "{LOOKUP_ROWS}-row DuckLake table, {} s a figure; ids walk the keys (stride {STRIDE}), \
         none repeated within a run. HTTP: JSON, the id a parameter. FastAPI + DuckDB: \
         scripts/fastapi-baseline.py ({}; uvicorn, 1 worker), a cursor per request, its own lake. \
         In process: 1 connection at 1 client, else {cores} threads ({cores} cores), a connection each.",
        FIGURE.as_secs(),
        fastapi.versions
    );
    println!();
    println!("| clients | target | requests/s | p50 ms | p99 ms | X-Cache hit | service × |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut uncached = Vec::new();
    let mut verdicts = Vec::new();
    let (copies, copied_before) = hot_reads(client, &service.base);
    let mut requests = 0;
    for clients in CLIENTS {
        let ours = runtime.block_on(http_lookups(&service_url, clients, &service_keys));
        requests += ours.requests;
        let theirs = runtime.block_on(http_lookups(&fastapi_url, clients, &fastapi_keys));
        let local = in_process_lookups(&db, threads(clients), &local_keys);
        row(
            clients,
            "service (HTTP JSON)",
            &ours,
            &ours.hit_share(),
            1.0,
        );
        let (vs_fastapi, fastapi_ok) = versus(&ours, &theirs, 1.2);
        row(
            clients,
            "FastAPI + DuckDB (HTTP JSON)",
            &theirs,
            "",
            vs_fastapi,
        );
        let (vs_local, local_ok) = versus(&ours, &local, 1.0);
        let name = format!("in process ({} connection(s))", threads(clients));
        row(clients, &name, &local, "", vs_local);
        verdicts.push(format!(
            "{clients} client(s): {vs_local:.2}× in process ({local_ok}), {vs_fastapi:.2}× FastAPI ({fastapi_ok})"
        ));
        uncached.push((clients, ours, local));
    }
    println!();
    let (_, copied_after) = hot_reads(client, &service.base);
    println!(
        "Hot tables (HOT_TABLES_ENABLED) {}: {} of the service's {requests} uncached lookups \
         were served from the in-memory copy of `items` (checked current at each read's snapshot).",
        if copies { "on" } else { "off" },
        copied_after - copied_before
    );
    println!(
        "target (issue 19): service ≥ 1.00× in process and ≥ 1.20× FastAPI; {}",
        verdicts.join("; ")
    );

    // Repeated: the same 100 ids, one cycle first (not counted) so that the
    // figures are the steady state.
    let (service_cycle, local_cycle) = (Keys::cycle(), Keys::cycle());
    warm_up(runtime, &[(&service_url, &service_cycle)], REPEATED);
    println!();
    println!("## Point lookups, repeated (the same {REPEATED} ids cycled)");
    println!();
    println!(
        "After one cycle of warm-up; {} s a figure; in process as above.",
        FIGURE.as_secs()
    );
    println!();
    println!("| clients | target | requests/s | p50 ms | p99 ms | X-Cache hit | service × |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for clients in CLIENTS {
        let ours = runtime.block_on(http_lookups(&service_url, clients, &service_cycle));
        let local = in_process_lookups(&db, threads(clients), &local_cycle);
        row(
            clients,
            "service (HTTP JSON)",
            &ours,
            &ours.hit_share(),
            1.0,
        );
        let (vs_local, local_ok) = versus(&ours, &local, 3.0);
        let name = format!("in process ({} connection(s))", threads(clients));
        row(clients, &name, &local, "", vs_local);
        verdicts.push(format!("{clients} client(s): {vs_local:.2}× ({local_ok})"));
    }
    println!();
    println!(
        "target (issue 19): service ≥ 3× in process; {}",
        verdicts.join("; ")
    );
    drop(fastapi);

    println!();
    println!("## Point lookups over Flight SQL (`GetFlightInfo` + `DoGet` per lookup, uncached)");
    println!();
    println!("| clients | lookups/s | × HTTP JSON | × in-process | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut autocommit = Vec::new();
    for (clients, http, local) in &uncached {
        let flight = runtime.block_on(flight_lookups(
            &service.flight,
            *clients,
            &service_keys,
            None,
        ));
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            flight.rps(),
            flight.rps() / http.rps(),
            flight.rps() / local.rps(),
            flight.p50_ms,
            flight.p99_ms
        );
        autocommit.push((*clients, flight));
    }
    println!();
    println!(
        "## Flight SQL lookups inside transactions (autocommit off, DB-API's default; a commit every {LOOKUPS_PER_COMMIT})"
    );
    println!();
    println!("| clients | lookups/s | mean ms | × autocommit mean ms | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for (clients, auto) in &autocommit {
        let inside = runtime.block_on(flight_lookups(
            &service.flight,
            *clients,
            &service_keys,
            Some(LOOKUPS_PER_COMMIT),
        ));
        // Time per lookup, inside over outside: the "within 1.2x".
        let ratio = auto.rps() / inside.rps();
        println!(
            "| {clients} | {:.0} | {:.2} | {ratio:.2} | {:.2} | {:.2} |",
            inside.rps(),
            1000.0 * *clients as f64 / inside.rps(),
            inside.p50_ms,
            inside.p99_ms
        );
        let verdict = if ratio <= 1.2 { "met" } else { "NOT met" };
        verdicts.push(format!("{clients} client(s): {ratio:.2}× ({verdict})"));
    }
    println!();
    println!(
        "target (issue 37): inside a transaction within 1.2× of autocommit; {}",
        verdicts.join("; ")
    );
    moving_lake_lookups(client, &service.base, &db, &service_keys, &local_keys);
    for (name, keys) in [
        ("service", &service_keys),
        ("FastAPI", &fastapi_keys),
        ("in process", &local_keys),
    ] {
        if keys.repeats() > 0 {
            println!();
            println!(
                "note: {} of the {name}'s uncached lookups repeated a key (more than {LOOKUP_ROWS} in the run)",
                keys.repeats()
            );
        }
    }
}
