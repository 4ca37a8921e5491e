//! The streaming memory bound, measured on the service's own process (the
//! real binary as a child), so the client reading the bodies is not in the
//! figure.

mod common;

use common::binary::Replica;
use serde_json::json;

/// 10 million rows stream in every format (and as CSV held for its row
/// limit) while the process's peak memory grows by far less than the size
/// of any of the bodies. The figure is the service process's peak resident
/// memory (VmHWM), which only grows: each case must stay within the bound
/// above the peak before it.
#[actix_web::test]
async fn ten_million_rows_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let service = Replica::start(
        dir.path(),
        &[
            ("QUERY_MAX_ROWS", "20000000".into()),
            ("QUERY_TIMEOUT_MS", "300000".into()),
            ("QUERY_MAX_TIMEOUT_MS", "300000".into()),
            ("DUCKDB_MEMORY_LIMIT", "256MB".into()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let warm = client
        .post(format!("{}/api/v1/query", service.base))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let sql = "SELECT range AS n, range * 3 AS m, 'label-' || range AS label FROM range(10000000)";
    // The last case sets max_rows: the result waits for its end (on disk,
    // not in memory) so that its row count and truncation are headers.
    let cases = [
        ("csv", None),
        ("tsv", None),
        ("ndjson", None),
        ("json", None),
        ("json_objects", None),
        ("arrow", None),
        ("parquet", None),
        ("csv", Some(9_999_999)),
    ];
    for (format, max_rows) in cases {
        let before = service.memory().peak_bytes;
        let mut body = json!({"sql": sql, "format": format});
        if let Some(max_rows) = max_rows {
            body["max_rows"] = json!(max_rows);
        }
        let mut res = client
            .post(format!("{}/api/v1/query", service.base))
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
        let growth = service.memory().peak_bytes.saturating_sub(before);
        // Parquet compresses; every other body is far larger than the bound.
        let least = if format == "parquet" {
            50_000_000
        } else {
            200_000_000
        };
        assert!(bytes > least, "{format}: only {bytes} bytes");
        let rows = max_rows.unwrap_or(10_000_000);
        match format {
            "csv" | "tsv" => assert_eq!(newlines, rows + 1, "{format}: header + {rows} rows"),
            "ndjson" => assert_eq!(newlines, rows, "{format}: {rows} rows"),
            _ => {}
        }
        assert!(
            growth < 200 * 1024 * 1024,
            "{format}: peak RSS grew by {} MB while streaming {} MB",
            growth / (1024 * 1024),
            bytes / (1024 * 1024)
        );
    }
}
