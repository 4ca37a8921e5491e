//! The HTTP API against the real app on the embedded default lake.

mod common;

use common::{error_code, spawn_app};
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
    assert_eq!(body["catalog"], "duckdb");
    app.stop().await;
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

    // A slow query runs on a blocking thread; /health still answers meanwhile,
    // and the query's timeout interrupts it with 504 query_timeout.
    let slow = actix_web::rt::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/query"));
        async move {
            let res = client
                .post(url)
                .json(&json!({"sql": "SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3", "timeout_ms": 3000}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    });
    actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        !slow.is_finished(),
        "the slow query should still be running while /health answers"
    );
    let (status, body) = slow.await.unwrap();
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
