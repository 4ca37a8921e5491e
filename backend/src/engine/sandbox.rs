//! The per-statement half of the SQL sandbox: what a role may run, decided
//! from DuckDB's own bound plan of each statement, never from the SQL text.
//!
//! DuckDB's settings (set once after the lake is attached, see
//! [`super::lake::LakeSpec::lockdown_sql`]) already keep user SQL away from
//! host files, the network, extensions and the configuration. They cannot
//! keep it away from the catalog database DuckLake attaches next to the lake
//! (`__ducklake_metadata_<lake>`), from secrets, from other attached
//! databases or from maintenance. This module closes that gap:
//!
//! 1. the request is cut into statements at the `;` tokens of a SQL
//!    tokenizer (only to know where each statement ends: DuckDB confirms
//!    below that every piece is exactly one statement);
//! 2. each piece is bound and planned by DuckDB (`json_serialize_plan`) on
//!    the connection and in the transaction that then runs it, so the plan
//!    inspected is the plan executed: views and macros are expanded, names
//!    are resolved to their catalog;
//! 3. every operator, table function, scalar function and catalog in that
//!    plan is looked up in the closed lists below. Anything not listed is
//!    refused, including whatever DuckDB cannot serialise (PRAGMA, EXPLAIN,
//!    CREATE SECRET, file readers): the sandbox fails closed.
//!
//! This module must not execute anything: planning only.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlparser::{
    dialect::DuckDbDialect,
    tokenizer::{Token, Tokenizer},
};

use crate::{engine::Params, error::ApiError};

/// What a caller may do, from least to most. Ordered: `Admin` may do all
/// that `Write` may, and so on.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only statements on the lake.
    #[default]
    Read,
    /// DML and DDL in the lake.
    Write,
    /// Maintenance, keys, everyone's jobs.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cuts `sql` into statements at top-level `;` tokens, dropping pieces that
/// hold only whitespace and comments. When the tokenizer cannot read the
/// text (an unterminated string, say) the whole text is one piece and
/// DuckDB's parser reports the problem.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let dialect = DuckDbDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return vec![sql];
    };
    let offsets = LineOffsets::new(sql);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut has_content = false;
    for token in &tokens {
        match &token.token {
            Token::SemiColon => {
                let at = offsets.byte_offset(token.span.start.line, token.span.start.column);
                if has_content {
                    pieces.push(&sql[start..at]);
                }
                start = at + 1;
                has_content = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_content = true,
        }
    }
    if has_content {
        pieces.push(&sql[start..]);
    }
    pieces
}

/// The statement the sandbox inspects when the request carries parameters:
/// `sql` with each placeholder (`?`, `$1`, `$name`) replaced by its value as
/// a SQL literal. The check then sees exactly what will run: a value can
/// change a plan (`query(?)` runs its argument as SQL), so planning with
/// unknown parameters would not do. The statement itself still runs with the
/// values bound, never spliced.
pub fn with_literals<'a>(sql: &'a str, params: &Params) -> Result<Cow<'a, str>, ApiError> {
    if matches!(params, Params::None) {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = DuckDbDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    let offsets = LineOffsets::new(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut next_positional = 0;
    for token in &tokens {
        let Token::Placeholder(name) = &token.token else {
            continue;
        };
        let value = match (params, name.as_str()) {
            (Params::Positional(values), "?") => {
                next_positional += 1;
                values.get(next_positional - 1)
            }
            (Params::Positional(values), numbered) => numbered[1..]
                .parse::<usize>()
                .ok()
                .and_then(|n| values.get(n.checked_sub(1)?)),
            (Params::Named(map), named) => map.get(named.trim_start_matches(['$', ':'])),
            (Params::None, _) => None,
        };
        let Some(value) = value else {
            return Err(ApiError::InvalidParameters(format!(
                "no value given for parameter {name}"
            )));
        };
        let start = offsets.byte_offset(token.span.start.line, token.span.start.column);
        let end = offsets.byte_offset(token.span.end.line, token.span.end.column);
        out.push_str(&sql[copied..start]);
        out.push_str(&sql_literal(value));
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

/// A JSON parameter as the SQL literal of what it binds as (see
/// [`super::query`]: arrays and objects bind as their JSON text).
fn sql_literal(value: &Value) -> String {
    // A NUL cannot sit inside SQL text; chr(0) stands for it.
    let quote = |text: &str| {
        text.split('\0')
            .map(|part| format!("'{}'", part.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" || chr(0) || ")
    };
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// Turns the tokenizer's 1-based line and character column into a byte offset.
struct LineOffsets<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn byte_offset(&self, line: u64, column: u64) -> usize {
        let line_start = self.starts[(line as usize).saturating_sub(1)];
        self.text[line_start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| line_start + i)
    }
}

/// The SQL that asks DuckDB for a statement's bound plan.
pub const PLAN_SQL: &str = "SELECT json_serialize_plan(?::VARCHAR)";

/// What one statement needs, read from its plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to run (only comments).
    Empty,
    /// Runnable by a caller holding at least this role.
    Needs(Role),
}

/// Reads DuckDB's answer to [`PLAN_SQL`] for one statement.
pub fn judge(plan_json: &str, lake: &str) -> Result<Verdict, ApiError> {
    let answer: Value = serde_json::from_str(plan_json)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("unreadable plan from DuckDB: {e}")))?;
    if answer["error"].as_bool() == Some(true) {
        return Err(plan_error(&answer));
    }
    let plans = answer["plans"].as_array().cloned().unwrap_or_default();
    match plans.len() {
        0 => Ok(Verdict::Empty),
        1 => {
            let mut inspector = Inspector {
                lake,
                metadata: format!("__ducklake_metadata_{lake}"),
                needs: Role::Read,
            };
            inspector.walk(&plans[0]).map_err(ApiError::Forbidden)?;
            Ok(Verdict::Needs(inspector.needs))
        }
        _ => Err(ApiError::InvalidRequest(
            "could not tell where one statement ends and the next begins; \
             separate statements with `;`"
                .into(),
        )),
    }
}

/// DuckDB could not plan the statement: a mistake in the SQL (answered as
/// DuckDB words it), or a statement the sandbox cannot see into (refused).
fn plan_error(answer: &Value) -> ApiError {
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
            "PIVOT statements are not available; write the query with GROUP BY".to_string()
        } else {
            format!("the statement uses something the sandbox does not allow ({message})")
        };
        return ApiError::Forbidden(what);
    }
    let kind = title_case(kind);
    ApiError::from_duckdb_message(format!("{kind} Error: {message}"))
}

