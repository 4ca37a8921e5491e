//! Result formats, streaming, limits and request forms of the query API,
//! each format read back by a real reader.

use crate::common;

use std::{io::Cursor, time::Duration};

use common::{error_code, spawn_app, spawn_with, test_config};
use duckdb::arrow::{array::RecordBatch, util::pretty::pretty_format_batches};
use serde_json::{json, Value};

/// A row of many types, all of which every format carries.
const TYPES_SQL: &str = "SELECT * FROM (VALUES \
    (1, 'plain', 1.5::DOUBLE, DATE '2024-02-29', 12.50::DECIMAL(10,2), TRUE, TIMESTAMP '2024-01-02 03:04:05.678901', 'quote \" and, comma'), \
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'line\nbreak'), \
    (-7, 'ünïcödé', -0.25::DOUBLE, DATE '1970-01-01', -3.00::DECIMAL(10,2), FALSE, TIMESTAMP '1999-12-31 23:59:59', '')) \
    AS t(i, s, d, day, dec, b, ts, tricky) ORDER BY i NULLS LAST";

async fn fetch(app: &common::TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/query"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn in_process(sql: &str) -> Vec<RecordBatch> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch("SET TimeZone = 'UTC'").ok();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_arrow([]).unwrap().collect()
}

#[actix_web::test]
async fn every_format_reads_back_the_same_values() {
    let app = spawn_app().await;
    let reference = app.sql(TYPES_SQL).await;
    let columns: Vec<String> = reference["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let rows = reference["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);

    // JSON rows as objects and NDJSON: the same values, keyed by column.
    let objects: Value = fetch(&app, json!({"sql": TYPES_SQL, "format": "json_objects"}))
        .await
        .json()
        .await
        .unwrap();
    let res = fetch(&app, json!({"sql": TYPES_SQL, "format": "ndjson"})).await;
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let ndjson = res.text().await.unwrap();
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for (r, row) in rows.iter().enumerate() {
        for (c, name) in columns.iter().enumerate() {
            assert_eq!(objects["rows"][r][name], row[c], "json_objects {r}/{name}");
            assert_eq!(lines[r][name], row[c], "ndjson {r}/{name}");
        }
    }

    // CSV and TSV, parsed by arrow-csv as text: the JSON mapping's text.
    for (format, delimiter) in [("csv", b','), ("tsv", b'\t')] {
        let res = fetch(&app, json!({"sql": TYPES_SQL, "format": format})).await;
        assert_eq!(res.status(), 200);
        let text = res.bytes().await.unwrap();
        let mut cells = common::csv_rows(&text, delimiter);
        let header = cells.remove(0);
        assert_eq!(header, columns, "{format}");
        assert_eq!(cells.len(), rows.len(), "{format}");
        for (r, row) in rows.iter().enumerate() {
            for (c, name) in columns.iter().enumerate() {
                assert_eq!(
                    cells[r][c],
                    common::cell_text(&row[c]),
                    "{format} {r}/{name}"
                );
            }
        }
    }

    // Arrow IPC and Parquet: the same batches DuckDB produces in process.
    let expected = pretty_format_batches(&in_process(TYPES_SQL))
        .unwrap()
        .to_string();
    let res = fetch(&app, json!({"sql": TYPES_SQL, "format": "arrow"})).await;
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = res.bytes().await.unwrap();
    let reader =
        arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(
        pretty_format_batches(&batches).unwrap().to_string(),
        expected
    );

    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .header("accept", "application/vnd.apache.parquet")
        .json(&json!({"sql": TYPES_SQL}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.apache.parquet"
    );
    let bytes = res.bytes().await.unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(
        pretty_format_batches(&batches).unwrap().to_string(),
        expected
    );
    app.stop().await;
}

#[actix_web::test]
async fn formats_are_negotiated_and_unknown_ones_refused() {
    let app = spawn_app().await;
    let res = fetch(&app, json!({"sql": "SELECT 1", "format": "xml"})).await;
    assert_eq!(res.status(), 406);
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "unsupported_format");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("csv, tsv, arrow, parquet"));

    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .header("accept", "image/png")
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 406);

    // The format field wins over Accept; gzip when asked.
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .header("accept", "application/json")
        .header("accept-encoding", "gzip")
        .json(&json!({"sql": "SELECT range FROM range(10000)", "format": "csv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["x-row-count"], "10000");
    app.stop().await;
}

/// A result much larger than the window streams in chunks; its row count is right.
#[actix_web::test]
async fn large_results_stream_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.query.max_rows = 1_000_000;
    let app = spawn_with(config, None).await;
    let sql = "SELECT range AS n, 'row-' || range AS label FROM range(300000)";
    for format in ["json", "ndjson", "csv", "arrow", "parquet"] {
        let mut res = fetch(&app, json!({"sql": sql, "format": format})).await;
        assert_eq!(res.status(), 200, "{format}");
        assert_eq!(res.headers()["x-result-streamed"], "true", "{format}");
        assert!(res.headers().get("content-length").is_none(), "{format}");
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        if format == "json" {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["row_count"], 300000);
        }
        let rows = count_rows(format, body);
        assert_eq!(rows, 300000, "{format}");
    }
    app.stop().await;
}

