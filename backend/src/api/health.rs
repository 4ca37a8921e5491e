//! Liveness and readiness probes. Both stay unauthenticated: they are for
//! orchestrators.
//!
//! `/ready` checks each dependency on its own, concurrently, each under
//! `server.ready_timeout_ms`, and names each one's state and latency:
//! - `catalog`: the catalog database answers (PostgreSQL through our pool, or
//!   the local catalog file and store),
//! - `storage`: the object store lists the data path,
//! - `lake`: DuckDB reads the lake's current snapshot through DuckLake.
//!
//! Anyone may ask, so anyone learns only each dependency's status, latency
//! and, when down, its stable error code. Where it lives (hosts, buckets,
//! paths), its connections and the error's own words go to the log and to
//! callers holding an admin key (every caller, with authentication off).

use crate::api::{
    access::Open,
    routes::{serve, Routes},
};
use std::{future::Future, time::Duration, time::Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use crate::{api::state::AppState, engine::lake::CatalogLocation, error::Error};

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "ops", security(()), responses((status = 200, description = "`{status: ok, service, version}`", content_type = "application/json")))]
pub async fn health(_: Open) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "service": "ducklake-backend",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Debug, Serialize)]
pub struct Component {
    pub status: &'static str,
    pub latency_ms: f64,
    #[serde(flatten)]
    pub detail: serde_json::Value,
}

/// Runs one check under `timeout`: "up" with its details, or "down" with why.
async fn check<F>(timeout: Duration, work: F) -> Component
where
    F: Future<Output = Result<serde_json::Value, Error>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, work).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(Ok(detail)) => Component {
            status: "up",
            latency_ms,
            detail,
        },
        Ok(Err(err)) => {
            tracing::warn!(code = err.code(), error = %err, "readiness check failed");
            Component {
                status: "down",
                latency_ms,
                detail: json!({ "code": err.code(), "error": err.to_string() }),
            }
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "readiness check timed out"
            );
            Component {
                status: "down",
                latency_ms,
                detail: json!({
                    "code": "timeout",
                    "error": format!("no answer within {} ms", timeout.as_millis()),
                }),
            }
        }
    }
}

/// Readiness: 200 when every dependency is up, else 503; the body names each.
#[utoipa::path(get, path = "/ready", tag = "ops", security(()), responses(
    (status = 200, description = "`{status: ready, components: {catalog, storage, lake, flight}}`, each with status and latency_ms (flight while Flight SQL is on)", content_type = "application/json"),
    (status = 503, description = "`{status: not_ready, components: ...}`: at least one component is down", content_type = "application/json")
))]
pub async fn ready(_: Open, state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "draining",
            "components": {},
        }));
    }
    let ([catalog, storage, lake_component], flight) =
        tokio::join!(check_all(&state), check_flight(&state));
    let ready = [&catalog, &storage, &lake_component]
        .into_iter()
        .chain(flight.as_ref())
        .all(|c| c.status == "up");
    let detailed = admin_asks(&state, &req).await;
    let view = |c: Component| {
        if detailed {
            return serde_json::to_value(c).unwrap_or_default();
        }
        let mut brief = json!({ "status": c.status, "latency_ms": c.latency_ms });
        if let Some(code) = c.detail.get("code").filter(|_| c.status == "down") {
            brief["code"] = code.clone();
        }
        brief
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "components": {
            "catalog": view(catalog),
            "storage": view(storage),
            "lake": view(lake_component),
        },
    });
    if let Some(flight) = flight {
        body["components"]["flight"] = view(flight);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether the caller may see where dependencies live and why they fail:
/// an admin key (or authentication off, where every caller is an admin).
/// A missing or wrong key is no error here: it gets the brief answer.
async fn admin_asks(state: &AppState, req: &HttpRequest) -> bool {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.config.auth.enabled && header.is_none() {
        return false;
    }
    matches!(
        state.auth.authenticate(header).await,
        Ok(caller) if caller.role == crate::role::Role::Admin
    )
}

/// The Flight SQL listener, when it is on: its server task still serves,
/// and its port accepts a connection.
async fn check_flight(state: &AppState) -> Option<Component> {
    let listener = state.flight.as_ref()?;
    let timeout = Duration::from_millis(state.config.server.ready_timeout_ms);
    Some(
        check(timeout, async {
            if !listener.serving.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Unavailable(
                    "the Flight SQL server is not serving".into(),
                ));
            }
            let mut address = listener.address;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            tokio::net::TcpStream::connect(address).await.map_err(|e| {
                Error::Unavailable(format!("the Flight SQL port {address} refuses: {e}"))
            })?;
            Ok(json!({
                "port": listener.address.port(),
                "tls": state.config.flight.tls_cert.is_some(),
            }))
        })
        .await,
    )
}

/// Checks catalog, storage and lake concurrently, each under the readiness
/// timeout; also feeds the dependency metrics.
pub async fn check_all(state: &AppState) -> [Component; 3] {
    let timeout = Duration::from_millis(state.config.server.ready_timeout_ms);
    let lake = state.engine.lake();
    let catalog = check(timeout, async {
        state.store.ping().await?;
        let mut detail = json!({
            "kind": lake.catalog_kind(),
            "location": lake.catalog_display(),
        });
        if let CatalogLocation::LocalFile(path) = &lake.catalog {
            tokio::fs::metadata(path)
                .await
                .map_err(|e| Error::CatalogUnavailable(format!("{}: {e}", path.display())))?;
        }
        if let Some(connections) = state.store.catalog_connections().await? {
            let gauge = &state.metrics.catalog_connections;
            gauge
                .with_label_values(&["duckdb"])
                .set(connections.duckdb as i64);
            gauge
                .with_label_values(&["service"])
                .set(connections.pool as i64);
            detail["connections"] = json!({
                "duckdb": connections.duckdb,
                "duckdb_limit": state.config.postgres.duckdb_pool_size,
                "pool": connections.pool,
                "pool_limit": state.config.postgres.pool_size,
                "pool_idle": connections.pool_idle,
                "pool_waiting": connections.pool_waiting,
            });
        }
        Ok(detail)
    });
    let storage = check(timeout, async {
        state.bucket.ping().await?;
        Ok(json!({ "kind": state.bucket.kind(), "data_path": lake.data_path() }))
    });
    let lake_check = check(timeout, async {
        let snapshot = state.engine.current_snapshot(timeout).await?;
        Ok(json!({
            "name": lake.name,
            "snapshot_id": snapshot,
            "queries_queued": state.engine.queued(),
            "write_conflicts_total": state.engine.write_conflicts(),
            "connections": {
                "size": state.engine.pool().size(),
                "available": state.engine.pool().available(),
            },
            "transactions_open": state.transactions.counts(),
        }))
    });
    let (catalog, storage, lake_component) = tokio::join!(catalog, storage, lake_check);
    let metrics = &state.metrics;
    for (name, c) in [
        ("catalog", &catalog),
        ("storage", &storage),
        ("lake", &lake_component),
    ] {
        metrics
            .dependency_up
            .with_label_values(&[name])
            .set(i64::from(c.status == "up"));
        metrics
            .dependency_check_seconds
            .with_label_values(&[name])
            .set(c.latency_ms / 1000.0);
    }
    if let Some(id) = lake_component.detail["snapshot_id"].as_i64() {
        metrics.lake_snapshot.set(id);
    }
    [catalog, storage, lake_component]
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, health, ready);
}
