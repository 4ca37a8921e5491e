//! Test harness: starts the real application on a free port with its own
//! data directory, and talks HTTP to it.
#![allow(dead_code)]

pub mod binary;
pub mod certs;
pub mod jobs;
pub mod servers;

use std::path::{Path, PathBuf};

use ducklake_backend::{config::Config, Application};
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The Flight SQL port, when it is on.
    pub flight_port: Option<u16>,
    handle: actix_web::dev::ServerHandle,
    /// The service's task; done once its engine is closed.
    running: std::sync::Mutex<Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>>,
    engine: std::sync::Weak<ducklake_backend::engine::Engine>,
    _dir: Option<tempfile::TempDir>,
}

/// A port that was free a moment ago, for processes that bind it themselves.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration for tests: loopback, port 0, a data dir of its own.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::load_from(None, &[])
        .expect("defaults are valid")
        .config;
    config.environment = ducklake_backend::config::Environment::Test;
    config.data_dir = data_dir.to_path_buf();
    config.server.port = 0;
    config.flight.port = 0;
    config.server.workers = 2;
    // Many apps share a test process: each keeps a few answers at most
    // (tests that need more set their own budget).
    config.cache.max_bytes = Some(32 * 1024 * 1024);
    if let Ok(dir) = std::env::var("DUCKDB_EXTENSION_DIRECTORY") {
        config.duckdb.extension_directory = Some(dir.into());
    }
    config
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path());
    spawn_with(config, Some(dir)).await
}

pub async fn spawn_with(config: Config, dir: Option<tempfile::TempDir>) -> TestApp {
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await.expect("the app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let flight_port = app.flight_port();
    let engine = std::sync::Arc::downgrade(app.engine());
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        // Idle connections leave the pool before the service closes them.
        client: reqwest::Client::builder()
            .pool_idle_timeout(ducklake_backend::KEEP_ALIVE / 2)
            .build()
            .expect("a client"),
        flight_port,
        data_dir,
        handle,
        running: std::sync::Mutex::new(Some(running)),
        engine,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a query body; returns status and parsed JSON.
    pub async fn post_query(&self, body: Value) -> (u16, Value) {
        let res = self.send_query(&body).await;
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON body"))
    }

    /// POSTs a query; the response as it arrives (its body unread).
    pub async fn send_query(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/query"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs a query that must succeed; returns its JSON answer and the
    /// snapshot it names (`X-DuckLake-Snapshot`).
    pub async fn answer_and_snapshot(&self, body: Value) -> (Value, i64) {
        let res = self.send_query(&body).await;
        assert_eq!(res.status(), 200, "{body}");
        let snapshot = res.headers()["x-ducklake-snapshot"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (res.json().await.expect("JSON body"), snapshot)
    }

    /// GETs a path; returns status and parsed JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON body"))
    }

    /// GETs a path that must answer 200; returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let res = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{path}");
        res.text().await.expect("text body")
    }

    /// Runs SQL that must succeed; returns the response JSON.
    pub async fn sql(&self, sql: &str) -> Value {
        let (status, body) = self.post_query(json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql} -> {body}");
        body
    }

    /// The running service's engine.
    pub fn engine(&self) -> std::sync::Arc<ducklake_backend::engine::Engine> {
        self.engine.upgrade().expect("the service runs")
    }

    /// Stops the server and waits until the service closed its engine, so
    /// no DuckDB work outlives the test (the process may exit right after).
    pub async fn stop(&self) {
        self.handle.stop(true).await;
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            let _ = running.await;
            assert!(
                self.engine.upgrade().is_none(),
                "the service stopped with its engine still in use"
            );
        }
    }
}

