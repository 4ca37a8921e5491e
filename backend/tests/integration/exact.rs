//! Exact or not served: the result cache, ETags, pins and hot copies are
//! decided from what DuckDB bound, failing closed. Answers that depend on
//! the clock (in a table function's arguments or an AT clause too) are
//! never kept; a pin that cannot cover every table the read reaches is
//! refused; a read of a virtual column never comes from a copy.

use std::time::Duration;

use crate::common;

use common::{error_code, spawn_with, test_config, TestApp};
use serde_json::{json, Value};

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_with(test_config(dir.path()), Some(dir)).await
}

/// Status, `X-Cache`, ETag and body of one POSTed query.
async fn ask(app: &TestApp, body: Value) -> (u16, String, Option<String>, Value) {
    let res = app.send_query(&body).await;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let cache = header("x-cache").unwrap_or_default();
    let etag = header("etag");
    let status = res.status().as_u16();
    (status, cache, etag, res.json().await.unwrap())
}

/// The time-dependent reads: each asked three times is never a hit
/// and never has an ETag; a deterministic read beside them is kept.
#[actix_web::test]
async fn answers_that_depend_on_the_clock_are_never_kept() {
    let app = app().await;
    app.sql("CREATE TABLE ev AS SELECT now() AS ts").await;
    app.sql("CREATE TABLE tt AS SELECT 1 AS a").await;
    let varying = [
        "SELECT current_localtimestamp() AS ts, localtime AS t",
        "SELECT * FROM unnest([now()])",
        "SELECT * FROM repeat(now(), 1)",
        "SELECT count(*) FROM range(CAST(random() * 1e6 AS BIGINT))",
        "SELECT count(*) FROM ev, unnest([now() - INTERVAL 3 SECOND]) AS c(since) \
         WHERE ev.ts >= c.since",
        "SELECT count(*) FROM tt AT (TIMESTAMP => now() - INTERVAL 5 SECOND)",
        "SELECT current_query()",
        "SELECT uuid()",
    ];
    for sql in varying {
        for round in 0..3 {
            let (status, cache, etag, body) = ask(&app, json!({ "sql": sql })).await;
            // tt did not exist 5 s ago: DuckLake's answer then is an error.
            if status != 200 {
                assert!(sql.contains("AT (TIMESTAMP"), "{sql}: {body}");
                continue;
            }
            assert_ne!(cache, "hit", "round {round} of {sql}: {body}");
            assert_eq!(etag, None, "{sql}");
        }
    }
    // A view or a macro calling a table function whose arguments no plan
    // shows: not kept either.
    app.sql("CREATE VIEW clock AS SELECT * FROM unnest([now()])")
        .await;
    app.sql("CREATE MACRO clock_rows() AS TABLE SELECT * FROM repeat(now(), 1)")
        .await;
    for sql in ["SELECT * FROM clock", "SELECT * FROM clock_rows()"] {
        for _ in 0..2 {
            let (status, cache, etag, body) = ask(&app, json!({ "sql": sql })).await;
            assert_eq!(status, 200, "{sql}: {body}");
            assert_ne!(cache, "hit", "{sql}");
            assert_eq!(etag, None, "{sql}");
        }
    }
    // The control: a deterministic read is kept.
    let sql = json!({"sql": "SELECT count(*) FROM ev"});
    let (_, first, etag, _) = ask(&app, sql.clone()).await;
    assert_eq!(first, "miss");
    assert!(etag.is_some());
    let (_, second, _, _) = ask(&app, sql).await;
    assert_eq!(second, "hit");
    app.stop().await;
}

/// A pinned read reaching a table through a table macro, a scalar macro
/// with a subquery or a view answers at the pinned snapshot or is refused:
/// never today's rows under the pin's label, and nothing wrong is kept.
#[actix_web::test]
async fn a_pin_covers_every_table_the_read_reaches_or_is_refused() {
    let app = app().await;
    app.sql("CREATE TABLE pm AS SELECT 1 AS a").await;
    app.sql("CREATE MACRO pm_all() AS TABLE SELECT * FROM pm")
        .await;
    app.sql("CREATE MACRO pm_count() AS (SELECT count(*) FROM pm)")
        .await;
    app.sql("CREATE VIEW pv AS SELECT * FROM pm").await;
    let (_, pinned) = app
        .answer_and_snapshot(json!({"sql": "SELECT count(*) FROM pm"}))
        .await;
    app.sql("INSERT INTO pm VALUES (2), (3)").await;
    for sql in [
        "SELECT count(*) FROM pm_all()",
        "SELECT pm_count()",
        "SELECT count(*) FROM pv",
        "SELECT count(*) FROM pm, pm_all()",
    ] {
        for _ in 0..2 {
            let (status, cache, _, body) =
                ask(&app, json!({ "sql": sql, "snapshot": pinned })).await;
            if status == 200 {
                // Answered: then exactly as the lake was at the pin (one row).
                assert_eq!(body["rows"], json!([[1]]), "{sql}");
            } else {
                assert_eq!(
                    (status, error_code(&body)),
                    (422, "invalid_parameters"),
                    "{sql}: {body}"
                );
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("pinned snapshot"),
                    "{body}"
                );
                assert_ne!(cache, "hit");
            }
        }
    }
    // The table itself, pinned: the old answer.
    let (status, _, _, body) = ask(
        &app,
        json!({"sql": "SELECT count(*) FROM pm", "snapshot": pinned}),
    )
    .await;
    assert_eq!((status, &body["rows"]), (200, &json!([[1]])), "{body}");
    app.stop().await;
}

/// After a DELETE, a read that reaches `rowid` (by a USING join here) is
/// answered by the lake, whose row ids are not the copy's: the same answer
/// as the same read pinned (which never uses a copy), never a copy's.
#[actix_web::test]
async fn a_read_of_a_virtual_column_is_answered_by_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.enabled = false;
    config.hot_tables.after_reads = 1;
    let app = spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE hr AS SELECT * FROM (VALUES (1), (2), (3)) v(a)")
        .await;
    app.sql("DELETE FROM hr WHERE a = 1").await;
    // Read until the copy serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.engine().hot().stats().tables == 0 {
        app.sql("SELECT count(*) FROM hr").await;
        assert!(std::time::Instant::now() < deadline, "never copied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = app.engine().hot().stats().reads;
    for sql in [
        "SELECT hr.a FROM hr JOIN (SELECT 0 AS rowid UNION ALL SELECT 1) k USING (rowid) ORDER BY 1",
        "SELECT a FROM hr WHERE rowid < 2 ORDER BY 1",
        "SELECT a, filename IS NOT NULL FROM hr ORDER BY 1",
    ] {
        let (body, snapshot) = app.answer_and_snapshot(json!({ "sql": sql })).await;
        let (truth, _) = app
            .answer_and_snapshot(json!({ "sql": sql, "snapshot": snapshot }))
            .await;
        assert_eq!(body["rows"], truth["rows"], "{sql}");
    }
    assert_eq!(
        app.engine().hot().stats().reads,
        served,
        "a read of a virtual column was served from a copy"
    );
    // The control: a plain read of the same table is served from the copy.
    app.sql("SELECT a FROM hr ORDER BY 1").await;
    assert!(app.engine().hot().stats().reads > served);
    // current_query() shows the caller's text, never the rewrite.
    let body = app.sql("SELECT current_query() AS q FROM hr LIMIT 1").await;
    let text = body["rows"][0][0].as_str().unwrap();
    assert!(!text.contains("__ducklake_hot"), "{text}");
    app.stop().await;
}
