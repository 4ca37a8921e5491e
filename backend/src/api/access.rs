//! Who may call a route, stated in its handler's type.
//!
//! A handler's first argument is its access: [`Open`] (anyone, with or
//! without a key) or [`Authorized<P>`] for a key holding at least the role
//! of the policy `P` ([`Reader`], [`Writer`], [`Administrator`]). The
//! extractor authenticates the key and checks the role before the handler
//! runs, so a handler cannot forget the check; and
//! [`Routes`](super::routes::Routes) only registers a handler whose first
//! argument states an access ([`HandlerAccess`]), which it reads off the
//! type into the route table: a route cannot be written without saying who
//! may call it. The query and job endpoints need [`Reader`]; what the
//! statement itself may do is the sandbox's decision on the caller's role.

use std::{future::Future, marker::PhantomData, ops::Deref, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};

use crate::{api::state::AppState, auth::Caller, error::Error, role::Role};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a key: probes, metrics, the API document and
    /// the console's files.
    Open,
    /// A key holding at least this role.
    AtLeast(Role),
}

/// A role a route needs at least.
pub trait Policy: 'static {
    const ROLE: Role;
}

/// Any valid key (every role can read).
pub struct Reader;
/// A key that may change the lake.
pub struct Writer;
/// An admin key: maintenance, keys, the audit trail, the configuration.
pub struct Administrator;

impl Policy for Reader {
    const ROLE: Role = Role::Read;
}
impl Policy for Writer {
    const ROLE: Role = Role::Write;
}
impl Policy for Administrator {
    const ROLE: Role = Role::Admin;
}

/// The caller of a route that needs at least `P`'s role, checked.
pub struct Authorized<P: Policy> {
    caller: Caller,
    policy: PhantomData<P>,
}

impl<P: Policy> Deref for Authorized<P> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<P: Policy> FromRequest for Authorized<P> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_string));
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                Error::internal(anyhow::anyhow!("the app state is not registered"))
            })?;
            let header = match header {
                None => None,
                Some(Ok(value)) => Some(value),
                Some(Err(_)) => {
                    return Err(Error::Unauthorized(
                        "the Authorization header is not readable text".into(),
                    ))
                }
            };
            let caller = state.auth.authenticate(header.as_deref()).await?;
            // For the request log and the audit trail, which name the key
            // by its prefix (also when the role is not enough).
            req.extensions_mut().insert(caller.clone());
            caller.require(P::ROLE)?;
            Ok(Self {
                caller,
                policy: PhantomData,
            })
        })
    }
}

/// The access of a route anyone may call.
pub struct Open;

impl FromRequest for Open {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Open))
    }
}

/// An extractor that states a route's access.
pub trait StatesAccess {
    const ACCESS: Access;
}

impl StatesAccess for Open {
    const ACCESS: Access = Access::Open;
}

impl<P: Policy> StatesAccess for Authorized<P> {
    const ACCESS: Access = Access::AtLeast(P::ROLE);
}

/// A handler's arguments whose first states the route's access.
pub trait HandlerAccess {
    const ACCESS: Access;
}

macro_rules! first_argument_states_access {
    ($($rest:ident),*) => {
        impl<A: StatesAccess, $($rest),*> HandlerAccess for (A, $($rest,)*) {
            const ACCESS: Access = A::ACCESS;
        }
    };
}

first_argument_states_access!();
first_argument_states_access!(B);
first_argument_states_access!(B, C);
first_argument_states_access!(B, C, D);
first_argument_states_access!(B, C, D, E);
first_argument_states_access!(B, C, D, E, F);
first_argument_states_access!(B, C, D, E, F, G);
