//! Arrow Flight SQL, with arrow-rs's own Flight SQL client: the same lake,
//! sandbox, roles and answers as the HTTP API (Python's ADBC driver and
//! pyarrow.flight are tried by `scripts/flight-clients.py`, run from
//! `python_drivers_read_write_and_are_refused_as_http_is`).

use crate::common;

use std::{sync::Arc, time::Duration};

use arrow_flight::{
    sql::{client::FlightSqlServiceClient, CommandGetDbSchemas, CommandGetTables},
    FlightInfo,
};
use common::{spawn_app, TestApp};
use duckdb::arrow::array::RecordBatch;
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use tonic::{transport::Channel, Code};

async fn channel(app: &TestApp) -> Channel {
    let port = app.flight_port.expect("Flight SQL is on by default");
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("the Flight SQL port answers")
}

pub(crate) async fn client(app: &TestApp) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(channel(app).await)
}

/// Every endpoint of `info`, fetched: the batches and the first stream's
/// response headers.
pub(crate) async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<(Vec<RecordBatch>, tonic::metadata::MetadataMap), arrow_flight::error::FlightError> {
    let mut batches = Vec::new();
    let mut headers = None;
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await?;
        headers.get_or_insert_with(|| stream.headers().clone());
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok((batches, headers.unwrap_or_default()))
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.expect(sql);
    fetch(client, info).await.expect(sql).0
}

/// The HTTP API's Arrow answer to `sql`.
async fn http_arrow(app: &TestApp, sql: &str) -> Vec<RecordBatch> {
    http_arrow_answer(app, json!({"sql": sql, "format": "arrow"}))
        .await
        .1
}

/// The HTTP API's answer to the query request `body` (`format` arrow): its
/// headers and batches.
async fn http_arrow_answer(
    app: &TestApp,
    body: Value,
) -> (reqwest::header::HeaderMap, Vec<RecordBatch>) {
    let res = app.send_query(&body).await;
    assert_eq!(res.status(), 200, "{body}");
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let batches =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
    (headers, batches)
}

