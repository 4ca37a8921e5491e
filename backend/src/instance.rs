//! This process among the replicas: its id, and the names its connections
//! to the catalog database carry. A leaf: it imports nothing of the crate.

use std::sync::OnceLock;

/// This process's id among the replicas, in the catalog connections'
/// `application_name` so each replica's connections can be counted.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string())
}

/// `ducklake-backend/<pool>/<instance>`: the application_name of one of the
/// two pools that connect to the catalog database (`duckdb` or `pool`).
pub fn application_name(pool: &str) -> String {
    format!("ducklake-backend/{pool}/{}", instance_id())
}
