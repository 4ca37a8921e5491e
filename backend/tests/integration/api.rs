//! The HTTP API against the real app on the embedded default lake.

use crate::common;

use common::{error_code, spawn_app, spawn_with, test_config};
use serde_json::{json, Value};

#[actix_web::test]
async fn create_insert_select_round_trip() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE events (id INTEGER, name VARCHAR)")
        .await;
    let inserted = app
        .sql("INSERT INTO events VALUES (1, 'a'), (2, 'b'), (3, NULL)")
        .await;
    assert_eq!(inserted["rows"], json!([[3]]), "{inserted}");

    let body = app.sql("SELECT id, name FROM events ORDER BY id").await;
    assert_eq!(
        body["columns"],
        json!([{"name": "id", "type": "INTEGER"}, {"name": "name", "type": "VARCHAR"}])
    );
    assert_eq!(body["rows"], json!([[1, "a"], [2, "b"], [3, null]]));
    assert_eq!(body["row_count"], 3);
    assert_eq!(body["truncated"], false);
    assert!(body["elapsed_ms"].as_f64().unwrap() >= 0.0);

    // The table landed in the lake: DuckLake wrote Parquet under the data path.
    let tables = app
        .sql("SELECT table_catalog FROM information_schema.tables WHERE table_name = 'events'")
        .await;
    assert_eq!(tables["rows"], json!([["lake"]]));
    app.stop().await;
}