/// The rows of `batches` as one batch (streams may cut them differently).
/// The answer of `info`, fetched whole, as one batch.
pub(crate) async fn fetch_whole(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> RecordBatch {
    whole(&fetch(client, info).await.unwrap().0)
}

pub(crate) fn whole(batches: &[RecordBatch]) -> RecordBatch {
    let schema = batches[0].schema();
    duckdb::arrow::compute::concat_batches(&schema, batches).unwrap()
}

/// The Arrow schema `GetTables` (with `include_schema`) gives row `row`'s
/// table.
fn table_schema(tables: &RecordBatch, row: usize) -> arrow_schema::Schema {
    let bytes = tables
        .column(4)
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .unwrap()
        .value(row)
        .to_vec();
    arrow_schema::Schema::try_from(arrow_flight::IpcMessage(bytes.into())).unwrap()
}

pub(crate) fn flight_error_status(err: &arrow_flight::error::FlightError) -> (Code, String) {
    match err {
        arrow_flight::error::FlightError::Tonic(status) => {
            (status.code(), status.message().to_string())
        }
        other => panic!("not a status: {other:?}"),
    }
}

#[actix_web::test]
async fn every_type_reads_over_flight_as_over_http_arrow() {
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    let mut failures = Vec::new();
    for (i, (expr, _, _)) in crate::types::cases().iter().enumerate() {
        let sql = format!("SELECT {expr} AS c{i}");
        let over_http = http_arrow(&app, &sql).await;
        let info = flight.execute(sql.clone(), None).await.expect(&sql);
        // The FlightInfo carries the result's real schema.
        let announced = arrow_schema::Schema::try_from(info.clone()).unwrap();
        let (over_flight, _) = fetch(&mut flight, info).await.expect(&sql);
        if announced != *over_http[0].schema() {
            failures.push(format!("{expr}: FlightInfo schema {announced:?}"));
        }
        if whole(&over_flight) != whole(&over_http) {
            failures.push(format!("{expr}: {over_flight:?} over HTTP {over_http:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

#[actix_web::test]
async fn statements_updates_prepared_statements_metadata_and_ingest() {
    let app = spawn_app().await;
    let mut flight = client(&app).await;

    // DDL and writes through DoPut: the row count of each write.
    assert_eq!(
        flight
            .execute_update("CREATE TABLE t (id BIGINT, name VARCHAR)".into(), None)
            .await
            .unwrap(),
        -1
    );
    let inserted = flight
        .execute_update(
            "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, NULL)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 3);
    let http = app.sql("SELECT id, name FROM t ORDER BY id").await;
    assert_eq!(http["rows"], json!([[1, "one"], [2, "two"], [3, null]]));

    // A statement that is refused fails at GetFlightInfo, with its code.
    let err = flight
        .execute("SELECT * FROM nowhere".into(), None)
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.starts_with("[not_found]"), "{message}");

    // A prepared statement with parameters, bound by DuckDB.
    let mut prepared = flight
        .prepare("SELECT name FROM t WHERE id = ? OR name = ?".into(), None)
        .await
        .unwrap();
    let params = RecordBatch::try_from_iter([
        (
            "0",
            Arc::new(arrow_array::Int64Array::from(vec![2])) as arrow_array::ArrayRef,
        ),
        (
            "1",
            Arc::new(arrow_array::StringArray::from(vec!["one"])) as arrow_array::ArrayRef,
        ),
    ])
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.unwrap();
    let (batches, _) = fetch(&mut flight, info).await.unwrap();
    let names = whole(&batches);
    let names = names
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    let mut names: Vec<&str> = names.iter().map(Option::unwrap).collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);

    // A prepared write, once per row of parameters.
    let mut insert = flight
        .prepare("INSERT INTO t VALUES (?, ?)".into(), None)
        .await
        .unwrap();
    insert
        .set_parameters(
            RecordBatch::try_from_iter([
                (
                    "0",
                    Arc::new(arrow_array::Int64Array::from(vec![4])) as arrow_array::ArrayRef,
                ),
                (
                    "1",
                    Arc::new(arrow_array::StringArray::from(vec!["it's four"]))
                        as arrow_array::ArrayRef,
                ),
            ])
            .unwrap(),
        )
        .unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 1);
    let http = app.sql("SELECT name FROM t WHERE id = 4").await;
    assert_eq!(http["rows"], json!([["it's four"]]));

    // Several rows of parameters: all of them, or (when one fails) none.
    let rows = |ids: Vec<&str>| {
        let names: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
        RecordBatch::try_from_iter([
            (
                "0",
                Arc::new(arrow_array::StringArray::from(ids)) as arrow_array::ArrayRef,
            ),
            (
                "1",
                Arc::new(arrow_array::StringArray::from(names)) as arrow_array::ArrayRef,
            ),
        ])
        .unwrap()
    };
    let mut insert = flight
        .prepare("INSERT INTO t VALUES (CAST(? AS BIGINT), ?)".into(), None)
        .await
        .unwrap();
    insert.set_parameters(rows(vec!["5", "6", "7"])).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    insert
        .set_parameters(rows(vec!["8", "not a number", "9"]))
        .unwrap();
    let err = insert.execute_update().await.unwrap_err();
    assert_eq!(
        flight_error_status(&err).0,
        Code::InvalidArgument,
        "{err:?}"
    );
    let http = app.sql("SELECT id FROM t WHERE id >= 5 ORDER BY id").await;
    assert_eq!(
        http["rows"],
        json!([[5], [6], [7]]),
        "the failed call left none of its rows"
    );
    // A query answers one row of parameters, not several.
    let mut select = flight
        .prepare("SELECT CAST(? AS BIGINT) AS id, ? AS name".into(), None)
        .await
        .unwrap();
    select.set_parameters(rows(vec!["1", "2"])).unwrap();
    let err = select.execute().await.unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("2 rows were bound"), "{message}");

    // The object browser: the lake's catalog, schemas and tables.
    let info = flight.get_catalogs().await.unwrap();
    let catalogs = fetch_whole(&mut flight, info).await;
    assert_eq!(catalogs.num_rows(), 1);
    let info = flight
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = fetch_whole(&mut flight, info).await;
    let schema_names = arrow_cast::display::array_value_to_string(schemas.column(1), 0).unwrap();
    assert_eq!(schema_names, "main");
    let info = flight
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("t".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch_whole(&mut flight, info).await;
    assert_eq!(tables.num_rows(), 1, "{tables:?}");
    let table_schema = table_schema(&tables, 0);
    let fields: Vec<&str> = table_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(fields, ["id", "name"]);

    // Bulk ingest: created in one commit, then read back over HTTP.
    use arrow_flight::sql::{
        CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
    };
    let rows: Vec<i64> = (0..5000).collect();
    let batches: Vec<RecordBatch> = rows
        .chunks(1000)
        .map(|chunk| {
            RecordBatch::try_from_iter([(
                "n",
                Arc::new(arrow_array::Int64Array::from(chunk.to_vec())) as arrow_array::ArrayRef,
            )])
            .unwrap()
        })
        .collect();
    let ingest =
        |if_not_exist: TableNotExistOption, if_exists: TableExistsOption| CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if_not_exist as i32,
                if_exists: if_exists as i32,
            }),
            table: "ingested".into(),
            schema: None,
            catalog: None,
            temporary: false,
            transaction_id: None,
            options: Default::default(),
        };
    let loaded = flight
        .execute_ingest(
            ingest(TableNotExistOption::Create, TableExistsOption::Fail),
            futures_util::stream::iter(batches.clone().into_iter().map(Ok)),
        )
        .await
        .unwrap();
    assert_eq!(loaded, 5000);
    let http = app
        .sql("SELECT count(*), sum(n), count(DISTINCT n) FROM ingested")
        .await;
    assert_eq!(http["rows"], json!([[5000, 12497500, 5000]]));
    // Create again fails and leaves the table as it was; append adds.
    let err = flight
        .execute_ingest(
            ingest(TableNotExistOption::Create, TableExistsOption::Fail),
            futures_util::stream::iter(batches.clone().into_iter().map(Ok)),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("already_exists"), "{err:?}");
    let appended = flight
        .execute_ingest(
            ingest(TableNotExistOption::Fail, TableExistsOption::Append),
            futures_util::stream::iter(batches.into_iter().take(1).map(Ok)),
        )
        .await
        .unwrap();
    assert_eq!(appended, 1000);
    let http = app.sql("SELECT count(*) FROM ingested").await;
    assert_eq!(http["rows"], json!([[6000]]));

    app.stop().await;
}

#[actix_web::test]
async fn transactions_commit_all_or_roll_back_all() {
    use arrow_flight::sql::EndTransaction;
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    app.sql("CREATE TABLE acct (id INT, balance INT); INSERT INTO acct VALUES (1, 100), (2, 0)")
        .await;
    let balances = |body: Value| body["rows"].clone();

    // Two writes in one transaction: invisible to others until the commit,
    // visible to the transaction's own reads.
    let txn = flight.begin_transaction().await.unwrap();
    for sql in [
        "UPDATE acct SET balance = balance - 30 WHERE id = 1",
        "UPDATE acct SET balance = balance + 30 WHERE id = 2",
    ] {
        assert_eq!(
            flight
                .execute_update(sql.into(), Some(txn.clone()))
                .await
                .unwrap(),
            1
        );
    }
    let inside = flight
        .execute(
            "SELECT sum(balance) FILTER (id = 2) AS b FROM acct".into(),
            Some(txn.clone()),
        )
        .await
        .unwrap();
    let (rows, _) = fetch(&mut flight, inside).await.unwrap();
    assert_eq!(
        arrow_cast::display::array_value_to_string(whole(&rows).column(0), 0).unwrap(),
        "30"
    );
    let outside = app.sql("SELECT balance FROM acct ORDER BY id").await;
    assert_eq!(balances(outside), json!([[100], [0]]));
    flight
        .end_transaction(txn.clone(), EndTransaction::Commit)
        .await
        .unwrap();
    let after = app.sql("SELECT balance FROM acct ORDER BY id").await;
    assert_eq!(balances(after), json!([[70], [30]]));
    // An ended transaction is gone.
    let err = flight
        .execute_update("DELETE FROM acct".into(), Some(txn))
        .await
        .unwrap_err();
    assert_eq!(flight_error_status(&err).0, Code::NotFound);

    // Rolled back: nothing of it stays.
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute_update("DELETE FROM acct".into(), Some(txn.clone()))
        .await
        .unwrap();
    flight
        .end_transaction(txn, EndTransaction::Rollback)
        .await
        .unwrap();
    let after = app.sql("SELECT balance FROM acct ORDER BY id").await;
    assert_eq!(balances(after), json!([[70], [30]]));

    // A failed statement dooms the transaction: its commit fails and
    // leaves nothing half-written.
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute_update(
            "UPDATE acct SET balance = 0 WHERE id = 1".into(),
            Some(txn.clone()),
        )
        .await
        .unwrap();
    flight
        .execute_update("INSERT INTO nowhere VALUES (1)".into(), Some(txn.clone()))
        .await
        .unwrap_err();
    let committed = flight.end_transaction(txn, EndTransaction::Commit).await;
    assert!(committed.is_err(), "a doomed transaction committed");
    let after = app.sql("SELECT balance FROM acct ORDER BY id").await;
    assert_eq!(balances(after), json!([[70], [30]]));
    // Its connection comes back to the pool (the session's thread hands it
    // back after the answer left; the deadline only bounds a leak).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.engine().in_flight() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the doomed transaction's connection never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_pinned_read_returns_the_old_rows_and_names_its_snapshot() {
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    app.sql("CREATE TABLE p AS SELECT 1 AS v").await;
    let res = app
        .client
        .post(app.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT * FROM p"}))
        .send()
        .await
        .unwrap();
    let old: i64 = res.headers()["x-ducklake-snapshot"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    app.sql("INSERT INTO p VALUES (2)").await;

    let info = flight
        .execute("SELECT count(*) AS n FROM p".into(), None)
        .await
        .unwrap();
    let (now, headers) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(
        arrow_cast::display::array_value_to_string(whole(&now).column(0), 0).unwrap(),
        "2"
    );
    let current: i64 = headers
        .get(ducklake_backend::flight::SNAPSHOT_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(current > old);

    flight.set_header(ducklake_backend::flight::SNAPSHOT_HEADER, old.to_string());
    let info = flight
        .execute("SELECT count(*) AS n FROM p".into(), None)
        .await
        .unwrap();
    let (then, headers) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(
        arrow_cast::display::array_value_to_string(whole(&then).column(0), 0).unwrap(),
        "1"
    );
    assert_eq!(
        headers
            .get(ducklake_backend::flight::SNAPSHOT_HEADER)
            .unwrap()
            .to_str()
            .unwrap(),
        old.to_string()
    );
    // A pinned write is refused, as over HTTP.
    let err = flight
        .execute_update("INSERT INTO p VALUES (3)".into(), None)
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    app.stop().await;
}

/// The snapshot the lake reads now, from the HTTP API's answer header.
async fn snapshot_over_http(app: &TestApp, sql: &str) -> i64 {
    app.answer_and_snapshot(json!({ "sql": sql })).await.1
}

/// `DoPut` of `command` with `batches`; the answer's snapshot header.
async fn put(
    raw: &mut arrow_flight::flight_service_client::FlightServiceClient<Channel>,
    command: arrow_flight::sql::Any,
    batches: Vec<RecordBatch>,
) -> Option<i64> {
    use arrow_flight::{encode::FlightDataEncoderBuilder, FlightData, FlightDescriptor};
    use prost::Message as _;
    let descriptor = FlightDescriptor::new_cmd(command.encode_to_vec());
    let data: Vec<FlightData> = if batches.is_empty() {
        vec![FlightData {
            flight_descriptor: Some(descriptor),
            ..Default::default()
        }]
    } else {
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures_util::stream::iter(batches.into_iter().map(Ok)))
            .try_collect()
            .await
            .unwrap()
    };
    let response = raw
        .do_put(futures_util::stream::iter(data))
        .await
        .expect("the write is answered");
    let header = response
        .metadata()
        .get(ducklake_backend::flight::SNAPSHOT_HEADER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let results: Vec<_> = response.into_inner().try_collect().await.unwrap();
    assert_eq!(results.len(), 1, "one row count");
    header
}

#[actix_web::test]
async fn every_write_names_the_snapshot_it_created() {
    use arrow_flight::sql::{
        CommandStatementIngest, CommandStatementUpdate, ProstMessageExt, TableDefinitionOptions,
        TableExistsOption, TableNotExistOption,
    };
    let app = spawn_app().await;
    let mut raw =
        arrow_flight::flight_service_client::FlightServiceClient::new(channel(&app).await);
    let update = |sql: &str| {
        CommandStatementUpdate {
            query: sql.into(),
            transaction_id: None,
        }
        .as_any()
    };

    let created = put(&mut raw, update("CREATE TABLE w AS SELECT 1 AS v"), vec![])
        .await
        .expect("a write over DoPut names its snapshot");
    assert_eq!(snapshot_over_http(&app, "SELECT * FROM w").await, created);
    let inserted = put(&mut raw, update("INSERT INTO w VALUES (2)"), vec![])
        .await
        .expect("every write names its snapshot");
    assert!(inserted > created, "{inserted} after {created}");
    assert_eq!(snapshot_over_http(&app, "SELECT * FROM w").await, inserted);

    let batch = RecordBatch::try_from_iter([(
        "v",
        Arc::new(arrow_array::Int32Array::from(vec![3, 4])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let ingest = CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Fail as i32,
            if_exists: TableExistsOption::Append as i32,
        }),
        table: "w".into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let ingested = put(&mut raw, ingest.as_any(), vec![batch])
        .await
        .expect("an ingest names its snapshot");
    assert!(ingested > inserted, "{ingested} after {inserted}");
    assert_eq!(
        snapshot_over_http(&app, "SELECT count(*) FROM w").await,
        ingested
    );
    let http = app.sql("SELECT count(*) FROM w").await;
    assert_eq!(http["rows"], json!([[4]]));

    // Inside a transaction a write creates no snapshot until the commit:
    // its answer names none (not the one it read), and the commit does.
    let mut flight = client(&app).await;
    let txn = flight.begin_transaction().await.unwrap();
    let pending = CommandStatementUpdate {
        query: "INSERT INTO w VALUES (5)".into(),
        transaction_id: Some(txn.clone()),
    };
    assert_eq!(put(&mut raw, pending.as_any(), vec![]).await, None);
    assert_eq!(
        snapshot_over_http(&app, "SELECT count(*) FROM w").await,
        ingested,
        "nothing is committed yet"
    );
    let end = arrow_flight::sql::ActionEndTransactionRequest {
        transaction_id: txn,
        action: arrow_flight::sql::EndTransaction::Commit as i32,
    };
    let response = raw
        .do_action(arrow_flight::Action {
            r#type: "EndTransaction".into(),
            body: prost::Message::encode_to_vec(&end.as_any()).into(),
        })
        .await
        .expect("the commit is answered");
    let named: i64 = response
        .metadata()
        .get(ducklake_backend::flight::SNAPSHOT_HEADER)
        .expect("a commit names its snapshot")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let _: Vec<_> = response.into_inner().try_collect().await.unwrap();
    let committed = snapshot_over_http(&app, "SELECT count(*) FROM w").await;
    assert!(committed > ingested, "{committed} after {ingested}");
    assert_eq!(named, committed, "the commit names the snapshot it created");
    let http = app.sql("SELECT count(*) FROM w").await;
    assert_eq!(http["rows"], json!([[5]]));
    app.stop().await;
}

#[actix_web::test]
async fn keys_roles_and_the_sandbox_hold_over_flight() {
    let (app, [read, write, _admin]) = crate::auth::app_with_a_key_per_role().await;
    let mut flight = client(&app).await;

    // No key, a wrong key: unauthenticated.
    let err = flight.execute("SELECT 1".into(), None).await.unwrap_err();
    assert_eq!(flight_error_status(&err).0, Code::Unauthenticated);
    flight.set_token("dlk_not_a_key_at_all_0000000000".into());
    let err = flight.execute("SELECT 1".into(), None).await.unwrap_err();
    assert_eq!(flight_error_status(&err).0, Code::Unauthenticated);
    let err = flight.handshake("anyone", "wrong").await.unwrap_err();
    assert!(format!("{err:?}").contains("[unauthorized]"), "{err:?}");

    // The Basic handshake drivers use: the key as the password, the bearer
    // token back in the `authorization` header.
    flight.clear_token();
    flight.handshake("anyone", &read).await.unwrap();
    assert_eq!(flight.token(), Some(&read));
    assert_eq!(query(&mut flight, "SELECT a FROM t").await[0].num_rows(), 1);

    // A read key cannot write; the sandbox refuses what it refuses over HTTP.
    let err = flight
        .execute_update("INSERT INTO t VALUES (2)".into(), None)
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.starts_with("[insufficient_role]"), "{message}");
    flight.set_token(write.clone());
    for attack in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/leak.csv'",
        "SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot",
        "INSTALL httpfs",
    ] {
        let err = flight.execute(attack.into(), None).await.unwrap_err();
        let (code, message) = flight_error_status(&err);
        assert_eq!(code, Code::PermissionDenied, "{attack}: {message}");
        assert!(message.starts_with("[forbidden"), "{attack}: {message}");
    }
    // An ingest needs the write role.
    flight.set_token(read.clone());
    let err = flight
        .execute_ingest(
            arrow_flight::sql::CommandStatementIngest {
                table_definition_options: None,
                table: "t".into(),
                schema: None,
                catalog: None,
                temporary: false,
                transaction_id: None,
                options: Default::default(),
            },
            futures_util::stream::iter(vec![Ok(RecordBatch::try_from_iter([(
                "a",
                Arc::new(arrow_array::Int32Array::from(vec![1])) as arrow_array::ArrayRef,
            )])
            .unwrap())]),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("insufficient_role"), "{err:?}");
    app.stop().await;
}

/// The queries running now, as `/metrics` counts them.
async fn active_queries(app: &TestApp) -> f64 {
    let text = app.get_text("/metrics").await;
    common::sample(&text, "ducklake_queries_active")
}

/// Waits until no query holds a connection: DuckDB stopped the statement
/// and its connection is back in the pool.
async fn until_no_query_runs(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let engine = app.engine();
    while engine.in_flight() > 0 || active_queries(app).await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled query still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn cancel_and_a_dropped_stream_stop_the_query() {
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    // Endless results: they only end by being stopped.
    let endless_rows = "SELECT range AS n, repeat('x', 100) AS pad FROM range(1000000000000)";
    let endless_count = "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3";

    // CancelFlightInfo on a started statement, before its DoGet.
    let info = flight.execute(endless_rows.into(), None).await.unwrap();
    assert_eq!(active_queries(&app).await, 1.0);
    let cancel = arrow_flight::CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let mut results = flight
        .do_action(arrow_flight::Action {
            r#type: "CancelFlightInfo".into(),
            body: prost::Message::encode_to_vec(&cancel).into(),
        })
        .await
        .unwrap();
    let result = results.message().await.unwrap().unwrap();
    let result: arrow_flight::CancelFlightInfoResult = prost::Message::decode(result.body).unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    until_no_query_runs(&app).await;
    drop(results);
    // Its ticket ends there: a DoGet answers CANCELLED and runs nothing.
    let err = flight
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::Cancelled, "{message}");
    assert!(message.contains("CancelFlightInfo"), "{message}");
    assert_eq!(active_queries(&app).await, 0.0);

    // A GetFlightInfo abandoned while DuckDB computes (a driver's cancel
    // drops the call): the aggregation stops.
    let mut abandoned = client(&app).await;
    let call = tokio::spawn(async move { abandoned.execute(endless_count.into(), None).await });
    let engine = app.engine();
    while engine.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call.abort();
    drop(engine);
    until_no_query_runs(&app).await;

    // A stream dropped after its first batch: DuckDB stops.
    let info = flight.execute(endless_rows.into(), None).await.unwrap();
    let mut stream = flight
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    assert_eq!(active_queries(&app).await, 1.0);
    drop(stream);
    until_no_query_runs(&app).await;
    // The service still answers.
    assert_eq!(query(&mut flight, "SELECT 42").await[0].num_rows(), 1);
    app.stop().await;
}

#[actix_web::test]
async fn ready_and_metrics_cover_flight() {
    let app = spawn_app().await;
    let (status, body): (u16, Value) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"]["flight"]["status"], "up", "{body}");
    let mut flight = client(&app).await;
    query(&mut flight, "SELECT 1").await;
    let metrics = app.get_text("/metrics").await;
    assert!(
        common::sample(
            &metrics,
            "ducklake_flight_calls_total{method=\"statement_query\"}"
        ) >= 1.0,
        "{metrics}"
    );
    app.stop().await;
}

/// The result cache is the core's: a statement repeated over Flight is
/// answered from it (and from what HTTP kept in the same format), and a
/// write over Flight ends the kept answer.
#[actix_web::test]
async fn a_repeated_statement_is_served_from_the_result_cache() {
    let app = spawn_app().await;
    app.sql("CREATE TABLE t AS SELECT range AS id FROM range(100)")
        .await;
    async fn hits(app: &TestApp) -> f64 {
        common::sample(&app.get_text("/metrics").await, "ducklake_cache_hits_total")
    }
    let mut flight = client(&app).await;
    let sql = "SELECT count(*) AS n, sum(id) AS s FROM t";
    let first = whole(&query(&mut flight, sql).await);
    let before = hits(&app).await;
    let again = whole(&query(&mut flight, sql).await);
    assert_eq!(again, first);
    assert_eq!(hits(&app).await, before + 1.0);
    // HTTP's Arrow answer of the same request is the same entry.
    let over_http = whole(&http_arrow(&app, sql).await);
    assert_eq!(over_http, first);
    assert_eq!(hits(&app).await, before + 2.0);
    // A write over Flight: the next read runs again and sees it.
    flight
        .execute_update("INSERT INTO t VALUES (1000)".to_string(), None)
        .await
        .unwrap();
    let after = whole(&query(&mut flight, sql).await);
    assert_eq!(hits(&app).await, before + 2.0);
    assert_ne!(after, first);
    app.stop().await;
}

/// A statement waiting for its `DoGet` holds back no other request: one
/// waiting for the same answer (HTTP's Arrow, the same cache entry) runs
/// its own, though the answer would fit the cache; the waiting statement,
/// fetched at last, is whole.
#[actix_web::test]
async fn a_statement_waiting_for_its_do_get_holds_back_no_other_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.cache.max_bytes = Some(512 << 20);
    config.cache.max_entry_bytes = Some(256 << 20);
    let app = common::spawn_with(config, Some(dir)).await;
    let mut flight = client(&app).await;
    // ~11 MB of Arrow: more than the channel its stream waits in.
    let sql = "SELECT range AS id, repeat('x', 100) AS pad FROM range(100000)";
    let info = flight.execute(sql.to_string(), None).await.unwrap();
    // Waiting out this timeout would answer 504.
    let (headers, over_http) = http_arrow_answer(
        &app,
        json!({"sql": sql, "format": "arrow", "timeout_ms": 20000}),
    )
    .await;
    assert_eq!(headers["x-cache"], "miss");
    let over_http = whole(&over_http);
    assert_eq!(over_http.num_rows(), 100_000);
    let waits = common::sample(
        &app.get_text("/metrics").await,
        "ducklake_cache_waits_total",
    );
    assert_eq!(waits, 1.0);
    let (batches, _) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(whole(&batches), over_http);
    app.stop().await;
}

/// Reads over Flight are served from the hot tables' copies as over HTTP
/// (one engine path), and answer what the lake has at the snapshot they
/// name; a pinned read never uses a copy.
#[actix_web::test]
async fn flight_reads_are_served_from_hot_table_copies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.cache.enabled = false;
    config.hot_tables.after_reads = 1;
    let app = common::spawn_with(config, Some(dir)).await;
    app.sql("CREATE TABLE h AS SELECT range AS id, range * 2 AS v FROM range(1000)")
        .await;
    let copied = || app.engine().hot().stats();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while copied().tables == 0 {
        app.sql("SELECT count(*) FROM h").await;
        assert!(std::time::Instant::now() < deadline, "h never copied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut flight = client(&app).await;
    let sql = "SELECT id, v FROM h WHERE id IN (7, 700) ORDER BY id";
    let before = copied().reads;
    let info = flight.execute(sql.into(), None).await.unwrap();
    let (got, headers) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(copied().reads, before + 1, "not served from the copy");
    let snapshot = headers
        .get(ducklake_backend::flight::SNAPSHOT_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    flight.set_header(ducklake_backend::flight::SNAPSHOT_HEADER, snapshot);
    let info = flight.execute(sql.into(), None).await.unwrap();
    let (pinned, _) = fetch(&mut flight, info).await.unwrap();
    assert_eq!(copied().reads, before + 1, "a pinned read used the copy");
    assert_eq!(whole(&got), whole(&pinned));
    assert_eq!(whole(&got).num_rows(), 2);
    app.stop().await;
}

#[actix_web::test]
async fn python_drivers_read_write_and_are_refused_as_http_is() {
    let (app, [read, write, _admin]) = crate::auth::app_with_a_key_per_role().await;
    let uri = format!("grpc://127.0.0.1:{}", app.flight_port.unwrap());
    common::python_checks(
        "flight-clients.py",
        &[&uri, &app.base, &read, &write],
        &[
            "ok pyarrow.flight basic handshake",
            "ok adbc username/password",
            "types equal to the HTTP API's Arrow",
            "ok statements, parameters, executemany",
            "ok adbc_ingest create, append, replace",
            "ok adbc_get_objects lists the lake",
            "ok wrong key, read key writing, sandbox attacks refused",
            "ok pinned read returns the old rows",
            "ok cancel stops the query",
        ],
    )
    .await;
    app.stop().await;
}

#[actix_web::test]
async fn limits_expiry_and_the_replayed_ticket_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.query.max_rows = 1000;
    let app = common::spawn_with(config, Some(dir)).await;
    let mut flight = client(&app).await;

    // Beyond the server's row limit an Arrow stream cannot say it was cut:
    // it ends with an error status, never as a short result.
    let info = flight
        .execute("SELECT range AS n FROM range(5000)".into(), None)
        .await;
    let err = match info {
        Err(err) => err,
        Ok(info) => fetch(&mut flight, info).await.unwrap_err(),
    };
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(message.starts_with("[result_too_large]"), "{message}");
    // With what a Flight client can do about it (not the HTTP API's headers).
    assert!(message.contains("add a LIMIT"), "{message}");
    assert!(!message.contains("X-Row-Count"), "{message}");

    // A ticket whose stream is not here (another replica's, or expired)
    // runs its statement again read-only: a write never runs twice.
    app.sql("CREATE TABLE once (n INT)").await;
    let info = flight
        .execute("INSERT INTO once VALUES (1)".into(), None)
        .await
        .unwrap();
    fetch(&mut flight, info).await.unwrap();
    let replayed = arrow_flight::sql::TicketStatementQuery {
        statement_handle: serde_json::to_vec(&json!({"sql": "INSERT INTO once VALUES (1)"}))
            .unwrap()
            .into(),
    };
    let ticket = arrow_flight::Ticket {
        ticket: prost::Message::encode_to_vec(&arrow_flight::sql::ProstMessageExt::as_any(
            &replayed,
        ))
        .into(),
    };
    let err = match flight.do_get(ticket).await {
        Err(err) => err,
        Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
    };
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.starts_with("[read_only]"), "{message}");
    let count = app.sql("SELECT count(*) FROM once").await;
    assert_eq!(count["rows"], json!([[1]]));
    // A ticket that is not one of ours is a clear error.
    let err = flight
        .do_get(arrow_flight::Ticket {
            ticket: prost::Message::encode_to_vec(&arrow_flight::sql::ProstMessageExt::as_any(
                &arrow_flight::sql::TicketStatementQuery {
                    statement_handle: "not json".into(),
                },
            ))
            .into(),
        })
        .await
        .unwrap_err();
    assert_eq!(flight_error_status(&err).0, Code::InvalidArgument);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.duckdb.connections = 1;
    config.query.max_queued = 0;
    config.flight.ticket_ttl_ms = 2000;
    let held = common::spawn_with(config, Some(dir)).await;
    let mut held_flight = client(&held).await;
    // A started statement holds its connection: with none left and no
    // queue, the next one is turned away, as HTTP answers 429.
    let endless = "SELECT range AS n, repeat('x', 100) AS pad FROM range(1000000000000)";
    let waiting = held_flight.execute(endless.into(), None).await.unwrap();
    let err = held_flight
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    // Not fetched within flight.ticket_ttl_ms, it is stopped and its
    // connection comes back.
    until_no_query_runs(&held).await;
    assert_eq!(query(&mut held_flight, "SELECT 1").await[0].num_rows(), 1);
    drop(waiting);
    held.stop().await;
}

#[actix_web::test]
async fn tls_serves_only_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A CA of the test's own, and a certificate for localhost signed by it.
    let made = common::certs::certificate(dir.path(), "DNS:localhost");
    let (cert, key) = (made.cert, made.key);
    let mut config = common::test_config(&dir.path().join("data"));
    config.flight.tls_cert = Some(cert.clone());
    config.flight.tls_key = Some(key);
    let app = common::spawn_with(config, Some(dir)).await;
    let port = app.flight_port.unwrap();

    let ca = tonic::transport::Certificate::from_pem(std::fs::read(&made.ca).unwrap());
    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let mut flight = FlightSqlServiceClient::new(channel);
    assert_eq!(query(&mut flight, "SELECT 1").await[0].num_rows(), 1);

    // Plain HTTP/2 to the same port gets no answer.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut plain = FlightSqlServiceClient::new(channel);
        assert!(plain.execute("SELECT 1".into(), None).await.is_err());
    }
    app.stop().await;
}

#[actix_web::test]
async fn each_flight_call_logs_its_protocol_method_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let flight_port = common::free_port();
    let mut replica = common::binary::Replica::start(
        dir.path(),
        &[
            ("FLIGHT_PORT", flight_port.to_string()),
            ("LOG_LEVEL", "info".to_string()),
        ],
    )
    .await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut flight = FlightSqlServiceClient::new(channel);
    assert_eq!(
        query(&mut flight, "SELECT 7 AS seven").await[0].num_rows(),
        1
    );
    replica.kill();
    let port = replica.base.rsplit(':').next().unwrap().to_string();
    let log = std::fs::read_to_string(dir.path().join(format!("service-{port}.log"))).unwrap();
    let call = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "flight call" && line["call"] == "statement_query")
        .unwrap_or_else(|| panic!("no flight call line:\n{log}"));
    let text = call.to_string();
    assert!(text.contains("\"protocol\":\"flight\""), "{text}");
    assert!(
        text.contains("/arrow.flight.protocol.FlightService/GetFlightInfo"),
        "{text}"
    );
    assert!(text.contains("\"key\":\"anonymous\""), "{text}");
}

