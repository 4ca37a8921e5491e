//! The documentation's examples run. Every block marked `sh,runnable` or
//! `python,runnable` in the pages of `docs/src/SUMMARY.md` runs, in the
//! book's order, against one fresh service (the README's against another);
//! a `text,output` block right after one is what it must print, compared
//! with times, durations, ids and keys masked. A block marked `,norun`
//! (Kubernetes, JDBC, a PostgreSQL catalog: what cannot run here) is parsed
//! instead. An example that stops working, or prints something else, fails
//! the test. Words after the mode (`sh,norun,lake-backup`) are labels: a
//! test elsewhere runs the block it finds by its label ([`labelled_block`]).

use crate::common;

use std::path::{Path, PathBuf};

use regex::Regex;

/// One fenced block of a page.
#[derive(Debug)]
struct Block {
    page: String,
    line: usize,
    info: String,
    text: String,
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src")
}

/// The fenced blocks of `path`, in order.
fn blocks(path: &Path, page: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{page}: {e}"));
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    page: page.to_string(),
                    line: n + 1,
                    info: info.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some("")) => blocks.push(open.take().expect("open")),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{page}: a code block is not closed");
    blocks
}

/// The text of the one block of `page` (a path under docs/src) whose info
/// string carries `label` after its mode, for a test that runs a procedure
/// the page shows exactly as shown.
pub fn labelled_block(page: &str, label: &str) -> String {
    let found: Vec<Block> = blocks(&docs().join(page), page)
        .into_iter()
        .filter(|block| block.info.split(',').skip(2).any(|l| l.trim() == label))
        .collect();
    match <[Block; 1]>::try_from(found) {
        Ok([block]) => block.text,
        Err(found) => panic!("{page}: {} blocks labelled {label}", found.len()),
    }
}

/// The book's pages in `SUMMARY.md`'s order.
fn pages() -> Vec<String> {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).unwrap();
    let link = Regex::new(r"\]\(([^)]+\.md)\)").unwrap();
    link.captures_iter(&summary)
        .map(|c| c[1].to_string())
        .collect()
}

/// `text` with what differs from run to run masked, each line's trailing
/// blanks and the trailing blank lines gone.
fn masked(text: &str) -> String {
    let masks = [
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?",
            "<TIME>",
        ),
        (r#""elapsed_ms":\s*[0-9.]+"#, r#""elapsed_ms":<MS>"#),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<UUID>",
        ),
        (r"dlk_[A-Za-z0-9_]+", "<KEY>"),
    ];
    let mut text = text.to_string();
    for (pattern, mask) in masks {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, mask)
            .into_owned();
    }
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

/// Whether `actual` is what the page shows, masked.
fn same_output(expected: &str, actual: &str) -> Result<(), String> {
    let (expected, actual) = (masked(expected), masked(actual));
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "the page shows:\n{expected}\n--- it printed:\n{actual}"
        ))
    }
}

