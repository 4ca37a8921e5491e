//! Whatever a client sends, the answer is a 4xx JSON error with a stable
//! code, never a 5xx, a hang or a crash, and the service stays healthy.

use crate::common;

use common::spawn_app;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn post(name: &'static str, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path: "/api/v1/query".into(),
        content_type,
        body: body.into(),
    }
}

/// The status and error code each case must get: the one its mistake
/// calls for, not just any 4xx.
fn expected(name: &str) -> (u16, &'static str) {
    match name {
        "malformed JSON"
        | "empty body"
        | "invalid UTF-8"
        | "invalid UTF-8 escape"
        | "NUL byte in SQL"
        | "only NUL" => (400, "invalid_request"),
        "no content type" | "text/plain" | "form" => (415, "unsupported_media_type"),
        "10 MB of SQL" => (413, "payload_too_large"),
        // A parameter no type can hold, or nested past the JSON parser's
        // depth limit: the params field is unusable.
        "deeply nested params"
        | "huge number"
        | "not an object"
        | "a JSON string"
        | "unknown field"
        | "sql of the wrong type"
        | "missing sql"
        | "negative timeout"
        | "zero timeout"
        | "params of the wrong type"
        | "empty SQL"
        | "empty SQL with a 1 ms timeout"
        | "only a comment"
        | "GET without sql"
        | "GET with bad params JSON"
        | "GET with an unknown field"
        | "GET with a bad timeout"
        | "too few params" => (422, "invalid_parameters"),
        "path traversal in storage listing" => (422, "invalid_parameters"),
        "huge integer"
        | "syntax error"
        | "unterminated string"
        | "cast error"
        | "error at run time"
        | "Unicode nonsense" => (400, "sql_error"),
        "missing table" => (404, "not_found"),
        "unknown format" => (406, "unsupported_format"),
        "unknown route" => (404, "route_not_found"),
        "wrong method" => (405, "method_not_allowed"),
        other => panic!("no expected answer for the case {other:?}"),
    }
}

fn get(name: &'static str, path: impl Into<String>) -> Case {
    Case {
        name,
        method: reqwest::Method::GET,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
    }
}

const JSON: Option<&str> = Some("application/json");

