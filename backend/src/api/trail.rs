//! The audit trail of one request: its caller (known once its
//! [`Authorized`](super::access::Authorized) extractor ran) and request id.

use actix_web::{web, HttpRequest};

use super::{middleware::RequestId, state::AppState};
use crate::{auth::Caller, error::Error};

/// The audit recorder for one request: its caller (known once the
/// [`Caller`](Caller) extractor ran) and request id.
pub fn trail(req: &HttpRequest) -> Option<crate::audit::Trail> {
    use actix_web::HttpMessage;
    let state = req.app_data::<web::Data<AppState>>()?;
    let extensions = req.extensions();
    let caller = extensions.get::<Caller>()?;
    Some(state.audit.trail(crate::audit::Actor {
        key_prefix: caller.prefix.clone(),
        owner: caller.owner.clone(),
        request_id: extensions.get::<RequestId>().map(|id| id.0.clone()),
    }))
}

/// Records how an audited action of a request that changes the lake
/// ended: ok with the snapshot it created, or failed with the error's code.
pub fn audit_change(req: &HttpRequest, action: &str, target: &str, result: &Result<i64, Error>) {
    let Some(trail) = trail(req) else { return };
    let event = match result {
        Ok(snapshot) => trail
            .event(action, crate::audit::Outcome::Ok)
            .snapshot(Some(*snapshot)),
        Err(err) => trail
            .event(action, crate::audit::Outcome::Failed)
            .detail("error", err.code()),
    };
    trail.record(event.target(target));
}
