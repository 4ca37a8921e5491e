//! Backup and restore of the production layout (PostgreSQL catalog, S3
//! prefix), by the commands docs/src/guides/operating.md shows, taken from
//! the page as they stand: a backup while the service writes, more writes
//! and maintenance that deletes backed-up files from the bucket, a restore
//! with the service stopped, and the restarted service reads exactly the
//! backed-up lake and writes again.

use crate::{common, docs::labelled_block};

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
};

use common::{
    binary::Replica,
    servers::{stack_env, Postgres, S3},
};
use serde_json::{json, Value};

const PAGE: &str = "guides/operating.md";
const BUCKET: &str = "backup-lake";
const PREFIX: &str = "lake";

/// Runs the page's blocks labelled `labels`, in that order, as one bash
/// script in `dir`, with the service's environment `env` and nothing of the
/// test's own (an operator's shell holds the ConfigMap and the Secret; a
/// variable of ours, such as a CA bundle, must not change the outcome).
fn run_documented(labels: &[&str], dir: &Path, env: &[(&str, String)]) -> String {
    let script: String = labels
        .iter()
        .map(|label| labelled_block(PAGE, label))
        .collect();
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{labels:?} failed ({}); rclone comes from scripts/install-test-deps.sh:\n{script}\n{text}",
        out.status
    );
    text
}

/// POSTs `body` to `path`; status and JSON answer.
async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

/// Runs SQL that must succeed (at `snapshot` when given); its rows.
async fn rows(base: &str, sql: &str, snapshot: Option<i64>) -> Value {
    let mut body = json!({ "sql": sql });
    if let Some(snapshot) = snapshot {
        body["snapshot"] = json!(snapshot);
    }
    let (status, answer) = post(base, "/api/v1/query", body).await;
    assert_eq!(status, 200, "{sql} -> {answer}");
    answer["rows"].clone()
}

/// What a reader of the lake sees: every snapshot, the lake's tables, and
/// the rows of the tables the test wrote before its backup.
async fn lake_state(base: &str) -> Value {
    json!({
        "snapshots": rows(base, "SELECT * FROM ducklake_snapshots('lake') ORDER BY snapshot_id", None).await,
        "tables": rows(base, "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'lake' ORDER BY ALL", None).await,
        "kept": rows(base, "SELECT * FROM kept ORDER BY id", None).await,
        "logs": rows(base, "SELECT * FROM logs ORDER BY ALL", None).await,
        "other": rows(base, "SELECT * FROM other ORDER BY k", None).await,
    })
}

async fn current_snapshot(base: &str) -> i64 {
    rows(
        base,
        "SELECT max(snapshot_id) FROM ducklake_snapshots('lake')",
        None,
    )
    .await[0][0]
        .as_i64()
        .expect("a snapshot id")
}

/// The keys under the lake's prefix in the bucket.
fn bucket_files(s3: &S3) -> BTreeSet<String> {
    s3.list(BUCKET)
        .lines()
        .filter_map(|line| line.strip_prefix("<Key>")?.strip_suffix("</Key>"))
        .filter(|key| key.starts_with(&format!("{PREFIX}/")))
        .map(str::to_string)
        .collect()
}

/// The files of the backup's copy, as keys under the lake's prefix.
fn backup_files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, into: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, into);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                into.insert(format!("{PREFIX}/{relative}"));
            }
        }
    }
    let mut files = BTreeSet::new();
    walk(root, root, &mut files);
    files
}

