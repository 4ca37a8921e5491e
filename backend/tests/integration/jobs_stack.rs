//! The async jobs API in the production topology: a PostgreSQL catalog (our
//! `query_jobs` table beside it) and S3 (results spooled beside the lake's
//! data path), with several replicas: a job submitted to one is read and
//! cancelled through another, and a killed replica's jobs are taken over.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    binary::Replica,
    error_code,
    jobs::{assert_job_error, Api},
    servers::{with_postgres, with_s3, Postgres, PG_PASSWORD, S3, S3_ACCESS_KEY, S3_SECRET_KEY},
    spawn_with, test_config,
};
use serde_json::json;

/// Hours of work: it ends only when cancelled, never by itself during a test.
const SLOW_SQL: &str = "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3";

#[actix_web::test]
async fn replicas_share_jobs_results_and_cancellation() {
    let pg = Postgres::start();
    let s3 = S3::start("jobs-bucket");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut configs: Vec<ducklake_backend::config::Config> = Vec::new();
    for dir in &dirs {
        let mut config = test_config(dir.path());
        match configs.first() {
            None => with_postgres(&mut config, &pg, "jobs_db"),
            Some(first) => config.postgres = first.postgres.clone(),
        }
        with_s3(&mut config, &s3, "jobs-bucket", "lake");
        config.duckdb.connections = 2;
        // Below the 3 s a query holds a connection for in the check after
        // the cancel, so a query without a free connection gets 429.
        config.query.queue_timeout_ms = 1_000;
        config.jobs.heartbeat_ms = 200;
        config.jobs.stale_after_ms = 2_000;
        configs.push(config);
    }
    let a = spawn_with(configs[0].clone(), None).await;
    let b = spawn_with(configs[1].clone(), None).await;
    let (api_a, api_b) = (Api::new(&a.base), Api::new(&b.base));
    a.sql("CREATE TABLE events AS SELECT range AS id, 'e' || range AS kind, range / 3.0 AS v FROM range(50000)")
        .await;

    // Submitted to A, followed and read on B.
    let sql = "SELECT id, kind, v FROM events ORDER BY id";
    let id = api_a.submit(json!({"sql": sql, "format": "parquet"})).await;
    let job = api_b.wait_for(&id, "succeeded").await;
    assert_eq!(job["row_count"], 50000, "{job}");
    for format in ["json", "csv", "parquet", "arrow"] {
        api_b.assert_same_result(&id, sql, format).await;
    }
    let listing = s3.list("jobs-bucket");
    assert!(
        listing.contains(&format!("lake-jobs/{id}/result.arrows")),
        "{listing}"
    );
    assert!(
        !listing.contains(&format!("lake/{id}")),
        "never under the lake's data path"
    );
    assert_eq!(
        pg.psql_in(
            "jobs_db",
            &format!("SELECT status FROM ducklake_backend.query_jobs WHERE id = '{id}'")
        ),
        "succeeded"
    );

    // Running on A, cancelled through B: A stops the query.
    let slow = api_a.submit(json!({"sql": SLOW_SQL})).await;
    api_b.wait_for(&slow, "running").await;
    let (status, job) = api_b.delete(&slow).await;
    assert!(status == 200 || status == 202, "{status} {job}");
    let job = api_b.wait_for(&slow, "cancelled").await;
    assert_eq!(job["cancel_requested"], true);
    // Both of A's connections are free again: two queries that each hold
    // one until their timeout both run (504), where a connection still held
    // by SLOW_SQL (hours of work) would leave one of them waiting until the
    // queue timeout (429). The job is recorded cancelled while its query is
    // being interrupted, so the connection may come back a moment later:
    // try again until both run.
    let deadline = Instant::now() + Duration::from_secs(120);
    // Two texts: the same text asked at once would run once (the result
    // cache's single flight).
    let hold = json!({"sql": SLOW_SQL, "timeout_ms": 3000});
    let other = json!({"sql": format!("{SLOW_SQL} -- again"), "timeout_ms": 3000});
    loop {
        let (q1, q2) = futures_util::join!(a.post_query(hold.clone()), a.post_query(other.clone()));
        let codes = [q1.0, q2.0];
        if codes == [504, 504] {
            assert_eq!(error_code(&q1.1), "query_timeout", "{q1:?}");
            break;
        }
        assert!(
            codes.iter().all(|c| *c == 504 || *c == 429),
            "{q1:?} {q2:?}"
        );
        assert!(
            Instant::now() < deadline,
            "a connection of A stayed busy after the cancel: {q1:?} {q2:?}"
        );
    }

    // Deleted through A: gone from the record and from S3 for B too.
    let (status, _) = api_a.delete(&id).await;
    assert_eq!(status, 204);
    let (status, body) = api_b.job(&id).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    assert!(!s3.list("jobs-bucket").contains(&format!("lake-jobs/{id}/")));
    a.stop().await;
    b.stop().await;
}

/// A replica process killed with a running job: another replica fails it
/// once its heartbeat is stale; the finished job's result outlives both.
#[actix_web::test]
async fn a_killed_replicas_jobs_are_failed_and_results_survive() {
    let pg = Postgres::start();
    pg.psql("CREATE DATABASE jobs_restart");
    let s3 = S3::start("jobs-restart");
    let env = vec![
        ("DB_POSTGRES_HOST", "127.0.0.1".to_string()),
        ("DB_POSTGRES_PORT", pg.port.to_string()),
        ("DB_POSTGRES_DB", "jobs_restart".to_string()),
        ("DB_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("DB_POSTGRES_MIGRATE_ON_START", "true".to_string()),
        ("STORAGE_MINIO_ENDPOINT", format!("127.0.0.1:{}", s3.port)),
        ("STORAGE_MINIO_ACCESS_KEY", S3_ACCESS_KEY.to_string()),
        ("STORAGE_MINIO_SECRET_KEY", S3_SECRET_KEY.to_string()),
        ("STORAGE_DEFAULT_BUCKET", "jobs-restart".to_string()),
        ("JOBS_HEARTBEAT_MS", "200".to_string()),
        ("JOBS_STALE_AFTER_MS", "2000".to_string()),
        ("JOBS_SWEEP_INTERVAL_MS", "250".to_string()),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut first = Replica::start(dirs[0].path(), &env).await;
    let api = Api::new(&first.base);
    let sql = "SELECT range AS n, md5(range::VARCHAR) AS h FROM range(5000) ORDER BY n";
    let done = api.run(sql).await["id"].as_str().unwrap().to_string();
    let running = api.submit(json!({"sql": SLOW_SQL})).await;
    api.wait_for(&running, "running").await;
    first.kill();

    let second = Replica::start(dirs[1].path(), &env).await;
    let api = Api::new(&second.base);
    // stale_after is 2 s; the bound only catches a sweep that never comes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let (_, job) = api.job(&running).await;
        if job["status"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "never failed: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "failed", "{job}");
    assert_job_error(&job, "replica_lost", "stopped");
    let (_, job) = api.job(&done).await;
    assert_eq!(job["status"], "succeeded");
    for format in ["json", "csv", "parquet"] {
        api.assert_same_result(&done, sql, format).await;
    }
}
