//! `/metrics`: Prometheus text format (when `features.enable_prometheus_metrics`).
//! State read at scrape time: dependencies (the readiness checks), DuckDB
//! memory, process memory and CPU, the catalog pool, queue and conflicts.

use actix_web::{get, web, HttpResponse};

use crate::{
    api::{health, AppState},
    error::ApiError,
    metrics::{sync_counter, sync_int_counter},
};

/// Prometheus metrics of this replica.
#[utoipa::path(tag = "ops", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
    (status = 404, description = "features.enable_prometheus_metrics is off", body = crate::api::docs::ErrorResponse)
))]
#[get("/metrics")]
pub async fn prometheus(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.config.features.enable_prometheus_metrics {
        return Err(ApiError::RouteNotFound(
            "/metrics is off (FEATURE_ENABLE_PROMETHEUS_METRICS=false)".into(),
        ));
    }
    let m = &state.metrics;
    health::check_all(&state).await;
    m.queries_queued.set(state.engine.queued() as i64);
    sync_int_counter(&m.write_conflicts, state.engine.write_conflicts());
    if let Ok(tags) = state.engine.memory_usage().await {
        let mut temp = 0;
        for (tag, memory, temporary) in tags {
            m.duckdb_memory
                .with_label_values(&[tag.as_str()])
                .set(memory);
            temp += temporary;
        }
        m.duckdb_temp_storage.set(temp);
    }
    if let Some((rss, cpu_ms)) = process_usage().await {
        m.process_resident_memory.set(rss as i64);
        sync_counter(&m.process_cpu_seconds, cpu_ms as f64 / 1000.0);
    }
    if let crate::store::Store::Postgres(pool) = &state.store {
        let status = pool.status();
        m.catalog_pool
            .with_label_values(&["size"])
            .set(status.size as i64);
        m.catalog_pool
            .with_label_values(&["available"])
            .set(status.available as i64);
        m.catalog_pool
            .with_label_values(&["waiting"])
            .set(status.waiting as i64);
        m.catalog_pool
            .with_label_values(&["max"])
            .set(status.max_size as i64);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render()))
}

/// This process's resident memory (bytes) and CPU time (ms), from sysinfo.
async fn process_usage() -> Option<(u64, u64)> {
    tokio::task::spawn_blocking(|| {
        let pid = sysinfo::get_current_pid().ok()?;
        let mut system = sysinfo::System::new();
        system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            true,
            sysinfo::ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu(),
        );
        let process = system.process(pid)?;
        Some((process.memory(), process.accumulated_cpu_time()))
    })
    .await
    .ok()
    .flatten()
}