fn title_case(kind: &str) -> String {
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
    metadata: String,
    needs: Role,
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
                    if class == "BOUND_FUNCTION" || class == "BOUND_AGGREGATE" {
                        let name = map.get("name").and_then(Value::as_str).unwrap_or("");
                        scalar_function(name)?;
                    }
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

    fn catalog(&self, catalog: &str) -> Result<(), String> {
        if catalog.is_empty() || catalog == self.lake || catalog == "system" {
            return Ok(());
        }
        if catalog == self.metadata {
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
            "PROJECTION"
            | "FILTER"
            | "AGGREGATE_AND_GROUP_BY"
            | "WINDOW"
            | "UNNEST"
            | "LIMIT"
            | "ORDER_BY"
            | "TOP_N"
            | "DISTINCT"
            | "SAMPLE"
            | "PIVOT"
            | "CHUNK_GET"
            | "DELIM_GET"
            | "EXPRESSION_GET"
            | "DUMMY_SCAN"
            | "EMPTY_RESULT"
            | "CTE_REF"
            | "JOIN"
            | "DELIM_JOIN"
            | "COMPARISON_JOIN"
            | "ANY_JOIN"
            | "CROSS_PRODUCT"
            | "POSITIONAL_JOIN"
            | "ASOF_JOIN"
            | "DEPENDENT_JOIN"
            | "UNION"
            | "EXCEPT"
            | "INTERSECT"
            | "RECURSIVE_CTE"
            | "MATERIALIZED_CTE" => Ok(()),
            "GET" => {
                let function = node.get("name").and_then(Value::as_str).unwrap_or("");
                let role = table_function(function)?;
                self.require(role);
                Ok(())
            }
            "INSERT" | "DELETE" | "UPDATE" | "MERGE_INTO" | "CREATE_TABLE" | "CREATE_INDEX"
            | "CREATE_SEQUENCE" | "CREATE_SCHEMA" | "CREATE_VIEW" | "CREATE_MACRO"
            | "CREATE_TYPE" | "ALTER" => {
                self.require(Role::Write);
                Ok(())
            }
            "DROP" => {
                if node["info"]["type"].as_str() == Some("SECRET_ENTRY") {
                    return Err("DROP SECRET is not allowed".into());
                }
                self.require(Role::Write);
                Ok(())
            }
            "VACUUM" => {
                self.require(Role::Admin);
                Ok(())
            }
            "ATTACH" | "DETACH" => Err(format!(
                "{} is not allowed: requests use the lake `{}` and no other database",
                name, self.lake
            )),
            "SET" | "RESET" => Err(format!(
                "{name} is not allowed: settings (including USE) cannot be changed"
            )),
            "LOAD" | "UPDATE_EXTENSIONS" => {
                Err("extensions cannot be installed, loaded or updated".into())
            }
            "COPY_TO_FILE" | "COPY_DATABASE" | "EXPORT" => Err(format!(
                "{} is not allowed: files outside the lake cannot be written",
                name.replace('_', " ")
            )),
            "TRANSACTION" => Err(
                "transaction statements are not allowed: ask for one transaction with the \
                 request's `transaction` field"
                    .into(),
            ),
            other => Err(format!(
                "{} statements are not allowed",
                other.replace('_', " ")
            )),
        }
    }
}

