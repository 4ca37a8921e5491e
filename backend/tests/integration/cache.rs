//! The result cache (`crate::cache`): what it keeps, when a kept answer is
//! served and when not, its budget, its headers and metrics, and the GET
//! form read like a file (HEAD, Range) by real readers.

use crate::common;

use common::{sample, spawn_app, spawn_with, test_config, TestApp};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// POSTs a query body: status, headers, body text.
async fn post(app: &TestApp, body: Value) -> (u16, HeaderMap, String) {
    let res = app.send_query(&body).await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

fn x_cache(headers: &HeaderMap) -> &str {
    headers
        .get("x-cache")
        .expect("every query answer says what the cache did")
        .to_str()
        .unwrap()
}

/// The JSON answer without its timing.
fn rows(text: &str) -> Value {
    let body: Value = serde_json::from_str(text).unwrap();
    json!({"columns": body["columns"], "rows": body["rows"], "truncated": body["truncated"]})
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    sample(&app.get_text("/metrics").await, series)
}

/// Identical misses at once run once: the first leads, the others wait for
/// its answer and are served it from the cache. Requests for a query that
/// is not cacheable each run their own.
#[actix_web::test]
async fn identical_misses_at_once_run_once() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT range AS a FROM range(2000000)")
        .await;
    // Seconds of work: the requests below, sent at once, all arrive while it
    // runs (one arriving after it would be a hit without a wait).
    let slow = json!({"sql": "SELECT sum(hash(a, b) % 7) AS s FROM t, range(40) r(b)"});
    let answers = futures_util::future::join_all((0..6).map(|_| post(&app, slow.clone()))).await;
    let mut said: Vec<&str> = answers.iter().map(|(_, h, _)| x_cache(h)).collect();
    said.sort();
    assert_eq!(said, ["hit", "hit", "hit", "hit", "hit", "miss"]);
    for (status, _, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(rows(body), rows(&answers[0].2));
    }
    assert_eq!(metric(&app, "ducklake_cache_misses_total").await, 1.0);
    assert_eq!(metric(&app, "ducklake_cache_waits_total").await, 5.0);
    let (_, report) = app.get_json("/metrics/performance").await;
    assert_eq!(report["cache"]["waits"], 5, "{report}");

    // Volatile: not for the cache, so nobody is served another's run.
    let volatile =
        json!({"sql": "SELECT sum(hash(a, b) % 7) + random() AS s FROM t, range(40) r(b)"});
    let answers =
        futures_util::future::join_all((0..3).map(|_| post(&app, volatile.clone()))).await;
    for (status, h, body) in &answers {
        assert_eq!((*status, x_cache(h)), (200, "bypass"), "{body}");
    }
    let distinct: std::collections::HashSet<_> = answers
        .iter()
        .map(|(_, _, body)| rows(body).to_string())
        .collect();
    assert_eq!(distinct.len(), 3, "three runs of random()");
    app.stop().await;
}

/// Starts a CSV read of `rows` wide rows whose client takes nothing past
/// its head, then asks the same again (the same key: a timeout is not part
/// of it), which must be answered whole by a run of its own within 20 s,
/// not wait out the stalled run or that timeout (504). Returns the stalled
/// response and the second answer.
async fn stalled_then_the_same(app: &TestApp, rows: usize) -> (reqwest::Response, String) {
    let large = json!({
        "sql": format!("SELECT range AS id, repeat('x', 100) AS pad FROM range({rows})"),
        "format": "csv",
        "timeout_ms": 60000,
    });
    let stalled = app.send_query(&large).await;
    assert_eq!(x_cache(stalled.headers()), "miss");
    let mut same = large;
    same["timeout_ms"] = json!(20000);
    let (status, h, body) = post(app, same).await;
    assert_eq!((status, x_cache(&h)), (200, "miss"), "{body}");
    assert_eq!(body.lines().count(), rows + 1);
    (stalled, body)
}

