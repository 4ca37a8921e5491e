//! One parser decides: DuckDB's. The bytes an attacker would send (a `\r`
//! that ends DuckDB's `--` comment, E-strings, dollar quotes, placeholders
//! inside comments) cannot make the sandbox check one statement while
//! DuckDB runs another, over any transport; and a seeded fuzzer builds
//! requests from such lexemes and checks, for every one, that a read key
//! changed nothing and a write key did no admin's work and read nothing of
//! the catalog or the settings. `SANDBOX_FUZZ_CASES` sets how many cases
//! (`scripts/sandbox-fuzz.sh` runs many), `SANDBOX_FUZZ_SEED` replays one.

use crate::{
    auth::{app_with_a_key_per_role, audit_until, query_as},
    common::{self, error_code, jobs::Api, Steps},
};

use reqwest::Method;
use serde_json::{json, Value};

/// The lake as a reader sees it, for "nothing changed": its snapshots and
/// the victim's rows.
async fn lake_state(app: &common::TestApp, admin: &str) -> Value {
    let (status, body) = query_as(
        app,
        admin,
        &json!({"sql": "SELECT (SELECT max(snapshot_id) FROM ducklake_snapshots('lake')), \
                 (SELECT count(*) FROM ducklake_snapshots('lake')), \
                 (SELECT list(n ORDER BY n) FROM victim), \
                 (SELECT list(table_name ORDER BY table_name) FROM duckdb_tables() \
                  WHERE database_name = 'lake')"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["rows"][0].clone()
}

async fn setup(app: &common::TestApp, admin: &str) {
    for sql in [
        "CREATE TABLE victim AS SELECT 1 AS n",
        "CREATE TABLE loot (v VARCHAR)",
    ] {
        let (status, body) = query_as(app, admin, &json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {body}");
    }
}

/// What the issue showed, and its variants: a `\r` ends DuckDB's `--`
/// comment (no other tokenizer's), so what follows it is the statement.
const HIDDEN_BEHIND_A_CARRIAGE_RETURN: [&str; 10] = [
    "EXPLAIN ANALYZE -- x\rINSERT INTO victim\nSELECT 42",
    "EXPLAIN ANALYZE -- x\rCREATE OR REPLACE TABLE victim AS SELECT 42 AS n",
    "EXPLAIN ANALYZE -- x\rDELETE FROM victim",
    "EXPLAIN ANALYZE -- x\rCALL ducklake_expire_snapshots('lake', older_than => now())",
    "EXPLAIN ANALYZE -- x\rSELECT * FROM __ducklake_metadata_lake.ducklake_table",
    "EXPLAIN -- x\rSELECT current_setting('allowed_directories')",
    "EXPLAIN (ANALYZE) -- x\r\x0cINSERT INTO victim VALUES (42)",
    // No-break space is whitespace to DuckDB.
    "EXPLAIN\u{a0}ANALYZE INSERT INTO victim VALUES (42)",
    "SELECT 1 -- x\r; INSERT INTO victim VALUES (42)",
    "EXPLAIN ANALYZE /* a */ -- b\r/* c */ INSERT INTO victim VALUES (42)",
];

#[actix_web::test]
async fn a_statement_hidden_behind_a_carriage_return_is_refused_everywhere() {
    let (app, [read, _write, admin]) = app_with_a_key_per_role().await;
    setup(&app, &admin).await;
    let before = lake_state(&app, &admin).await;
    let refusals = ["insufficient_role", "forbidden_statement"];
    for sql in HIDDEN_BEHIND_A_CARRIAGE_RETURN {
        // POST.
        let (status, body) = query_as(&app, &read, &json!({ "sql": sql })).await;
        assert_eq!(status, 403, "POST {sql:?}: {body}");
        assert!(refusals.contains(&error_code(&body)), "{sql:?}: {body}");
        // The GET form.
        let (status, body) = get_query(&app, &read, sql).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            status == 403
                && [&refusals[..], &["read_only"]]
                    .concat()
                    .contains(&error_code(&body)),
            "GET {sql:?}: {status} {body}"
        );
        // A job: refused when submitted, or failed with the refusal.
        let jobs = Api::new(&app.base).with_key(&read);
        let (status, job) = jobs
            .call(Method::POST, "/api/v1/jobs", Some(json!({ "sql": sql })))
            .await;
        if status == 202 {
            let id = job["id"].as_str().unwrap();
            let ended = wait_for_end(&jobs, id).await;
            assert_eq!(ended["status"], "failed", "job {sql:?}: {ended}");
            let error = ended["error"].to_string();
            assert!(
                refusals.iter().any(|code| error.contains(code)),
                "job {sql:?}: {ended}"
            );
        } else {
            assert_eq!(status, 403, "job {sql:?}: {job}");
        }
        flight_refuses(&app, &read, sql).await;
    }
    assert_eq!(
        lake_state(&app, &admin).await,
        before,
        "the read key changed the lake"
    );
    // Each POST's refusal is in the audit trail, with the text DuckDB read
    // (the statement it refused, cut where DuckDB ends it).
    let recorded = |items: &[Value], sql: &str| {
        items.iter().any(|i| {
            i["detail"]["sql"]
                .as_str()
                .is_some_and(|s| !s.trim().is_empty() && sql.ends_with(s))
        })
    };
    let refused = audit_until(&app, &admin, "?outcome=refused&limit=1000", |items| {
        HIDDEN_BEHIND_A_CARRIAGE_RETURN
            .iter()
            .all(|sql| recorded(items, sql))
    })
    .await;
    assert!(!refused.is_empty());
    app.stop().await;
}

async fn wait_for_end(jobs: &Api, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, job) = jobs.job(id).await;
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job {id}: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Parameters are never spliced into the text: where DuckDB sees a
/// placeholder is where the value binds, whatever a comment, an E-string or
/// a dollar quote around it would make another tokenizer think.
#[actix_web::test]
async fn parameters_bind_where_duckdb_sees_them_and_nowhere_else() {
    let (app, [_read, write, admin]) = app_with_a_key_per_role().await;
    setup(&app, &admin).await;
    let leak = "SELECT table_name FROM __ducklake_metadata_lake.ducklake_table";
    let run = |sql: &str, params: Value| json!({ "sql": sql, "params": params });
    // Refused: DuckDB sees the catalog or a setting.
    for body in [
        run(
            "INSERT INTO loot SELECT ? -- ?\r|| current_setting('allowed_directories')",
            json!(["x"]),
        ),
        run(
            "INSERT INTO loot SELECT table_name FROM -- ?\r__ducklake_metadata_lake.ducklake_table",
            json!(["x"]),
        ),
        run("INSERT INTO loot SELECT * FROM query($1)", json!([leak])),
        run(
            "INSERT INTO loot SELECT * FROM query($q)",
            json!({ "q": leak }),
        ),
        run("SELECT * FROM query(?)", json!([leak])),
        run(
            "INSERT INTO loot SELECT E'\\' $1 ' || current_setting('threads')",
            json!(["x"]),
        ),
    ] {
        let (status, answer) = query_as(&app, &write, &body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (403, "forbidden_statement"),
            "{body}: {answer}"
        );
    }
    // Allowed: the values land where DuckDB placed the placeholders.
    for (body, expected) in [
        (
            run("INSERT INTO loot VALUES (?), (-- ?\r?)", json!(["a", "b"])),
            json!(["a", "b"]),
        ),
        (
            run("INSERT INTO loot VALUES (E'\\' $1 '), ($1)", json!(["c"])),
            json!(["' $1 ", "c"]),
        ),
        (
            run("INSERT INTO loot VALUES ($x$ ? $x$), (?)", json!(["d"])),
            json!([" ? ", "d"]),
        ),
        (
            run(
                "INSERT INTO loot VALUES (?)",
                json!(["'); DROP TABLE victim; --"]),
            ),
            json!(["'); DROP TABLE victim; --"]),
        ),
    ] {
        let (status, answer) = query_as(&app, &write, &body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        let (_, rows) = query_as(
            &app,
            &admin,
            &json!({"sql": "SELECT list(v ORDER BY v) FROM loot"}),
        )
        .await;
        let mut want: Vec<String> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(rows["rows"][0][0], json!(want), "{body}");
        query_as(&app, &admin, &json!({"sql": "DELETE FROM loot"})).await;
    }
    // A placeholder in an earlier statement of a request: the client's
    // mistake (parameters bind to the last one), and nothing ran.
    for sql in [
        "SELECT ?; SELECT 1",
        "INSERT INTO loot VALUES (?); SELECT 1",
    ] {
        let (status, answer) = query_as(&app, &write, &run(sql, json!(["x"]))).await;
        assert_eq!(
            (status, error_code(&answer)),
            (422, "invalid_parameters"),
            "{sql}: {answer}"
        );
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last statement"));
    }
    let (_, loot) = query_as(&app, &admin, &json!({"sql": "SELECT count(*) FROM loot"})).await;
    assert_eq!(loot["rows"], json!([[0]]));
    let (_, victim) = query_as(&app, &admin, &json!({"sql": "SELECT n FROM victim"})).await;
    assert_eq!(victim["rows"], json!([[1]]));
    app.stop().await;
}

/// Role escalation, by transport: a read key changes nothing, a write key
/// does no admin's work and reads neither the catalog nor the settings.
#[actix_web::test]
async fn no_role_does_more_than_its_own_over_any_transport() {
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;
    setup(&app, &admin).await;
    let read_attacks = [
        "INSERT INTO victim VALUES (2)",
        "UPDATE victim SET n = 2",
        "DELETE FROM victim",
        "DROP TABLE victim",
        "CREATE TABLE pwn (a INT)",
        "CREATE VIEW pwn AS SELECT 1",
        "ALTER TABLE victim ADD COLUMN z INT",
        "EXPLAIN ANALYZE INSERT INTO victim VALUES (2)",
        "WITH x AS (SELECT 1) INSERT INTO victim SELECT * FROM x",
        "CALL ducklake_expire_snapshots('lake', older_than => now())",
    ];
    let write_attacks = [
        "CALL ducklake_expire_snapshots('lake', older_than => now())",
        "SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())",
        "EXPLAIN ANALYZE SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)",
        "INSERT INTO loot SELECT table_name FROM __ducklake_metadata_lake.ducklake_table",
        "INSERT INTO loot SELECT current_setting('allowed_directories')",
        "INSERT INTO loot SELECT path FROM duckdb_databases()",
        "CREATE TABLE stolen AS SELECT * FROM __ducklake_metadata_lake.ducklake_snapshot",
    ];
    let before = lake_state(&app, &admin).await;
    for (key, attacks) in [(&read, &read_attacks[..]), (&write, &write_attacks[..])] {
        for sql in attacks {
            let (status, body) = query_as(&app, key, &json!({ "sql": sql })).await;
            assert_eq!(status, 403, "POST {sql}: {body}");
            let (status, body) = get_query(&app, key, sql).await;
            assert!(matches!(status, 403 | 405), "GET {sql}: {status} {body}");
            flight_refuses(&app, key, sql).await;
        }
    }
    assert_eq!(lake_state(&app, &admin).await, before);
    app.stop().await;
}

/// The GET form's answer to `sql`: status and body text.
async fn get_query(app: &common::TestApp, key: &str, sql: &str) -> (u16, String) {
    let res = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[("sql", sql)])
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// Flight SQL refuses `sql` for `key` with PERMISSION_DENIED.
async fn flight_refuses(app: &common::TestApp, key: &str, sql: &str) {
    let mut flight = crate::flight::client(app).await;
    flight.set_token(key.to_string());
    let err = flight.execute(sql.to_string(), None).await.unwrap_err();
    let (code, message) = crate::flight::flight_error_status(&err);
    assert_eq!(
        code,
        tonic::Code::PermissionDenied,
        "Flight {sql:?}: {message}"
    );
}

/// Lexemes DuckDB reads in ways a second tokenizer may not: every
/// separator and line end, comments of each kind (one a `\r` ends, nested,
/// unterminated), strings of each kind, quoted names, placeholders.
const LEXEMES: &[&str] = &[
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\u{a0}",
    "\u{85}",
    "\u{2028}",
    "-- c\r",
    "-- c\n",
    "-- ;\r",
    "--",
    "/* c */",
    "/* ; */",
    "/* /* nested */ ; */",
    "/*",
    "*/",
    "'s;'",
    "'it''s'",
    "'",
    "E'\\''",
    "E'\\\\'",
    "E'",
    "$$;$$",
    "$$",
    "$t$ ; $t$",
    "U&'\\0041'",
    "\"q;\"\"\"",
    "\"",
    ";",
    ";",
    "(",
    ")",
    ",",
    "?",
    "$1",
    "$name",
    ":name",
    "\\",
    "EXPLAIN ",
    "EXPLAIN ANALYZE ",
    "EXPLAIN (FORMAT json) ",
    "EXPLAIN (ANALYZE) ",
    "SELECT 1",
    "SELECT ",
    "FROM victim",
    "SELECT n FROM victim",
    "PIVOT victim ON n USING count(*)",
    "AS",
];

/// What a read key must never get to run.
const READ_HIDDEN: &[&str] = &[
    "INSERT INTO victim VALUES (666)",
    "INSERT INTO victim\nSELECT 666",
    "DELETE FROM victim",
    "UPDATE victim SET n = 666",
    "DROP TABLE victim",
    "CREATE TABLE pwn AS SELECT 1",
    "CREATE OR REPLACE TABLE victim AS SELECT 666 AS n",
    "ALTER TABLE victim ADD COLUMN z INT",
    "CALL ducklake_expire_snapshots('lake', older_than => now())",
];

/// What a write key must never get to run.
const WRITE_HIDDEN: &[&str] = &[
    "CALL ducklake_expire_snapshots('lake', older_than => now())",
    "INSERT INTO loot SELECT current_setting('allowed_directories')",
    "INSERT INTO loot SELECT table_name FROM __ducklake_metadata_lake.ducklake_table",
    "INSERT INTO loot SELECT * FROM query($1)",
    "INSERT INTO loot SELECT path FROM duckdb_databases()",
    "INSERT INTO loot VALUES ('ok')",
    "INSERT INTO loot VALUES (?)",
];

/// What may stand between a head and the statement it hides: DuckDB's
/// separators and every way to end (or not end) a comment.
const SEPARATORS: &[&str] = &[
    " ",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\x0c",
    "\u{a0}",
    "-- c\r",
    "-- c\n",
    "-- ;\r",
    "--\r",
    "/* c */",
    "/* ; */",
    "/* /* ; */ */",
    "/* -- */",
    "-- /*\r",
    "/* \r */",
];

/// Heads that make another tokenizer (or none) read what follows
/// differently, and statements a hidden one may follow.
const HEADS: &[&str] = &[
    "EXPLAIN ",
    "EXPLAIN ANALYZE ",
    "EXPLAIN (ANALYZE) ",
    "EXPLAIN (FORMAT json) ",
    "EXPLAIN (ANALYZE, FORMAT json) ",
    "explain analyse ",
    "EXPLAIN",
    "SELECT 1",
    "SELECT 1;",
    "SELECT 'a;b';",
    "SELECT $$;$$;",
    "SELECT E'\\'';",
    "SELECT ?;",
];

fn pick<'a>(steps: &mut Steps, from: &[&'a str]) -> &'a str {
    from[steps.below(from.len())]
}

fn fuzz_request(steps: &mut Steps, hidden: &[&str]) -> String {
    let mut sql = String::new();
    match steps.below(3) {
        // A head, separators, the hidden statement, maybe more.
        0 | 1 => {
            sql.push_str(pick(steps, HEADS));
            for _ in 0..1 + steps.below(2) {
                sql.push_str(pick(steps, SEPARATORS));
            }
            // The hidden statement with one of its spaces a separator too
            // (a line end another tokenizer's comment would stop at).
            let statement = pick(steps, hidden);
            match statement.match_indices(' ').nth(steps.below(3)) {
                Some((at, _)) if steps.below(2) == 0 => {
                    sql.push_str(&statement[..at]);
                    sql.push_str(pick(steps, SEPARATORS));
                    sql.push_str(&statement[at + 1..]);
                }
                _ => sql.push_str(statement),
            }
            if steps.below(3) == 0 {
                sql.push_str(pick(steps, SEPARATORS));
                sql.push_str(pick(steps, LEXEMES));
            }
        }
        // Free-form: lexemes and hidden statements in any order.
        _ => {
            for _ in 0..1 + steps.below(7) {
                let piece = match steps.below(4) {
                    0 => pick(steps, hidden),
                    _ => pick(steps, LEXEMES),
                };
                sql.push_str(piece);
            }
            if !hidden.iter().any(|h| sql.contains(h)) {
                sql.push_str(pick(steps, SEPARATORS));
                sql.push_str(pick(steps, hidden));
            }
        }
    }
    sql
}

fn fuzz_cases() -> usize {
    std::env::var("SANDBOX_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400)
}

/// A failure prints the seed and the request that broke the property.
#[actix_web::test]
async fn fuzzed_requests_never_let_a_key_do_more_than_its_role() {
    let (app, [read, write, admin]) = app_with_a_key_per_role().await;
    setup(&app, &admin).await;
    let mut steps = Steps::seeded("SANDBOX_FUZZ_SEED");
    let seed = steps.0;
    eprintln!("sandbox fuzz: SANDBOX_FUZZ_SEED={seed}");
    let secret_path = app.data_dir.display().to_string();
    // The keys work: what the fuzzer sees refused is refused for its text.
    for (key, sql) in [
        (&read, "SELECT n FROM victim"),
        (&write, "INSERT INTO loot VALUES ('ok')"),
    ] {
        let (status, body) = query_as(&app, key, &json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {body}");
    }
    let cases = fuzz_cases();
    let mut answered = [0usize; 6];
    for case in 0..cases {
        let as_write = case % 3 == 2;
        let (key, hidden) = if as_write {
            (&write, WRITE_HIDDEN)
        } else {
            (&read, READ_HIDDEN)
        };
        let sql = fuzz_request(&mut steps, hidden);
        let params = match steps.below(3) {
            0 => Value::Null,
            1 => json!(["ok"]),
            _ => json!({"1": "ok", "name": "ok"}),
        };
        let before = lake_state(&app, &admin).await;
        let (status, body) = match steps.below(3) {
            0 => get_query(&app, key, &sql).await,
            _ => {
                let mut body = json!({ "sql": sql });
                if !params.is_null() {
                    body["params"] = if sql.contains("query($1)") {
                        json!(["SELECT table_name FROM __ducklake_metadata_lake.ducklake_table"])
                    } else {
                        params.clone()
                    };
                }
                let res = app
                    .client
                    .post(app.url("/api/v1/query"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.text().await.unwrap())
            }
        };
        answered[(status / 100) as usize % 6] += 1;
        let context = format!("seed {seed} case {case} {status} {sql:?}: {body}");
        assert!(
            status < 500,
            "a server error for a client's text: {context}"
        );
        assert!(
            !body.contains(&secret_path),
            "the answer shows a setting: {context}"
        );
        let after = lake_state(&app, &admin).await;
        if as_write {
            // No admin work: no snapshot expired. Nothing read from the
            // catalog or the settings landed in a table.
            assert!(
                after[1].as_i64() >= before[1].as_i64(),
                "snapshots expired: {context}"
            );
            let (_, loot) = query_as(
                &app,
                &admin,
                &json!({"sql": "SELECT count(*) FROM loot WHERE v IS DISTINCT FROM 'ok'"}),
            )
            .await;
            assert_eq!(
                loot["rows"],
                json!([[0]]),
                "the catalog or a setting leaked: {context}"
            );
        } else {
            assert_eq!(after, before, "a read key changed the lake: {context}");
        }
    }
    eprintln!("sandbox fuzz: {cases} cases, answers by class (1xx..5xx): {answered:?}");
    assert!(answered[4] > 0, "{answered:?}");
    app.stop().await;
}