#[actix_web::test]
async fn a_transaction_left_idle_after_writing_is_rolled_back_and_its_client_told_why() {
    use arrow_flight::sql::EndTransaction;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.flight.transaction_idle_timeout_ms = 300;
    let app = common::spawn_with(config, Some(dir)).await;
    let mut flight = client(&app).await;
    app.sql("CREATE TABLE kept (n INT); INSERT INTO kept VALUES (1)")
        .await;
    let txn = flight.begin_transaction().await.unwrap();
    flight
        .execute_update("DELETE FROM kept".into(), Some(txn.clone()))
        .await
        .unwrap();
    // Its connection is held until it has waited idle for its timeout.
    until_no_query_runs(&app).await;
    let err = flight
        .end_transaction(txn, EndTransaction::Commit)
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::Aborted, "{message}");
    assert!(message.starts_with("[transaction_ended]"), "{message}");
    assert!(
        message.contains("flight.transaction_idle_timeout_ms"),
        "{message}"
    );
    let rows = app.sql("SELECT count(*) FROM kept").await;
    assert_eq!(rows["rows"], json!([[1]]));
    app.stop().await;
}

/// Arrow parameters keep their type: DuckDB binds a date as a DATE (so
/// `? + INTERVAL 1 DAY` works), a float as a DOUBLE, a timestamp with zone
/// as a TIMESTAMPTZ, a list as a list; a write stores them exactly.
#[actix_web::test]
async fn parameters_keep_their_arrow_type() {
    use arrow_array::{
        ArrayRef, BinaryArray, Date32Array, Decimal128Array, Float64Array, ListArray,
        Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    let app = spawn_app().await;
    let mut flight = client(&app).await;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("d", Arc::new(Date32Array::from(vec![19782]))),
        ("f", Arc::new(Float64Array::from(vec![0.5]))),
        (
            "t",
            Arc::new(Time64MicrosecondArray::from(vec![45_296_789_000])),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![1_704_164_645_678_901])),
        ),
        (
            "tz",
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_704_164_645_000_000]).with_timezone("UTC"),
            ),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from(vec![12345678901234567890123456789012345678])
                    .with_precision_and_scale(38, 4)
                    .unwrap(),
            ),
        ),
        ("b", Arc::new(BinaryArray::from(vec![&b"\x00\xff'"[..]]))),
        (
            "l",
            Arc::new(ListArray::from_iter_primitive::<
                arrow_array::types::Int32Type,
                _,
                _,
            >(vec![Some(vec![Some(1), None, Some(3)])])),
        ),
    ];
    let params = RecordBatch::try_from_iter(columns.clone()).unwrap();
    let sql = "SELECT ? + INTERVAL 1 DAY AS d, typeof(?) AS f, ? AS t, ? AS ts, ? AS tz, \
               ? AS dec, ? AS b, ? AS l";
    let mut prepared = flight.prepare(sql.into(), None).await.unwrap();
    prepared.set_parameters(params.clone()).unwrap();
    let info = prepared.execute().await.unwrap();
    let (batches, _) = fetch(&mut flight, info).await.unwrap();
    let got = whole(&batches);
    let text = |i: usize| arrow_cast::display::array_value_to_string(got.column(i), 0).unwrap();
    assert_eq!(text(0), "2024-03-01T00:00:00");
    assert_eq!(text(1), "DOUBLE");
    assert_eq!(text(2), "12:34:56.789");
    assert_eq!(text(3), "2024-01-02T03:04:05.678901");
    assert!(
        matches!(
            got.schema().field(4).data_type(),
            arrow_schema::DataType::Timestamp(_, Some(_))
        ),
        "{:?}",
        got.schema().field(4)
    );
    let tz = got
        .column(4)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(tz.value(0), 1_704_164_645_000_000);
    assert_eq!(text(5), "1234567890123456789012345678901234.5678");
    assert_eq!(text(6), "00ff27");
    assert_eq!(text(7), "[1, , 3]");

    // A write binds them too: the table holds exactly what was sent.
    app.sql(
        "CREATE TABLE typed (d DATE, f DOUBLE, t TIME, ts TIMESTAMP, tz TIMESTAMPTZ, \
         dec DECIMAL(38,4), b BLOB, l INTEGER[])",
    )
    .await;
    let mut insert = flight
        .prepare(
            "INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?)".into(),
            None,
        )
        .await
        .unwrap();
    insert.set_parameters(params).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 1);
    let stored = app
        .sql(
            "SELECT d::VARCHAR, f, t::VARCHAR, ts::VARCHAR, epoch_us(tz), dec::VARCHAR, \
             hex(b), l::VARCHAR FROM typed",
        )
        .await;
    assert_eq!(
        stored["rows"],
        json!([[
            "2024-02-29",
            0.5,
            "12:34:56.789",
            "2024-01-02 03:04:05.678901",
            1_704_164_645_000_000i64,
            "1234567890123456789012345678901234.5678",
            "00FF27",
            "[1, NULL, 3]"
        ]])
    );
    app.stop().await;
}

