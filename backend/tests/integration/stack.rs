//! The production topology against real servers: a PostgreSQL catalog and an
//! S3-compatible data path (scripts/pg.sh, scripts/s3.sh start them on free
//! loopback ports), in all four catalog × storage combinations.

use crate::common;

use std::process::Command;

use common::{
    binary::service_command,
    free_port,
    servers::{
        psql_at, script, with_postgres, with_s3, Postgres, TlsProxy, PG_PASSWORD, S3,
        S3_ACCESS_KEY, S3_SECRET_KEY,
    },
    spawn_with, test_config,
};
use ducklake_backend::config::{Config, Secret};
use futures_util::FutureExt;
use serde_json::json;

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
        text.contains("catalog database") && text.contains("password authentication failed"),
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
        text.contains("gave up after 2 attempt(s)") && text.contains("catalog database"),
        "{text}"
    );

    // PostgreSQL starts while the service is retrying: start-up succeeds.
    // The port first belongs to a listener that accepts the service's first
    // attempt and hangs up on it; PostgreSQL starts only after that attempt
    // failed. 30 attempts back off to 5 s apart: minutes of retrying.
    config.ducklake.connection_retries = 30;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    config.postgres.port = port;
    let starter = std::thread::spawn(move || {
        let (attempt, _) = listener.accept().expect("the service tries to connect");
        drop(attempt);
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        script(
            "pg.sh",
            &["start", dir.path().to_str().unwrap(), &port.to_string()],
        );
        Postgres { dir, port }
    });
    config.postgres.db = "postgres".into();
    config.postgres.migrate_on_start = true;
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
    shared.query.max_queued = 1000;
    // 200 requests per replica wait for 8 connections while commits race:
    // on a loaded machine the last ones wait longer than the default 30 s.
    // Queueing is not what this test is about; this bound only catches a hang.
    shared.query.queue_timeout_ms = 600_000;
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
            (status == 200).then_some(json!([r, n]))
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
    // How many inserts lose a commit race after DuckLake's and the service's
    // retries depends on how the 600 requests interleave, i.e. on the
    // machine's load: no count of acknowledgements is guaranteed. What is:
    // each request was acknowledged (200) or refused as a conflict (409);
    // every acknowledged row is in the lake and no refused one is; every
    // refusal is counted.
    let mut acknowledged_rows: Vec<serde_json::Value> = acks.into_iter().flatten().collect();
    acknowledged_rows.sort_by_key(|row| (row[0].as_u64(), row[1].as_u64()));
    let acknowledged = acknowledged_rows.len();
    assert!(acknowledged > 0, "some commit always wins a race");
    let mut conflicts = 0;
    for app in &replicas {
        let (_, ready) = app.get_json("/ready").await;
        conflicts += ready["components"]["lake"]["write_conflicts_total"]
            .as_u64()
            .expect("the conflict count is in /ready");
    }
    assert_eq!(
        conflicts as usize,
        600 - acknowledged,
        "every refused insert is counted as a conflict"
    );

    for app in &replicas {
        let body = app
            .sql("SELECT replica, n FROM hits ORDER BY replica, n")
            .await;
        assert_eq!(
            body["rows"],
            json!(acknowledged_rows),
            "the rows are exactly the acknowledged inserts, on every replica"
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
/// (a real one, restarted on its own disk) going away gives
/// `storage_unavailable` the same way, and the same recovery.
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
    // Fast means not waiting out a connection timeout per retry: a bound
    // that a slow machine stays well within.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "outage errors must come fast, not after {:?}",
        started.elapsed()
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["components"]["catalog"]["status"], "down", "{body}");
    assert_eq!(body["components"]["storage"]["status"], "up", "{body}");
    assert_eq!(body["components"]["lake"]["status"], "down", "{body}");

    script(
        "pg.sh",
        &[
            "start",
            pg.dir.path().to_str().unwrap(),
            &pg.port.to_string(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
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
    // Acknowledged data in the store itself (a Parquet file, not rows
    // inlined in the catalog), to outlive the store's restart below.
    app.sql("CREATE TABLE stored AS SELECT range AS n FROM range(5000)")
        .await;
    assert!(s3.list("outage").contains(".parquet"));

    // Bucket: enough rows that DuckLake writes a Parquet file, not inlined rows.
    s3.stop();
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
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["components"]["storage"]["status"], "down", "{body}");
    assert_eq!(body["components"]["catalog"]["status"], "up", "{body}");

    // The store restarts on its own disk: the service recovers by itself,
    // with what it acknowledged before the outage.
    s3.start_again();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not recover after the store came back"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let body = app.sql("SELECT count(*), sum(n) FROM stored").await;
    assert_eq!(body["rows"], json!([[5000, 12497500]]), "{body}");
    app.sql("INSERT INTO acked SELECT 100 FROM range(5000)")
        .await;
    let body = app.sql("SELECT count(*) FROM acked").await;
    assert_eq!(body["rows"], json!([[5003]]), "{body}");
    app.stop().await;
}

/// The `ducklake-backend migrate` command against one database.
fn migrate_command(pg: &Postgres, db: &str) -> Command {
    let mut cmd = service_command();
    cmd.env("LOG_LEVEL", "warn")
        .env("DB_POSTGRES_HOST", "127.0.0.1")
        .env("DB_POSTGRES_PORT", pg.port.to_string())
        .env("DB_POSTGRES_DB", db)
        .env("DB_POSTGRES_PASSWORD", PG_PASSWORD)
        .arg("migrate")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Our own schema on PostgreSQL: `serve` refuses a database that was never
/// migrated; two concurrent `migrate` runs wait for the advisory lock and
/// apply each migration once; a re-run is a no-op; our tables and DuckLake's
/// live in different schemas; a tampered checksum is refused by both.
#[actix_web::test]
async fn migrations_on_a_postgres_catalog() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "mig");
    config.postgres.migrate_on_start = false;

    let err = ducklake_backend::Application::build(config.clone())
        .await
        .err()
        .expect("serve refuses an unmigrated database");
    let text = err.to_string();
    assert!(
        text.contains("at version 0") && text.contains("run `ducklake-backend migrate`"),
        "{text}"
    );

    // Someone holds the migration lock: both runs wait for it, then one applies.
    let mut holder = Command::new("psql")
        .env("PGPASSWORD", PG_PASSWORD)
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string()])
        .args(["-U", "postgres", "-d", "mig", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    let lock = "7238801289098914661";
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, "SELECT pg_advisory_lock({lock});").unwrap();
    stdin.flush().unwrap();
    let advisory = |granted: bool| {
        pg.psql_in(
            "mig",
            &format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = {granted}"
            ),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while advisory(true) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was not taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut runs: Vec<_> = (0..2)
        .map(|_| migrate_command(&pg, "mig").spawn().unwrap())
        .collect();
    // Both runs are blocked in pg_advisory_lock (an ungranted lock each).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while advisory(false) != "2" {
        for run in &mut runs {
            if let Some(status) = run.try_wait().unwrap() {
                panic!("migrate ended ({status}) instead of waiting for the lock");
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the migrate runs never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for run in &mut runs {
        assert!(
            run.try_wait().unwrap().is_none(),
            "migrate must wait for the lock"
        );
    }
    writeln!(stdin, "SELECT pg_advisory_unlock({lock});").unwrap();
    drop(stdin);
    holder.wait().unwrap();
    let outputs: Vec<String> = runs
        .into_iter()
        .map(|run| {
            let out = run.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", output_text(&out));
            output_text(&out)
        })
        .collect();
    let applied = outputs
        .iter()
        .filter(|o| {
            o.contains(
                "applied 6 migration(s): 0001_api_keys, 0002_query_jobs, 0003_audit_log, \
                 0004_query_jobs_runner, 0005_query_jobs_progress, 0006_audit_log_request",
            )
        })
        .count();
    let noop = outputs
        .iter()
        .filter(|o| o.contains("schema is up to date at version 6"))
        .count();
    assert_eq!((applied, noop), (1, 1), "{outputs:?}");
    assert!(
        outputs
            .iter()
            .all(|o| o.contains("waited for another process")),
        "{outputs:?}"
    );
    assert_eq!(
        pg.psql_in("mig", "SELECT string_agg(version::text, ',' ORDER BY version) FROM ducklake_backend.schema_migrations"),
        "1,2,3,4,5,6"
    );

    // A re-run is a no-op.
    let out = migrate_command(&pg, "mig").output().unwrap();
    assert!(out.status.success());
    assert!(output_text(&out).contains("schema is up to date at version 6"));

    // Now serve starts; our tables and DuckLake's are in different schemas.
    let app = spawn_with(config.clone(), None).await;
    app.sql("CREATE TABLE t (x INT)").await;
    app.stop().await;
    drop(app);
    assert_eq!(
        pg.psql_in("mig", "SELECT string_agg(DISTINCT schemaname, ',') FROM pg_tables WHERE tablename IN ('api_keys', 'query_jobs', 'audit_log', 'schema_migrations')"),
        "ducklake_backend"
    );
    assert_eq!(
        pg.psql_in("mig", "SELECT string_agg(DISTINCT schemaname, ',') FROM pg_tables WHERE tablename LIKE 'ducklake\\_%'"),
        "public"
    );

    // Someone edited an applied migration: both serve and migrate refuse.
    pg.psql_in(
        "mig",
        "UPDATE ducklake_backend.schema_migrations SET checksum = 'feed' WHERE version = 2",
    );
    let err = ducklake_backend::Application::build(config)
        .await
        .err()
        .expect("serve refuses a changed history");
    assert!(
        err.to_string()
            .contains("0002_query_jobs was recorded with checksum feed"),
        "{err}"
    );
    let out = migrate_command(&pg, "mig").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(output_text(&out).contains("recorded with checksum feed"));
}

/// Wrong S3 credentials, against a store that checks them: a clear refusal
/// at start-up, and a key that loses its access while the service runs
/// makes `/ready` 503 with the reason, until the access is back.
#[actix_web::test]
async fn wrong_s3_credentials_are_a_clear_error() {
    let s3 = S3::start("guarded");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_s3(&mut config, &s3, "guarded", "g");
    config.ducklake.connection_retries = 1;
    let mut wrong = config.clone();
    wrong.storage.minio_secret_key = Some(Secret::new("not-the-secret-of-this-key"));
    let err = ducklake_backend::Application::build(wrong)
        .await
        .err()
        .expect("a wrong secret is refused at start-up")
        .to_string();
    assert!(
        err.contains("refused access to bucket guarded")
            && err.contains("STORAGE_MINIO_SECRET_KEY"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret-of-this-key"), "{err}");

    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE t AS SELECT range AS n FROM range(5000)")
        .await;
    let ready = |app: &common::TestApp| {
        let request = app.client.get(app.url("/ready"));
        async move {
            let res = request.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(ready(&app).await.0, 200);
    // The store takes the key's access away (as an operator rotating keys
    // would); the store really refuses it.
    let access = |verb: &str| {
        let args = [
            "bucket", verb, "--read", "--write", "--owner", "guarded", "--key",
        ];
        s3.garage(&[&args[..], &[S3_ACCESS_KEY]].concat());
    };
    access("deny");
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    let storage = &body["components"]["storage"];
    assert_eq!(storage["status"], "down", "{body}");
    assert_eq!(storage["code"], "storage_unavailable", "{body}");
    assert!(
        storage["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused access") && e.contains("STORAGE_MINIO_ACCESS_KEY")),
        "{body}"
    );
    assert!(!body.to_string().contains(S3_SECRET_KEY));
    let (status, body) = app.post_query(json!({"sql": "SELECT sum(n) FROM t"})).await;
    assert_eq!(
        (status, common::error_code(&body)),
        (503, "storage_unavailable"),
        "{body}"
    );

    access("allow");
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    let body = app.sql("SELECT sum(n) FROM t").await;
    assert_eq!(body["rows"], json!([[12497500]]));
    app.stop().await;
}

/// TLS to the store is verified, by the service's S3 client and by DuckDB's
/// httpfs: an authority the service was not given is refused at start-up;
/// with
/// `STORAGE_MINIO_CA_FILE` the lake works over TLS; and when the same
/// address later presents a certificate of another authority, DuckDB's
/// reads of the lake's files fail rather than trust it.
#[actix_web::test]
async fn tls_to_the_store_is_verified() {
    let s3 = S3::start("tls");
    let mut tls = TlsProxy::start(s3.port, "trusted");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_s3(&mut config, &s3, "tls", "t");
    config.storage.minio_endpoint = Some(format!("127.0.0.1:{}", tls.port));
    config.storage.minio_secure = true;
    config.ducklake.connection_retries = 1;
    let err = ducklake_backend::Application::build(config.clone())
        .await
        .err()
        .expect("a certificate of an unknown authority is refused")
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    config.storage.minio_ca_file = Some(tls.ca("trusted").display().to_string());
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE t AS SELECT range AS n FROM range(5000)")
        .await;
    assert!(
        s3.list("tls").contains(".parquet"),
        "the data went to the store"
    );
    let body = app.sql("SELECT sum(n) FROM t").await;
    assert_eq!(body["rows"], json!([[12497500]]));
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Written, never read: its file is in no cache of DuckDB's.
    app.sql("CREATE TABLE u AS SELECT range AS n FROM range(5000)")
        .await;
    tls.switch_to("impostor");
    let (status, body) = app.post_query(json!({"sql": "SELECT sum(n) FROM u"})).await;
    assert_eq!(
        (status, common::error_code(&body)),
        (503, "storage_unavailable"),
        "{body}"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    tls.switch_to("trusted");
    let body = app.sql("SELECT sum(n) FROM u").await;
    assert_eq!(body["rows"], json!([[12497500]]));
    app.stop().await;
}

/// The bucket is checked at start-up: created when allowed, else a clear refusal.
#[actix_web::test]
async fn bucket_is_created_at_startup_or_refused() {
    let s3 = S3::start("other-bucket");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_s3(&mut config, &s3, "fresh-bucket", "p");
    config.storage.create_bucket = false;
    config.ducklake.connection_retries = 1;
    let err = ducklake_backend::Application::build(config.clone())
        .await
        .err()
        .expect("a missing bucket is refused");
    assert!(
        err.to_string().contains(
            "bucket fresh-bucket does not exist; create it or set STORAGE_CREATE_BUCKET=true"
        ),
        "{err}"
    );
    assert!(!err.to_string().contains(S3_SECRET_KEY));

    config.storage.create_bucket = true;
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE b AS SELECT range AS n FROM range(10000)")
        .await;
    let (_, listing) = app.get_json("/api/v1/storage/objects?path=main/b").await;
    assert_eq!(listing["data_path"], "s3://fresh-bucket/p/", "{listing}");
    assert!(
        listing["objects"][0]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("main/b/") && p.ends_with(".parquet")),
        "{listing}"
    );
    assert!(s3.list("fresh-bucket").contains("p/main/b/"));
    app.stop().await;
}

/// Catalog connections stay within the configured budget under load (DuckDB's
/// pool in `wait` mode and ours, counted in pg_stat_activity by
/// application_name) and fall back when the service is idle.
#[actix_web::test]
async fn catalog_connections_stay_within_budget() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "budget");
    config.postgres.duckdb_pool_size = 2;
    config.postgres.duckdb_pool_acquire_mode = ducklake_backend::config::AcquireMode::Wait;
    config.postgres.pool_size = 2;
    config.postgres.idle_timeout_ms = 1000;
    config.duckdb.connections = 8;
    config.query.max_queued = 1000;
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE load (n INT)").await;

    let count_sql = "SELECT coalesce(sum((split_part(application_name, '/', 2) = 'duckdb')::int), 0) \
                     || ',' || coalesce(sum((split_part(application_name, '/', 2) = 'pool')::int), 0) \
                     FROM pg_stat_activity WHERE datname = 'budget' AND application_name LIKE 'ducklake-backend/%'";
    let port = pg.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (d, p) = parse_counts(&psql_at(port, "budget", count_sql));
                peak = (peak.0.max(d), peak.1.max(p));
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            peak
        })
    };
    let requests = (0..240).map(|i| {
        let app = &app;
        async move {
            match i % 3 {
                0 => {
                    let (status, body) = app
                        .post_query(json!({"sql": "INSERT INTO load VALUES (?)", "params": [i]}))
                        .await;
                    assert!(status == 200 || status == 409, "{body}");
                }
                1 => {
                    app.sql("SELECT count(*) FROM load").await;
                }
                _ => {
                    let res = app.client.get(app.url("/ready")).send().await.unwrap();
                    let status = res.status();
                    let body: serde_json::Value = res.json().await.unwrap();
                    assert_eq!(status, 200, "{body}");
                }
            }
        }
    });
    futures_util::future::join_all(requests).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert!(peak.0 >= 1, "DuckDB's connections were not seen: {peak:?}");
    assert!(
        peak.0 <= 2 && peak.1 <= 2,
        "catalog connections (duckdb, pool) peaked at {peak:?}, budget (2, 2)"
    );

    // /metrics shows this replica's catalog connections, within the budget.
    let metrics = app.get_text("/metrics").await;
    let series = "ducklake_catalog_connections{pool=\"duckdb\"}";
    assert!(
        metrics.contains(series),
        "the DuckDB pool's connections are exported"
    );
    let duckdb_connections = common::sample(&metrics, series);
    assert!(
        (0.0..=2.0).contains(&duckdb_connections),
        "{duckdb_connections}"
    );

    // Idle: both pools give their connections back (idle timeout 1 s; the
    // bound only catches connections that are never closed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (d, p) = parse_counts(&pg.psql_in("budget", count_sql));
        if d + p < peak.0 + peak.1 && p == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle connections were not closed: duckdb {d}, pool {p}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    app.stop().await;
}

fn parse_counts(text: &str) -> (u64, u64) {
    let (d, p) = text.split_once(',').expect("two counts");
    (d.parse().unwrap(), p.parse().unwrap())
}

/// Stock DuckDB 1.5.5 (the Python package) attaches the same catalog and data
/// path: it reads what the service wrote, and the service reads what it wrote.
#[actix_web::test]
async fn stock_duckdb_shares_the_lake() {
    let pg = Postgres::start();
    let s3 = S3::start("interop");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "interop");
    with_s3(&mut config, &s3, "interop", "shared");
    let app = spawn_with(config, None).await;
    app.sql(
        "CREATE TABLE from_service AS SELECT range AS n, 'row ' || range AS label FROM range(5000)",
    )
    .await;

    let script = common::servers::stock_duckdb_attach(&pg, "interop", &s3, "interop", "shared")
        + r#"
print(con.execute("SELECT count(*), sum(n), max(label) FROM lake.from_service").fetchone())
con.execute("CREATE TABLE lake.from_stock AS SELECT range * 2 AS doubled FROM range(3000)")
"#;
    assert_eq!(stock_duckdb(&script), "(5000, 12497500, 'row 999')");
    let body = app
        .sql("SELECT count(*), sum(doubled) FROM from_stock")
        .await;
    assert_eq!(body["rows"], json!([[3000, 8997000]]));
    app.stop().await;
}

