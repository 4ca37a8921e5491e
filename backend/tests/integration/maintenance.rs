//! Lake maintenance on the embedded default: compaction keeps results and
//! cuts files, expiry ends time travel, cleanup deletes what nobody needs,
//! dry runs change nothing, and the periodic round does it by itself (the
//! one-replica-at-a-time lock on PostgreSQL is in stack.rs).

use crate::common;

use std::time::{Duration, Instant, SystemTime};

use common::{error_code, spawn_app, spawn_with, test_config, TestApp};
use serde_json::{json, Value};

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Ten inserts of a few hundred rows: ten small files.
async fn small_files(app: &TestApp) {
    app.sql("CREATE TABLE t (id INTEGER, v VARCHAR)").await;
    for batch in 0..10 {
        app.sql(&format!(
            "INSERT INTO t SELECT i, 'v' || i FROM range({}, {}) r(i)",
            batch * 300,
            batch * 300 + 300
        ))
        .await;
    }
}

async fn fingerprint(app: &TestApp) -> Value {
    app.sql("SELECT count(*), sum(hash(id, v)) FROM t").await["rows"].clone()
}

#[actix_web::test]
async fn compaction_expiry_and_cleanup_report_and_change_the_lake() {
    let app = spawn_app().await;
    small_files(&app).await;
    let results = fingerprint(&app).await;
    let (_, usage) = app.get_json("/api/v1/maintenance/usage").await;
    assert_eq!(usage["live_data_files"], 10, "{usage}");
    let storage_files = usage["storage_files"].as_u64().unwrap();
    assert!(storage_files >= 10, "{usage}");

    let (status, dry) = post(
        &app,
        "/api/v1/maintenance/compact",
        json!({"dry_run": true}),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        dry["changes"],
        json!([{"schema": "main", "table": "t", "files_processed": 10, "files_created": 0}])
    );
    assert_eq!(dry["before"], dry["after"]);
    assert_eq!(
        app.get_json("/api/v1/maintenance/usage").await.1,
        usage,
        "a dry run changes nothing"
    );

    let (status, done) = post(
        &app,
        "/api/v1/maintenance/compact",
        json!({"schema": "main", "table": "t"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changes"][0]["files_processed"], 10);
    assert_eq!(done["changes"][0]["files_created"], 1);
    assert_eq!(done["before"]["live_data_files"], 10);
    assert_eq!(done["after"]["live_data_files"], 1);
    assert_eq!(
        fingerprint(&app).await,
        results,
        "compaction keeps the results"
    );
    let compacted_at = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"]
        .as_i64()
        .unwrap();

    // The merged-away files wait for cleanup (DuckLake keeps each row's
    // snapshot range in the merged file, so time travel does not need them).
    let (_, dry) = post(
        &app,
        "/api/v1/maintenance/cleanup",
        json!({"dry_run": true}),
    )
    .await;
    let doomed = dry["changes"].as_array().unwrap().len();
    assert_eq!(doomed, 10, "{dry}");
    assert_eq!(dry["before"], dry["after"]);
    assert_eq!(dry["before"]["scheduled_for_deletion"], 10);
    let (status, done) = post(&app, "/api/v1/maintenance/cleanup", json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changes"].as_array().unwrap().len(), doomed);
    let before = done["before"]["storage_files"].as_u64().unwrap();
    let after = done["after"]["storage_files"].as_u64().unwrap();
    assert_eq!(before - after, doomed as u64, "{done}");
    assert!(done["after"]["storage_bytes"].as_u64() < done["before"]["storage_bytes"].as_u64());
    assert_eq!(done["after"]["scheduled_for_deletion"], 0);
    assert_eq!(
        fingerprint(&app).await,
        results,
        "cleanup keeps the results"
    );

    // Expiry ends time travel to the snapshots it removes.
    let (status, dry) = post(
        &app,
        "/api/v1/maintenance/expire",
        json!({"before_snapshot": compacted_at, "dry_run": true}),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    let would: Vec<i64> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["snapshot"].as_i64().unwrap())
        .collect();
    assert_eq!(would, (0..compacted_at).collect::<Vec<_>>());
    let (status, _) = app
        .post_query(json!({"sql": "SELECT count(*) FROM t", "snapshot": compacted_at - 1}))
        .await;
    assert_eq!(status, 200, "the dry run expired nothing");
    let (status, done) = post(
        &app,
        "/api/v1/maintenance/expire",
        json!({"before_snapshot": compacted_at}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changes"].as_array().unwrap().len(), would.len());
    assert_eq!(
        done["after"]["snapshots"].as_i64().unwrap(),
        done["before"]["snapshots"].as_i64().unwrap() - would.len() as i64
    );
    let (status, body) = app
        .post_query(json!({"sql": "SELECT count(*) FROM t", "snapshot": compacted_at - 1}))
        .await;
    assert_eq!(
        status, 422,
        "time travel to an expired snapshot ends: {body}"
    );
    assert_eq!(fingerprint(&app).await, results);

    // Orphans: an old file nothing references goes, a young one stays.
    let dir = app.data_dir.join("lake").join("main").join("t");
    let old = dir.join("left-by-a-failed-write.parquet");
    let young = dir.join("being-written.parquet");
    std::fs::write(&old, b"junk").unwrap();
    std::fs::write(&young, b"junk").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let (status, done) = post(
        &app,
        "/api/v1/maintenance/cleanup",
        json!({"orphans": true, "orphans_older_than_secs": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let paths: Vec<&str> = done["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with("left-by-a-failed-write.parquet"));
    assert!(!old.exists() && young.exists());
    assert_eq!(fingerprint(&app).await, results);

    for (path, body, status) in [
        ("/api/v1/maintenance/expire", json!({}), 422),
        (
            "/api/v1/maintenance/expire",
            json!({"older_than_secs": 1, "before_snapshot": 1}),
            422,
        ),
        (
            "/api/v1/maintenance/compact",
            json!({"schema": "main"}),
            422,
        ),
        (
            "/api/v1/maintenance/compact",
            json!({"schema": "main", "table": "nope"}),
            404,
        ),
        (
            "/api/v1/maintenance/cleanup",
            json!({"older_than_secs": u64::MAX}),
            422,
        ),
    ] {
        let (got, answer) = post(&app, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(!error_code(&answer).is_empty());
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_periodic_round_compacts_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.maintenance.enabled = true;
    config.maintenance.interval_secs = 1;
    config.maintenance.expire_older_than_secs = 0;
    let app = spawn_with(config, Some(dir)).await;
    small_files(&app).await;
    let results = fingerprint(&app).await;
    // Rounds come every second; the bound only catches one that never does.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let live = app.get_json("/api/v1/maintenance/usage").await.1["live_data_files"]
            .as_i64()
            .unwrap();
        if live == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no round merged the small files: {live} live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fingerprint(&app).await, results);
    // The round counts itself once it is over (cleanup comes after the
    // merge); its series appears with the first ok round.
    loop {
        let metrics = app.get_text("/metrics").await;
        if sample_or_zero(
            &metrics,
            "ducklake_maintenance_rounds_total{outcome=\"ok\"}",
        ) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the round that merged never counted itself"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// One Prometheus sample, or 0 when its series is absent: only for labelled
/// counters whose series appears with its first event.
fn sample_or_zero(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
