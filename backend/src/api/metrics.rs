//! `/metrics`: Prometheus text format (when `features.enable_prometheus_metrics`).
//! State read at scrape time: dependencies (the readiness checks), DuckDB
//! memory, process memory and CPU, the catalog pool, queue and conflicts.

use crate::api::{
    access::{Administrator, Authorized, Open, Reader},
    routes::{serve, Routes},
};
use actix_web::{web, HttpResponse};

use crate::{
    api::{health, state::AppState},
    error::Error,
    metrics::{sync_counter, sync_int_counter},
};

/// 404 naming the switch when a feature's endpoint is off.
fn feature(enabled: bool, path: &str, variable: &str) -> Result<(), Error> {
    if enabled {
        Ok(())
    } else {
        Err(Error::RouteNotFound(format!(
            "{path} is off ({variable}=false)"
        )))
    }
}

/// Prometheus metrics of this replica.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
    (status = 404, description = "features.enable_prometheus_metrics is off", body = crate::api::error::ErrorResponse)
))]
pub async fn prometheus(_: Open, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    feature(
        state.config.features.enable_prometheus_metrics,
        "/metrics",
        "FEATURE_ENABLE_PROMETHEUS_METRICS",
    )?;
    let m = &state.metrics;
    health::check_all(&state).await;
    m.queries_queued.set(state.engine.queued() as i64);
    let open = state.transactions.counts();
    for (label, n) in [
        ("reading", open.reading),
        ("writing_active", open.writing_active),
        ("writing_idle", open.writing_idle),
    ] {
        m.transactions_open
            .with_label_values(&[label])
            .set(n as i64);
    }
    sync_int_counter(&m.write_conflicts, state.engine.write_conflicts());
    let hot = state.engine.hot().stats();
    m.hot_tables.set(hot.tables as i64);
    m.hot_bytes.set(hot.bytes as i64);
    sync_int_counter(&m.hot_reads, hot.reads);
    sync_int_counter(&m.hot_builds, hot.builds);
    sync_int_counter(&m.hot_invalidations, hot.invalidations);
    if let Ok(tags) = state.engine.memory_usage().await {
        let mut temp = 0;
        for (tag, bytes, temporary) in tags {
            m.duckdb_memory
                .with_label_values(&[tag.as_str()])
                .set(bytes);
            temp += temporary;
        }
        m.duckdb_temp_storage.set(temp);
    }
    if let Some((rss, cpu_ms)) = process_usage().await {
        m.process_resident_memory.set(rss as i64);
        sync_counter(&m.process_cpu_seconds, cpu_ms as f64 / 1000.0);
    }
    if let Ok(counts) = state.jobs.counts().await {
        for (status, n) in counts {
            m.jobs.with_label_values(&[status]).set(n);
        }
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

/// Memory of the process, the machine, the container and DuckDB.
#[utoipa::path(get, path = "/metrics/memory", tag = "ops", responses(
    (status = 200, description = "`{process, system, cgroup, duckdb, temp_directory}`, bytes", content_type = "application/json"),
    (status = 404, description = "features.enable_memory_monitoring is off", body = crate::api::error::ErrorResponse)
))]
pub async fn memory(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    feature(
        state.config.features.enable_memory_monitoring,
        "/metrics/memory",
        "FEATURE_ENABLE_MEMORY_MONITORING",
    )?;
    let tags = state.engine.memory_usage().await?;
    let temp_dir = state.config.data_dir.join("tmp");
    let machine = tokio::task::spawn_blocking(move || {
        let pid = sysinfo::get_current_pid().ok();
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        if let Some(pid) = pid {
            system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
        }
        let process = pid.and_then(|pid| system.process(pid));
        serde_json::json!({
            "process": {
                "resident_bytes": process.map(|p| p.memory()),
                "virtual_bytes": process.map(|p| p.virtual_memory()),
            },
            "system": {
                "total_bytes": system.total_memory(),
                "available_bytes": system.available_memory(),
                "used_bytes": system.used_memory(),
            },
            "cgroup": cgroup_memory(std::path::Path::new("/sys/fs/cgroup")),
            "temp_directory": {
                "path": temp_dir.display().to_string(),
                "bytes": dir_size(&temp_dir),
            },
        })
    })
    .await
    .map_err(Error::internal)?;
    let limit = state.engine.memory_limit().await.ok();
    let mut body = machine;
    body["duckdb"] = serde_json::json!({
        "memory_limit": limit,
        "memory_usage_bytes": tags.iter().map(|t| t.1).sum::<i64>(),
        "temporary_storage_bytes": tags.iter().map(|t| t.2).sum::<i64>(),
        "by_tag": tags
            .iter()
            .map(|(tag, bytes, temp)| {
                serde_json::json!({
                    "tag": tag, "memory_usage_bytes": bytes, "temporary_storage_bytes": temp
                })
            })
            .collect::<Vec<_>>(),
    });
    Ok(HttpResponse::Ok().json(body))
}