#[actix_web::test]
async fn postgres_and_s3_back_up_and_restore_as_documented() {
    let pg = Postgres::start();
    let s3 = S3::start(BUCKET);
    let env = stack_env(&pg, "lake_backup", &s3, BUCKET, PREFIX);
    let data_dir = tempfile::tempdir().unwrap();
    let workdir = tempfile::tempdir().unwrap();

    let service = Replica::start(data_dir.path(), &env).await;
    let base = service.base.clone();
    for sql in [
        "CREATE TABLE kept (id INTEGER, v VARCHAR)",
        "INSERT INTO kept SELECT range, 'a' || range FROM range(0, 1000)",
        "INSERT INTO kept SELECT range, 'b' || range FROM range(1000, 2000)",
        "DELETE FROM kept WHERE id % 10 = 0",
        "UPDATE kept SET v = 'updated' WHERE id < 5",
    ] {
        rows(&base, sql, None).await;
    }
    let early = current_snapshot(&base).await;
    let early_answer = rows(&base, "SELECT count(*), sum(id) FROM kept", Some(early)).await;
    for sql in [
        "CREATE TABLE other AS SELECT range AS k, range * 2 AS w FROM range(50)",
        // Files without deletes: what a compaction after the backup merges
        // away and a cleanup deletes from the bucket.
        "CREATE TABLE logs (n INTEGER, line VARCHAR)",
    ] {
        rows(&base, sql, None).await;
    }
    for batch in 0..4 {
        rows(
            &base,
            &format!(
                "INSERT INTO logs SELECT range, 'line ' || range FROM range({}, {})",
                batch * 200,
                batch * 200 + 200
            ),
            None,
        )
        .await;
    }
    let backed_up = lake_state(&base).await;
    assert_eq!(backed_up["kept"].as_array().unwrap().len(), 1800);

    // The backup, while the service runs.
    run_documented(&["lake-settings", "lake-backup"], workdir.path(), &env);
    let copied = backup_files(&workdir.path().join("lake-backup"));
    assert!(
        copied.iter().filter(|f| f.ends_with(".parquet")).count() >= 7,
        "{copied:?}"
    );
    assert!(
        workdir
            .path()
            .join("catalog.dump")
            .metadata()
            .unwrap()
            .len()
            > 0
    );

    // More writes, then maintenance that deletes backed-up files.
    for sql in [
        "INSERT INTO kept SELECT range, 'c' || range FROM range(2000, 2500)",
        "CREATE TABLE later (x INTEGER)",
        "INSERT INTO later VALUES (1), (2)",
        "DELETE FROM other WHERE k < 25",
        "DELETE FROM kept WHERE id BETWEEN 100 AND 199",
    ] {
        rows(&base, sql, None).await;
    }
    let (status, compacted) = post(&base, "/api/v1/maintenance/compact", json!({})).await;
    assert_eq!(status, 200, "{compacted}");
    let now = current_snapshot(&base).await;
    let (status, expired) = post(
        &base,
        "/api/v1/maintenance/expire",
        json!({ "before_snapshot": now }),
    )
    .await;
    assert_eq!(status, 200, "{expired}");
    let (status, cleaned) = post(&base, "/api/v1/maintenance/cleanup", json!({})).await;
    assert_eq!(status, 200, "{cleaned}");
    let (status, _) = post(
        &base,
        "/api/v1/query",
        json!({"sql": "SELECT count(*) FROM kept", "snapshot": early}),
    )
    .await;
    assert_eq!(status, 422, "the early snapshot is expired now");
    let in_bucket = bucket_files(&s3);
    let gone: Vec<_> = copied.difference(&in_bucket).collect();
    let since: Vec<_> = in_bucket.difference(&copied).collect();
    assert!(
        !gone.is_empty() && !since.is_empty(),
        "cleanup deleted backed-up files ({gone:?}) and files were written since ({since:?})"
    );
    assert_ne!(lake_state(&base).await, backed_up);

    // The restore, with the service stopped.
    service.stop();
    run_documented(&["lake-settings", "lake-restore"], workdir.path(), &env);
    assert_eq!(
        bucket_files(&s3),
        copied,
        "the prefix is the copy again, nothing more"
    );

    // Started again on the restored catalog, refusing to migrate: our own
    // schema came back with its migration history.
    let env: Vec<_> = env
        .into_iter()
        .map(|(k, v)| match k {
            "DB_POSTGRES_MIGRATE_ON_START" => (k, "false".to_string()),
            _ => (k, v),
        })
        .collect();
    let service = Replica::start(data_dir.path(), &env).await;
    let base = service.base.clone();
    assert_eq!(lake_state(&base).await, backed_up);
    let (status, _) = post(
        &base,
        "/api/v1/query",
        json!({"sql": "SELECT * FROM later"}),
    )
    .await;
    assert_eq!(status, 404, "the table made after the backup is gone");
    assert_eq!(
        rows(&base, "SELECT count(*), sum(id) FROM kept", Some(early)).await,
        early_answer,
        "time travel to a backed-up snapshot reads its files again"
    );

    // And it writes again, on from the backed-up snapshot.
    let last = current_snapshot(&base).await;
    rows(&base, "INSERT INTO kept VALUES (-1, 'after')", None).await;
    rows(&base, "CREATE TABLE later (y VARCHAR)", None).await;
    assert_eq!(current_snapshot(&base).await, last + 2);
    assert_eq!(
        rows(&base, "SELECT count(*), min(id) FROM kept", None).await,
        json!([[1801, -1]])
    );
    assert_eq!(
        rows(&base, "SELECT count(*) FROM later", None).await,
        json!([[0]])
    );
    service.stop();
}
