//! Loading files into tables on the embedded default: each format and mode,
//! and every way a load can fail, each leaving the table and the lake's
//! files exactly as they were (S3 `url=` loads are in stack.rs).

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::{error_code, spawn_app, spawn_with, test_config, TestApp};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

async fn upload(
    app: &TestApp,
    table: &str,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/api/v1/tables/{table}/data?{query}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// What must not change when a load fails: the rows, the lake's files,
/// the snapshot; and no upload may be left behind.
async fn state(app: &TestApp, table: &str) -> (Value, Vec<PathBuf>, Value) {
    let rows = app
        .sql(&format!("SELECT count(*), sum(hash(t)) FROM {table} t"))
        .await["rows"]
        .clone();
    let snapshot = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"].clone();
    (rows, files(&app.data_dir.join("lake")), snapshot)
}

/// Upload files are removed on a blocking thread after the request ends:
/// polls until none is left, within a bound that only a leak reaches.
async fn assert_no_uploads_left(app: &TestApp) {
    let dir = app.data_dir.join("tmp").join("uploads");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !files(&dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "uploads left behind: {:?}",
            files(&dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn csv(rows: std::ops::Range<u32>) -> String {
    let mut text = String::from("id,name,score\n");
    for i in rows {
        text.push_str(&format!("{i},name {i},{}.5\n", i % 100));
    }
    text
}

#[actix_web::test]
async fn files_load_in_each_format_and_mode() {
    let app = spawn_app().await;
    app.sql("CREATE SCHEMA staging").await;

    let (status, body) = upload(
        &app,
        "staging/people",
        "mode=create",
        "text/csv",
        csv(0..3000).into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rows_loaded"], 3000);
    assert_eq!(body["bytes"], csv(0..3000).len());
    assert_eq!(body["format"], "csv");
    let newest = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"].clone();
    assert_eq!(
        body["snapshot"], newest,
        "the load names the snapshot it created"
    );
    let (_, detail) = app.get_json("/api/v1/tables/staging/people").await;
    let types: Vec<&str> = detail["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["BIGINT", "VARCHAR", "DOUBLE"], "{detail}");

    // NDJSON with columns in another order and one missing: matched by name.
    let ndjson = (5000..5010)
        .map(|i| json!({"name": format!("n{i}"), "id": i}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (status, body) = upload(
        &app,
        "staging/people",
        "",
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_loaded"], 10);
    let check = app
        .sql("SELECT count(*), count(score), max(id) FROM staging.people")
        .await;
    assert_eq!(check["rows"], json!([[3010, 3000, 5009]]));

    // Parquet (made by the query API) replaces every row.
    let parquet = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT i AS id, 'p' || i AS name, 1.0 AS score FROM range(777) t(i)", "format": "parquet"}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (status, body) = upload(
        &app,
        "staging/people",
        "mode=replace",
        "application/vnd.apache.parquet",
        parquet.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_loaded"], 777);
    let check = app
        .sql("SELECT count(*), min(name) FROM staging.people")
        .await;
    assert_eq!(check["rows"], json!([[777, "p0"]]));

    // TSV chosen by format= whatever the Content-Type says.
    let (status, body) = upload(
        &app,
        "staging/people",
        "format=tsv",
        "application/octet-stream",
        b"id\tname\tscore\n1\ttab\t2.5\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_loaded"], 1);
    assert_no_uploads_left(&app).await;
    let metrics = app.get_text("/metrics").await;
    assert_eq!(
        common::sample(&metrics, "ducklake_ingest_rows_total"),
        (3000 + 10 + 777 + 1) as f64
    );
    assert!(common::sample(&metrics, "ducklake_ingest_bytes_total") > csv(0..3000).len() as f64);
    app.stop().await;
}

#[actix_web::test]
async fn failed_loads_leave_the_table_as_it_was() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t (id INTEGER NOT NULL, name VARCHAR, score DOUBLE)")
        .await;
    let (status, body) = upload(&app, "main/t", "", "text/csv", csv(0..5000).into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let before = state(&app, "t").await;

    // A value that does not fit its column, far into the file.
    let mut bad = csv(0..200_000);
    bad.push_str("oops,late,1.0\n");
    let (status, body) = upload(&app, "main/t", "", "text/csv", bad.into_bytes()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_code(&body), "invalid_data");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("oops"),
        "{body}"
    );
    assert_eq!(state(&app, "t").await, before, "type mismatch halfway");

    // A NOT NULL column left empty by the file.
    let (status, body) = upload(
        &app,
        "main/t",
        "",
        "text/csv",
        b"id,name\n1,a\n,b\n".to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(state(&app, "t").await, before, "constraint");

    // Not a Parquet file, and not JSON lines.
    let (status, body) = upload(
        &app,
        "main/t",
        "",
        "application/vnd.apache.parquet",
        b"PAR1 this is not parquet".to_vec(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_data"), "{body}");
    let (status, body) = upload(
        &app,
        "main/t",
        "",
        "application/x-ndjson",
        b"{\"id\": 1}\n{not json\n".to_vec(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_data"), "{body}");
    assert_eq!(state(&app, "t").await, before, "malformed files");

    // Replace that fails keeps the old rows (the delete rolls back too).
    let (status, _) = upload(
        &app,
        "main/t",
        "mode=replace",
        "text/csv",
        b"id\nx\n".to_vec(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(state(&app, "t").await, before, "failed replace");

    // Requests refused before loading.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "main/t",
            "mode=create",
            "text/csv",
            b"id\n1\n".to_vec(),
            409,
            "already_exists",
        ),
        (
            "main/nope",
            "",
            "text/csv",
            b"id\n1\n".to_vec(),
            404,
            "not_found",
        ),
        (
            "nope/t",
            "mode=create",
            "text/csv",
            b"id\n1\n".to_vec(),
            404,
            "not_found",
        ),
        (
            "main/t",
            "",
            "application/json",
            b"[]".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "main/t",
            "format=xlsx",
            "text/csv",
            b"id\n1\n".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "main/t",
            "mode=merge",
            "text/csv",
            b"id\n1\n".to_vec(),
            422,
            "invalid_parameters",
        ),
        (
            "main/t",
            "",
            "text/csv",
            Vec::new(),
            422,
            "invalid_parameters",
        ),
        (
            "main/t",
            "url=s3://b/k.csv",
            "text/csv",
            Vec::new(),
            422,
            "invalid_parameters",
        ),
    ];
    for (table, query, media, body, status, code) in cases {
        let (got, answer) = upload(&app, table, query, media, body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{table}?{query} {media}: {answer}"
        );
    }
    assert_eq!(state(&app, "t").await, before, "refused requests");
    assert_no_uploads_left(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn an_abandoned_or_oversized_upload_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ingest.max_upload_bytes = 64 * 1024;
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t (id INTEGER, name VARCHAR, score DOUBLE)")
        .await;
    let (status, _) = upload(&app, "main/t", "", "text/csv", csv(0..100).into_bytes()).await;
    assert_eq!(status, 200);
    let before = state(&app, "t").await;

    let (status, body) = upload(&app, "main/t", "", "text/csv", csv(0..20_000).into_bytes()).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "payload_too_large"),
        "{body}"
    );
    assert_eq!(state(&app, "t").await, before, "oversized upload");

    // A client that sends part of the body and goes away.
    let address = app.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let part = csv(0..1000);
    socket
        .write_all(
            format!(
                "POST /api/v1/tables/main/t/data HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: text/csv\r\nContent-Length: 60000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    socket
        .write_all(&part.as_bytes()[..part.len() / 2])
        .await
        .unwrap();
    socket.flush().await.unwrap();
    // The service is receiving it: its upload file exists.
    let uploads = app.data_dir.join("tmp").join("uploads");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while files(&uploads).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never started receiving the upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(socket);
    // The upload file goes only when the request's handler has ended (it is
    // held until the load is over), so once it is gone no load can follow.
    assert_no_uploads_left(&app).await;
    assert_eq!(state(&app, "t").await, before, "abandoned upload");
    app.stop().await;
}

#[actix_web::test]
async fn uploads_being_received_share_the_spool_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ingest.max_upload_bytes = 64 * 1024;
    config.ingest.max_spool_bytes = 64 * 1024;
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t (id INTEGER, name VARCHAR, score DOUBLE)")
        .await;
    let before = state(&app, "t").await;
    let first = csv(0..3000);
    let sent = first.len() * 3 / 4;
    let second = csv(0..1500);
    assert!(first.len() <= 64 * 1024 && second.len() <= 64 * 1024);
    assert!(sent + second.len() > 64 * 1024, "together past the budget");

    // One upload is being received: three quarters of it are on disk.
    let address = app.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /api/v1/tables/main/t/data HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
                first.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    socket.write_all(&first.as_bytes()[..sent]).await.unwrap();
    socket.flush().await.unwrap();
    let uploads = app.data_dir.join("tmp").join("uploads");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while files(&uploads)
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum::<u64>()
        < sent as u64
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never received the first upload's bytes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second, within its own limit, would pass the shared budget: 429
    // with Retry-After, and nothing of it kept or loaded.
    let res = app
        .client
        .post(format!("{}/api/v1/tables/main/t/data", app.base))
        .header("Content-Type", "text/csv")
        .body(second.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "too_many_requests", "{body}");
    assert!(
        body.to_string().contains("ingest.max_spool_bytes"),
        "{body}"
    );
    assert_eq!(files(&uploads).len(), 1, "only the first upload's file");

    // The first ends (its client goes away): its bytes are released, and
    // the second now loads.
    drop(socket);
    assert_no_uploads_left(&app).await;
    assert_eq!(state(&app, "t").await, before);
    let (status, body) = upload(&app, "main/t", "", "text/csv", second.into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_loaded"], 1500);
    app.stop().await;
}
