//! Cross-site and DNS-rebinding protection, in front of every route.
//!
//! A browser lets any web page send "simple" requests (a form POST, a
//! `fetch` with `Content-Type: text/plain`) to any address, the service on
//! the user's own loopback included, and a DNS name re-pointed at 127.0.0.1
//! makes a hostile page same-origin with it. So, as Jupyter and Ollama do:
//!
//! - **Host allowlist.** With authentication off (every caller is an
//!   admin), a request must address the service by a name it answers to:
//!   the bind address, `localhost`, `127.0.0.1`, `[::1]`, or one of
//!   `server.allowed_hosts`. A rebound name is refused (403
//!   `host_not_allowed`). With authentication on it is checked only when
//!   `server.allowed_hosts` is set (a key, which no page has, is the guard).
//! - **Origin check.** A request that carries an `Origin` (browsers send it
//!   on every cross-origin request and every non-GET one) must come from
//!   the service's own origin (the console at `/ui`) or one of
//!   `server.cors_origins`; any other origin is refused on every method but
//!   GET and HEAD (403 `origin_not_allowed`), whatever the content type, so
//!   no endpoint that reads a raw body (ingest) can be written to from a
//!   page. Reads from other origins get no CORS headers, so the page cannot
//!   see the answer.
//! - **CORS** for the configured origins: their preflights are answered,
//!   and their responses carry `Access-Control-Allow-Origin`.
//!
//! actix-cors is not used: it answers a disallowed origin with a plain-text
//! 400 on every method (GET included) and has no notion of the same-origin
//! console, where this contract is a JSON 403 on writes only.

use actix_web::{
    body::{BoxBody, EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderValue},
        Method,
    },
    middleware::Next,
    web, HttpResponse,
};

use crate::{config::Config, error::Error};

/// The methods a page on another origin may use (those the API has).
const CORS_METHODS: &str = "GET, HEAD, POST, DELETE";
/// The request headers a configured origin may send.
const CORS_HEADERS: &str =
    "authorization, content-type, accept, accept-encoding, if-none-match, x-request-id";
/// Response headers a page may read besides the CORS-safelisted ones.
const CORS_EXPOSE: &str = "etag, x-request-id, x-ducklake-snapshot, x-row-count, \
                           x-result-truncated, x-result-streamed, location, retry-after";

/// What the guard lets through, from the configuration.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Host names (lowercase, IPv6 in brackets) requests may address;
    /// `None` when the Host is not checked.
    hosts: Option<Vec<String>>,
    /// Origins (`scheme://host[:port]`, lowercase) allowed cross-origin.
    origins: Vec<String>,
}

/// Comma- or space-separated entries, trimmed, without empties.
fn entries(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
}

impl Guard {
    pub fn from_config(config: &Config) -> Self {
        let configured: Vec<String> = entries(&config.server.allowed_hosts).collect();
        let hosts = if !config.auth.enabled || !configured.is_empty() {
            let bind = config.server.host.to_ascii_lowercase();
            let bind = if bind.contains(':') && !bind.starts_with('[') {
                format!("[{bind}]")
            } else {
                bind
            };
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
                .into_iter()
                .map(String::from)
                .chain([bind])
                .chain(configured)
                .collect();
            hosts.sort();
            hosts.dedup();
            Some(hosts)
        } else {
            None
        };
        let origins = entries(&config.server.cors_origins)
            .map(|o| o.trim_end_matches('/').to_string())
            .collect();
        Self { hosts, origins }
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        host.map(host_name)
            .is_some_and(|name| hosts.contains(&name))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

/// The name part of a Host header (no port), lowercase; IPv6 keeps its
/// brackets.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host[..=end].to_string(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host,
    }
}

/// `Origin` names the service itself: its authority is the Host the
/// request was sent to (the console, served from the same address).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some(authority), Some(host)) = (origin.split_once("://").map(|(_, a)| a), host) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    authority == host
        || authority
            .strip_suffix(":80")
            .or_else(|| authority.strip_suffix(":443"))
            .is_some_and(|a| a == host)
}

