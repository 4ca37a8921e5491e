//! What a driver's object browser asks: the lake's catalog, schemas and
//! tables (with their Arrow schemas), read from DuckDB's own catalog
//! functions on a pooled connection, so both protocols list the same lake.

use std::{sync::Arc, time::Duration};

use arrow_flight::sql::{
    metadata::{SqlInfoData, SqlInfoDataBuilder},
    SqlInfo, SqlSupportedTransaction,
};
use arrow_schema::Schema;

use crate::{
    engine::{
        lake::quote_identifier,
        query::{query_vec, Params},
        sandbox, Engine,
    },
    error::Error,
    role::Role,
    services::Services,
};

/// What this server supports, answered to `GetSqlInfo`.
pub(super) fn sql_info(services: &Services) -> SqlInfoData {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "ducklake-backend");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::Transaction as i32,
    );
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    builder.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    builder.append(
        SqlInfo::FlightSqlServerStatementTimeout,
        services.config.query.max_timeout_ms.min(i32::MAX as u64) as i32,
    );
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, true);
    builder.append(SqlInfo::SqlDdlTable, true);
    builder.append(SqlInfo::SqlIdentifierCase, 3_i32); // case-insensitive
    builder.append(SqlInfo::SqlQuotedIdentifierCase, 3_i32);
    builder
        .build()
        .expect("the server's SqlInfo is a fixed, valid set")
}

/// One table or view of the lake.
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    /// `TABLE` or `VIEW`.
    pub kind: &'static str,
    /// Its columns as Arrow fields (when asked for).
    pub arrow: Option<Schema>,
}

/// The table types the lake has.
pub const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

/// The lake's schemas, by name.
pub async fn schemas(engine: &Engine, timeout: Duration) -> Result<Vec<String>, Error> {
    let lake = engine.lake().name.clone();
    engine
        .run_blocking(timeout, move |conn| {
            query_vec(
                conn,
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? \
                 AND NOT internal ORDER BY 1",
                [&lake],
                |row| row.get(0),
            )
            .map_err(Error::from_duckdb)
        })
        .await
}

/// The lake's tables and views, by schema and name; with `arrow`, each
/// one's columns as the Arrow schema a `SELECT *` of it answers with. That
/// `SELECT` runs for `role` like any statement of a caller: checked by the
/// sandbox first, in a read-only transaction; a view the caller may not
/// read is listed with no columns.
pub async fn tables(
    engine: &Arc<Engine>,
    timeout: Duration,
    arrow: bool,
    role: Role,
) -> Result<Vec<TableEntry>, Error> {
    let lake = engine.lake().name.clone();
    engine
        .run_blocking(timeout, move |conn| {
            let rows: Vec<(String, String, bool)> = query_vec(
                conn,
                "SELECT schema_name, table_name, false FROM duckdb_tables() \
                 WHERE database_name = $1 AND NOT internal \
                 UNION ALL SELECT schema_name, view_name, true FROM duckdb_views() \
                 WHERE database_name = $1 AND NOT internal ORDER BY 1, 2",
                [&lake],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(Error::from_duckdb)?;
            if !arrow {
                return Ok(rows
                    .into_iter()
                    .map(|(schema, name, view)| TableEntry {
                        schema,
                        name,
                        kind: TABLE_TYPES[usize::from(view)],
                        arrow: None,
                    })
                    .collect());
            }
            conn.execute_batch("BEGIN TRANSACTION READ ONLY")
                .map_err(Error::from_duckdb)?;
            let listed = rows
                .into_iter()
                .map(|(schema, name, view)| {
                    let sql = format!(
                        "SELECT * FROM {}.{}.{} LIMIT 0",
                        quote_identifier(&lake),
                        quote_identifier(&schema),
                        quote_identifier(&name)
                    );
                    let ask = sandbox::Ask {
                        lake: &lake,
                        role,
                        read_only: true,
                        copies: &[],
                    };
                    let checked =
                        match sandbox::check(conn, &sql, &Params::None, ask, &Error::from_duckdb) {
                            Ok(checked) => checked,
                            Err(
                                Error::Forbidden(_)
                                | Error::InsufficientRole(_)
                                | Error::ReadOnly(_),
                            ) => None,
                            Err(err) => return Err(err),
                        };
                    let arrow = match checked {
                        Some(checked) => {
                            let (_stmt, schema) = checked.start(conn, Error::from_duckdb)?;
                            schema.as_ref().clone()
                        }
                        None => Schema::empty(),
                    };
                    Ok(TableEntry {
                        schema,
                        name,
                        kind: TABLE_TYPES[usize::from(view)],
                        arrow: Some(arrow),
                    })
                })
                .collect::<Result<Vec<_>, Error>>();
            let rolled_back = conn.execute_batch("ROLLBACK").map_err(Error::from_duckdb);
            let listed = listed?;
            rolled_back?;
            Ok(listed)
        })
        .await
}
