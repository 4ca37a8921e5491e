//! The per-statement half of the SQL sandbox: what a role may run, decided
//! from DuckDB's own bound plan of each statement, never from the SQL text.
//!
//! DuckDB's settings (set once after the lake is attached, see
//! [`super::lake::LakeSpec::lockdown_sql`]) already keep user SQL away from
//! host files, the network, extensions and the configuration. They cannot
//! keep it away from the catalog database DuckLake attaches next to the lake
//! (`__ducklake_metadata_<lake>`), from secrets, from other attached
//! databases or from maintenance. This module closes that gap, with one
//! parser deciding everything: DuckDB's.
//!
//! 1. the request is cut into statements where DuckDB's parser ends them
//!    ([`statements`]);
//! 2. each statement is bound and planned by DuckDB (`json_serialize_plan`)
//!    on the connection and in the transaction that then runs it, so the
//!    plan inspected is the plan executed: views and macros are expanded,
//!    names are resolved to their catalog;
//! 3. every operator, table function, scalar function and catalog in that
//!    plan is looked up in the closed lists below. Anything not listed is
//!    refused, including whatever DuckDB cannot serialise (PRAGMA,
//!    CREATE SECRET, file readers, a PIVOT DuckDB expands into several
//!    statements): the sandbox fails closed;
//! 4. what passes is a [`Checked`] statement, the only thing the executor
//!    runs: exactly the text that was checked, with exactly the values that
//!    were bound ([`checked`] holds the invariant). `EXPLAIN` is checked
//!    through the statement it explains ([`explain`]).
//!
//! This module must not execute anything: parsing and planning only.

mod checked;
mod explain;
mod introspection;
mod lists;
mod statements;
mod variance;

use serde_json::Value;

use crate::{error::Error, role::Role};
pub use checked::{check, Ask, Checked};
pub use explain::explain;
pub use introspection::{lists_tables, without_copies};
pub use lists::{is_deterministic, reviewed_function_names, role_table};
use lists::{scalar_function, table_function};
pub use statements::{count_statements, split_statements};
pub use variance::hidden_variance;

/// What one statement needs, read from its plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to run (only comments).
    Empty,
    /// Runnable by a caller holding at least this role.
    Needs(Role),
}

/// What the sandbox learnt from one statement's plan.
#[derive(Debug, Default)]
pub struct Inspection {
    /// The role the statement needs; `None` when it holds nothing to run.
    pub needs: Option<Role>,
    /// Lake tables it scans, as (schema, table).
    pub tables: Vec<(String, String)>,
    /// The lake snapshots its scans read, as DuckDB bound them (a view's or
    /// a macro's tables, and `AT (...)` clauses, included).
    pub snapshots: std::collections::BTreeSet<i64>,
    /// A scan reads a virtual column (`rowid`, `snapshot_id`, `filename`
    /// ...), by name, by a `USING` or `NATURAL` join or otherwise: values
    /// a copy of the table does not have.
    pub virtual_columns: bool,
    /// Table functions the plan calls besides DuckLake's scans (their
    /// arguments are evaluated when DuckDB binds, and no plan shows them).
    pub table_functions: usize,
    /// Every scalar and aggregate function it calls.
    pub functions: std::collections::BTreeSet<String>,
    /// Sources whose rows can change without any lake table changing
    /// (metadata functions, catalog views, DuckDB's own tables): a result
    /// that reads one has no version to revalidate against. Everything but
    /// a DuckLake table scan and the [`lists::FIXED_SOURCES`] lands here,
    /// so a source nobody thought of fails closed.
    pub unversioned: std::collections::BTreeSet<String>,
    /// What it changes, for the audit trail: each plan operator or table
    /// function beyond the read role (`INSERT`, `CREATE_TABLE`,
    /// `ducklake_expire_snapshots` ...).
    pub writes: std::collections::BTreeSet<String>,
    /// The schema objects it creates, alters or drops or inserts into, as
    /// (schema, name); UPDATE, DELETE and MERGE name theirs in `tables`.
    pub targets: Vec<(String, String)>,
}

