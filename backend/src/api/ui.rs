//! The web console at `/ui`: a few static files (plain HTML, CSS and ES
//! modules from `assets/ui`) compiled into the binary, so it works offline
//! and ships with the service. It talks to the public API only, like any
//! other client; these routes need no key (the page asks for one when the API
//! answers 401) and are left out of the OpenAPI document.
//!
//! Every answer carries a strict Content-Security-Policy (no inline script or
//! style, nothing from elsewhere). The files are revalidated on each load
//! (`no-cache` with a strong ETag of their content), so a new binary is never
//! shadowed by a stale cached module.

use crate::api::{
    access::Open,
    routes::{serve_files, Routes},
};
use actix_web::{http::header, web, HttpRequest, HttpResponse};

use crate::error::Error;

/// `default-src 'self'` and nothing inline; blob: for result downloads and
/// the chart images, data: for the favicon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../assets/ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("grid.js", JS),
    asset!("results.js", JS),
    asset!("sidebar.js", JS),
    asset!("panels.js", JS),
    asset!("charts.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Whether `path` is one of the console's routes (for the 405 answer).
pub fn is_console_path(path: &str) -> bool {
    path == "/ui"
        || path
            .strip_prefix("/ui/")
            .is_some_and(|name| name.is_empty() || ASSETS.iter().any(|a| a.name == name))
}

/// The console page.
#[utoipa::path(method(get, head), path = "/ui", tag = "ui")]
pub async fn console_page(_: Open, req: HttpRequest) -> Result<HttpResponse, Error> {
    serve(&req, "index.html")
}

/// The console's files.
#[utoipa::path(method(get, head), path = "/ui/{name}", tag = "ui")]
pub async fn console_asset(
    _: Open,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, Error> {
    serve(&req, &name)
}

/// `/ui/` (an empty last segment does not match `{name}`).
#[utoipa::path(method(get, head), path = "/ui/", tag = "ui")]
pub async fn console_index(_: Open, req: HttpRequest) -> Result<HttpResponse, Error> {
    serve(&req, "index.html")
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, Error> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::RouteNotFound(format!("no console file {name:?}")))?;
    let etag = etag(asset);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut res = with_policy(if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    });
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res.content_type(asset.content_type).body(asset.body))
}

fn with_policy(mut res: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    res.insert_header(("content-security-policy", CONTENT_SECURITY_POLICY))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("x-frame-options", "DENY"));
    res
}

/// A strong ETag from the file's SHA-256 (computed once per file).
fn etag(asset: &Asset) -> String {
    use sha2::Digest;
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = sha2::Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("the asset is one of ASSETS");
    tags[index].clone()
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve_files!(routes, console_page, console_index, console_asset);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_paths_are_the_page_and_its_files() {
        assert!(is_console_path("/ui"));
        assert!(is_console_path("/ui/"));
        assert!(is_console_path("/ui/app.js"));
        assert!(!is_console_path("/ui/nothing.js"));
        assert!(!is_console_path("/uix"));
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit("\"./")
                    .next()
                    .and_then(|rest| rest.split('"').next())
                    .expect("import from \"./file.js\"");
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} imports {target}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("<style"));
    }
}
