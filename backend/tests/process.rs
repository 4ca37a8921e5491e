//! The real `ducklake-backend` binary: start-up failures, check-config, and
//! a restart that keeps the lake.

mod common;

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::free_port;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ducklake-backend");

/// A command with a clean environment: only what the test sets.
fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("ENVIRONMENT", "test");
    if let Ok(dir) = std::env::var("DUCKDB_EXTENSION_DIRECTORY") {
        cmd.env("DUCKDB_EXTENSION_DIRECTORY", dir);
    }
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
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = reqwest::blocking::get(format!("{}/ready", service.base));
            if ready.is_ok_and(|res| res.status() == 200) {
                return service;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the service did not become ready");
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
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
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
        .env("QUERY_MAX_ROWS", "0")
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
            .any(|l| l.contains("query.max_rows = 0") && l.contains("more than 0")),
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
fn version_names_service_and_duckdb() {
    let out = run(Command::new(BIN).arg("--version"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")) && stdout.contains("DuckDB v1.5.5"),
        "{stdout}"
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

/// SIGTERM: `/ready` turns 503 at once and new requests are refused; a
/// query that ends within the grace period answers normally; a longer query
/// and a slowly read stream are stopped when it ends (503 `shutting_down`,
/// and a body without its end); the process exits 0.
#[test]
fn sigterm_drains_in_flight_work_then_stops() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("SERVER_SHUTDOWN_GRACE_MS", "5000")
        .env("QUERY_MAX_ROWS", "100000000");
    let mut service = Service::start_with(cmd, Stdio::null());
    let base = service.base.clone();
    let post = move |body: Value| {
        let base = base.clone();
        std::thread::spawn(move || {
            let res = reqwest::blocking::Client::new()
                .post(format!("{base}/api/v1/query"))
                .json(&body)
                .send()
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().unwrap_or(Value::Null))
        })
    };
    let long =
        post(json!({"sql": "SELECT count(*) FROM range(2000000000000) a", "timeout_ms": 120000}));
    let stream_base = service.base.clone();
    let stream = std::thread::spawn(move || {
        let mut res = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .post(format!("{stream_base}/api/v1/query"))
            .json(&json!({"sql": "SELECT range, repeat('x', 40) FROM range(50000000)", "format": "csv", "timeout_ms": 120000}))
            .send()
            .unwrap();
        let status = res.status().as_u16();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        let outcome = loop {
            match res.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n,
                Err(e) => break Err(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, total, outcome)
    });
    std::thread::sleep(Duration::from_millis(800));
    let medium = post(json!({"sql": "SELECT count(*) FROM range(500000000) a"}));
    std::thread::sleep(Duration::from_millis(50));
    let sent = Instant::now();
    Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let client = reqwest::blocking::Client::new();
    let ready = client
        .get(format!("{}/ready", service.base))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 503, "/ready turns 503 at once");
    let refused = client
        .post(format!("{}/api/v1/query", service.base))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.json::<Value>().unwrap()["error"]["code"],
        "shutting_down"
    );
    let health = client
        .get(format!("{}/health", service.base))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200, "liveness holds while draining");

    let (status, body) = medium.join().unwrap();
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([[500000000]])),
        "{body}"
    );
    let (status, body) = long.join().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let (status, received, outcome) = stream.join().unwrap();
    assert_eq!(status, 200);
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
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
        "stopped {took:?} after SIGTERM (grace 5 s)"
    );
}
