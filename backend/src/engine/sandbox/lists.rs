//! The closed lists of the sandbox: which table functions each role may
//! call, and which scalar functions nobody may. Anything not listed is refused.

use crate::role::Role;

/// Table functions whose rows depend on their arguments (and on the plan
/// beneath them) alone, never on the state of the lake or the database: a
/// read from them is as current as the lake tables it also reads.
pub(super) const FIXED_SOURCES: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "repeat",
    "repeat_row",
    "summary",
    "test_all_types",
];

/// Table functions by the lowest role that may call them. Everything else
/// is refused by name.
pub(super) const TABLE_FUNCTIONS: &[(Role, &[&str])] = &[
    (
        Role::Read,
        &[
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
            "test_all_types",
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
            "pragma_table_info",
            "pragma_show",
            "pragma_version",
            "pragma_platform",
            "pragma_collations",
            "pg_timezone_names",
            "icu_calendar_names",
        ],
    ),
    (
        Role::Write,
        &["ducklake_set_commit_message", "ducklake_commit"],
    ),
    (
        Role::Admin,
        &[
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
        ],
    ),
];

/// A kind of statement a role may run: what users call it, and the
/// operators of DuckDB's logical plan it consists of. The sandbox's
/// operator check reads this table, and the docs' table of what each
/// role may run is rendered from it ([`role_table`]).
pub(super) struct StatementKind {
    pub role: Role,
    pub what: &'static str,
    pub operators: &'static [&'static str],
}

pub(super) const STATEMENTS: &[StatementKind] = &[
    StatementKind {
        role: Role::Read,
        what: "queries: `SELECT`, `VALUES`, `WITH [RECURSIVE]`, `PIVOT`/`UNPIVOT`, \
               `SHOW`/`DESCRIBE`/`SUMMARIZE`, time travel (`AT (VERSION => …)`)",
        operators: &[
            "PROJECTION",
            "FILTER",
            "AGGREGATE_AND_GROUP_BY",
            "WINDOW",
            "UNNEST",
            "LIMIT",
            "ORDER_BY",
            "TOP_N",
            "DISTINCT",
            "SAMPLE",
            "PIVOT",
            "CHUNK_GET",
            "DELIM_GET",
            "EXPRESSION_GET",
            "DUMMY_SCAN",
            "EMPTY_RESULT",
            "CTE_REF",
            "JOIN",
            "DELIM_JOIN",
            "COMPARISON_JOIN",
            "ANY_JOIN",
            "CROSS_PRODUCT",
            "POSITIONAL_JOIN",
            "ASOF_JOIN",
            "DEPENDENT_JOIN",
            "UNION",
            "EXCEPT",
            "INTERSECT",
            "RECURSIVE_CTE",
            "MATERIALIZED_CTE",
            "GET",
        ],
    },
    StatementKind {
        role: Role::Write,
        what: "`INSERT`, `UPDATE`, `DELETE`, `MERGE INTO`",
        operators: &["INSERT", "DELETE", "UPDATE", "MERGE_INTO"],
    },
    StatementKind {
        role: Role::Write,
        what: "`CREATE`, `ALTER` and `DROP` of schemas, tables, views, macros, types, \
               sequences and indexes in the lake (not of the schema `main`, not of secrets)",
        operators: &[
            "CREATE_TABLE",
            "CREATE_INDEX",
            "CREATE_SEQUENCE",
            "CREATE_SCHEMA",
            "CREATE_VIEW",
            "CREATE_MACRO",
            "CREATE_TYPE",
            "ALTER",
            "DROP",
        ],
    },
    StatementKind {
        role: Role::Admin,
        what: "`VACUUM`",
        operators: &["VACUUM"],
    },
];

/// The role a plan operator (its name without `LOGICAL_`) needs, when one
/// may run it at all.
pub(super) fn operator_role(name: &str) -> Option<Role> {
    STATEMENTS
        .iter()
        .find(|kind| kind.operators.contains(&name))
        .map(|kind| kind.role)
}

/// The docs' table of what each role may run, rendered from
/// [`STATEMENTS`] and [`TABLE_FUNCTIONS`].
pub fn role_table() -> String {
    let mut out = String::from("| Role | Statements | Table functions |\n|---|---|---|\n");
    for (i, role) in [Role::Read, Role::Write, Role::Admin]
        .into_iter()
        .enumerate()
    {
        let plus = if i == 0 { "" } else { "+ " };
        let statements: Vec<&str> = STATEMENTS
            .iter()
            .filter(|kind| kind.role == role)
            .map(|kind| kind.what)
            .collect();
        let functions: Vec<String> = TABLE_FUNCTIONS
            .iter()
            .filter(|(r, _)| *r == role)
            .flat_map(|(_, names)| names.iter().map(|n| format!("`{n}`")))
            .collect();
        out.push_str(&format!(
            "| `{role}` | {plus}{} | {plus}{} |\n",
            statements.join("; "),
            functions.join(", ")
        ));
    }
    out
}

pub(super) fn table_function(name: &str) -> Result<Role, String> {
    if let Some((role, _)) = TABLE_FUNCTIONS
        .iter()
        .find(|(_, names)| names.contains(&name))
    {
        return Ok(*role);
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
/// A reviewed function's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Allowed; its answer depends on its arguments alone.
    Allow,
    /// Allowed; its answer varies between runs at the same lake snapshot.
    AllowVaries,
    /// Refused, with why.
    Refuse(&'static str),
}

/// The reviewed scalar and aggregate functions ([`FUNCTIONS_TSV`]) by name.
fn reviewed_functions() -> &'static std::collections::HashMap<&'static str, Verdict> {
    static REVIEWED: std::sync::OnceLock<std::collections::HashMap<&'static str, Verdict>> =
        std::sync::OnceLock::new();
    REVIEWED.get_or_init(|| {
        FUNCTIONS_TSV
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split('\t');
                let name = fields.next().unwrap_or_default();
                let _kind = fields.next();
                let verdict = match fields.next() {
                    Some("allow") => Verdict::Allow,
                    Some("allow-varies") => Verdict::AllowVaries,
                    _ => Verdict::Refuse(fields.next().unwrap_or("it is refused")),
                };
                (name, verdict)
            })
            .collect()
    })
}

/// The reviewed list of scalar and aggregate functions, kept as data.
pub const FUNCTIONS_TSV: &str = include_str!("functions.tsv");

/// Names of the reviewed functions, with whether they are allowed (for
/// the test that compares them with the linked DuckDB's).
pub fn reviewed_function_names() -> impl Iterator<Item = (&'static str, bool)> {
    reviewed_functions()
        .iter()
        .map(|(name, verdict)| (*name, !matches!(verdict, Verdict::Refuse(_))))
}

/// Whether a function was reviewed as deterministic: its answer depends on
/// its arguments alone (and the lake snapshot it reads), so a read calling
/// it may be revalidated and kept. Anything else, a name nobody reviewed
/// included, is not.
pub fn is_deterministic(name: &str) -> bool {
    reviewed_functions().get(name) == Some(&Verdict::Allow)
}

/// A scalar or aggregate function may be called only when it is on the
/// reviewed list as allowed: anything else, a function nobody reviewed
/// included, is refused.
pub(super) fn scalar_function(name: &str) -> Result<(), String> {
    match reviewed_functions().get(name) {
        Some(Verdict::Allow | Verdict::AllowVaries) => Ok(()),
        Some(Verdict::Refuse(why)) => Err(format!("the function {name}() is not allowed: {why}")),
        None => Err(format!(
            "the function {name}() is not on the sandbox's reviewed list of functions"
        )),
    }
}