/// Reads DuckDB's answer to `json_serialize_plan` for one statement.
pub fn judge(plan_json: &str, lake: &str) -> Result<Verdict, Error> {
    Ok(match inspect(plan_json, lake)?.needs {
        None => Verdict::Empty,
        Some(role) => Verdict::Needs(role),
    })
}

/// [`judge`], with what the statement reads.
pub fn inspect(plan_json: &str, lake: &str) -> Result<Inspection, Error> {
    inspect_with(plan_json, lake, &[])
}

/// [`inspect`] of a statement that may also read the in-memory `copies`
/// of lake tables (`memory.main.<copy>`), and nothing else outside the lake.
fn inspect_with(plan_json: &str, lake: &str, copies: &[String]) -> Result<Inspection, Error> {
    let answer: Value = serde_json::from_str(plan_json)
        .map_err(|e| Error::internal(anyhow::anyhow!("unreadable plan from DuckDB: {e}")))?;
    if answer["error"].as_bool() == Some(true) {
        return Err(plan_error(&answer));
    }
    let plans = answer["plans"].as_array().cloned().unwrap_or_default();
    match plans.len() {
        0 => Ok(Inspection::default()),
        1 => {
            let mut inspector = Inspector {
                lake,
                copies,
                metadata: format!("__ducklake_metadata_{lake}"),
                needs: Role::Read,
                tables: Vec::new(),
                snapshots: Default::default(),
                virtual_columns: false,
                table_functions: 0,
                functions: Default::default(),
                unversioned: Default::default(),
                writes: Default::default(),
                targets: Vec::new(),
            };
            inspector.walk(&plans[0]).map_err(Error::Forbidden)?;
            Ok(Inspection {
                needs: Some(inspector.needs),
                tables: inspector.tables,
                snapshots: inspector.snapshots,
                virtual_columns: inspector.virtual_columns,
                table_functions: inspector.table_functions,
                functions: inspector.functions,
                unversioned: inspector.unversioned,
                writes: inspector.writes,
                targets: inspector.targets,
            })
        }
        _ => Err(Error::InvalidRequest(
            "could not tell where one statement ends and the next begins; \
             separate statements with `;`"
                .into(),
        )),
    }
}

/// DuckDB could not plan the statement: a mistake in the SQL (answered as
/// DuckDB words it), or a statement the sandbox cannot see into (refused).
fn plan_error(answer: &Value) -> Error {
    let kind = answer["error_type"].as_str().unwrap_or("");
    let message = answer["error_message"].as_str().unwrap_or("").to_string();
    let unplannable = matches!(kind, "not implemented" | "internal")
        || message.contains("does not support serialization");
    if unplannable || message.starts_with("PRAGMA function") {
        let what = if message.starts_with("PRAGMA") {
            "PRAGMA statements are not allowed (the pragma_* table functions are)".to_string()
        } else if message.contains("LOGICAL_EXPLAIN") {
            "EXPLAIN is not available".to_string()
        } else if message.contains("LOGICAL_CREATE_SECRET") {
            "CREATE SECRET is not allowed".to_string()
        } else if message.contains("type MULTI") {
            "a PIVOT over values read from the data (no IN list, or IN a query) is not \
             available: list the values, as in PIVOT t ON k IN ('a', 'b') USING sum(v)"
                .to_string()
        } else {
            format!("the statement uses something the sandbox does not allow ({message})")
        };
        return Error::Forbidden(what);
    }
    let kind = title_case(kind);
    Error::from_duckdb_message(format!("{kind} Error: {message}"))
}

/// A scan's columns include one of DuckDB's virtual columns: their ids
/// start at 2^63 (the row id is the largest; "no column", which a
/// `count(*)` scan reads, is not one).
fn reads_a_virtual_column(scan: &serde_json::Map<String, Value>) -> bool {
    const VIRTUAL_START: u64 = 1 << 63;
    const NO_COLUMN: u64 = u64::MAX - 1;
    scan.get("column_indexes")
        .and_then(Value::as_array)
        .is_some_and(|columns| {
            columns.iter().any(|column| {
                column["index"]
                    .as_u64()
                    .is_some_and(|id| id >= VIRTUAL_START && id != NO_COLUMN)
            })
        })
}

