//! The lake as REST resources on the embedded default: schemas, tables,
//! snapshots and change feeds (the PostgreSQL + S3 variant is in stack.rs).

use crate::common;

use std::collections::BTreeSet;

use common::{error_code, spawn_app, TestApp};
use serde_json::{json, Value};

/// `/api/v1/<segments...>` with each segment percent-encoded.
fn api_url(app: &TestApp, segments: &[&str]) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&app.base).unwrap();
    url.path_segments_mut()
        .unwrap()
        .extend(["api", "v1"])
        .extend(segments);
    url
}

async fn get(app: &TestApp, url: reqwest::Url) -> (u16, Value, reqwest::header::HeaderMap) {
    let res = app.client.get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap(), headers)
}

/// Every page of a list, following `next_cursor`.
async fn all_pages(app: &TestApp, path: &str, query: &[(&str, &str)], limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = api_url(app, &[path]);
        url.query_pairs_mut()
            .extend_pairs(query)
            .append_pair("limit", &limit.to_string());
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let (status, body, _) = get(app, url).await;
        assert_eq!(status, 200, "{body}");
        let page = body["items"].as_array().unwrap();
        assert!(page.len() <= limit);
        items.extend(page.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}

fn names(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn schemas_are_created_listed_paged_and_dropped() {
    let app = spawn_app().await;
    let odd = "x\"; DROP TABLE y; --";
    for name in ["sales", "sales_eu", "hr", odd] {
        let res = app
            .client
            .post(app.url("/api/v1/schemas"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{name}");
        let snapshot: i64 = res.headers()["x-ducklake-snapshot"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["name"], name);
        assert_eq!(body["snapshot"], snapshot);
    }
    let all = all_pages(&app, "schemas", &[], 2).await;
    let listed = names(&all, "name");
    let mut expected = vec!["hr", "main", "sales", "sales_eu", odd];
    expected.sort();
    assert_eq!(listed, expected, "every schema once, in name order");

    let sales = all_pages(&app, "schemas", &[("prefix", "sales")], 10).await;
    assert_eq!(names(&sales, "name"), ["sales", "sales_eu"]);

    // The odd name is only a name: a table in it works and nothing else was dropped.
    app.sql(&format!(
        "CREATE TABLE \"{}\".t AS SELECT 1 AS a",
        odd.replace('"', "\"\"")
    ))
    .await;
    let (status, body) = app
        .post_query(json!({ "sql": "CREATE TABLE y (a INT)" }))
        .await;
    assert_eq!(status, 200, "{body}");

    let res = app
        .client
        .post(app.url("/api/v1/schemas"))
        .json(&json!({ "name": "sales" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(error_code(&res.json().await.unwrap()), "already_exists");

    let drop_url = |cascade: bool| {
        let mut url = api_url(&app, &["schemas", odd]);
        if cascade {
            url.query_pairs_mut().append_pair("cascade", "true");
        }
        url
    };
    let res = app.client.delete(drop_url(false)).send().await.unwrap();
    assert_eq!(res.status(), 409, "a schema with a table is not dropped");
    assert_eq!(error_code(&res.json().await.unwrap()), "not_empty");
    let res = app.client.delete(drop_url(true)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.delete(drop_url(true)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let listed = names(&all_pages(&app, "schemas", &[], 100).await, "name");
    assert!(!listed.contains(&odd.to_string()));
    let tables = names(&all_pages(&app, "tables", &[], 100).await, "name");
    assert!(tables.contains(&"y".to_string()), "{tables:?}");

    // A schema named like the lake itself must not confuse the service's
    // own SQL (schemathesis found `lake.current_snapshot()` ambiguous).
    let res = app
        .client
        .post(app.url("/api/v1/schemas"))
        .json(&json!({ "name": "lake" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_query(json!({"sql": "SELECT count(*) FROM y"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get_json("/api/v1/tables/main/y").await;
    assert_eq!(status, 200, "{body}");

    // The default schema stays, through the API and through SQL.
    let res = app
        .client
        .delete(api_url(&app, &["schemas", "MAIN"]))
        .query(&[("cascade", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (status, body) = app
        .post_query(json!({"sql": "DROP SCHEMA main CASCADE"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden_statement"),
        "{body}"
    );

    for bad in ["", " ", "a\u{7}b"] {
        let res = app
            .client
            .post(app.url("/api/v1/schemas"))
            .json(&json!({ "name": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad:?}");
    }
    for query in [
        "limit=0",
        "cursor=bm90LWEta2V5",
        "cursor=%%%",
        "limit=x",
        "nope=1",
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/schemas?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn table_pages_stay_stable_while_tables_are_created() {
    let app = spawn_app().await;
    app.sql("CREATE SCHEMA a; CREATE SCHEMA b").await;
    let mut before = BTreeSet::new();
    for i in 0..12 {
        let schema = if i % 2 == 0 { "a" } else { "b" };
        app.sql(&format!("CREATE TABLE {schema}.t{i:02} (x INT)"))
            .await;
        before.insert(format!("{schema}.t{i:02}"));
    }
    // Page through while another client keeps creating tables, some of them
    // sorting before the page being read and some after.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut extra = 0;
    loop {
        let mut url = api_url(&app, &["tables"]);
        url.query_pairs_mut().append_pair("limit", "3");
        if let Some(c) = &cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let (status, body, _) = get(&app, url).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            seen.push(format!(
                "{}.{}",
                item["schema"].as_str().unwrap(),
                item["name"].as_str().unwrap()
            ));
        }
        for schema in ["a", "b"] {
            app.sql(&format!("CREATE TABLE {schema}.new{extra:02} (x INT)"))
                .await;
            app.sql(&format!("CREATE TABLE {schema}.aa{extra:02} (x INT)"))
                .await;
        }
        extra += 1;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no table twice: {seen:?}");
    assert!(
        before.is_subset(&unique),
        "every table that existed throughout is listed"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "in (schema, name) order");

    let only_b = all_pages(&app, "tables", &[("schema", "b"), ("prefix", "t")], 4).await;
    assert_eq!(
        names(&only_b, "name"),
        ["t01", "t03", "t05", "t07", "t09", "t11"]
    );
    assert!(only_b.iter().all(|t| t["schema"] == "b"));
    app.stop().await;
}

#[actix_web::test]
async fn a_table_describes_its_columns_files_and_last_change() {
    let app = spawn_app().await;
    app.sql("CREATE SCHEMA s").await;
    app.sql(
        "CREATE TABLE s.events (id BIGINT NOT NULL, kind VARCHAR DEFAULT 'x', day DATE, amount DECIMAL(10,2))",
    )
    .await;
    app.sql("ALTER TABLE s.events SET PARTITIONED BY (year(day))")
        .await;
    app.sql(
        "INSERT INTO s.events SELECT i, 'k' || (i % 3), DATE '2024-01-01' + (i % 400)::INT, i / 100 \
         FROM range(5000) t(i)",
    )
    .await;
    app.sql("DELETE FROM s.events WHERE id < 100").await;
    let (status, body) = app.get_json("/api/v1/snapshots?limit=1").await;
    assert_eq!(status, 200);
    let last_snapshot = body["items"][0]["id"].as_i64().unwrap();

    let (status, detail, headers) = get(&app, api_url(&app, &["tables", "s", "events"])).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["schema"], "s");
    assert_eq!(detail["name"], "events");
    assert_eq!(detail["row_count"], 4900);
    assert!(
        detail["data_file_count"].as_i64().unwrap() >= 2,
        "one file per year partition: {detail}"
    );
    assert!(detail["size_bytes"].as_i64().unwrap() > 0);
    assert!(
        detail["delete_file_count"].as_i64().unwrap() >= 1,
        "{detail}"
    );
    assert_eq!(detail["last_change_snapshot"], last_snapshot);
    assert_eq!(
        headers["x-ducklake-snapshot"],
        last_snapshot.to_string().as_str()
    );
    let columns = detail["columns"].as_array().unwrap();
    assert_eq!(names(columns, "name"), ["id", "kind", "day", "amount"]);
    assert_eq!(
        names(columns, "type"),
        ["BIGINT", "VARCHAR", "DATE", "DECIMAL(10,2)"]
    );
    assert_eq!(columns[0]["nullable"], false);
    assert_eq!(columns[1]["nullable"], true);
    assert_eq!(columns[1]["default"], "'x'");
    assert_eq!(columns[0]["stats"]["min"], "0");
    assert_eq!(columns[0]["stats"]["max"], "4999");
    assert_eq!(columns[0]["stats"]["contains_null"], false);
    assert_eq!(
        detail["partitioning"],
        json!([{"column": "day", "transform": "year"}])
    );

    // The list shows the same numbers.
    let listed = all_pages(&app, "tables", &[("schema", "s")], 10).await;
    assert_eq!(listed.len(), 1);
    for key in [
        "row_count",
        "data_file_count",
        "size_bytes",
        "last_change_snapshot",
    ] {
        assert_eq!(listed[0][key], detail[key], "{key}");
    }

    let (status, body, _) = get(&app, api_url(&app, &["tables", "s", "nope"])).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
    app.stop().await;
}

#[actix_web::test]
async fn snapshots_page_newest_first_and_changes_list_row_changes() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t (id INT, v VARCHAR)").await;
    let first = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0]["id"]
        .as_i64()
        .unwrap();
    app.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    app.sql("UPDATE t SET v = 'z' WHERE id = 1").await;
    app.sql("DELETE FROM t WHERE id = 2").await;

    let all = all_pages(&app, "snapshots", &[], 2).await;
    let ids: Vec<i64> = all.iter().map(|s| s["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(
        ids.len(),
        (ids[0] + 1) as usize,
        "every snapshot once: {ids:?}"
    );
    assert_eq!(
        all.last().unwrap()["changes"]["schemas_created"],
        json!(["main"])
    );
    assert!(all[0]["time"].as_str().unwrap().ends_with('Z'));

    let mut url = api_url(&app, &["tables", "main", "t", "changes"]);
    url.query_pairs_mut()
        .append_pair("from", &(first + 1).to_string())
        .append_pair("format", "json_objects");
    let (status, body, headers) = get(&app, url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-ducklake-snapshot"], ids[0].to_string().as_str());
    let kinds: Vec<(i64, String, Value)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["change_type"].as_str().unwrap().to_string(),
                r["v"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "insert".to_string(), json!("a")),
            (2, "insert".to_string(), json!("b")),
            (1, "update_postimage".to_string(), json!("z")),
            (1, "update_preimage".to_string(), json!("a")),
            (2, "delete".to_string(), json!("b")),
        ]
    );

    // Only the range asked for.
    let mut url = api_url(&app, &["tables", "main", "t", "changes"]);
    url.query_pairs_mut()
        .append_pair("from", &ids[0].to_string())
        .append_pair("to", &ids[0].to_string())
        .append_pair("format", "csv");
    let res = app.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_eq!(text.lines().count(), 2, "header and the one delete: {text}");
    assert!(text.contains("delete"));

    for (query, status) in [("from=5&to=2", 422), ("to=999999", 422), ("from=-1", 422)] {
        let (got, body) = app
            .get_json(&format!("/api/v1/tables/main/t/changes?{query}"))
            .await;
        assert_eq!(got, status, "{query}: {body}");
    }
    let (status, _) = app.get_json("/api/v1/tables/main/nope/changes").await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn query_with(
    app: &TestApp,
    body: Value,
    if_none_match: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = app.client.post(app.url("/api/v1/query")).json(&body);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body, headers)
}

fn header_i64(headers: &reqwest::header::HeaderMap, name: &str) -> i64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn queries_read_the_past_when_pinned_to_a_snapshot_or_time() {
    let app = spawn_app().await;
    let (_, _, h) = query_with(
        &app,
        json!({"sql": "CREATE TABLE t (id INT, v VARCHAR)"}),
        None,
    )
    .await;
    let created = header_i64(&h, "x-ducklake-snapshot");
    let (status, _, h) = query_with(
        &app,
        json!({"sql": "INSERT INTO t VALUES (1, 'old'), (2, 'old')"}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let inserted = header_i64(&h, "x-ducklake-snapshot");
    assert!(inserted > created, "a write names the snapshot it created");
    let newest = app.get_json("/api/v1/snapshots?limit=1").await.1["items"][0].clone();
    assert_eq!(newest["id"], inserted);
    let inserted_at = newest["time"].as_str().unwrap().to_string();
    app.sql("CREATE TABLE u (id INT, w VARCHAR)").await;
    app.sql("INSERT INTO u VALUES (1, 'u-old')").await;
    let (_, _, h) = query_with(&app, json!({"sql": "UPDATE t SET v = 'new'"}), None).await;
    let updated = header_i64(&h, "x-ducklake-snapshot");
    app.sql("DELETE FROM t WHERE id = 2").await;

    let sql = "SELECT id, v FROM t ORDER BY id";
    let (status, now, h) = query_with(&app, json!({"sql": sql}), None).await;
    assert_eq!(status, 200);
    assert_eq!(now["rows"], json!([[1, "new"]]));
    assert!(
        header_i64(&h, "x-ducklake-snapshot") > updated,
        "a read names the snapshot it read"
    );

    let (status, past, h) = query_with(&app, json!({"sql": sql, "snapshot": inserted}), None).await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["rows"], json!([[1, "old"], [2, "old"]]));
    assert_eq!(header_i64(&h, "x-ducklake-snapshot"), inserted);

    let (status, past, h) = query_with(&app, json!({"sql": sql, "as_of": inserted_at}), None).await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["rows"], json!([[1, "old"], [2, "old"]]));
    assert_eq!(header_i64(&h, "x-ducklake-snapshot"), inserted);

    // Every table is pinned (u did not exist yet), CTE names are not;
    // parameters still bind. An AT of the statement's own would read
    // another snapshot under the pin's label: refused.
    let (status, body, _) = query_with(
        &app,
        json!({"sql": "SELECT * FROM u", "snapshot": inserted}),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = query_with(
        &app,
        json!({
            "sql": "WITH c AS (SELECT id, v FROM t WHERE id = ?) \
                    SELECT c.v, x.v FROM c JOIN t AS x AT (VERSION => ?) USING (id)",
            "params": [1, updated],
            "snapshot": inserted,
        }),
        None,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("at snapshot {updated}")),
        "{body}"
    );
    let (status, body, _) = query_with(
        &app,
        json!({
            "sql": "WITH c AS (SELECT id, v FROM t WHERE id = ?) \
                    SELECT c.v, x.v FROM c JOIN t AS x AT (VERSION => ?) USING (id)",
            "params": [1, inserted],
            "snapshot": inserted,
        }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([["old", "old"]]));
    // A CTE's name shadows the table only where DuckDB binds it as the CTE:
    // in its query node, in later CTEs, in its own body when recursive. A
    // table of the same name anywhere else is pinned (id 2 exists only in
    // the past).
    for (sql, rows) in [
        (
            "SELECT t.v, c.x FROM t, (WITH t AS (SELECT 1 AS x) SELECT x FROM t) AS c WHERE t.id = 2",
            json!([["old", 1]]),
        ),
        (
            "WITH a AS (SELECT v FROM t WHERE id = 2), t AS (SELECT 'cte' AS v) SELECT * FROM a",
            json!([["old"]]),
        ),
        (
            "WITH t AS (SELECT v FROM t WHERE id = 2) SELECT * FROM t",
            json!([["old"]]),
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT count(*) FROM r, t",
            json!([[6]]),
        ),
    ] {
        let (status, body, _) =
            query_with(&app, json!({"sql": sql, "snapshot": inserted}), None).await;
        assert_eq!((status, &body["rows"]), (200, &rows), "{sql}: {body}");
    }

    let res = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[
            ("sql", sql),
            ("snapshot", &inserted.to_string()),
            ("format", "csv"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "id,v\n1,old\n2,old\n");

    for (body, code) in [
        (
            json!({"sql": "INSERT INTO t VALUES (3, 'x')", "snapshot": inserted}),
            "invalid_parameters",
        ),
        (
            json!({"sql": sql, "snapshot": 999_999}),
            "invalid_parameters",
        ),
        (
            json!({"sql": sql, "as_of": "1999-01-01T00:00:00Z"}),
            "invalid_parameters",
        ),
        (
            json!({"sql": sql, "as_of": "yesterday-ish"}),
            "invalid_parameters",
        ),
        (
            json!({"sql": sql, "snapshot": inserted, "as_of": inserted_at}),
            "invalid_parameters",
        ),
    ] {
        let (status, answer, _) = query_with(&app, body.clone(), None).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(error_code(&answer), code);
    }
    let count = app.sql("SELECT count(*) FROM t").await;
    assert_eq!(
        count["rows"],
        json!([[1]]),
        "the refused pinned write did nothing"
    );

    // A request with a write whose answer streams starts it before its
    // commit: no snapshot header then (the one it read is not the one it
    // creates). DuckLake has no RETURNING: the long answer is the read
    // after the write.
    let before = header_i64(
        &query_with(&app, json!({"sql": sql}), None).await.2,
        "x-ducklake-snapshot",
    );
    let (status, body, h) = query_with(
        &app,
        json!({
            "sql": "INSERT INTO t VALUES (10, 'x'); SELECT range, repeat('x', 40) FROM range(50000)",
            "format": "csv",
        }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-result-streamed"], "true");
    assert!(h.get("x-ducklake-snapshot").is_none(), "{h:?}");
    let (_, _, h) = query_with(&app, json!({"sql": sql}), None).await;
    assert!(
        header_i64(&h, "x-ducklake-snapshot") > before,
        "the write committed"
    );
    app.stop().await;
}

#[actix_web::test]
async fn etags_revalidate_until_the_tables_read_change() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t (id INT); INSERT INTO t VALUES (1)")
        .await;
    app.sql("CREATE TABLE other (id INT)").await;
    let read = json!({"sql": "SELECT count(*) AS n FROM t"});
    let (status, _, h) = query_with(&app, read.clone(), None).await;
    assert_eq!(status, 200);
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("W/\"s"), "{etag}");
    assert_eq!(h["cache-control"], "private, no-cache");

    let (status, body, h) = query_with(&app, read.clone(), Some(&etag)).await;
    assert_eq!(status, 304, "{body}");
    assert_eq!(h["etag"].to_str().unwrap(), etag);

    // A write elsewhere in the lake moves the snapshot but not this result.
    app.sql("INSERT INTO other VALUES (7)").await;
    let (status, _, _) = query_with(&app, read.clone(), Some(&etag)).await;
    assert_eq!(status, 304, "other tables changing does not matter");
    // The same ETag on another query, format or row limit does not match.
    for other in [
        json!({"sql": "SELECT count(*) AS m FROM t"}),
        json!({"sql": "SELECT count(*) AS n FROM t", "format": "csv"}),
        json!({"sql": "SELECT count(*) AS n FROM t", "max_rows": 5}),
    ] {
        let (status, body, _) = query_with(&app, other.clone(), Some(&etag)).await;
        assert_eq!(status, 200, "{other} {body}");
    }
    // A write to the table read does.
    app.sql("INSERT INTO t VALUES (2)").await;
    let (status, body, h) = query_with(&app, read.clone(), Some(&etag)).await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"], json!([[2]]));
    let fresh = h["etag"].to_str().unwrap().to_string();
    assert_ne!(fresh, etag);
    let (status, _, _) = query_with(&app, read.clone(), Some(&format!("\"nope\", {fresh}"))).await;
    assert_eq!(status, 304, "any tag of the list may match");

    // The GET form revalidates too.
    let url = |sql: &str| {
        let mut url = reqwest::Url::parse(&app.url("/api/v1/query")).unwrap();
        url.query_pairs_mut().append_pair("sql", sql);
        url
    };
    let res = app
        .client
        .get(url("SELECT * FROM t ORDER BY id"))
        .send()
        .await
        .unwrap();
    let tag = res.headers()["etag"].to_str().unwrap().to_string();
    let res = app
        .client
        .get(url("SELECT * FROM t ORDER BY id"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    // Results that vary between runs, writes, and reads of a source that
    // can change without a lake table changing (metadata functions, catalog
    // views, DuckDB's own tables, also behind a view) carry no ETag: there
    // is no version to revalidate them against.
    app.sql("CREATE VIEW snapshot_count AS SELECT count(*) AS n FROM ducklake_snapshots('lake')")
        .await;
    for sql in [
        "SELECT random()",
        "SELECT now()",
        "INSERT INTO t VALUES (3)",
        "SELECT count(*) FROM ducklake_snapshots('lake')",
        "SELECT * FROM ducklake_table_info('lake')",
        "SELECT count(*) FROM information_schema.tables",
        "SELECT count(*) FROM duckdb_tables()",
        "SELECT * FROM snapshot_count",
        "SELECT t.id, s.n FROM t, snapshot_count s",
        "SELECT * FROM t USING SAMPLE 50%",
        "SELECT * FROM t TABLESAMPLE 1 ROWS",
    ] {
        let (status, _, h) = query_with(&app, json!({"sql": sql}), None).await;
        assert_eq!(status, 200);
        assert!(h.get("etag").is_none(), "{sql}");
    }
    // A pinned read never changes: its ETag holds through later writes.
    let pinned = json!({"sql": "SELECT * FROM t ORDER BY id", "snapshot": header_i64(&h, "x-ducklake-snapshot")});
    let (_, _, h) = query_with(&app, pinned.clone(), None).await;
    let tag = h["etag"].to_str().unwrap().to_string();
    app.sql("DELETE FROM t").await;
    let (status, _, _) = query_with(&app, pinned, Some(&tag)).await;
    assert_eq!(status, 304);
    app.stop().await;
}

/// What a JSON answer says, without its timing.
fn answer_of(body: &Value) -> Value {
    json!({"columns": body["columns"], "rows": body["rows"], "truncated": body["truncated"]})
}

/// Random sequences of writes, DDL and reads. Every read that holds an
/// ETag from an earlier answer revalidates it; each 304 is checked against
/// a fresh run without `If-None-Match`, which must answer what the ETag's
/// answer said. Zero stale answers in 2,000 steps (`ETAG_STEPS` for more).
#[actix_web::test]
async fn every_304_matches_a_fresh_run_over_random_steps() {
    // The fresh runs are the truth: none of them from the result cache
    // (tests/integration/cache.rs holds the cache to the same standard).
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.cache.enabled = false;
    let app = common::spawn_with(config, Some(dir)).await;
    let mut rng = common::Steps::seeded("ETAG_SEED");
    let seed = rng.0;
    let steps: usize = std::env::var("ETAG_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("ETAG_SEED={seed}");
    for sql in common::PROPERTY_SETUP {
        app.sql(sql).await;
    }
    let writes = common::PROPERTY_WRITES;
    let reads = [
        "SELECT * FROM a ORDER BY id",
        "SELECT count(*), sum(w) FROM b",
        "SELECT * FROM b ORDER BY id",
        "SELECT * FROM va ORDER BY id",
        "SELECT a.id, a.v, b.w FROM a JOIN b USING (id) ORDER BY 1",
        "WITH x AS (SELECT id FROM a WHERE id > 1) SELECT count(*) FROM x",
        "SELECT a.id, r.range FROM a, range(2) r ORDER BY ALL",
        "SELECT count(*) FROM c",
        "SELECT count(*) FROM ducklake_snapshots('lake')",
        "SELECT table_name FROM information_schema.tables ORDER BY 1",
        "SELECT count(*) FROM duckdb_tables()",
        "SELECT table_name, file_count FROM ducklake_table_info('lake') ORDER BY 1",
    ];
    // (request, the answer its ETag was issued with, the ETag)
    let mut held: Vec<(Value, Value, String)> = Vec::new();
    let mut snapshots: Vec<i64> = Vec::new();
    let (mut revalidated, mut not_modified, mut stale) = (0, 0, Vec::new());
    for step in 0..steps {
        if rng.below(10) < 3 {
            let sql = writes[rng.below(writes.len())];
            let (status, body, h) = query_with(&app, json!({ "sql": sql }), None).await;
            // A read of a dropped table fails; writes to it are not attempted.
            assert_eq!(status, 200, "step {step}: {sql}: {body}");
            snapshots.push(header_i64(&h, "x-ducklake-snapshot"));
            continue;
        }
        // Half the time an ETag we hold, else a read of our own choosing
        // (pinned to a snapshot we saw, now and then).
        let request = if !held.is_empty() && rng.below(2) == 0 {
            held[rng.below(held.len())].0.clone()
        } else {
            let mut request = json!({ "sql": reads[rng.below(reads.len())] });
            if !snapshots.is_empty() && rng.below(5) == 0 {
                request["snapshot"] = json!(snapshots[rng.below(snapshots.len())]);
            }
            request
        };
        let tag = held
            .iter()
            .rev()
            .find(|(r, _, _)| *r == request)
            .map(|(_, answer, tag)| (answer.clone(), tag.clone()));
        let (status, body, h) =
            query_with(&app, request.clone(), tag.as_ref().map(|(_, t)| t.as_str())).await;
        if tag.is_some() {
            revalidated += 1;
        }
        match status {
            304 => {
                not_modified += 1;
                let (answer, _) = tag.as_ref().expect("a 304 only to a revalidation");
                let (status, fresh, _) = query_with(&app, request.clone(), None).await;
                if status != 200 || answer_of(&fresh) != *answer {
                    stale.push(format!(
                        "step {step}: {request}: 304 for {answer}, a fresh run: {status} {}",
                        answer_of(&fresh)
                    ));
                }
            }
            200 => {
                if let Some(etag) = h.get("etag") {
                    held.retain(|(r, _, _)| *r != request);
                    held.push((
                        request,
                        answer_of(&body),
                        etag.to_str().unwrap().to_string(),
                    ));
                }
            }
            // A table dropped, or a pin the statement cannot take.
            400 | 404 | 422 => {}
            other => panic!("step {step}: {request}: {other} {body}"),
        }
    }
    println!("{steps} steps: {revalidated} revalidations, {not_modified} answered 304");
    assert!(
        stale.is_empty(),
        "ETAG_SEED={seed}: {} stale 304s:\n{}",
        stale.len(),
        stale.join("\n")
    );
    // The run revalidated enough for the property to mean something.
    assert!(
        not_modified >= steps / 20,
        "only {not_modified} 304s in {steps} steps"
    );
    app.stop().await;
}

/// Every request gives its connection back clean: no transaction open and
/// the lake the default database. One that commits carries the pool's reset
/// inside its transaction (a reset of its own would cost a DuckLake
/// transaction); one that fails, or leaves a transaction open, is reset on
/// its way back.
#[actix_web::test]
async fn a_connection_comes_back_clean_from_every_request() {
    use ducklake_backend::{
        engine::{stream::TransactionMode, Engine, QueryRequest},
        format::encode::Format,
        role::Role,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    // One connection: every request below takes the one checked after it.
    config.duckdb.connections = 1;
    let engine = tokio::task::spawn_blocking(move || Engine::open(&config).unwrap())
        .await
        .unwrap();
    let run = |sql: &str, mode| {
        let request = QueryRequest {
            sql: sql.to_string(),
            role: Role::Admin,
            ..Default::default()
        };
        let engine = &engine;
        async move {
            match engine.stream(request, Format::Json, mode).await {
                Ok(stream) => stream.body.collect().await,
                Err(err) => Err(err),
            }
        }
    };
    let clean = || async {
        let conn = engine.acquire().await.unwrap();
        // BEGIN fails inside an open transaction.
        conn.execute_batch("BEGIN TRANSACTION; ROLLBACK")
            .expect("no transaction left open");
        let path: String = conn
            .query_row("SELECT current_setting('search_path')", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(path, "lake.main");
    };
    // Successes, then failures: at the check, at execution, and in a
    // transaction with a statement run already.
    let requests = [
        (
            "CREATE TABLE t AS SELECT 1 AS a",
            TransactionMode::AutoCommit,
            true,
        ),
        ("SELECT * FROM t", TransactionMode::ReadOnly, true),
        ("SELECT * FROM t WHERE a = 1", TransactionMode::Single, true),
        ("SELECT * FROM missing", TransactionMode::AutoCommit, false),
        (
            "SELECT 1 / 0::INT, error('no')",
            TransactionMode::AutoCommit,
            false,
        ),
        (
            "INSERT INTO t VALUES (2); SELECT * FROM missing",
            TransactionMode::Single,
            false,
        ),
    ];
    for (sql, mode, succeeds) in requests {
        let outcome = run(sql, mode).await.map(|_| ());
        assert_eq!(outcome.is_ok(), succeeds, "{sql}: {outcome:?}");
        clean().await;
    }
    // The failed transaction's insert is gone with it.
    let count = run("SELECT count(*) AS n FROM t", TransactionMode::ReadOnly)
        .await
        .unwrap();
    let count: Value = serde_json::from_slice(&count).unwrap();
    assert_eq!(count["rows"], json!([[1]]));
}
