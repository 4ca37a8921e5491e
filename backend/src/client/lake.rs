//! `client tables | describe | schemas | snapshots | health`: the lake's
//! listings, every page followed through `next_cursor` (or up to
//! `--limit`), as a table or as one JSON array.

use std::io::{self, IsTerminal};

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{
    connection::Api,
    connection::{check, read_json},
    failure::Failure,
    ingest::split_table,
    output::{cell, print_json, print_text, table},
};

/// Paging and output flags of the listings.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many entries [default: all].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Entries per request (1-1000).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub page_size: u16,
    /// One JSON array of the API's entries instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Every entry of a paged list: pages of `items_key`, following
/// `next_cursor` until the last page or `limit`.
pub fn collect_pages(
    api: &Api,
    segments: &[&str],
    filters: &[(&str, String)],
    items_key: &str,
    list: &ListArgs,
) -> Result<Vec<Value>, Failure> {
    let page_size = usize::from(list.page_size);
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = list
            .limit
            .map_or(page_size, |limit| (limit - items.len()).min(page_size));
        if wanted == 0 {
            break;
        }
        let mut query = filters.to_vec();
        query.push(("limit", wanted.to_string()));
        if let Some(cursor) = cursor.take() {
            query.push(("cursor", cursor));
        }
        let mut page: Value = api.get_json(segments, &query)?;
        if let Some(Value::Array(page_items)) = page.get_mut(items_key).map(Value::take) {
            items.extend(page_items);
        }
        match page["next_cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(items)
}

/// A listing's column: its title, how to show an entry's cell, right-aligned.
pub type Column<'a> = (&'a str, &'a dyn Fn(&Value) -> String, bool);

/// Prints entries as a JSON array or a table of `columns`.
pub fn print_list(items: &[Value], json: bool, columns: &[Column]) -> Result<(), Failure> {
    if json {
        return print_json(&items);
    }
    let header: Vec<&str> = columns.iter().map(|(title, _, _)| *title).collect();
    let right: Vec<bool> = columns.iter().map(|(_, _, right)| *right).collect();
    let rows = items
        .iter()
        .map(|item| columns.iter().map(|(_, field, _)| field(item)).collect())
        .collect();
    print_text(&table(&header, rows, &right, io::stdout().is_terminal()))
}

fn field(name: &'static str) -> impl Fn(&Value) -> String {
    move |item| cell(&item[name])
}

#[derive(Debug, Args)]
pub struct TablesArgs {
    /// Only tables of this schema.
    #[arg(long)]
    pub schema: Option<String>,
    /// Only tables whose name starts with this.
    #[arg(long)]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

pub fn tables(api: &Api, args: TablesArgs) -> Result<(), Failure> {
    let mut filters = Vec::new();
    if let Some(schema) = args.schema {
        filters.push(("schema", schema));
    }
    if let Some(prefix) = args.prefix {
        filters.push(("prefix", prefix));
    }
    let items = collect_pages(api, &["api", "v1", "tables"], &filters, "items", &args.list)?;
    print_list(
        &items,
        args.list.json,
        &[
            ("SCHEMA", &field("schema"), false),
            ("TABLE", &field("name"), false),
            ("ROWS", &field("row_count"), true),
            ("FILES", &field("data_file_count"), true),
            ("BYTES", &field("size_bytes"), true),
            ("DELETE FILES", &field("delete_file_count"), true),
            ("LAST CHANGE", &field("last_change_snapshot"), true),
        ],
    )
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `schema.table`, or `table` in `main`.
    pub table: String,
    /// The API's JSON instead of a table of columns.
    #[arg(long)]
    pub json: bool,
}

pub fn describe(api: &Api, args: DescribeArgs) -> Result<(), Failure> {
    let (schema, name) = split_table(&args.table);
    let detail: Value = api.get_json(&["api", "v1", "tables", schema, name], &[])?;
    if args.json {
        return print_json(&detail);
    }
    print_text(&format!(
        "{schema}.{name}: {} rows in {} files ({} bytes), last changed in snapshot {}\n",
        detail["row_count"],
        detail["data_file_count"],
        detail["size_bytes"],
        detail["last_change_snapshot"]
    ))?;
    let columns = detail["columns"].as_array().cloned().unwrap_or_default();
    let stat = |name: &'static str| move |c: &Value| cell(&c["stats"][name]);
    print_list(
        &columns,
        false,
        &[
            ("COLUMN", &field("name"), false),
            ("TYPE", &field("type"), false),
            ("NULLABLE", &field("nullable"), false),
            ("DEFAULT", &field("default"), false),
            ("MIN", &stat("min"), false),
            ("MAX", &stat("max"), false),
        ],
    )
}

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// Only schemas whose name starts with this.
    #[arg(long)]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

pub fn schemas(api: &Api, args: SchemasArgs) -> Result<(), Failure> {
    let filters: Vec<(&str, String)> = args.prefix.into_iter().map(|p| ("prefix", p)).collect();
    let items = collect_pages(
        api,
        &["api", "v1", "schemas"],
        &filters,
        "items",
        &args.list,
    )?;
    print_list(
        &items,
        args.list.json,
        &[
            ("SCHEMA", &field("name"), false),
            ("TABLES", &field("table_count"), true),
            ("CREATED SNAPSHOT", &field("created_snapshot"), true),
        ],
    )
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub list: ListArgs,
}

pub fn snapshots(api: &Api, args: SnapshotsArgs) -> Result<(), Failure> {
    let items = collect_pages(api, &["api", "v1", "snapshots"], &[], "items", &args.list)?;
    print_list(
        &items,
        args.list.json,
        &[
            ("SNAPSHOT", &field("id"), true),
            ("TIME", &field("time"), false),
            ("SCHEMA VERSION", &field("schema_version"), true),
            ("CHANGES", &field("changes"), false),
            ("AUTHOR", &field("author"), false),
            ("MESSAGE", &field("commit_message"), false),
        ],
    )
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries of this action (statement, ingest, key.create, key.revoke,
    /// schema.create, schema.drop, maintenance.compact ...).
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries of the key with this visible prefix.
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Only entries with this outcome.
    #[arg(long, value_parser = ["ok", "refused", "failed"])]
    pub outcome: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

/// The audit trail, newest first (admin key).
pub fn audit(api: &Api, args: AuditArgs) -> Result<(), Failure> {
    let mut filters = Vec::new();
    if let Some(action) = args.action {
        filters.push(("action", action));
    }
    if let Some(prefix) = args.key_prefix {
        filters.push(("key", prefix));
    }
    if let Some(outcome) = args.outcome {
        filters.push(("outcome", outcome));
    }
    let items = collect_pages(api, &["api", "v1", "audit"], &filters, "items", &args.list)?;
    let what = |item: &Value| {
        let detail = &item["detail"];
        let text = detail["sql"]
            .as_str()
            .or_else(|| detail["reason"].as_str())
            .unwrap_or_default();
        text.chars().take(80).collect::<String>()
    };
    print_list(
        &items,
        args.list.json,
        &[
            ("ID", &field("id"), true),
            ("TIME", &field("occurred_at"), false),
            ("KEY", &field("key_prefix"), false),
            ("ACTION", &field("action"), false),
            ("TARGET", &field("target"), false),
            ("OUTCOME", &field("outcome"), false),
            ("SNAPSHOT", &field("snapshot"), true),
            ("STATEMENT", &what, false),
        ],
    )
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// `{"health": .., "ready": ..}` as the service answered them.
    #[arg(long)]
    pub json: bool,
}

/// `/health`, then `/ready` (which answers 503 with its report when a
/// dependency is down: exit 3, after printing it).
pub fn health(api: &Api, args: HealthArgs) -> Result<(), Failure> {
    let health: Value = api.get_json(&["health"], &[])?;
    let response = api
        .request(Method::GET, &["ready"])
        .send()
        .map_err(|err| api.transport_failure(&err))?;
    let ready: Value = if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        read_json(response)?
    } else {
        read_json(check(response)?)?
    };
    let is_ready = ready["status"] == "ready";
    if args.json {
        print_json(&serde_json::json!({ "health": health, "ready": ready }))?;
    } else {
        print_text(&format!(
            "{} {} at {}: {}\n",
            cell(&health["service"]),
            cell(&health["version"]),
            api.url(&[]).as_str().trim_end_matches('/'),
            cell(&ready["status"])
        ))?;
        let components: Vec<Value> = ready["components"]
            .as_object()
            .map(|c| {
                c.iter()
                    .map(|(name, detail)| {
                        let mut detail = detail.clone();
                        detail["name"] = name.clone().into();
                        detail
                    })
                    .collect()
            })
            .unwrap_or_default();
        let latency = |c: &Value| format!("{:.1} ms", c["latency_ms"].as_f64().unwrap_or(0.0));
        let problem = |c: &Value| match &c["error"] {
            Value::Null => String::new(),
            error => format!("{}: {}", cell(&c["code"]), cell(error)),
        };
        print_list(
            &components,
            false,
            &[
                ("COMPONENT", &field("name"), false),
                ("STATUS", &field("status"), false),
                ("LATENCY", &latency, true),
                ("ERROR", &problem, false),
            ],
        )?;
    }
    if is_ready {
        Ok(())
    } else {
        Err(Failure::Service(format!(
            "the service is not ready ({})",
            cell(&ready["status"])
        )))
    }
}
