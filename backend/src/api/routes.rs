//! The route table: each api module registers its handlers through
//! [`Routes`], which serves them, lists them with who may call them (read
//! off each handler's first argument, see [`super::access`]) and collects
//! their OpenAPI operations (from each handler's `#[utoipa::path]`, which
//! names its method and path). So what is served, what the role tests walk
//! and what the document describes are one list.

use actix_web::{guard, http::Method, web, FromRequest, Handler, Responder};
use utoipa::openapi::{
    path::{HttpMethod, Operation},
    RefOr, Schema,
};

use super::access::{Access, HandlerAccess};

/// Adds the schemas an operation refers to, by name.
pub type SchemaReferences = fn(&mut Vec<(String, RefOr<Schema>)>);

/// One route the API serves, as registered.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
    pub access: Access,
    /// Its operation in the API document; None for the files of the
    /// console and of the docs page.
    pub operation: Option<fn() -> Operation>,
    /// The schemas its operation refers to (request and response bodies,
    /// generic pages), for the document's components.
    pub schemas: Option<SchemaReferences>,
}

/// The routes as registered, in the app's data for the handlers that
/// describe them (the API document, the 405 of a known path).
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// Whether `path` is a path the API serves (templates like `{id}`
    /// match any one segment).
    pub fn serves_path(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes.iter().any(|route| {
            let parts: Vec<&str> = route.path.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
    }
}

/// Registers handlers: onto the app's service config when serving, or only
/// into the table when listing.
pub struct Routes<'a> {
    cfg: Option<&'a mut web::ServiceConfig>,
    table: Vec<Route>,
}

impl<'a> Routes<'a> {
    pub fn serving(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg: Some(cfg),
            table: Vec::new(),
        }
    }

    pub fn listing() -> Self {
        Self {
            cfg: None,
            table: Vec::new(),
        }
    }

    pub fn into_table(self) -> Vec<Route> {
        self.table
    }

    /// Serves `handler` at the method and path of its `#[utoipa::path]`
    /// (`P`, the struct utoipa makes for it), and documents it.
    pub fn add<P, F, Args>(&mut self, handler: F)
    where
        P: utoipa::Path + for<'t> utoipa::__dev::Tags<'t> + utoipa::__dev::SchemaReferences,
        F: Handler<Args>,
        Args: FromRequest + HandlerAccess + 'static,
        F::Output: Responder + 'static,
    {
        self.register::<P, F, Args>(
            handler,
            Some(tagged_operation::<P>),
            Some(<P as utoipa::__dev::SchemaReferences>::schemas),
        );
    }

    /// [`Routes::add`] for a file of the console or the docs page: served,
    /// listed, not in the API document.
    pub fn add_file<P, F, Args>(&mut self, handler: F)
    where
        P: utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + HandlerAccess + 'static,
        F::Output: Responder + 'static,
    {
        self.register::<P, F, Args>(handler, None, None);
    }

    fn register<P, F, Args>(
        &mut self,
        handler: F,
        operation: Option<fn() -> Operation>,
        schemas: Option<SchemaReferences>,
    ) where
        P: utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + HandlerAccess + 'static,
        F::Output: Responder + 'static,
    {
        let path = P::path();
        for method in P::methods() {
            let name = method_name(&method);
            let method = Method::from_bytes(name.as_bytes()).expect("a standard method name");
            self.table.push(Route {
                method: name,
                path: path.clone(),
                access: Args::ACCESS,
                operation,
                schemas,
            });
            if let Some(cfg) = self.cfg.as_deref_mut() {
                // The method is a guard of the resource (as actix's own
                // route macros make it), so another method on the same path
                // falls through to the next resource and, at the end, to
                // the 405 of `route_not_found`.
                cfg.service(
                    web::resource(path.as_str())
                        .guard(guard::Method(method))
                        .to(handler.clone()),
                );
            }
        }
    }
}

/// The handler's operation with its tags. utoipa keeps a path's tags and
/// referenced schemas apart (`#[openapi(paths(...))]` adds them, through
/// its `__dev` traits); we add them the same way, utoipa 5 being pinned.
fn tagged_operation<P>() -> Operation
where
    P: utoipa::Path + for<'t> utoipa::__dev::Tags<'t>,
{
    let mut operation = P::operation();
    operation
        .tags
        .get_or_insert_with(Vec::new)
        .extend(P::tags().iter().map(ToString::to_string));
    operation
}

/// Each method's name and the API document's value for it: one table, read
/// both ways (registration names the document's method, the document reads
/// the route's name).
const METHODS: [(&str, HttpMethod); 8] = [
    ("GET", HttpMethod::Get),
    ("POST", HttpMethod::Post),
    ("PUT", HttpMethod::Put),
    ("DELETE", HttpMethod::Delete),
    ("OPTIONS", HttpMethod::Options),
    ("HEAD", HttpMethod::Head),
    ("PATCH", HttpMethod::Patch),
    ("TRACE", HttpMethod::Trace),
];

fn method_name(method: &HttpMethod) -> &'static str {
    METHODS
        .iter()
        .find(|(_, m)| m == method)
        .map(|(name, _)| *name)
        .expect("every HttpMethod is in METHODS")
}

/// The document's value for a route's method name.
pub fn doc_method(name: &str) -> HttpMethod {
    METHODS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m.clone())
        .expect("a route's method is in METHODS")
}

/// Registers handlers by name: `serve!(routes, list, create)` adds each
/// with the `#[utoipa::path]` struct utoipa generated for it.
macro_rules! serve {
    ($routes:expr, $($handler:ident),+ $(,)?) => {
        paste::paste! { $( $routes.add::<[<__path_ $handler>], _, _>($handler); )+ }
    };
}

/// [`serve!`] for files: served and listed, not documented.
macro_rules! serve_files {
    ($routes:expr, $($handler:ident),+ $(,)?) => {
        paste::paste! { $( $routes.add_file::<[<__path_ $handler>], _, _>($handler); )+ }
    };
}

pub(crate) use {serve, serve_files};

#[cfg(test)]
mod tests {
    use super::RouteTable;

    #[test]
    fn served_paths_match_templates_segment_by_segment() {
        let table = RouteTable::new(crate::api::routes());
        let served = |path| table.serves_path(path);
        assert!(served("/api/v1/query"));
        assert!(served("/api/v1/keys/dlk_abc"));
        assert!(served(
            "/api/v1/jobs/0fc5ed6c-2b5d-4d8e-9c2a-5b4e1e6f7a8b/result"
        ));
        assert!(served("/health"));
        assert!(served("/docs/swagger-ui.css"));
        assert!(!served("/api/v1/keys/"));
        assert!(!served("/api/v1/keys/a/b"));
        assert!(!served("/api/v1/nothing"));
    }
}
