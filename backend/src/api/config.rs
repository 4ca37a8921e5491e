//! `/config/summary` (the effective configuration, secrets redacted, with
//! where each value came from) and `/config/ducklake` (the lake's status).
//! Open for now; admin-only once authentication exists (issue 6).

use crate::api::{
    access::{Administrator, Authorized},
    routes::{serve, Routes},
};
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{api::state::AppState, engine::lake::quote_literal, error::Error};

/// The effective configuration: every setting, secrets as `***`.
#[utoipa::path(get, path = "/config/summary", tag = "ops", responses(
    (status = 200, description = "`{environment, settings: [{key, value, source}]}`; source is default, file <path> or environment <VAR>", content_type = "application/json")
))]
pub async fn summary(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let settings = crate::config::settings(&state.config, &state.config_sources);
    Ok(HttpResponse::Ok().json(json!({
        "environment": state.config.environment,
        "settings": settings,
    })))
}

/// The lake: where its catalog and data are, its options, versions, current
/// snapshot, how many schemas and tables, and whether storage answers.
#[utoipa::path(get, path = "/config/ducklake", tag = "ops", responses(
    (status = 200, description = "The lake's status", content_type = "application/json"),
    (status = 503, description = "catalog_unavailable, storage_unavailable", body = crate::api::error::ErrorResponse)
))]
pub async fn ducklake(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let timeout = Duration::from_millis(state.config.server.ready_timeout_ms);
    let engine = &state.engine;
    let lake = engine.lake();
    let snapshot = engine.current_snapshot(timeout).await?;
    let name = quote_literal(&lake.name);
    let (schemas, tables): (i64, i64) = engine
        .run_blocking(timeout, move |conn| {
            conn.query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM duckdb_schemas() WHERE database_name = {name}), \
                            (SELECT count(*) FROM duckdb_tables() WHERE database_name = {name})"
                ),
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(Error::from_duckdb)
        })
        .await?;
    let storage_reachable = tokio::time::timeout(timeout, state.bucket.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let info = engine.info();
    Ok(HttpResponse::Ok().json(json!({
        "name": lake.name,
        "catalog": { "kind": lake.catalog_kind(), "location": lake.catalog_display() },
        "data_path": lake.data_path(),
        "storage": { "kind": state.bucket.kind(), "reachable": storage_reachable },
        "encrypted": lake.encrypted,
        "data_inlining_row_limit": lake.data_inlining_row_limit,
        "s3_encryption": state.config.features.enable_s3_encryption,
        "duckdb_version": info.duckdb_version,
        "platform": info.platform,
        "extensions": info.extensions.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "snapshot_id": snapshot,
        "schemas": schemas,
        "tables": tables,
    })))
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, summary, ducklake);
}
