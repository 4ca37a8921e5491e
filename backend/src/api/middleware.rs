//! The request middleware: one span per request with its request id (also
//! returned to the client in `X-Request-Id`), one log line and the request
//! metrics when it ends, and while draining the refusal of everything but
//! the probes and the scrape.

use std::time::Instant;

use actix_web::{
    body::{BoxBody, EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    HttpMessage,
};
use tracing::Instrument;

use super::state::AppState;
use crate::auth::Caller;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions for handlers (the audit trail).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts a client's request id if it is short and printable, else makes one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Middleware: one span per request, one log line when it ends.
/// While draining, everything but the probes and the scrape is refused.
fn refused_while_draining(req: &ServiceRequest) -> bool {
    let draining = req
        .app_data::<actix_web::web::Data<AppState>>()
        .is_some_and(|state| state.draining.load(std::sync::atomic::Ordering::SeqCst));
    draining && !matches!(req.path(), "/health" | "/ready" | "/metrics")
}

pub async fn log_request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, BoxBody>>, actix_web::Error> {
    let id = request_id(&req);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = Instant::now();
    req.extensions_mut().insert(RequestId(id.clone()));
    if refused_while_draining(&req) {
        let err = crate::error::Error::ShuttingDown(
            "the service is shutting down; retry on another replica".into(),
        );
        let mut res = req.error_response(err);
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        span.in_scope(|| tracing::info!(status = 503, "request refused: draining"));
        return Ok(res.map_into_boxed_body().map_into_right_body());
    }
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let key = res
        .request()
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.prefix.clone());
    span.in_scope(|| tracing::info!(status, route, elapsed_ms, key, "request finished"));
    if let Some(state) = res.request().app_data::<actix_web::web::Data<AppState>>() {
        if state.config.features.enable_performance_tracking {
            state.performance.record_request(
                &route,
                res.request().method().as_str(),
                started.elapsed(),
                status >= 500,
            );
        }
        if state.config.features.enable_prometheus_metrics {
            let method = match res.request().method().as_str() {
                m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
                _ => "other",
            }
            .to_string();
            let metrics = &state.metrics;
            metrics
                .http_requests
                .with_label_values(&[
                    route.as_str(),
                    method.as_str(),
                    crate::metrics::status_class(status),
                ])
                .inc();
            metrics
                .http_duration
                .with_label_values(&[route.as_str(), method.as_str()])
                .observe(elapsed_ms / 1000.0);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(res.map_into_left_body())
}
