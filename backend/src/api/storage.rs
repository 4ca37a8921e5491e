//! `GET /api/v1/storage/objects`: one level of the lake's data path, listed
//! through the object store (bucket or local directory).

use crate::api::{
    access::{Authorized, Reader},
    routes::{serve, Routes},
};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::{api::state::AppState, error::Error};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A folder relative to the lake's data path; empty for its root.
    #[serde(default)]
    pub path: String,
}

/// List one level of the lake's data path.
#[utoipa::path(get, path = "/api/v1/storage/objects", tag = "storage", params(ListQuery), responses(
    (status = 200, description = "`{data_path, path, prefixes: [..], objects: [{path, size, last_modified}]}`", content_type = "application/json"),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
    (status = 503, description = "storage_unavailable", body = crate::api::error::ErrorResponse)
))]
pub async fn list_objects(
    _caller: Authorized<Reader>,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Error> {
    let listing = state.bucket.list(&query.path).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data_path": state.engine.lake().data_path(),
        "path": query.path.trim_matches('/'),
        "prefixes": listing.prefixes,
        "objects": listing.objects,
    })))
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, list_objects);
}
