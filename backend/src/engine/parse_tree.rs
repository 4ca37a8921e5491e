//! DuckDB's own parse tree of a statement (`json_serialize_sql`), and the
//! SQL DuckDB writes back from one (`json_deserialize_sql`): what time
//! travel rewrites to pin tables, and what the sandbox's check of a
//! statement with parameters is built from. DuckDB serializes SELECT
//! statements only.
//!
//! **Parameters.** [`with_values`] gives the statement the sandbox checks
//! and runs when DuckDB needs a parameter's value to plan a SELECT (see
//! [`super::sandbox::Checked`]): each placeholder node of the tree is
//! replaced by the node DuckDB parses for its value's literal. No second
//! tokenizer decides where a placeholder is, and a value is one expression
//! whatever stands beside it.

use duckdb::Connection;
use serde_json::Value;

use super::query::{Param, Params};
use crate::error::Error;

/// `sql`'s parse tree as DuckDB serializes it, `{"error": true, ...}`
/// included (the caller decides what a refusal means).
pub fn serialize(conn: &Connection, sql: &str) -> Result<Value, Error> {
    let text: String = conn
        .prepare_cached("SELECT json_serialize_sql(?::VARCHAR)")
        .and_then(|mut stmt| stmt.query_row([sql], |row| row.get(0)))
        .map_err(Error::from_duckdb)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::internal(anyhow::anyhow!("unreadable parse tree: {e}")))
}

/// The SQL DuckDB writes for `tree`.
pub fn deserialize(conn: &Connection, tree: &Value) -> Result<String, Error> {
    conn.prepare_cached("SELECT json_deserialize_sql(?::JSON)")
        .and_then(|mut stmt| stmt.query_row([tree.to_string()], |row| row.get(0)))
        .map_err(Error::from_duckdb)
}

