//! Flight SQL transactions as drivers use them (ADBC and DB-API with
//! autocommit off begin one at connect and after every commit): they hold
//! no connection until they write, read one snapshot, are bounded and
//! rolled back when left idle after writing, and end at any point.

use crate::common;

use std::time::Duration;

use arrow_flight::sql::EndTransaction;
use common::{spawn_app, TestApp};
use serde_json::json;
use tonic::Code;

use crate::flight::{client, fetch, flight_error_status, whole};

/// `ducklake_transactions_open{state="<state>"}` now.
async fn open(app: &TestApp, state: &str) -> f64 {
    let text = app.get_text("/metrics").await;
    common::sample(
        &text,
        &format!("ducklake_transactions_open{{state=\"{state}\"}}"),
    )
}

/// Waits until every connection is back in the pool (a finished stream's
/// connection goes back just after its last bytes left).
async fn until_idle(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.engine().in_flight() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a connection is still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ends transaction `txn`, which must end well.
async fn end(
    flight: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    txn: bytes::Bytes,
    how: EndTransaction,
) {
    flight.end_transaction(txn, how).await.unwrap();
}

/// The rows `sql` answers over HTTP.
async fn rows_of(app: &TestApp, sql: &str) -> serde_json::Value {
    app.sql(sql).await["rows"].clone()
}

/// The single value `sql` answers inside transaction `txn`, as text.
async fn value_in(
    flight: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
    txn: &bytes::Bytes,
) -> Result<String, arrow_flight::error::FlightError> {
    let info = flight.execute(sql.into(), Some(txn.clone())).await?;
    let (batches, _) = fetch(flight, info).await?;
    Ok(arrow_cast::display::array_value_to_string(whole(&batches).column(0), 0).unwrap())
}

#[actix_web::test]
async fn a_thousand_open_transactions_hold_no_connection() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT range AS id FROM range(10)")
        .await;
    let mut flight = client(&app).await;
    let mut txns = Vec::new();
    for _ in 0..1000 {
        txns.push(flight.begin_transaction().await.unwrap());
    }
    // More transactions than connections have read (each fixed its
    // snapshot), and none of them holds one.
    let connections = app.engine().pool().size();
    for txn in txns.iter().take(connections * 4) {
        assert_eq!(
            value_in(&mut flight, "SELECT count(*) FROM t", txn)
                .await
                .unwrap(),
            "10"
        );
    }
    assert_eq!(open(&app, "reading").await, 1000.0);
    assert_eq!(open(&app, "writing_idle").await, 0.0);
    until_idle(&app).await;
    // Everyone else is served as if they were not there.
    let (status, body) = app
        .post_query(json!({"sql": "SELECT count(*) FROM t", "timeout_ms": 5000}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.get_json("/api/v1/tables").await;
    assert_eq!(status, 200);
    // A transaction that only read has nothing to commit.
    for txn in txns {
        end(&mut flight, txn, EndTransaction::Commit).await;
    }
    assert_eq!(open(&app, "reading").await, 0.0);
    app.stop().await;
}

#[actix_web::test]
async fn a_transaction_reads_the_snapshot_of_its_first_statement() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t (id INT); INSERT INTO t VALUES (1)")
        .await;
    let mut flight = client(&app).await;
    let txn = flight.begin_transaction().await.unwrap();
    // The snapshot is taken by the first statement, not at BEGIN.
    app.sql("INSERT INTO t VALUES (2)").await;
    let count = "SELECT count(*) FROM t";
    assert_eq!(value_in(&mut flight, count, &txn).await.unwrap(), "2");
    app.sql("INSERT INTO t VALUES (3)").await;
    // Repeatable: the transaction still sees two rows, the lake has three.
    assert_eq!(value_in(&mut flight, count, &txn).await.unwrap(), "2");
    assert_eq!(app.sql(count).await["rows"], json!([[3]]));
    // A statement DuckDB cannot read in the past says so.
    let err = value_in(&mut flight, "SHOW TABLES", &txn).await;
    if let Err(err) = err {
        let (code, message) = flight_error_status(&err);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("as of its first read"), "{message}");
    }
    // Its write would rest on reads of a lake that moved on: a conflict,
    // and nothing written.
    let err = flight
        .execute_update("INSERT INTO t VALUES (4)".into(), Some(txn.clone()))
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::Aborted, "{message}");
    assert!(message.starts_with("[write_conflict]"), "{message}");
    end(&mut flight, txn, EndTransaction::Rollback).await;
    assert_eq!(app.sql(count).await["rows"], json!([[3]]));
    until_idle(&app).await;

    // While the lake stays where it read, a transaction reads then writes
    // then sees its own write, and others see it after the commit.
    let txn = flight.begin_transaction().await.unwrap();
    assert_eq!(value_in(&mut flight, count, &txn).await.unwrap(), "3");
    flight
        .execute_update("INSERT INTO t VALUES (4)".into(), Some(txn.clone()))
        .await
        .unwrap();
    assert_eq!(value_in(&mut flight, count, &txn).await.unwrap(), "4");
    assert_eq!(app.sql(count).await["rows"], json!([[3]]));
    assert_eq!(open(&app, "writing_idle").await, 1.0);
    // The performance report and the readiness detail count it too.
    let (_, report) = app.get_json("/metrics/performance").await;
    assert_eq!(report["transactions_open"]["writing_idle"], 1, "{report}");
    let (_, ready) = app.get_json("/ready").await;
    let lake = &ready["components"]["lake"];
    assert_eq!(lake["transactions_open"]["writing_idle"], 1, "{ready}");
    assert_eq!(
        lake["connections"]["available"].as_u64().unwrap() + 1,
        lake["connections"]["size"].as_u64().unwrap(),
        "{ready}"
    );
    end(&mut flight, txn, EndTransaction::Commit).await;
    assert_eq!(app.sql(count).await["rows"], json!([[4]]));
    assert_eq!(open(&app, "writing_idle").await, 0.0);
    app.stop().await;
}

