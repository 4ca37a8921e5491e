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
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    binary::Replica,
    servers::{script, stack_env, Postgres, S3},
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
    mark: AtomicBool,
    /// Set while a fault is on: answers other than 200 are counted in
    /// `failed_in_outage`, to show the fault was felt.
    outage: AtomicBool,
    failed_in_outage: AtomicU64,
    /// Clients stop when this is set (or their duration is over).
    stop: AtomicBool,
    acked: parking_lot::Mutex<Vec<(i64, i64)>>,
}

impl Tally {
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until `condition` holds, while the load runs; panics after
    /// `bound` (which only catches a hang).
    async fn wait_for(&self, what: &str, bound: Duration, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + bound;
        while !condition(self) {
            assert!(Instant::now() < deadline, "the load never showed: {what}");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `CLIENTS` clients for `duration`, each sending one write (an INSERT of
/// its own sequence number) for every two reads, spread over `targets`; a
/// client that gets no answer moves to the next target. A client keeps on
/// past `duration` until one of its writes was acknowledged (a loaded
/// machine may answer few requests in a short run), up to a bound only a
/// broken service reaches.
async fn run_load(targets: Arc<Vec<String>>, duration: Duration, tally: Arc<Tally>) {
    let end = Instant::now() + duration;
    let bound = end + Duration::from_secs(300);
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
                let mut acked = false;
                let going = |acked: bool| {
                    let now = Instant::now();
                    (now < end || (!acked && now < bound)) && !tally.stop.load(Ordering::SeqCst)
                };
                while going(acked) {
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
                    if status != 200 && tally.outage.load(Ordering::SeqCst) {
                        tally.failed_in_outage.fetch_add(1, Ordering::SeqCst);
                    }
                    match status {
                        200 => {
                            tally.ok.fetch_add(1, Ordering::SeqCst);
                            if tally.mark.load(Ordering::SeqCst) {
                                tally.ok_after_mark.fetch_add(1, Ordering::SeqCst);
                            }
                            if write {
                                tally.acked.lock().push((i64::from(id), seq));
                                acked = true;
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

/// A service process on PostgreSQL database `db` and S3 bucket `bucket`
/// (its memory is its own, not the test's); `base` is its URL.
async fn service(
    pg: &Postgres,
    db: &str,
    s3: &S3,
    bucket: &str,
    data_dir: &std::path::Path,
) -> Replica {
    service_with(pg, (db, s3, bucket), data_dir, &[]).await
}

/// [`service`] with more settings.
async fn service_with(
    pg: &Postgres,
    (db, s3, bucket): (&str, &S3, &str),
    data_dir: &std::path::Path,
    extra: &[(&'static str, &str)],
) -> Replica {
    let mut env = stack_env(pg, db, s3, bucket, "lake");
    env.extend([
        ("DUCKDB_CONNECTIONS", "8".to_string()),
        ("QUERY_MAX_QUEUED", "64".to_string()),
        ("QUERY_MAX_ROWS", "100000000".to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Replica::start(data_dir, &env).await
}

/// Runs SQL that must succeed; returns the response JSON.
async fn sql(base: &str, sql: &str) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/query"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

const CREATE_TABLE: &str = "CREATE TABLE load_events (client INT, seq BIGINT, payload VARCHAR)";

#[actix_web::test]
async fn mixed_load_on_the_real_stack() {
    let pg = Postgres::start();
    let s3 = S3::start("load");
    let dir = tempfile::tempdir().unwrap();
    let replica = service(&pg, "load", &s3, "load", dir.path()).await;
    let base = replica.base.clone();
    sql(&base, CREATE_TABLE).await;
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
    // The service process's own memory: the 32 clients are not in it.
    assert!(
        end_rss < start_rss + 300e6,
        "memory grew from {start_rss} to {end_rss}"
    );
}

#[actix_web::test]
async fn load_through_a_postgres_restart_and_an_s3_restart() {
    let pg = Postgres::start();
    let s3 = S3::start("faults");
    let dir = tempfile::tempdir().unwrap();
    let replica = service_with(
        &pg,
        ("faults", &s3, "faults"),
        dir.path(),
        &[("DB_DUCKLAKE_DATA_INLINING_ROW_LIMIT", "0")],
    )
    .await;
    let base = replica.base.clone();
    sql(&base, CREATE_TABLE).await;
    let tally = Arc::new(Tally::default());
    let start_rss = resident(&base).await;
    let seconds = load_seconds().max(6) * 2;
    let started = Instant::now();
    // The load runs until the faults are over (a long bound, not its length).
    let load = actix_web::rt::spawn(run_load(
        Arc::new(vec![base.clone()]),
        Duration::from_secs(600),
        Arc::clone(&tally),
    ));
    let bound = Duration::from_secs(120);
    let flowing = |after: u64| move |t: &Tally| t.ok() >= after + 20;
    tally
        .wait_for("answers before the faults", bound, flowing(0))
        .await;
    actix_web::rt::time::sleep(Duration::from_secs(seconds) / 3).await;

    // PostgreSQL really stops (pg.sh stop returns once it is down), stays
    // down until the clients have felt it, then restarts on the same data
    // directory and port.
    let pg_dir = pg.dir.path().to_str().unwrap().to_string();
    let pg_port = pg.port.to_string();
    {
        let pg_dir = pg_dir.clone();
        actix_web::rt::task::spawn_blocking(move || script("pg.sh", &["stop", &pg_dir]))
            .await
            .unwrap();
    }
    tally.outage.store(true, Ordering::SeqCst);
    tally
        .wait_for("a failed request while PostgreSQL is down", bound, |t| {
            t.failed_in_outage.load(Ordering::SeqCst) > 0
        })
        .await;
    tally.outage.store(false, Ordering::SeqCst);
    actix_web::rt::task::spawn_blocking(move || script("pg.sh", &["start", &pg_dir, &pg_port]))
        .await
        .unwrap();
    let ok = tally.ok();
    tally
        .wait_for("answers after PostgreSQL is back", bound, flowing(ok))
        .await;

    // The S3 server (garage, on its own disk) really stops, stays down
    // until the clients have felt it (every write and read touches a
    // Parquet file there: no rows are inlined in the catalog), then
    // restarts on the same directory and port.
    let s3 = Arc::new(s3);
    {
        let s3 = Arc::clone(&s3);
        actix_web::rt::task::spawn_blocking(move || s3.stop())
            .await
            .unwrap();
    }
    tally.outage.store(true, Ordering::SeqCst);
    tally
        .wait_for("a failed request while S3 is down", bound, |t| {
            t.failed_in_outage.load(Ordering::SeqCst) > 0
        })
        .await;
    tally.outage.store(false, Ordering::SeqCst);
    {
        let s3 = Arc::clone(&s3);
        actix_web::rt::task::spawn_blocking(move || s3.start_again())
            .await
            .unwrap();
    }
    let ok = tally.ok();
    tally
        .wait_for("answers after S3 is back", bound, flowing(ok))
        .await;
    tally.stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    wait_ready(&base, bound).await;
    let end_rss = resident(&base).await;
    let report = check_and_report(
        "PostgreSQL restart + S3 restart",
        &base,
        &tally,
        seconds,
        (start_rss, end_rss),
    )
    .await;
    assert!(report.acked > 0);
    assert_eq!(
        report.lost, 0,
        "acknowledged writes missing after the faults"
    );
    // Recovered by itself: a write after the faults is acknowledged and read back.
    let body = sql(&base, "INSERT INTO load_events VALUES (-1, -1, 'after'); SELECT count(*) FROM load_events WHERE client = -1").await;
    assert_eq!(body["rows"], json!([[1]]), "{body}");
}

#[actix_web::test]
async fn three_replicas_one_killed_mid_run() {
    let pg = Postgres::start();
    let s3 = S3::start("replicas");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut env = stack_env(&pg, "replicas", &s3, "replicas", "lake");
    env.extend([
        ("DUCKDB_CONNECTIONS", "6".to_string()),
        ("QUERY_MAX_QUEUED", "64".to_string()),
        ("QUERY_MAX_ROWS", "100000000".to_string()),
    ]);
    // One after the other: the first creates the lake and migrates.
    let mut replicas = Vec::new();
    for dir in &dirs {
        replicas.push(Replica::start(dir.path(), &env).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    sql(&bases[0], CREATE_TABLE).await;
    let tally = Arc::new(Tally::default());
    let start_rss = resident(&bases[0]).await;
    let seconds = load_seconds().max(6) * 2;
    let started = Instant::now();
    // The load runs until the survivors have shown they serve (a long bound,
    // not its length).
    let load = actix_web::rt::spawn(run_load(
        Arc::new(bases.clone()),
        Duration::from_secs(600),
        Arc::clone(&tally),
    ));
    let bound = Duration::from_secs(120);
    tally
        .wait_for("answers before the kill", bound, |t| t.ok() >= 20)
        .await;
    actix_web::rt::time::sleep(Duration::from_secs(seconds) / 2).await;
    replicas[1].kill(); // SIGKILL
    tally.mark.store(true, Ordering::SeqCst);
    tally
        .wait_for("answers from the survivors", bound, |t| {
            t.ok_after_mark.load(Ordering::SeqCst) >= 20
        })
        .await;
    actix_web::rt::time::sleep(Duration::from_secs(seconds) / 2).await;
    tally.stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let end_rss = resident(&bases[0]).await;
    let report = check_and_report(
        "3 replicas, 1 SIGKILLed",
        &bases[2],
        &tally,
        seconds,
        (start_rss, end_rss),
    )
    .await;
    assert!(
        tally.ok_after_mark.load(Ordering::Relaxed) > 0,
        "the other replicas kept serving"
    );
    assert!(report.acked > 0);
    assert_eq!(report.lost, 0, "acknowledged writes missing after the kill");
}
