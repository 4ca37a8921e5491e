//! The `api_keys` table: rows in, rows out. Knows nothing of how keys are
//! made or checked (that is [`crate::auth`]); only a key's SHA-256 hash and
//! its visible prefix are ever stored.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::sql::{text, Arg, Cell};
use super::{Store, StoreError};
use crate::role::Role;

/// One row of `ducklake_backend.api_keys`, without the hash.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: Uuid,
    /// The first characters of the key, to tell keys apart; not a secret.
    pub prefix: String,
    pub owner: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub active: bool,
}

/// A key row together with its hash, for the authentication check only.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub key_hash: String,
}

impl Store {
    /// Adds a key; `false` when a key with the same hash already exists
    /// (the bootstrap key on every start after the first).
    pub async fn insert_key(&self, key: &StoredKey) -> Result<bool, StoreError> {
        let r = &key.record;
        let sql = format!(
            "INSERT INTO {TABLE} \
             (id, prefix, key_hash, owner, role, created_at, expires_at, active) \
             VALUES (CAST(CAST($1 AS VARCHAR) AS UUID), $2, $3, $4, $5, {}, {}, $8) \
             ON CONFLICT (key_hash) DO NOTHING",
            self.timestamp_param(6),
            self.timestamp_param(7),
        );
        let args = vec![
            text(r.id.to_string()),
            text(r.prefix.clone()),
            text(key.key_hash.clone()),
            text(r.owner.clone()),
            text(r.role.as_str()),
            Arg::Int(Some(r.created_at.timestamp_micros())),
            Arg::Int(r.expires_at.map(|t| t.timestamp_micros())),
            Arg::Flag(Some(r.active)),
        ];
        Ok(self.execute(sql, args).await? == 1)
    }

    /// Keys whose visible prefix is `prefix`, hashes included.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<StoredKey>, StoreError> {
        self.select_keys("WHERE prefix = $1", Some(prefix.to_string()))
            .await
    }

    /// Whether the key with this id still works: active and not expired.
    pub async fn key_is_valid(&self, id: Uuid) -> Result<bool, StoreError> {
        let keys = self.select_keys(BY_ID, Some(id.to_string())).await?;
        let now = Utc::now();
        Ok(keys
            .iter()
            .any(|k| k.record.active && k.record.expires_at.is_none_or(|at| at > now)))
    }

    /// Every key, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let keys = self.select_keys("", None).await?;
        Ok(keys.into_iter().map(|k| k.record).collect())
    }

    /// Deactivates the key with this id or prefix; the record afterwards,
    /// or None when there is no such key.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let by_id = Uuid::parse_str(id_or_prefix).ok();
        let (filter, arg) = match by_id {
            Some(id) => (BY_ID, id.to_string()),
            None => ("WHERE prefix = $1", id_or_prefix.to_string()),
        };
        let keys = self.select_keys(filter, Some(arg)).await?;
        for key in &keys {
            self.update_key("SET active = false", key.record.id).await?;
        }
        Ok(keys
            .into_iter()
            .map(|k| KeyRecord {
                active: false,
                ..k.record
            })
            .collect())
    }

    /// Records that the key was used now.
    pub async fn touch_key(&self, id: Uuid) -> Result<(), StoreError> {
        self.update_key("SET last_used_at = now()", id).await
    }

    async fn update_key(&self, set: &str, id: Uuid) -> Result<(), StoreError> {
        let sql = format!("UPDATE {TABLE} {set} {BY_ID}");
        self.execute(sql, vec![text(id.to_string())])
            .await
            .map(drop)
    }

    /// `filter` is a WHERE clause with at most one text parameter `$1`.
    async fn select_keys(
        &self,
        filter: &str,
        arg: Option<String>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT CAST(id AS VARCHAR), prefix, owner, role, {}, {}, {}, active, key_hash \
             FROM {TABLE} {filter} ORDER BY created_at DESC, id",
            self.micros("created_at"),
            self.micros("expires_at"),
            self.micros("last_used_at"),
        );
        self.select(sql, arg.into_iter().map(text).collect(), stored_key)
            .await
    }
}

const TABLE: &str = "ducklake_backend.api_keys";
/// `$1` as a key id (text in both stores, so one statement serves both).
const BY_ID: &str = "WHERE CAST(id AS VARCHAR) = $1";

fn stored_key(cell: &dyn Fn(usize) -> Cell) -> Result<StoredKey, StoreError> {
    let text = |i| cell(i).text.unwrap_or_default();
    let time = |i| cell(i).int.and_then(DateTime::from_timestamp_micros);
    let id = text(0);
    let role = text(3);
    Ok(StoredKey {
        record: KeyRecord {
            id: Uuid::parse_str(&id)
                .map_err(|e| StoreError::Failed(format!("key id {id}: {e}")))?,
            prefix: text(1),
            owner: text(2),
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Failed(format!("unknown role {role:?} in api_keys")))?,
            created_at: time(4).unwrap_or_default(),
            expires_at: time(5),
            last_used_at: time(6),
            active: cell(7).flag.unwrap_or(false),
        },
        key_hash: text(8),
    })
}
