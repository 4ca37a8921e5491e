//! Every DuckDB type class survives the trip to JSON exactly.

mod common;

use common::spawn_app;
use serde_json::{json, Value};

/// (SQL expression, DuckDB type name reported, JSON value expected)
fn cases() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("true", "BOOLEAN", json!(true)),
        ("(-128)::TINYINT", "TINYINT", json!(-128)),
        ("32767::SMALLINT", "SMALLINT", json!(32767)),
        ("(-2147483648)::INTEGER", "INTEGER", json!(-2147483648i64)),
        (
            "9223372036854775807::BIGINT",
            "BIGINT",
            json!(9223372036854775807i64),
        ),
        ("255::UTINYINT", "UTINYINT", json!(255)),
        (
            "18446744073709551615::UBIGINT",
            "UBIGINT",
            json!(18446744073709551615u64),
        ),
        (
            "170141183460469231731687303715884105727::HUGEINT",
            "HUGEINT",
            raw("170141183460469231731687303715884105727"),
        ),
        (
            "(-170141183460469231731687303715884105727)::HUGEINT",
            "HUGEINT",
            raw("-170141183460469231731687303715884105727"),
        ),
        (
            "123456789012345678.99::DECIMAL(20,2)",
            "DECIMAL(20,2)",
            json!("123456789012345678.99"),
        ),
        ("1.50::DECIMAL(4,2)", "DECIMAL(4,2)", json!("1.50")),
        ("(-0.001)::DECIMAL(10,3)", "DECIMAL(10,3)", json!("-0.001")),
        ("1.5::FLOAT", "FLOAT", json!(1.5)),
        ("0.1::DOUBLE", "DOUBLE", json!(0.1)),
        ("'NaN'::DOUBLE", "DOUBLE", json!("NaN")),
        ("'inf'::DOUBLE", "DOUBLE", json!("Infinity")),
        ("'-inf'::FLOAT", "FLOAT", json!("-Infinity")),
        (
            "'héllo \"q\" \n'::VARCHAR",
            "VARCHAR",
            json!("héllo \"q\" \n"),
        ),
        ("'\\x00\\xFFab'::BLOB", "BLOB", json!("AP9hYg==")),
        ("DATE '2024-02-29'", "DATE", json!("2024-02-29")),
        ("'infinity'::DATE", "DATE", json!("infinity")),
        ("TIME '13:45:30.123456'", "TIME", json!("13:45:30.123456")),
        (
            "TIMESTAMP '2024-01-02 03:04:05.678901'",
            "TIMESTAMP",
            json!("2024-01-02T03:04:05.678901"),
        ),
        (
            "TIMESTAMP_S '2024-01-02 03:04:05'",
            "TIMESTAMP_S",
            json!("2024-01-02T03:04:05"),
        ),
        (
            "TIMESTAMP_MS '2024-01-02 03:04:05.123'",
            "TIMESTAMP_MS",
            json!("2024-01-02T03:04:05.123"),
        ),
        (
            "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'",
            "TIMESTAMP_NS",
            json!("2024-01-02T03:04:05.123456789"),
        ),
        (
            "TIMESTAMPTZ '2024-01-02 03:04:05+02'",
            "TIMESTAMP WITH TIME ZONE",
            json!("2024-01-02T01:04:05Z"),
        ),
        ("'-infinity'::TIMESTAMP", "TIMESTAMP", json!("-infinity")),
        (
            "INTERVAL '1 year 2 months 3 days 04:05:06.5'",
            "INTERVAL",
            json!("P1Y2M3DT4H5M6.5S"),
        ),
        (
            "'0fc5ed6c-2b5d-4d8e-9c2a-5b4e1e6f7a8b'::UUID",
            "UUID",
            json!("0fc5ed6c-2b5d-4d8e-9c2a-5b4e1e6f7a8b"),
        ),
        ("'b'::ENUM('a', 'b', 'c')", "ENUM", json!("b")),
        ("[1, 2, NULL]::INTEGER[]", "INTEGER[]", json!([1, 2, null])),
        ("[[1.5], []]::DOUBLE[][]", "DOUBLE[][]", json!([[1.5], []])),
        ("[1, 2, 3]::INTEGER[3]", "INTEGER[3]", json!([1, 2, 3])),
        (
            "{'a': 1, 'b': [true]}",
            "STRUCT(a INTEGER, b BOOLEAN[])",
            json!({"a": 1, "b": [true]}),
        ),
        (
            "MAP {'k1': 10, 'k2': 20}",
            "MAP(VARCHAR, INTEGER)",
            json!({"k1": 10, "k2": 20}),
        ),
        (
            "MAP {1: 'one'}",
            "MAP(INTEGER, VARCHAR)",
            json!({"1": "one"}),
        ),
        (
            "union_value(num := 7)::UNION(num INTEGER, str VARCHAR)",
            "UNION(num INTEGER, str VARCHAR)",
            json!(7),
        ),
        ("'{\"x\": 1}'::JSON", "JSON", json!("{\"x\": 1}")),
        ("NULL::INTEGER", "INTEGER", Value::Null),
        // DuckDB types an untyped NULL result column as INTEGER.
        ("NULL", "INTEGER", Value::Null),
    ]
}

