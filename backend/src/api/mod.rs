//! The HTTP API: routes, request guards and how the core's answers and
//! errors become HTTP. Handlers are thin: they state who may call them
//! (their first argument, see [`access`]), parse the request, call one
//! service of the core, and encode the answer. Nothing below this module
//! knows HTTP.

pub mod access;
pub mod answer;
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
pub mod middleware;
pub mod query;
pub mod routes;
pub mod state;
pub mod storage;
pub mod trail;
pub mod ui;

use actix_web::{error::JsonPayloadError, web, HttpRequest, HttpResponse};

pub use access::Access;
pub use routes::Route;
pub use state::AppState;
pub use trail::{audit_change, trail};

use crate::error::Error;

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
    );
    let mut routes = routes::Routes::serving(cfg);
    register(&mut routes);
    let table = web::Data::new(routes::RouteTable::new(routes.into_table()));
    cfg.app_data(table)
        .default_service(web::to(route_not_found));
}

/// Every module's routes, in the order they match.
fn register(routes: &mut routes::Routes) {
    health::configure(routes);
    query::configure(routes);
    storage::configure(routes);
    lake::configure(routes);
    ingest::configure(routes);
    maintenance::configure(routes);
    keys::configure(routes);
    audit::configure(routes);
    jobs::configure(routes);
    metrics::configure(routes);
    config::configure(routes);
    docs::configure(routes);
    ui::configure(routes);
}

/// Every route the API serves, with who may call it: the table the
/// registration above builds (the role tests and the docs walk it).
pub fn routes() -> Vec<Route> {
    let mut routes = routes::Routes::listing();
    register(&mut routes);
    routes.into_table()
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
async fn route_not_found(
    req: HttpRequest,
    table: web::Data<routes::RouteTable>,
) -> Result<HttpResponse, Error> {
    let message = format!("no route for {} {}", req.method(), req.path());
    if table.serves_path(req.path()) || ui::is_console_path(req.path()) {
        return Err(Error::MethodNotAllowed(message));
    }
    Err(Error::RouteNotFound(message))
}
