//! `GET /api/v1/storage/objects`: one level of the lake's data path, listed
//! through the object store (bucket or local directory).

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;

use crate::{api::AppState, error::Error};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A folder relative to the lake's data path; empty for its root.
    #[serde(default)]
    pub path: String,
}

/// List one level of the lake's data path.
#[utoipa::path(tag = "storage", params(ListQuery), responses(
    (status = 200, description = "`{data_path, path, prefixes: [..], objects: [{path, size, last_modified}]}`", content_type = "application/json"),
    (status = 404, description = "not_found", body = crate::api::error::ErrorResponse),
    (status = 422, description = "invalid_parameters", body = crate::api::error::ErrorResponse),
    (status = 503, description = "storage_unavailable", body = crate::api::error::ErrorResponse)
))]
#[get("/api/v1/storage/objects")]
pub async fn list_objects(
    state: web::Data<AppState>,
    caller: crate::auth::Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Error> {
    caller.require(crate::role::Role::Read)?;
    let listing = state.storage.list(&query.path).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data_path": state.engine.lake().data_path(),
        "path": query.path.trim_matches('/'),
        "prefixes": listing.prefixes,
        "objects": listing.objects,
    })))
}
