//! Resource limits answer with a clear error, never a crash: SQL length,
//! result size, DuckDB memory and its spill directory.

use crate::common;

use common::{error_code, spawn_with, test_config};
use serde_json::{json, Value};

/// "14.0 GiB" → bytes.
fn parse_size(text: &str) -> f64 {
    let (number, unit) = text.split_once(' ').unwrap();
    let scale = match unit {
        "bytes" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        other => panic!("unit {other}"),
    };
    number.parse::<f64>().unwrap() * scale
}

#[actix_web::test]
async fn sql_length_and_result_size_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.query.max_sql_bytes = 1000;
    config.query.max_result_bytes = 100_000;
    config.query.max_rows = 10_000_000;
    let app = spawn_with(config, None).await;

    let long = format!("SELECT 1 AS a -- {}", "x".repeat(1000));
    let (status, body) = app.post_query(json!({ "sql": long })).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "payload_too_large"),
        "{body}"
    );
    assert!(body.to_string().contains("max_sql_bytes"));

    // Past the byte limit, CSV cannot say it was cut: refused before any
    // byte (the cut is known within the first window).
    let sql = "SELECT range AS n FROM range(1000000)";
    let (status, body) = app.post_query(json!({"sql": sql, "format": "csv"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "result_too_large"),
        "{body}"
    );
    assert!(
        body.to_string().contains("query.max_result_bytes"),
        "{body}"
    );
    // JSON says so in its body.
    let (status, body) = app.post_query(json!({"sql": sql})).await;
    assert_eq!((status, &body["truncated"]), (200, &json!(true)));
    // With max_rows from the client, CSV is cut after the batch (at most
    // 2048 rows) that crossed the limit, and the headers say so.
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": sql, "format": "csv", "max_rows": 5_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-result-truncated"], "true");
    let rows: u64 = res.headers()["x-row-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(rows < 1_000_000 && rows > 1000, "{rows}");
    assert!(
        text.len() >= 100_000 && text.len() < 100_000 + 2048 * 8,
        "{}",
        text.len()
    );
    assert_eq!(text.lines().count() as u64, rows + 1);
    let (status, body) = app.post_query(json!({"sql": "SELECT 42 AS a"})).await;
    assert_eq!((status, &body["truncated"]), (200, &json!(false)));
    app.stop().await;
}

#[actix_web::test]
async fn memory_beyond_the_limit_spills_or_fails_cleanly() {
    // The default: 60% of what DuckDB sees, leaving room in a small container.
    let app = common::spawn_app().await;
    let (_, memory) = app.get_json("/metrics/memory").await;
    let limit = parse_size(memory["duckdb"]["memory_limit"].as_str().unwrap());
    let total = memory["system"]["total_bytes"].as_f64().unwrap();
    let seen = memory["cgroup"]["limit_bytes"]
        .as_f64()
        .map_or(total, |cgroup| cgroup.min(total));
    assert!(
        (0.55..0.65).contains(&(limit / seen)),
        "limit {limit} of {seen}"
    );
    app.stop().await;

    // A join whose build side (~200 MB) is three times the limit: DuckDB
    // partitions and spills it, the answer is right.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.duckdb.memory_limit = Some("64MB".into());
    config.duckdb.threads = 2;
    // Running out of memory is what ends these queries, however slow the
    // machine: no timeout comes first.
    config.query.timeout_ms = 900_000;
    config.query.max_timeout_ms = 900_000;
    let app = spawn_with(config, None).await;
    let join = json!({"sql": "SELECT count(*), max(b.m) FROM range(4000000) a JOIN \
        (SELECT range AS r, md5(range::VARCHAR) AS m FROM range(4000000)) b ON a.range = b.r"});
    let (status, body) = app.post_query(join).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], json!(4000000));
    // An aggregate that cannot fit: a clean 503, not an OOM kill.
    let groups = json!({"sql": "SELECT count(*) FROM (SELECT m, count(*) FROM \
        (SELECT md5(range::VARCHAR) AS m FROM range(20000000)) GROUP BY m)"});
    let (status, body) = app.post_query(groups).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "resources_exhausted"),
        "{body}"
    );
    // DuckDB's own account of this service's memory stays within its limit
    // (the process's resident size would count every other test's service
    // running beside this one in the same test process).
    let (_, memory) = app.get_json("/metrics/memory").await;
    let used = memory["duckdb"]["memory_usage_bytes"].as_f64().unwrap();
    assert!(used <= 64.0 * 1024.0 * 1024.0, "DuckDB holds {used} bytes");
    let (status, _): (u16, Value) = app.post_query(json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, 200, "still serving");
    app.stop().await;
}

