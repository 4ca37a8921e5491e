//! Real servers for tests: PostgreSQL (Debian's package, scripts/pg.sh) and
//! an S3 server (garage from crates.io, scripts/s3.sh), each on a free
//! loopback port with a directory of its own, stopped on drop.

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

/// Runs `command`, which must succeed (`what` names it in the failure,
/// with its stderr); returns its stdout.
fn output_of(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    let mut psql = Command::new("psql");
    psql.env("PGPASSWORD", PG_PASSWORD).args([
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
    ]);
    output_of(&mut psql, "psql").trim().to_string()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_on_drop("pg.sh", self.dir.path());
    }
}

/// The key scripts/s3.sh gives its server (garage imports it).
pub const S3_ACCESS_KEY: &str = "GKducklaketestaccess0000";
pub const S3_SECRET_KEY: &str = "ducklake-test-secret-0123456789abcdef";

/// An S3 server for one test, with one bucket; stopped on drop.
pub struct S3 {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bucket: String,
}

impl S3 {
    /// A real S3 server (garage): it checks signatures and keeps its
    /// objects on disk, so a stop and [`S3::start_again`] keep them.
    pub fn start(bucket: &str) -> Self {
        let s3 = Self {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            bucket: bucket.to_string(),
        };
        s3.start_again();
        s3
    }

    /// Stops the server; returns once its process has exited.
    pub fn stop(&self) {
        script("s3.sh", &["stop", self.dir.path().to_str().unwrap()]);
    }

    /// Starts the stopped server again on the same directory and port.
    pub fn start_again(&self) {
        script(
            "s3.sh",
            &[
                "start",
                self.dir.path().to_str().unwrap(),
                &self.port.to_string(),
                &self.bucket,
            ],
        );
    }

    /// Runs garage's own command line against the running server:
    /// `bucket deny ...`, `key info ...`.
    pub fn garage(&self, args: &[&str]) -> String {
        output_of(
            Command::new(scripts().join("s3.sh"))
                .args(["admin", self.dir.path().to_str().unwrap()])
                .args(args),
            &format!("garage {args:?}"),
        )
    }

    /// Runs `code` with `s3`, a boto3 client holding the lake's keys, and
    /// the arguments as `args`; returns what it prints.
    fn boto(&self, code: &str, args: &[&str]) -> String {
        let program = format!(
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n\
             args = sys.argv[4:]\n{code}"
        );
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        output_of(
            Command::new("python3")
                .args(["-c", &program, &endpoint, S3_ACCESS_KEY, S3_SECRET_KEY])
                .args(args),
            &format!("boto3 {args:?}"),
        )
    }

    /// Copies one object within `bucket`, as a client holding the lake's
    /// keys would.
    pub fn copy(&self, bucket: &str, from: &str, to: &str) {
        self.boto(
            "s3.copy_object(Bucket=args[0], Key=args[2], \
             CopySource={'Bucket': args[0], 'Key': args[1]})",
            &[bucket, from, to],
        );
    }

    /// Every key in `bucket`, one `<Key>…</Key>` per object (the element
    /// of S3's listing, which the tests search).
    pub fn list(&self, bucket: &str) -> String {
        self.boto(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket=args[0]):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       print('<Key>' + o['Key'] + '</Key>')",
            &[bucket],
        )
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        stop_on_drop("s3.sh", self.dir.path());
    }
}

/// TLS in front of a server on loopback (scripts/tls-proxy.py), with a
/// certificate for 127.0.0.1 signed by a CA of its own; stopped on drop.
pub struct TlsProxy {
    pub port: u16,
    dir: tempfile::TempDir,
    target: u16,
    child: std::process::Child,
}

impl TlsProxy {
    /// TLS on a free port, relayed to `target`, with the certificate of CA
    /// `name`.
    pub fn start(target: u16, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(dir.path(), port, target, name);
        Self {
            port,
            dir,
            target,
            child,
        }
    }

    /// The PEM file of CA `name`'s certificate.
    pub fn ca(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}-ca.pem"))
    }

    /// Restarts the proxy on the same port with the certificate of CA `name`
    /// (made when new): the same server, now under another authority.
    pub fn switch_to(&mut self, name: &str) {
        self.stop();
        self.child = Self::spawn(self.dir.path(), self.port, self.target, name);
    }

    fn spawn(dir: &Path, port: u16, target: u16, name: &str) -> std::process::Child {
        let proxy = scripts().join("tls-proxy.py");
        if !dir.join(format!("{name}.pem")).exists() {
            let made = Command::new(&proxy)
                .args(["certs", dir.to_str().unwrap(), name])
                .status()
                .unwrap();
            assert!(made.success(), "making the certificates of {name}");
        }
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let child = Command::new(&proxy)
            .args(["serve", &port.to_string(), &target.to_string()])
            .arg(&cert)
            .arg(&key)
            .spawn()
            .unwrap();
        // Until it accepts connections.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the TLS proxy did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop();
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
    config.storage.minio_access_key = Some(Secret::new(S3_ACCESS_KEY));
    config.storage.minio_secret_key = Some(Secret::new(S3_SECRET_KEY));
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
        ("STORAGE_MINIO_ACCESS_KEY", S3_ACCESS_KEY.to_string()),
        ("STORAGE_MINIO_SECRET_KEY", S3_SECRET_KEY.to_string()),
        ("STORAGE_DEFAULT_BUCKET", bucket.to_string()),
        ("STORAGE_PREFIX", prefix.to_string()),
    ]
}

/// The start of a Python script in which stock DuckDB 1.5.5 (the PyPI
/// package) attaches the lake on PostgreSQL database `db` and S3 bucket
/// `bucket` under `prefix` as `lake`, as `con`.
pub fn stock_duckdb_attach(pg: &Postgres, db: &str, s3: &S3, bucket: &str, prefix: &str) -> String {
    format!(
        r#"
import duckdb, os
config = {{"autoinstall_known_extensions": False, "autoload_known_extensions": False}}
if os.environ.get("DUCKDB_EXTENSION_DIRECTORY"):
    config["extension_directory"] = os.environ["DUCKDB_EXTENSION_DIRECTORY"]
con = duckdb.connect(config=config)
for name in ("ducklake", "postgres_scanner", "httpfs"):
    con.execute(f"LOAD {{name}}")
con.execute("CREATE SECRET (TYPE postgres, PASSWORD '{PG_PASSWORD}')")
con.execute("CREATE SECRET (TYPE s3, KEY_ID '{S3_ACCESS_KEY}', SECRET '{S3_SECRET_KEY}', ENDPOINT '127.0.0.1:{s3_port}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")
con.execute("ATTACH 'ducklake:postgres:host=127.0.0.1 port={pg_port} dbname={db} user=postgres' AS lake (DATA_PATH 's3://{bucket}/{prefix}/')")
"#,
        s3_port = s3.port,
        pg_port = pg.port,
    )
}