#[actix_web::test]
async fn health_ready_and_request_ids() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-request-id").is_some());

    let res = app
        .client
        .get(app.url("/ready"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for component in ["catalog", "storage", "lake"] {
        let c = &body["components"][component];
        assert_eq!(c["status"], "up", "{body}");
        assert!(c["latency_ms"].as_f64().unwrap() >= 0.0, "{body}");
    }
    assert_eq!(body["components"]["catalog"]["kind"], "duckdb");
    assert_eq!(body["components"]["storage"]["kind"], "local");
    let before = body["components"]["lake"]["snapshot_id"].as_i64().unwrap();
    app.sql("CREATE TABLE bump (x INT)").await;
    let (_, body) = app.get_json("/ready").await;
    assert_eq!(
        body["components"]["lake"]["snapshot_id"].as_i64().unwrap(),
        before + 1,
        "a commit moves the lake's snapshot"
    );
    app.stop().await;
}

/// The embedded default keeps our own tables in a local store, migrated at
/// start-up, and lists the data path through the object store.
#[actix_web::test]
async fn local_store_and_storage_listing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path()), None).await;
    app.sql("CREATE TABLE files AS SELECT range AS n FROM range(20000)")
        .await;
    let (_, listing) = app
        .get_json("/api/v1/storage/objects?path=main/files")
        .await;
    let objects = listing["objects"].as_array().unwrap();
    assert!(
        objects.iter().any(|o| {
            o["path"].as_str().unwrap().starts_with("main/files/")
                && o["path"].as_str().unwrap().ends_with(".parquet")
                && o["size"].as_u64().unwrap() > 0
        }),
        "{listing}"
    );
    let (_, root) = app.get_json("/api/v1/storage/objects").await;
    assert_eq!(root["prefixes"], json!(["main/"]), "{root}");
    let res = app
        .client
        .get(app.url("/api/v1/storage/objects?path=../etc"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    app.stop().await;
    drop(app);

    // Our tables live in the local store, in their own schema, at the current version.
    let store = duckdb::Connection::open_with_flags(
        dir.path().join("service.duckdb"),
        duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .unwrap(),
    )
    .unwrap();
    let version: i32 = store
        .query_row(
            "SELECT max(version) FROM ducklake_backend.schema_migrations",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        version as usize,
        ducklake_backend::store::migrations::MIGRATIONS.len()
    );
    let tables: i64 = store
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ducklake_backend' \
             AND table_name IN ('api_keys', 'query_jobs', 'audit_log')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 3);
}

#[actix_web::test]
async fn params_bind_through_prepared_statements() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE people (id BIGINT, name VARCHAR)")
        .await;
    let nasty = "Robert'); DROP TABLE people; --";
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO people VALUES (?, ?)", "params": [1, nasty]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO people VALUES ($id, $name)", "params": {"id": 2, "name": "Ann"}}))
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, body) = app
        .post_query(json!({"sql": "SELECT name FROM people WHERE id = $1 OR name = $2 ORDER BY id", "params": [1, "Ann"]}))
        .await;
    assert_eq!(body["rows"], json!([[nasty], ["Ann"]]));

    // Wrong arity and unknown names are the client's mistake: 422.
    let (status, body) = app
        .post_query(json!({"sql": "SELECT ?::INT", "params": []}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_parameters"),
        "{body}"
    );
    let (status, body) = app
        .post_query(json!({"sql": "SELECT $a::INT", "params": {"b": 1}}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_parameters"),
        "{body}"
    );
    let (status, body) = app
        .post_query(json!({"sql": "SELECT 1", "params": "x"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_parameters"),
        "{body}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn errors_have_stable_codes_and_statuses() {
    let app = spawn_app().await;
    let (status, body) = app.post_query(json!({"sql": "SELEC 1"})).await;
    assert_eq!((status, error_code(&body)), (400, "sql_error"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("syntax error"),
        "{body}"
    );

    let (status, body) = app
        .post_query(json!({"sql": "SELECT * FROM no_such_table"}))
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");

    app.sql("CREATE TABLE dup (a INT)").await;
    let (status, body) = app
        .post_query(json!({"sql": "CREATE TABLE dup (a INT)"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "already_exists"),
        "{body}"
    );

    let (status, body) = app.post_query(json!({"sql": "   "})).await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_parameters"),
        "{body}"
    );

    let send_raw = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/api/v1/query"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = send_raw("application/json", "{\"sql\": ").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_code(&res.json().await.unwrap()), "invalid_request");

    let res = send_raw("text/plain", "SELECT 1").await.unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        error_code(&res.json().await.unwrap()),
        "unsupported_media_type"
    );

    let res = send_raw("application/json", "{\"sql\": \"SELECT 1\", \"sqll\": 1}")
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(error_code(&res.json().await.unwrap()), "invalid_parameters");

    let huge = format!("{{\"sql\": \"SELECT '{}'\"}}", "x".repeat(17 * 1024 * 1024));
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(error_code(&res.json().await.unwrap()), "payload_too_large");

    let res = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(&res.json().await.unwrap()), "route_not_found");
    app.stop().await;
}

#[actix_web::test]
async fn max_rows_truncates_and_flags() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT range AS i FROM range(10000)", "max_rows": 2500}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-result-truncated"], "true");
    assert_eq!(res.headers()["x-row-count"], "2500");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["row_count"], 2500);
    assert_eq!(body["truncated"], true);
    assert_eq!(body["rows"].as_array().unwrap().len(), 2500);
    assert_eq!(body["rows"][2499], json!([2499]));
    app.stop().await;
}