#[actix_web::test]
async fn every_bad_request_gets_its_4xx_json_error() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t (a INT)").await;
    let nested_params = format!(
        "{{\"sql\": \"SELECT ?\", \"params\": [{}1{}]}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let ten_mb_sql =
        serde_json::to_vec(&json!({ "sql": format!("SELECT 1 -- {}", "x".repeat(10 << 20)) }))
            .unwrap();
    let cases = vec![
        post("malformed JSON", JSON, "{\"sql\": \"SELECT 1\""),
        post("not an object", JSON, "[1, 2, 3]"),
        post("a JSON string", JSON, "\"SELECT 1\""),
        post("empty body", JSON, ""),
        post("no content type", None, "{\"sql\": \"SELECT 1\"}"),
        post("text/plain", Some("text/plain"), "{\"sql\": \"SELECT 1\"}"),
        post(
            "form",
            Some("application/x-www-form-urlencoded"),
            "sql=SELECT+1",
        ),
        post(
            "invalid UTF-8",
            JSON,
            b"{\"sql\": \"SELECT '\xff\xfe'\"}".to_vec(),
        ),
        post(
            "invalid UTF-8 escape",
            JSON,
            "{\"sql\": \"SELECT '\\ud800'\"}",
        ),
        post(
            "NUL byte in SQL",
            JSON,
            "{\"sql\": \"SELECT 1\\u0000; DROP TABLE t\"}",
        ),
        post("only NUL", JSON, "{\"sql\": \"\\u0000\"}"),
        post("10 MB of SQL", JSON, ten_mb_sql),
        post("deeply nested params", JSON, nested_params),
        post(
            "huge number",
            JSON,
            "{\"sql\": \"SELECT ?\", \"params\": [1e400]}",
        ),
        post(
            "huge integer",
            JSON,
            "{\"sql\": \"SELECT ?::INT\", \"params\": [123456789012345678901234567890]}",
        ),
        post(
            "unknown field",
            JSON,
            "{\"sql\": \"SELECT 1\", \"colour\": \"red\"}",
        ),
        post("sql of the wrong type", JSON, "{\"sql\": 42}"),
        post("missing sql", JSON, "{\"params\": []}"),
        post(
            "negative timeout",
            JSON,
            "{\"sql\": \"SELECT 1\", \"timeout_ms\": -5}",
        ),
        post(
            "zero timeout",
            JSON,
            "{\"sql\": \"SELECT 1\", \"timeout_ms\": 0}",
        ),
        post(
            "params of the wrong type",
            JSON,
            "{\"sql\": \"SELECT ?\", \"params\": \"x\"}",
        ),
        post(
            "too few params",
            JSON,
            "{\"sql\": \"SELECT ?, ?\", \"params\": [1]}",
        ),
        post(
            "unknown format",
            JSON,
            "{\"sql\": \"SELECT 1\", \"format\": \"xml\"}",
        ),
        post("empty SQL", JSON, "{\"sql\": \"   \"}"),
        // Refused before its timeout starts, however loaded the machine.
        post(
            "empty SQL with a 1 ms timeout",
            JSON,
            "{\"sql\": \"\", \"timeout_ms\": 1}",
        ),
        post("only a comment", JSON, "{\"sql\": \"-- nothing\"}"),
        post("syntax error", JSON, "{\"sql\": \"SELEC 1\"}"),
        post("unterminated string", JSON, "{\"sql\": \"SELECT 'open\"}"),
        post("cast error", JSON, "{\"sql\": \"SELECT 'x'::INT\"}"),
        post(
            "error at run time",
            JSON,
            "{\"sql\": \"SELECT error('boom')\"}",
        ),
        post(
            "missing table",
            JSON,
            "{\"sql\": \"SELECT * FROM nowhere\"}",
        ),
        post("Unicode nonsense", JSON, "{\"sql\": \"SELECT 🦆 FROM t\"}"),
        get("GET without sql", "/api/v1/query"),
        get(
            "GET with bad params JSON",
            "/api/v1/query?sql=SELECT%20%3F&params=%5B1",
        ),
        get(
            "GET with an unknown field",
            "/api/v1/query?sql=SELECT%201&colour=red",
        ),
        get(
            "GET with a bad timeout",
            "/api/v1/query?sql=SELECT%201&timeout_ms=soon",
        ),
        get("unknown route", "/api/v1/nothing"),
        get(
            "path traversal in storage listing",
            "/api/v1/storage/objects?path=../../etc",
        ),
        Case {
            name: "wrong method",
            method: reqwest::Method::DELETE,
            path: "/api/v1/query".into(),
            content_type: None,
            body: Vec::new(),
        },
    ];
    let mut wrong = Vec::new();
    for case in &cases {
        let mut req = app
            .client
            .request(case.method.clone(), app.url(&case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header("Content-Type", ct);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let is_json = res
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("<none>");
        let (want_status, want_code) = expected(case.name);
        if (status, code) != (want_status, want_code) || !is_json {
            wrong.push(format!(
                "{}: {status} {body} (expected {want_status} {want_code})",
                case.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not the expected JSON error:\n{}",
        wrong.join("\n")
    );

    // Still healthy, and the table the NUL-byte request tried to drop is there.
    let (status, _) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    app.sql("SELECT count(*) FROM t").await;
    app.stop().await;
}

#[actix_web::test]
async fn unicode_identifiers_and_values_just_work() {
    let app = spawn_app().await;
    app.sql("CREATE SCHEMA \"données\"").await;
    app.sql(
        "CREATE TABLE \"données\".\"表 ☃\" (\"名前\" VARCHAR, \"x\"\"; DROP TABLE y; --\" INT)",
    )
    .await;
    let (status, body) = app
        .post_query(json!({
            "sql": "INSERT INTO \"données\".\"表 ☃\" VALUES (?, ?)",
            "params": ["🦆 ünïcødé \u{0}", 1],
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let body = app
        .sql("SELECT \"名前\", \"x\"\"; DROP TABLE y; --\" FROM \"données\".\"表 ☃\"")
        .await;
    assert_eq!(body["rows"], json!([["🦆 ünïcødé \u{0}", 1]]));
    assert_eq!(body["columns"][1]["name"], "x\"; DROP TABLE y; --");
    app.stop().await;
}
