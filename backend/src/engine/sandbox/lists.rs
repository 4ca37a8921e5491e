//! The closed lists of the sandbox: which table functions each role may
//! call, and which scalar functions nobody may. Anything not listed is refused.

use super::Role;

/// Table functions a role may call. Everything else is refused by name.
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
];

pub(super) fn table_function(name: &str) -> Result<Role, String> {
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
pub(super) fn scalar_function(name: &str) -> Result<(), String> {
    match name {
        "current_setting" | "getenv" => Err(format!(
            "the function {name}() is not allowed: it reads settings or the environment"
        )),
        _ => Ok(()),
    }
}
