//! Load against the real stack (PostgreSQL catalog, S3 data): 32 clients of
//! mixed reads and writes, then the same with faults (PostgreSQL restarted,
//! the S3 server frozen), then three replicas with one killed mid-run.
//! Every write the service acknowledged must be in the lake afterwards.
//!
//! Short forms run in CI (`LOAD_SECONDS`, default 6); `scripts/load-test.sh`
//! runs the long forms and keeps the figures in `backend/tests/LOAD_RESULTS.md`.

mod common;

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    free_port,
    servers::{script, with_postgres, with_s3, Postgres, PG_PASSWORD, S3},
    spawn_with, test_config,
};
use serde_json::{json, Value};

const CLIENTS: u32 = 32;

fn load_seconds() -> u64 {
    std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    /// No HTTP answer at all (a killed replica).
    transport_errors: AtomicU64,
    /// Answers after `mark` was set (e.g. after a replica was killed).
    ok_after_mark: AtomicU64,
    mark: std::sync::atomic::AtomicBool,
    acked: parking_lot::Mutex<Vec<(i64, i64)>>,
}

/// `CLIENTS` clients for `duration`, each sending one write (an INSERT of
/// its own sequence number) for every two reads, spread over `targets`; a
/// client that gets no answer moves to the next target.
async fn run_load(targets: Arc<Vec<String>>, duration: Duration, tally: Arc<Tally>) {
    let end = Instant::now() + duration;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (targets, tally, client) =
                (Arc::clone(&targets), Arc::clone(&tally), client.clone());
            actix_web::rt::spawn(async move {
                let mut target = id as usize % targets.len();
                let mut seq = 0i64;
                let mut op = 0u64;
                while Instant::now() < end {
                    op += 1;
                    let write = op % 3 == 0;
                    let body = if write {
                        seq += 1;
                        json!({"sql": "INSERT INTO load_events VALUES (?, ?, ?)",
                               "params": [id, seq, format!("payload {id}/{seq}")]})
                    } else {
                        json!({"sql": "SELECT count(*), max(seq) FROM load_events WHERE client = ?",
                               "params": [id]})
                    };
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    let res = client
                        .post(format!("{}/api/v1/query", targets[target]))
                        .json(&body)
                        .send()
                        .await;
                    let status = match res {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            // Read the body: a 200 counts only once it all arrived.
                            match res.bytes().await {
                                Ok(_) => status,
                                Err(_) => 0,
                            }
                        }
                        Err(_) => 0,
                    };
                    match status {
                        200 => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if tally.mark.load(Ordering::Relaxed) {
                                tally.ok_after_mark.fetch_add(1, Ordering::Relaxed);
                            }
                            if write {
                                tally.acked.lock().push((i64::from(id), seq));
                            }
                        }
                        0 => {
                            tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                            target = (target + 1) % targets.len();
                            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        }
                        400..=499 => {
                            tally.client_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            tally.server_errors.fetch_add(1, Ordering::Relaxed);
                            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The figures of one run, as a Markdown table row and checked numbers.
struct Report {
    acked: usize,
    found: usize,
    lost: usize,
}

async fn check_and_report(
    scenario: &str,
    base: &str,
    tally: &Tally,
    seconds: f64,
    rss: (f64, f64),
) -> Report {
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/query"))
        .json(&json!({"sql": "SELECT client, seq FROM load_events", "max_rows": 100000000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let found: HashSet<(i64, i64)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    let acked = tally.acked.lock().clone();
    let lost = acked.iter().filter(|a| !found.contains(a)).count();
    let requests = tally.requests.load(Ordering::Relaxed);
    let line = format!(
        "| {scenario} | {CLIENTS} | {seconds:.0} | {requests} | {:.0} | {} | {} | {} | {} | {} | {} | {lost} | {:.0} → {:.0} MB |",
        requests as f64 / seconds,
        tally.ok.load(Ordering::Relaxed),
        tally.client_errors.load(Ordering::Relaxed),
        tally.server_errors.load(Ordering::Relaxed),
        tally.transport_errors.load(Ordering::Relaxed),
        acked.len(),
        found.len(),
        rss.0 / 1e6,
        rss.1 / 1e6,
    );
    println!("| scenario | clients | s | requests | req/s | 2xx | 4xx | 5xx | no answer | writes acked | rows found | acked but missing | RSS start → end |");
    println!("{line}");
    if let Ok(path) = std::env::var("LOAD_RESULTS") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
    Report {
        acked: acked.len(),
        found: found.len(),
        lost,
    }
}

async fn resident(base: &str) -> f64 {
    let body: Value = reqwest::get(format!("{base}/metrics/memory"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["process"]["resident_bytes"].as_f64().unwrap()
}

async fn wait_ready(base: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let last = match reqwest::get(format!("{base}/ready")).await {
            Ok(res) if res.status() == 200 => return,
            Ok(res) => res.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{base} did not become ready: {last}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One in-process replica on PostgreSQL database and S3 bucket `name`,
/// with the table the clients write to; its base URL.
async fn loaded_app(
    pg: &Postgres,
    s3: &S3,
    name: &str,
    data_dir: &std::path::Path,
) -> (common::TestApp, String) {
    let mut config = test_config(data_dir);
    with_postgres(&mut config, pg, name);
    with_s3(&mut config, s3, name, "lake");
    config.duckdb.connections = 8;
    config.query.max_queued = 64;
    let app = spawn_with(config, None).await;
    app.sql("CREATE TABLE load_events (client INT, seq BIGINT, payload VARCHAR)")
        .await;
    let base = app.url("").trim_end_matches('/').to_string();
    (app, base)
}

#[actix_web::test]
async fn mixed_load_on_the_real_stack() {
    let pg = Postgres::start();
    let s3 = S3::start("load");
    let dir = tempfile::tempdir().unwrap();
    let (app, base) = loaded_app(&pg, &s3, "load", dir.path()).await;
    let tally = Arc::new(Tally::default());
    let start_rss = resident(&base).await;
    let seconds = load_seconds();
    run_load(
        Arc::new(vec![base.clone()]),
        Duration::from_secs(seconds),
        Arc::clone(&tally),
    )
    .await;
    let end_rss = resident(&base).await;
    let report =
        check_and_report("mixed", &base, &tally, seconds as f64, (start_rss, end_rss)).await;
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0, "no 5xx");
    assert_eq!(tally.transport_errors.load(Ordering::Relaxed), 0);
    assert!(report.acked > 0 && report.found >= report.acked);
    assert_eq!(report.lost, 0, "acknowledged writes missing");
    assert!(
        end_rss < start_rss + 300e6,
        "memory grew from {start_rss} to {end_rss}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn load_through_a_postgres_restart_and_an_s3_freeze() {
    let pg = Postgres::start();
    let s3 = S3::start("faults");
    let dir = tempfile::tempdir().unwrap();
    let (app, base) = loaded_app(&pg, &s3, "faults", dir.path()).await;
    let tally = Arc::new(Tally::default());
    let start_rss = resident(&base).await;
    let seconds = load_seconds().max(6) * 2;
    let load = actix_web::rt::spawn(run_load(
        Arc::new(vec![base.clone()]),
        Duration::from_secs(seconds),
        Arc::clone(&tally),
    ));
    let third = Duration::from_secs(seconds) / 3;
    actix_web::rt::time::sleep(third).await;
    // PostgreSQL really restarts (same data directory and port).
    let pg_dir = pg.dir.path().to_str().unwrap().to_string();
    let pg_port = pg.port.to_string();
    actix_web::rt::task::spawn_blocking(move || {
        script("pg.sh", &["stop", &pg_dir]);
        std::thread::sleep(Duration::from_secs(2));
        script("pg.sh", &["start", &pg_dir, &pg_port]);
    })
    .await
    .unwrap();
    actix_web::rt::time::sleep(third / 2).await;
    // moto keeps objects in memory, so the S3 fault is a freeze: the server
    // stops answering for 2 s (SIGSTOP), then carries on (SIGCONT).
    let pid = std::fs::read_to_string(s3.dir.path().join("s3.pid")).unwrap();
    let pid = pid.trim().to_string();
    actix_web::rt::task::spawn_blocking(move || {
        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    })
    .await
    .unwrap();
    load.await.unwrap();
    wait_ready(&base, Duration::from_secs(30)).await;
    let end_rss = resident(&base).await;
    let report = check_and_report(
        "PostgreSQL restart + S3 freeze",
        &base,
        &tally,
        seconds as f64,
        (start_rss, end_rss),
    )
    .await;
    assert!(report.acked > 0);
    assert_eq!(
        report.lost, 0,
        "acknowledged writes missing after the faults"
    );
    // Recovered by itself: a write after the faults is acknowledged and read back.
    let (status, body) = app
        .post_query(json!({"sql": "INSERT INTO load_events VALUES (-1, -1, 'after'); SELECT count(*) FROM load_events WHERE client = -1"}))
        .await;
    assert_eq!((status, &body["rows"]), (200, &json!([[1]])), "{body}");
    app.stop().await;
}

/// One replica process with the PostgreSQL catalog and S3 data.
fn replica(pg: &Postgres, s3: &S3, data_dir: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ducklake-backend"));
    cmd.env_clear()
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVIRONMENT", "test")
        .env("DATA_DIR", data_dir)
        .env("SERVER_PORT", port.to_string())
        .env("DUCKDB_CONNECTIONS", "6")
        .env("QUERY_MAX_QUEUED", "64")
        .env("QUERY_MAX_ROWS", "100000000")
        .env("DB_POSTGRES_HOST", "127.0.0.1")
        .env("DB_POSTGRES_PORT", pg.port.to_string())
        .env("DB_POSTGRES_DB", "replicas")
        .env("DB_POSTGRES_PASSWORD", PG_PASSWORD)
        .env("DB_POSTGRES_MIGRATE_ON_START", "true")
        .env("STORAGE_MINIO_ENDPOINT", format!("127.0.0.1:{}", s3.port))
        .env("STORAGE_MINIO_ACCESS_KEY", "test-access")
        .env("STORAGE_MINIO_SECRET_KEY", "test-secret")
        .env("STORAGE_DEFAULT_BUCKET", "replicas")
        .env("STORAGE_PREFIX", "lake")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(dir) = std::env::var("DUCKDB_EXTENSION_DIRECTORY") {
        cmd.env("DUCKDB_EXTENSION_DIRECTORY", dir);
    }
    (cmd.spawn().unwrap(), format!("http://127.0.0.1:{port}"))
}

#[actix_web::test]
async fn three_replicas_one_killed_mid_run() {
    let pg = Postgres::start();
    pg.psql("CREATE DATABASE replicas");
    let s3 = S3::start("replicas");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    // One after the other: the first creates the lake and migrates.
    for dir in &dirs {
        let (child, base) = replica(&pg, &s3, dir.path());
        wait_ready(&base, Duration::from_secs(60)).await;
        children.push(child);
        bases.push(base);
    }
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/query", bases[0]))
        .json(&json!({"sql": "CREATE TABLE load_events (client INT, seq BIGINT, payload VARCHAR)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tally = Arc::new(Tally::default());
    let start_rss = resident(&bases[0]).await;
    let seconds = load_seconds().max(6) * 2;
    let load = actix_web::rt::spawn(run_load(
        Arc::new(bases.clone()),
        Duration::from_secs(seconds),
        Arc::clone(&tally),
    ));
    actix_web::rt::time::sleep(Duration::from_secs(seconds) / 2).await;
    children[1].kill().unwrap(); // SIGKILL
    children[1].wait().unwrap();
    tally.mark.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let end_rss = resident(&bases[0]).await;
    let report = check_and_report(
        "3 replicas, 1 SIGKILLed",
        &bases[2],
        &tally,
        seconds as f64,
        (start_rss, end_rss),
    )
    .await;
    assert!(
        tally.ok_after_mark.load(Ordering::Relaxed) > 0,
        "the other replicas kept serving"
    );
    assert!(report.acked > 0);
    assert_eq!(report.lost, 0, "acknowledged writes missing after the kill");
    for (i, child) in children.iter_mut().enumerate() {
        if i != 1 {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
