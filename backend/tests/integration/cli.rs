//! `ducklake-backend client ...`: the real binary as a subprocess against a
//! service started in-process, one test per subcommand group, checking
//! stdout, stderr and the exit code a script would see (stdout and stderr
//! are pipes here, so no progress bar may write anything; a pseudo-terminal
//! from `script` checks that one is drawn when stderr is a terminal).

use crate::common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use common::{binary::service_command, spawn_app, spawn_with, test_config, TestApp};
use ducklake_backend::config::Secret;
use serde_json::Value;

const SLOW_SQL: &str = "SELECT count(*) FROM range(10000000000) t(i) WHERE i % 7 = 3";

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).to_string()
    }

    #[track_caller]
    fn ok(&self) -> String {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        self.out()
    }
}

/// Runs `ducklake-backend client ARGS` with a clean environment (PATH, a
/// HOME of the test's own, then `env`), `input` on stdin.
async fn run_client(home: &Path, env: &[(&str, &str)], args: &[&str], input: &[u8]) -> Run {
    let home = home.to_path_buf();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let input = input.to_vec();
    actix_web::rt::task::spawn_blocking(move || {
        let mut child = service_command()
            .arg("client")
            .args(&args)
            .env("HOME", &home)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client starts");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    })
    .await
    .unwrap()
}

/// A running service and a home directory for the client.
struct Ctx {
    app: TestApp,
    home: tempfile::TempDir,
}

impl Ctx {
    async fn new() -> Self {
        Self::with(spawn_app().await).await
    }

    async fn with(app: TestApp) -> Self {
        Self {
            app,
            home: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args, b"").await
    }

    async fn run_with(&self, env: &[(&str, &str)], args: &[&str], input: &[u8]) -> Run {
        let mut all = vec![("DUCKLAKE_URL", self.app.base.as_str())];
        all.extend_from_slice(env);
        run_client(self.home.path(), &all, args, input).await
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

/// No carriage returns and no escape sequences: nothing a progress bar draws.
#[track_caller]
fn assert_no_terminal_codes(text: &str) {
    assert!(
        !text.contains('\r') && !text.contains('\x1b'),
        "terminal codes in {text:?}"
    );
}

fn parquet_rows(path: PathBuf) -> i64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).unwrap();
    let reader = SerializedFileReader::new(file).expect("a Parquet file");
    reader.metadata().file_metadata().num_rows()
}

#[actix_web::test]
async fn query_reads_sql_from_an_argument_a_file_and_stdin_in_each_text_format() {
    let ctx = Ctx::new().await;
    ctx.app
        .sql("CREATE TABLE people AS SELECT * FROM (VALUES (1, 'ann', 2.5::DOUBLE), (2, 'bob', NULL)) t(id, name, score)")
        .await;
    let sql = "SELECT id, name, score FROM people ORDER BY id";

    // stdout is a pipe: CSV unless --format says otherwise.
    let csv = ctx.run(&["query", sql]).await;
    assert_eq!(csv.ok(), "id,name,score\n1,ann,2.5\n2,bob,\n");
    assert_no_terminal_codes(&csv.stderr);

    std::fs::write(ctx.path("q.sql"), sql).unwrap();
    let from_file = ctx.run(&["query", "--file", &ctx.arg("q.sql")]).await;
    assert_eq!(from_file.ok(), csv.out());
    let from_stdin = ctx.run_with(&[], &["query"], sql.as_bytes()).await;
    assert_eq!(from_stdin.ok(), csv.out());
    let dash = ctx
        .run_with(&[], &["query", "-", "--format", "tsv"], sql.as_bytes())
        .await;
    assert_eq!(dash.ok(), "id\tname\tscore\n1\tann\t2.5\n2\tbob\t\n");

    let json: Value =
        serde_json::from_str(&ctx.run(&["query", sql, "--format", "json"]).await.ok()).unwrap();
    assert_eq!(
        json["rows"],
        serde_json::json!([[1, "ann", 2.5], [2, "bob", null]])
    );
    let objects: Value = serde_json::from_str(
        &ctx.run(&["query", sql, "--format", "json_objects"])
            .await
            .ok(),
    )
    .unwrap();
    assert_eq!(objects["rows"][1]["name"], "bob");
    let ndjson = ctx.run(&["query", sql, "--format", "ndjson"]).await.ok();
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["name"], "ann");

    // The table a terminal would get, here asked for explicitly.
    let table = ctx.run(&["query", sql, "--format", "table"]).await;
    let text = table.ok();
    assert!(text.contains("│ id ┆ name ┆ score │"), "{text}");
    assert!(text.contains("│  2 ┆ bob  ┆  NULL │"), "{text}");
    assert!(table.stderr.contains("2 rows"), "{}", table.stderr);
    assert_no_terminal_codes(&text);

    // Parameters and time travel go through.
    let param = ctx
        .run(&[
            "query",
            "SELECT name FROM people WHERE id = ?",
            "--params",
            "[2]",
        ])
        .await;
    assert_eq!(param.ok(), "name\nbob\n");
    let snapshot =
        ctx.app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"].to_string();
    ctx.app.sql("INSERT INTO people VALUES (3, 'cy', 1)").await;
    let old = ctx
        .run(&[
            "query",
            "SELECT count(*) AS n FROM people",
            "--snapshot",
            &snapshot,
        ])
        .await;
    assert_eq!(old.ok(), "n\n2\n");
}

#[actix_web::test]
async fn query_writes_arrow_and_parquet_to_stdout_or_files_by_extension() {
    let ctx = Ctx::new().await;
    let sql = "SELECT range AS i, range::VARCHAR AS s FROM range(5000)";
    let parquet = ctx.run(&["query", sql, "-o", &ctx.arg("r.parquet")]).await;
    assert_eq!(parquet.ok(), "", "the result went to the file");
    assert_eq!(parquet_rows(ctx.path("r.parquet")), 5000);

    let arrow = ctx.run(&["query", sql, "--format", "arrow"]).await.stdout;
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
    let rows: usize = reader.map(|batch| batch.unwrap().num_rows()).sum();
    assert_eq!(rows, 5000);

    let csv = ctx.run(&["query", sql, "-o", &ctx.arg("r.csv")]).await;
    csv.ok();
    let text = std::fs::read_to_string(ctx.path("r.csv")).unwrap();
    assert_eq!(text.lines().count(), 5001);
    assert!(text.starts_with("i,s\n0,0\n"));
}

/// `client ... | head -c 0`: the reader is gone before the output is written.
async fn run_with_closed_stdout(ctx: &Ctx, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = service_command();
    cmd.arg("client")
        .args(args)
        .env("HOME", ctx.home.path())
        .env("DUCKLAKE_URL", &ctx.app.base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    actix_web::rt::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_reader_that_goes_away_is_not_an_error() {
    let ctx = Ctx::new().await;
    ctx.app
        .sql("CREATE TABLE wide AS SELECT range AS id FROM range(10)")
        .await;
    for args in [
        &["query", "SELECT range, repeat('x', 100) FROM range(90000)"][..],
        &["query", "SELECT * FROM wide", "--format", "table"],
        &["tables"],
        &["health"],
    ] {
        let (code, stderr) = run_with_closed_stdout(&ctx, args).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[actix_web::test]
async fn an_api_error_exits_1_worded_as_the_api_words_it() {
    let ctx = Ctx::new().await;
    let sql = "SELEC 1";
    let (status, body) = ctx.app.post_query(serde_json::json!({ "sql": sql })).await;
    assert_eq!(status, 400);
    let run = ctx.run(&["query", sql, "-o", &ctx.arg("out.csv")]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error: sql_error: {}\n",
            body["error"]["message"].as_str().unwrap()
        )
    );
    assert!(run.stdout.is_empty());
    assert!(
        !ctx.path("out.csv").exists(),
        "no file is left for a failed query"
    );

    let missing = ctx.run(&["describe", "main.nope"]).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.starts_with("error: not_found: "),
        "{}",
        missing.stderr
    );
}

#[actix_web::test]
async fn a_server_error_or_an_unreachable_service_exits_3() {
    let ctx = Ctx::new().await;
    let timeout = ctx.run(&["query", SLOW_SQL, "--timeout-ms", "200"]).await;
    assert_eq!(timeout.code, Some(3), "{}", timeout.stderr);
    assert!(
        timeout.stderr.starts_with("error: query_timeout: "),
        "{}",
        timeout.stderr
    );

    let port = common::free_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    for args in [&["health"][..], &["query", "SELECT 1"], &["tables"]] {
        let run = run_client(ctx.home.path(), &[("DUCKLAKE_URL", &nowhere)], args, b"").await;
        assert_eq!(run.code, Some(3), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("error: cannot connect to {nowhere}: ")),
            "{}",
            run.stderr
        );
    }
}

#[actix_web::test]
async fn usage_errors_exit_2() {
    let ctx = Ctx::new().await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["query", "SELECT 1", "--no-such-flag"],
            "unexpected argument",
        ),
        (&["query", "SELECT 1", "--format", "xml"], "invalid value"),
        (&["query"], "no SQL"),
        (
            &["ingest", "data.xlsx", "--table", "t"],
            "--format csv|tsv|ndjson|parquet",
        ),
        (&["ingest", "missing.csv", "--table", "t"], "cannot read"),
    ];
    for (args, message) in cases {
        let run = ctx.run(args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    let bad_url = run_client(
        ctx.home.path(),
        &[("DUCKLAKE_URL", "ftp://x")],
        &["health"],
        b"",
    )
    .await;
    assert_eq!(bad_url.code, Some(2));
    let no_config = ctx
        .run(&["--config", "/nonexistent/client.toml", "health"])
        .await;
    assert_eq!(no_config.code, Some(2));
    assert!(
        no_config.stderr.contains("does not exist"),
        "{}",
        no_config.stderr
    );
}

/// Runs the client under a pseudo-terminal (`script`): stdout and stderr are
/// a terminal, merged into the returned text.
async fn run_on_terminal(ctx: &Ctx, args: &[&str]) -> (Option<i32>, String) {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let command = std::iter::once(common::binary::BIN)
        .chain(["client"])
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let base = ctx.app.base.clone();
    let home = ctx.home.path().to_path_buf();
    actix_web::rt::task::spawn_blocking(move || {
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("TERM", "xterm")
            .env("DUCKLAKE_URL", base)
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux) runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn ingest_loads_csv_and_parquet_and_draws_no_bar_when_not_a_terminal() {
    let ctx = Ctx::new().await;
    let mut csv = String::from("id,name\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{i},name {i}\n"));
    }
    std::fs::write(ctx.path("people.csv"), &csv).unwrap();
    let created = ctx
        .run(&[
            "ingest",
            &ctx.arg("people.csv"),
            "--table",
            "main.people",
            "--mode",
            "create",
        ])
        .await;
    let out = created.ok();
    assert!(
        out.starts_with("loaded 20000 rows into main.people (create, "),
        "{out}"
    );
    assert_no_terminal_codes(&created.stderr);
    assert_no_terminal_codes(&out);
    assert_eq!(
        ctx.app.sql("SELECT count(*) FROM people").await["rows"][0][0],
        20000
    );

    // Parquet, made by the client itself, appended (and its Content-Type from the extension).
    ctx.run(&[
        "query",
        "SELECT * FROM people WHERE id < 500",
        "-o",
        &ctx.arg("some.parquet"),
    ])
    .await
    .ok();
    let appended = ctx
        .run(&["ingest", &ctx.arg("some.parquet"), "-t", "people", "--json"])
        .await;
    let result: Value = serde_json::from_str(&appended.ok()).unwrap();
    assert_eq!(result["rows_loaded"], 500);
    assert_eq!(result["format"], "parquet");
    assert_eq!(result["mode"], "append");
    assert_no_terminal_codes(&appended.stderr);
    assert_eq!(
        ctx.app.sql("SELECT count(*) FROM people").await["rows"][0][0],
        20500
    );

    // An explicit --format for a file without a known extension; replace.
    std::fs::write(ctx.path("few.data"), "id,name\n1,x\n").unwrap();
    let replaced = ctx
        .run(&[
            "ingest",
            &ctx.arg("few.data"),
            "-t",
            "main.people",
            "--format",
            "csv",
            "--mode",
            "replace",
        ])
        .await;
    assert!(replaced.ok().starts_with("loaded 1 rows"));
    assert_eq!(
        ctx.app.sql("SELECT count(*) FROM people").await["rows"][0][0],
        1
    );

    let wrong = ctx
        .run(&["ingest", &ctx.arg("people.csv"), "-t", "nope.people"])
        .await;
    assert_eq!(wrong.code, Some(1));
    assert!(
        wrong.stderr.starts_with("error: not_found: "),
        "{}",
        wrong.stderr
    );
    assert_no_terminal_codes(&wrong.stderr);
}

#[actix_web::test]
async fn on_a_terminal_ingest_draws_a_bar_unless_no_progress() {
    let ctx = Ctx::new().await;
    let mut csv = String::from("id,payload\n");
    for i in 0..200_000 {
        csv.push_str(&format!("{i},{}\n", "x".repeat(20)));
    }
    std::fs::write(ctx.path("big.csv"), &csv).unwrap();
    let file = ctx.arg("big.csv");
    let (code, screen) =
        run_on_terminal(&ctx, &["ingest", &file, "-t", "big", "--mode", "create"]).await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains('\x1b'), "a bar was drawn: {screen:?}");
    assert!(screen.contains("B/s"), "the bar shows the rate: {screen:?}");
    assert!(
        screen.contains("loaded 200000 rows into main.big"),
        "{screen}"
    );

    let (code, screen) =
        run_on_terminal(&ctx, &["--no-progress", "ingest", &file, "-t", "big"]).await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        !screen.contains('\x1b'),
        "no bar with --no-progress: {screen:?}"
    );
    assert!(screen.contains("loaded 200000 rows"), "{screen}");

    // Watching a job draws a bar of its progress.
    let (code, screen) = run_on_terminal(
        &ctx,
        &[
            "jobs",
            "submit",
            "--wait",
            "SELECT sum(hash(i)) AS s FROM range(200000000) t(i)",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains('\x1b') && screen.contains("%") && screen.contains('['),
        "a percent bar was drawn: {screen:?}"
    );

    // Binary results are not written to a terminal.
    let (code, screen) = run_on_terminal(&ctx, &["query", "SELECT 1", "--format", "parquet"]).await;
    assert_eq!(code, Some(2), "{screen}");
    assert!(screen.contains("parquet is binary"), "{screen}");
}

#[actix_web::test]
async fn tables_schemas_and_snapshots_follow_every_page() {
    let ctx = Ctx::new().await;
    ctx.app.sql("CREATE SCHEMA sales").await;
    for i in 0..5 {
        ctx.app
            .sql(&format!(
                "CREATE TABLE sales.t{i} AS SELECT range AS id FROM range({i})"
            ))
            .await;
    }
    let listed = ctx
        .run(&["tables", "--schema", "sales", "--page-size", "2", "--json"])
        .await;
    let tables: Vec<Value> = serde_json::from_str(&listed.ok()).unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(tables[3]["row_count"], 3);

    let limited = ctx
        .run(&[
            "tables",
            "--schema",
            "sales",
            "--page-size",
            "2",
            "--limit",
            "3",
            "--json",
        ])
        .await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&limited.ok())
            .unwrap()
            .len(),
        3
    );
    let prefixed = ctx.run(&["tables", "--prefix", "t4", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&prefixed.ok())
            .unwrap()
            .len(),
        1
    );

    let table = ctx.run(&["tables", "--page-size", "1"]).await.ok();
    for i in 0..5 {
        assert!(table.contains(&format!("│ sales  ┆ t{i} ")), "{table}");
    }

    let schemas = ctx
        .run(&["schemas", "--json", "--page-size", "1"])
        .await
        .ok();
    let schemas: Vec<Value> = serde_json::from_str(&schemas).unwrap();
    let sales = schemas
        .iter()
        .find(|s| s["name"] == "sales")
        .expect("sales listed");
    assert_eq!(sales["table_count"], 5);

    let (_, api) = ctx.app.get_json("/api/v1/snapshots?limit=1000").await;
    let expected: Vec<&Value> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert!(expected.len() >= 6, "{api}");
    let snapshots = ctx
        .run(&["snapshots", "--page-size", "2", "--json"])
        .await
        .ok();
    let snapshots: Vec<Value> = serde_json::from_str(&snapshots).unwrap();
    let ids: Vec<&Value> = snapshots.iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, expected);
    let text = ctx.run(&["snapshots", "--limit", "2"]).await.ok();
    assert_eq!(text.matches("tables_created").count(), 2, "{text}");

    let described = ctx.run(&["describe", "sales.t3"]).await.ok();
    assert!(described.starts_with("sales.t3: 3 rows"), "{described}");
    assert!(described.contains("│ id "), "{described}");
}