/// Every pinned answer of the service equals stock DuckDB 1.5.5 reading the
/// same lake `AT (VERSION => n)`, at every snapshot of a history of writes;
/// a pinned read reaching a table through a view or a macro (whose body the
/// pin cannot cover) is refused rather than answered from another snapshot.
#[actix_web::test]
async fn pinned_answers_equal_stock_duckdb_at_the_same_version() {
    let pg = Postgres::start();
    let s3 = S3::start("pinned");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pinned");
    with_s3(&mut config, &s3, "pinned", "lake");
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE t AS SELECT range AS n, 'v' || range AS v FROM range(5)")
        .await;
    app.sql("CREATE TABLE u AS SELECT range AS n, range * 10 AS w FROM range(3)")
        .await;
    app.sql("CREATE VIEW tv AS SELECT * FROM t WHERE n % 2 = 0")
        .await;
    app.sql("CREATE MACRO tm() AS TABLE SELECT * FROM t").await;
    let mut versions = Vec::new();
    for write in [
        "INSERT INTO t VALUES (10, 'ten'), (11, 'eleven')",
        "DELETE FROM t WHERE n = 1",
        "UPDATE u SET w = w + 1 WHERE n = 2",
        "INSERT INTO u SELECT range + 3, range FROM range(4)",
        "UPDATE t SET v = 'changed' WHERE n >= 10",
    ] {
        let (_, snapshot) = app.answer_and_snapshot(json!({ "sql": write })).await;
        versions.push(snapshot);
        versions.push(snapshot - 1);
    }
    versions.sort();
    versions.dedup();
    // (the service's SQL, stock DuckDB's with every table pinned)
    let reads = [
        (
            "SELECT count(*), sum(n) FROM t",
            "SELECT count(*), sum(n) FROM lake.t AT (VERSION => {v})",
        ),
        (
            "SELECT n, v FROM t ORDER BY ALL",
            "SELECT n, v FROM lake.t AT (VERSION => {v}) ORDER BY ALL",
        ),
        (
            "SELECT t.n, u.w FROM t JOIN u USING (n) ORDER BY ALL",
            "SELECT t.n, u.w FROM lake.t t AT (VERSION => {v}) \
             JOIN lake.u u AT (VERSION => {v}) USING (n) ORDER BY ALL",
        ),
        (
            "WITH big AS (SELECT * FROM u WHERE w > 1) SELECT count(*) FROM big, t WHERE big.n = t.n",
            "WITH big AS (SELECT * FROM lake.u AT (VERSION => {v}) WHERE w > 1) \
             SELECT count(*) FROM big, lake.t t AT (VERSION => {v}) WHERE big.n = t.n",
        ),
    ];
    let mut script = common::servers::stock_duckdb_attach(&pg, "pinned", &s3, "pinned", "lake")
        + "import json\nout = []\n";
    // Each answer of the service, and the stock query whose answer must
    // equal it, all asked of stock DuckDB in one run at the end.
    let mut answers = Vec::new();
    for version in &versions {
        for (sql, stock) in &reads {
            let (status, body) = app
                .post_query(json!({ "sql": sql, "snapshot": version }))
                .await;
            assert_eq!(status, 200, "{sql} at {version}: {body}");
            answers.push((format!("{sql} at snapshot {version}"), body["rows"].clone()));
            let stock = stock.replace("{v}", &version.to_string());
            script +=
                &format!("out.append([list(r) for r in con.execute({stock:?}).fetchall()])\n");
        }
        for (sql, filter) in [
            ("SELECT count(*) FROM tv", " WHERE n % 2 = 0"),
            ("SELECT count(*) FROM tm()", ""),
        ] {
            let (status, body) = app
                .post_query(json!({ "sql": sql, "snapshot": version }))
                .await;
            if status == 200 {
                // Only where the view's or macro's table is unchanged since.
                answers.push((format!("{sql} at snapshot {version}"), body["rows"].clone()));
                let stock =
                    format!("SELECT count(*) FROM lake.t AT (VERSION => {version}){filter}");
                script +=
                    &format!("out.append([list(r) for r in con.execute({stock:?}).fetchall()])\n");
            } else {
                assert_eq!(status, 422, "{sql} at {version}: {body}");
            }
        }
    }
    script += "print(json.dumps(out))\n";
    let stock: Vec<serde_json::Value> =
        serde_json::from_str(&stock_duckdb(&script)).expect("the stock answers as JSON");
    assert_eq!(stock.len(), answers.len());
    for ((what, ours), theirs) in answers.iter().zip(&stock) {
        assert_eq!(ours, theirs, "{what}");
    }
    app.stop().await;
}

