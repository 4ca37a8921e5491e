//! The lake as REST resources: schemas, tables, snapshots and a table's
//! change feed. Reads need the read role, creating and dropping schemas the
//! write role. Names in paths are any text: they are bound or quoted, never
//! spliced into SQL.

use crate::api::{
    access::{Authorized, Reader, Writer},
    routes::{serve, Routes},
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::{
    api::{query, state::AppState},
    engine::{
        catalog::{
            decode_cursor, validate_name, Page, SchemaEntry, SnapshotEntry, TableDetail,
            TableEntry, TableFilter,
        },
        lake::quote_literal,
        stream::TransactionMode,
        QueryRequest,
    },
    error::Error,
};

use super::answer::SNAPSHOT_HEADER;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn limit(requested: Option<usize>) -> Result<usize, Error> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(Error::InvalidParameters("limit must be at least 1".into())),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SchemaListParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only schemas whose name starts with this.
    pub prefix: Option<String>,
}

/// The lake's schemas, by name.
#[utoipa::path(get, path = "/api/v1/schemas", tag = "lake", params(SchemaListParams), responses(
    (status = 200, body = Page<SchemaEntry>),
    (status = 422, description = "invalid_parameters (bad limit or cursor)", body = crate::api::error::ErrorResponse),
))]
pub async fn list_schemas(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
    params: web::Query<SchemaListParams>,
) -> Result<HttpResponse, Error> {
    let params = params.into_inner();
    let limit = limit(params.limit)?;
    let after = params
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, 1).map(|mut key| key.remove(0)))
        .transpose()?;
    let page = state
        .engine
        .list_schemas(limit, after, params.prefix)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchema {
    pub name: String,
}

/// What a schema change did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaChange {
    pub name: String,
    /// The snapshot the change created.
    pub snapshot: i64,
}

/// Create a schema (write role).
#[utoipa::path(post, path = "/api/v1/schemas", tag = "lake", request_body = CreateSchema, responses(
    (status = 201, body = SchemaChange),
    (status = 409, description = "already_exists", body = crate::api::error::ErrorResponse),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
))]
pub async fn create_schema(
    caller: Authorized<Writer>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateSchema>,
) -> Result<HttpResponse, Error> {
    let name = body.into_inner().name;
    validate_name("schema", &name)?;
    let snapshot = state.engine.create_schema(name.clone()).await;
    crate::api::trail::audit_change(&req, "schema.create", &name, &snapshot);
    let snapshot = snapshot?;
    tracing::info!(key = %caller.prefix, snapshot, "schema created");
    Ok(HttpResponse::Created()
        .insert_header((SNAPSHOT_HEADER, snapshot.to_string()))
        .json(SchemaChange { name, snapshot }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DropSchemaParams {
    /// Drop the schema's tables and views too; without it a schema that
    /// holds tables answers 409 `not_empty`.
    #[serde(default)]
    pub cascade: bool,
}

/// Drop a schema (write role).
#[utoipa::path(delete, path = "/api/v1/schemas/{schema}", tag = "lake", params(("schema" = String, Path), DropSchemaParams), responses(
    (status = 200, body = SchemaChange),
    (status = 403, description = "forbidden_statement (the default schema main)", body = crate::api::error::ErrorResponse),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
    (status = 409, description = "not_empty", body = crate::api::error::ErrorResponse),
))]
pub async fn drop_schema(
    caller: Authorized<Writer>,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<DropSchemaParams>,
) -> Result<HttpResponse, Error> {
    let name = path.into_inner();
    validate_name("schema", &name)?;
    let snapshot = state.engine.drop_schema(name.clone(), params.cascade).await;
    crate::api::trail::audit_change(&req, "schema.drop", &name, &snapshot);
    let snapshot = snapshot?;
    tracing::info!(key = %caller.prefix, snapshot, "schema dropped");
    Ok(HttpResponse::Ok()
        .insert_header((SNAPSHOT_HEADER, snapshot.to_string()))
        .json(SchemaChange { name, snapshot }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TableListParams {
    /// Only tables in this schema.
    pub schema: Option<String>,
    /// Only tables whose name starts with this.
    pub prefix: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The lake's tables, by schema and name, with their size and last change.
#[utoipa::path(get, path = "/api/v1/tables", tag = "lake", params(TableListParams), responses(
    (status = 200, body = Page<TableEntry>),
    (status = 422, description = "invalid_parameters (bad limit or cursor)", body = crate::api::error::ErrorResponse),
))]
pub async fn list_tables(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
    params: web::Query<TableListParams>,
) -> Result<HttpResponse, Error> {
    let params = params.into_inner();
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c, 2).map(|mut key| {
                let table = key.pop().unwrap_or_default();
                (key.pop().unwrap_or_default(), table)
            })
        })
        .transpose()?;
    let page = state
        .engine
        .list_tables(TableFilter {
            schema: params.schema,
            prefix: params.prefix,
            limit: limit(params.limit)?,
            after,
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One table: columns with types, nullability and DuckLake's statistics,
/// partitioning, size and last change.
#[utoipa::path(get, path = "/api/v1/tables/{schema}/{table}", tag = "lake", params(("schema" = String, Path), ("table" = String, Path)), responses(
    (status = 200, body = TableDetail),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
))]
pub async fn describe_table(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (schema, table) = path.into_inner();
    validate_name("schema", &schema)?;
    validate_name("table", &table)?;
    let detail = state.engine.describe_table(schema, table).await?;
    Ok(HttpResponse::Ok()
        .insert_header((SNAPSHOT_HEADER, detail.snapshot.to_string()))
        .json(detail))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotListParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The lake's history, newest first: each snapshot's time, schema version and
/// what it changed.
#[utoipa::path(get, path = "/api/v1/snapshots", tag = "lake", params(SnapshotListParams), responses(
    (status = 200, body = Page<SnapshotEntry>),
))]
pub async fn list_snapshots(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
    params: web::Query<SnapshotListParams>,
) -> Result<HttpResponse, Error> {
    let params = params.into_inner();
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c, 1)?[0].parse::<i64>().map_err(|_| {
                Error::InvalidParameters("cursor is not one this service gave out".into())
            })
        })
        .transpose()?;
    let page = state
        .engine
        .list_snapshots(limit(params.limit)?, before)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// First snapshot of the range (inclusive; default 0).
    pub from: Option<i64>,
    /// Last snapshot of the range (inclusive; default the current one).
    pub to: Option<i64>,
    /// Result format, as for the query endpoint.
    pub format: Option<String>,
    pub max_rows: Option<u64>,
}