#[actix_web::test]
async fn concurrent_queries_and_a_responsive_executor() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE nums AS SELECT range AS i FROM range(1000)")
        .await;

    let queries = (0..50).map(|n| {
        let app = &app;
        async move {
            let (status, body) = app
                .post_query(json!({"sql": "SELECT coalesce(sum(i), 0) + ? FROM nums WHERE i < ?", "params": [n, n * 10]}))
                .await;
            assert_eq!(status, 200, "{body}");
            let expected: i64 = (0..n * 10).sum::<i64>() + n;
            (body["rows"][0][0].to_string(), expected.to_string())
        }
    });
    for (got, expected) in futures_util::future::join_all(queries).await {
        // sum() of BIGINT is HUGEINT: a JSON number with every digit.
        assert_eq!(got, expected);
    }

    // A slow query runs on a blocking thread; /health still answers meanwhile.
    // It runs until its client goes away (hours of counting; its timeout is
    // only a bound), so /health answering first is not a matter of speed.
    let endless = "SELECT count(*) FROM range(1000000000000000) t(i) WHERE i % 7 = 3";
    let slow = actix_web::rt::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/query"));
        async move {
            let _ = client
                .post(url)
                .json(&json!({"sql": endless, "timeout_ms": 120000}))
                .send()
                .await;
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while common::sample(&app.get_text("/metrics").await, "ducklake_queries_active") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow query never started"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        !slow.is_finished(),
        "the slow query should still be running while /health answers"
    );
    slow.abort();
    // The query's timeout interrupts it with 504 query_timeout.
    let (status, body) = app
        .post_query(json!({"sql": endless, "timeout_ms": 300}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (504, "query_timeout"),
        "{body}"
    );

    // The interrupted connection went back to the pool in a usable state.
    for _ in 0..10 {
        assert_eq!(app.sql("SELECT 42").await["rows"], json!([[42]]));
    }
    app.stop().await;
}

/// Parquet files of one table, as the storage listing shows them.
async fn parquet_files(app: &common::TestApp, table: &str) -> Vec<String> {
    let res = app
        .client
        .get(app.url(&format!("/api/v1/storage/objects?path=main/{table}")))
        .send()
        .await
        .unwrap();
    if res.status() == 404 {
        return Vec::new();
    }
    let listing: Value = res.json().await.unwrap();
    listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap().to_string())
        .filter(|p| p.ends_with(".parquet"))
        .collect()
}

/// DB_DUCKLAKE_DATA_INLINING_ROW_LIMIT and DB_DUCKLAKE_ENCRYPTED reach
/// DuckLake: small inserts stay in the catalog, larger ones become Parquet
/// files, and an encrypted lake's files cannot be read without it.
#[actix_web::test]
async fn ducklake_inlining_and_encryption_options() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ducklake.data_inlining_row_limit = Some(100);
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE small (n INT)").await;
    app.sql("INSERT INTO small SELECT range FROM range(50)")
        .await;
    assert!(
        parquet_files(&app, "small").await.is_empty(),
        "50 rows are inlined"
    );
    app.sql("INSERT INTO small SELECT range FROM range(500)")
        .await;
    let files = parquet_files(&app, "small").await;
    assert_eq!(files.len(), 1, "500 rows are written as a file: {files:?}");
    let body = app.sql("SELECT count(*) FROM small").await;
    assert_eq!(body["rows"], json!([[550]]));
    // Without encryption, any Parquet reader opens the file.
    let plain = duckdb::Connection::open_in_memory().unwrap();
    let path = dir.path().join("lake").join(&files[0]);
    let rows: i64 = plain
        .query_row(
            &format!("SELECT count(*) FROM read_parquet('{}')", path.display()),
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 500);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.ducklake.encrypted = true;
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE secret AS SELECT range AS n FROM range(5000)")
        .await;
    let body = app.sql("SELECT count(*), sum(n) FROM secret").await;
    assert_eq!(body["rows"], json!([[5000, 12497500]]));
    let files = parquet_files(&app, "secret").await;
    assert_eq!(files.len(), 1, "{files:?}");
    let path = dir.path().join("lake").join(&files[0]);
    let err = plain
        .query_row(
            &format!("SELECT count(*) FROM read_parquet('{}')", path.display()),
            [],
            |row| row.get::<_, i64>(0),
        )
        .expect_err("an encrypted file is unreadable without the lake's key");
    assert!(err.to_string().to_lowercase().contains("encrypt"), "{err}");
    app.stop().await;
}

/// `HEAD` of the console's files answers as `GET` does, without the body.
#[actix_web::test]
async fn the_console_answers_head() {
    let app = common::spawn_app().await;
    for path in ["/ui", "/ui/", "/ui/app.js"] {
        let get = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(get.status(), 200, "GET {path}");
        let length = get.bytes().await.unwrap().len();
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            length.to_string(),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has a body"
        );
    }
    app.stop().await;
}
