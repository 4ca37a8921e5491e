//! `/api/v1/keys`: API keys for admins. The key itself is in the answer to
//! its creation and nowhere else, ever.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    api::AppState,
    audit::Outcome,
    auth::{self, Caller},
    error::Error,
    role::Role,
    store::keys::KeyRecord,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Who the key is for (a person or a system), 1–200 characters.
    pub owner: String,
    pub role: Role,
    /// When the key stops working; never when absent.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key: shown this once, stored only as a hash.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// Make a key (admin). The answer is the only time the key is shown.
#[utoipa::path(tag = "keys", request_body = CreateKey, responses(
    (status = 201, body = CreatedKey),
    (status = 401, description = "no valid key"),
    (status = 403, description = "not an admin key"),
))]
#[post("/api/v1/keys")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, Error> {
    caller.require(Role::Admin)?;
    let body = body.into_inner();
    let owner = validate_owner(&body.owner)?;
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::InvalidParameters("expires_at is in the past".into()));
    }
    let key = auth::generate(owner, body.role, body.expires_at)?;
    state.store.insert_key(&key.stored).await?;
    if let Some(trail) = crate::api::trail(&req) {
        trail.record(
            trail
                .event("key.create", Outcome::Ok)
                .target(key.stored.record.prefix.clone())
                .detail("owner", owner)
                .detail("role", body.role)
                .detail("expires_at", body.expires_at),
        );
    }
    tracing::info!(
        by = %caller.prefix,
        prefix = %key.stored.record.prefix,
        role = %body.role,
        "API key created"
    );
    Ok(HttpResponse::Created().json(CreatedKey {
        key: key.secret,
        record: key.stored.record,
    }))
}

/// Every key, newest first, without the keys themselves (admin).
#[utoipa::path(tag = "keys", responses((status = 200, body = [KeyRecord])))]
#[get("/api/v1/keys")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Error> {
    caller.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(state.store.list_keys().await?))
}

/// Revoke a key by id or visible prefix (admin): it stops working at once.
#[utoipa::path(tag = "keys", params(("id" = String, Path, description = "key id or prefix")),
    responses((status = 200, body = KeyRecord), (status = 404, description = "no such key")))]
#[delete("/api/v1/keys/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require(Role::Admin)?;
    let revoked = state.store.revoke_key(&id).await?;
    if let Some(trail) = crate::api::trail(&req) {
        for key in &revoked {
            trail.record(
                trail
                    .event("key.revoke", Outcome::Ok)
                    .target(key.prefix.clone())
                    .detail("owner", &key.owner)
                    .detail("role", key.role),
            );
        }
    }
    match revoked.as_slice() {
        [] => Err(Error::NotFound(format!(
            "no API key with id or prefix {id}"
        ))),
        [one] => {
            tracing::info!(by = %caller.prefix, prefix = %one.prefix, "API key revoked");
            Ok(HttpResponse::Ok().json(one))
        }
        many => Ok(HttpResponse::Ok().json(many)),
    }
}

pub fn validate_owner(owner: &str) -> Result<&str, Error> {
    let owner = owner.trim();
    if owner.is_empty() || owner.chars().count() > 200 || owner.chars().any(char::is_control) {
        return Err(Error::InvalidParameters(
            "owner must be 1–200 printable characters".into(),
        ));
    }
    Ok(owner)
}
