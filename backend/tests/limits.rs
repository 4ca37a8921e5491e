//! Resource limits answer with a clear error, never a crash: SQL length,
//! result size, DuckDB memory and its spill directory.

mod common;

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

    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT range AS n FROM range(1000000)", "format": "csv"}))
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
    // Cut after the batch (at most 2048 rows) that crossed the limit.
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
    let (_, memory) = app.get_json("/metrics/memory").await;
    let resident = memory["process"]["resident_bytes"].as_f64().unwrap();
    assert!(resident < 600.0 * 1024.0 * 1024.0, "resident {resident}");
    let (status, _): (u16, Value) = app.post_query(json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, 200, "still serving");
    app.stop().await;
}
