//! Real servers for tests: PostgreSQL (Debian's package, scripts/pg.sh) and
//! an S3-compatible server (moto, scripts/s3.sh), each on a free loopback
//! port with a directory of its own, stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use ducklake_backend::config::{Config, Secret};

use super::free_port;

/// The password scripts/pg.sh gives the postgres user (TCP needs it).
pub const PG_PASSWORD: &str = "postgres-test-pw";

pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// reqwest's blocking client must not run on the test's async runtime.
pub fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("helper thread")
}

pub fn script(name: &str, args: &[&str]) {
    assert!(script_succeeds(name, args), "{name} {args:?} failed");
}

fn script_succeeds(name: &str, args: &[&str]) -> bool {
    Command::new(scripts().join(name))
        .args(args)
        .status()
        .expect("script runs")
        .success()
}

/// Stops a server on drop: a failure is reported, not a second panic while
/// a failing test unwinds.
fn stop_on_drop(name: &str, dir: &Path) {
    if !script_succeeds(name, &["stop", dir.to_str().unwrap()]) {
        eprintln!("warning: {name} stop {} failed", dir.display());
    }
}

/// A PostgreSQL server for one test; stopped on drop.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        script(
            "pg.sh",
            &["start", dir.path().to_str().unwrap(), &port.to_string()],
        );
        Self { dir, port }
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        psql_at(self.port, db, sql)
    }
}

/// Runs one statement with psql; returns its unaligned output.
pub fn psql_at(port: u16, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .env("PGPASSWORD", PG_PASSWORD)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
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

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_on_drop("pg.sh", self.dir.path());
    }
}

/// An S3 server for one test, with one bucket; stopped on drop.
pub struct S3 {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl S3 {
    pub fn start(bucket: &str) -> Self {
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

    /// Copies one object within `bucket`, as a client holding the lake's
    /// keys would (boto3, which moto's server brings along).
    pub fn copy(&self, bucket: &str, from: &str, to: &str) {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, boto3\n\
                 s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='test-access', aws_secret_access_key='test-secret')\n\
                 s3.copy_object(Bucket=sys.argv[2], Key=sys.argv[4], \
                 CopySource={'Bucket': sys.argv[2], 'Key': sys.argv[3]})",
                &format!("http://127.0.0.1:{}", self.port),
                bucket,
                from,
                to,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "copying {from} to {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn list(&self, bucket: &str) -> String {
        let url = format!("http://127.0.0.1:{}/{bucket}?list-type=2", self.port);
        off_runtime(move || reqwest::blocking::get(url).unwrap().text().unwrap())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        stop_on_drop("s3.sh", self.dir.path());
    }
}

pub fn with_postgres(config: &mut Config, pg: &Postgres, db: &str) {
    pg.psql(&format!("CREATE DATABASE {db}"));
    config.postgres.host = Some("127.0.0.1".into());
    config.postgres.port = pg.port;
    config.postgres.db = db.into();
    config.postgres.password = Some(Secret::new(PG_PASSWORD));
    config.postgres.migrate_on_start = true;
}

pub fn with_s3(config: &mut Config, s3: &S3, bucket: &str, prefix: &str) {
    config.storage.minio_endpoint = Some(format!("127.0.0.1:{}", s3.port));
    config.storage.minio_access_key = Some(Secret::new("test-access"));
    config.storage.minio_secret_key = Some(Secret::new("test-secret"));
    config.storage.default_bucket = bucket.into();
    config.storage.prefix = prefix.into();
}

/// The environment that puts a service process on PostgreSQL database `db`
/// (created here) and S3 bucket `bucket` under `prefix`, as
/// [`with_postgres`] and [`with_s3`] do for an in-process one.
pub fn stack_env(
    pg: &Postgres,
    db: &str,
    s3: &S3,
    bucket: &str,
    prefix: &str,
) -> Vec<(&'static str, String)> {
    pg.psql(&format!("CREATE DATABASE {db}"));
    vec![
        ("DB_POSTGRES_HOST", "127.0.0.1".to_string()),
        ("DB_POSTGRES_PORT", pg.port.to_string()),
        ("DB_POSTGRES_DB", db.to_string()),
        ("DB_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("DB_POSTGRES_MIGRATE_ON_START", "true".to_string()),
        ("STORAGE_MINIO_ENDPOINT", format!("127.0.0.1:{}", s3.port)),
        ("STORAGE_MINIO_ACCESS_KEY", "test-access".to_string()),
        ("STORAGE_MINIO_SECRET_KEY", "test-secret".to_string()),
        ("STORAGE_DEFAULT_BUCKET", bucket.to_string()),
        ("STORAGE_PREFIX", prefix.to_string()),
    ]
}