/// Runs a stock DuckDB script (`common::servers::stock_duckdb_attach` and
/// more) with Python; its printed output, trimmed.
fn stock_duckdb(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// With a PostgreSQL catalog and S3 data, user SQL reaches no other bucket,
/// no other database, no host file, and not the catalog database itself
/// (DuckLake's `__ducklake_metadata_<lake>` attachment and the postgres
/// extension's functions on it).
#[actix_web::test]
async fn sandbox_keeps_other_buckets_and_databases_out_of_reach() {
    let pg = Postgres::start();
    let s3 = S3::start("sandboxed");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "sandbox");
    with_s3(&mut config, &s3, "sandboxed", "lake");
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE inside AS SELECT range AS n FROM range(5000)")
        .await;
    let attacks = [
        "ATTACH 'host=127.0.0.1 dbname=postgres user=postgres' AS pg (TYPE postgres)",
        "ATTACH 'ducklake:postgres:host=127.0.0.1 dbname=postgres user=postgres' AS other",
        "SELECT * FROM read_parquet('s3://other-bucket/x.parquet')",
        "SELECT * FROM read_text('s3://sandboxed/not-the-lake/x')",
        "COPY (SELECT 1) TO 's3://other-bucket/leak.csv'",
        "COPY (SELECT 1) TO 's3://sandboxed/outside-prefix.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SET s3_endpoint = 'evil:9000'",
        "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT usename, passwd FROM pg_shadow')",
        "CALL postgres_execute('__ducklake_metadata_lake', 'DROP SCHEMA ducklake_backend CASCADE')",
        "SELECT * FROM postgres_execute('__ducklake_metadata_lake', 'DELETE FROM ducklake_snapshot')",
        "SELECT * FROM __ducklake_metadata_lake.public.ducklake_snapshot",
        "DELETE FROM __ducklake_metadata_lake.public.ducklake_snapshot",
        "DROP TABLE __ducklake_metadata_lake.public.ducklake_snapshot",
        "SELECT * FROM __ducklake_metadata_lake.ducklake_backend.api_keys",
        "CREATE SECRET stolen (TYPE s3, KEY_ID 'a', SECRET 'b', ENDPOINT 'evil:9000')",
        "DROP SECRET IF EXISTS stolen",
        "SELECT name, secret_string FROM duckdb_secrets()",
        "CALL pg_clear_cache()",
        "DETACH __ducklake_metadata_lake",
    ];
    let mut failures = Vec::new();
    for sql in attacks {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        if status != 403 {
            failures.push(format!("{status} {body}  <- {sql}"));
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert!(!s3.list("sandboxed").contains("outside-prefix.csv"));
    let body = app.sql("SELECT count(*) FROM inside").await;
    assert_eq!(body["rows"], json!([[5000]]));
    let body = app
        .sql("SELECT count(*) > 1 FROM ducklake_snapshots('lake')")
        .await;
    assert_eq!(body["rows"], json!([[true]]), "snapshots survived");
    app.stop().await;
}

/// API keys live in our schema in PostgreSQL: made through the API by the
/// bootstrap key, made by `ducklake-backend keys` while the service runs,
/// honoured by a second replica, revoked everywhere at once.
#[actix_web::test]
async fn api_keys_live_in_postgres_and_work_on_every_replica() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "keys");
    config.auth.enabled = true;
    let bootstrap = "bootstrap-admin-key-for-postgres-0123456789";
    config.auth.bootstrap_key = Some(Secret::new(bootstrap));
    // Two replicas on one lake (the data path is a shared local directory).
    let one = spawn_with(config.clone(), None).await;
    let two = spawn_with(config.clone(), None).await;
    let client = &one.client;

    let res = client
        .post(one.url("/api/v1/keys"))
        .bearer_auth(bootstrap)
        .json(&json!({"owner": "etl", "role": "write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();

    let out = service_command()
        .args([
            "keys", "create", "--owner", "analyst", "--role", "read", "--json",
        ])
        .env("DATA_DIR", dir.path())
        .env("DB_POSTGRES_HOST", "127.0.0.1")
        .env("DB_POSTGRES_PORT", pg.port.to_string())
        .env("DB_POSTGRES_DB", "keys")
        .env("DB_POSTGRES_PASSWORD", PG_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reader = made["key"].as_str().unwrap().to_string();

    let query = |app: &common::TestApp, key: &str, sql: &str| {
        let req = app
            .client
            .post(app.url("/api/v1/query"))
            .bearer_auth(key)
            .json(&json!({ "sql": sql }));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        query(&two, &key, "CREATE TABLE k AS SELECT 1 AS a").await,
        200
    );
    assert_eq!(query(&one, &reader, "SELECT count(*) FROM k").await, 200);
    assert_eq!(query(&two, &reader, "INSERT INTO k VALUES (2)").await, 403);

    let res = client
        .get(two.url("/api/v1/keys"))
        .bearer_auth(bootstrap)
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = res.json().await.unwrap();
    let owners: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 3, "{listed}");
    assert!(
        owners.contains(&"bootstrap") && owners.contains(&"etl") && owners.contains(&"analyst")
    );
    assert!(!listed.to_string().contains(&key));
    let hashes = pg.psql_in(
        "keys",
        "SELECT count(*) FROM ducklake_backend.api_keys WHERE length(key_hash) = 64",
    );
    assert_eq!(hashes.trim(), "3");

    let res = client
        .delete(one.url(&format!("/api/v1/keys/{}", created["id"].as_str().unwrap())))
        .bearer_auth(bootstrap)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        query(&two, &key, "SELECT 1").await,
        401,
        "revoked on the other replica too"
    );
    assert_eq!(query(&one, &reader, "SELECT 1").await, 200);
    one.stop().await;
    two.stop().await;
}

/// The lake's REST resources read DuckLake's catalog tables in PostgreSQL
/// and files in S3 the same way as on the embedded default.
#[actix_web::test]
async fn lake_resources_on_postgres_and_s3() {
    let pg = Postgres::start();
    let s3 = S3::start("res-bucket");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pg_resources");
    with_s3(&mut config, &s3, "res-bucket", "lake");
    let app = spawn_with(config, None).await;

    let res = app
        .client
        .post(app.url("/api/v1/schemas"))
        .json(&json!({"name": "sales"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    app.sql("CREATE TABLE sales.orders (id INT NOT NULL, amount DOUBLE)")
        .await;
    app.sql("INSERT INTO sales.orders SELECT i, i * 1.5 FROM range(3000) t(i)")
        .await;
    app.sql("DELETE FROM sales.orders WHERE id < 1000").await;

    let (status, tables) = app.get_json("/api/v1/tables?schema=sales").await;
    assert_eq!(status, 200, "{tables}");
    let orders = &tables["items"][0];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["row_count"], 2000);
    assert!(orders["data_file_count"].as_i64().unwrap() >= 1, "{orders}");
    let (status, detail) = app.get_json("/api/v1/tables/sales/orders").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["columns"][0]["nullable"], false);
    assert_eq!(detail["columns"][0]["stats"]["max"], "2999");

    let (status, snapshots) = app.get_json("/api/v1/snapshots?limit=2").await;
    assert_eq!(status, 200, "{snapshots}");
    assert_eq!(
        snapshots["items"][0]["id"], orders["last_change_snapshot"],
        "the delete is the newest snapshot and the table's last change"
    );
    let (status, changes) = app
        .get_json("/api/v1/tables/sales/orders/changes?format=json")
        .await;
    assert_eq!(status, 200, "{changes}");
    assert_eq!(changes["row_count"], 4000, "3000 inserts and 1000 deletes");

    // Ingest: an upload, a file already in the bucket, and a failed load
    // that leaves the bucket as it was.
    let upload = |table: &str, query: &str, body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/api/v1/tables/sales/{table}/data?{query}")))
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let res = upload("people", "mode=create", b"id,name\n1,ana\n2,bo\n".to_vec())
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (_, listing) = app
        .get_json("/api/v1/storage/objects?path=sales/orders")
        .await;
    let object = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .find(|p| p.ends_with(".parquet") && !p.contains("delete"))
        .expect("a data file of sales.orders")
        .to_string();
    // Only the ingest prefix loads: the data path's own file is refused,
    // the same bytes under lake-ingest/ load (which also shows DuckDB's
    // allowed_directories holds the ingest prefix).
    let in_lake = format!("s3://res-bucket/lake/{object}");
    let res = upload(
        "copied",
        &format!("mode=create&format=parquet&url={in_lake}"),
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 422, "a data file of the lake itself");
    s3.copy(
        "res-bucket",
        &format!("lake/{object}"),
        "lake-ingest/drop/orders.parquet",
    );
    let url = "s3://res-bucket/lake-ingest/drop/orders.parquet";
    let res = upload(
        "copied",
        &format!("mode=create&format=parquet&url={url}"),
        Vec::new(),
    )
    .await
    .unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let copied = app.sql("SELECT count(*) FROM sales.copied").await;
    assert_eq!(copied["rows"][0][0], body["rows_loaded"]);
    assert!(body["rows_loaded"].as_u64().unwrap() > 0, "{body}");
    // A glob loads only with glob=true, and only inside the prefix.
    let glob = "s3://res-bucket/lake-ingest/drop/*.parquet";
    let res = upload("copied", &format!("format=parquet&url={glob}"), Vec::new())
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "a glob without glob=true");
    let res = upload(
        "copied",
        &format!("format=parquet&glob=true&url={glob}"),
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let twice = app.sql("SELECT count(*) FROM sales.copied").await;
    assert_eq!(
        twice["rows"][0][0],
        body["rows_loaded"].as_u64().unwrap() * 2
    );
    for bad in [
        "s3://other-bucket/x.parquet",
        "s3://res-bucket/",
        "s3://res-bucket/../x",
        "s3://res-bucket/lake-ingest/../lake/x.parquet",
        "s3://res-bucket/lake-jobs/x.parquet",
        "s3://res-bucket/*/*.parquet",
    ] {
        let res = upload("copied", &format!("format=parquet&url={bad}"), Vec::new())
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad}");
    }
    let objects_before = s3.list("res-bucket");
    let mut bad = String::from("id,name\n");
    for i in 0..100_000 {
        bad.push_str(&format!("{i},n{i}\n"));
    }
    bad.push_str("oops,late\n");
    let res = upload("people", "", bad.into_bytes()).await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(
        s3.list("res-bucket"),
        objects_before,
        "a failed load writes nothing"
    );
    let people = app.sql("SELECT count(*) FROM sales.people").await;
    assert_eq!(people["rows"], json!([[2]]));

    // Maintenance sees and changes the bucket.
    for i in 0..4 {
        app.sql(&format!(
            "INSERT INTO sales.orders SELECT i, 0 FROM range({i}000, {i}500) t(i)"
        ))
        .await;
    }
    let total = app
        .sql("SELECT count(*), sum(amount) FROM sales.orders")
        .await["rows"]
        .clone();
    let post = |path: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(app.url(path))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let merged = post("/api/v1/maintenance/compact", json!({})).await;
    let orders = merged["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["table"] == "orders")
        .expect("orders was merged")
        .clone();
    assert!(orders["files_processed"].as_i64().unwrap() >= 4, "{merged}");
    let cleaned = post("/api/v1/maintenance/cleanup", json!({})).await;
    assert!(
        cleaned["after"]["storage_files"].as_u64() < cleaned["before"]["storage_files"].as_u64(),
        "{cleaned}"
    );
    let objects = s3.list("res-bucket").matches("<Key>lake/").count() as u64;
    assert_eq!(
        cleaned["after"]["storage_files"], objects,
        "usage is the bucket's listing"
    );
    assert_eq!(
        app.sql("SELECT count(*), sum(amount) FROM sales.orders")
            .await["rows"],
        total
    );
    app.stop().await;
}

/// Periodic maintenance runs on one replica at a time: while another
/// session holds the maintenance advisory lock, rounds are skipped.
#[actix_web::test]
async fn periodic_maintenance_waits_for_the_lock() {
    // MAINTENANCE_LOCK in src/store/mod.rs ("ducklake" in ASCII, plus one).
    const LOCK: i64 = 0x6475_636b_6c61_6b66;
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    with_postgres(&mut config, &pg, "pg_maintenance");
    config.maintenance.enabled = true;
    config.maintenance.interval_secs = 1;
    config.maintenance.expire_older_than_secs = 0;
    let (holder, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={PG_PASSWORD} dbname=pg_maintenance",
            pg.port, config.postgres.user
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    actix_web::rt::spawn(connection);
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .unwrap();

    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE t (id INTEGER)").await;
    for batch in 0..5 {
        app.sql(&format!(
            "INSERT INTO t SELECT i FROM range({}, {}) r(i)",
            batch * 500,
            batch * 500 + 500
        ))
        .await;
    }
    let live = |usage: serde_json::Value| usage["live_data_files"].as_i64().unwrap();
    // A series of the counter appears with its first round of that outcome:
    // absent means no such round yet.
    let rounds = |outcome: &'static str| {
        let app = &app;
        async move {
            sample_or_zero(
                &app.get_text("/metrics").await,
                &format!("ducklake_maintenance_rounds_total{{outcome=\"{outcome}\"}}"),
            )
        }
    };
    let mut locked = 0.0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while locked < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "rounds were not skipped: {locked} locked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        locked = rounds("locked").await;
    }
    assert_eq!(rounds("ok").await, 0.0);
    assert_eq!(live(app.get_json("/api/v1/maintenance/usage").await.1), 5);

    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let files = live(app.get_json("/api/v1/maintenance/usage").await.1);
        if files == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no round merged the files once the lock was free: {files} live"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The round counts itself once it is over (cleanup comes after the merge).
    while rounds("ok").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the round that merged never counted itself"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