/// What the Arrow Flight SQL JDBC driver sends (it cannot be fetched here,
/// so its calls are made with the Rust client, in its order): the Basic
/// handshake, then the bearer token it answers; `GetSqlInfo` for every
/// info; the catalog, schemas, table types and tables with their schemas
/// (DBeaver's tree); a prepared query and a prepared update with typed
/// parameters, closed after.
#[actix_web::test]
async fn what_the_jdbc_driver_sends() {
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
    let (app, [_read, write, _admin]) = crate::auth::app_with_a_key_per_role().await;
    let mut flight = client(&app).await;
    flight.handshake("jdbc user", &write).await.unwrap();
    assert_eq!(flight.token(), Some(&write));
    let (status, body) = crate::auth::query_as(
        &app,
        &write,
        &json!({"sql": "CREATE TABLE jdbc_t (id INTEGER, day DATE, name VARCHAR)"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let info = flight.get_sql_info(vec![]).await.unwrap();
    let infos = fetch_whole(&mut flight, info).await;
    let ids = infos
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::UInt32Array>()
        .unwrap();
    for wanted in [
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerVersion,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::SqlIdentifierQuoteChar,
    ] {
        assert!(
            ids.values().contains(&(wanted as u32)),
            "{wanted:?} missing"
        );
    }
    let info = flight.get_catalogs().await.unwrap();
    assert_eq!(fetch_whole(&mut flight, info).await.num_rows(), 1);
    let info = flight
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("lake".into()),
            db_schema_filter_pattern: Some("%".into()),
        })
        .await
        .unwrap();
    assert!(fetch_whole(&mut flight, info).await.num_rows() >= 1);
    let info = flight.get_table_types().await.unwrap();
    assert_eq!(fetch_whole(&mut flight, info).await.num_rows(), 2);
    let info = flight
        .get_tables(CommandGetTables {
            catalog: Some("lake".into()),
            db_schema_filter_pattern: Some("%".into()),
            table_name_filter_pattern: Some("jdbc%".into()),
            table_types: vec!["TABLE".into(), "VIEW".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch_whole(&mut flight, info).await;
    assert_eq!(tables.num_rows(), 1, "{tables:?}");
    let table_schema = table_schema(&tables, 0);
    assert_eq!(
        table_schema.field(1).data_type(),
        &arrow_schema::DataType::Date32
    );

    let params = |id: i32, day: i32, name: &str| {
        RecordBatch::try_from_iter([
            (
                "0",
                Arc::new(arrow_array::Int32Array::from(vec![id])) as arrow_array::ArrayRef,
            ),
            (
                "1",
                Arc::new(arrow_array::Date32Array::from(vec![day])) as _,
            ),
            (
                "2",
                Arc::new(arrow_array::StringArray::from(vec![name])) as _,
            ),
        ])
        .unwrap()
    };
    let mut insert = flight
        .prepare("INSERT INTO jdbc_t VALUES (?, ?, ?)".into(), None)
        .await
        .unwrap();
    insert.set_parameters(params(1, 19782, "leap")).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 1);
    insert.close().await.unwrap();
    let mut select = flight
        .prepare(
            "SELECT name, day + INTERVAL 1 DAY AS next FROM jdbc_t WHERE id = ? AND day = ? \
             AND name = ?"
                .into(),
            None,
        )
        .await
        .unwrap();
    select.set_parameters(params(1, 19782, "leap")).unwrap();
    let info = select.execute().await.unwrap();
    let rows = fetch_whole(&mut flight, info).await;
    assert_eq!(rows.num_rows(), 1);
    assert_eq!(
        arrow_cast::display::array_value_to_string(rows.column(1), 0).unwrap(),
        "2024-03-01T00:00:00"
    );
    select.close().await.unwrap();
    app.stop().await;
}

#[actix_web::test]
async fn an_ingest_shares_the_spool_budget_with_http_uploads() {
    use arrow_flight::sql::{
        CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
    };
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.ingest.max_spool_bytes = 64 * 1024;
    let app = common::spawn_with(config, Some(dir)).await;
    let mut flight = client(&app).await;
    let batch = |rows: std::ops::Range<i64>| {
        RecordBatch::try_from_iter([(
            "n",
            Arc::new(arrow_array::Int64Array::from_iter_values(rows)) as arrow_array::ArrayRef,
        )])
        .unwrap()
    };
    let ingest = CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create as i32,
            if_exists: TableExistsOption::Append as i32,
        }),
        table: "spooled".into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let small = batch(0..1000);
    let big: Vec<RecordBatch> = (0..20).map(|i| batch(i * 1000..(i + 1) * 1000)).collect();
    let big_bytes: usize = big.iter().map(|b| b.get_array_memory_size()).sum();
    assert!(big_bytes > 64 * 1024 && small.get_array_memory_size() < 32 * 1024);

    // Alone past the budget: RESOURCE_EXHAUSTED, nothing created.
    let err = flight
        .execute_ingest(
            ingest.clone(),
            futures_util::stream::iter(big.into_iter().map(Ok)),
        )
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("ingest.max_spool_bytes"), "{message}");
    let (status, _) = app.get_json("/api/v1/tables/main/spooled").await;
    assert_eq!(status, 404, "the refused ingest created nothing");

    // An HTTP upload being received holds most of it: a small ingest that
    // would fit alone is refused too.
    let csv: String = std::iter::once("n\n".to_string())
        .chain((0..20_000).map(|i| format!("{i}\n")))
        .collect();
    let sent = 60 * 1024;
    assert!(csv.len() > sent);
    assert!(sent + small.get_array_memory_size() > 64 * 1024);
    let address = app.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /api/v1/tables/main/spooled/data?mode=create HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
                csv.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    socket.write_all(&csv.as_bytes()[..sent]).await.unwrap();
    socket.flush().await.unwrap();
    let uploads = app.data_dir.join("tmp").join("uploads");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let received: u64 = std::fs::read_dir(&uploads)
            .map(|d| {
                d.flatten()
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0);
        if received >= sent as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload's bytes never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = flight
        .execute_ingest(
            ingest.clone(),
            futures_util::stream::iter([Ok(small.clone())]),
        )
        .await
        .unwrap_err();
    let (code, message) = flight_error_status(&err);
    assert_eq!(code, Code::ResourceExhausted, "{message}");

    // The upload goes away: its bytes are given back, and the ingest loads.
    drop(socket);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let loaded = loop {
        match flight
            .execute_ingest(
                ingest.clone(),
                futures_util::stream::iter([Ok(small.clone())]),
            )
            .await
        {
            Ok(loaded) => break loaded,
            Err(err) => {
                let (code, message) = flight_error_status(&err);
                assert_eq!(code, Code::ResourceExhausted, "{message}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the abandoned upload never gave its bytes back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(loaded, 1000);
    app.stop().await;
}