/// DuckLake's change feed of a table between two snapshots: each changed
/// row with `snapshot_id`, `rowid`, `change_type` (insert, delete,
/// update_preimage, update_postimage) and its columns, in any query format.
#[utoipa::path(get, path = "/api/v1/tables/{schema}/{table}/changes", tag = "lake", params(("schema" = String, Path), ("table" = String, Path), ChangesParams),
    responses(crate::api::answer::QueryResponses))]
pub async fn table_changes(
    caller: Authorized<Reader>,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    params: web::Query<ChangesParams>,
) -> Result<HttpResponse, Error> {
    let (schema, table) = path.into_inner();
    validate_name("schema", &schema)?;
    validate_name("table", &table)?;
    let params = params.into_inner();
    let current = state
        .engine
        .table_exists(schema.clone(), table.clone())
        .await?;
    let from = params.from.unwrap_or(0);
    let to = params.to.unwrap_or(current);
    if from < 0 || to < from {
        return Err(Error::InvalidParameters(format!(
            "the snapshot range from={from} to={to} is empty or negative"
        )));
    }
    if to > current {
        return Err(Error::InvalidParameters(format!(
            "to={to} is after the lake's current snapshot {current}"
        )));
    }
    let lake = &state.engine.lake().name;
    let sql = format!(
        "SELECT * FROM ducklake_table_changes({}, {}, {}, {from}, {to}) ORDER BY snapshot_id, rowid, change_type",
        quote_literal(lake),
        quote_literal(&schema),
        quote_literal(&table),
    );
    let format = query::negotiate(params.format.as_deref(), &req)?;
    let request = QueryRequest {
        sql,
        max_rows: params.max_rows,
        role: caller.role,
        audit: crate::api::trail::trail(&req),
        ..QueryRequest::default()
    };
    let mut response =
        query::run(&state, &caller, request, format, TransactionMode::ReadOnly).await?;
    response.headers_mut().insert(
        header::HeaderName::from_static(SNAPSHOT_HEADER),
        header::HeaderValue::from(to),
    );
    Ok(response)
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(
        routes,
        list_schemas,
        create_schema,
        drop_schema,
        list_tables,
        table_changes,
        describe_table,
        list_snapshots
    );
}
