//! The HTTP API: routes, shared state, and how request-shape errors become
//! [`Error`]s. Handlers are thin: parse, call the engine, encode.

pub mod audit;
pub mod config;
pub mod docs;
pub mod error;
pub mod guard;
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

use crate::{
    config::Config, engine::Engine, error::Error, role::Role, storage::Storage, store::Store,
};

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
    /// The audit trail's queue.
    pub audit: crate::audit::Audit,
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
        Error::InvalidParameters(format!("invalid query string: {err}")).into()
    }))
    .app_data(
        web::PathConfig::default().error_handler(|err, _req| {
            Error::InvalidParameters(format!("invalid path: {err}")).into()
        }),
    )
    .configure(register_routes)
    .default_service(web::to(route_not_found));
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a key: probes, metrics, the API document and
    /// the console's files.
    Open,
    /// A key holding at least this role. The query and job endpoints need at
    /// least this; the statement may need more (see the sandbox).
    AtLeast(Role),
}

/// One route the API serves, as registered.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
    pub access: Access,
}

fn route<P: utoipa::Path>(access: Access) -> Vec<Route> {
    use utoipa::openapi::path::HttpMethod;
    P::methods()
        .into_iter()
        .map(|method| Route {
            method: match method {
                HttpMethod::Get => "GET",
                HttpMethod::Post => "POST",
                HttpMethod::Put => "PUT",
                HttpMethod::Delete => "DELETE",
                HttpMethod::Options => "OPTIONS",
                HttpMethod::Head => "HEAD",
                HttpMethod::Patch => "PATCH",
                HttpMethod::Trace => "TRACE",
            },
            path: P::path(),
            access,
        })
        .collect()
}

/// Registers every route and lists it with who may call it, from one list:
/// a route cannot be served without being in [`routes`], which the role
/// tests walk. Each entry names the handler, whose `#[utoipa::path]` knows
/// its method and path.
macro_rules! routes {
    ($($module:ident :: $handler:ident => $access:expr,)*) => {
        fn register_routes(cfg: &mut web::ServiceConfig) {
            $(cfg.service($module::$handler);)*
        }

        /// Every route the API serves, with who may call it.
        pub fn routes() -> Vec<Route> {
            use Access::*;
            use Role::*;
            [$(route::<$module::$handler>($access)),*].concat()
        }
    };
}

routes! {
    health::health => Open,
    health::ready => Open,
    query::query => AtLeast(Read),
    query::query_get => AtLeast(Read),
    storage::list_objects => AtLeast(Read),
    lake::list_schemas => AtLeast(Read),
    lake::create_schema => AtLeast(Write),
    lake::drop_schema => AtLeast(Write),
    lake::list_tables => AtLeast(Read),
    lake::table_changes => AtLeast(Read),
    lake::describe_table => AtLeast(Read),
    lake::list_snapshots => AtLeast(Read),
    ingest::ingest => AtLeast(Write),
    maintenance::compact => AtLeast(Admin),
    maintenance::expire => AtLeast(Admin),
    maintenance::cleanup => AtLeast(Admin),
    maintenance::lake_usage => AtLeast(Admin),
    keys::create => AtLeast(Admin),
    keys::list => AtLeast(Admin),
    keys::revoke => AtLeast(Admin),
    audit::list => AtLeast(Admin),
    jobs::submit => AtLeast(Read),
    jobs::list => AtLeast(Read),
    jobs::get => AtLeast(Read),
    jobs::result => AtLeast(Read),
    jobs::cancel => AtLeast(Read),
    metrics::prometheus => Open,
    metrics::memory => AtLeast(Read),
    metrics::performance => AtLeast(Admin),
    config::summary => AtLeast(Admin),
    config::ducklake => AtLeast(Admin),
    docs::openapi_json => Open,
    docs::docs_page => Open,
    docs::docs_js => Open,
    docs::docs_css => Open,
    ui::console_page => Open,
    ui::console_index => Open,
    ui::console_asset => Open,
}

/// The audit recorder for one request: its caller (known once the
/// [`Caller`](crate::auth::Caller) extractor ran) and request id.
pub fn trail(req: &HttpRequest) -> Option<crate::audit::Trail> {
    use actix_web::HttpMessage;
    let state = req.app_data::<web::Data<AppState>>()?;
    let extensions = req.extensions();
    let caller = extensions.get::<crate::auth::Caller>()?;
    Some(
        state.audit.trail(crate::audit::Actor {
            key_prefix: caller.prefix.clone(),
            owner: caller.owner.clone(),
            request_id: extensions
                .get::<crate::telemetry::RequestId>()
                .map(|id| id.0.clone()),
        }),
    )
}

/// Records how an audited action of a request that changes the lake
/// ended: ok with the snapshot it created, or failed with the error's code.
pub fn audit_change(req: &HttpRequest, action: &str, target: &str, result: &Result<i64, Error>) {
    let Some(trail) = trail(req) else { return };
    let event = match result {
        Ok(snapshot) => trail
            .event(action, crate::audit::Outcome::Ok)
            .snapshot(Some(*snapshot)),
        Err(err) => trail
            .event(action, crate::audit::Outcome::Failed)
            .detail("error", err.code()),
    };
    trail.record(event.target(target));
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => Error::UnsupportedMediaType(
            "the request body must be JSON (Content-Type: application/json)".into(),
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => Error::PayloadTooLarge(format!(
            "the request body is larger than the limit of {limit} bytes"
        )),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            Error::InvalidParameters(format!("invalid request: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            Error::InvalidRequest(format!("the request body is not valid JSON: {e}"))
        }
        other => Error::InvalidRequest(format!("could not read the request body: {other}")),
    };
    api.into()
}

/// 405 for a known path with another method, else 404.
async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, Error> {
    let message = format!("no route for {} {}", req.method(), req.path());
    if docs::documented_path(req.path()) || ui::is_console_path(req.path()) {
        return Err(Error::MethodNotAllowed(message));
    }
    Err(Error::RouteNotFound(message))
}
