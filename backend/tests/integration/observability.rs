//! Prometheus metrics move with real traffic by the right amounts, pass
//! promtool, and switch off with their feature flag.

use crate::common;

use common::{sample, spawn_with, test_config};
use serde_json::json;

async fn scrape(app: &common::TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    res.text().await.unwrap()
}

#[actix_web::test]
async fn metrics_move_with_traffic_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.query.max_rows = 1_000_000;
    let app = spawn_with(config, None).await;
    let before = scrape(&app).await;
    let read_ok = r#"ducklake_queries_total{kind="read",outcome="ok"}"#;
    let read_err = r#"ducklake_queries_total{kind="read",outcome="not_found"}"#;
    let rows = "ducklake_query_rows_returned_total";
    let posts =
        r#"ducklake_http_requests_total{method="POST",route="/api/v1/query",status_class="2xx"}"#;
    let bad_posts =
        r#"ducklake_http_requests_total{method="POST",route="/api/v1/query",status_class="4xx"}"#;

    for n in [1, 2, 3] {
        app.sql(&format!("SELECT range FROM range({n})")).await;
    }
    let (status, _) = app
        .post_query(json!({"sql": "SELECT * FROM no_such_table"}))
        .await;
    assert_eq!(status, 404);
    // A streamed result counts its rows when the stream ends.
    let body = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT range FROM range(200000)", "format": "csv"}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.len() > 256 * 1024);

    let after = scrape(&app).await;
    // Before any traffic most of these series do not exist yet (0); after
    // it every one must.
    let moved = |series: &str| sample(&after, series) - sample_or_zero(&before, series);
    assert_eq!(moved(read_ok), 4.0, "{after}");
    assert_eq!(moved(read_err), 1.0, "{after}");
    assert_eq!(moved(rows), (1 + 2 + 3 + 200_000) as f64, "{after}");
    assert_eq!(moved(posts), 4.0, "{after}");
    assert_eq!(moved(bad_posts), 1.0, "{after}");
    assert!(moved(r#"ducklake_query_duration_seconds_count{kind="read"}"#) >= 4.0);
    assert_eq!(
        sample(&after, r#"ducklake_dependency_up{dependency="lake"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, r#"ducklake_dependency_up{dependency="storage"}"#),
        1.0
    );
    assert!(sample(&after, "process_resident_memory_bytes") > 1e6);
    assert!(
        after.contains("ducklake_build_info{duckdb_version=\"v1.5.5\""),
        "{after}"
    );
    assert!(after.contains("ducklake=") && after.contains("ducklake_duckdb_memory_bytes{tag="));
    app.sql("CREATE TABLE snap (x INT)").await;
    let later = scrape(&app).await;
    assert_eq!(
        sample(&later, "ducklake_lake_snapshot_id"),
        sample(&after, "ducklake_lake_snapshot_id") + 1.0
    );
    assert!(!later.contains("SELECT"), "no SQL in labels");

    // promtool, Prometheus's own checker, accepts the exposition.
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(later.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

#[actix_web::test]
async fn metrics_switch_off_with_their_feature() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.features.enable_prometheus_metrics = false;
    let app = spawn_with(config, None).await;
    let (status, body) = app.get_json("/metrics").await;
    assert_eq!(
        (status, common::error_code(&body)),
        (404, "route_not_found")
    );
    app.stop().await;
}

#[actix_web::test]
async fn memory_and_config_endpoints_show_state_and_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    const MARKER: &str = "s3cr3t-MARKER-value";
    config.postgres.password = Some(ducklake_backend::config::Secret::new(MARKER));
    config.storage.minio_access_key = Some(ducklake_backend::config::Secret::new(MARKER));
    config.storage.minio_secret_key = Some(ducklake_backend::config::Secret::new(MARKER));
    config.duckdb.memory_limit = Some("1GB".into());
    let app = spawn_with(config, None).await;

    let (status, memory) = app.get_json("/metrics/memory").await;
    assert_eq!(status, 200);
    assert!(memory["process"]["resident_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(
        memory["system"]["total_bytes"].as_u64().unwrap()
            > memory["system"]["available_bytes"].as_u64().unwrap()
    );
    assert!(
        memory["duckdb"]["memory_limit"]
            .as_str()
            .unwrap()
            .contains("GiB")
            || memory["duckdb"]["memory_limit"]
                .as_str()
                .unwrap()
                .contains("MiB"),
        "{memory}"
    );
    assert!(!memory["duckdb"]["by_tag"].as_array().unwrap().is_empty());
    assert!(memory.get("cgroup").is_some());

    let (_, lake) = app.get_json("/config/ducklake").await;
    assert_eq!(lake["catalog"]["kind"], "duckdb");
    assert_eq!(lake["storage"]["reachable"], true);
    assert_eq!(lake["duckdb_version"], "v1.5.5");
    assert!(lake["extensions"]["ducklake"].is_string(), "{lake}");
    let tables = lake["tables"].as_i64().unwrap();
    app.sql("CREATE TABLE counted (x INT)").await;
    let (_, after) = app.get_json("/config/ducklake").await;
    assert_eq!(after["tables"].as_i64().unwrap(), tables + 1);
    assert_eq!(
        after["snapshot_id"].as_i64().unwrap(),
        lake["snapshot_id"].as_i64().unwrap() + 1
    );

    let (_, summary) = app.get_json("/config/summary").await;
    let password = summary["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "postgres.password")
        .expect("every setting is listed");
    assert_eq!(password["value"], "***");

    for path in [
        "/config/summary",
        "/config/ducklake",
        "/metrics",
        "/metrics/memory",
        "/ready",
        "/openapi.json",
    ] {
        let text = app.get_text(path).await;
        assert!(!text.contains(MARKER), "{path} shows a secret");
    }
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.features.enable_memory_monitoring = false;
    let app = spawn_with(config, None).await;
    let (status, _) = app.get_json("/metrics/memory").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[actix_web::test]
async fn performance_windows_and_slowest_queries_without_literals() {
    let app = common::spawn_app().await;
    for _ in 0..3 {
        app.sql("SELECT 'top-secret-literal' AS s, 12345 AS n")
            .await;
    }
    // Slowest by a wide margin: a real scan of 300M rows (a bare count(*)
    // over range() is answered from its cardinality, in no time).
    app.sql("SELECT count(*) FROM range(300000000) t(i) WHERE i % 7 = 3")
        .await;
    let (status, _) = app
        .post_query(json!({"sql": "SELECT * FROM missing_table"}))
        .await;
    assert_eq!(status, 404);
    let (status, perf) = app.get_json("/metrics/performance").await;
    assert_eq!(status, 200);
    let route = &perf["routes"]["POST /api/v1/query"]["1m"];
    assert_eq!(route["count"], 5, "{perf}");
    let reads = &perf["query_kinds"]["read"];
    for window in ["1m", "5m", "1h"] {
        assert_eq!(reads[window]["count"], 5, "{perf}");
        assert_eq!(reads[window]["errors"], 1, "{perf}");
        assert!(
            reads[window]["p99_ms"].as_f64().unwrap() >= reads[window]["p50_ms"].as_f64().unwrap()
        );
    }
    let slowest = &perf["slowest_queries"][0];
    assert_eq!(
        slowest["fingerprint"], "SELECT count(*) FROM range(?) t(i) WHERE i % ? = ?",
        "{perf}"
    );
    assert_eq!(slowest["rows"], 1);
    let text = perf.to_string();
    assert!(
        !text.contains("top-secret-literal") && !text.contains("12345"),
        "{text}"
    );
    app.stop().await;
}

/// A real Prometheus (Debian's package) scrapes the service: the target is
/// up and our series are queryable through Prometheus's own API.
#[actix_web::test]
async fn a_real_prometheus_scrapes_the_service() {
    let app = common::spawn_app().await;
    app.sql("SELECT 1").await;
    let target = app.base.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ducklake\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = common::free_port();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (Debian package) is installed");
    let query = |q: &str| {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
        async move {
            let res = reqwest::get(url).await.ok()?;
            let body: serde_json::Value = res.json().await.ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        }
    };
    // Prometheus scrapes every second; the bound only catches a scrape that
    // never happens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let (Some(up), Some(info)) = (
            query("up%7Bjob%3D%22ducklake%22%7D").await,
            query("ducklake_build_info").await,
        ) {
            seen = Some((up, info));
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(
        seen,
        Some(("1".to_string(), "1".to_string())),
        "Prometheus did not scrape the service"
    );
    app.stop().await;
}

/// One Prometheus sample, or 0 when its series is absent: only for labelled
/// counters whose series appears with its first event.
fn sample_or_zero(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
