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
    let (status, cache, etag, _, body) = read(app, &body, false).await;
    (status, cache, etag, body)
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
    let (_, second, _, _) = ask(&app, sql.clone()).await;
    assert_eq!(second, "hit");
    // Cache-Control: no-cache reads the lake itself.
    for directive in ["no-cache", "max-age=0, no-store"] {
        let res = app
            .client
            .post(app.url("/api/v1/query"))
            .header("cache-control", directive)
            .json(&sql)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-cache"], "bypass", "{directive}");
    }
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
    // The copies exist, and no listing a caller can read shows them.
    assert!(app.engine().hot().stats().tables > 0);
    for sql in [
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%ducklake_hot%'",
        "SELECT count(*) FROM duckdb_columns() c WHERE c.table_name LIKE '%ducklake_hot%'",
        "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '%ducklake_hot%'",
        "SELECT count(*) FROM information_schema.columns WHERE table_name LIKE '%ducklake_hot%'",
        "SELECT count(*) FROM (SHOW ALL TABLES) WHERE name LIKE '%ducklake_hot%'",
    ] {
        let body = app.sql(sql).await;
        assert_eq!(body["rows"], json!([[0]]), "{sql}: {body}");
    }
    let body = app
        .sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hr'")
        .await;
    assert_eq!(body["rows"], json!([[1]]), "{body}");
    // current_query() shows the caller's text, never the rewrite.
    let body = app.sql("SELECT current_query() AS q FROM hr LIMIT 1").await;
    let text = body["rows"][0][0].as_str().unwrap();
    assert!(!text.contains("__ducklake_hot"), "{text}");
    app.stop().await;
}

/// Reads whose answer depends only on the lake at its snapshot.
const STEADY_READS: &[&str] = &[
    "SELECT count(*), sum(id) FROM a",
    "SELECT * FROM a ORDER BY ALL",
    "SELECT * FROM va ORDER BY ALL",
    "SELECT * FROM ma() ORDER BY ALL",
    "SELECT mb()",
    "SELECT a.id FROM a JOIN (SELECT i AS rowid FROM range(6) r(i)) k USING (rowid) ORDER BY ALL",
    "SELECT id, rowid FROM a ORDER BY ALL",
    "SELECT a.id, b.w FROM a JOIN b USING (id) ORDER BY ALL",
    "SELECT id FROM a WHERE id <= (SELECT count(*) FROM b) ORDER BY ALL",
    "SELECT count(*) FROM a AT (VERSION => {first})",
    "SELECT count(*) FROM a NATURAL JOIN (SELECT 1 AS id, i AS rowid FROM range(3) r(i)) k",
];

/// Reads whose answer varies between runs: never kept, no ETag.
const VARYING_READS: &[&str] = &[
    "SELECT count(*), max(t) FROM a, unnest([now()]) u(t)",
    "SELECT count(*) FROM a AT (TIMESTAMP => now())",
    "SELECT id, random() < 2 FROM a ORDER BY ALL",
    "SELECT current_query(), count(*) FROM a",
    "SELECT * FROM range(CAST(random() * 3 AS BIGINT))",
];

