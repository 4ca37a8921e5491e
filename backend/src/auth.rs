//! API keys and who a request is: `Authorization: Bearer <key>` → [`Caller`].
//! Knows no transport: the HTTP edge's `Authorized` extractor
//! (`crate::api::access`) and any other edge call [`Authenticator::authenticate`].
//!
//! A key is `dlk_` followed by 43 characters of base64url randomness (256
//! bits). Only its SHA-256 hash is stored, with its first 12 characters as a
//! visible prefix: the prefix finds the candidate rows, and their hashes are
//! compared in constant time. The key itself is shown once, when it is made.
//!
//! With authentication off (only allowed on a loopback address, never in
//! production: see [`crate::config`]) every caller is an anonymous admin.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{
    error::Error,
    role::Role,
    store::{
        keys::{KeyRecord, StoredKey},
        Store,
    },
};

/// Every key starts with this, so it is recognisable in a leaked file.
pub const KEY_PREFIX: &str = "dlk_";
/// Characters of a key kept in the clear to tell keys apart.
pub const VISIBLE_CHARS: usize = 12;
/// How often a key's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Who is asking, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// None when authentication is off.
    pub key_id: Option<Uuid>,
    /// The key's visible prefix, for logs and metrics (`anonymous` when off).
    pub prefix: String,
    pub owner: String,
    pub role: Role,
}

impl Caller {
    fn anonymous() -> Self {
        Self {
            key_id: None,
            prefix: "anonymous".into(),
            owner: "anonymous".into(),
            role: Role::Admin,
        }
    }

    /// 403 unless the caller holds at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::InsufficientRole(format!(
                "this needs the {role} role; the key {} has the {} role",
                self.prefix, self.role
            )))
        }
    }
}

/// A freshly made key: the secret (shown once) and the row to store.
pub struct NewKey {
    pub secret: String,
    pub stored: StoredKey,
}

/// Makes a key with 256 random bits.
pub fn generate(
    owner: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewKey, Error> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|e| Error::internal(anyhow::anyhow!("no randomness for a key: {e}")))?;
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    Ok(NewKey {
        stored: stored_key(&secret, owner, role, expires_at),
        secret,
    })
}

/// The row for a given key (also for a bootstrap key chosen by the operator).
pub fn stored_key(
    secret: &str,
    owner: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> StoredKey {
    StoredKey {
        record: KeyRecord {
            id: Uuid::new_v4(),
            prefix: visible_prefix(secret),
            owner: owner.to_string(),
            role,
            created_at: Utc::now(),
            expires_at,
            last_used_at: None,
            active: true,
        },
        key_hash: hash(secret),
    }
}

/// The stored form of a key: its SHA-256, in hex.
pub fn hash(secret: &str) -> String {
    crate::digest::sha256_hex(secret.as_bytes())
}

fn visible_prefix(secret: &str) -> String {
    secret.chars().take(VISIBLE_CHARS).collect()
}

/// Checks keys against the store.
pub struct Authenticator {
    enabled: bool,
    store: Store,
    /// When each key's `last_used_at` was last written.
    touched: parking_lot::Mutex<HashMap<Uuid, Instant>>,
}

impl Authenticator {
    pub fn new(enabled: bool, store: Store) -> Self {
        Self {
            enabled,
            store,
            touched: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The caller behind an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Caller, Error> {
        if !self.enabled {
            return Ok(Caller::anonymous());
        }
        let header = header.ok_or_else(|| {
            Error::Unauthorized("an API key is required: Authorization: Bearer <key>".into())
        })?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be `Bearer <key>`".into())
            })?;
        let presented = hash(secret);
        let candidates = self.store.keys_with_prefix(&visible_prefix(secret)).await?;
        let mut found = None;
        for candidate in candidates {
            if bool::from(candidate.key_hash.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(candidate.record);
            }
        }
        let unknown = || Error::Unauthorized("the API key is not valid".into());
        let key = found.ok_or_else(unknown)?;
        if !key.active {
            return Err(Error::Unauthorized(format!(
                "the API key {} has been revoked",
                key.prefix
            )));
        }
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::Unauthorized(format!(
                "the API key {} has expired",
                key.prefix
            )));
        }
        self.touch(key.id);
        Ok(Caller {
            key_id: Some(key.id),
            prefix: key.prefix,
            owner: key.owner,
            role: key.role,
        })
    }

    /// Writes `last_used_at` in the background, at most once a minute per key.
    fn touch(&self, id: Uuid) {
        {
            let mut touched = self.touched.lock();
            let now = Instant::now();
            if touched
                .get(&id)
                .is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY)
            {
                return;
            }
            touched.insert(id, now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_key(id).await {
                tracing::warn!(error = %err, "could not record a key's last use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_only_hashed() {
        let a = generate("ana", Role::Read, None).unwrap();
        let b = generate("ana", Role::Read, None).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 43);
        assert_eq!(a.stored.record.prefix, &a.secret[..VISIBLE_CHARS]);
        assert_eq!(a.stored.key_hash, hash(&a.secret));
        assert_eq!(a.stored.key_hash.len(), 64);
        assert!(!a.stored.key_hash.contains(&a.secret[VISIBLE_CHARS..]));
        assert!(a.stored.key_hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // SHA-256 itself, checked against the FIPS 180-2 test vector.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_cover_the_ones_below() {
        let reader = Caller {
            role: Role::Read,
            ..Caller::anonymous()
        };
        assert!(reader.require(Role::Read).is_ok());
        assert_eq!(
            reader.require(Role::Write).unwrap_err().code(),
            "insufficient_role"
        );
        assert!(Caller::anonymous().require(Role::Admin).is_ok());
    }
}
