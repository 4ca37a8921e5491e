//! `/api/v1/audit`: the audit trail for admins (see [`crate::audit`]).

use crate::api::{
    access::{Administrator, Authorized},
    routes::{serve, Routes},
};
use actix_web::{web, HttpResponse};
use base64::Engine as _;
use serde::Deserialize;

use crate::{
    api::state::AppState,
    audit::{AuditEntry, AuditFilter, Outcome},
    engine::catalog::Page,
    error::Error,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries of this action: `statement`, `ingest`, `key.create`,
    /// `key.revoke`, `schema.create`, `schema.drop`, `maintenance.compact` ...
    #[serde(default)]
    pub action: Option<String>,
    /// Only entries of the key with this visible prefix.
    #[serde(default)]
    pub key: Option<String>,
    /// Only entries with this outcome: ok, refused, failed.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Entries per page, 1–1000 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// The audit trail, newest first, a page at a time (admin): every write
/// statement, ingest, schema change, key change, maintenance run and
/// refused statement, with the key prefix, request id and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "keys", operation_id = "list_audit", params(AuditParams), responses(
    (status = 200, body = Page<AuditEntry>),
    (status = 422, description = "invalid_parameters: unknown outcome, bad limit or cursor", body = crate::api::error::ErrorResponse),
))]
pub async fn list(
    _caller: Authorized<Administrator>,
    state: web::Data<AppState>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, Error> {
    let params = params.into_inner();
    let outcome = match &params.outcome {
        None => None,
        Some(text) => Some(Outcome::parse(text).ok_or_else(|| {
            Error::InvalidParameters(format!(
                "unknown outcome {text:?}; one of ok, refused, failed"
            ))
        })?),
    };
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::InvalidParameters(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let filter = AuditFilter {
        action: params.action,
        key_prefix: params.key,
        outcome,
        before: params.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut items = state.store.list_audit(&filter).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|entry| encode_cursor(entry.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("audit:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, Error> {
    let invalid = || Error::InvalidParameters("cursor is not one this API gave".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("audit:")
        .and_then(|id| id.parse().ok())
        .ok_or_else(invalid)
}

/// The routes of this module.
pub fn configure(routes: &mut Routes) {
    serve!(routes, list);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert_eq!(
            decode_cursor("nope!").unwrap_err().code(),
            "invalid_parameters"
        );
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("job:1");
        assert_eq!(
            decode_cursor(&other).unwrap_err().code(),
            "invalid_parameters"
        );
    }
}