/// Runs the runnable blocks of `pages` against `app`; every failure, named.
async fn run_pages(app: &common::TestApp, pages: &[(String, PathBuf)]) -> Vec<String> {
    let host = app.base.trim_start_matches("http://").to_string();
    let flight = format!("127.0.0.1:{}", app.flight_port.expect("Flight SQL is on"));
    let workdir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(common::binary::BIN)
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for (page, file) in pages {
        let all = blocks(file, page);
        for (i, block) in all.iter().enumerate() {
            let mut info = block.info.split(',').map(str::trim);
            let language = info.next().unwrap_or_default();
            let mode = info.next().unwrap_or_default();
            let program = match language {
                "sh" | "bash" => vec![
                    "bash".to_string(),
                    "-e".into(),
                    "-o".into(),
                    "pipefail".into(),
                ],
                "python" => vec!["python3".to_string(), "-".into()],
                _ => continue,
            };
            let name = format!("{}:{}", block.page, block.line);
            let script = block
                .text
                .replace("localhost:8000", &host)
                .replace("127.0.0.1:8000", &host)
                .replace("127.0.0.1:8815", &flight);
            let mut command = tokio::process::Command::new(&program[0]);
            command
                .args(&program[1..])
                .current_dir(workdir.path())
                .env("PATH", &path)
                .env("DUCKLAKE_URL", &app.base)
                .env_remove("DUCKLAKE_KEY")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            match mode {
                "runnable" => {}
                // What cannot run here is parsed.
                "norun" => {
                    command = match language {
                        "python" => {
                            let mut c = tokio::process::Command::new("python3");
                            c.args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"]);
                            c
                        }
                        _ => {
                            let mut c = tokio::process::Command::new("bash");
                            c.arg("-n");
                            c
                        }
                    };
                    command
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped());
                }
                _ => continue,
            }
            let mut child = command.spawn().expect("bash and python3 run");
            {
                use tokio::io::AsyncWriteExt;
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(script.as_bytes()).await.unwrap();
            }
            let out = child.wait_with_output().await.unwrap();
            ran += 1;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                failures.push(format!(
                    "{name} ({}) failed ({}):\n{script}\n{stdout}\n{}",
                    block.info,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let expected = all
                .get(i + 1)
                .filter(|next| next.info == "text,output" && mode == "runnable");
            if let Some(expected) = expected {
                if let Err(diff) = same_output(&expected.text, &stdout) {
                    failures.push(format!("{name}: {diff}"));
                }
            }
        }
    }
    assert!(ran > 0, "no example ran");
    failures
}

/// Every runnable example of the book, in order, against one fresh service;
/// the README's front page against another.
#[actix_web::test]
async fn every_runnable_example_runs() {
    let book: Vec<(String, PathBuf)> = pages()
        .into_iter()
        .map(|page| {
            let file = docs().join(&page);
            (page, file)
        })
        .collect();
    assert!(book.len() > 10, "{book:?}");
    let app = common::spawn_app().await;
    let mut failures = run_pages(&app, &book).await;
    app.stop().await;
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let app = common::spawn_app().await;
    failures.extend(run_pages(&app, &[("README.md".into(), readme)]).await);
    app.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The comparison sees a changed answer (and only what may not vary is
/// masked).
#[test]
fn an_example_whose_output_changed_fails() {
    let shown = r#"{"rows":[[1,"signup","2026-12-06T16:58:43.227074Z"]],"elapsed_ms":29.192}"#;
    let now = r#"{"rows":[[1,"signup","2027-01-01T00:00:00Z"]],"elapsed_ms":3.5}"#;
    assert_eq!(same_output(shown, now), Ok(()));
    let other = r#"{"rows":[[2,"signup","2027-01-01T00:00:00Z"]],"elapsed_ms":3.5}"#;
    assert!(same_output(shown, other).is_err());
    assert!(same_output("id,kind\n1,signup\n", "id,kind\n").is_err());
    // Every page of the book is reachable from the summary, and every
    // runnable block's language runs.
    let listed = pages();
    for entry in walk(&docs()) {
        let page = entry
            .strip_prefix(docs())
            .unwrap()
            .to_string_lossy()
            .to_string();
        if page.ends_with(".md") && page != "SUMMARY.md" {
            assert!(listed.contains(&page), "{page} is not in SUMMARY.md");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Pages for users speak of the service, not of its tests or its history:
/// test files and test names belong in Internals.
#[test]
fn user_pages_name_no_test_and_no_history() {
    let talk = Regex::new(
        r"tests/integration/|tests/[a-z_]+\.rs|`[a-z_]+::[a-z_]+`|\bissue \d+|origin document|\bstop \d+",
    )
    .unwrap();
    let mut found = Vec::new();
    for page in pages() {
        if page.starts_with("internals/") {
            continue;
        }
        let text = std::fs::read_to_string(docs().join(&page)).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(hit) = talk.find(line) {
                found.push(format!("{page}:{}: {}", n + 1, hit.as_str()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Every metric the operating and troubleshooting pages name is one the
/// service exposes.
#[actix_web::test]
async fn the_metrics_the_pages_name_exist() {
    let app = common::spawn_app().await;
    // Labelled series appear once something counted them.
    app.sql("SELECT 1").await;
    let exposed = app.get_text("/metrics").await;
    let exposed = format!("{exposed}{}", app.get_text("/metrics").await);
    let name = Regex::new(
        r"\b(?:ducklake|process)_[a-z_]*(?:_total|_bytes|_seconds|_connections|_up|_id|_open|_queued|_active|_entries|_info|_tables|_jobs)\b",
    )
    .unwrap();
    // Series of the PostgreSQL catalog's pools (absent with the embedded
    // one), and of the periodic maintenance (once a round ran).
    let postgres_only = [
        "ducklake_catalog_pool_connections",
        "ducklake_catalog_connections",
        "ducklake_maintenance_rounds_total",
    ];
    let mut named = Vec::new();
    for page in ["guides/operating.md", "guides/troubleshooting.md"] {
        let text = std::fs::read_to_string(docs().join(page)).unwrap();
        named.extend(
            name.find_iter(&text)
                .map(|m| (page, m.as_str().to_string())),
        );
    }
    assert!(named.len() > 10, "{named:?}");
    let missing: Vec<_> = named
        .iter()
        .filter(|(_, metric)| !postgres_only.contains(&metric.as_str()))
        .filter(|(_, metric)| !exposed.contains(&format!("# TYPE {metric} ")))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    app.stop().await;
}