#[actix_web::test]
async fn transactions_that_write_are_bounded_per_key_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.duckdb.connections = 4;
    config.flight.max_writing_transactions_per_key = 1;
    let app = common::spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t (id INT)").await;
    let mut flight = client(&app).await;
    let first = flight.begin_transaction().await.unwrap();
    let second = flight.begin_transaction().await.unwrap();
    flight
        .execute_update("INSERT INTO t VALUES (1)".into(), Some(first.clone()))
        .await
        .unwrap();
    // The key's second writing transaction waits for its first to end.
    let err = flight
        .execute_update("INSERT INTO t VALUES (2)".into(), Some(second.clone()))
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("flight.max_writing_transactions_per_key"),
        "{message}"
    );
    // Reads of the second go on meanwhile, holding nothing.
    assert_eq!(
        value_in(&mut flight, "SELECT count(*) FROM t", &second)
            .await
            .unwrap(),
        "0"
    );
    end(&mut flight, first, EndTransaction::Commit).await;
    // The lake moved on (the first committed) since the second first read.
    let err = flight
        .execute_update("INSERT INTO t VALUES (2)".into(), Some(second.clone()))
        .await
        .unwrap_err();
    assert_eq!(flight_error_status(&err).0, Code::Aborted);
    end(&mut flight, second, EndTransaction::Rollback).await;
    assert_eq!(rows_of(&app, "SELECT count(*) FROM t").await, json!([[1]]));
    app.stop().await;

    // In total: half the pool by default, whatever the keys.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.duckdb.connections = 4;
    config.flight.max_writing_transactions_per_key = 10;
    let app = common::spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE t (id INT)").await;
    let mut flight = client(&app).await;
    let mut writing = Vec::new();
    let mut refused = None;
    for i in 0..3 {
        let txn = flight.begin_transaction().await.unwrap();
        match flight
            .execute_update(format!("INSERT INTO t VALUES ({i})"), Some(txn.clone()))
            .await
        {
            Ok(_) => writing.push(txn),
            Err(err) => refused = Some((i, err)),
        }
    }
    let (i, err) = refused.expect("a third writing transaction was let in");
    assert_eq!(i, 2);
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("(flight.max_writing_transactions)"),
        "{message}"
    );
    // The other half of the pool still serves everyone else.
    let (status, body) = app.post_query(json!({"sql": "SELECT 42"})).await;
    assert_eq!(status, 200, "{body}");
    for txn in writing {
        end(&mut flight, txn, EndTransaction::Rollback).await;
    }
    assert_eq!(rows_of(&app, "SELECT count(*) FROM t").await, json!([[0]]));
    until_idle(&app).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_transaction_ends_at_any_point() {
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    app.sql("CREATE TABLE t (id INT)").await;

    // A statement whose result is never fetched (DB-API's execute of a
    // DDL): rollback and commit do not wait for its DoGet.
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute("CREATE TABLE tx3 (x INT)".into(), Some(txn.clone()))
        .await
        .unwrap();
    end(&mut flight, txn, EndTransaction::Rollback).await;
    let (status, _) = app.post_query(json!({"sql": "SELECT * FROM tx3"})).await;
    assert_eq!(status, 404, "the rolled back table is there");
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute("INSERT INTO t VALUES (1)".into(), Some(txn.clone()))
        .await
        .unwrap();
    end(&mut flight, txn, EndTransaction::Commit).await;
    assert_eq!(rows_of(&app, "SELECT count(*) FROM t").await, json!([[1]]));

    // A large result of a writing transaction, fetched after the commit:
    // whole (it ran inside the transaction, and waits on disk).
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute_update("INSERT INTO t VALUES (2)".into(), Some(txn.clone()))
        .await
        .unwrap();
    let info = flight
        .execute(
            "SELECT range AS n FROM range(300000)".into(),
            Some(txn.clone()),
        )
        .await
        .unwrap();
    end(&mut flight, txn, EndTransaction::Commit).await;
    let (batches, _) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(whole(&batches).num_rows(), 300_000);

    // Rolled back while a statement runs: the statement is stopped, the
    // transaction rolled back, its connection back in the pool.
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute_update("INSERT INTO t VALUES (3)".into(), Some(txn.clone()))
        .await
        .unwrap();
    let running = {
        let mut flight = client(&app).await;
        let txn = txn.clone();
        tokio::spawn(async move {
            flight
                .execute(
                    "SELECT count(*) FROM range(100000000000) a".into(),
                    Some(txn),
                )
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open(&app, "writing_active").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the statement never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    end(&mut flight, txn, EndTransaction::Rollback).await;
    let err = running.await.unwrap().unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::Aborted, "{message}");
    assert!(message.contains("rolled back"), "{message}");
    assert_eq!(rows_of(&app, "SELECT count(*) FROM t").await, json!([[2]]));
    until_idle(&app).await;
    assert_eq!(open(&app, "writing_active").await, 0.0);
    app.stop().await;
}

#[actix_web::test]
async fn an_ingest_that_names_a_transaction_joins_it() {
    use arrow_flight::sql::{
        CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
    };
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    let batch = || {
        arrow_array::RecordBatch::try_from_iter([(
            "v",
            std::sync::Arc::new(arrow_array::Int32Array::from(vec![1, 2, 3]))
                as arrow_array::ArrayRef,
        )])
        .unwrap()
    };
    let ingest = |txn: &bytes::Bytes| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create as i32,
            if_exists: TableExistsOption::Append as i32,
        }),
        table: "joined".into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: Some(txn.clone()),
        options: Default::default(),
    };
    // Rolled back: the table it created is gone with the transaction.
    let txn = flight.begin_transaction().await.unwrap();
    let rows = flight
        .execute_ingest(ingest(&txn), futures_util::stream::iter([Ok(batch())]))
        .await
        .unwrap();
    assert_eq!(rows, 3);
    assert_eq!(
        value_in(&mut flight, "SELECT count(*) FROM joined", &txn)
            .await
            .unwrap(),
        "3"
    );
    let (status, _) = app.post_query(json!({"sql": "SELECT * FROM joined"})).await;
    assert_eq!(
        status, 404,
        "the ingest was committed before its transaction"
    );
    end(&mut flight, txn, EndTransaction::Rollback).await;
    let (status, _) = app.post_query(json!({"sql": "SELECT * FROM joined"})).await;
    assert_eq!(status, 404, "the rolled back ingest stayed");
    // Committed: created, then appended to, with a statement between.
    let txn = flight.begin_transaction().await.unwrap();
    for _ in 0..2 {
        flight
            .execute_ingest(ingest(&txn), futures_util::stream::iter([Ok(batch())]))
            .await
            .unwrap();
    }
    flight
        .execute_update("DELETE FROM joined WHERE v = 1".into(), Some(txn.clone()))
        .await
        .unwrap();
    end(&mut flight, txn, EndTransaction::Commit).await;
    assert_eq!(
        rows_of(&app, "SELECT count(*) FROM joined").await,
        json!([[4]])
    );
    until_idle(&app).await;
    app.stop().await;
}

