//! One statement text for both stores: parameters both can bind, the
//! column list each needs (times as microseconds since the epoch), and the
//! row reader that serves both.

use std::sync::Arc;

use crate::store::{blocking, pg_error, pool_error, Store, StoreError};

/// A statement parameter both stores can bind.
#[derive(Debug, Clone)]
pub(in crate::store) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Flag(Option<bool>),
}

pub(in crate::store) fn text(value: impl Into<String>) -> Arg {
    Arg::Text(Some(value.into()))
}

impl Store {
    /// Microseconds since the epoch of a TIMESTAMPTZ column, in this store's SQL.
    pub(in crate::store) fn micros(&self, column: &str) -> String {
        match self {
            Self::Postgres(_) => format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"),
            Self::Local(_) => format!("epoch_us({column})"),
        }
    }

    /// The TIMESTAMPTZ of parameter `$n`, given as microseconds since the
    /// epoch (`Arg::Int`; NULL stays NULL), in this store's SQL.
    pub(in crate::store) fn timestamp_param(&self, n: usize) -> String {
        match self {
            // Integer arithmetic: exact to the microsecond (to_timestamp of
            // a double is not, for today's dates).
            Self::Postgres(_) => {
                format!("(TIMESTAMPTZ 'epoch' + ${n}::BIGINT * INTERVAL '1 microsecond')")
            }
            Self::Local(_) => format!("CAST(make_timestamp(${n}::BIGINT) AS TIMESTAMPTZ)"),
        }
    }

    /// `now()` moved by `ms` milliseconds. The local store's DuckDB has no
    /// ICU, which TIMESTAMPTZ arithmetic needs: it computes in UTC TIMESTAMPs.
    pub(in crate::store) fn now_plus(&self, ms: i64) -> String {
        match self {
            Self::Postgres(_) => format!("(now() + INTERVAL '{ms} milliseconds')"),
            Self::Local(_) => format!(
                "CAST(CAST(now() AS TIMESTAMP) + INTERVAL '{ms} milliseconds' AS TIMESTAMPTZ)"
            ),
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub(in crate::store) async fn execute(
        &self,
        sql: String,
        args: Vec<Arg>,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                let params = pg_params(&args);
                client.execute(&sql, &params).await.map_err(pg_error)
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    conn.lock()
                        .execute(&sql, duckdb::params_from_iter(duck_params(&args)))
                        .map(|n| n as u64)
                        .map_err(local_error)
                })
                .await
            }
        }
    }

    /// Runs a statement in either store and reads each row with `read`,
    /// which gets each column's value by index.
    pub(in crate::store) async fn select<T: Send + 'static>(
        &self,
        sql: String,
        args: Vec<Arg>,
        read: fn(&dyn Fn(usize) -> Cell) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                let params = pg_params(&args);
                let rows = client.query(&sql, &params).await.map_err(pg_error)?;
                rows.iter()
                    .map(|r| {
                        read(&|i| Cell {
                            text: r.try_get(i).ok().flatten(),
                            int: r.try_get(i).ok().flatten(),
                            flag: r.try_get(i).ok().flatten(),
                        })
                    })
                    .collect()
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let conn = conn.lock();
                    let mut stmt = conn.prepare(&sql).map_err(local_error)?;
                    let mut rows = stmt
                        .query(duckdb::params_from_iter(duck_params(&args)))
                        .map_err(local_error)?;
                    let mut out = Vec::new();
                    while let Some(r) = rows.next().map_err(local_error)? {
                        out.push(read(&|i| Cell {
                            text: r.get(i).ok().flatten(),
                            int: r.get(i).ok().flatten(),
                            flag: r.get(i).ok().flatten(),
                        })?);
                    }
                    Ok(out)
                })
                .await
            }
        }
    }
}

/// One selected value, read as whichever type the column has.
pub(in crate::store) struct Cell {
    pub text: Option<String>,
    pub int: Option<i64>,
    pub flag: Option<bool>,
}

fn pg_params(args: &[Arg]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| match a {
            Arg::Text(v) => v as &(dyn tokio_postgres::types::ToSql + Sync),
            Arg::Int(v) => v as &(dyn tokio_postgres::types::ToSql + Sync),
            Arg::Flag(v) => v as &(dyn tokio_postgres::types::ToSql + Sync),
        })
        .collect()
}

fn duck_params(args: &[Arg]) -> Vec<duckdb::types::Value> {
    use duckdb::types::Value;
    args.iter()
        .map(|a| match a {
            Arg::Text(Some(s)) => Value::Text(s.clone()),
            Arg::Int(Some(i)) => Value::BigInt(*i),
            Arg::Flag(Some(b)) => Value::Boolean(*b),
            Arg::Text(None) | Arg::Int(None) | Arg::Flag(None) => Value::Null,
        })
        .collect()
}

pub(in crate::store) fn local_error(e: duckdb::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}
