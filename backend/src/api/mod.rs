//! The HTTP API: routes, shared state, and how request-shape errors become
//! [`ApiError`]s. Handlers are thin: parse, call the engine, encode.

pub mod config;
pub mod docs;
pub mod health;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod lake;
pub mod maintenance;
pub mod metrics;
pub mod query;
pub mod storage;
pub mod ui;

use std::sync::Arc;

use actix_web::{error::JsonPayloadError, web, HttpRequest, HttpResponse};

use crate::{config::Config, engine::Engine, error::ApiError, storage::Storage, store::Store};

/// Everything handlers share, behind `web::Data`.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// Our own tables (and, with PostgreSQL, the catalog readiness check).
    pub store: Store,
    /// The lake's data path as an object store.
    pub storage: Arc<Storage>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// dotted config key → "default" | "file <path>" | "environment VAR"
    pub config_sources: Arc<std::collections::BTreeMap<String, String>>,
    pub performance: Arc<crate::performance::Tracker>,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Set on SIGTERM: /ready answers 503 and new requests are refused.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Async query jobs.
    pub jobs: Arc<crate::jobs::Jobs>,
}

/// Registers every route; used by the server and by tests alike.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(json_error),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::InvalidParameters(format!("invalid query string: {err}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _req| {
        ApiError::InvalidParameters(format!("invalid path: {err}")).into()
    }))
    .service(health::health)
    .service(health::ready)
    .service(query::query)
    .service(query::query_get)
    .service(storage::list_objects)
    .service(lake::list_schemas)
    .service(lake::create_schema)
    .service(lake::drop_schema)
    .service(lake::list_tables)
    .service(lake::table_changes)
    .service(lake::describe_table)
    .service(lake::list_snapshots)
    .service(ingest::ingest)
    .service(maintenance::compact)
    .service(maintenance::expire)
    .service(maintenance::cleanup)
    .service(maintenance::lake_usage)
    .service(keys::create)
    .service(keys::list)
    .service(keys::revoke)
    .service(jobs::submit)
    .service(jobs::list)
    .service(jobs::get)
    .service(jobs::result)
    .service(jobs::cancel)
    .service(metrics::prometheus)
    .service(metrics::memory)
    .service(metrics::performance)
    .service(config::summary)
    .service(config::ducklake)
    .service(docs::openapi_json)
    .service(docs::docs_page)
    .service(docs::docs_js)
    .service(docs::docs_css)
    .service(ui::console_page)
    .service(ui::console_index)
    .service(ui::console_asset)
    .default_service(web::to(route_not_found));
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "the request body must be JSON (Content-Type: application/json)".into(),
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::InvalidParameters(format!("invalid request: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::InvalidRequest(format!("the request body is not valid JSON: {e}"))
        }
        other => ApiError::InvalidRequest(format!("could not read the request body: {other}")),
    };
    api.into()
}

/// 405 for a known path with another method, else 404.
async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let message = format!("no route for {} {}", req.method(), req.path());
    if docs::documented_path(req.path()) || ui::is_console_path(req.path()) {
        return Err(ApiError::MethodNotAllowed(message));
    }
    Err(ApiError::RouteNotFound(message))
}
