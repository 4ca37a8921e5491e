//! User SQL reads and writes the lake and nothing else: DuckDB's own
//! sandbox, set after the service's set-up, refuses host files, the network,
//! extensions, settings and other databases with 403 `forbidden_statement`.

use crate::common;

use common::{error_code, spawn_with, test_config};
use serde_json::json;

#[actix_web::test]
async fn attack_statements_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let app = spawn_with(test_config(dir.path()), None).await;
    app.sql("CREATE TABLE victim AS SELECT range AS n FROM range(10)")
        .await;
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display().to_string();
    std::fs::write(outside.path().join("host.csv"), "a,b\n1,2\n").unwrap();

    let attacks = [
        format!("SELECT * FROM read_csv('{out}/host.csv')"),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        "SELECT * FROM read_text('/etc/hostname')".to_string(),
        "SELECT * FROM read_blob('/etc/passwd')".to_string(),
        "SELECT * FROM read_json('/etc/os-release')".to_string(),
        "SELECT * FROM read_ndjson_objects('/etc/passwd')".to_string(),
        format!("SELECT * FROM read_parquet('{out}/x.parquet')"),
        "SELECT * FROM parquet_metadata('/etc/passwd')".to_string(),
        "SELECT * FROM sniff_csv('/etc/passwd')".to_string(),
        "SELECT * FROM glob('/etc/*')".to_string(),
        format!("SELECT * FROM '{out}/host.csv'"),
        format!("SELECT * FROM read_blob('{data}/service.duckdb')"),
        format!("COPY (SELECT 1) TO '{out}/leak.csv'"),
        format!("COPY victim TO '{out}/leak.parquet' (FORMAT parquet)"),
        format!("COPY victim FROM '{out}/host.csv'"),
        format!("COPY (SELECT 1) TO '{data}/lake/../escape.csv'"),
        format!("ATTACH '{out}/other.db' AS other"),
        format!("ATTACH '{data}/service.duckdb' AS ours"),
        format!("EXPORT DATABASE '{out}/export'"),
        format!("IMPORT DATABASE '{out}'"),
        "INSTALL httpfs".to_string(),
        "LOAD httpfs".to_string(),
        format!("LOAD '{out}/evil.duckdb_extension'"),
        "FORCE INSTALL ducklake".to_string(),
        "SET memory_limit = '1TB'".to_string(),
        "SET enable_external_access = true".to_string(),
        "SET allowed_directories = ['/']".to_string(),
        "RESET lock_configuration".to_string(),
        "SET GLOBAL threads = 64".to_string(),
        "PRAGMA memory_limit = '1TB'".to_string(),
        "SET temp_directory = '/tmp'".to_string(),
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')".to_string(),
        "SELECT * FROM read_text('https://example.com/')".to_string(),
        format!("CREATE TABLE stolen AS SELECT * FROM read_csv('{out}/host.csv')"),
        format!("INSERT INTO victim SELECT a FROM read_csv('{out}/host.csv')"),
        format!("SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'"),
        "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT count(*) FROM x".to_string(),
        format!("SELECT (SELECT count(*) FROM glob('{out}/*'))"),
        format!("CREATE VIEW v AS SELECT * FROM read_csv('{out}/host.csv')"),
        "CREATE MACRO m() AS TABLE SELECT * FROM read_text('/etc/passwd'); SELECT * FROM m()"
            .to_string(),
        // The catalog database DuckLake attaches next to the lake.
        "SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot".to_string(),
        "SELECT * FROM __ducklake_metadata_lake.ducklake_table".to_string(),
        "DELETE FROM __ducklake_metadata_lake.main.ducklake_snapshot".to_string(),
        "UPDATE __ducklake_metadata_lake.main.ducklake_table SET table_name = 'x'".to_string(),
        "DROP TABLE __ducklake_metadata_lake.main.ducklake_snapshot".to_string(),
        "CREATE TABLE __ducklake_metadata_lake.main.evil (a INT)".to_string(),
        "ALTER TABLE __ducklake_metadata_lake.main.ducklake_tag ADD COLUMN x INT".to_string(),
        "CREATE VIEW peek AS SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot; \
         SELECT * FROM peek"
            .to_string(),
        "SELECT * FROM query_table('__ducklake_metadata_lake.main.ducklake_snapshot')".to_string(),
        "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')".to_string(),
        format!("SELECT * FROM read_duckdb('{data}/lake.ducklake')"),
        // Secrets, settings, the environment.
        "CREATE SECRET s (TYPE http, BEARER_TOKEN 'b')".to_string(),
        "DROP SECRET IF EXISTS s".to_string(),
        "SELECT * FROM duckdb_secrets()".to_string(),
        "SELECT * FROM which_secret('s3://bucket/x', 's3')".to_string(),
        "SELECT * FROM duckdb_settings()".to_string(),
        "SELECT path FROM duckdb_databases()".to_string(),
        "SELECT * FROM \"__DUCKLAKE_METADATA_LAKE\".main.ducklake_snapshot".to_string(),
        "SELECT current_setting('allowed_directories')".to_string(),
        "SELECT * FROM duckdb_temporary_files()".to_string(),
        "SELECT * FROM pragma_database_size()".to_string(),
        "PRAGMA database_list".to_string(),
        "CALL enable_logging()".to_string(),
        "SET VARIABLE x = 1".to_string(),
        // Other databases and the connection's state.
        "DETACH lake".to_string(),
        "USE memory".to_string(),
        "ATTACH ':memory:' AS scratch".to_string(),
        "CREATE TABLE memory.main.side (a INT)".to_string(),
        "CREATE TEMP TABLE scratch AS SELECT 1 AS a".to_string(),
        "BEGIN TRANSACTION".to_string(),
        "PREPARE p AS SELECT 1".to_string(),
        format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/explained.csv'"),
        // EXPLAIN and PIVOT are checked as what they wrap.
        "EXPLAIN SELECT * FROM read_text('/etc/passwd')".to_string(),
        "EXPLAIN ANALYZE SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot".to_string(),
        "EXPLAIN (FORMAT json) SELECT current_setting('allowed_directories')".to_string(),
        "EXPLAIN EXPLAIN ANALYZE SELECT * FROM glob('/etc/*')".to_string(),
        "EXPLAIN ATTACH ':memory:' AS other".to_string(),
        "PIVOT (SELECT * FROM read_csv('/etc/passwd')) ON column0".to_string(),
        "PIVOT __ducklake_metadata_lake.main.ducklake_snapshot ON snapshot_id".to_string(),
        "WITH p AS (PIVOT (FROM read_text('/etc/hostname')) ON content) FROM p".to_string(),
        "SELECT * FROM (PIVOT victim ON n USING max(current_setting('memory_limit')))".to_string(),
        "PIVOT victim ON n IN (SELECT content FROM read_text('/etc/passwd'))".to_string(),
        "UNPIVOT (SELECT * FROM read_csv('/etc/passwd')) ON COLUMNS(*) INTO NAME n VALUE v"
            .to_string(),
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))".to_string(),
    ];
    assert!(attacks.len() >= 40, "keep at least 40 attacks");
    let mut failures = Vec::new();
    for sql in &attacks {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        if (status, error_code(&body)) != (403, "forbidden_statement") {
            failures.push(format!("{status} {body}  <- {sql}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} statement(s) were not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // A parameter cannot smuggle SQL past the check: it is checked with its value.
    for (sql, params) in [
        (
            "SELECT * FROM query(?)",
            json!(["SELECT * FROM read_text('/etc/passwd')"]),
        ),
        (
            "SELECT * FROM query_table($t)",
            json!({"t": "__ducklake_metadata_lake.main.ducklake_snapshot"}),
        ),
        // Spliced bare, -1 after a minus would start a comment, and the
        // check would see only `SELECT 1`.
        (
            "SELECT 1-? AS a, (SELECT count(*) FROM __ducklake_metadata_lake.main.ducklake_snapshot) AS b",
            json!([-1]),
        ),
        (
            "SELECT 1-$n AS a, current_setting('allowed_directories') AS b",
            json!({"n": -1}),
        ),
    ] {
        let (status, body) = app
            .post_query(json!({ "sql": sql, "params": params }))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "forbidden_statement"),
            "{sql}: {body}"
        );
    }
    for leaked in [
        "leak.csv",
        "leak.parquet",
        "export",
        "second.csv",
        "explained.csv",
    ] {
        assert!(
            !outside.path().join(leaked).exists(),
            "{leaked} was written"
        );
    }
    assert!(!dir.path().join("escape.csv").exists());

    // Nothing of the attacks stuck: no new database, no temp table.
    let body = app
        .sql("SELECT count(*) FROM duckdb_tables() WHERE database_name NOT IN ('lake', '__ducklake_metadata_lake')")
        .await;
    assert_eq!(body["rows"], json!([[0]]));
    let body = app.sql("SELECT count(*) FROM victim").await;
    assert_eq!(body["rows"], json!([[10]]));
    app.stop().await;
}

/// Everything a lake user does still runs under the sandbox.
#[actix_web::test]
async fn lake_operations_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path()), None).await;
    let steps: &[(&str, serde_json::Value)] = &[
        ("CREATE SCHEMA sales", json!(null)),
        ("CREATE TABLE sales.orders (id INT, amount DECIMAL(10,2), tags VARCHAR[])", json!(null)),
        ("INSERT INTO sales.orders VALUES (1, 9.5, ['a']), (2, 20, []), (3, 1, NULL)", json!(null)),
        ("UPDATE sales.orders SET amount = amount * 2 WHERE id = 1", json!(null)),
        ("DELETE FROM sales.orders WHERE id = 3", json!(null)),
        ("SELECT id, amount FROM sales.orders ORDER BY id", json!([[1, "19.00"], [2, "20.00"]])),
        ("SELECT count(*) FROM sales.orders AT (VERSION => 2)", json!([[0]])),
        ("SELECT count(*) FROM LAKE.SALES.ORDERS", json!([[2]])),
        ("CREATE VIEW sales.big AS SELECT * FROM sales.orders WHERE amount > 10", json!(null)),
        ("SELECT count(*) FROM sales.big", json!([[2]])),
        ("ALTER TABLE sales.orders ADD COLUMN note VARCHAR", json!(null)),
        ("CREATE TABLE copy AS SELECT * FROM sales.orders", json!(null)),
        ("MERGE INTO copy USING (SELECT 2 AS id) s ON copy.id = s.id WHEN MATCHED THEN DELETE", json!(null)),
        ("SELECT count(*) FROM copy", json!([[1]])),
        ("DROP TABLE copy", json!(null)),
        ("SELECT count(*) > 0 FROM ducklake_snapshots('lake')", json!([[true]])),
        ("SELECT count(*) > 0 FROM lake.snapshots()", json!([[true]])),
        ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'sales' ORDER BY 1", json!([["big"], ["orders"]])),
        ("SELECT count(*) FROM (SHOW TABLES)", json!(null)),
        ("SELECT column_name FROM (DESCRIBE sales.orders) LIMIT 1", json!([["id"]])),
        ("SELECT count(*) FROM (SUMMARIZE sales.orders)", json!([[4]])),
        ("SELECT sum(x) FROM range(4) t(x), generate_series(1, 1)", json!([[6]])),
        ("SELECT count(*) FROM json_each('{\"a\": 1, \"b\": 2}')", json!([[2]])),
        ("SELECT unnest([1, 2]) AS n ORDER BY n DESC LIMIT 1", json!([[2]])),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT max(n) FROM r", json!([[5]])),
        ("SELECT name FROM pragma_table_info('sales.orders') ORDER BY cid LIMIT 1", json!([["id"]])),
        ("DROP VIEW sales.big", json!(null)),
    ];
    for (sql, rows) in steps {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {body}");
        if !rows.is_null() {
            assert_eq!(&body["rows"], rows, "{sql}");
        }
    }
    // Several statements, each checked in the transaction that runs it.
    let (status, body) = app
        .post_query(json!({
            "sql": "CREATE TABLE t (a INT); INSERT INTO t VALUES (1), (2); SELECT sum(a) FROM t",
            "transaction": true,
        }))
        .await;
    assert_eq!((status, &body["rows"]), (200, &json!([[3]])), "{body}");
    let (status, body) = app
        .post_query(json!({ "sql": "INSERT INTO t VALUES (?); SELECT count(*) FROM t WHERE a = ?", "params": [2] }))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_parameters"),
        "parameters belong to the last statement: {body}"
    );
    let body = app.sql("SELECT count(*) FROM t").await;
    assert_eq!(body["rows"], json!([[2]]));
    let (status, body) = app
        .post_query(json!({ "sql": "INSERT INTO t VALUES (3); SELECT count(*) FROM t WHERE a >= $min", "params": {"min": 2} }))
        .await;
    assert_eq!((status, &body["rows"]), (200, &json!([[2]])), "{body}");
    app.stop().await;
}