/// The statement `tree` (its [`serialize`]d form) with its parameters'
/// values in place, as DuckDB parses them; `None` when DuckDB could not
/// serialize the statement (not a SELECT).
pub fn with_values(
    conn: &Connection,
    tree: &Value,
    params: &Params,
) -> Result<Option<String>, Error> {
    if tree["error"].as_bool() != Some(false) {
        return Ok(None);
    }
    let mut tree = tree.clone();
    let mut names = Vec::new();
    placeholders(&tree, &mut names);
    if !names.is_empty() {
        // Every value's literal, parsed by DuckDB in one statement: one
        // select item each (a count that differs is refused below).
        let literals = names
            .iter()
            .map(|name| match value_of(params, name) {
                Some(param) => Ok(sql_literal(param)),
                None => Err(Error::InvalidParameters(format!(
                    "no value given for parameter {name}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parsed = serialize(conn, &format!("SELECT {}", literals.join(", ")))?;
        let items = parsed["statements"][0]["node"]["select_list"]
            .as_array()
            .filter(|items| items.len() == names.len())
            .ok_or_else(|| {
                Error::internal(anyhow::anyhow!(
                    "DuckDB did not parse one expression per parameter value"
                ))
            })?;
        let values: std::collections::HashMap<&str, &Value> =
            names.iter().map(String::as_str).zip(items).collect();
        keep_placeholder_names(&mut tree);
        replace(&mut tree, &values);
    }
    if let Some(statements) = tree["statements"].as_array_mut() {
        for statement in statements {
            statement["named_param_map"] = Value::Array(Vec::new());
        }
    }
    deserialize(conn, &tree).map(Some)
}

/// Calls `visit` with every base table of `node` (a statement's tree, or
/// any part of one), except a name that is a CTE where it stands. The CTE
/// names in scope are those DuckDB binds: a query node's CTEs in its body,
/// each CTE in the bodies of the CTEs after it (not in its own or earlier
/// ones, where the name is the table), a recursive CTE in its own body.
pub fn for_each_table(
    node: &mut Value,
    visit: &mut impl FnMut(&mut serde_json::Map<String, Value>),
) {
    tables_in_scope(node, visit, &mut Vec::new());
}

fn tables_in_scope(
    node: &mut Value,
    visit: &mut impl FnMut(&mut serde_json::Map<String, Value>),
    ctes: &mut Vec<String>,
) {
    match node {
        Value::Object(map) => {
            let depth = ctes.len();
            if let Some(Value::Array(entries)) =
                map.get_mut("cte_map").and_then(|m| m.get_mut("map"))
            {
                for entry in entries.iter_mut() {
                    if let Some(query) = entry.get_mut("value").and_then(|v| v.get_mut("query")) {
                        tables_in_scope(query, visit, ctes);
                    }
                    if let Some(name) = entry["key"].as_str() {
                        ctes.push(name.to_lowercase());
                    }
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("RECURSIVE_CTE_NODE") {
                if let Some(name) = map.get("cte_name").and_then(Value::as_str) {
                    ctes.push(name.to_lowercase());
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("BASE_TABLE") {
                let unqualified = map["schema_name"].as_str() == Some("")
                    && map["catalog_name"].as_str() == Some("");
                let name = map["table_name"].as_str().unwrap_or("").to_lowercase();
                if !(unqualified && ctes.contains(&name)) {
                    visit(map);
                }
            }
            for (key, child) in map.iter_mut() {
                if key != "cte_map" {
                    tables_in_scope(child, visit, ctes);
                }
            }
            ctes.truncate(depth);
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|child| tables_in_scope(child, visit, ctes)),
        _ => {}
    }
}

/// A parameter as the SQL literal of what it binds as (see
/// [`crate::engine::query`]: a number as the digits sent, arrays and
/// objects as their JSON text), in parentheses. DuckDB parses the literals
/// (all values in one `SELECT`) and its nodes go into the tree: the text
/// is never spliced into the statement.
fn sql_literal(param: &Param) -> String {
    format!("({})", bare_literal(param))
}

fn bare_literal(param: &Param) -> String {
    // A NUL cannot sit inside SQL text; chr(0) stands for it.
    let quote = super::query::quote_text;
    let value = match param {
        Param::Typed(typed) => return typed.literal(bare_literal),
        // Wider than every numeric type, a number binds as its text (which
        // DuckDB casts exactly): as a literal, its digits would be a DOUBLE.
        Param::Number(text) if super::query::number_binds_as_text(text) => return quote(text),
        Param::Number(text) => return text.clone(),
        Param::Json(value) => value,
    };
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// Whether the tree holds a parameter placeholder.
pub fn has_placeholders(tree: &Value) -> bool {
    let mut names = Vec::new();
    placeholders(tree, &mut names);
    !names.is_empty()
}

fn value_of<'a>(params: &'a Params, identifier: &str) -> Option<&'a Param> {
    match params {
        Params::Positional(values) => identifier
            .parse::<usize>()
            .ok()
            .and_then(|n| values.get(n.checked_sub(1)?)),
        Params::Named(map) => map.get(identifier),
        Params::None => None,
    }
}

fn is_placeholder(map: &serde_json::Map<String, Value>) -> bool {
    map.get("class").and_then(Value::as_str) == Some("PARAMETER")
}

/// The identifiers of the tree's placeholders, each once, in order.
fn placeholders(node: &Value, names: &mut Vec<String>) {
    match node {
        Value::Object(map) if is_placeholder(map) => {
            let identifier = map["identifier"].as_str().unwrap_or("").to_string();
            if !names.contains(&identifier) {
                names.push(identifier);
            }
        }
        Value::Object(map) => map.values().for_each(|child| placeholders(child, names)),
        Value::Array(items) => items.iter().for_each(|child| placeholders(child, names)),
        _ => {}
    }
}

/// A result column that is a placeholder alone is named as DuckDB names it
/// when the value is bound (`$1`, `$name`): its value keeps that name.
fn keep_placeholder_names(tree: &mut Value) {
    let Some(statements) = tree["statements"].as_array_mut() else {
        return;
    };
    for statement in statements {
        let Some(items) = statement["node"]["select_list"].as_array_mut() else {
            continue;
        };
        for item in items {
            let unnamed = item["alias"].as_str().is_none_or(str::is_empty);
            if let (Some(map), true) = (item.as_object_mut(), unnamed) {
                if is_placeholder(map) {
                    let name = format!("${}", map["identifier"].as_str().unwrap_or(""));
                    map.insert("alias".into(), Value::String(name));
                }
            }
        }
    }
}

/// Puts each placeholder's value expression in its place (keeping the
/// placeholder's alias).
fn replace(node: &mut Value, values: &std::collections::HashMap<&str, &Value>) {
    match node {
        Value::Object(map) if is_placeholder(map) => {
            let identifier = map["identifier"].as_str().unwrap_or("");
            let alias = map.get("alias").cloned().unwrap_or_default();
            if let Some(value) = values.get(identifier) {
                let mut expression = (*value).clone();
                expression["alias"] = alias;
                *node = expression;
            }
        }
        Value::Object(map) => map.values_mut().for_each(|child| replace(child, values)),
        Value::Array(items) => items.iter_mut().for_each(|child| replace(child, values)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_values_of(
        conn: &Connection,
        sql: &str,
        params: &Params,
    ) -> Result<Option<String>, Error> {
        with_values(conn, &serialize(conn, sql)?, params)
    }

    fn run(conn: &Connection, sql: &str) -> Vec<(i64, String)> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// DuckDB places each value where it found the placeholder, as one
    /// expression: a negative number after a minus, a string that looks like
    /// SQL.
    #[test]
    fn values_take_the_placeholders_places_in_duckdbs_own_parse() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let tricky = "x'); SELECT current_setting('memory_limit') --";
        let params = Params::parse(&format!(r#"[-1, {}, 3]"#, serde_json::json!(tricky))).unwrap();
        let checked = with_values_of(&conn, "SELECT 1-?, ? FROM range(?)", &params)
            .unwrap()
            .unwrap();
        assert!(!checked.contains('?'), "{checked}");
        assert_eq!(
            run(&conn, &checked),
            vec![(2, tricky.to_string()); 3],
            "{checked}"
        );
        let named = Params::parse(r#"{"n": 2, "s": "it's"}"#).unwrap();
        let checked = with_values_of(&conn, "SELECT $n AS a, $s AS s FROM range($n)", &named)
            .unwrap()
            .unwrap();
        assert_eq!(run(&conn, &checked), vec![(2, "it's".to_string()); 2]);
        // Not a SELECT: DuckDB serializes none.
        conn.execute_batch("CREATE TABLE t (a INT)").unwrap();
        assert_eq!(
            with_values_of(&conn, "INSERT INTO t VALUES (?)", &named).unwrap(),
            None
        );
        // A column that is a placeholder alone keeps the name DuckDB gives
        // it when bound.
        let checked = with_values_of(&conn, "SELECT ?, ? AS b, ? + 1", &params)
            .unwrap()
            .unwrap();
        let mut stmt = conn.prepare(&checked).unwrap();
        stmt.execute([]).unwrap();
        let names: Vec<String> = (0..3)
            .map(|i| stmt.column_name(i).unwrap().clone())
            .collect();
        assert_eq!(names[..2], ["$1", "b"], "{checked}");
        let err = with_values_of(&conn, "SELECT $missing", &named).unwrap_err();
        assert_eq!(err.code(), "invalid_parameters");
    }
}