/// What a data tool got reading one result (tests/support/read_result.py),
/// off the runtime the in-process service answers on.
async fn read_with_real_reader(app: &common::TestApp, request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/read_result.py");
    let url = app.url("/api/v1/query");
    let out = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url, &request.to_string()])
            .output()
            .map(|out| (request, out))
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let (request, out) = out;
    assert!(
        out.status.success(),
        "{request}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The server cuts no result unless its operator asks: by default a long
/// result streams whole in every format (constant memory, see
/// tests/streaming_memory.rs).
#[actix_web::test]
async fn no_result_is_cut_by_default() {
    let app = common::spawn_app().await;
    for format in ["csv", "ndjson", "json"] {
        let res = app
            .client
            .post(app.url("/api/v1/query"))
            .json(&json!({"sql": "SELECT range AS i FROM range(300000)", "format": format}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{format}");
        let text = res.text().await.unwrap();
        assert!(
            text.contains("\n299999") || text.contains("[299999]") || text.contains(":299999}"),
            "{format}: the last row is missing"
        );
        assert!(!text.contains("\"truncated\":true"), "{format}: cut");
    }
    app.stop().await;
}

/// A result the server's own limit cuts never looks whole to the reader a
/// user would use: in every format, on the operator's `query.max_rows`, cut
/// within the first window (refused before any byte) and after streaming
/// began (the transfer is aborted: no final chunk, no Arrow end marker, no
/// Parquet footer). JSON says so in its body. A result within the limit
/// reads whole in every format, so "broken" is not the reader's doing.
#[actix_web::test]
async fn a_cut_result_is_never_read_as_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    let cap = 100_000;
    config.query.max_rows = cap;
    let app = spawn_with(config, Some(dir)).await;
    let formats = [
        "json",
        "json_objects",
        "ndjson",
        "csv",
        "tsv",
        "arrow",
        "parquet",
    ];
    let mut wrong = Vec::new();
    for format in formats {
        let whole = read_with_real_reader(
            &app,
            json!({"sql": "SELECT range AS i, 'r' || range AS s FROM range(60000)", "format": format}),
        )
        .await;
        if whole != json!({"outcome": "whole", "rows": 60000}) {
            wrong.push(format!("{format}, 60000 rows: {whole}"));
        }
        // 1.5M rows: cut long after the first window left. 100,001 rows: the
        // cut is one row past the limit.
        for rows in [1_500_000u64, cap + 1] {
            let sql = format!("SELECT range AS i, 'r' || range AS s FROM range({rows})");
            let got = read_with_real_reader(&app, json!({"sql": sql, "format": format})).await;
            let seen = match got["outcome"].as_str() {
                Some("marked") => format.starts_with("json") && got["rows"] == json!(cap),
                Some("refused") => got["code"] == "result_too_large" && !format.starts_with("json"),
                Some("broken") => !format.starts_with("json"),
                _ => false,
            };
            if !seen {
                wrong.push(format!("{format}, {rows} rows: {got}"));
            }
        }
        // What the client bounds itself is answered, with its headers.
        let asked = read_with_real_reader(
            &app,
            json!({"sql": "SELECT range AS i FROM range(1500000)", "format": format, "max_rows": 50000}),
        )
        .await;
        let expected = if format.starts_with("json") {
            json!({"outcome": "marked", "rows": 50000})
        } else {
            json!({"outcome": "whole", "rows": 50000})
        };
        if asked != expected {
            wrong.push(format!(
                "{format}, max_rows 50000: {asked}, expected {expected}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "cut results a reader took for whole:\n{}",
        wrong.join("\n")
    );
    app.stop().await;
}