/// `EXPLAIN`, `EXPLAIN ANALYZE`, `PIVOT` and `UNPIVOT` run, checked as the
/// statement they wrap.
#[actix_web::test]
async fn explain_and_pivot_are_checked_as_what_they_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path()), None).await;
    app.sql("CREATE TABLE sales (k VARCHAR, x VARCHAR, y INT)")
        .await;
    let before = app
        .sql("INSERT INTO sales VALUES ('a', 'p', 1), ('a', 'q', 2), ('b', 'p', 3)")
        .await;
    let before = before["rows"][0][0].clone();
    assert_eq!(before, json!(3));
    let snapshot = app.sql("SELECT id FROM lake.current_snapshot()").await["rows"][0][0]
        .as_i64()
        .unwrap();

    let plan = |body: &serde_json::Value| -> (String, String) {
        (
            body["rows"][0][0].as_str().unwrap_or_default().to_string(),
            body["rows"][0][1].as_str().unwrap_or_default().to_string(),
        )
    };
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "EXPLAIN SELECT k, sum(y) FROM sales GROUP BY k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("etag").is_none(),
        "a plan has no lake version to revalidate"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    let (key, text) = plan(&body);
    assert_eq!(key, "physical_plan", "{body}");
    assert!(text.contains("HASH_GROUP_BY"), "{text}");

    let body = app
        .sql("EXPLAIN ANALYZE SELECT count(*) FROM sales WHERE y > 1")
        .await;
    let (key, text) = plan(&body);
    assert_eq!(key, "analyzed_plan", "{body}");
    assert!(text.contains("Total Time"), "{text}");

    let body = app.sql("EXPLAIN (FORMAT json) SELECT * FROM sales").await;
    let (_, text) = plan(&body);
    let tree: serde_json::Value = serde_json::from_str(&text).expect("a JSON plan");
    assert!(tree.is_array(), "{tree}");

    // A pinned EXPLAIN explains the pinned read.
    let (status, body) = app
        .post_query(json!({"sql": "EXPLAIN SELECT * FROM sales", "snapshot": snapshot}))
        .await;
    assert_eq!(status, 200, "{body}");

    // EXPLAIN ANALYZE runs what it explains: a write, here.
    app.sql("EXPLAIN ANALYZE INSERT INTO sales VALUES ('c', 'q', 4)")
        .await;
    // ... and not through the read-only form.
    let res = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[(
            "sql",
            "EXPLAIN ANALYZE INSERT INTO sales VALUES ('d', 'q', 5)",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "read_only", "{body}");
    let body = app.sql("SELECT count(*) FROM sales").await;
    assert_eq!(body["rows"], json!([[4]]));

    let (status, body) = app.post_query(json!({"sql": "EXPLAIN"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_request"),
        "{body}"
    );

    // PIVOT with its values listed, on its own and nested.
    let expected = json!([["a", 1, 2], ["b", 3, null], ["c", null, 4]]);
    for sql in [
        "PIVOT sales ON x IN ('p', 'q') USING sum(y) GROUP BY k ORDER BY k",
        "SELECT * FROM (PIVOT sales ON x IN ('p', 'q') USING sum(y) GROUP BY k) ORDER BY k",
        "WITH p AS (PIVOT sales ON x IN ('p', 'q') USING sum(y) GROUP BY k) \
         SELECT * FROM p ORDER BY k",
    ] {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {body}");
        assert_eq!(body["rows"], expected, "{sql}");
        let names: Vec<&str> = body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["k", "p", "q"], "{sql}");
    }
    // Over the values in the data (no IN list, or IN a query), DuckDB's
    // parser expands a PIVOT into several statements the sandbox cannot
    // plan as one: refused, and the message says how to list the values.
    for sql in [
        "PIVOT sales ON x USING sum(y) GROUP BY k ORDER BY k",
        "SELECT * FROM (PIVOT sales ON x USING sum(y) GROUP BY k) ORDER BY k",
        "PIVOT sales ON x IN (SELECT DISTINCT x FROM sales) USING sum(y)",
    ] {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "forbidden_statement"),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("list the values, as in PIVOT t ON k IN ('a', 'b')"),
            "{body}"
        );
    }
    let body = app
        .sql("UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME n VALUE v ORDER BY n")
        .await;
    assert_eq!(body["rows"], json!([["a", 1], ["b", 2]]));
    app.stop().await;
}