/// A JSON number with more digits than i64/u64/f64 hold, compared as text.
fn raw(digits: &str) -> Value {
    json!({ "$raw": digits })
}

/// The JSON text of each cell of the first row of a `json` format body, as
/// sent: numbers wider than 64 bits are compared as these digits, which no
/// f64 or i64 parse of the body would keep.
fn first_row_texts(body: &str) -> Vec<String> {
    let start = body.find(r#""rows":[["#).expect("a first row") + r#""rows":[["#.len();
    let (mut cells, mut cell) = (Vec::new(), String::new());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in body[start..].chars() {
        if in_string {
            (escaped, in_string) = (!escaped && c == '\\', in_string && (escaped || c != '"'));
        } else {
            match c {
                '"' => in_string = true,
                '[' | '{' => depth += 1,
                ']' | '}' if depth == 0 => break,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    cells.push(std::mem::take(&mut cell));
                    continue;
                }
                _ => {}
            }
        }
        cell.push(c);
    }
    cells.push(cell);
    cells
}

#[test]
fn first_row_texts_splits_top_level_cells_only() {
    let body = r#"{"columns":[],"rows":[[-12,"a,\"]",[1,[2]],{"k":"}"},null],[9]]}"#;
    assert_eq!(
        first_row_texts(body),
        ["-12", r#""a,\"]""#, "[1,[2]]", r#"{"k":"}"}"#, "null"]
    );
}

#[actix_web::test]
async fn every_type_maps_exactly() {
    let app = spawn_app().await;
    let cases = cases();
    let select = cases
        .iter()
        .enumerate()
        .map(|(i, (expr, _, _))| format!("{expr} AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({ "sql": format!("SELECT {select}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let row = body["rows"][0].as_array().expect("one row").clone();
    let mut failures = Vec::new();
    for (i, (expr, type_name, expected)) in cases.iter().enumerate() {
        let got_type = &body["columns"][i]["type"];
        if got_type != type_name {
            failures.push(format!("{expr}: type {got_type}, expected {type_name}"));
        }
        let ok = match expected.get("$raw") {
            // Wider than 64 bits: the cell's own text must be the digits.
            Some(Value::String(digits)) => first_row_texts(&text)[i] == *digits,
            _ => &row[i] == expected,
        };
        if !ok {
            failures.push(format!("{expr}: got {}, expected {expected}", row[i]));
        }
    }
    assert!(
        failures.is_empty(),
        "type mapping mismatches:\n{}",
        failures.join("\n")
    );
    app.stop().await;
}

#[actix_web::test]
async fn types_survive_a_round_trip_through_a_lake_table() {
    let app = spawn_app().await;
    app.sql(
        "CREATE TABLE typed (h HUGEINT, d DECIMAL(38,10), ts TIMESTAMPTZ, iv INTERVAL, u UUID, b BLOB, l VARCHAR[], s STRUCT(x INT, y VARCHAR))",
    )
    .await;
    app.sql(
        "INSERT INTO typed VALUES (-99999999999999999999999999999, 1234567890123456789012345678.0123456789, \
         '1999-12-31 23:59:59.999999+00', INTERVAL '36 hours', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'bin'::BLOB, \
         ['x', NULL], {'x': 1, 'y': 'z'})",
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT * FROM typed"}))
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert_eq!(
        first_row_texts(&text)[0],
        "-99999999999999999999999999999",
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let row = body["rows"][0].as_array().unwrap();
    assert_eq!(
        row[1..],
        [
            json!("1234567890123456789012345678.0123456789"),
            json!("1999-12-31T23:59:59.999999Z"),
            json!("PT36H"),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            json!("Ymlu"),
            json!(["x", null]),
            json!({"x": 1, "y": "z"}),
        ]
    );
    app.stop().await;
}

/// A JSON cell as CSV/TSV text ([`common::cell_text`]); numbers wider than
/// 64 bits as their digits.
fn cell_text(value: &Value, expected: &Value) -> String {
    match expected.get("$raw") {
        Some(Value::String(digits)) => digits.clone(),
        _ => common::cell_text(value),
    }
}

/// Every type of the table reads the same in every format: JSON objects,
/// NDJSON, CSV and TSV against the JSON format value by value; Arrow IPC
/// against DuckDB's own Arrow batches in process; Parquet the same, or a
/// clean 422 before any byte when Parquet cannot hold the type.
#[actix_web::test]
async fn every_type_reads_the_same_in_every_format() {
    use duckdb::arrow::array::RecordBatch;
    // Arrays compared value by value (pretty-printing would need time zone data).
    fn same(a: &[RecordBatch], b: &[RecordBatch]) -> bool {
        let column = |batches: &[RecordBatch]| {
            let arrays: Vec<_> = batches.iter().map(|b| b.column(0).clone()).collect();
            let refs: Vec<&dyn duckdb::arrow::array::Array> =
                arrays.iter().map(|a| a.as_ref()).collect();
            duckdb::arrow::compute::concat(&refs).unwrap()
        };
        let (a, b) = (column(a), column(b));
        use duckdb::arrow::datatypes::DataType;
        match (a.data_type(), b.data_type()) {
            // The same instants; DuckDB names UTC `Etc/UTC` once ICU is loaded.
            (DataType::Timestamp(ua, Some(_)), DataType::Timestamp(ub, Some(_))) if ua == ub => {
                let raw = |x: &duckdb::arrow::array::ArrayRef| {
                    duckdb::arrow::compute::cast(x, &DataType::Int64).unwrap()
                };
                raw(&a).as_ref() == raw(&b).as_ref()
            }
            _ => a.as_ref() == b.as_ref(),
        }
    }

    let app = spawn_app().await;
    let cases = cases();
    let select = format!(
        "SELECT {}",
        cases
            .iter()
            .enumerate()
            .map(|(i, (expr, _, _))| format!("{expr} AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fetch = |format: &'static str, sql: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/query"))
                .json(&json!({ "sql": sql, "format": format }))
                .send()
                .await
                .unwrap()
        }
    };
    let reference: Value = fetch("json", select.clone()).await.json().await.unwrap();
    let row = reference["rows"][0].as_array().unwrap().clone();

    let objects: Value = fetch("json_objects", select.clone())
        .await
        .json()
        .await
        .unwrap();
    let ndjson: Value = serde_json::from_str(
        fetch("ndjson", select.clone())
            .await
            .text()
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    let mut failures = Vec::new();
    for (i, (expr, _, _)) in cases.iter().enumerate() {
        let key = format!("c{i}");
        if objects["rows"][0][&key] != row[i] {
            failures.push(format!("json_objects {expr}: {}", objects["rows"][0][&key]));
        }
        if ndjson[&key] != row[i] {
            failures.push(format!("ndjson {expr}: {}", ndjson[&key]));
        }
    }
    for (format, delimiter) in [("csv", b','), ("tsv", b'\t')] {
        let text = fetch(format, select.clone()).await.bytes().await.unwrap();
        let mut reader = common::csv_rows(&text, delimiter);
        let cells = reader.remove(1);
        for (i, (expr, _, expected)) in cases.iter().enumerate() {
            let want = cell_text(&row[i], expected);
            if cells[i] != want {
                failures.push(format!(
                    "{format} {expr}: {:?}, expected {want:?}",
                    cells[i]
                ));
            }
        }
    }

    let in_process = duckdb::Connection::open_in_memory().unwrap();
    in_process.execute_batch("SET TimeZone = 'UTC'").unwrap();
    for (i, (expr, _, _)) in cases.iter().enumerate() {
        let sql = format!("SELECT {expr} AS c{i}");
        let expected: Vec<RecordBatch> = in_process
            .prepare(&sql)
            .unwrap()
            .query_arrow([])
            .unwrap()
            .collect();
        let bytes = fetch("arrow", sql.clone()).await.bytes().await.unwrap();
        let batches: Vec<RecordBatch> =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
                .unwrap()
                .map(Result::unwrap)
                .collect();
        if !same(&batches, &expected) {
            failures.push(format!("arrow {expr}: {batches:?} expected {expected:?}"));
        }
        let res = fetch("parquet", sql).await;
        if res.status() == 422 {
            let body: Value = res.json().await.unwrap();
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Parquet cannot carry this result"),
                "{body}"
            );
            continue;
        }
        assert_eq!(res.status(), 200, "parquet {expr}");
        let bytes = res.bytes().await.unwrap();
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        if !same(&batches, &expected) {
            failures.push(format!("parquet {expr}: {batches:?} expected {expected:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "format mismatches:\n{}",
        failures.join("\n")
    );
    app.stop().await;
}
