//! The streaming memory bound, in a test binary of its own so the process's
//! peak resident memory (VmHWM) belongs to this test alone.

mod common;

use common::{spawn_with, test_config};
use serde_json::json;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// 10 million rows stream as CSV and as Arrow, and as CSV held for its row
/// limit, while the process's peak memory grows by far less than the size
/// of any of the bodies.
#[actix_web::test]
async fn ten_million_rows_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.query.max_rows = 20_000_000;
    config.query.timeout_ms = 300_000;
    config.duckdb.memory_limit = Some("256MB".into());
    let app = spawn_with(config, None).await;
    app.sql("SELECT 1").await;
    let sql = "SELECT range AS n, range * 3 AS m, 'label-' || range AS label FROM range(10000000)";
    // The last case sets max_rows: the result waits for its end (on disk,
    // not in memory) so that its row count and truncation are headers.
    for (format, max_rows) in [("csv", None), ("arrow", None), ("csv", Some(9_999_999))] {
        let before = peak_rss_bytes();
        let mut body = json!({"sql": sql, "format": format});
        if let Some(max_rows) = max_rows {
            body["max_rows"] = json!(max_rows);
        }
        let mut res = app
            .client
            .post(app.url("/api/v1/query"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        match max_rows {
            None => assert_eq!(res.headers()["x-result-streamed"], "true"),
            Some(_) => {
                assert_eq!(res.headers()["x-row-count"], "9999999");
                assert_eq!(res.headers()["x-result-truncated"], "true");
            }
        }
        let mut bytes = 0u64;
        let mut newlines = 0u64;
        while let Some(chunk) = res.chunk().await.unwrap() {
            bytes += chunk.len() as u64;
            newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        let growth = peak_rss_bytes().saturating_sub(before);
        assert!(bytes > 200_000_000, "{format}: only {bytes} bytes");
        if format == "csv" {
            let rows = max_rows.unwrap_or(10_000_000);
            assert_eq!(newlines, rows + 1, "header + {rows} rows");
        }
        assert!(
            growth < 200 * 1024 * 1024,
            "{format}: peak RSS grew by {} MB while streaming {} MB",
            growth / (1024 * 1024),
            bytes / (1024 * 1024)
        );
    }
    app.stop().await;
}
