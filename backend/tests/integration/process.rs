//! The real `ducklake-backend` binary: start-up failures, check-config, and
//! a restart that keeps the lake.

use crate::common;

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    binary::{service_command, sigterm, stop_gracefully},
    free_port,
};
use serde_json::{json, Value};

/// A command with a clean environment: only what the test sets.
fn command(data_dir: &Path) -> Command {
    let mut cmd = service_command();
    cmd.env("DATA_DIR", data_dir);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(command(data_dir), Stdio::null())
    }

    /// Starts `cmd serve` with its log (stderr) going to `log`.
    fn start_with(mut cmd: Command, log: Stdio) -> Self {
        let port = free_port();
        let child = cmd
            .env("SERVER_PORT", port.to_string())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the service starts");
        let base = format!("http://127.0.0.1:{port}");
        let service = Self { child, base };
        eventually("the service to become ready", || {
            let res = reqwest::blocking::get(format!("{}/ready", service.base))
                .map_err(|e| e.to_string())?;
            match res.status().as_u16() {
                200 => Ok(()),
                other => Err(format!("/ready answers {other}")),
            }
        });
        service
    }

    fn sql(&self, sql: &str) -> Value {
        let res = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/query", self.base))
            .json(&json!({ "sql": sql }))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "{sql}");
        res.json().unwrap()
    }

    /// SIGTERM, then wait: the service shuts down gracefully.
    fn stop(mut self) {
        stop_gracefully(&mut self.child);
    }
}

/// A test that failed half-way leaves no service (or endless query) behind.
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn restart_keeps_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let first = Service::start(dir.path());
    first.sql("CREATE TABLE kept (id INTEGER, note VARCHAR)");
    first.sql("INSERT INTO kept VALUES (1, 'survives'), (2, 'restarts')");
    first.stop();
    assert!(
        dir.path().join("catalog.ducklake").is_file(),
        "the embedded catalog lives under DATA_DIR"
    );

    let second = Service::start(dir.path());
    let body = second.sql("SELECT id, note FROM kept ORDER BY id");
    assert_eq!(body["rows"], json!([[1, "survives"], [2, "restarts"]]));
    second.stop();
}

