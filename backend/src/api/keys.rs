//! `/api/v1/keys`: API keys for admins. The key itself is in the answer to
//! its creation and nowhere else, ever.

use crate::api::{
    access::{Administrator, Authorized},
    routes::{serve, Routes},
};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    api::state::AppState, audit::Outcome, auth, error::Error, role::Role, store::keys::KeyRecord,
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
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = CreateKey, responses(
    (status = 201, body = CreatedKey),
))]
pub async fn create(
    caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let owner = validate_owner(&body.owner)?;
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::InvalidParameters("expires_at is in the past".into()));
    }
    let key = auth::generate(owner, body.role, body.expires_at)?;
    state.store.insert_key(&key.stored).await?;
    if let Some(trail) = crate::api::trail::trail(&req) {
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
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", responses((status = 200, body = [KeyRecord])))]
pub async fn list(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(state.store.list_keys().await?))
}

/// Revoke a key by id or visible prefix (admin): it stops working at once.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id or prefix")),
    responses((status = 200, body = KeyRecord), (status = 404, description = "no such key")))]
pub async fn revoke(
    caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let revoked = state.store.revoke_key(&id).await?;
    if let Some(trail) = crate::api::trail::trail(&req) {
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

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, create, list, revoke);
}