#[actix_web::test]
async fn jobs_submit_wait_result_status_list_and_cancel() {
    let ctx = Ctx::new().await;
    let sql = "SELECT range AS i FROM range(3)";
    let waited = ctx
        .run(&["jobs", "submit", sql, "--wait", "--format", "csv"])
        .await;
    assert_eq!(waited.ok(), "i\n0\n1\n2\n");
    assert!(
        waited.stderr.starts_with("submitted job "),
        "{}",
        waited.stderr
    );
    assert_no_terminal_codes(&waited.stderr);

    let id = ctx
        .run(&["jobs", "submit", sql, "--format", "ndjson"])
        .await
        .ok();
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let wait = ctx.run(&["jobs", "wait", &id]).await.ok();
    assert!(wait.contains(&format!("job {id}: succeeded")), "{wait}");
    assert!(wait.contains("rows: 3"), "{wait}");
    let status: Value =
        serde_json::from_str(&ctx.run(&["jobs", "status", &id, "--json"]).await.ok()).unwrap();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["format"], "ndjson");
    let result = ctx
        .run(&["jobs", "result", &id, "--format", "json"])
        .await
        .ok();
    assert_eq!(
        serde_json::from_str::<Value>(&result).unwrap()["rows"],
        serde_json::json!([[0], [1], [2]])
    );
    ctx.run(&["jobs", "result", &id, "-o", &ctx.arg("job.parquet")])
        .await
        .ok();
    assert_eq!(parquet_rows(ctx.path("job.parquet")), 3);

    let slow = ctx
        .run(&["jobs", "submit", SLOW_SQL])
        .await
        .ok()
        .trim()
        .to_string();
    let listed = ctx
        .run(&["jobs", "list", "--json", "--page-size", "1"])
        .await
        .ok();
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], slow, "newest first");
    assert!(ids.contains(&id.as_str()));
    let succeeded = ctx
        .run(&["jobs", "list", "--status", "succeeded", "--json"])
        .await
        .ok();
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&succeeded)
            .unwrap()
            .len(),
        2
    );

    let cancelled = ctx.run(&["jobs", "cancel", &slow]).await.ok();
    assert!(
        cancelled.contains(&slow) && cancelled.contains("cancel"),
        "{cancelled}"
    );
    let wait = ctx.run(&["jobs", "wait", &slow, "--poll-ms", "50"]).await;
    assert_eq!(wait.code, Some(4), "{}", wait.stderr);
    assert!(
        wait.stderr.starts_with("error: cancelled: "),
        "{}",
        wait.stderr
    );
    let no_result = ctx.run(&["jobs", "result", &slow]).await;
    assert_eq!(no_result.code, Some(1));
    assert!(
        no_result.stderr.starts_with("error: result_unavailable: "),
        "{}",
        no_result.stderr
    );

    let deleted = ctx.run(&["jobs", "cancel", &id]).await.ok();
    assert!(deleted.starts_with("deleted job"), "{deleted}");
    let gone = ctx.run(&["jobs", "status", &id]).await;
    assert_eq!(gone.code, Some(1));
    assert!(
        gone.stderr.starts_with("error: not_found: "),
        "{}",
        gone.stderr
    );

    let failed = ctx.run(&["jobs", "submit", "SELEC 1", "--wait"]).await;
    assert_eq!(failed.code, Some(4), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("error: sql_error: "),
        "{}",
        failed.stderr
    );
}

