//! The web console at /ui in a real browser: Debian's headless Chromium,
//! driven through chromedriver (WebDriver, with the fantoccini client),
//! against the app started in-process. Each test loads the console, does what
//! a person would (type SQL, press Ctrl+Enter, open the lake browser, cancel,
//! export) and checks the page and the service. Screenshots of the main
//! screens land in `backend/tests/output/ui/` (the docs show copies from
//! docs/src/screenshots/).
//!
//! Browsers are heavy on a 2-core machine, so the tests take turns (one
//! browser at a time) through [`BROWSER_TURN`]. Every wait is for a
//! condition (an element, a status, rendered rows, a metric, a finished
//! download), never for a duration: [`WAIT`] only bounds a hang, so it is
//! generous for a loaded machine.

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{free_port, spawn_app, spawn_with, test_config, TestApp};
use ducklake_backend::config::Secret;
use fantoccini::{elements::Element, key::Key, Client, ClientBuilder, Locator};
use serde_json::{json, Value};

static BROWSER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// A query that runs until it is cancelled, however fast the machine.
const ENDLESS: &str = "SELECT count(*) FROM range(2000000000000)";

/// Polls `check` until it returns `Ok`; panics naming `what` and the last
/// `Err` (what it saw instead) when [`WAIT`] passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// chromedriver on a free loopback port and one headless Chromium session.
struct Browser {
    client: Client,
    downloads: tempfile::TempDir,
    _driver: tokio::process::Child,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    async fn start() -> Self {
        let turn = BROWSER_TURN.lock().await;
        for tool in ["chromium", "chromedriver"] {
            assert!(
                which(tool).is_some(),
                "{tool} is not installed: run scripts/install-test-deps.sh (Debian's chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let downloads = tempfile::tempdir().expect("download dir");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": which("chromium").unwrap(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-dev-shm-usage", "--window-size=1440,900",
                    "--force-device-scale-factor=1", "--lang=en-US",
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        // chromedriver answers once it listens.
        let (capabilities, url) = (&capabilities, &url);
        let client = eventually("a WebDriver session from chromedriver", || async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(url)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        Browser {
            client,
            downloads,
            _driver: driver,
            _turn: turn,
        }
    }

    /// Opens the console and waits until its script has wired the page.
    async fn open_console(&self, app: &TestApp) {
        self.client.goto(&app.url("/ui")).await.unwrap();
        self.until(
            "the console's script ran",
            "return document.body.dataset.ready === '1'",
        )
        .await;
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Clicks `css`, finding it again if a panel redrew it in between (the
    /// jobs list is replaced every 3 s).
    async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), || async move {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?;
            element.click().await.map_err(|e| e.to_string())
        })
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns something truthy; returns it.
    async fn until(&self, what: &str, script: &str) -> Value {
        eventually(what, || async move {
            let value = self.js(script).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                Ok(value)
            } else {
                Err(value.to_string())
            }
        })
        .await
    }

    /// The rendered text of `css` (found again if a panel redrew it).
    async fn text(&self, css: &str) -> String {
        eventually(&format!("the text of {css}"), || async move {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?;
            element.text().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Replaces the editor's SQL and runs it with Ctrl+Enter.
    async fn run_sql(&self, sql: &str) {
        // The previous query's status must not pass for this one's.
        self.js("document.getElementById('status').textContent = ''; return null")
            .await;
        let editor = self.find("#sql").await;
        editor.clear().await.unwrap();
        editor.send_keys(sql).await.unwrap();
        let chord: String = [char::from(Key::Control), char::from(Key::Enter)]
            .into_iter()
            .collect();
        editor.send_keys(&chord).await.unwrap();
    }

    /// Waits for the status line to say the query finished; returns it.
    async fn finished_status(&self) -> String {
        let status = self
            .until(
                "the query to finish",
                "const s = document.getElementById('status').textContent; \
                 return /ms total|Failed|Cancelled/.test(s) ? s : null",
            )
            .await;
        status.as_str().unwrap().to_string()
    }

    /// The grid's rendered body cells, row by row (without the row number).
    async fn grid_rows(&self) -> Vec<Vec<String>> {
        let rows = self
            .js(
                "return [...document.querySelectorAll('#grid tbody tr:not([aria-hidden])')] \
                 .map(tr => [...tr.querySelectorAll('td:not(.rownum)')].map(td => td.textContent))",
            )
            .await;
        serde_json::from_value(rows).unwrap()
    }

    /// Waits until the grid shows exactly `expected`. The console draws the
    /// rows before it says the query finished, but the page is another
    /// process: the rows are what the test means, so it waits for them.
    async fn grid_shows(&self, expected: &[&[&str]]) {
        eventually("the grid to show the expected rows", || async move {
            let rows = self.grid_rows().await;
            if rows == expected {
                Ok(())
            } else {
                Err(format!("{rows:?}, expected {expected:?}"))
            }
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/output/ui");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// Waits for a finished download: the file is there under its name and
    /// Chrome has no `.crdownload` (a download in progress) left.
    async fn downloaded(&self, name: &str) -> Vec<u8> {
        let dir = self.downloads.path();
        let path = &dir.join(name);
        eventually(&format!("{name} to be downloaded"), || async move {
            let files: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| e.to_string())?
                .filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            let in_progress = files.iter().any(|f| f.ends_with(".crdownload"));
            if path.is_file() && !in_progress {
                Ok(())
            } else {
                Err(format!("download directory: {files:?}"))
            }
        })
        .await;
        std::fs::read(path).unwrap()
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

async fn lake_with_orders(app: &TestApp) {
    app.sql("CREATE SCHEMA sales").await;
    app.sql(
        "CREATE TABLE sales.orders (id BIGINT NOT NULL, city VARCHAR, amount DECIMAL(10,2), placed DATE)",
    )
    .await;
    app.sql(
        "INSERT INTO sales.orders VALUES (1, 'Lisbon', 12.50, DATE '2026-11-01'), \
         (2, 'Porto', 7.25, DATE '2026-11-02'), (3, NULL, 99.00, DATE '2026-11-03')",
    )
    .await;
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    common::sample(&app.get_text("/metrics").await, series)
}

/// Waits until the service's `ducklake_queries_active` gauge satisfies `ok`.
async fn queries_active(app: &TestApp, what: &str, ok: impl Fn(f64) -> bool) {
    let ok = &ok;
    eventually(what, || async move {
        let active = metric(app, "ducklake_queries_active").await;
        if ok(active) {
            Ok(())
        } else {
            Err(format!("ducklake_queries_active {active}"))
        }
    })
    .await;
}

#[actix_web::test]
async fn console_files_are_served_with_their_types_and_a_strict_policy() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/console.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("content-type"), content_type, "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-cache");
        // Revalidation answers 304 while the file is the same.
        let etag = header("etag");
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let (status, body) = app.get_json("/ui/nothing.js").await;
    assert_eq!(
        (status, common::error_code(&body)),
        (404, "route_not_found")
    );
    let res = app.client.post(app.url("/ui")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    // The console is not part of the API document.
    let doc = app.get_text("/openapi.json").await;
    assert!(!doc.contains("\"/ui"));
}

#[actix_web::test]
async fn console_runs_a_query_with_ctrl_enter_and_streams_its_rows() {
    let app = spawn_app().await;
    lake_with_orders(&app).await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;
    assert_eq!(browser.client.title().await.unwrap(), "DuckLake console");

    browser
        .run_sql("SELECT id, city, amount, placed FROM sales.orders ORDER BY id")
        .await;
    let status = browser.finished_status().await;
    assert!(status.starts_with("3 rows"), "{status}");
    browser
        .grid_shows(&[
            &["1", "Lisbon", "12.50", "2026-11-01"],
            &["2", "Porto", "7.25", "2026-11-02"],
            &["3", "NULL", "99.00", "2026-11-03"],
        ])
        .await;
    let headers = browser
        .js("return [...document.querySelectorAll('#grid thead th span')].map(th => th.textContent)")
        .await;
    assert_eq!(headers, json!(["id", "city", "amount", "placed"]));
    browser.screenshot("console.png").await;

    // Integers past 2^53 keep every digit, in a cell and inside a list.
    browser
        .run_sql("SELECT 9007199254740993::BIGINT AS big, [170141183460469231731687303715884105727::HUGEINT] AS l")
        .await;
    browser.finished_status().await;
    browser
        .grid_shows(&[&[
            "9007199254740993",
            "[170141183460469231731687303715884105727]",
        ]])
        .await;

    // 100,000 rows stream in and stay scrollable: only the rows in view are
    // in the DOM.
    browser
        .run_sql("SELECT range AS n, 'row ' || range AS label FROM range(100000)")
        .await;
    let status = browser.finished_status().await;
    assert!(status.starts_with("100,000 rows"), "{status}");
    let rendered = browser
        .until(
            "the first rows of 100,000 to render",
            "return document.querySelectorAll('#grid tbody tr:not([aria-hidden])').length",
        )
        .await;
    assert!(
        rendered.as_u64().unwrap() < 200,
        "{rendered} rows in the DOM"
    );
    browser
        .js("const g = document.getElementById('grid'); g.scrollTop = g.scrollHeight; return true")
        .await;
    browser
        .until(
            "the last row to render after scrolling",
            "return [...document.querySelectorAll('#grid tbody td')].some(td => td.textContent === 'row 99999')",
        )
        .await;
    browser.close().await;
}

#[actix_web::test]
async fn lake_browser_opens_a_table_and_shows_its_columns() {
    let app = spawn_app().await;
    lake_with_orders(&app).await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;

    browser
        .click("details[data-schema='sales'] > summary")
        .await;
    let table = browser
        .find("details[data-table='sales.orders'] > summary")
        .await;
    let summary = table.text().await.unwrap();
    assert!(
        summary.contains("orders") && summary.contains("3 rows"),
        "{summary}"
    );
    table.click().await.unwrap();
    browser
        .until(
            "the columns of sales.orders",
            "return document.querySelector(\"details[data-table='sales.orders'] table.column-list\")",
        )
        .await;
    let columns = browser
        .js("return [...document.querySelectorAll(\"details[data-table='sales.orders'] table.column-list tr\")] \
             .map(tr => [...tr.children].map(c => c.textContent))")
        .await;
    assert_eq!(
        columns,
        json!([
            ["id", "BIGINT", "NOT NULL"],
            ["city", "VARCHAR", ""],
            ["amount", "DECIMAL(10,2)", ""],
            ["placed", "DATE", ""]
        ])
    );
    // "Query this table" puts a SELECT in the editor and runs it.
    browser
        .click("details[data-table='sales.orders'] button")
        .await;
    let status = browser.finished_status().await;
    assert!(status.starts_with("3 rows"), "{status}");
    let sql = browser
        .js("return document.getElementById('sql').value")
        .await;
    assert_eq!(sql, json!("SELECT * FROM \"sales\".\"orders\" LIMIT 1000"));
    browser.screenshot("table-browser.png").await;
    browser.close().await;
}

#[actix_web::test]
async fn cancel_stops_a_slow_query_in_the_service() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;

    browser.run_sql(&format!("{ENDLESS} a")).await;
    queries_active(&app, "the query to start", |n| n >= 1.0).await;
    let cancel = browser.find("#cancel").await;
    assert!(cancel.is_enabled().await.unwrap());
    cancel.click().await.unwrap();
    let status = browser.finished_status().await;
    assert!(status.starts_with("Cancelled"), "{status}");
    // The service interrupted DuckDB when the browser dropped the request
    // (the query would otherwise run for hours).
    queries_active(&app, "the cancelled query to stop", |n| n == 0.0).await;
    assert!(!browser.find("#cancel").await.is_enabled().await.unwrap());
    browser.run_sql("SELECT 'after' AS next").await;
    let status = browser.finished_status().await;
    assert!(status.starts_with("1 row"), "{status}");
    browser.grid_shows(&[&["after"]]).await;

    // Esc cancels too.
    browser.run_sql(&format!("{ENDLESS} b")).await;
    browser
        .until(
            "the query to be running",
            "return !document.getElementById('cancel').disabled",
        )
        .await;
    let escape = char::from(Key::Escape).to_string();
    browser.find("#sql").await.send_keys(&escape).await.unwrap();
    let status = browser.finished_status().await;
    assert!(status.starts_with("Cancelled"), "{status}");
    queries_active(&app, "the query cancelled with Esc to stop", |n| n == 0.0).await;
    browser.close().await;
}

#[actix_web::test]
async fn sql_errors_show_the_api_code_and_message() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;

    let sql = "SELECT * FROM no_such_table";
    browser.run_sql(sql).await;
    let status = browser.finished_status().await;
    assert_eq!(status, "Failed.");
    let (code, message) = (
        browser.text("#error .code").await,
        browser.text("#error .message").await,
    );
    let (http, body) = app.post_query(json!({ "sql": sql })).await;
    assert!((400..500).contains(&http), "{http} {body}");
    assert_eq!(code, body["error"]["code"].as_str().unwrap());
    assert_eq!(message, body["error"]["message"].as_str().unwrap());
    assert_eq!(
        browser.find("#error").await.attr("role").await.unwrap(),
        Some("alert".into())
    );
    browser.screenshot("error.png").await;
    browser.close().await;
}

#[actix_web::test]
async fn export_downloads_the_result_as_csv_parquet_and_arrow() {
    let app = spawn_app().await;
    lake_with_orders(&app).await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;
    let sql = "SELECT id, city, amount FROM sales.orders ORDER BY id";
    browser.run_sql(sql).await;
    browser.finished_status().await;

    browser.click("button.export[data-format='csv']").await;
    let csv = browser.downloaded("result.csv").await;
    let expected = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({ "sql": sql, "format": "csv" }))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(csv, expected.to_vec());
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "id,city,amount\n1,Lisbon,12.50\n2,Porto,7.25\n3,,99.00\n"
    );

    browser.click("button.export[data-format='parquet']").await;
    let parquet = browser.downloaded("result.parquet").await;
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));

    browser.click("button.export[data-format='arrow']").await;
    let arrow = browser.downloaded("result.arrow").await;
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
    browser.close().await;
}

#[actix_web::test]
async fn side_panels_show_jobs_snapshots_and_metrics_in_both_themes() {
    let app = spawn_app().await;
    lake_with_orders(&app).await;
    let browser = Browser::start().await;
    browser.open_console(&app).await;

    // The snapshot timeline lists the lake's history; picking one pins the
    // next query to it.
    let first = browser
        .find("#snapshots li:last-child button.snapshot")
        .await;
    let snapshots = browser
        .js("return document.querySelectorAll('#snapshots li[data-snapshot]').length")
        .await;
    assert!(snapshots.as_u64().unwrap() >= 3, "{snapshots}");
    let table_created = browser
        .until(
            "the snapshot that created sales.orders",
            "const li = [...document.querySelectorAll('#snapshots li[data-snapshot]')] \
             .find(li => li.textContent.includes('tables created')); \
             return li ? li.dataset.snapshot : null",
        )
        .await;
    first.click().await.unwrap();
    let pinned = browser
        .js("return document.getElementById('snapshot').value")
        .await;
    assert!(!pinned.as_str().unwrap().is_empty());
    browser
        .js(&format!(
            "document.getElementById('snapshot').value = '{}'; return true",
            table_created.as_str().unwrap()
        ))
        .await;
    browser
        .run_sql("SELECT count(*) AS n FROM sales.orders")
        .await;
    let status = browser.finished_status().await;
    assert!(
        status.contains(&format!("snapshot {}", table_created.as_str().unwrap())),
        "{status}"
    );
    browser.grid_shows(&[&["0"]]).await;
    browser
        .js("document.getElementById('snapshot').value = ''; return true")
        .await;

    // A job submitted from the editor shows up and finishes.
    browser.run_sql("SELECT * FROM range(5000)").await;
    browser.finished_status().await;
    browser.click("#submit-job").await;
    browser
        .until(
            "the job to succeed",
            "return document.querySelector('#jobs li[data-status=succeeded]')",
        )
        .await;
    let job = browser.text("#jobs li[data-status=succeeded] .meta").await;
    assert!(job.starts_with("5,000 rows"), "{job}");
    // A slow one shows as running with a progress bar, and can be cancelled.
    browser
        .js(&format!(
            "document.getElementById('sql').value = '{ENDLESS} j'; return true"
        ))
        .await;
    browser.click("#submit-job").await;
    browser
        .until(
            "the job to run",
            "return document.querySelector('#jobs li[data-status=running] progress')",
        )
        .await;
    browser.click("#jobs li[data-status=running] button").await;
    browser
        .until(
            "the job to be cancelled",
            "return document.querySelector('#jobs li[data-status=cancelled]')",
        )
        .await;

    // Memory and latency samples arrive from the metrics endpoints.
    browser
        .until(
            "a memory sample",
            "return document.querySelector('[data-metric=memory] .value').textContent.includes('iB')",
        )
        .await;
    browser
        .until(
            "a latency sample",
            "return document.querySelector('[data-metric=latency] .value').textContent.includes('ms')",
        )
        .await;
    browser
        .until(
            "the health badge",
            "return document.getElementById('health').textContent === 'service up'",
        )
        .await;
    browser.screenshot("panels.png").await;

    // The theme button switches to dark (and the choice sticks).
    let light = browser
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    browser.click("#theme").await;
    assert_eq!(browser.text("#theme").await, "Theme: dark");
    let dark = browser
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    assert_ne!(light, dark);
    assert_eq!(dark, json!("rgb(21, 25, 29)"));
    browser.screenshot("dark.png").await;
    browser.click("#theme").await;
    browser.click("#theme").await;
    assert_eq!(browser.text("#theme").await, "Theme: auto");
    browser.close().await;
}

#[actix_web::test]
async fn with_auth_on_the_console_asks_for_a_key_and_keeps_it_for_the_session() {
    const BOOTSTRAP: &str = "bootstrap-admin-key-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    let app = spawn_with(config, Some(dir)).await;
    let created: Value = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(BOOTSTRAP)
        .json(&json!({ "owner": "console", "role": "read" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();

    let browser = Browser::start().await;
    browser.open_console(&app).await;
    browser
        .until(
            "the login prompt",
            "return document.getElementById('login').open",
        )
        .await;
    browser.screenshot("login.png").await;
    // A wrong key is refused in the API's words.
    browser
        .find("#api-key")
        .await
        .send_keys("dlk_wrong")
        .await
        .unwrap();
    browser.click("#login-submit").await;
    let reason = browser
        .until(
            "the refusal",
            "const d = document.getElementById('login'); \
             return d.open && d.querySelector('#login-reason').textContent.includes('refused') \
             ? d.querySelector('#login-reason').textContent : null",
        )
        .await;
    assert!(reason.as_str().unwrap().contains("refused"), "{reason}");

    browser
        .find("#api-key")
        .await
        .send_keys(&key)
        .await
        .unwrap();
    browser.click("#login-submit").await;
    browser
        .until(
            "the prompt to close",
            "return !document.getElementById('login').open",
        )
        .await;
    browser.run_sql("SELECT 'signed in' AS who").await;
    let status = browser.finished_status().await;
    assert!(status.starts_with("1 row"), "{status}");
    // Kept in session storage only.
    let stored = browser
        .js("return [sessionStorage.getItem('ducklake.apiKey'), localStorage.getItem('ducklake.apiKey')]")
        .await;
    assert_eq!(stored, json!([key, null]));
    // A read key sees memory but not the admin-only latency report.
    let note = browser
        .until(
            "the latency panel to explain itself",
            "const n = document.querySelector('[data-metric=latency] .note'); \
             return n && !n.hidden ? n.textContent : null",
        )
        .await;
    assert!(
        note.as_str().unwrap().contains("insufficient_role"),
        "{note}"
    );
    browser.close().await;
}

/// A page on another origin (another port of the same machine, as any web
/// site the user visits would be) tries what the browser lets any page do
/// without a preflight: a form POST and a `text/plain` fetch that would load
/// a file into a new table, and a read of the API's answers. None of it
/// reaches the lake, and the page sees no answer.
#[actix_web::test]
async fn a_page_on_another_origin_cannot_write_to_the_lake() {
    let app = spawn_app().await;
    let target = app.url("/api/v1/tables/main/pwned/data?mode=create&format=csv");
    let query = app.url("/api/v1/query?sql=SELECT%2042%20AS%20secret");
    let page = format!(
        r#"<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{target}" target="sink">
  <input name="a&#10;1&#10;" value="">
</form>
<iframe name="sink"></iframe>
<script>
  window.outcome = {{}};
  fetch("{target}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "a\n1\n"}})
    .then(() => window.outcome.write = "sent", e => window.outcome.write = "error " + e);
  fetch("{query}").then(r => r.text()).then(t => window.outcome.read = "read " + t, e => window.outcome.read = "blocked");
  document.getElementById("f").submit();
  document.querySelector("iframe").addEventListener("load", () => window.outcome.form = "submitted");
</script></body></html>"#
    );
    let evil = actix_web::HttpServer::new(move || {
        let page = page.clone();
        actix_web::App::new().route(
            "/",
            actix_web::web::get().to(move || {
                let page = page.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("text/html")
                        .body(page)
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let evil_port = evil.addrs()[0].port();
    let evil = evil.run();
    let evil_handle = evil.handle();
    actix_web::rt::spawn(evil);

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{evil_port}/"))
        .await
        .unwrap();
    let outcome = browser
        .until(
            "the page's requests to end",
            "const o = window.outcome; return o && o.write && o.read && o.form ? o : null",
        )
        .await;
    // The browser sent the write (no-cors hides the answer from the page);
    // the read's answer is kept from the page (no CORS header for it).
    assert_eq!(outcome["write"], "sent", "{outcome}");
    assert_eq!(outcome["read"], "blocked", "{outcome}");
    let (status, _) = app.get_json("/api/v1/tables/main/pwned").await;
    assert_eq!(status, 404, "a page on another origin created a table");
    // The service saw the attempts and refused them.
    let metrics = app.get_text("/metrics").await;
    let refused = metrics
        .lines()
        .filter(|l| {
            l.starts_with("ducklake_http_requests_total{")
                && l.contains("status_class=\"4xx\"")
                && l.contains("method=\"POST\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum::<f64>();
    assert!(refused >= 2.0, "{metrics}");
    browser.client.close().await.unwrap();
    evil_handle.stop(true).await;
    app.stop().await;
}
