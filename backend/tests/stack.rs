//! The production topology against real servers: a PostgreSQL catalog and an
//! S3-compatible data path (scripts/pg.sh, scripts/s3.sh start them on free
//! loopback ports), in all four catalog × storage combinations.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{free_port, spawn_with, test_config};
use ducklake_backend::config::{Config, Secret};
use futures_util::FutureExt;
use serde_json::json;

/// The password scripts/pg.sh gives the postgres user (TCP needs it).
const PG_PASSWORD: &str = "postgres-test-pw";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// reqwest's blocking client must not run on the test's async runtime.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("helper thread")
}

fn script(name: &str, args: &[&str]) {
    let status = Command::new(scripts().join(name))
        .args(args)
        .status()
        .expect("script runs");
    assert!(status.success(), "{name} {args:?} failed");
}

/// A PostgreSQL server for one test; stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        script(
            "pg.sh",
            &["start", dir.path().to_str().unwrap(), &port.to_string()],
        );
        Self { dir, port }
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .env("PGPASSWORD", PG_PASSWORD)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-tAc",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        script("pg.sh", &["stop", self.dir.path().to_str().unwrap()]);
    }
}

/// An S3 server for one test, with one bucket; stopped on drop.
struct S3 {
    dir: tempfile::TempDir,
    port: u16,
}

impl S3 {
    fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        script(
            "s3.sh",
            &["start", dir.path().to_str().unwrap(), &port.to_string()],
        );
        let url = format!("http://127.0.0.1:{port}/{bucket}");
        let created = off_runtime(move || {
            reqwest::blocking::Client::new()
                .put(url)
                .send()
                .unwrap()
                .status()
        });
        assert!(created.is_success());
        Self { dir, port }
    }

    fn list(&self, bucket: &str) -> String {
        let url = format!("http://127.0.0.1:{}/{bucket}?list-type=2", self.port);
        off_runtime(move || reqwest::blocking::get(url).unwrap().text().unwrap())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        script("s3.sh", &["stop", self.dir.path().to_str().unwrap()]);
    }
}

fn with_postgres(config: &mut Config, pg: &Postgres, db: &str) {
    pg.psql(&format!("CREATE DATABASE {db}"));
    config.postgres.host = Some("127.0.0.1".into());
    config.postgres.port = pg.port;
    config.postgres.db = db.into();
    config.postgres.password = Some(Secret::new(PG_PASSWORD));
}

fn with_s3(config: &mut Config, s3: &S3, bucket: &str, prefix: &str) {
    config.storage.minio_endpoint = Some(format!("127.0.0.1:{}", s3.port));
    config.storage.minio_access_key = Some(Secret::new("test-access"));
    config.storage.minio_secret_key = Some(Secret::new("test-secret"));
    config.storage.default_bucket = bucket.into();
    config.storage.prefix = prefix.into();
}