/// An answer that outgrows what the cache keeps lets the requests waiting
/// for it go at once: each runs its own, rather than waiting for the first
/// one's end (here never: its client reads nothing).
#[actix_web::test]
async fn a_run_too_large_to_keep_lets_its_waiters_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.max_entry_bytes = Some(64 * 1024);
    let app = spawn_with(config, Some(dir)).await;
    let (stalled, _) = stalled_then_the_same(&app, 90_000).await;
    drop(stalled);
    app.stop().await;
}

/// A run whose own client takes nothing lets the requests waiting for its
/// answer go: each runs its own instead of waiting for that client (here
/// forever: it reads nothing) or its own timeout, though the answer would
/// fit the cache.
#[actix_web::test]
async fn a_run_its_client_holds_back_lets_its_waiters_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.max_bytes = Some(512 << 20);
    config.cache.max_entry_bytes = Some(256 << 20);
    config.query.max_rows = 1_000_000;
    let app = spawn_with(config, Some(dir)).await;
    // ~30 MB of CSV: more than the stalled client's socket buffers and the
    // channel behind them take, so its run stops for its client.
    let (stalled, body) = stalled_then_the_same(&app, 300_000).await;
    assert_eq!(metric(&app, "ducklake_cache_waits_total").await, 1.0);
    // The stalled answer, read at last, is whole.
    assert_eq!(stalled.text().await.unwrap(), body);
    app.stop().await;
}

/// A request that waits for the same query's run ends within its own
/// timeout when that run times out: 504 `query_timeout`, like the run's.
#[actix_web::test]
async fn a_request_waiting_for_a_run_that_times_out_times_out() {
    let app = spawn_app().await;
    let endless = json!({"sql": "SELECT count(*) FROM range(2000000000000) a", "timeout_ms": 500});
    let follower = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while metric(&app, "ducklake_queries_active").await < 1.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the first run never started"
            );
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        post(&app, endless.clone()).await
    };
    let (leader, follower) = futures_util::join!(post(&app, endless.clone()), follower);
    for (status, _, body) in [leader, follower] {
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, common::error_code(&body)),
            (504, "query_timeout"),
            "{body}"
        );
    }
    assert_eq!(metric(&app, "ducklake_cache_hits_total").await, 0.0);
    app.stop().await;
}

#[actix_web::test]
async fn a_repeated_read_is_served_until_its_tables_change() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE a AS SELECT range AS id FROM range(5)")
        .await;
    app.sql("CREATE TABLE b (x INT)").await;
    let read = json!({"sql": "SELECT count(*), sum(id) FROM a"});

    let (status, h, first) = post(&app, read.clone()).await;
    assert_eq!((status, x_cache(&h)), (200, "miss"));
    let (status, h, again) = post(&app, read.clone()).await;
    assert_eq!((status, x_cache(&h)), (200, "hit"));
    assert_eq!(rows(&again), rows(&first));
    assert_eq!(rows(&again)["rows"], json!([[5, 10]]));
    // A hit is whole: exact length and row count, like a small answer.
    assert_eq!(h["x-row-count"], "1");
    assert_eq!(h["content-length"], again.len().to_string().as_str());
    // Blanks around the SQL change nothing; inside it, they make another key.
    let (_, h, _) = post(&app, json!({"sql": "  SELECT count(*), sum(id) FROM a ; "})).await;
    assert_eq!(x_cache(&h), "hit");

    // A write to another table moves the lake, not this answer: still a
    // hit, and it names the snapshot it is current at.
    let (_, wh, _) = post(&app, json!({"sql": "INSERT INTO b VALUES (1)"})).await;
    let written: i64 = wh["x-ducklake-snapshot"].to_str().unwrap().parse().unwrap();
    let (_, h, _) = post(&app, read.clone()).await;
    assert_eq!(x_cache(&h), "hit");
    assert_eq!(h["x-ducklake-snapshot"], written.to_string().as_str());

    // A write to the table read: the kept answer is dropped, the new one kept.
    app.sql("INSERT INTO a VALUES (100)").await;
    let (_, h, text) = post(&app, read.clone()).await;
    assert_eq!(x_cache(&h), "miss");
    assert_eq!(rows(&text)["rows"], json!([[6, 110]]));
    let (_, h, _) = post(&app, read.clone()).await;
    assert_eq!(x_cache(&h), "hit");

    // Any DDL ends it too (a view redefined changes what the same SQL reads).
    app.sql("CREATE VIEW v AS SELECT 1").await;
    let (_, h, _) = post(&app, read.clone()).await;
    assert_eq!(x_cache(&h), "miss");

    let metrics = app.get_text("/metrics").await;
    assert!(sample(&metrics, "ducklake_cache_hits_total") >= 4.0);
    assert!(sample(&metrics, "ducklake_cache_misses_total") >= 3.0);
    assert!(sample(&metrics, "ducklake_cache_invalidations_total") >= 2.0);
    assert!(sample(&metrics, "ducklake_cache_bytes") > 0.0);
    assert!(sample(&metrics, "ducklake_cache_check_duration_seconds_count") >= 5.0);
    let (_, report) = app.get_json("/metrics/performance").await;
    assert_eq!(report["cache"]["enabled"], true);
    assert!(report["cache"]["hits"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["cache"]["entries"].as_u64().unwrap() >= 1);
    app.stop().await;
}

