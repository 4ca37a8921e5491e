//! Hot tables (`engine::hot`): in-memory copies of small lake tables read
//! often. Every answer served from a copy must be the lake's answer at the
//! snapshot the response names (a pinned read, which never uses a copy,
//! says what that is), a change to the table must end the copy, and what
//! a copy cannot answer (DuckLake's virtual columns) must read the lake.

use std::time::{Duration, Instant};

use crate::common;

use common::{error_code, sample, spawn_with, test_config, TestApp};
use ducklake_backend::{config::Config, engine::hot::HotStats};
use serde_json::{json, Value};

/// An app whose hot tables copy a table after `after_reads` reads, with
/// the result cache off (a kept answer would hide the reads), `adjust`
/// applied.
async fn start(after_reads: u32, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.cache.enabled = false;
    config.hot_tables.after_reads = after_reads;
    adjust(&mut config);
    spawn_with(config, Some(dir)).await
}

fn stats(app: &TestApp) -> HotStats {
    app.engine().hot().stats()
}

/// Reads `sql` until `done` holds for the hot tables' figures (the copies'
/// thread works beside the requests); panics after a bound only a hang
/// reaches.
async fn read_until(app: &TestApp, sql: &str, what: &str, done: impl Fn(&HotStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&stats(app)) {
        app.sql(sql).await;
        assert!(Instant::now() < deadline, "never: {what}; {:?}", stats(app));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A query's answer (its columns and rows) and the snapshot it names.
async fn answer(app: &TestApp, body: Value) -> (Value, i64) {
    let (body, snapshot) = app.answer_and_snapshot(body).await;
    (
        json!({"columns": body["columns"], "rows": body["rows"]}),
        snapshot,
    )
}

/// `body`'s answer, and the lake's own at the snapshot it names (a pinned
/// read never uses a copy).
async fn answer_and_truth(app: &TestApp, body: &Value) -> (Value, Value) {
    let (got, snapshot) = answer(app, body.clone()).await;
    let mut pinned = body.clone();
    pinned["snapshot"] = json!(snapshot);
    let (truth, _) = answer(app, pinned).await;
    (got, truth)
}

#[actix_web::test]
async fn a_hot_table_answers_as_the_lake_does_until_it_changes() {
    let app = start(2, |_| {}).await;
    app.sql(
        "CREATE TABLE t AS SELECT i AS id, 'name ' || i AS name, (i % 7)::DECIMAL(10,2) AS d, \
         TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS ts, [i, i + 1] AS l, \
         {'k': i} AS s FROM range(1000) r(i)",
    )
    .await;
    app.sql("CREATE TABLE u (id INT, w INT)").await;
    app.sql("INSERT INTO u VALUES (1, 10), (2, 20)").await;
    app.sql("CREATE VIEW v AS SELECT * FROM t WHERE id % 2 = 0")
        .await;
    read_until(&app, "SELECT count(*) FROM t", "t copied", |s| {
        s.tables == 1
    })
    .await;
    assert_eq!(stats(&app).builds, 1);

    // Each read answers what the lake has; those marked `true` read t from
    // its copy. A view, DuckLake's virtual columns (which the copy lacks,
    // or has with other values) and a column named with its schema read
    // the lake.
    let reads = [
        (
            json!({"sql": "SELECT * FROM t WHERE id = ?", "params": [42]}),
            true,
        ),
        (
            json!({"sql": "SELECT * FROM t WHERE id = $k", "params": {"k": 7}}),
            true,
        ),
        (
            json!({"sql": "SELECT count(*), sum(d), min(ts), max(l) FROM t"}),
            true,
        ),
        (
            json!({"sql": "SELECT t.id, t.name FROM T ORDER BY id DESC LIMIT 3"}),
            true,
        ),
        (
            json!({"sql": "SELECT x.id, x.s FROM lake.main.t AS x WHERE x.id < 3 ORDER BY 1"}),
            true,
        ),
        (
            json!({"sql": "WITH w AS (SELECT * FROM t WHERE id < 10) SELECT count(*) FROM w"}),
            true,
        ),
        (
            json!({"sql": "SELECT t.id, u.w FROM t JOIN u USING (id) ORDER BY 1"}),
            true,
        ),
        (
            json!({"sql": "SELECT id FROM t WHERE id IN (SELECT id FROM t WHERE id > 997) ORDER BY 1"}),
            true,
        ),
        (
            json!({"sql": "SELECT * FROM v WHERE id < 5 ORDER BY id"}),
            false,
        ),
        (
            json!({"sql": "SELECT rowid, id FROM t WHERE id IN (3, 500) ORDER BY id"}),
            false,
        ),
        (
            json!({"sql": "SELECT snapshot_id, file_row_number FROM t WHERE id = 9"}),
            false,
        ),
        (
            json!({"sql": "SELECT main.t.id FROM main.t WHERE id = 7"}),
            false,
        ),
    ];
    for (body, from_copy) in &reads {
        let before = stats(&app).reads;
        let (got, truth) = answer_and_truth(&app, body).await;
        assert_eq!(got, truth, "{body}");
        assert!(
            got["rows"].as_array().is_some_and(|rows| !rows.is_empty()),
            "{body}"
        );
        let served = stats(&app).reads - before;
        assert_eq!(served, u64::from(*from_copy), "{body}: reads from the copy");
    }
    // A CTE named like the table is the CTE.
    let (cte, _) = answer(
        &app,
        json!({"sql": "WITH t AS (SELECT 5 AS id) SELECT * FROM t"}),
    )
    .await;
    assert_eq!(cte["rows"], json!([[5]]));
    let (file, _) = answer(&app, json!({"sql": "SELECT filename FROM t WHERE id = 1"})).await;
    assert!(
        file["rows"][0][0].as_str().unwrap().ends_with(".parquet"),
        "{file}"
    );

    // The copy is the service's own: user SQL cannot name it.
    for sql in [
        "SELECT * FROM memory.main.__ducklake_hot_1",
        "SELECT count(*) FROM memory.__ducklake_hot_1",
    ] {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "forbidden_statement"),
            "{sql}: {body}"
        );
    }
    // Nor does a typo's answer point at it (DuckDB's hint names it).
    let (status, body) = app
        .post_query(json!({"sql": "SELECT * FROM memory.ducklake_hot_1"}))
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    assert!(!body.to_string().contains("__ducklake_hot"), "{body}");

    // A write ends the copy: the next read has the new row, from the lake.
    let count = json!({"sql": "SELECT count(*) FROM t"});
    app.sql("INSERT INTO t (id, name) VALUES (1000, 'new')")
        .await;
    let (got, truth) = answer_and_truth(&app, &count).await;
    assert_eq!(got, truth);
    assert_eq!(got["rows"], json!([[1001]]));
    assert_eq!(stats(&app).invalidations, 1);
    // A write to another table leaves it (after the next copy, every read
    // of t is served from it again).
    read_until(&app, "SELECT count(*) FROM t", "t copied again", |s| {
        s.tables == 1
    })
    .await;
    app.sql("INSERT INTO u VALUES (3, 30)").await;
    let before = stats(&app).reads;
    let (got, truth) = answer_and_truth(&app, &count).await;
    assert_eq!((got["rows"].clone(), got), (json!([[1001]]), truth));
    assert_eq!(stats(&app).reads, before + 1);
    // A schema change anywhere ends it too.
    app.sql("CREATE TABLE other (x INT)").await;
    let (got, truth) = answer_and_truth(&app, &count).await;
    assert_eq!(got, truth);
    assert_eq!(stats(&app).invalidations, 2);

    let metrics = app.get_text("/metrics").await;
    assert!(sample(&metrics, "ducklake_hot_table_reads_total") >= 8.0);
    assert_eq!(
        sample(&metrics, "ducklake_hot_table_invalidations_total"),
        2.0
    );
    let (_, report) = app.get_json("/metrics/performance").await;
    assert_eq!(report["hot_tables"]["invalidations"], 2);
    // A table of the same name in another schema is another table, with
    // a copy of its own once read often enough.
    app.sql("CREATE SCHEMA s").await;
    app.sql("CREATE TABLE s.t AS SELECT range AS id FROM range(5)")
        .await;
    let builds = stats(&app).builds;
    read_until(&app, "SELECT count(*) FROM s.t", "s.t copied", |s| {
        s.builds > builds
    })
    .await;
    for sql in ["SELECT count(*) FROM s.t", "SELECT count(*) FROM lake.s.t"] {
        let before = stats(&app).reads;
        let (got, truth) = answer_and_truth(&app, &json!({ "sql": sql })).await;
        assert_eq!((got["rows"].clone(), got), (json!([[5]]), truth), "{sql}");
        assert_eq!(
            stats(&app).reads,
            before + 1,
            "{sql} was not served from its copy"
        );
    }
    let (main_t, _) = answer(&app, json!({"sql": "SELECT count(*) FROM t"})).await;
    assert_eq!(main_t["rows"], json!([[1001]]));
    app.stop().await;
}

