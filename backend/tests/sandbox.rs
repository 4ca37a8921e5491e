//! User SQL reads and writes the lake and nothing else: DuckDB's own
//! sandbox, set after the service's set-up, refuses host files, the network,
//! extensions, settings and other databases with 403 `forbidden_statement`.

mod common;

use common::{error_code, spawn_with, test_config};
use serde_json::json;

#[actix_web::test]
async fn attack_statements_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let app = spawn_with(test_config(dir.path()), None).await;
    app.sql("CREATE TABLE victim AS SELECT range AS n FROM range(10)")
        .await;
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display().to_string();
    std::fs::write(outside.path().join("host.csv"), "a,b\n1,2\n").unwrap();

    let attacks = [
        format!("SELECT * FROM read_csv('{out}/host.csv')"),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        "SELECT * FROM read_text('/etc/hostname')".to_string(),
        "SELECT * FROM read_blob('/etc/passwd')".to_string(),
        "SELECT * FROM read_json('/etc/os-release')".to_string(),
        "SELECT * FROM read_ndjson_objects('/etc/passwd')".to_string(),
        format!("SELECT * FROM read_parquet('{out}/x.parquet')"),
        "SELECT * FROM parquet_metadata('/etc/passwd')".to_string(),
        "SELECT * FROM sniff_csv('/etc/passwd')".to_string(),
        "SELECT * FROM glob('/etc/*')".to_string(),
        format!("SELECT * FROM '{out}/host.csv'"),
        format!("SELECT * FROM read_blob('{data}/service.duckdb')"),
        format!("COPY (SELECT 1) TO '{out}/leak.csv'"),
        format!("COPY victim TO '{out}/leak.parquet' (FORMAT parquet)"),
        format!("COPY victim FROM '{out}/host.csv'"),
        format!("COPY (SELECT 1) TO '{data}/lake/../escape.csv'"),
        format!("ATTACH '{out}/other.db' AS other"),
        format!("ATTACH '{data}/service.duckdb' AS ours"),
        format!("EXPORT DATABASE '{out}/export'"),
        format!("IMPORT DATABASE '{out}'"),
        "INSTALL httpfs".to_string(),
        "LOAD httpfs".to_string(),
        format!("LOAD '{out}/evil.duckdb_extension'"),
        "FORCE INSTALL ducklake".to_string(),
        "SET memory_limit = '1TB'".to_string(),
        "SET enable_external_access = true".to_string(),
        "SET allowed_directories = ['/']".to_string(),
        "RESET lock_configuration".to_string(),
        "SET GLOBAL threads = 64".to_string(),
        "PRAGMA memory_limit = '1TB'".to_string(),
        "SET temp_directory = '/tmp'".to_string(),
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')".to_string(),
        "SELECT * FROM read_text('https://example.com/')".to_string(),
        format!("CREATE TABLE stolen AS SELECT * FROM read_csv('{out}/host.csv')"),
        format!("INSERT INTO victim SELECT a FROM read_csv('{out}/host.csv')"),
        format!("SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'"),
        "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT count(*) FROM x".to_string(),
        format!("SELECT (SELECT count(*) FROM glob('{out}/*'))"),
        format!("CREATE VIEW v AS SELECT * FROM read_csv('{out}/host.csv')"),
        "CREATE MACRO m() AS TABLE SELECT * FROM read_text('/etc/passwd'); SELECT * FROM m()"
            .to_string(),
    ];
    assert!(attacks.len() >= 40, "keep at least 40 attacks");
    let mut failures = Vec::new();
    for sql in &attacks {
        let (status, body) = app.post_query(json!({ "sql": sql })).await;
        if (status, error_code(&body)) != (403, "forbidden_statement") {
            failures.push(format!("{status} {body}  <- {sql}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} statement(s) were not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for leaked in ["leak.csv", "leak.parquet", "export", "second.csv"] {
        assert!(
            !outside.path().join(leaked).exists(),
            "{leaked} was written"
        );
    }
    assert!(!dir.path().join("escape.csv").exists());

    // The lake itself works as before.
    let body = app.sql("SELECT count(*) FROM victim").await;
    assert_eq!(body["rows"], json!([[10]]));
    app.sql("INSERT INTO victim SELECT range FROM range(5000)")
        .await;
    app.sql("CREATE TABLE fresh AS SELECT * FROM victim").await;
    let body = app.sql("SELECT count(*) FROM fresh").await;
    assert_eq!(body["rows"], json!([[5010]]));
    app.stop().await;
}