/// Real drivers with every default (scripts/flight-drivers.py): ADBC's
/// DB-API with autocommit off and the docs' own example verbatim, 200
/// idle connections, a client killed inside a transaction, pandas,
/// SQLAlchemy through flightsql-dbapi, 2,000,000 rows.
#[actix_web::test]
async fn drivers_with_their_defaults() {
    let (app, [_read, write, admin]) = crate::auth::app_with_a_key_per_role_and(|config| {
        config.flight.transaction_idle_timeout_ms = 3000;
    })
    .await;
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/src/guides/flight.md");
    let uri = format!("grpc://127.0.0.1:{}", app.flight_port.unwrap());
    let out = common::python_checks(
        "flight-drivers.py",
        &[&uri, &app.base, &write, &admin, readme],
        &[
            "ok the docs' example, verbatim, with DB-API's defaults",
            "ok rollback and commit at any point; well-behaved clients hold no connection",
            "ok 200 idle DB-API connections hold no connection; HTTP and Flight answer",
            "ok a client killed mid-transaction: rolled back after the idle timeout",
            "ok pandas read_sql over ADBC",
            "ok SQLAlchemy (flightsql-dbapi) creates, reads and reflects tables",
            "ok 2,000,000 rows fetched whole, no server setting changed",
        ],
    )
    .await;
    println!("{out}");
    app.stop().await;
}