pub(crate) fn title_case(kind: &str) -> String {
    kind.split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_uppercase().collect::<String>() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

struct Inspector<'a> {
    lake: &'a str,
    copies: &'a [String],
    metadata: String,
    needs: Role,
    tables: Vec<(String, String)>,
    snapshots: std::collections::BTreeSet<i64>,
    virtual_columns: bool,
    table_functions: usize,
    functions: std::collections::BTreeSet<String>,
    unversioned: std::collections::BTreeSet<String>,
    writes: std::collections::BTreeSet<String>,
    targets: Vec<(String, String)>,
}

impl Inspector<'_> {
    fn require(&mut self, role: Role) {
        self.needs = self.needs.max(role);
    }

    fn walk(&mut self, value: &Value) -> Result<(), String> {
        match value {
            Value::Array(items) => items.iter().try_for_each(|item| self.walk(item)),
            Value::Object(map) => {
                if let Some(kind) = map.get("type").and_then(Value::as_str) {
                    if kind.starts_with("LOGICAL_") && map.contains_key("children") {
                        self.operator(kind, map)?;
                    }
                }
                if let Some(class) = map.get("expression_class").and_then(Value::as_str) {
                    // A window's aggregate (`sum(x) OVER ()`) is named in
                    // the window node itself; DuckDB's own window functions
                    // (row_number, lag ...) are its node types, and have no
                    // name.
                    let window_aggregate = class == "BOUND_WINDOW" && map.contains_key("name");
                    if class == "BOUND_FUNCTION" || class == "BOUND_AGGREGATE" || window_aggregate {
                        let name = map.get("name").and_then(Value::as_str).unwrap_or("");
                        scalar_function(name)?;
                        self.functions.insert(name.to_string());
                    }
                    // A BOUND_PARAMETER is a value bound when the statement
                    // runs, used as data: a parameter DuckDB needs to bind
                    // the statement leaves no plan at all (see [`checked`]).
                }
                if self.is_copy(map) {
                    return Ok(());
                }
                for key in ["catalog", "catalog_name"] {
                    if let Some(catalog) = map.get(key).and_then(Value::as_str) {
                        self.catalog(catalog)?;
                    }
                }
                map.values().try_for_each(|child| self.walk(child))
            }
            _ => Ok(()),
        }
    }

    /// The object a DDL statement or INSERT names, from its `info` (or
    /// `table_info`): `schema` and the object's own name.
    fn target(&mut self, node: &serde_json::Map<String, Value>) {
        let Some(info) = node.get("table_info").or_else(|| node.get("info")) else {
            return;
        };
        let schema = info["schema"].as_str().unwrap_or("");
        let name = ["table", "view_name", "name"]
            .iter()
            .find_map(|key| info[*key].as_str().filter(|n| !n.is_empty()));
        match name {
            Some(name) => self.targets.push((schema.to_string(), name.to_string())),
            // CREATE SCHEMA names only its schema.
            None if !schema.is_empty() => self.targets.push((schema.to_string(), String::new())),
            None => {}
        }
    }

    /// A scan's `function_data` naming one of the copies the statement may
    /// read (`memory.main.<copy>`).
    fn is_copy(&self, map: &serde_json::Map<String, Value>) -> bool {
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
        text("catalog") == "memory"
            && text("schema") == "main"
            && self.copies.iter().any(|copy| copy == text("table"))
    }

    fn catalog(&self, catalog: &str) -> Result<(), String> {
        // Identifiers are case-insensitive in DuckDB.
        let is = |name: &str| catalog.eq_ignore_ascii_case(name);
        if catalog.is_empty() || is(self.lake) || is("system") {
            return Ok(());
        }
        if is(&self.metadata) {
            return Err(format!(
                "the lake's catalog database ({catalog}) cannot be reached directly"
            ));
        }
        Err(format!(
            "only the lake `{}` can be used, not the database `{catalog}`",
            self.lake
        ))
    }

    fn operator(
        &mut self,
        kind: &str,
        node: &serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        let name = &kind["LOGICAL_".len()..];
        match name {
            "GET" => {
                let function = node.get("name").and_then(Value::as_str).unwrap_or("");
                let data = node.get("function_data").unwrap_or(&Value::Null);
                if function == "seq_scan" && data.as_object().is_some_and(|d| self.is_copy(d)) {
                    self.unversioned.insert("hot table copy".into());
                    return Ok(());
                }
                let role = table_function(function)?;
                self.require(role);
                if function != "ducklake_scan" {
                    self.table_functions += 1;
                }
                if role > Role::Read {
                    self.writes.insert(function.to_string());
                }
                match (data["schema_name"].as_str(), data["table_name"].as_str()) {
                    (Some(schema), Some(table)) if function == "ducklake_scan" => {
                        self.tables.push((schema.to_string(), table.to_string()));
                        if let Some(snapshot) = data["snapshot"]["snapshot_id"].as_i64() {
                            self.snapshots.insert(snapshot);
                        }
                        self.virtual_columns |= reads_a_virtual_column(node);
                    }
                    _ if lists::FIXED_SOURCES.contains(&function) => {}
                    _ => {
                        self.unversioned.insert(function.to_string());
                    }
                }
                return Ok(());
            }
            "DROP" => {
                let info = &node["info"];
                if info["type"].as_str() == Some("SECRET_ENTRY") {
                    return Err("DROP SECRET is not allowed".into());
                }
                if info["type"].as_str() == Some("SCHEMA_ENTRY")
                    && info["name"]
                        .as_str()
                        .is_some_and(|name| name.eq_ignore_ascii_case("main"))
                {
                    return Err("the lake's default schema main cannot be dropped".into());
                }
            }
            // A sample differs between runs (with a seed too, it is no lake
            // version): its read gets no ETag.
            "SAMPLE" => {
                self.unversioned.insert("USING SAMPLE".into());
            }
            "ATTACH" | "DETACH" => {
                return Err(format!(
                    "{} is not allowed: requests use the lake `{}` and no other database",
                    name, self.lake
                ))
            }
            "SET" | "RESET" => {
                return Err(format!(
                    "{name} is not allowed: settings (including USE) cannot be changed"
                ))
            }
            "LOAD" | "UPDATE_EXTENSIONS" => {
                return Err("extensions cannot be installed, loaded or updated".into())
            }
            "COPY_TO_FILE" | "COPY_DATABASE" | "EXPORT" => {
                return Err(format!(
                    "{} is not allowed: files outside the lake cannot be written",
                    name.replace('_', " ")
                ))
            }
            "TRANSACTION" => {
                return Err(
                    "transaction statements are not allowed: ask for one transaction with \
                     the request's `transaction` field"
                        .into(),
                )
            }
            _ => {}
        }
        match lists::operator_role(name) {
            Some(role) => {
                self.require(role);
                if role > Role::Read {
                    self.writes.insert(name.to_string());
                    self.target(node);
                }
                Ok(())
            }
            None => Err(format!(
                "{} statements are not allowed",
                name.replace('_', " ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for role in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn plan_errors_split_into_mistakes_and_refusals() {
        let syntax = r#"{"error":true,"error_type":"parser","error_message":"syntax error at or near \"SELEC\""}"#;
        assert_eq!(judge(syntax, "lake").unwrap_err().code(), "sql_error");
        let missing = r#"{"error":true,"error_type":"catalog","error_message":"Table with name nope does not exist!"}"#;
        assert_eq!(judge(missing, "lake").unwrap_err().code(), "not_found");
        let secret = r#"{"error":true,"error_type":"invalid input","error_message":"Operator 'LOGICAL_CREATE_SECRET' does not support serialization"}"#;
        assert_eq!(
            judge(secret, "lake").unwrap_err().code(),
            "forbidden_statement"
        );
        let csv = r#"{"error":true,"error_type":"not implemented","error_message":"CSVReaderSerialize not implemented"}"#;
        assert_eq!(
            judge(csv, "lake").unwrap_err().code(),
            "forbidden_statement"
        );
    }

    #[test]
    fn operators_functions_and_catalogs_decide_the_role() {
        let plan = |node: &str| format!(r#"{{"error":false,"plans":[{node}]}}"#);
        let scan = r#"{"type":"LOGICAL_GET","children":[],"name":"ducklake_scan","function_data":{"catalog_name":"lake"}}"#;
        assert_eq!(
            judge(&plan(scan), "lake").unwrap(),
            Verdict::Needs(Role::Read)
        );
        let insert = format!(
            r#"{{"type":"LOGICAL_INSERT","children":[{scan}],"table_info":{{"catalog":"lake"}}}}"#
        );
        assert_eq!(
            judge(&plan(&insert), "lake").unwrap(),
            Verdict::Needs(Role::Write)
        );
        let expire = r#"{"type":"LOGICAL_GET","children":[],"name":"ducklake_expire_snapshots"}"#;
        assert_eq!(
            judge(&plan(expire), "lake").unwrap(),
            Verdict::Needs(Role::Admin)
        );
        let metadata = r#"{"type":"LOGICAL_GET","children":[],"name":"seq_scan","function_data":{"catalog":"__ducklake_metadata_lake"}}"#;
        assert!(judge(&plan(metadata), "lake").is_err());
        let other = r#"{"type":"LOGICAL_CREATE_TABLE","children":[],"info":{"catalog":"memory"}}"#;
        assert!(judge(&plan(other), "lake").is_err());
        let setting = r#"{"type":"LOGICAL_PROJECTION","children":[],"expressions":[{"expression_class":"BOUND_FUNCTION","name":"current_setting"}]}"#;
        assert!(judge(&plan(setting), "lake").is_err());
        assert_eq!(
            judge(r#"{"error":false,"plans":[]}"#, "lake").unwrap(),
            Verdict::Empty
        );
        let two = format!(r#"{{"error":false,"plans":[{scan},{scan}]}}"#);
        assert_eq!(judge(&two, "lake").unwrap_err().code(), "invalid_request");
    }

    /// The function list is closed: a name nobody reviewed is refused,
    /// called directly, as an aggregate or as a window's aggregate; DuckDB's
    /// own window functions (node types, no name) pass. A parameter bound
    /// at run time is data.
    #[test]
    fn unreviewed_functions_and_unmatched_parameters_are_refused() {
        let with = |expression: &str| {
            format!(
                r#"{{"error":false,"plans":[{{"type":"LOGICAL_PROJECTION","children":[],"expressions":[{expression}]}}]}}"#
            )
        };
        for class in ["BOUND_FUNCTION", "BOUND_AGGREGATE", "BOUND_WINDOW"] {
            let unreviewed = with(&format!(
                r#"{{"expression_class":"{class}","name":"not_reviewed"}}"#
            ));
            let err = judge(&unreviewed, "lake").unwrap_err();
            assert_eq!(err.code(), "forbidden_statement", "{class}");
            assert!(
                err.to_string()
                    .contains("not_reviewed() is not on the sandbox's reviewed list"),
                "{err}"
            );
            let reviewed = with(&format!(r#"{{"expression_class":"{class}","name":"sum"}}"#));
            assert!(judge(&reviewed, "lake").is_ok(), "{class}");
        }
        let row_number = with(r#"{"expression_class":"BOUND_WINDOW","type":"WINDOW_ROW_NUMBER"}"#);
        assert!(judge(&row_number, "lake").is_ok());
        let parameter = with(r#"{"expression_class":"BOUND_PARAMETER","identifier":"1"}"#);
        assert_eq!(
            judge(&parameter, "lake").unwrap(),
            Verdict::Needs(Role::Read)
        );
    }

    #[test]
    fn the_docs_list_what_each_role_may_run() {
        let readme = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/src/reference/sandbox.md"
        ))
        .expect("the docs beside the crate");
        let table = role_table();
        assert!(
            readme.contains(&table),
            "docs/src/reference/sandbox.md should hold this table, rendered from the \
             sandbox's own lists:\n{table}"
        );
    }
}