#[test]
fn missing_extension_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = run(command(dir.path())
        .env("DUCKDB_EXTENSION_DIRECTORY", empty.path())
        .env("SERVER_PORT", "0"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected_file = empty.path().join("v1.5.5/linux_amd64/icu.duckdb_extension");
    assert!(
        stderr.contains(&expected_file.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("./build.sh extensions"), "{stderr}");
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(command(dir.path())
        .env("LOG_LEVEL", "chatty")
        .env("DUCKDB_MEMORY_LIMIT", "plenty")
        .env("FLIGHT_TRANSACTION_IDLE_TIMEOUT_MS", "0")
        .arg("serve"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("log_level = chatty") && l.contains("expected one of trace")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("duckdb.memory_limit = plenty")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("flight.transaction_idle_timeout_ms = 0")
                && l.contains("at least 100")),
        "{stderr}"
    );

    let out = run(command(dir.path())
        .env("SERVER_PORT", "eighty")
        .arg("check-config"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.port = "),
        "{:?}",
        out
    );
}

#[test]
fn check_config_redacts_secrets_and_names_sources() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("service.toml");
    std::fs::write(&toml, "[query]\nmax_rows = 500\n").unwrap();
    let out = run(command(dir.path())
        .env("DB_POSTGRES_PASSWORD", "s3cr3t-value")
        .env("STORAGE_MINIO_SECRET_KEY", "another-s3cr3t")
        .arg("--config")
        .arg(&toml)
        .arg("check-config"));
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    assert!(
        stdout.contains("postgres.password = \"***\"  (environment DB_POSTGRES_PASSWORD)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("query.max_rows = 500  (file {})", toml.display())),
        "{stdout}"
    );
    assert!(stdout.contains("server.port = 8000  (default)"), "{stdout}");
}

#[test]
fn each_command_asks_only_for_the_credentials_it_uses() {
    // The object store's address without its keys: what a migration Job
    // gets (the ConfigMap and the catalog's Secret, not the bucket's).
    let dir = tempfile::tempdir().unwrap();
    let without_keys = |args: &[&str]| {
        run(command(dir.path())
            .env("STORAGE_MINIO_ENDPOINT", "127.0.0.1:1")
            .env("DB_POSTGRES_PASSWORD", "pw")
            .args(args))
    };
    for args in [
        &["check-config"][..],
        &["check-config", "--for", "serve"],
        &["check-config", "--for", "create-bucket"],
        &["serve"],
        &["create-bucket"],
    ] {
        let out = without_keys(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("storage.minio_access_key = (unset)")
                && stderr.contains("storage.minio_secret_key = (unset)"),
            "{args:?}: {stderr}"
        );
    }
    for args in [
        &["check-config", "--for", "migrate"][..],
        &["check-config", "--for", "keys"],
        &["migrate"],
        &["pause", "--seconds", "0"],
    ] {
        let out = without_keys(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
}

#[test]
fn version_names_service_and_duckdb() {
    let out = run(service_command().arg("--version"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The DuckDB release as the linked library itself answers it.
    let duckdb: String = duckdb::Connection::open_in_memory()
        .unwrap()
        .query_row("SELECT library_version FROM pragma_version()", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(
        stdout.trim(),
        format!(
            "ducklake-backend {} (DuckDB {duckdb})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// Production logs: one JSON object per line, a slow-query line with the
/// query's fingerprint, and neither secrets nor literal values anywhere.
#[test]
fn logs_are_json_with_slow_queries_and_no_secrets() {
    const SECRET: &str = "log-secret-MARKER";
    const KEY: &str = "bootstrap-key-MARKER-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = command(&dir.path().join("data"));
    cmd.env("ENVIRONMENT", "production")
        .env("QUERY_SLOW_QUERY_MS", "0")
        .env("DB_POSTGRES_PASSWORD", SECRET)
        .env("STORAGE_MINIO_ACCESS_KEY", SECRET)
        .env("STORAGE_MINIO_SECRET_KEY", SECRET)
        .env("AUTH_ENABLED", "true")
        .env("AUTH_BOOTSTRAP_KEY", KEY);
    let service = Service::start_with(cmd, Stdio::from(log));
    let client = reqwest::blocking::Client::new();
    let res = client
        .post(format!("{}/api/v1/query", service.base))
        .bearer_auth(KEY)
        .header("x-request-id", "log-request-7")
        .json(&json!({ "sql": "SELECT 'literal-MARKER' AS s, 987654 AS n" }))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("{}/config/summary", service.base))
        .bearer_auth(KEY)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let summary = res.text().unwrap();
    assert!(!summary.contains(SECRET) && !summary.contains(KEY));
    service.stop();

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains(SECRET), "a secret reached the log");
    assert!(!text.contains(KEY), "the API key reached the log");
    assert!(
        !text.contains("literal-MARKER") && !text.contains("987654"),
        "{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let slow = lines
        .iter()
        .find(|l| l["message"] == "slow query")
        .unwrap_or_else(|| panic!("no slow-query line: {text}"));
    assert_eq!(slow["fingerprint"], "SELECT ? AS s, ? AS n", "{slow}");
    // Logged as the body ends, after the request's middleware returned: it
    // still names its request.
    assert_eq!(slow["span"]["request_id"], "log-request-7", "{slow}");
    assert_eq!(slow["kind"], "read");
    assert_eq!(
        slow["key"],
        &KEY[..12],
        "who ran it: the key's visible prefix"
    );
    assert!(lines.iter().any(|l| l["message"] == "request finished"
        && l["route"] == "/api/v1/query"
        && l["status"] == 200
        && l["key"] == KEY[..12]));
}

/// SIGTERM: `/ready` turns 503 and new requests are refused while the work
/// in flight drains; a query and a stream that end within the grace period
/// answer normally; a query still running and a slowly read stream are
/// stopped when it ends (503 `shutting_down`, and a body without its end);
/// the process exits 0 once the grace period is over.
///
/// Nothing here depends on the machine's speed. The long query and the slow
/// stream would run for hours, far past any grace period. The two that must
/// finish are held back by the test itself until the drain has begun: `gate`
/// is a streamed answer the test stops reading, and `queued` waits for a
/// connection (the service has three: long, slow and gate's). Each state is
/// waited for where it shows (a response head, /metrics), never for a time.
#[test]
fn sigterm_drains_in_flight_work_then_stops() {
    use std::io::Read;
    use std::sync::mpsc;
    const GRACE: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("SERVER_SHUTDOWN_GRACE_MS", GRACE.as_millis().to_string())
        .env("DUCKDB_CONNECTIONS", "3")
        // The endless query burns one core, not all of a shared machine's.
        .env("DUCKDB_THREADS", "1")
        .env("QUERY_QUEUE_TIMEOUT_MS", "600000")
        .env("QUERY_MAX_ROWS", "100000000");
    let mut service = Service::start_with(cmd, Stdio::null());
    let base = service.base.clone();

    let long = post(
        &base,
        json!({"sql": "SELECT count(*) FROM range(2000000000000) a", "timeout_ms": 600000}),
    );
    // Its meter and its connection are taken in one step: once it counts as
    // active it holds a connection, so `queued` below cannot overtake it.
    wait_for_metric(&base, "ducklake_queries_active", |n| n >= 1.0);

    let (under_way_tx, under_way) = mpsc::channel();
    let slow = {
        let base = base.clone();
        std::thread::spawn(move || {
            let mut res = stream_csv(&base, "SELECT range, repeat('x', 40) FROM range(50000000)");
            let mut under_way_tx = Some(under_way_tx);
            let mut buf = vec![0u8; 64 * 1024];
            let mut received = 0usize;
            let outcome = loop {
                match res.read(&mut buf) {
                    Ok(0) => break Ok(received),
                    Ok(n) => received += n,
                    Err(e) => break Err(e.to_string()),
                }
                if received > 256 * 1024 {
                    if let Some(tx) = under_way_tx.take() {
                        let _ = tx.send(());
                    }
                }
                // A slow reader: ~3 MB/s, far from the 2.5 GB of the result.
                std::thread::sleep(Duration::from_millis(20));
            };
            (received, outcome)
        })
    };
    let (gate_open_tx, gate_open) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let gate = {
        let base = base.clone();
        std::thread::spawn(move || {
            let mut res = stream_csv(&base, "SELECT range, repeat('y', 40) FROM range(200000)");
            gate_open_tx.send(()).unwrap();
            release.recv().unwrap();
            let mut body = Vec::new();
            let outcome = res.read_to_end(&mut body).map_err(|e| e.to_string());
            (body, outcome)
        })
    };
    under_way
        .recv_timeout(WAIT)
        .expect("the slow stream got under way");
    gate_open
        .recv_timeout(WAIT)
        .expect("the gate stream sent its head");
    let queued = post(&base, json!({"sql": "SELECT count(*) FROM range(1000000)"}));
    wait_for_metric(&base, "ducklake_queries_queued", |n| n >= 1.0);

    let sent = Instant::now();
    sigterm(&service.child);
    let client = reqwest::blocking::Client::new();
    eventually("/ready to answer 503 draining", || {
        let res = client
            .get(format!("{base}/ready"))
            .send()
            .map_err(|e| e.to_string())?;
        match res.status().as_u16() {
            503 => Ok(()),
            other => Err(format!("/ready answers {other}")),
        }
    });
    let refused = client
        .post(format!("{base}/api/v1/query"))
        .json(&json!({"sql": "SELECT 1"}))
        .header("x-request-id", "drained-request-1")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 503);
    // A refusal carries the request id too, like every response.
    assert_eq!(refused.headers()["x-request-id"], "drained-request-1");
    assert_eq!(
        refused.json::<Value>().unwrap()["error"]["code"],
        "shutting_down"
    );
    let health = client.get(format!("{base}/health")).send().unwrap();
    assert_eq!(health.status(), 200, "liveness holds while draining");

    // Work that ends within the grace period answers normally.
    release_tx.send(()).unwrap();
    let (body, outcome) = gate.join().unwrap();
    assert!(outcome.is_ok(), "the gate stream was cut: {outcome:?}");
    assert_eq!(
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        200_001,
        "a header and every row"
    );
    let (status, body) = queued.join().unwrap();
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([[1000000]])),
        "{body}"
    );

    // Work still running when it ends is stopped.
    let (status, body) = long.join().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let (received, outcome) = slow.join().unwrap();
    assert!(
        received > 256 * 1024,
        "the stream was under way: {received}"
    );
    assert!(
        outcome.is_err(),
        "a stream cut by shutdown must not look complete: {outcome:?}"
    );

    let exit = service.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
    // The long query kept the service up for the whole grace period; the
    // upper bound only catches a hang.
    let took = sent.elapsed();
    assert!(
        took >= GRACE && took < GRACE + WAIT,
        "stopped {took:?} after SIGTERM (grace {GRACE:?})"
    );
}

/// A hot table copy under way when the service is told to stop is stopped
/// with it: the copies' thread is interrupted and let go of DuckDB before
/// the database closes (never does the process exit while that thread is
/// still at work inside DuckDB), the process exits 0, and the log says so.
#[test]
fn sigterm_stops_a_hot_table_copy_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = command(dir.path());
    cmd.env("HOT_TABLES_AFTER_READS", "1")
        .env("HOT_TABLES_MAX_BYTES", "8000000000")
        .env("HOT_TABLES_MAX_TABLE_BYTES", "8000000000")
        .env("LOG_LEVEL", "info");
    let mut service = Service::start_with(cmd, Stdio::from(log));
    // Long enough to copy (about 2.5 s here) that the stop, a moment after
    // the read asked for it, meets the copy under way.
    service.sql("CREATE TABLE big AS SELECT range AS id, range * 2 AS v FROM range(80000000)");
    service.sql("SELECT count(*) FROM big");
    let base = service.base.clone();
    eventually("the copy of big to be asked for", || {
        let report: Value = reqwest::blocking::get(format!("{base}/metrics/performance"))
            .and_then(|res| res.json())
            .map_err(|e| e.to_string())?;
        match report["hot_tables"]["copying"].as_u64() {
            Some(1) => Ok(()),
            other => Err(format!("copying {other:?}: {}", report["hot_tables"])),
        }
    });
    stop_gracefully(&mut service.child);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let stopped: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "hot tables stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "{text}");
    assert_eq!(stopped[0]["copies_stopped"], 1, "{text}");
    let closed = text.find("engine closed").expect("the engine closed");
    assert!(
        text.find("hot tables stopped").unwrap() < closed,
        "the copies' thread let go before the database closed: {text}"
    );
}

/// Bounds every wait for a condition; generous, since it only catches a hang.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it succeeds; panics naming `what` and the last answer
/// after [`WAIT`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn wait_for_metric(base: &str, series: &str, ok: impl Fn(f64) -> bool) {
    eventually(&format!("{series} to change"), || {
        let text = reqwest::blocking::get(format!("{base}/metrics"))
            .and_then(|res| res.text())
            .map_err(|e| e.to_string())?;
        let value = common::sample(&text, series);
        if ok(value) {
            Ok(())
        } else {
            Err(format!("{series} {value}"))
        }
    });
}

/// A client without reqwest's default 30 s timeout: these requests last as
/// long as the drain lets them.
fn patient_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
}

/// POSTs a query on its own thread; joins to its status and JSON body.
fn post(base: &str, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let url = format!("{base}/api/v1/query");
    std::thread::spawn(move || {
        let res = patient_client().post(url).json(&body).send().unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().unwrap_or(Value::Null))
    })
}

/// A CSV result too large to be held, once its head has arrived (the first
/// 256 KiB are encoded by then).
fn stream_csv(base: &str, sql: &str) -> reqwest::blocking::Response {
    let res = patient_client()
        .post(format!("{base}/api/v1/query"))
        .json(&json!({"sql": sql, "format": "csv", "timeout_ms": 600000}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200, "{sql}");
    assert_eq!(
        res.headers()
            .get("x-result-streamed")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "{sql} streams"
    );
    res
}

/// A transaction held open by a Flight SQL client (it wrote, then went
/// quiet) does not hold SIGTERM for the grace period: it is rolled back at
/// once, and its write is not in the lake after a restart.
#[test]
fn sigterm_rolls_back_open_transactions_instead_of_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let flight_port = free_port();
    let mut cmd = command(dir.path());
    cmd.env("FLIGHT_PORT", flight_port.to_string())
        .env("SERVER_SHUTDOWN_GRACE_MS", "300000")
        .env("LOG_LEVEL", "info");
    let mut service = Service::start_with(cmd, Stdio::from(log));
    service.sql("CREATE TABLE kept (n INT)");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _client = runtime.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let mut flight = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
        let txn = flight.begin_transaction().await.unwrap();
        flight
            .execute_update("INSERT INTO kept VALUES (1)".into(), Some(txn))
            .await
            .unwrap();
        flight
    });
    let sent = Instant::now();
    stop_gracefully(&mut service.child);
    // Far below the 300 s grace a held connection would have waited for.
    assert!(
        sent.elapsed() < WAIT,
        "stopped {:?} after SIGTERM",
        sent.elapsed()
    );
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("rolling back the open transactions"),
        "{text}"
    );
    drop(service);
    let again = Service::start(dir.path());
    assert_eq!(again.sql("SELECT count(*) FROM kept")["rows"], json!([[0]]));
    again.stop();
}