/// Create, insert, update, delete, select, drop; then a restart keeps the data.
async fn exercise(config: Config) {
    let app = spawn_with(config.clone(), None).await;
    app.sql("CREATE TABLE m (id INTEGER, v VARCHAR)").await;
    app.sql("INSERT INTO m SELECT range, 'v' || range FROM range(2000)")
        .await;
    app.sql("UPDATE m SET v = 'updated' WHERE id < 10").await;
    app.sql("DELETE FROM m WHERE id >= 1000").await;
    let body = app
        .sql("SELECT count(*), count(*) FILTER (v = 'updated') FROM m")
        .await;
    assert_eq!(body["rows"], json!([[1000, 10]]));
    app.sql("CREATE TABLE gone (x INT)").await;
    app.sql("DROP TABLE gone").await;
    app.stop().await;
    drop(app);

    let app = spawn_with(config, None).await;
    let body = app.sql("SELECT count(*), min(v), max(id) FROM m").await;
    assert_eq!(body["rows"], json!([[1000, "updated", 999]]));
    let (status, _) = app.post_query(json!({"sql": "SELECT * FROM gone"})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[actix_web::test]
async fn catalog_and_storage_matrix() {
    let pg = Postgres::start();
    let s3 = S3::start("lake-bucket");

    // local file catalog × local directory (the embedded default)
    let dir = tempfile::tempdir().unwrap();
    exercise(test_config(dir.path())).await;

    // PostgreSQL catalog × local directory
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pg_local");
    exercise(config).await;
    assert_eq!(
        pg.psql_in(
            "pg_local",
            "SELECT count(*) > 0 FROM pg_tables WHERE tablename = 'ducklake_snapshot'"
        )
        .as_str(),
        "t"
    );
    assert!(
        !dir.path().join("catalog.ducklake").exists(),
        "the catalog is in PostgreSQL, not a local file"
    );

    // A wrong password stops start-up with PostgreSQL's reason, never the password.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pg_wrong");
    config.postgres.password = Some(Secret::new("not-the-password-xyz"));
    let err = ducklake_backend::Application::build(config)
        .await
        .err()
        .expect("start-up fails");
    let text = err.to_string();
    assert!(
        text.contains("attaching the lake") && text.contains("password authentication failed"),
        "{text}"
    );
    assert!(!text.contains("not-the-password-xyz"), "{text}");

    // local file catalog × S3
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_s3(&mut config, &s3, "lake-bucket", "file-s3");
    exercise(config).await;
    assert!(
        s3.list("lake-bucket").contains("file-s3/"),
        "{}",
        s3.list("lake-bucket")
    );

    // PostgreSQL catalog × S3: the production topology
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pg_s3");
    with_s3(&mut config, &s3, "lake-bucket", "pg-s3");
    exercise(config).await;
    let listing = s3.list("lake-bucket");
    assert!(
        listing.contains("pg-s3/") && listing.contains(".parquet"),
        "{listing}"
    );
    assert!(
        !dir.path().join("lake").exists(),
        "the data is in S3, not a local directory"
    );
}

/// Start-up waits for a catalog that comes up late, and gives up with a clear
/// message when it never does.
#[actix_web::test]
async fn startup_retries_until_the_catalog_answers() {
    // Nothing listens: two attempts, then a message naming the catalog and the count.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.postgres.host = Some("127.0.0.1".into());
    config.postgres.port = free_port();
    config.postgres.password = Some(Secret::new(PG_PASSWORD));
    config.ducklake.connection_retries = 2;
    config.ducklake.connection_timeout = 1.0;
    let err = ducklake_backend::Application::build(config.clone())
        .await
        .err()
        .expect("start-up fails");
    let text = err.to_string();
    assert!(
        text.contains("gave up after 2 attempt(s)") && text.contains("Unable to connect"),
        "{text}"
    );

    // PostgreSQL starts while the service is retrying: start-up succeeds.
    config.ducklake.connection_retries = 30;
    let port = config.postgres.port;
    let starter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let dir = tempfile::tempdir().unwrap();
        script(
            "pg.sh",
            &["start", dir.path().to_str().unwrap(), &port.to_string()],
        );
        Postgres { dir, port }
    });
    config.postgres.db = "postgres".into();
    let app = spawn_with(config, None).await;
    let pg = starter.join().unwrap();
    app.sql("CREATE TABLE late (x INT)").await;
    assert_eq!(
        pg.psql("SELECT count(*) FROM ducklake_table WHERE table_name = 'late'"),
        "1"
    );
    app.stop().await;
}