/// Status, `X-Cache`, ETag, snapshot and body of one POSTed query, fresh
/// (`Cache-Control: no-cache`: neither a kept answer nor a copy) or not.
async fn read(
    app: &TestApp,
    body: &Value,
    fresh: bool,
) -> (u16, String, Option<String>, Option<i64>, Value) {
    let mut req = app.client.post(app.url("/api/v1/query")).json(body);
    if fresh {
        req = req.header("cache-control", "no-cache");
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let cache = header("x-cache").unwrap_or_default();
    let etag = header("etag");
    let snapshot = header("x-ducklake-snapshot").and_then(|s| s.parse().ok());
    let status = res.status().as_u16();
    (status, cache, etag, snapshot, res.json().await.unwrap())
}

/// A seeded run of writes, DDL and reads (views, macros, joins by virtual
/// columns, time travel by version and by time, pins, varying functions in
/// every position) with the result cache and hot copies on: every answer of
/// a steady read equals a fresh read of the lake at the same snapshot, and
/// a varying read is never kept. `EXACT_STEPS` sets the length,
/// `EXACT_SEED` replays a run.
#[actix_web::test]
async fn every_kept_or_copied_answer_equals_a_fresh_read_at_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.hot_tables.after_reads = 1;
    let app = spawn_with(config, Some(dir)).await;
    for sql in [
        "CREATE TABLE a (id INT, v VARCHAR)",
        "CREATE TABLE b (id INT, w INT)",
        "INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')",
        "INSERT INTO b VALUES (1, 10), (2, 20)",
        "CREATE VIEW va AS SELECT * FROM a WHERE id % 2 = 0",
        "CREATE MACRO ma() AS TABLE SELECT * FROM a",
        "CREATE MACRO mb() AS (SELECT count(*) FROM b)",
    ] {
        app.sql(sql).await;
    }
    let (_, first) = app
        .answer_and_snapshot(json!({"sql": "SELECT count(*) FROM a"}))
        .await;
    let mut snapshots = vec![first];
    let mut steps = common::Steps::seeded("EXACT_SEED");
    let seed = steps.0;
    eprintln!("exact: EXACT_SEED={seed}");
    let count: usize = std::env::var("EXACT_STEPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let (mut hits, mut compared) = (0, 0);
    for step in 0..count {
        let n = 10 + step as i64;
        let k = 1 + steps.below(6) as i64;
        match steps.below(10) {
            0..=2 => {
                let writes = [
                    format!("INSERT INTO a VALUES ({n}, 'v{n}')"),
                    format!("DELETE FROM a WHERE id = {k}"),
                    format!("UPDATE b SET w = w + 1 WHERE id = {k}"),
                    format!("INSERT INTO b VALUES ({k}, {n})"),
                    format!("INSERT INTO a VALUES ({k}, 'again')"),
                ];
                let (_, snapshot) = app
                    .answer_and_snapshot(json!({ "sql": writes[steps.below(writes.len())] }))
                    .await;
                snapshots.push(snapshot);
            }
            3 => {
                let ddl = [
                    format!("CREATE OR REPLACE VIEW va AS SELECT * FROM a WHERE id % {k} = 0"),
                    format!("CREATE OR REPLACE MACRO mb() AS (SELECT count(*) + {k} FROM b)"),
                ];
                app.sql(&ddl[steps.below(ddl.len())]).await;
            }
            _ => {
                let varying = steps.below(4) == 0;
                let sql = if varying {
                    VARYING_READS[steps.below(VARYING_READS.len())].to_string()
                } else {
                    STEADY_READS[steps.below(STEADY_READS.len())]
                        .replace("{first}", &first.to_string())
                };
                let mut body = json!({ "sql": sql });
                if steps.below(4) == 0 {
                    body["snapshot"] = json!(snapshots[steps.below(snapshots.len())]);
                }
                let context = format!("seed {seed} step {step}: {body}");
                let (status, cache, etag, snapshot, answer) = read(&app, &body, false).await;
                assert!(status < 500, "{context}: {answer}");
                if varying {
                    assert_ne!(cache, "hit", "{context}");
                    assert_eq!(etag, None, "{context}");
                    continue;
                }
                hits += usize::from(cache == "hit");
                let (truth_status, _, _, truth_snapshot, truth) = read(&app, &body, true).await;
                assert_eq!(status, truth_status, "{context}: {answer} vs {truth}");
                if status == 200 {
                    assert_eq!(snapshot, truth_snapshot, "{context}");
                    assert_eq!(answer["rows"], truth["rows"], "{context} ({cache})");
                    compared += 1;
                    // Asked again: now likely kept, or served from a copy.
                    let (_, cache, _, again_snapshot, again) = read(&app, &body, false).await;
                    hits += usize::from(cache == "hit");
                    assert_eq!(again_snapshot, truth_snapshot, "{context}");
                    assert_eq!(again["rows"], truth["rows"], "{context}, again ({cache})");
                }
            }
        }
    }
    eprintln!("exact: {count} steps, {compared} answers compared, {hits} of them kept");
    assert!(compared > 0 && hits > 0, "compared {compared}, hits {hits}");
    assert!(app.engine().hot().stats().reads > 0, "no read used a copy");
    app.stop().await;
}
