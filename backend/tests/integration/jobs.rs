//! The async jobs API on the embedded default (local catalog, local data,
//! results spooled to `data_dir/jobs`): every endpoint, results equal to the
//! synchronous query's, pagination, cancellation, limits, ownership,
//! retention, metrics, and a replica killed and restarted.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    binary::Replica,
    error_code,
    jobs::{assert_cancelled, assert_job_error, Api},
    sample, spawn_with, test_config, TestApp,
};
use ducklake_backend::config::{Config, Secret};
use reqwest::Method;
use serde_json::{json, Value};

/// A query DuckDB cannot answer from cardinalities: hours of work, so it
/// ends only when cancelled, interrupted or timed out, never by itself
/// during a test however fast the machine.
pub const SLOW_SQL: &str = "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3";

/// Polls a condition that must come true; panics after a bound that only a
/// hang reaches.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = test_config(dir);
    config.query.max_rows = 10_000_000;
    config.jobs.heartbeat_ms = 200;
    config.jobs.stale_after_ms = 2_000;
    config.jobs.sweep_interval_ms = 250;
    config
}

/// An app on a data dir of its own, with `adjust` applied to its configuration.
async fn start(adjust: impl FnOnce(&mut Config)) -> (TestApp, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    adjust(&mut config);
    let app = spawn_with(config, None).await;
    let api = Api::new(&app.base);
    (app, api, dir)
}

/// Columns of most types: what the JSON mapping must keep exact on the way
/// through the spool (HUGEINT vs DECIMAL, JSON vs VARCHAR ...).
const TYPED_SQL: &str = "SELECT range AS i, range::HUGEINT * 1000000000000000000000 AS huge, \
    (range / 7)::DECIMAL(18,3) AS dec, 'x' || range AS s, \
    '{\"a\": 1}'::JSON AS j, uuid() IS NOT NULL AS b, \
    TIMESTAMPTZ '2024-01-02 03:04:05+00' + to_seconds(range) AS ts, DATE '2024-02-29' AS d, \
    INTERVAL 1 DAY * range AS iv, [range, NULL] AS l, {'k': range, 'v': 's'} AS st, \
    MAP {'one': range} AS m, '\\xAA'::BLOB AS bl, NULL AS n, range / 3.0 AS f \
    FROM range(3000) ORDER BY i";

/// A TIME WITH TIME ZONE keeps its offset through the spool (Arrow, whose
/// export by DuckDB drops it): the job's result reads as the query's in
/// every text format, nested values too, and its Arrow carries the text.
#[actix_web::test]
async fn a_time_with_time_zone_keeps_its_offset_in_a_jobs_result() {
    let (app, api, _dir) = start(|_| {}).await;
    let sql = "SELECT TIMETZ '08:30:00-03:00' AS t, {'at': TIMETZ '23:59:59.5+05:30'} AS s, \
               [TIMETZ '00:00:00+00'] AS l";
    let id = api.submit(json!({ "sql": sql })).await;
    api.wait_for(&id, "succeeded").await;
    for format in ["json", "json_objects", "ndjson", "csv", "tsv"] {
        api.assert_same_result(&id, sql, format).await;
    }
    let (status, _, body) = api.result(&id, Some("json")).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["rows"],
        json!([["08:30:00-03", {"at": "23:59:59.5+05:30"}, ["00:00:00+00"]]]),
        "{body}"
    );
    assert_eq!(body["columns"][0]["type"], "TIME WITH TIME ZONE", "{body}");
    let (status, _, arrow) = api.result(&id, Some("arrow")).await;
    assert_eq!(status, 200);
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let t = duckdb::arrow::array::cast::as_string_array(batches[0].column(0));
    assert_eq!(t.value(0), "08:30:00-03");
    app.stop().await;
}