/// The middleware: refuses what the guard does not let through, answers
/// preflights, and adds CORS headers for the configured origins.
pub async fn guard<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, BoxBody>>, actix_web::Error> {
    let Some(guard) = req.app_data::<web::Data<Guard>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let refuse = |req: ServiceRequest, err: Error| {
        let res = req.error_response(err);
        Ok(res.map_into_boxed_body().map_into_right_body())
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if !guard.host_allowed(host.as_deref()) {
        let shown = host.as_deref().unwrap_or("(none)").to_string();
        tracing::warn!(host = %shown, "request refused: Host not allowed");
        return refuse(
            req,
            Error::HostNotAllowed(format!(
                "the Host {shown:?} is not one this service answers to; add it to \
                 server.allowed_hosts (SERVER_ALLOWED_HOSTS) if it is yours"
            )),
        );
    }
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null").trim().to_ascii_lowercase())
    else {
        // Not sent by a browser page (or a same-origin GET).
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let origin = origin.trim_end_matches('/').to_string();
    let configured = guard.origin_allowed(&origin);
    let own = same_origin(&origin, host.as_deref());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !configured {
            return refuse(req, origin_refused(&origin));
        }
        let res = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(res).map_into_right_body());
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !(configured || own || reads) {
        tracing::warn!(%origin, method = %req.method(), path = %req.path(), "request refused: cross-origin");
        return refuse(req, origin_refused(&origin));
    }
    let mut res = next.call(req).await?;
    if configured {
        let headers = res.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSE),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(res.map_into_left_body())
}

fn origin_refused(origin: &str) -> Error {
    Error::OriginNotAllowed(format!(
        "requests from the web origin {origin:?} are not allowed to change anything here; \
         add it to server.cors_origins (SERVER_CORS_ORIGINS) if it is yours"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth: bool, host: &str, hosts: &str, origins: &str) -> Config {
        let mut config = Config::load_from(None, &[]).unwrap().config;
        config.auth.enabled = auth;
        config.server.host = host.into();
        config.server.allowed_hosts = hosts.into();
        config.server.cors_origins = origins.into();
        config
    }

    #[test]
    fn hosts_are_the_loopback_names_the_bind_address_and_the_configured() {
        let guard = Guard::from_config(&config(false, "127.0.0.1", "lake.internal", ""));
        for host in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "lake.internal:80",
        ] {
            assert!(guard.host_allowed(Some(host)), "{host}");
        }
        for host in [
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "",
            "localhost.:8000",
        ] {
            assert!(!guard.host_allowed(Some(host)), "{host}");
        }
        assert!(!guard.host_allowed(None));
        let v6 = Guard::from_config(&config(false, "::1", "", ""));
        assert!(v6.host_allowed(Some("[::1]:9000")));
        // With keys, any Host unless a list is set.
        assert!(
            Guard::from_config(&config(true, "0.0.0.0", "", "")).host_allowed(Some("x.example"))
        );
        let listed = Guard::from_config(&config(true, "0.0.0.0", "lake.example.com", ""));
        assert!(listed.host_allowed(Some("lake.example.com")));
        assert!(!listed.host_allowed(Some("x.example")));
    }

    #[test]
    fn the_same_origin_is_the_host_it_was_sent_to() {
        assert!(same_origin("http://127.0.0.1:8000", Some("127.0.0.1:8000")));
        assert!(same_origin("http://lake.example", Some("lake.example")));
        assert!(same_origin(
            "https://lake.example:443",
            Some("lake.example")
        ));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:8000")));
        assert!(!same_origin("null", Some("127.0.0.1:8000")));
        assert!(!same_origin(
            "http://127.0.0.1:8001",
            Some("127.0.0.1:8000")
        ));
        let guard = Guard::from_config(&config(
            false,
            "127.0.0.1",
            "",
            "https://app.example/, http://localhost:3000",
        ));
        assert!(guard.origin_allowed("https://app.example"));
        assert!(guard.origin_allowed("http://localhost:3000"));
        assert!(!guard.origin_allowed("http://localhost:3001"));
    }
}