#[actix_web::test]
async fn tables_beyond_the_limits_are_not_kept_and_copies_can_be_off() {
    // One table fits, two do not: the least recently used copy goes.
    let app = start(1, |config| {
        config.hot_tables.max_bytes = Some(3 * 1024 * 1024);
        config.hot_tables.max_table_bytes = Some(3 * 1024 * 1024);
    })
    .await;
    for name in ["a", "b"] {
        app.sql(&format!(
            "CREATE TABLE {name} AS SELECT i AS id, i * 2 AS v FROM range(100000) r(i)"
        ))
        .await;
    }
    app.sql("CREATE TABLE big AS SELECT i AS id, i AS v, i AS w, i AS x FROM range(1000000) r(i)")
        .await;
    read_until(&app, "SELECT count(*) FROM a", "a copied", |s| {
        s.tables == 1
    })
    .await;
    let a = stats(&app);
    assert!(a.bytes > 0 && a.bytes <= a.max_bytes, "{a:?}");
    read_until(&app, "SELECT count(*) FROM b", "b copied", |s| {
        s.builds == 2
    })
    .await;
    let b = stats(&app);
    assert_eq!(b.tables, 1, "{b:?}");
    assert!(b.bytes <= b.max_bytes, "{b:?}");
    // The big table is never copied; its reads are the lake's.
    read_until(&app, "SELECT count(*) FROM big", "big refused", |s| {
        s.too_large == 1
    })
    .await;
    let reads = stats(&app).reads;
    let (got, truth) = answer_and_truth(&app, &json!({"sql": "SELECT sum(w) FROM big"})).await;
    assert_eq!(got, truth);
    assert_eq!(stats(&app).reads, reads);
    assert_eq!(stats(&app).builds, 2);
    app.stop().await;

    let off = start(1, |config| config.hot_tables.enabled = false).await;
    app_reads_lake_only(&off).await;
    off.stop().await;
}

