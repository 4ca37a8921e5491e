//! Whether a read's answer may vary between runs at the same lake
//! snapshot for reasons its bound plan does not show.
//!
//! The plan shows every scalar and aggregate function that runs, macro and
//! view bodies included, but not what DuckDB evaluated while binding: a
//! table function's arguments (`unnest([now()])`, `range(random() * 9)`)
//! and an `AT (TIMESTAMP => now() - ...)` clause leave only their values.
//! So the statement's own parse tree (DuckDB's, `json_serialize_sql`) is
//! read too: every function called anywhere in the text must be on the
//! reviewed list as deterministic ([`super::is_deterministic`]), and the
//! plan may call no table function the text does not (one in a view's or
//! a macro's body, whose arguments neither shows). Whatever cannot be
//! shown so is taken to vary: the answer gets no ETag and is not kept.

use duckdb::Connection;
use serde_json::Value;

use super::{is_deterministic, lists::TABLE_FUNCTIONS, Checked};
use crate::{engine::parse_tree, error::Error};

/// Why `checked`'s answer may vary beyond what its plan shows (or `None`),
/// and DuckDB's parse tree of it (for whoever needs it next).
pub fn hidden_variance(
    conn: &Connection,
    checked: &Checked,
) -> Result<(Option<String>, Value), Error> {
    let tree = parse_tree::serialize(conn, checked.sql())?;
    Ok((variance_of(&tree, checked), tree))
}

fn variance_of(tree: &Value, checked: &Checked) -> Option<String> {
    if tree["error"].as_bool() != Some(false) {
        return Some("DuckDB cannot show the statement's parse tree".into());
    }
    let mut seen = Seen::default();
    seen.walk(tree);
    if let Some(name) = seen.varying.first() {
        return Some(format!("it calls {name}()"));
    }
    if checked.inspection().table_functions > seen.table_functions {
        return Some("a view or macro calls a table function whose arguments no plan shows".into());
    }
    None
}

#[derive(Default)]
struct Seen {
    /// Functions called in the text that are not reviewed as deterministic.
    varying: Vec<String>,
    /// Calls of known table functions in the text.
    table_functions: usize,
}

fn is_table_function(name: &str) -> bool {
    TABLE_FUNCTIONS
        .iter()
        .any(|(_, names)| names.contains(&name))
}

impl Seen {
    fn walk(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                let class = map.get("class").and_then(Value::as_str);
                let kind = map.get("type").and_then(Value::as_str);
                if kind == Some("TABLE_FUNCTION") {
                    // The table function itself is judged by the plan; its
                    // arguments are walked below like any expression.
                    let name = map["function"]["function_name"].as_str().unwrap_or("");
                    if is_table_function(name) {
                        self.table_functions += 1;
                    }
                    if let Some(Value::Array(args)) = map["function"].get("children") {
                        args.iter().for_each(|arg| self.walk(arg));
                    }
                    for (key, child) in map {
                        if key != "function" {
                            self.walk(child);
                        }
                    }
                    return;
                }
                if class == Some("FUNCTION") {
                    let name = map["function_name"].as_str().unwrap_or("");
                    if !is_deterministic(name) {
                        self.varying.push(name.to_string());
                    }
                }
                map.values().for_each(|child| self.walk(child));
            }
            Value::Array(items) => items.iter().for_each(|child| self.walk(child)),
            _ => {}
        }
    }
}
