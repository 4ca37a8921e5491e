//! What a caller may do: the three roles an API key holds. A leaf: the
//! sandbox decides which role a statement needs, auth which role a key has,
//! the api which role a route needs; all of them read it from here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a caller may do, from least to most. Ordered: `Admin` may do all
/// that `Write` may, and so on.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only statements on the lake.
    #[default]
    Read,
    /// DML and DDL in the lake.
    Write,
    /// Maintenance, keys, everyone's jobs.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
