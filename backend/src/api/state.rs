//! What every handler shares, behind `web::Data`: the core's
//! [`Services`](crate::services::Services), under the name the handlers
//! know.

pub use crate::services::Services as AppState;
