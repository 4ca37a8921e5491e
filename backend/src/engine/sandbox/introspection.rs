//! The service's own tables (the hot table copies, `memory.main.__ducklake_hot_<n>`)
//! stay out of what a caller's introspection shows.
//!
//! DuckDB lists every attached database's tables in `duckdb_tables()`,
//! `duckdb_columns()`, `duckdb_indexes()`, `duckdb_constraints()`, the
//! `information_schema` views over them and `SHOW ALL TABLES`. A read whose
//! plan calls one of these is rewritten on DuckDB's own parse tree: each
//! such source becomes the same source filtered of the copies, a subquery
//! DuckDB itself parses from a template, under the source's name or alias
//! (and column aliases). The rewrite then goes through the sandbox's check
//! like any statement.

use duckdb::Connection;
use serde_json::Value;

use super::Inspection;
use crate::{engine::parse_tree, error::Error};

/// The catalog and name prefix of the copies (see `engine::hot`).
const COPIES_CATALOG: &str = "memory";
const COPY_PREFIX: &str = "__ducklake_hot_";

/// Table functions that list tables of every attached database.
const LISTINGS: [&str; 4] = [
    "duckdb_tables",
    "duckdb_columns",
    "duckdb_indexes",
    "duckdb_constraints",
];

/// `information_schema` views that name tables (`table_catalog`, `table_name`).
const SCHEMA_VIEWS: [&str; 4] = ["tables", "columns", "table_constraints", "key_column_usage"];

/// `SHOW ALL TABLES`, as DuckDB's parse tree names it.
const SHOW_ALL_TABLES: &str = "__show_tables_expanded";

/// Whether the plan reads a listing of tables.
pub fn lists_tables(inspection: &Inspection) -> bool {
    LISTINGS
        .iter()
        .any(|name| inspection.unversioned.contains(*name))
}

/// `sql` with every listing of tables filtered of the copies; `None` when
/// it has no listing DuckDB's parse tree shows.
pub fn without_copies(conn: &Connection, sql: &str) -> Result<Option<String>, Error> {
    let mut tree = parse_tree::serialize(conn, sql)?;
    if tree["error"].as_bool() != Some(false) {
        return Ok(None);
    }
    let mut replaced = false;
    replace(conn, &mut tree, &mut replaced)?;
    if !replaced {
        return Ok(None);
    }
    parse_tree::deserialize(conn, &tree).map(Some)
}

/// The filtered source for a table reference node, if it is a listing.
fn filtered(node: &serde_json::Map<String, Value>) -> Option<(String, String)> {
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let without = |catalog: &str, name: &str| {
        format!("NOT ({catalog} = '{COPIES_CATALOG}' AND starts_with({name}, '{COPY_PREFIX}'))")
    };
    match node.get("type").and_then(Value::as_str)? {
        "TABLE_FUNCTION" => {
            let name = text(&node["function"]["function_name"]);
            if !LISTINGS.contains(&name.as_str())
                || !node["function"]["children"].as_array()?.is_empty()
            {
                return None;
            }
            let filter = without("database_name", "table_name");
            Some((format!("SELECT * FROM {name}() WHERE {filter}"), name))
        }
        "BASE_TABLE" => {
            let schema = text(&node["schema_name"]);
            let name = text(&node["table_name"]).to_lowercase();
            if !schema.eq_ignore_ascii_case("information_schema")
                || !SCHEMA_VIEWS.contains(&name.as_str())
            {
                return None;
            }
            let filter = without("table_catalog", "table_name");
            Some((
                format!("SELECT * FROM information_schema.{name} WHERE {filter}"),
                name,
            ))
        }
        "SHOW_REF" if text(&node["table_name"]) == SHOW_ALL_TABLES => {
            let filter = without("\"database\"", "name");
            Some((
                format!("SELECT * FROM (SHOW ALL TABLES) WHERE {filter}"),
                "tables".into(),
            ))
        }
        _ => None,
    }
}

fn replace(conn: &Connection, node: &mut Value, replaced: &mut bool) -> Result<(), Error> {
    match node {
        Value::Object(map) => {
            if let Some((query, name)) = filtered(map) {
                let template = parse_tree::serialize(
                    conn,
                    &format!("SELECT * FROM ({query}) AS {}", quote(&name)),
                )?;
                let mut subquery = template["statements"][0]["node"]["from_table"].clone();
                if subquery["type"].as_str() != Some("SUBQUERY") {
                    return Err(Error::internal(anyhow::anyhow!(
                        "DuckDB did not parse the introspection filter as a subquery"
                    )));
                }
                let alias = map.get("alias").and_then(Value::as_str).unwrap_or("");
                if !alias.is_empty() {
                    subquery["alias"] = Value::String(alias.to_string());
                }
                if let Some(columns) = map.get("column_name_alias") {
                    subquery["column_name_alias"] = columns.clone();
                }
                *node = subquery;
                *replaced = true;
                return Ok(());
            }
            for child in map.values_mut() {
                replace(conn, child, replaced)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|child| replace(conn, child, replaced)),
        _ => Ok(()),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listing DuckDB offers leaves the copies out once rewritten,
    /// under the name and aliases the statement gave it.
    #[test]
    fn listings_leave_the_copies_out() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE __ducklake_hot_1 (a INT); CREATE TABLE mine (a INT, b INT)",
        )
        .unwrap();
        let names = |sql: &str| -> String {
            let sql = without_copies(&conn, sql).unwrap().expect("rewritten");
            conn.query_row(&sql, [], |row| row.get(0)).unwrap()
        };
        for sql in [
            "SELECT string_agg(table_name, ',') FROM duckdb_tables()",
            "SELECT string_agg(t.table_name, ',') FROM duckdb_tables() t WHERE t.schema_name = 'main'",
            "SELECT string_agg(x.table_name, ',') FROM duckdb_columns() AS x(db)",
            "SELECT string_agg(table_name, ',') FROM information_schema.tables",
            "SELECT string_agg(i.table_name, ',') FROM information_schema.columns i",
            "SELECT string_agg(name, ',') FROM (SHOW ALL TABLES)",
        ] {
            let seen = names(sql);
            assert!(seen.contains("mine"), "{sql}: {seen}");
            assert!(!seen.contains("__ducklake_hot_"), "{sql}: {seen}");
        }
        assert_eq!(without_copies(&conn, "SELECT 1").unwrap(), None);
    }
}