async fn app_reads_lake_only(app: &TestApp) {
    app.sql("CREATE TABLE t AS SELECT 1 AS id").await;
    for _ in 0..5 {
        app.sql("SELECT * FROM t").await;
    }
    let off = stats(app);
    assert!(!off.enabled);
    assert_eq!((off.tables, off.builds, off.reads), (0, 0, 0));
}

/// A catalog that does not answer: each check of a copy fails.
struct Unanswered;

impl ducklake_backend::engine::hot::CatalogReads for Unanswered {
    fn changes(
        &self,
        _: i64,
        _: i64,
        _: i64,
    ) -> Result<
        Vec<ducklake_backend::engine::snapshots::SnapshotChanges>,
        ducklake_backend::error::Error,
    > {
        Err(ducklake_backend::error::Error::CatalogUnavailable(
            "test: no answer".into(),
        ))
    }

    fn table_id(
        &self,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<Option<i64>, ducklake_backend::error::Error> {
        Err(ducklake_backend::error::Error::CatalogUnavailable(
            "test: no answer".into(),
        ))
    }
}

/// A copy whose check cannot be made is not used: the read goes to the
/// lake and answers what the lake has.
#[actix_web::test]
async fn a_copy_that_cannot_be_checked_is_not_used() {
    let app = start(1, |_| {}).await;
    app.sql("CREATE TABLE t AS SELECT range AS id FROM range(100)")
        .await;
    app.sql("CREATE TABLE other (n INT)").await;
    read_until(&app, "SELECT count(*) FROM t", "t copied", |s| {
        s.tables == 1
    })
    .await;
    let count = json!({"sql": "SELECT count(*), sum(id) FROM t"});
    let before = stats(&app).reads;
    let (got, truth) = answer_and_truth(&app, &count).await;
    assert_eq!(got, truth);
    assert_eq!(
        stats(&app).reads,
        before + 1,
        "the copy serves while the lake holds still"
    );
    app.engine()
        .hot()
        .read_catalog_with(std::sync::Arc::new(Unanswered));
    // The lake moves (another table): the copy needs its check, which fails.
    app.sql("INSERT INTO other VALUES (1)").await;
    let (got, truth) = answer_and_truth(&app, &count).await;
    assert_eq!(got, truth);
    assert_eq!(got["rows"], json!([[100, 4950]]));
    assert_eq!(stats(&app).reads, before + 1, "an unchecked copy served");
    app.stop().await;
}
