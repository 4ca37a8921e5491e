//! API keys and roles: every role against every class of endpoint, keys
//! that expired or were revoked, the key shown once, and the `keys` command.

use crate::common;

use common::{binary::service_command, error_code, spawn_with, test_config};
use ducklake_backend::config::Secret;
use reqwest::Method;
use serde_json::{json, Value};

const BOOTSTRAP: &str = "bootstrap-admin-key-0123456789abcdef";

pub(crate) async fn call(
    app: &common::TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn query_as(app: &common::TestApp, key: &str, body: &Value) -> (u16, Value) {
    call(
        app,
        Method::POST,
        "/api/v1/query",
        Some(key),
        Some(body.clone()),
    )
    .await
}

async fn make_key(app: &common::TestApp, role: &str, expires_at: Option<&str>) -> (String, Value) {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/v1/keys",
        Some(BOOTSTRAP),
        Some(json!({ "owner": format!("{role} user"), "role": role, "expires_at": expires_at })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (body["key"].as_str().unwrap().to_string(), body)
}

/// A service with authentication on, a table `t`, and a read, a write and
/// an admin key.
pub(crate) async fn app_with_a_key_per_role() -> (common::TestApp, [String; 3]) {
    app_with_a_key_per_role_and(|_| {}).await
}

/// [`app_with_a_key_per_role`] with `edit` applied to its configuration.
pub(crate) async fn app_with_a_key_per_role_and(
    edit: impl FnOnce(&mut ducklake_backend::config::Config),
) -> (common::TestApp, [String; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    edit(&mut config);
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    let app = spawn_with(config, Some(dir)).await;
    call(
        &app,
        Method::POST,
        "/api/v1/query",
        Some(BOOTSTRAP),
        Some(json!({"sql": "CREATE TABLE t AS SELECT 1 AS a"})),
    )
    .await;
    let (read, _) = make_key(&app, "read", None).await;
    let (write, _) = make_key(&app, "write", None).await;
    let (admin, _) = make_key(&app, "admin", None).await;
    (app, [read, write, admin])
}

#[actix_web::test]
async fn each_role_against_each_class_of_endpoint() {
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;

    let query = |sql: &str| Some(json!({ "sql": sql }));
    // (method, path, body, lowest role that may, or None for open)
    let endpoints: Vec<(Method, &str, Option<Value>, Option<&str>)> = vec![
        (Method::GET, "/health", None, None),
        (Method::GET, "/ready", None, None),
        (Method::GET, "/metrics", None, None),
        (Method::GET, "/openapi.json", None, None),
        (Method::GET, "/docs", None, None),
        (
            Method::POST,
            "/api/v1/query",
            query("SELECT count(*) FROM t"),
            Some("read"),
        ),
        (
            Method::GET,
            "/api/v1/query?sql=SELECT%201",
            None,
            Some("read"),
        ),
        (Method::GET, "/api/v1/storage/objects", None, Some("read")),
        (Method::GET, "/metrics/memory", None, Some("read")),
        (
            Method::POST,
            "/api/v1/query",
            query("INSERT INTO t VALUES (2)"),
            Some("write"),
        ),
        (
            Method::POST,
            "/api/v1/query",
            query("CREATE OR REPLACE TABLE u (a INT)"),
            Some("write"),
        ),
        (
            Method::POST,
            "/api/v1/query",
            query("DROP TABLE IF EXISTS u"),
            Some("write"),
        ),
        (
            Method::POST,
            "/api/v1/query",
            query("CHECKPOINT"),
            Some("admin"),
        ),
        (
            Method::POST,
            "/api/v1/query",
            query("CALL ducklake_expire_snapshots('lake', older_than => now() - INTERVAL 1 DAY)"),
            Some("admin"),
        ),
        (Method::GET, "/metrics/performance", None, Some("admin")),
        (Method::GET, "/config/summary", None, Some("admin")),
        (Method::GET, "/config/ducklake", None, Some("admin")),
        (Method::GET, "/api/v1/keys", None, Some("admin")),
    ];
    let rank = |role: &str| ["read", "write", "admin"].iter().position(|r| *r == role);
    let callers: [(&str, Option<&str>); 5] = [
        ("nobody", None),
        (
            "stranger",
            Some("dlk_not-a-key-at-all-0000000000000000000000000"),
        ),
        ("read", Some(read.as_str())),
        ("write", Some(write.as_str())),
        ("admin", Some(admin.as_str())),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, needs) in &endpoints {
        for (who, key) in &callers {
            let (status, answer) = call(&app, method.clone(), path, *key, body.clone()).await;
            let expected = match (needs, rank(who)) {
                (None, _) => (200, ""),
                (Some(_), None) => (401, "unauthorized"),
                (Some(needs), Some(r)) if r >= rank(needs).unwrap() => (200, ""),
                (Some(_), Some(_)) => (403, "insufficient_role"),
            };
            let code = if status == 200 {
                ""
            } else {
                error_code(&answer)
            };
            if (status, code) != expected {
                wrong.push(format!("{who} {method} {path} {body:?}: {status} {answer}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );

    // A 401 says how to authenticate.
    let res = app
        .client
        .get(app.url("/metrics/memory"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    for header in ["Basic abc", "Bearer ", "Bearer\tx", "dlk_xyz"] {
        let res = app
            .client
            .get(app.url("/metrics/memory"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{header}");
    }
    app.stop().await;
}

/// A request each route can act on: the path with its parameters filled in,
/// and a body where the route reads one. A route added without an example
/// here fails the matrix below (its body check answers before its role
/// check), which is the point: every route is walked.
fn example_request(method: &str, path: &str) -> (String, Option<Value>) {
    let path = path
        .replace("{schema}", "main")
        .replace("{table}", "t")
        .replace("{name}", "app.js")
        .replace("{id}", "00000000-0000-4000-8000-000000000000");
    let body = match (method, path.as_str()) {
        ("POST", "/api/v1/query") | ("POST", "/api/v1/jobs") => json!({"sql": "SELECT 1"}),
        ("POST", "/api/v1/schemas") => json!({"name": "matrix"}),
        ("POST", "/api/v1/keys") => json!({"owner": "matrix", "role": "read"}),
        ("POST", "/api/v1/maintenance/expire") => {
            json!({"older_than_secs": 86400, "dry_run": true})
        }
        ("POST", p) if p.starts_with("/api/v1/maintenance/") => json!({"dry_run": true}),
        ("POST", "/api/v1/tables/main/t/data") => {
            return (format!("{path}?format=ndjson"), Some(json!({"a": 3})));
        }
        ("GET" | "HEAD", "/api/v1/query") => return (format!("{path}?sql=SELECT%201"), None),
        _ => return (path, None),
    };
    (path, Some(body))
}

/// Every route the router serves (`api::routes()`, the list the routes are
/// registered from), called by each kind of caller: no key and a key that
/// is not one get 401, a role below the route's 403, the route's role or a
/// higher one gets past the check (neither 401 nor `insufficient_role`), and
/// open routes answer everyone.
#[actix_web::test]
async fn every_route_of_the_router_answers_each_role_as_it_says() {
    use ducklake_backend::api::{routes, Access};
    use ducklake_backend::role::Role;
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;
    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("nobody", None, None),
        (
            "stranger",
            Some("dlk_not-a-key-at-all-0000000000000000000000000"),
            None,
        ),
        ("read", Some(read.as_str()), Some(Role::Read)),
        ("write", Some(write.as_str()), Some(Role::Write)),
        ("admin", Some(admin.as_str()), Some(Role::Admin)),
    ];
    let routes = routes();
    assert!(routes.len() >= 37, "{routes:?}");
    let mut wrong = Vec::new();
    for route in &routes {
        let (path, body) = example_request(route.method, &route.path);
        for (who, key, role) in &callers {
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let (status, answer) = call(&app, method, &path, *key, body.clone()).await;
            // A HEAD answer has no body to name its code: its status says it.
            let code = match (route.method, status) {
                ("HEAD", 401) => "unauthorized",
                ("HEAD", 403) => "insufficient_role",
                _ => error_code(&answer),
            };
            let ok = match (route.access, role) {
                (Access::Open, _) => !matches!(status, 401 | 403),
                (Access::AtLeast(_), None) => (status, code) == (401, "unauthorized"),
                (Access::AtLeast(needs), Some(role)) if role < &needs => {
                    (status, code) == (403, "insufficient_role")
                }
                // Past the role check; what the route then answers (a 404
                // for an id that does not exist, the sandbox's 403 for
                // dropping `main`) is beside the point here.
                (Access::AtLeast(_), Some(_)) => status != 401 && code != "insufficient_role",
            };
            if !ok {
                wrong.push(format!(
                    "{who} {} {path} ({:?}): {status} {answer}",
                    route.method, route.access
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answers that do not match the route table:\n{}",
        wrong.join("\n")
    );
    app.stop().await;
}

/// The docs' table of routes and roles is the router's own list.
#[test]
fn the_docs_list_every_route_with_its_role() {
    use ducklake_backend::api::{routes, Access};
    let readme = include_str!("../../../docs/src/guides/keys.md");
    let mut missing = Vec::new();
    for route in routes() {
        let who = match route.access {
            Access::Open => "open".to_string(),
            Access::AtLeast(role) => role.to_string(),
        };
        let row = format!("| `{} {}` | {who} |", route.method, route.path);
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    let rows = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter(|l| {
            ["open", "read", "write", "admin"]
                .iter()
                .any(|r| l.ends_with(&format!("` | {r} |")))
        })
        .count();
    assert!(
        missing.is_empty(),
        "docs/src/guides/keys.md rows missing:\n{}",
        missing.join("\n")
    );
    assert_eq!(
        rows,
        routes().len(),
        "docs/src/guides/keys.md lists routes the router does not serve"
    );
}

#[actix_web::test]
async fn expired_and_revoked_keys_stop_working_and_keys_are_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    let app = spawn_with(config, None).await;
    let sql = json!({"sql": "SELECT 42"});
    // A key that expires soon, seen working before its expiry: a use whose
    // answer came back before the expiry was checked before it, so it must
    // have worked. On a machine too slow to answer in time, try again with a
    // longer life rather than fail.
    let mut life = chrono::Duration::seconds(2);
    let mut made = 0;
    let (short, expiry) = loop {
        made += 1;
        let expiry = chrono::Utc::now() + life;
        let (key, _) = make_key(&app, "read", Some(&expiry.to_rfc3339())).await;
        let (status, body) = query_as(&app, &key, &sql).await;
        if chrono::Utc::now() < expiry {
            assert_eq!(status, 200, "a key used before its expiry: {body}");
            break (key, expiry);
        }
        assert!(
            life < chrono::Duration::minutes(2),
            "no answer within {life}"
        );
        life = life * 2;
    };
    let (revoked, created) = make_key(&app, "write", None).await;
    let (status, body) = query_as(&app, &revoked, &sql).await;
    assert_eq!(status, 200, "{body}");

    // The list shows prefixes, never keys or hashes.
    let (status, list) = call(&app, Method::GET, "/api/v1/keys", Some(BOOTSTRAP), None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    for secret in [&short, &revoked] {
        assert!(!text.contains(secret.as_str()), "a key is listed");
        assert!(
            !text.contains(&ducklake_backend::auth::hash(secret)),
            "a hash is listed"
        );
        assert!(text.contains(&secret[..12]), "its prefix is listed");
    }
    assert!(!text.contains(BOOTSTRAP));
    // The bootstrap key, the one to revoke and every short-lived one made.
    assert_eq!(list.as_array().unwrap().len(), 2 + made, "{list}");

    let id = created["id"].as_str().unwrap();
    let (status, body) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        Some(BOOTSTRAP),
        None,
    )
    .await;
    assert_eq!((status, &body["active"]), (200, &json!(false)), "{body}");
    let (status, body) = query_as(&app, &revoked, &sql).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    assert!(body.to_string().contains("revoked"), "{body}");

    // Once the expiry has passed (the clock, not a guess of how long it takes).
    while chrono::Utc::now() <= expiry {
        let left = (expiry - chrono::Utc::now()).to_std().unwrap_or_default();
        actix_web::rt::time::sleep(left + std::time::Duration::from_millis(1)).await;
    }
    let (status, body) = query_as(&app, &short, &sql).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    assert!(body.to_string().contains("expired"), "{body}");

    // Bad requests to the keys API.
    for bad in [
        json!({"owner": "x", "role": "root"}),
        json!({"owner": "", "role": "read"}),
        json!({"owner": "x", "role": "read", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"owner": "x", "role": "read", "extra": 1}),
    ] {
        let (status, body) = call(
            &app,
            Method::POST,
            "/api/v1/keys",
            Some(BOOTSTRAP),
            Some(bad.clone()),
        )
        .await;
        assert!((400..500).contains(&status), "{bad}: {status} {body}");
    }
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/keys/dlk_nothing",
        Some(BOOTSTRAP),
        None,
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// `ducklake-backend keys create|list|revoke` on the embedded default's
/// local store, and the service honouring what it wrote.
#[actix_web::test]
async fn keys_command_creates_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |args: &[&str]| {
        // The stopped in-process service lets go of the local store's file
        // lock when its last worker has dropped the state: wait for that.
        let mut tries = 0;
        let out = loop {
            let out = service_command()
                .arg("keys")
                .args(args)
                .env("DATA_DIR", dir.path())
                .output()
                .unwrap();
            let locked = String::from_utf8_lossy(&out.stderr).contains("Conflicting lock");
            tries += 1;
            if !locked || tries == 50 {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, key, err) = keys(&["create", "--owner", "ci", "--role", "write"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        key.starts_with("dlk_") && !key.contains(char::is_whitespace),
        "{key}"
    );
    let (code, _, err) = keys(&["create", "--owner", "reader", "--role", "read"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, table, _) = keys(&["list"]);
    assert_eq!(code, Some(0));
    assert!(table.contains(&key[..12]) && table.contains("write") && !table.contains(&key));
    // Every row's columns start where the header's do.
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in ["PREFIX", "ROLE", "ACTIVE", "CREATED", "OWNER"] {
        let at = lines[0].find(column).unwrap();
        for row in &lines[1..] {
            assert!(
                row.as_bytes()[at - 2..at] == *b"  " && row.as_bytes()[at] != b' ',
                "{column} misaligned:\n{table}"
            );
        }
    }
    let (code, listed, _) = keys(&["list", "--json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let owners: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["reader", "ci"], "newest first");

    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    let app = spawn_with(config.clone(), None).await;
    let sql = json!({"sql": "CREATE TABLE made_by_ci AS SELECT 1 AS a"});
    let (status, body) = query_as(&app, &key, &sql).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&app, Method::GET, "/config/summary", Some(&key), None).await;
    assert_eq!(status, 403, "a write key is not an admin key");
    app.stop().await;

    let (code, out, err) = keys(&["revoke", &key[..12]]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("revoked"));
    let (code, _, err) = keys(&["revoke", "dlk_nothing"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no API key"), "{err}");
    let (code, _, err) = keys(&["create", "--owner", "x", "--role", "root"]);
    assert_eq!(code, Some(2), "clap refuses an unknown role: {err}");

    let app = spawn_with(config, None).await;
    let (status, _) = query_as(&app, &key, &json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, 401);
    app.stop().await;
}

/// `EXPLAIN x` needs the role `x` needs; PIVOT and UNPIVOT are reads.
#[actix_web::test]
async fn explain_needs_the_role_of_what_it_explains() {
    use ducklake_backend::role::Role;
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;
    let cases: [(&str, &str); 6] = [
        ("EXPLAIN SELECT * FROM t", "read"),
        ("EXPLAIN ANALYZE SELECT count(*) FROM t", "read"),
        ("PIVOT t ON a IN (1) USING count(*)", "read"),
        ("UNPIVOT t ON a INTO NAME n VALUE v", "read"),
        ("EXPLAIN INSERT INTO t VALUES (2)", "write"),
        (
            "EXPLAIN ANALYZE SELECT * FROM ducklake_expire_snapshots('lake', \
             dry_run => true, older_than => now())",
            "admin",
        ),
    ];
    for (sql, lowest) in cases {
        for (role, key) in [("read", &read), ("write", &write), ("admin", &admin)] {
            let (status, body) = query_as(&app, key, &json!({ "sql": sql })).await;
            let allowed = Role::parse(role) >= Role::parse(lowest);
            if allowed {
                assert_eq!(status, 200, "{role}: {sql}: {body}");
            } else {
                assert_eq!(
                    (status, error_code(&body)),
                    (403, "insufficient_role"),
                    "{role}: {sql}: {body}"
                );
            }
        }
    }
    // The read key's EXPLAIN ANALYZE of a write ran nothing.
    let (status, body) = query_as(
        &app,
        &read,
        &json!({"sql": "EXPLAIN ANALYZE INSERT INTO t VALUES (3)"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "insufficient_role"),
        "{body}"
    );
    let (_, body) = query_as(
        &app,
        &admin,
        &json!({"sql": "SELECT count(*) FROM t WHERE a = 3"}),
    )
    .await;
    assert_eq!(body["rows"], json!([[0]]));
    app.stop().await;
}

/// Admin-only reads of the audit log until `done` holds for its entries
/// (the trail is written in the background, so the test waits for what it
/// means: the entries), bounded only against a hang.
pub(crate) async fn audit_until(
    app: &common::TestApp,
    key: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = call(
            app,
            Method::GET,
            &format!("/api/v1/audit{query}"),
            Some(key),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit log never showed it: {items:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn the_audit_trail_records_writes_key_changes_ingest_maintenance_and_refusals() {
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;
    let prefix = |key: &str| key[..12].to_string();
    // Nobody but an admin reads it.
    for key in [&read, &write] {
        let (status, body) = call(&app, Method::GET, "/api/v1/audit", Some(key), None).await;
        assert_eq!((status, error_code(&body)), (403, "insufficient_role"));
    }

    // A write statement: kind, tables, the snapshot it created, the request id.
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .bearer_auth(&write)
        .header("x-request-id", "audit-test-insert")
        .json(&json!({"sql": "INSERT INTO t VALUES (7)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let snapshot: i64 = res.headers()["x-ducklake-snapshot"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let inserts = audit_until(&app, &admin, "?action=statement&outcome=ok", |items| {
        items.iter().any(|i| i["request_id"] == "audit-test-insert")
    })
    .await;
    let insert = inserts
        .iter()
        .find(|i| i["request_id"] == "audit-test-insert")
        .unwrap();
    assert_eq!(insert["key_prefix"], prefix(&write), "{insert}");
    assert_eq!(insert["actor"], "write user");
    assert_eq!(insert["target"], "main.t");
    assert_eq!(insert["snapshot"], snapshot);
    assert_eq!(insert["detail"]["kind"], json!(["INSERT"]));
    assert_eq!(insert["detail"]["sql"], "INSERT INTO t VALUES (7)");

    // A read is not audited; a refused statement is, with its reason.
    let (status, _) = query_as(&app, &read, &json!({"sql": "SELECT * FROM t"})).await;
    assert_eq!(status, 200);
    let (status, body) = query_as(&app, &read, &json!({"sql": "DELETE FROM t"})).await;
    assert_eq!((status, error_code(&body)), (403, "insufficient_role"));
    let (status, body) = query_as(
        &app,
        &write,
        &json!({"sql": "SELECT * FROM read_csv('/etc/passwd')"}),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden_statement"));
    let refused = audit_until(&app, &admin, "?outcome=refused", |items| items.len() >= 2).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["key_prefix"], prefix(&write));
    assert_eq!(refused[0]["detail"]["error"], "forbidden_statement");
    assert_eq!(refused[1]["key_prefix"], prefix(&read));
    assert_eq!(refused[1]["detail"]["error"], "insufficient_role");
    assert_eq!(refused[1]["detail"]["sql"], "DELETE FROM t");
    assert!(refused[1]["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("write role"));

    // A failed write is recorded as failed, with nothing committed.
    // (The cast fails while the statement runs, not while it is planned.)
    let failing = "INSERT INTO t SELECT CAST(a::VARCHAR || 'x' AS INTEGER) FROM t";
    let (status, body) = query_as(&app, &write, &json!({ "sql": failing })).await;
    assert!((400..500).contains(&status), "{status} {body}");
    let failed = audit_until(&app, &admin, "?outcome=failed", |items| !items.is_empty()).await;
    assert_eq!(failed[0]["detail"]["kind"], json!(["INSERT"]));
    assert_eq!(failed[0]["detail"]["sql"], failing);
    assert_eq!(failed[0]["snapshot"], Value::Null);
    let (_, count) = query_as(&app, &read, &json!({"sql": "SELECT count(*) FROM t"})).await;
    assert_eq!(
        count["rows"],
        json!([[2]]),
        "the failed insert left nothing"
    );

    // Ingest, a schema change, key changes and a maintenance run.
    let res = app
        .client
        .post(app.url("/api/v1/tables/main/t/data?format=ndjson"))
        .bearer_auth(&write)
        .body("{\"a\": 8}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/schemas",
        Some(&write),
        Some(json!({"name": "audited"})),
    )
    .await;
    assert_eq!(status, 201);
    let (new_key, created) = make_key(&app, "read", None).await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/maintenance/compact",
        Some(&admin),
        Some(json!({"dry_run": true})),
    )
    .await;
    assert_eq!(status, 200);
    let actions = [
        "ingest",
        "schema.create",
        "key.create",
        "key.revoke",
        "maintenance.compact",
    ];
    let all = audit_until(&app, &admin, "?limit=1000", |items| {
        actions
            .iter()
            .all(|a| items.iter().any(|i| i["action"] == *a))
    })
    .await;
    let find = |action: &str| all.iter().find(|i| i["action"] == action).unwrap().clone();
    let ingest = find("ingest");
    assert_eq!(
        (
            ingest["target"].as_str(),
            ingest["detail"]["rows_loaded"].as_i64()
        ),
        (Some("main.t"), Some(1))
    );
    assert!(ingest["snapshot"].as_i64().unwrap() > snapshot);
    assert_eq!(find("schema.create")["target"], "audited");
    assert_eq!(find("key.create")["target"], prefix(&new_key));
    assert_eq!(
        find("key.create")["key_prefix"],
        BOOTSTRAP[..12].to_string()
    );
    assert_eq!(find("key.revoke")["target"], prefix(&new_key));
    assert_eq!(find("maintenance.compact")["detail"]["dry_run"], true);
    assert_eq!(find("maintenance.compact")["key_prefix"], prefix(&admin));
    // Newest first, ids strictly falling; every entry has a time.
    let ids: Vec<i64> = all.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(all.iter().all(|i| i["occurred_at"].is_string()));

    // Paged like the other lists: every entry once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={c}"),
            None => "/api/v1/audit?limit=2".to_string(),
        };
        let (status, body) = call(&app, Method::GET, &query, Some(&admin), None).await;
        assert_eq!(status, 200, "{body}");
        paged.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(
        paged.len() >= ids.len() && paged[paged.len() - ids.len()..] == ids[..],
        "{paged:?} vs {ids:?}"
    );
    for bad in ["?outcome=maybe", "?limit=0", "?cursor=nope"] {
        let (status, body) = call(
            &app,
            Method::GET,
            &format!("/api/v1/audit{bad}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (422, "invalid_parameters"),
            "{bad}"
        );
    }

    // The CLI reads the same trail.
    let out = service_command()
        .args([
            "client",
            "--url",
            &app.base,
            "audit",
            "--action",
            "key.create",
            "--json",
        ])
        .env("DUCKLAKE_KEY", &admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.iter().all(|i| i["action"] == "key.create"));
    assert!(listed.iter().any(|i| i["target"] == prefix(&new_key)));

    // Recorded events are counted in /metrics.
    let metrics = app.get_text("/metrics").await;
    assert!(common::sample(&metrics, "ducklake_audit_events_written_total") >= all.len() as f64);
    assert_eq!(
        common::sample(&metrics, "ducklake_audit_events_dropped_total"),
        0.0
    );
    app.stop().await;
}

/// `/ready` is open, so it tells an unauthenticated caller (or one with a
/// key below admin) only each dependency's status and latency; where the
/// catalog and the data live, the connections and the lake's snapshot are
/// for admins.
#[actix_web::test]
async fn ready_tells_strangers_only_up_or_down() {
    let (app, [read, _write, admin]) = app_with_a_key_per_role().await;
    let data_dir = app.data_dir.display().to_string();
    for key in [
        None,
        Some(read.as_str()),
        Some("dlk_not-a-key-at-all-0000000000000000000000000"),
    ] {
        let (status, body) = call(&app, Method::GET, "/ready", key, None).await;
        assert_eq!(status, 200, "{body}");
        let text = body.to_string();
        assert!(!text.contains(&data_dir), "{key:?}: {body}");
        for component in ["catalog", "storage", "lake"] {
            let fields: Vec<&String> = body["components"][component]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            assert_eq!(
                fields,
                ["latency_ms", "status"],
                "{key:?} {component}: {body}"
            );
            assert_eq!(body["components"][component]["status"], "up");
        }
    }
    let (status, body) = call(&app, Method::GET, "/ready", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert!(
        body["components"]["storage"]["data_path"]
            .as_str()
            .unwrap()
            .contains(&data_dir),
        "{body}"
    );
    assert!(body["components"]["lake"]["snapshot_id"].is_i64(), "{body}");
    assert_eq!(body["components"]["catalog"]["kind"], "duckdb");
    app.stop().await;
}

/// The bootstrap key is stored once: revoked, it stays revoked when the
/// service restarts with the same `AUTH_BOOTSTRAP_KEY`.
#[actix_web::test]
async fn a_revoked_bootstrap_key_stays_revoked_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(BOOTSTRAP));
    let sql = json!({"sql": "SELECT 42"});
    let app = spawn_with(config.clone(), None).await;
    let (admin, _) = make_key(&app, "admin", None).await;
    let (status, keys) = call(&app, Method::GET, "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(status, 200);
    let bootstrap = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == BOOTSTRAP[..12])
        .unwrap_or_else(|| panic!("no bootstrap key in {keys}"));
    let path = format!("/api/v1/keys/{}", bootstrap["id"].as_str().unwrap());
    let (status, body) = call(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(query_as(&app, BOOTSTRAP, &sql).await.0, 401);
    app.stop().await;

    let app = spawn_with(config, None).await;
    let (status, body) = query_as(&app, BOOTSTRAP, &sql).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    assert_eq!(query_as(&app, &admin, &sql).await.0, 200);
    app.stop().await;
}

/// The HTTP API reference has a row for every route the router serves (its
/// method and path, a query string after it allowed), and none for a route
/// it does not serve.
#[test]
fn the_http_api_reference_has_a_row_per_route() {
    use ducklake_backend::api::routes;
    let page = include_str!("../../../docs/src/reference/http-api.md");
    let rows: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let served: Vec<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let missing: Vec<&String> = served
        .iter()
        .filter(|route| {
            !rows
                .iter()
                .any(|row| row.split('?').next() == Some(route.as_str()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the reference: {missing:?}"
    );
    let extra: Vec<&&str> = rows
        .iter()
        .filter(|row| {
            !served
                .iter()
                .any(|r| Some(r.as_str()) == row.split('?').next())
        })
        .collect();
    assert!(extra.is_empty(), "rows for no route: {extra:?}");
}