/// Table functions a role may call. Everything else is refused by name.
fn table_function(name: &str) -> Result<Role, String> {
    const READ: &[&str] = &[
        "ducklake_scan",
        "ducklake_snapshots",
        "ducklake_table_info",
        "ducklake_table_insertions",
        "ducklake_table_deletions",
        "ducklake_list_files",
        "ducklake_current_snapshot",
        "ducklake_last_committed_snapshot",
        "ducklake_options",
        "ducklake_settings",
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "repeat",
        "repeat_row",
        "summary",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_functions",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_schemas",
        "duckdb_sequences",
        "duckdb_tables",
        "duckdb_types",
        "duckdb_views",
        "duckdb_databases",
        "pragma_table_info",
        "pragma_show",
        "pragma_version",
        "pragma_platform",
        "pragma_collations",
        "pg_timezone_names",
        "icu_calendar_names",
    ];
    const WRITE: &[&str] = &["ducklake_set_commit_message", "ducklake_commit"];
    const ADMIN: &[&str] = &[
        "checkpoint",
        "force_checkpoint",
        "ducklake_add_data_files",
        "ducklake_cleanup_old_files",
        "ducklake_delete_orphaned_files",
        "ducklake_expire_snapshots",
        "ducklake_flush_inlined_data",
        "ducklake_merge_adjacent_files",
        "ducklake_rewrite_data_files",
        "ducklake_set_option",
    ];
    if READ.contains(&name) {
        return Ok(Role::Read);
    }
    if WRITE.contains(&name) {
        return Ok(Role::Write);
    }
    if ADMIN.contains(&name) {
        return Ok(Role::Admin);
    }
    let reason = if name.starts_with("postgres") || name.starts_with("pg_") {
        "it reaches the catalog database directly"
    } else if name.starts_with("read_")
        || name.starts_with("parquet_")
        || matches!(name, "glob" | "sniff_csv" | "seq_scan")
    {
        "it reads data outside the lake"
    } else if name.contains("secret") || name.contains("setting") {
        "it reads secrets or settings"
    } else {
        "it is not available to requests"
    };
    Err(format!(
        "the table function {name}() is not allowed: {reason}"
    ))
}

/// Scalar functions that read the service's settings or environment.
fn scalar_function(name: &str) -> Result<(), String> {
    match name {
        "current_setting" | "getenv" => Err(format!(
            "the function {name}() is not allowed: it reads settings or the environment"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "SELECT 'a;b'; -- c;d\nSELECT \"x;y\" FROM t; /* ; */ ;  SELECT $$;$$";
        assert_eq!(
            split_statements(sql),
            vec![
                "SELECT 'a;b'",
                " -- c;d\nSELECT \"x;y\" FROM t",
                "  SELECT $$;$$"
            ]
        );
        assert!(split_statements("  -- nothing\n ; ;").is_empty());
        assert_eq!(split_statements("SELECT 'é;ü'; SELECT 2").len(), 2);
    }

    #[test]
    fn parameters_become_literals_for_the_check() {
        let positional = Params::Positional(vec![
            serde_json::json!(1),
            serde_json::json!("it's"),
            serde_json::json!([1, 2]),
            serde_json::json!(null),
        ]);
        assert_eq!(
            with_literals("SELECT ?, ? FROM t WHERE a = ? AND b IS ?", &positional).unwrap(),
            "SELECT 1, 'it''s' FROM t WHERE a = '[1,2]' AND b IS NULL"
        );
        assert_eq!(
            with_literals("SELECT $2, $1", &positional).unwrap(),
            "SELECT 'it''s', 1"
        );
        let named = Params::Named(
            serde_json::json!({"min": 2.5, "q": "SELECT 1"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            with_literals("SELECT * FROM query($q) WHERE x > $min -- $nope", &named).unwrap(),
            "SELECT * FROM query('SELECT 1') WHERE x > 2.5 -- $nope"
        );
        assert_eq!(
            with_literals("SELECT '?', $missing", &named)
                .unwrap_err()
                .code(),
            "invalid_parameters"
        );
        assert_eq!(
            with_literals("SELECT ?", &Params::None).unwrap(),
            "SELECT ?"
        );
    }

    #[test]
    fn unreadable_text_is_one_piece() {
        assert_eq!(
            split_statements("SELECT 'open; SELECT 2"),
            vec!["SELECT 'open; SELECT 2"]
        );
    }

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
}