/// The attack table's HTTP rows: what any web page the user visits could
/// send to a default install (authentication off, every caller an admin).
/// Each is sent the way a browser sends it: a "simple" request (no
/// preflight) with the page's `Origin`, or a rebound DNS name in `Host`.
#[actix_web::test]
async fn cross_site_and_rebinding_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.cors_origins = "https://app.example".into();
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE kept AS SELECT 1 AS a").await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let evil = "http://evil.example";

    // Writes from another origin, whatever their content type: refused,
    // nothing changed.
    let writes: [(reqwest::Method, String, &str, &str); 6] = [
        (
            reqwest::Method::POST,
            "/api/v1/tables/main/pwned/data?mode=create&format=csv".into(),
            "text/plain",
            "a\n1\n",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tables/main/kept/data?mode=replace&format=csv".into(),
            "text/plain",
            "a\n9\n",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tables/main/kept/data?mode=append".into(),
            "text/csv",
            "a\n9\n",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/query".into(),
            "text/plain",
            r#"{"sql": "DROP TABLE kept"}"#,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/keys".into(),
            "application/x-www-form-urlencoded",
            "owner=x&role=admin",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/schemas/main?cascade=true".into(),
            "text/plain",
            "",
        ),
    ];
    for origin in [evil, "null", "http://127.0.0.1:1"] {
        for (method, path, media, body) in &writes {
            let res = app
                .client
                .request(method.clone(), app.url(path))
                .header("origin", origin)
                .header("content-type", *media)
                .body(*body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(
                (status, error_code(&body)),
                (403, "origin_not_allowed"),
                "{origin} {method} {path}"
            );
        }
    }
    let (status, _) = app.get_json("/api/v1/tables/main/pwned").await;
    assert_eq!(status, 404, "the page created a table");
    assert_eq!(app.sql("SELECT a FROM kept").await["rows"], json!([[1]]));

    // A read from another origin is answered without CORS headers, so the
    // page cannot see it; a preflight from it is refused.
    let res = app
        .client
        .get(app.url("/api/v1/query?sql=SELECT%201"))
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/query"))
        .header("origin", evil)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // DNS rebinding: a name that is not the service's own is refused on
    // every route, reads and probes included.
    for path in [
        "/api/v1/tables",
        "/health",
        "/ui",
        "/api/v1/query?sql=SELECT%201",
    ] {
        let res = app
            .client
            .get(app.url(path))
            .header("host", format!("rebound.evil.example:{port}"))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            (status, error_code(&body)),
            (403, "host_not_allowed"),
            "{path}"
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let res = app
            .client
            .get(app.url("/health"))
            .header("host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{host}");
    }

    // The service's own origin (the console) and a configured one may write;
    // the configured one gets CORS headers and its preflight answered.
    let own = format!("http://127.0.0.1:{port}");
    for origin in [own.as_str(), "https://app.example"] {
        let res = app
            .client
            .post(app.url("/api/v1/query"))
            .header("origin", origin)
            .json(&json!({"sql": "INSERT INTO kept VALUES (2)"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{origin}");
        let allow = res
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            allow.as_deref(),
            (origin == "https://app.example").then_some(origin),
            "{origin}"
        );
    }
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/query"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(
        app.sql("SELECT count(*) FROM kept").await["rows"],
        json!([[3]])
    );
    app.stop().await;
}

/// The sandbox's list of scalar and aggregate functions is closed and
/// complete: every function the linked DuckDB (with the lake's extensions)
/// has was reviewed, so a DuckDB upgrade that brings new functions fails
/// here until someone reviews them; and a name that is not on the list is
/// refused by the sandbox rather than let through.
#[actix_web::test]
async fn every_function_of_the_linked_duckdb_was_reviewed() {
    use ducklake_backend::engine::sandbox::reviewed_function_names;
    let app = common::spawn_app().await;
    let body = app
        .sql(
            "SELECT DISTINCT function_name FROM duckdb_functions() \
             WHERE function_type IN ('scalar', 'aggregate') ORDER BY 1",
        )
        .await;
    let reviewed: std::collections::HashMap<&str, bool> = reviewed_function_names().collect();
    let linked: Vec<&str> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .collect();
    assert!(linked.len() > 500, "{body}");
    let unreviewed: Vec<&&str> = linked
        .iter()
        .filter(|n| !reviewed.contains_key(**n))
        .collect();
    assert!(
        unreviewed.is_empty(),
        "functions of the linked DuckDB nobody reviewed: add each to \
         backend/src/engine/sandbox/functions.tsv with its verdict: {unreviewed:?}"
    );
    // What DuckDB itself says varies between runs is never reviewed as
    // deterministic (the result cache and ETags rely on that verdict).
    let body = app
        .sql(
            "SELECT DISTINCT function_name FROM duckdb_functions() \
             WHERE function_type IN ('scalar', 'aggregate') \
             AND stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY') ORDER BY 1",
        )
        .await;
    let varying: Vec<&str> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .collect();
    assert!(
        varying.contains(&"now") && varying.contains(&"random"),
        "{body}"
    );
    let marked: Vec<&&str> = varying
        .iter()
        .filter(|name| ducklake_backend::engine::sandbox::is_deterministic(name))
        .collect();
    assert!(
        marked.is_empty(),
        "DuckDB says these vary between runs, functions.tsv says allow: mark them \
         allow-varies: {marked:?}"
    );
    // Refused by the list, with its reason.
    let (status, body) = app
        .post_query(json!({"sql": "SELECT current_setting('memory_limit')"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden_statement"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{body}"
    );
    // Allowed ones work, operators and aggregates included.
    let body = app
        .sql("SELECT upper('a') || lower('B'), sum(x), list_value(1, 2) FROM range(3) t(x)")
        .await;
    assert_eq!(body["rows"], json!([["Ab", 3, [1, 2]]]));
    app.stop().await;
}