/// Rolling latency statistics per route and query kind, and the slowest
/// recent queries by fingerprint (literals stripped).
#[utoipa::path(get, path = "/metrics/performance", tag = "ops", responses(
    (status = 200, description = "`{routes: {\"POST /api/v1/query\": {1m, 5m, 1h}}, query_kinds: {...}, slowest_queries: [...], cache: {enabled, entries, bytes, max_bytes, max_entry_bytes, hits, misses, bypass, evictions, invalidations, waits, hit_ratio}, hot_tables: {enabled, tables, bytes, copying, max_bytes, max_table_bytes, reads, builds, invalidations, too_large}}`; each window has count, errors, error_rate, per_second, p50_ms, p90_ms, p99_ms, max_ms", content_type = "application/json"),
    (status = 404, description = "features.enable_performance_tracking is off", body = crate::api::error::ErrorResponse)
))]
pub async fn performance(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    feature(
        state.config.features.enable_performance_tracking,
        "/metrics/performance",
        "FEATURE_ENABLE_PERFORMANCE_TRACKING",
    )?;
    let mut report = state.performance.report();
    report["cache"] = serde_json::json!(state.cache.stats());
    report["hot_tables"] = serde_json::json!(state.engine.hot().stats());
    report["transactions_open"] = serde_json::json!(state.transactions.counts());
    report["connections"] = serde_json::json!({
        "size": state.engine.pool().size(),
        "available": state.engine.pool().available(),
    });
    Ok(HttpResponse::Ok().json(report))
}

/// The container's memory limit and usage: cgroup v2 (`memory.max`,
/// `memory.current`) or v1 (`memory/memory.limit_in_bytes`,
/// `memory/memory.usage_in_bytes`); null outside a limiting cgroup.
pub fn cgroup_memory(root: &std::path::Path) -> serde_json::Value {
    let read = |path: std::path::PathBuf| -> Option<String> {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let number = |text: Option<String>| -> Option<u64> {
        text.and_then(|t| t.parse().ok())
            // v1 reports "no limit" as a huge number.
            .filter(|v| *v < (1u64 << 60))
    };
    if let Some(max) = read(root.join("memory.max")) {
        return serde_json::json!({
            "version": 2,
            "limit_bytes": number(Some(max)),
            "usage_bytes": number(read(root.join("memory.current"))),
        });
    }
    let v1 = root.join("memory");
    if let Some(limit) = read(v1.join("memory.limit_in_bytes")) {
        return serde_json::json!({
            "version": 1,
            "limit_bytes": number(Some(limit)),
            "usage_bytes": number(read(v1.join("memory.usage_in_bytes"))),
        });
    }
    serde_json::Value::Null
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, prometheus, memory, performance);
}

#[cfg(test)]
mod tests {
    use super::cgroup_memory;

    #[test]
    fn cgroup_v2_v1_and_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(cgroup_memory(dir.path()).is_null());
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory/memory.usage_in_bytes"), "1048576\n").unwrap();
        let v1 = cgroup_memory(dir.path());
        assert_eq!(v1["version"], 1);
        assert!(v1["limit_bytes"].is_null(), "no limit: {v1}");
        assert_eq!(v1["usage_bytes"], 1048576);
        std::fs::write(dir.path().join("memory.max"), "536870912\n").unwrap();
        std::fs::write(dir.path().join("memory.current"), "2097152\n").unwrap();
        let v2 = cgroup_memory(dir.path());
        assert_eq!(
            (v2["version"].as_u64(), v2["limit_bytes"].as_u64()),
            (Some(2), Some(536870912))
        );
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert!(cgroup_memory(dir.path())["limit_bytes"].is_null());
    }
}