/// Three replicas on one PostgreSQL catalog and one bucket: 3 × 200
/// concurrent single-row inserts into one table, DDL on other tables at the
/// same time. Every acknowledged insert is there, and all replicas agree.
#[actix_web::test]
async fn three_replicas_share_one_lake() {
    let pg = Postgres::start();
    let s3 = S3::start("replicas");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // One catalog database for all: created once, then shared by every replica.
    let mut shared = test_config(dirs[0].path());
    with_postgres(&mut shared, &pg, "shared");
    with_s3(&mut shared, &s3, "replicas", "shared");
    shared.query.timeout_ms = 120_000;
    let configs = dirs.iter().map(|dir| Config {
        data_dir: dir.path().to_path_buf(),
        ..shared.clone()
    });
    let mut replicas = Vec::new();
    for config in configs {
        replicas.push(spawn_with(config, None).await);
    }
    replicas[0]
        .sql("CREATE TABLE hits (replica INT, n INT)")
        .await;

    let inserts = replicas.iter().enumerate().flat_map(|(r, app)| {
        (0..200).map(move |n| async move {
            let (status, body) = app
                .post_query(json!({"sql": "INSERT INTO hits VALUES (?, ?)", "params": [r, n]}))
                .await;
            assert!(
                status == 200 || status == 409,
                "insert answered {status}: {body}"
            );
            status == 200
        })
    });
    let ddl = replicas.iter().enumerate().map(|(r, app)| async move {
        for k in 0..5 {
            app.sql(&format!("CREATE TABLE side_{r}_{k} AS SELECT {k} AS k"))
                .await;
        }
    });
    let (acks, ()) = futures_util::join!(
        futures_util::future::join_all(inserts),
        futures_util::future::join_all(ddl).map(|_| ())
    );
    let acknowledged = acks.iter().filter(|ok| **ok).count();
    assert!(
        acknowledged >= 590,
        "only {acknowledged} of 600 inserts were acknowledged"
    );

    for app in &replicas {
        let body = app
            .sql("SELECT count(*), count(DISTINCT (replica, n)) FROM hits")
            .await;
        assert_eq!(
            body["rows"],
            json!([[acknowledged, acknowledged]]),
            "a replica disagrees"
        );
        let tables = app
            .sql("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'side_%'")
            .await;
        assert_eq!(tables["rows"], json!([[15]]));
    }
    for app in &replicas {
        app.stop().await;
    }
}

/// PostgreSQL goes away while the service runs: queries fail fast with 503
/// `catalog_unavailable`, `/ready` is 503, and when it is back the service
/// recovers by itself with every acknowledged write intact. The S3 server
/// going away gives `storage_unavailable` the same way.
#[actix_web::test]
async fn outages_fail_fast_and_recover() {
    let pg = Postgres::start();
    let s3 = S3::start("outage");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "outage");
    with_s3(&mut config, &s3, "outage", "o");
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE acked (n INT)").await;
    app.sql("INSERT INTO acked VALUES (1), (2)").await;

    script("pg.sh", &["stop", pg.dir.path().to_str().unwrap()]);
    let started = std::time::Instant::now();
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO acked VALUES (3)"}))
        .await;
    assert_eq!(
        (status, common::error_code(&body)),
        (503, "catalog_unavailable"),
        "{body}"
    );
    let (status, body) = app
        .post_query(json!({"sql": "SELECT count(*) FROM acked"}))
        .await;
    assert_eq!(
        (status, common::error_code(&body)),
        (503, "catalog_unavailable"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "outage errors must come fast"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    script(
        "pg.sh",
        &[
            "start",
            pg.dir.path().to_str().unwrap(),
            &pg.port.to_string(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let ready = app.client.get(app.url("/ready")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not recover by itself"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.sql("INSERT INTO acked VALUES (4)").await;
    let body = app.sql("SELECT list(n ORDER BY n) FROM acked").await;
    assert_eq!(body["rows"], json!([[[1, 2, 4]]]));

    // Storage: enough rows that DuckLake writes a Parquet file, not inlined rows.
    script("s3.sh", &["stop", s3.dir.path().to_str().unwrap()]);
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO acked SELECT 100 FROM range(5000)"}))
        .await;
    assert_eq!(
        (status, common::error_code(&body)),
        (503, "storage_unavailable"),
        "{body}"
    );
    let body = app.sql("SELECT count(*) FROM acked").await;
    assert_eq!(
        body["rows"],
        json!([[3]]),
        "the failed write left nothing behind"
    );
    app.stop().await;
}