/// Rows of a body in `format`, read by that format's reader.
fn count_rows(format: &str, body: Vec<u8>) -> usize {
    match format {
        "json" | "json_objects" => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["rows"].as_array().unwrap().len()
        }
        "ndjson" => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        "csv" | "tsv" => {
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
                - 1
        }
        "arrow" => arrow_ipc::reader::StreamReader::try_new(Cursor::new(body), None)
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum(),
        _ => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            actix_web::web::Bytes::from(body),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum(),
    }
}

/// Names of the files (not directories) in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// With `max_rows` from the client, a result far larger than the window
/// still gets its row count and truncation as headers in every format (the
/// response waits for the row limit or the end), with an exact length.
#[actix_web::test]
async fn client_row_limits_are_headers_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.query.max_rows = 1_000_000;
    let app = spawn_with(config, None).await;
    let sql = "SELECT range AS n, 'row-' || range AS label FROM range(300000)";
    for format in [
        "json",
        "json_objects",
        "ndjson",
        "csv",
        "tsv",
        "arrow",
        "parquet",
    ] {
        for (max_rows, rows, truncated) in [(200_000, 200_000, "true"), (300_000, 300_000, "false")]
        {
            let mut res = fetch(
                &app,
                json!({"sql": sql, "format": format, "max_rows": max_rows}),
            )
            .await;
            assert_eq!(res.status(), 200, "{format}");
            assert_eq!(
                res.headers()["x-row-count"],
                rows.to_string().as_str(),
                "{format}"
            );
            assert_eq!(res.headers()["x-result-truncated"], truncated, "{format}");
            assert!(res.headers().get("x-result-streamed").is_none(), "{format}");
            let length: usize = res.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.unwrap() {
                body.extend_from_slice(&chunk);
            }
            assert!(
                body.len() > 1024 * 1024,
                "{format}: the body outgrew the window"
            );
            assert_eq!(body.len(), length, "{format}");
            assert_eq!(count_rows(format, body), rows, "{format}");
        }
    }
    // Nothing of the held results stays behind.
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());
    app.stop().await;
}

/// A query DuckDB cannot finish in any test's lifetime (hours of counting):
/// it ends only when something interrupts it.
const ENDLESS_SQL: &str = "SELECT count(*) FROM range(2000000000000) a";
/// Another text of the same: the result cache has the same text asked at
/// once run once, so a second run of its own needs another text.
const OTHER_ENDLESS_SQL: &str = "SELECT count(*) FROM range(2000000000000) b";

/// The value of one of the service's own gauges (always exported) on /metrics.
async fn gauge(app: &common::TestApp, name: &str) -> f64 {
    common::sample(&app.get_text("/metrics").await, name)
}