/// The `error.code` of an error response.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A JSON cell as CSV/TSV text: strings bare, null empty, the rest as JSON.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits CSV/TSV text into rows of cells with arrow-csv's own tokenizer
/// (every column read as text).
pub fn csv_rows(text: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    use duckdb::arrow::array::{Array, StringArray};
    use duckdb::arrow::datatypes::{DataType, Field, Schema};
    let width = String::from_utf8_lossy(text)
        .lines()
        .next()
        .unwrap()
        .split(delimiter as char)
        .count();
    let schema = std::sync::Arc::new(Schema::new(
        (0..width)
            .map(|i| Field::new(format!("f{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_delimiter(delimiter)
        .build(std::io::Cursor::new(text.to_vec()))
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for r in 0..batch.num_rows() {
            rows.push(
                (0..width)
                    .map(|c| {
                        let col = batch
                            .column(c)
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap();
                        if col.is_null(r) {
                            String::new()
                        } else {
                            col.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// The value of one Prometheus sample line (`name{labels} value`). A series
/// that is absent is a failure, not 0: a misspelt name or label must not pass
/// for a counter that never moved.
pub fn sample(text: &str, series: &str) -> f64 {
    sample_opt(text, series)
        .unwrap_or_else(|| panic!("no series {series} in the exposition:\n{text}"))
}

/// The value of one Prometheus sample line, `None` when the series is absent
/// (a labelled counter appears only once something counted it).
pub fn sample_opt(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{series}: not a number: {v}"))
        })
}

/// A seeded xorshift64* sequence for the property tests: they print their
/// seed, and replaying it replays the run step for step.
pub struct Steps(pub u64);

impl Steps {
    /// The seed from `var`, else one from the clock (printed by the test).
    pub fn seeded(var: &str) -> Self {
        Self(
            std::env::var(var)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64
                        | 1
                }),
        )
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// The lake the property tests (ETag revalidation, the result cache)
/// start from.
pub const PROPERTY_SETUP: [&str; 5] = [
    "CREATE TABLE a (id INT, v VARCHAR)",
    "CREATE TABLE b (id INT, w INT)",
    "INSERT INTO a VALUES (1, 'x'), (2, 'y')",
    "INSERT INTO b VALUES (1, 10), (2, 20)",
    "CREATE VIEW va AS SELECT * FROM a WHERE id % 2 = 0",
];

/// The writes and DDL the property tests' random steps choose from: data
/// in `a` and `b`, a view redefined, a table made and dropped, a column
/// added and dropped.
pub const PROPERTY_WRITES: [&str; 12] = [
    "INSERT INTO a SELECT max(id) + 1, 'n' || (max(id) + 1) FROM a",
    "DELETE FROM a WHERE id = (SELECT min(id) FROM a)",
    "UPDATE a SET v = v || '.' WHERE id = (SELECT max(id) FROM a)",
    "INSERT INTO b (id, w) SELECT coalesce(max(id), 0) + 1, 7 FROM b",
    "UPDATE b SET w = w + 1",
    "DELETE FROM b WHERE id = (SELECT max(id) FROM b)",
    "CREATE OR REPLACE VIEW va AS SELECT * FROM a WHERE id % 2 = 0",
    "CREATE OR REPLACE VIEW va AS SELECT * FROM a WHERE id % 2 = 1",
    "CREATE TABLE IF NOT EXISTS c (k INT)",
    "DROP TABLE IF EXISTS c",
    "ALTER TABLE b ADD COLUMN IF NOT EXISTS extra INT DEFAULT 5",
    "ALTER TABLE b DROP COLUMN IF EXISTS extra",
];

/// Runs one of the project's Python scripts (`scripts/<name>`) with `args`
/// and waits for it: its output, once it exited 0 having printed every one
/// of `checks` (each a line `ok <check>`, or part of one).
pub async fn python_checks(name: &str, args: &[&str], checks: &[&str]) -> String {
    let script = format!("{}/../scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .await
        .expect("python3 runs (./build.sh setup installs what the scripts import)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}:\n{stdout}\n{stderr}");
    for check in checks {
        assert!(
            stdout.contains(check),
            "{check} missing:\n{stdout}\n{stderr}"
        );
    }
    stdout
}