#[actix_web::test]
async fn health_reports_each_dependency() {
    let ctx = Ctx::new().await;
    let run = ctx.run(&["health"]).await;
    let text = run.ok();
    assert!(
        text.starts_with(&format!(
            "ducklake-backend {} at {}: ready",
            env!("CARGO_PKG_VERSION"),
            ctx.app.base
        )),
        "{text}"
    );
    for component in ["catalog", "storage", "lake"] {
        assert!(text.contains(&format!("│ {component}")), "{text}");
    }
    let json: Value = serde_json::from_str(&ctx.run(&["health", "--json"]).await.ok()).unwrap();
    assert_eq!(json["health"]["status"], "ok");
    assert_eq!(json["ready"]["components"]["lake"]["status"], "up");
}

#[actix_web::test]
async fn auth_comes_from_flags_env_or_the_config_file_and_the_key_is_never_printed() {
    const BOOTSTRAP: &str = "bootstrap-admin-key-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    let ctx = Ctx::with(spawn_with(config, Some(dir)).await).await;
    let mut outputs = Vec::new();

    let anonymous = ctx.run(&["tables"]).await;
    assert_eq!(anonymous.code, Some(1));
    assert!(
        anonymous.stderr.starts_with("error: unauthorized: "),
        "{}",
        anonymous.stderr
    );
    outputs.push(anonymous);

    let by_env = ctx
        .run_with(
            &[("DUCKLAKE_KEY", BOOTSTRAP)],
            &["query", "SELECT 42 AS x"],
            b"",
        )
        .await;
    assert_eq!(by_env.ok(), "x\n42\n");
    outputs.push(by_env);

    // The default config file, with the URL too (no DUCKLAKE_URL).
    let config_dir = ctx.path(".config/ducklake");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("client.toml"),
        format!("url = \"{}\"\nkey = \"{BOOTSTRAP}\"\n", ctx.app.base),
    )
    .unwrap();
    let by_file = run_client(ctx.home.path(), &[], &["query", "SELECT 43 AS x"], b"").await;
    assert_eq!(by_file.ok(), "x\n43\n");
    outputs.push(by_file);

    // A flag beats the file; --config names another file.
    let flag = run_client(ctx.home.path(), &[], &["--key", "dlk_wrong", "tables"], b"").await;
    assert_eq!(flag.code, Some(1), "{}", flag.stderr);
    assert!(
        flag.stderr.starts_with("error: unauthorized: "),
        "{}",
        flag.stderr
    );
    std::fs::write(
        ctx.path("other.toml"),
        format!("url = \"{}\"\nkey = \"dlk_other\"\n", ctx.app.base),
    )
    .unwrap();
    let other = run_client(
        ctx.home.path(),
        &[],
        &["--config", &ctx.arg("other.toml"), "tables"],
        b"",
    )
    .await;
    assert_eq!(other.code, Some(1), "{}", other.stderr);
    let env_key = run_client(
        ctx.home.path(),
        &[("DUCKLAKE_KEY", BOOTSTRAP)],
        &["--config", &ctx.arg("other.toml"), "jobs", "list"],
        b"",
    )
    .await;
    env_key.ok();
    outputs.extend([flag, other, env_key]);

    let help = ctx
        .run_with(&[("DUCKLAKE_KEY", BOOTSTRAP)], &["query", "--help"], b"")
        .await;
    assert!(help.ok().contains("DUCKLAKE_KEY"));
    outputs.push(help);
    for run in &outputs {
        assert!(!run.out().contains(BOOTSTRAP) && !run.stderr.contains(BOOTSTRAP));
    }
}