#[actix_web::test]
async fn what_is_not_deterministic_or_not_a_read_bypasses_the_cache() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT 1 AS x").await;
    let newest = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0].clone();
    let snapshot = newest["id"].as_i64().unwrap();
    let time = newest["time"].clone();
    for body in [
        json!({"sql": "SELECT random()"}),
        json!({"sql": "SELECT now()"}),
        json!({"sql": "SELECT count(*) FROM t USING SAMPLE 50%"}),
        json!({"sql": "SELECT count(*) FROM ducklake_snapshots('lake')"}),
        json!({"sql": "SELECT table_name FROM information_schema.tables"}),
        json!({"sql": "SELECT * FROM t", "transaction": true}),
        json!({"sql": "SELECT * FROM t", "as_of": time}),
        json!({"sql": "INSERT INTO t VALUES (2)"}),
    ] {
        for _ in 0..2 {
            let (status, h, text) = post(&app, body.clone()).await;
            assert_eq!(status, 200, "{body}: {text}");
            assert_eq!(x_cache(&h), "bypass", "{body}");
        }
    }
    // A read pinned to a snapshot id is kept (it never changes).
    let pinned = json!({"sql": "SELECT count(*) FROM t", "snapshot": snapshot});
    let (_, h, first) = post(&app, pinned.clone()).await;
    assert_eq!(x_cache(&h), "miss");
    let (_, h, again) = post(&app, pinned.clone()).await;
    assert_eq!(x_cache(&h), "hit");
    assert_eq!(rows(&again), rows(&first));
    assert_eq!(h["x-ducklake-snapshot"], snapshot.to_string().as_str());
    assert!(metric(&app, "ducklake_cache_bypass_total").await >= 16.0);
    app.stop().await;
}

