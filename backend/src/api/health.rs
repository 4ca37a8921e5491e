//! Liveness and readiness probes. Both stay unauthenticated: they are for
//! orchestrators.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::{api::AppState, error::ApiError};

/// How long readiness waits for the lake to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process serves HTTP.
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "service": "ducklake-backend",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: the lake is attached and answers a trivial query in time.
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    state
        .engine
        .ping(READY_TIMEOUT)
        .await
        .map_err(|e| match e {
            ApiError::QueryTimeout(_) => ApiError::Unavailable(format!(
                "the lake did not answer within {} ms",
                READY_TIMEOUT.as_millis()
            )),
            e @ (ApiError::Unavailable(_)
            | ApiError::CatalogUnavailable(_)
            | ApiError::StorageUnavailable(_)) => e,
            other => ApiError::Unavailable(format!("the lake is not usable: {other}")),
        })?;
    let lake = state.engine.lake();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "lake": lake.name,
        "catalog": lake.catalog_kind(),
        "data_path": lake.data_path(),
        "check_ms": started.elapsed().as_secs_f64() * 1000.0,
    })))
}