/// `check-config` piped into a reader that stops early (`| head`) ends
/// quietly with 0, as the client does (never a panic on EPIPE).
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path())
        .arg("check-config")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// The command-line reference (docs/src/reference/cli.md) shows every
/// command clap knows, at every level: the binary's own help holds it to
/// account.
#[test]
fn the_cli_reference_shows_every_command() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/src/reference/cli.md"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let subcommands = |args: &[&str]| -> Vec<String> {
        let out = run(command(dir.path()).args(args).arg("--help"));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|name| name != "help")
            .collect()
    };
    let mut missing = Vec::new();
    for (parent, shown_as) in [
        (vec![], "ducklake-backend"),
        (vec!["keys"], "ducklake-backend keys"),
        (vec!["client"], "ducklake-backend client"),
        (vec!["client", "jobs"], "ducklake-backend client jobs"),
    ] {
        let names = subcommands(&parent);
        assert!(!names.is_empty(), "{parent:?} lists no commands");
        for name in names {
            let plain = format!("{shown_as} {name}");
            let with_config = format!("{shown_as} [--config FILE] {name}");
            if !page.contains(&plain) && !page.contains(&with_config) {
                missing.push(plain);
            }
        }
    }
    assert!(missing.is_empty(), "cli.md does not show: {missing:?}");
}