#[actix_web::test]
async fn a_pinned_answer_ends_with_its_snapshot() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT 1 AS x").await;
    let first = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"]
        .as_i64()
        .unwrap();
    app.sql("INSERT INTO t VALUES (2)").await;
    let pinned = json!({"sql": "SELECT count(*) FROM t", "snapshot": first});
    for expected in ["miss", "hit"] {
        let (status, h, text) = post(&app, pinned.clone()).await;
        assert_eq!((status, x_cache(&h)), (200, expected), "{text}");
        assert_eq!(rows(&text)["rows"], json!([[1]]));
    }
    // Expiring the snapshot makes no new snapshot, yet the kept answer
    // must not outlive it: a fresh run refuses the pin, and so does the cache.
    let res = app
        .client
        .post(app.url("/api/v1/maintenance/expire"))
        .json(&json!({"before_snapshot": first + 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let (status, h, text) = post(&app, pinned.clone()).await;
    assert_eq!(status, 422, "{text}");
    assert!(h.get("x-cache").is_none() || x_cache(&h) != "hit");
    app.stop().await;
}

#[actix_web::test]
async fn roles_and_forms_keep_answers_apart() {
    let (app, [read, _write, admin]) = crate::auth::app_with_a_key_per_role().await;
    let ask = |key: String, get: bool| {
        let app = &app;
        async move {
            let req = if get {
                app.client
                    .get(app.url("/api/v1/query"))
                    .query(&[("sql", "SELECT a FROM t")])
            } else {
                app.client
                    .post(app.url("/api/v1/query"))
                    .json(&json!({"sql": "SELECT a FROM t"}))
            };
            let res = req.bearer_auth(key).send().await.unwrap();
            assert_eq!(res.status(), 200);
            x_cache(res.headers()).to_string()
        }
    };
    assert_eq!(ask(read.clone(), false).await, "miss");
    assert_eq!(ask(read.clone(), false).await, "hit");
    // Another role, or the read-only GET form, is another answer.
    assert_eq!(ask(admin.clone(), false).await, "miss");
    assert_eq!(ask(read.clone(), true).await, "miss");
    assert_eq!(ask(read.clone(), true).await, "hit");
    // Without a key nothing is served, cached or not.
    let res = app.send_query(&json!({"sql": "SELECT a FROM t"})).await;
    assert_eq!(res.status(), 401);
    app.stop().await;
}

#[actix_web::test]
async fn the_budget_holds_and_the_cache_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.max_bytes = Some(64 * 1024);
    config.cache.max_entry_bytes = Some(16 * 1024);
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t AS SELECT range AS id, repeat('x', 100) AS pad FROM range(10000)")
        .await;
    // Over the per-entry limit: run every time, never kept.
    let big = json!({"sql": "SELECT * FROM t ORDER BY id LIMIT 1000"});
    for _ in 0..2 {
        let (_, h, _) = post(&app, big.clone()).await;
        assert_eq!(x_cache(&h), "miss");
    }
    // Many small answers: the oldest go, the bytes stay within the budget.
    for i in 0..40 {
        let body = json!({"sql": format!("SELECT * FROM t WHERE id < 10 + {i} ORDER BY id")});
        let (_, h, _) = post(&app, body).await;
        assert_eq!(x_cache(&h), "miss");
    }
    let metrics = app.get_text("/metrics").await;
    assert!(sample(&metrics, "ducklake_cache_bytes") <= 64.0 * 1024.0);
    assert!(sample(&metrics, "ducklake_cache_evictions_total") > 0.0);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.enabled = false;
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t AS SELECT 1 AS x").await;
    for _ in 0..2 {
        let (_, h, _) = post(&app, json!({"sql": "SELECT * FROM t"})).await;
        assert_eq!(x_cache(&h), "bypass");
    }
    let (_, report) = app.get_json("/metrics/performance").await;
    assert_eq!(report["cache"]["enabled"], false);
    assert_eq!(report["cache"]["hits"], 0);
    app.stop().await;
}

/// The GET form's URL of `sql` as Parquet.
fn parquet_url(app: &TestApp, sql: &str) -> String {
    let mut url = reqwest::Url::parse(&app.url("/api/v1/query")).unwrap();
    url.query_pairs_mut()
        .append_pair("sql", sql)
        .append_pair("format", "parquet");
    url.to_string()
}

#[actix_web::test]
async fn head_and_ranges_read_a_kept_answer_like_a_file() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT range AS id, 'name ' || range AS name FROM range(5000)")
        .await;
    let url = parquet_url(&app, "SELECT * FROM t ORDER BY id");

    let head = app.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let length: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 1000);
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    let etag = head.headers()["etag"].to_str().unwrap().to_string();

    let whole = app.client.get(&url).send().await.unwrap();
    assert_eq!(x_cache(whole.headers()), "hit");
    let version = whole.headers()["etag"].to_str().unwrap().to_string();
    let whole = whole.bytes().await.unwrap();
    assert_eq!(whole.len(), length);
    assert_eq!(&whole[..4], b"PAR1");
    // A file read's ETag is strong and names these very bytes: the
    // answer's version (what a plain GET carries, weak) and their digest.
    let digest = ducklake_backend::digest::sha256_hex(&whole);
    let version = version.strip_prefix("W/").unwrap().trim_matches('"');
    assert_eq!(etag, format!("\"{version}.{}\"", &digest[..32]));

    // Parts, as a Parquet reader asks for them: the footer, then a span.
    let part = |range: String| {
        let app = &app;
        let url = url.clone();
        async move {
            let res = app
                .client
                .get(url)
                .header("range", range)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            (status, headers, res.bytes().await.unwrap())
        }
    };
    let (status, h, tail) = part("bytes=-8".into()).await;
    assert_eq!(status, 206);
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(
        h["content-range"],
        format!("bytes {}-{}/{length}", length - 8, length - 1).as_str()
    );
    assert_eq!(&tail[..], &whole[length - 8..]);
    assert_eq!(&tail[4..], b"PAR1");
    let (status, _, span) = part(format!("bytes=100-{}", length - 1)).await;
    assert_eq!(status, 206);
    assert_eq!(&span[..], &whole[100..]);
    let (status, _, open) = part("bytes=10-".into()).await;
    assert_eq!((status, &open[..]), (206, &whole[10..]));
    // Past the end: 416 with the length.
    let (status, h, _) = part(format!("bytes={length}-")).await;
    assert_eq!(status, 416);
    assert_eq!(h["content-range"], format!("bytes */{length}").as_str());
    // The first four bytes, if the validator still holds.
    let first_four_if = |tag: String| {
        app.client
            .get(&url)
            .header("range", "bytes=0-3")
            .header("if-range", tag)
            .send()
    };
    // A range whose If-Range names another version answers the whole file.
    let stale = first_four_if("W/\"s1-0000\"".into()).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap().len(), length);
    // The weak version tag is no validator for a range (RFC 9110 13.1.5).
    let weak = first_four_if(format!("W/\"{version}\"")).await.unwrap();
    assert_eq!(weak.status(), 200);
    // If-None-Match with the strong tag revalidates as the weak one does.
    let unchanged = app
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);
    let fresh = first_four_if(etag.clone()).await.unwrap();
    assert_eq!(fresh.status(), 206);
    assert_eq!(&fresh.bytes().await.unwrap()[..], b"PAR1");
    // An answer that differs between runs is never served in parts: parts
    // of two runs would not make one file.
    let volatile = app
        .client
        .get(parquet_url(&app, "SELECT random() AS r FROM range(10)"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(volatile.status(), 200);
    assert_eq!(x_cache(volatile.headers()), "bypass");
    assert!(volatile.headers().get("accept-ranges").is_none());
    app.stop().await;
}

/// Runs scripts/range-readers.py (polars, DuckDB, pyarrow) on `url`.
fn run_readers(url: &str, expected: &Value, headers: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new("python3");
    command
        .arg(common::servers::scripts().join("range-readers.py"))
        .args(["--url", url, "--expect", &expected.to_string()]);
    for header in headers {
        command.args(["--header", header]);
    }
    // Where the service's own extensions are (scripts/fetch-extensions.sh).
    let extensions = std::env::var("DUCKDB_EXTENSION_DIRECTORY")
        .unwrap_or_else(|_| format!("{}/.duckdb/extensions", std::env::var("HOME").unwrap()));
    command.args(["--extension-dir", &extensions]);
    common::servers::off_runtime(move || command.output().unwrap())
}

/// polars, DuckDB's httpfs and pyarrow (through fsspec) read a query's URL
/// as a Parquet file (scripts/range-readers.py).
#[actix_web::test]
async fn parquet_readers_read_a_query_url() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT range AS id, 'name ' || range AS name FROM range(3000)")
        .await;
    let url = parquet_url(&app, "SELECT id, name FROM t WHERE id % 3 = 0 ORDER BY id");
    let expected = json!({
        "columns": ["id", "name"],
        "rows": (0..3000).filter(|i| i % 3 == 0).map(|i| json!([i, format!("name {i}")])).collect::<Vec<_>>(),
    });
    let out = run_readers(&url, &expected, &[]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for reader in ["polars", "duckdb", "pyarrow"] {
        assert!(
            report.lines().any(|line| {
                let line: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                line["reader"] == reader && line["ok"] == true
            }),
            "{reader} did not read it: {report}"
        );
    }
    // They were served from the kept answer.
    assert!(metric(&app, "ducklake_cache_hits_total").await >= 3.0);
    app.stop().await;
}

/// With authentication on, DuckDB and fsspec send the key and read the
/// URL; polars sends no header to an http URL, and is refused.
#[actix_web::test]
async fn parquet_readers_with_a_key_when_authentication_is_on() {
    let (app, [read, _write, _admin]) = crate::auth::app_with_a_key_per_role().await;
    let url = parquet_url(&app, "SELECT a FROM t");
    let expected = json!({"columns": ["a"], "rows": [[1]]});
    let out = run_readers(&url, &expected, &[&format!("Authorization: Bearer {read}")]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let outcome = |reader: &str| {
        report
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["reader"] == reader)
            .unwrap_or_else(|| panic!("no line for {reader}: {report}"))
    };
    assert_eq!(outcome("duckdb")["ok"], true, "{report}");
    assert_eq!(outcome("pyarrow")["ok"], true, "{report}");
    let polars = outcome("polars");
    assert_eq!(polars["ok"], false, "{report}");
    assert!(
        polars["error"].as_str().unwrap().contains("401"),
        "{report}"
    );
    app.stop().await;
}

/// Stock DuckDB 1.5.5 (the Python package) on the same catalog and data
/// path, running one statement per line it is sent.
struct StockDuckDb {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl StockDuckDb {
    fn start(
        pg: &common::servers::Postgres,
        db: &str,
        s3: &common::servers::S3,
        bucket: &str,
        prefix: &str,
    ) -> Self {
        let script = common::servers::stock_duckdb_attach(pg, db, s3, bucket, prefix)
            + r#"
import sys
con.execute("USE lake")
print("ready", flush=True)
for line in sys.stdin:
    try:
        con.execute(line)
        print("ok", flush=True)
    except Exception as e:
        print("error " + str(e).replace("\n", " "), flush=True)
"#;
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        use tokio::io::AsyncBufReadExt;
        Self {
            child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The next line it printed.
    async fn line(&mut self) -> String {
        self.lines
            .next_line()
            .await
            .unwrap()
            .expect("stock DuckDB is still running")
    }

    /// Runs one statement; `Err` with DuckDB's message when it failed.
    async fn run(&mut self, sql: &str) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{sql}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        match self.line().await {
            line if line == "ok" => Ok(()),
            line => Err(line),
        }
    }
}

impl Drop for StockDuckDb {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The issue's proof of the cache: two replicas with the cache on, a third
/// with it off (the truth), a fourth that serves reads from in-memory
/// copies of the tables (`engine::hot`), and stock DuckDB, all on one
/// PostgreSQL catalog and one S3 data path. Random steps write through
/// either caching replica or through stock DuckDB (data and DDL), and
/// repeat reads through a caching replica and the copying one; every read,
/// each hit above all, must equal the uncached replica's fresh answer at
/// that moment. Zero stale answers in
/// 2,000 steps (`CACHE_STEPS` for more, `CACHE_SEED` to replay).
#[actix_web::test]
async fn no_stale_hit_across_replicas_and_stock_duckdb() {
    use common::servers::{with_postgres, with_s3, Postgres, S3};
    let pg = Postgres::start();
    let s3 = S3::start("cached");
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut shared = test_config(dirs[0].path());
    with_postgres(&mut shared, &pg, "cached");
    with_s3(&mut shared, &s3, "cached", "lake");
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut config = shared.clone();
        config.data_dir = dir.path().to_path_buf();
        // 0, 1: the cache; 2: the truth, neither cache nor copies; 3: no
        // cache, every table read copied to memory at once.
        config.cache.enabled = i < 2;
        config.hot_tables.enabled = i != 2;
        config.hot_tables.after_reads = if i == 3 { 1 } else { 3 };
        replicas.push(spawn_with(config, None).await);
    }
    let truth = &replicas[2];
    for sql in common::PROPERTY_SETUP {
        truth.sql(sql).await;
    }
    let mut stock = StockDuckDb::start(&pg, "cached", &s3, "cached", "lake");
    assert_eq!(stock.line().await, "ready");

    let mut rng = common::Steps::seeded("CACHE_SEED");
    let seed = rng.0;
    let steps: usize = std::env::var("CACHE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("CACHE_SEED={seed}");
    // The ETag test's writes, and one that fails while `c` is dropped.
    let writes: Vec<&str> = common::PROPERTY_WRITES
        .into_iter()
        .chain(["INSERT INTO c VALUES (1)"])
        .collect();
    let reads = [
        "SELECT * FROM a ORDER BY id",
        "SELECT count(*), sum(w) FROM b",
        "SELECT * FROM b ORDER BY id",
        "SELECT * FROM va ORDER BY id",
        "SELECT a.id, a.v, b.w FROM a JOIN b USING (id) ORDER BY 1",
        "WITH x AS (SELECT id FROM a WHERE id > 1) SELECT count(*) FROM x",
        "SELECT a.id, r.range FROM a, range(2) r ORDER BY ALL",
        "SELECT count(*) FROM c",
        "SELECT max(id) FROM a WHERE id > ?",
    ];
    let (mut hits, mut reads_done, mut stale) = (0, 0, Vec::new());
    for step in 0..steps {
        if rng.below(10) < 3 {
            let sql = writes[rng.below(writes.len())];
            match rng.below(3) {
                2 => {
                    // Stock DuckDB knows no IF EXISTS race here: a failure is
                    // only a statement that does not apply now (c dropped).
                    if let Err(err) = stock.run(sql).await {
                        assert!(
                            sql.contains(" c") || err.contains("Conflict"),
                            "step {step}: stock DuckDB: {sql}: {err}"
                        );
                    }
                }
                r => {
                    let (status, _, text) = post(&replicas[r], json!({ "sql": sql })).await;
                    assert!(
                        status == 200 || (status == 404 && sql.contains(" c")),
                        "step {step}: replica {r}: {sql}: {status} {text}"
                    );
                }
            }
            continue;
        }
        let sql = reads[rng.below(reads.len())];
        let mut request = json!({ "sql": sql });
        if sql.contains('?') {
            request["params"] = json!([rng.below(3)]);
        }
        let r = rng.below(2);
        let (status, h, text) = post(&replicas[r], request.clone()).await;
        let (truth_status, _, truth_text) = post(truth, request.clone()).await;
        let (copy_status, _, copy_text) = post(&replicas[3], request.clone()).await;
        reads_done += 1;
        if copy_status != truth_status
            || (copy_status == 200 && rows(&copy_text) != rows(&truth_text))
        {
            stale.push(format!(
                "step {step}: replica 3 (copies): {request}: {copy_status} {copy_text}; uncached: {truth_status} {truth_text}"
            ));
        }
        let cache = h
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if cache == "hit" {
            hits += 1;
        }
        let same = status == truth_status && (status != 200 || rows(&text) == rows(&truth_text));
        if !same {
            stale.push(format!(
                "step {step}: replica {r} ({cache}): {request}: {status} {text}; uncached: {truth_status} {truth_text}"
            ));
        }
    }
    let copied = replicas[3].engine().hot().stats();
    println!("{steps} steps: {reads_done} reads, {hits} hits; copies: {copied:?}");
    assert!(
        stale.is_empty(),
        "CACHE_SEED={seed}: {} answers differ from a fresh uncached run:\n{}",
        stale.len(),
        stale.join("\n")
    );
    // Enough hits for the property to mean something.
    assert!(hits >= steps / 10, "only {hits} hits in {steps} steps");
    // And enough reads from copies, and copies ended by changes.
    assert!(
        copied.reads as usize >= steps / 20 && copied.invalidations > 0,
        "{copied:?}"
    );
    for app in &replicas {
        app.stop().await;
    }
}