/// A read key's transaction takes no connection for a write it may not
/// make: the write is refused as the sandbox refuses it, and audited.
#[actix_web::test]
async fn a_read_key_takes_no_connection_by_trying_to_write() {
    let (app, [read, _write, admin]) = crate::auth::app_with_a_key_per_role().await;
    let mut flight = client(&app).await;
    flight.set_token(read);
    for _ in 0..4 {
        let txn = flight.begin_transaction().await.unwrap();
        let err = flight
            .execute_update(
                "EXPLAIN ANALYZE -- x\rINSERT INTO t\nSELECT 42".into(),
                Some(txn),
            )
            .await
            .unwrap_err();
        let (code, message) = flight_error_status(&err);
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert!(message.starts_with("[insufficient_role]"), "{message}");
    }
    assert_eq!(open(&app, "writing_idle").await, 0.0);
    until_idle(&app).await;
    let rows = crate::auth::query_as(&app, &admin, &json!({"sql": "SELECT count(*) FROM t"})).await;
    assert_eq!(rows.1["rows"], json!([[1]]), "{}", rows.1);
    let audit = crate::auth::audit_until(&app, &admin, "?outcome=refused", |entries| {
        entries
            .iter()
            .filter(|e| e["action"] == "statement")
            .count()
            >= 4
    })
    .await;
    assert!(!audit.is_empty());
    app.stop().await;
}
