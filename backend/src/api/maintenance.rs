//! `/api/v1/maintenance/*` (admin): DuckLake's maintenance with a report of
//! the lake's files and bytes before and after, or a dry run.

use crate::api::{
    access::{Administrator, Authorized},
    routes::{serve, Routes},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use crate::{
    api::{answer::SNAPSHOT_HEADER, state::AppState},
    engine::{catalog::validate_name, maintenance::ExpireWhat},
    error::Error,
    maintenance::{LakeUsage, Report},
};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactBody {
    /// Only this table (with `table`); every table when absent.
    pub schema: Option<String>,
    pub table: Option<String>,
    /// Report the tables and small files a merge would take; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireBody {
    /// Expire snapshots older than this many seconds.
    pub older_than_secs: Option<u64>,
    /// Expire every snapshot before this id. One of the two is required;
    /// the current snapshot is never expired.
    pub before_snapshot: Option<i64>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    /// Only files scheduled for deletion at least this many seconds ago
    /// (default: all scheduled files).
    pub older_than_secs: Option<u64>,
    /// Also delete files under the data path that no snapshot references
    /// (left by failed writes) and that are older than
    /// `orphans_older_than_secs` (default 3600: younger ones may belong to
    /// a transaction still writing).
    #[serde(default)]
    pub orphans: bool,
    pub orphans_older_than_secs: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

fn seconds_ago(secs: u64) -> Result<chrono::DateTime<Utc>, Error> {
    i64::try_from(secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .ok_or_else(|| Error::InvalidParameters(format!("{secs} seconds is too long ago")))
}

/// The report, with the lake's snapshot after the operation (a merge or an
/// expiry commits one).
async fn respond<T: serde::Serialize>(
    state: &AppState,
    report: Report<T>,
) -> Result<HttpResponse, Error> {
    let snapshot = state
        .engine
        .current_snapshot(std::time::Duration::from_secs(5))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((SNAPSHOT_HEADER, snapshot.to_string()))
        .json(report))
}

/// Merge adjacent small files (admin).
#[utoipa::path(post, path = "/api/v1/maintenance/compact", tag = "maintenance", request_body = CompactBody, responses(
    (status = 200, description = "Report: before/after usage and, per table, files processed and created (dry run: small files that would be merged)"),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
))]
pub async fn compact(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<CompactBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let table = match (body.schema, body.table) {
        (Some(schema), Some(table)) => {
            validate_name("schema", &schema)?;
            validate_name("table", &table)?;
            state
                .engine
                .table_exists(schema.clone(), table.clone())
                .await?;
            Some((schema, table))
        }
        (None, None) => None,
        _ => {
            return Err(Error::InvalidParameters(
                "give both schema and table, or neither".into(),
            ))
        }
    };
    let engine = &state.engine;
    let report = state
        .maintenance
        .measured(
            crate::api::trail::trail(&req),
            "compact",
            body.dry_run,
            engine.compact(table, body.dry_run),
        )
        .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Expire old snapshots (admin): time travel to them ends, and the files
/// only they needed are scheduled for deletion.
#[utoipa::path(post, path = "/api/v1/maintenance/expire", tag = "maintenance", request_body = ExpireBody, responses(
    (status = 200, description = "Report: before/after usage and the snapshots expired (dry run: that would be)"),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
))]
pub async fn expire(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<ExpireBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let what = match (body.older_than_secs, body.before_snapshot) {
        (Some(secs), None) => ExpireWhat::OlderThan(seconds_ago(secs)?),
        (None, Some(id)) => ExpireWhat::Before(id),
        _ => {
            return Err(Error::InvalidParameters(
                "give older_than_secs or before_snapshot (one of them)".into(),
            ))
        }
    };
    let engine = &state.engine;
    let report = state
        .maintenance
        .measured(
            crate::api::trail::trail(&req),
            "expire",
            body.dry_run,
            engine.expire_snapshots(what, body.dry_run),
        )
        .await?;
    respond(&state, report).await
}

/// Delete files no snapshot needs (admin).
#[utoipa::path(post, path = "/api/v1/maintenance/cleanup", tag = "maintenance", request_body = CleanupBody, responses(
    (status = 200, description = "Report: before/after usage and the paths deleted (dry run: that would be)"),
))]
pub async fn cleanup(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<CleanupBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let older = body.older_than_secs.map(seconds_ago).transpose()?;
    let orphans = if body.orphans {
        Some(seconds_ago(body.orphans_older_than_secs.unwrap_or(3600))?)
    } else {
        None
    };
    let engine = &state.engine;
    let report = state
        .maintenance
        .measured(
            crate::api::trail::trail(&req),
            "cleanup",
            body.dry_run,
            engine.cleanup_files(older, orphans, body.dry_run),
        )
        .await?;
    respond(&state, report).await
}

/// The lake's files and bytes, as the catalog and the object store see them (admin).
#[utoipa::path(get, path = "/api/v1/maintenance/usage", tag = "maintenance", responses(
    (status = 200, body = LakeUsage),
))]
pub async fn lake_usage(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(state.maintenance.usage().await?))
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, compact, expire, cleanup, lake_usage);
}