/// Polls /metrics until `name` reaches `wanted`; panics only after a bound
/// that catches a hang, not a slow machine.
async fn wait_for_gauge(app: &common::TestApp, name: &str, wanted: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = gauge(app, name).await;
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed {now}, never {wanted}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that goes away mid-query interrupts it: the only connection is
/// free again. A timeout after streaming began truncates the body in a way
/// the client notices.
#[actix_web::test]
async fn disconnect_and_late_timeout_interrupt_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.duckdb.connections = 1;
    config.query.max_rows = 10_000_000_000;
    // Shorter than the abandoned query's own timeout: a request that waits
    // behind a query nobody interrupted gets 429, not a late 200.
    config.query.queue_timeout_ms = 30_000;
    let app = spawn_with(config, None).await;
    // The client is a bare socket, so going away is exactly closing it (an
    // HTTP client library may keep a dropped request's connection open).
    let address = app.base.trim_start_matches("http://").to_string();
    let mut abandoned = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = json!({"sql": ENDLESS_SQL, "timeout_ms": 120000}).to_string();
    let request = format!(
        "POST /api/v1/query HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut abandoned, request.as_bytes())
        .await
        .unwrap();
    // The request holds the only connection (a query counts as active in
    // the same step that takes its connection when one is free).
    wait_for_gauge(&app, "ducklake_queries_active", 1.0).await;
    drop(abandoned);
    let (status, body) = app.post_query(json!({"sql": "SELECT 1"})).await;
    assert_eq!(
        status, 200,
        "the abandoned query still holds the only connection: {body}"
    );
    // And it no longer counts as running.
    wait_for_gauge(&app, "ducklake_queries_active", 0.0).await;

    // Streaming began, then the timeout hit: the body ends early, detectably.
    // One pair in a thousand qualifies: the first window (256 KiB) is there
    // in milliseconds, long before the timeout even on a loaded machine, and
    // the client reads a few MB rather than gigabytes until the cut.
    let sparse = "SELECT a.range, b.range FROM range(1000000) a, range(1000000) b \
                  WHERE (a.range + b.range) % 1000 = 0";
    let mut res = fetch(
        &app,
        json!({"sql": sparse, "format": "csv", "timeout_ms": 10000}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-result-streamed"], "true");
    let mut received = 0usize;
    let outcome = loop {
        match res.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        outcome.is_err(),
        "a stream cut by its timeout must not look complete"
    );
    assert!(
        received > 256 * 1024,
        "only {received} bytes arrived before the cut"
    );
    let res = fetch(&app, json!({"sql": ENDLESS_SQL, "timeout_ms": 300})).await;
    assert_eq!(res.status(), 504);
    // With max_rows from the client nothing has left when the timeout hits
    // (the result waits for its end, which is hours away): a proper JSON
    // error, and the held bytes are gone.
    let res = fetch(
        &app,
        json!({"sql": sparse, "format": "csv", "timeout_ms": 1500, "max_rows": 5_000_000_000u64}),
    )
    .await;
    assert_eq!(res.status(), 504);
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "query_timeout");
    assert_eq!(files_in(&dir.path().join("tmp")), Vec::<String>::new());
    app.sql("SELECT 1").await;
    app.stop().await;
}

/// One query runs, one waits for the only connection, and a third finds the
/// queue full. Each step is ordered by the queue's own gauges, not by time.
#[actix_web::test]
async fn full_queue_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.duckdb.connections = 1;
    config.query.max_queued = 1;
    let app = spawn_with(config, None).await;
    // Runs until its client goes away (its timeout is only a bound).
    let first = actix_web::rt::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/query"));
        async move {
            let _ = client
                .post(url)
                .json(&json!({"sql": ENDLESS_SQL, "timeout_ms": 120000}))
                .send()
                .await;
        }
    });
    wait_for_gauge(&app, "ducklake_queries_active", 1.0).await;
    // Its timeout starts once it has the connection.
    let second = actix_web::rt::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/query"));
        async move {
            let res = client
                .post(url)
                .json(&json!({"sql": OTHER_ENDLESS_SQL, "timeout_ms": 300}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    });
    wait_for_gauge(&app, "ducklake_queries_queued", 1.0).await;
    let third = fetch(&app, json!({"sql": "SELECT 1"})).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(error_code(&body), "too_many_requests");

    // The first one's client goes away: the queued one runs, and its own
    // timeout ends it.
    first.abort();
    let _ = first.await;
    let (status, body) = second.await.unwrap();
    assert_eq!(
        (status, error_code(&body)),
        (504, "query_timeout"),
        "the queued one ran after the first: {body}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn get_form_is_read_only_and_transactions_are_all_or_nothing() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE tx (n INT)").await;
    let res = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[
            ("sql", "SELECT $1::INT + 1 AS answer"),
            ("params", "[41]"),
            ("format", "csv"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "answer\n42\n");
    let res = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[("sql", "INSERT INTO tx VALUES (1)")])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!((status, error_code(&body)), (403, "read_only"), "{body}");

    // One transaction: the failing second statement undoes the first.
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO tx VALUES (1); INSERT INTO tx VALUES ('not a number')", "transaction": true}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        app.sql("SELECT count(*) FROM tx").await["rows"],
        json!([[0]])
    );
    // Without it each statement commits on its own.
    let (status, _) = app
        .post_query(
            json!({"sql": "INSERT INTO tx VALUES (1); INSERT INTO tx VALUES ('not a number')"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        app.sql("SELECT count(*) FROM tx").await["rows"],
        json!([[1]])
    );
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO tx VALUES (2); SELECT count(*) AS n FROM tx", "transaction": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[2]]));
    app.stop().await;
}

/// The OpenAPI document lists every route, passes a real validator, and the
/// docs page and its assets come from the service itself.
#[actix_web::test]
async fn openapi_document_and_docs_page() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/query", "post"),
        ("/api/v1/query", "get"),
        ("/api/v1/storage/objects", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/metrics/memory", "get"),
        ("/metrics/performance", "get"),
        ("/config/summary", "get"),
        ("/config/ducklake", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing"
        );
    }
    let spec = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spec.path(), &text).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(spec.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN: {html}"
    );
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        assert!(html.contains(asset));
        let res = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.bytes().await.unwrap().len() > 100_000, "{asset}");
    }
    app.stop().await;
}