/// The embedded default's backup and restore, as docs/src/guides/operating.md
/// tells it: stop the service, copy the data directory, start it again;
/// restoring the copy later brings back exactly the backed-up lake (its
/// tables and snapshots), whatever was written in between.
#[test]
fn the_embedded_default_backs_up_and_restores_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cp -a {} {}",
            from.display(),
            to.display()
        );
    };
    let service = Service::start(&data);
    service.sql("CREATE TABLE t AS SELECT range AS id FROM range(1000)");
    let snapshot = service.sql("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')")["rows"]
        [0][0]
        .clone();
    service.stop();
    copy(&data, &backup);

    let service = Service::start(&data);
    service.sql("DELETE FROM t WHERE id < 500");
    service.sql("CREATE TABLE later (x INT)");
    assert_eq!(
        service.sql("SELECT count(*) FROM t")["rows"],
        json!([[500]])
    );
    service.stop();

    std::fs::remove_dir_all(&data).unwrap();
    copy(&backup, &data);
    let service = Service::start(&data);
    assert_eq!(
        service.sql("SELECT count(*) FROM t")["rows"],
        json!([[1000]])
    );
    assert_eq!(
        service.sql("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')")["rows"][0][0],
        snapshot
    );
    let tables = service.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake'");
    assert_eq!(tables["rows"], json!([["t"]]));
    service.stop();
}