#[actix_web::test]
async fn a_jobs_result_equals_the_synchronous_querys_in_every_format() {
    let (app, api, dir) = start(|_| {}).await;
    app.sql("CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(300000)")
        .await;

    let id = api.submit(json!({"sql": TYPED_SQL, "format": "csv"})).await;
    let job = api.wait_for(&id, "succeeded").await;
    assert_eq!(job["row_count"], 3000, "{job}");
    assert_eq!(job["format"], "csv");
    assert_eq!(job["owner"], "anonymous");
    assert!(job["result_bytes"].as_i64().unwrap() > 0, "{job}");
    assert!(job["elapsed_ms"].as_f64().unwrap() > 0.0, "{job}");
    assert!(
        job["started_at"].is_string()
            && job["finished_at"].is_string()
            && job["expires_at"].is_string()
    );
    assert_eq!(job["result_url"], format!("/api/v1/jobs/{id}/result"));
    assert!(job["error"].is_null(), "{job}");
    for format in ["json", "json_objects", "ndjson", "csv", "tsv", "arrow"] {
        api.assert_same_result(&id, TYPED_SQL, format).await;
    }
    // Parquet has no INTERVAL: the job's result refuses it as the query does.
    let (status, _, body) = api.result(&id, Some("parquet")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (422, "invalid_parameters"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interval"),
        "{body}"
    );
    assert_eq!(api.query_bytes_status(TYPED_SQL, "parquet").await, 422);
    // The submitted format is the default; the result can be read again.
    let (status, content_type, first) = api.result(&id, None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8; header=present")
    );
    let (_, _, again) = api.result(&id, None).await;
    assert_eq!(first, again);
    assert!(dir
        .path()
        .join("jobs")
        .join(&id)
        .join("result.arrows")
        .is_file());

    // A result far beyond one streaming window, and Parquet.
    let big = "SELECT id, h, id / 7 AS q FROM big ORDER BY id";
    let id = api.run(big).await["id"].as_str().unwrap().to_string();
    for format in ["json", "csv", "parquet"] {
        api.assert_same_result(&id, big, format).await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_listing_pages_newest_first_and_filters_by_status() {
    let (app, api, _dir) = start(|_| {}).await;
    let mut submitted = Vec::new();
    for n in 0..5 {
        submitted.push(
            api.run(&format!("SELECT {n} AS n")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let bad = api
        .submit(json!({"sql": "SELECT * FROM no_such_table"}))
        .await;
    let failed = api.wait_for(&bad, "failed").await;
    assert_job_error(&failed, "not_found", "no_such_table");
    submitted.push(bad.clone());

    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs?limit=2".to_string();
    loop {
        let (status, page) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    submitted.reverse();
    assert_eq!(seen, submitted, "every job once, newest first");

    let (_, page) = api
        .call(Method::GET, "/api/v1/jobs?status=failed", None)
        .await;
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bad.as_str()]);
    let (_, page) = api
        .call(Method::GET, "/api/v1/jobs?status=succeeded&limit=10", None)
        .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);
    for bad_query in ["status=done", "limit=0", "cursor=bm9wZQ"] {
        let (status, body) = api
            .call(Method::GET, &format!("/api/v1/jobs?{bad_query}"), None)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (422, "invalid_parameters"),
            "{bad_query}"
        );
    }
    let (status, body) = api.call(Method::GET, "/api/v1/jobs/not-a-uuid", None).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api.job(&uuid_like()).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // Every endpoint is in the OpenAPI document.
    let (_, doc) = app.get_json("/openapi.json").await;
    for (path, method, operation) in [
        ("/api/v1/jobs", "post", "submit_job"),
        ("/api/v1/jobs", "get", "list_jobs"),
        ("/api/v1/jobs/{id}", "get", "get_job"),
        ("/api/v1/jobs/{id}", "delete", "cancel_job"),
        ("/api/v1/jobs/{id}/result", "get", "get_job_result"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["operationId"], operation,
            "{method} {path}"
        );
    }
    // Job counts by status, for Prometheus.
    let metrics = app.get_text("/metrics").await;
    assert_eq!(
        sample(&metrics, "ducklake_jobs{status=\"succeeded\"}"),
        5.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "ducklake_jobs{status=\"failed\"}"), 1.0);
    assert!(metrics.contains("ducklake_jobs{status=\"queued\"} 0"));
    app.stop().await;
}

fn uuid_like() -> String {
    "0fc5ed6c-2b5d-4d8e-9c2a-5b4e1e6f7a8b".into()
}

#[actix_web::test]
async fn cancelling_a_running_job_stops_its_query() {
    let (app, api, dir) = start(|c| {
        // One connection: the job holds it while it runs.
        c.duckdb.connections = 1;
        c.query.queue_timeout_ms = 1_000;
    })
    .await;
    let id = api.submit(json!({"sql": SLOW_SQL})).await;
    let running = api.wait_for(&id, "running").await;
    assert!(running["started_at"].is_string(), "{running}");
    // A job is recorded running just before its query takes the connection:
    // until it has, a query may still get in; from then on none does.
    eventually("the job holds the only connection", || async {
        let (status, body) = app.post_query(json!({"sql": "SELECT 1"})).await;
        match (status, error_code(&body)) {
            (429, "too_many_requests") => true,
            (200, _) => false,
            other => panic!("{other:?}: {body}"),
        }
    })
    .await;
    let (status, body) = api.result(&id, Some("json")).await.into_json();
    assert_eq!((status, error_code(&body)), (409, "result_unavailable"));

    let job = api.cancel(&id).await;
    assert_cancelled(&job);
    assert!(job["finished_at"].is_string());
    // DuckDB stopped: the connection is free again. Left running, SLOW_SQL
    // would hold it for hours and every query would keep getting 429.
    eventually("the cancelled job's connection is free", || async {
        let (status, body) = app.post_query(json!({"sql": "SELECT 42 AS x"})).await;
        match status {
            200 => {
                assert_eq!(body["rows"], json!([[42]]), "{body}");
                true
            }
            429 => false,
            _ => panic!("{status}: {body}"),
        }
    })
    .await;
    assert!(!dir
        .path()
        .join("jobs")
        .join(&id)
        .join("result.arrows")
        .exists());
    app.stop().await;
}

trait IntoJson {
    fn into_json(self) -> (u16, Value);
}

impl IntoJson for (u16, String, Vec<u8>) {
    fn into_json(self) -> (u16, Value) {
        (
            self.0,
            serde_json::from_slice(&self.2).unwrap_or(Value::Null),
        )
    }
}

#[actix_web::test]
async fn a_finished_job_is_deleted_with_its_result() {
    let (app, api, dir) = start(|_| {}).await;
    let id = api.run("SELECT range FROM range(1000)").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = dir.path().join("jobs").join(&id).join("result.arrows");
    assert!(file.is_file());
    let (status, body) = api.delete(&id).await;
    assert_eq!(status, 204, "{body}");
    assert!(!file.exists(), "the result is deleted with the job");
    let (status, _) = api.job(&id).await;
    assert_eq!(status, 404);
    let (status, _, _) = api.result(&id, None).await;
    assert_eq!(status, 404);
    let (status, _) = api.delete(&id).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[actix_web::test]
async fn a_full_queue_answers_429_and_a_queued_job_cancels_at_once() {
    let (app, api, _dir) = start(|c| {
        c.jobs.max_concurrent = 1;
        c.jobs.max_queued = 1;
    })
    .await;
    let running = api.submit(json!({"sql": SLOW_SQL})).await;
    api.wait_for(&running, "running").await;
    let queued = api.submit(json!({"sql": "SELECT 1"})).await;
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .json(&json!({"sql": "SELECT 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(error_code(&res.json().await.unwrap()), "too_many_requests");
    let (status, job) = api.job(&queued).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("queued")));

    // A queued job is cancelled by DELETE itself, whatever the runner does.
    let (status, job) = api.delete(&queued).await;
    assert_eq!(status, 200, "{job}");
    assert_cancelled(&job);
    assert!(job["started_at"].is_null(), "it never ran: {job}");
    assert_cancelled(&api.cancel(&running).await);
    // Room again.
    api.run("SELECT 3").await;
    app.stop().await;
}

#[actix_web::test]
async fn limits_fail_a_job_with_a_clear_code() {
    let (app, api, dir) = start(|c| {
        c.jobs.max_result_bytes = 200_000;
        c.jobs.timeout_ms = 1_000;
    })
    .await;
    let id = api
        .submit(json!({"sql": "SELECT range, repeat('x', 100) FROM range(100000)"}))
        .await;
    let job = api.wait_for(&id, "failed").await;
    assert_job_error(&job, "result_too_large", "jobs.max_result_bytes");
    assert!(!dir
        .path()
        .join("jobs")
        .join(&id)
        .join("result.arrows")
        .exists());
    let id = api.submit(json!({"sql": SLOW_SQL})).await;
    let job = api.wait_for(&id, "failed").await;
    assert_eq!(job["error"]["code"], "query_timeout", "{job}");
    // Bad submissions never become jobs.
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({"sql": "SELECT 1", "format": "xml"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (406, "unsupported_format"));
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({"sql": "SELECT 1", "params": 5})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_parameters"));
    let (_, page) = api.call(Method::GET, "/api/v1/jobs", None).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[actix_web::test]
async fn expired_jobs_are_swept_with_their_results() {
    let (app, api, dir) = start(|c| {
        c.jobs.retention_secs = 1;
    })
    .await;
    let id = api.run("SELECT 1 AS one").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = dir.path().join("jobs").join(&id).join("result.arrows");
    assert!(file.is_file());
    let deadline = Instant::now() + Duration::from_secs(120);
    while api.job(&id).await.0 == 200 {
        assert!(Instant::now() < deadline, "the job was never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!file.exists(), "its result went with it");
    app.stop().await;
}

const BOOTSTRAP: &str = "bootstrap-admin-key-0123456789abcdef";

#[actix_web::test]
async fn with_authentication_a_key_sees_only_its_owners_jobs() {
    let (app, _, _dir) = start(|c| {
        c.auth.enabled = true;
        c.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    })
    .await;
    let admin = Api::new(&app.base).with_key(BOOTSTRAP);
    let mut keys = Vec::new();
    for owner in ["ana", "bo"] {
        let (status, key) = admin
            .call(
                Method::POST,
                "/api/v1/keys",
                Some(json!({"owner": owner, "role": "read"})),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        keys.push(admin.with_key(key["key"].as_str().unwrap()));
    }
    let (ana, bo) = (&keys[0], &keys[1]);
    let (status, _) = Api::new(&app.base)
        .call(Method::GET, "/api/v1/jobs", None)
        .await;
    assert_eq!(status, 401);

    let id = ana.run("SELECT 'mine' AS whose").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, job) = ana.job(&id).await;
    assert_eq!(job["owner"], "ana");
    for (status, what) in [
        (bo.job(&id).await.0, "get"),
        (bo.result(&id, None).await.0, "result"),
        (bo.delete(&id).await.0, "delete"),
    ] {
        assert_eq!(status, 404, "another owner's job is invisible: {what}");
    }
    let (_, page) = bo.call(Method::GET, "/api/v1/jobs", None).await;
    assert_eq!(page["jobs"], json!([]));
    let (_, page) = admin.call(Method::GET, "/api/v1/jobs", None).await;
    assert_eq!(
        page["jobs"].as_array().unwrap().len(),
        1,
        "an admin sees every job"
    );
    let (status, _, body) = ana.result(&id, Some("json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["rows"],
        json!([["mine"]])
    );

    // The job runs with its submitter's role: a read key cannot write through one.
    let id = bo.submit(json!({"sql": "CREATE TABLE t (x INT)"})).await;
    let job = bo.wait_for(&id, "failed").await;
    assert_eq!(job["error"]["code"], "insufficient_role", "{job}");
    app.stop().await;
}

/// A replica killed with jobs in hand: after the restart, the finished job
/// and its result are still there, and the running one is failed with the reason.
#[actix_web::test]
async fn a_job_survives_a_restart_and_a_running_one_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Replica::start(dir.path(), &[]).await;
    let api = Api::new(&first.base);
    let done = api.run(TYPED_SQL).await["id"].as_str().unwrap().to_string();
    let (_, _, before) = api.result(&done, Some("json")).await;
    let running = api.submit(json!({"sql": SLOW_SQL})).await;
    api.wait_for(&running, "running").await;
    first.kill();

    let second = Replica::start(dir.path(), &[]).await;
    let api = Api::new(&second.base);
    let (status, job) = api.job(&done).await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("succeeded")),
        "{job}"
    );
    let (status, _, after) = api.result(&done, Some("json")).await;
    assert_eq!(status, 200);
    assert_eq!(before, after, "the same result after the restart");
    api.assert_same_result(&done, TYPED_SQL, "csv").await;
    let (_, job) = api.job(&running).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_job_error(&job, "replica_lost", "restarted");
}

/// While a job scans the lake, its record shows DuckDB's own progress
/// estimate: within [0, 100], never backwards, and strictly between the two
/// at some point of a query that only ends when cancelled (so no machine is
/// fast or slow enough to skip from nothing to done). A job that succeeds
/// shows 100.
#[actix_web::test]
async fn a_running_job_reports_duckdbs_progress() {
    let (app, api, _dir) = start(|_| {}).await;
    app.sql("CREATE TABLE big AS SELECT range AS a FROM range(2000000)")
        .await;
    app.sql("CREATE TABLE small AS SELECT range AS b FROM range(100000)")
        .await;
    // 2e11 pairs through a nested-loop join that no statistics can prune:
    // minutes to hours of work. Once `small` is built, DuckDB's estimate is
    // its share of the rows (about 5 %), until `big` has been scanned.
    let id = api
        .submit(json!({"sql": "SELECT count(*) FROM big, small WHERE hash(a, b) = 0"}))
        .await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = api.job(&id).await;
        assert_eq!(status, 200, "{job}");
        assert!(
            job["status"] == "running" || job["status"] == "queued",
            "{job}"
        );
        if let Some(p) = job["progress_percent"].as_f64() {
            assert!((0.0..=100.0).contains(&p), "{job}");
            seen.push(p);
            if p > 0.0 && p < 100.0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no progress strictly between 0 and 100: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more readings while it keeps running, for the order.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, job) = api.job(&id).await;
        assert_eq!(job["status"], "running", "{job}");
        if let Some(p) = job["progress_percent"].as_f64() {
            seen.push(p);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "never backwards: {seen:?}"
    );
    assert_cancelled(&api.cancel(&id).await);

    let done = api.run("SELECT count(*) FROM big").await;
    assert_eq!(done["progress_percent"], 100.0, "{done}");
    app.stop().await;
}

/// A key that is revoked, or expires, stops its jobs: the running one is
/// interrupted (its connection comes back) and the queued one never starts;
/// both end failed with `unauthorized`.
#[actix_web::test]
async fn a_revoked_or_expired_keys_jobs_stop() {
    let (app, _, _dir) = start(|c| {
        c.auth.enabled = true;
        c.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
        c.jobs.max_concurrent = 1;
    })
    .await;
    let admin = Api::new(&app.base).with_key(BOOTSTRAP);
    let make_key = |expires_at: Option<String>| {
        let admin = &admin;
        async move {
            let (status, key) = admin
                .call(
                    Method::POST,
                    "/api/v1/keys",
                    Some(json!({"owner": "eve", "role": "read", "expires_at": expires_at})),
                )
                .await;
            assert_eq!(status, 201, "{key}");
            (
                admin.with_key(key["key"].as_str().unwrap()),
                key["id"].as_str().unwrap().to_string(),
            )
        }
    };
    let active = || async { sample(&app.get_text("/metrics").await, "ducklake_queries_active") };

    // Revoked: one job running, one queued behind it.
    let (eve, key_id) = make_key(None).await;
    let running = eve.submit(json!({"sql": SLOW_SQL})).await;
    eve.wait_for(&running, "running").await;
    let queued = eve.submit(json!({"sql": SLOW_SQL})).await;
    let (status, _) = admin
        .call(Method::DELETE, &format!("/api/v1/keys/{key_id}"), None)
        .await;
    assert_eq!(status, 200);
    for id in [&running, &queued] {
        let job = admin.wait_for(id, "failed").await;
        assert_job_error(&job, "unauthorized", "revoked or has expired");
    }
    eventually("the running job's query to end", || async {
        active().await == 0.0
    })
    .await;

    // Expired: a key that works when the job starts and stops working later.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(6);
    let (eve, _) = make_key(Some(expires.to_rfc3339())).await;
    let job = eve.submit(json!({"sql": SLOW_SQL})).await;
    eve.wait_for(&job, "running").await;
    let job = admin.wait_for(&job, "failed").await;
    assert_job_error(&job, "unauthorized", "revoked or has expired");
    assert!(
        chrono::Utc::now() >= expires,
        "stopped before the key expired"
    );
    eventually("the expired key's query to end", || async {
        active().await == 0.0
    })
    .await;
    app.stop().await;
}
