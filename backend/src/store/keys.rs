//! The `api_keys` table: rows in, rows out. Knows nothing of how keys are
//! made or checked (that is [`crate::auth`]); only a key's SHA-256 hash and
//! its visible prefix are ever stored.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{blocking, pg_error, pool_error, Store, StoreError};
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

const COLUMNS_PG: &str =
    "id, prefix, owner, role, created_at, expires_at, last_used_at, active, key_hash";
const COLUMNS_LOCAL: &str = "CAST(id AS VARCHAR), prefix, owner, role, epoch_us(created_at), \
     epoch_us(expires_at), epoch_us(last_used_at), active, key_hash";

impl Store {
    /// Adds a key; `false` when a key with the same hash already exists
    /// (the bootstrap key on every start after the first).
    pub async fn insert_key(&self, key: &StoredKey) -> Result<bool, StoreError> {
        let r = &key.record;
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                let inserted = client
                    .execute(
                        "INSERT INTO ducklake_backend.api_keys \
                         (id, prefix, key_hash, owner, role, created_at, expires_at, active) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key_hash) DO NOTHING",
                        &[
                            &r.id,
                            &r.prefix,
                            &key.key_hash,
                            &r.owner,
                            &r.role.as_str(),
                            &r.created_at,
                            &r.expires_at,
                            &r.active,
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(inserted == 1)
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                let key = key.clone();
                blocking(move || {
                    let r = &key.record;
                    conn.lock()
                        .execute(
                            "INSERT INTO ducklake_backend.api_keys \
                             (id, prefix, key_hash, owner, role, created_at, expires_at, active) \
                             VALUES (?::UUID, ?, ?, ?, ?, make_timestamp(?::BIGINT)::TIMESTAMPTZ, \
                             make_timestamp(?::BIGINT)::TIMESTAMPTZ, ?) \
                             ON CONFLICT (key_hash) DO NOTHING",
                            duckdb::params![
                                r.id.to_string(),
                                r.prefix,
                                key.key_hash,
                                r.owner,
                                r.role.as_str(),
                                r.created_at.timestamp_micros(),
                                r.expires_at.map(|t| t.timestamp_micros()),
                                r.active,
                            ],
                        )
                        .map(|n| n == 1)
                        .map_err(local_error)
                })
                .await
            }
        }
    }

    /// Keys whose visible prefix is `prefix`, hashes included.
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<StoredKey>, StoreError> {
        self.select_keys("WHERE prefix = $1", Some(prefix.to_string()))
            .await
    }

    /// Whether the key with this id still works: active and not expired.
    pub async fn key_is_valid(&self, id: Uuid) -> Result<bool, StoreError> {
        let keys = self
            .select_keys("WHERE CAST(id AS VARCHAR) = $1", Some(id.to_string()))
            .await?;
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
        let (sql, arg) = match by_id {
            Some(id) => ("WHERE CAST(id AS VARCHAR) = $1", id.to_string()),
            None => ("WHERE prefix = $1", id_or_prefix.to_string()),
        };
        let keys = self.select_keys(sql, Some(arg)).await?;
        for key in &keys {
            self.update_key(
                "UPDATE ducklake_backend.api_keys SET active = false WHERE CAST(id AS VARCHAR) = $1",
                key.record.id,
            )
            .await?;
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
        self.update_key(
            "UPDATE ducklake_backend.api_keys SET last_used_at = now() WHERE CAST(id AS VARCHAR) = $1",
            id,
        )
        .await
    }

    async fn update_key(&self, sql: &'static str, id: Uuid) -> Result<(), StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                client
                    .execute(sql, &[&id.to_string()])
                    .await
                    .map_err(pg_error)?;
                Ok(())
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    conn.lock()
                        .execute(sql, [id.to_string()])
                        .map(|_| ())
                        .map_err(local_error)
                })
                .await
            }
        }
    }

    /// `filter` is a WHERE clause with at most one text parameter `$1`.
    async fn select_keys(
        &self,
        filter: &'static str,
        arg: Option<String>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                let sql = format!(
                    "SELECT {COLUMNS_PG} FROM ducklake_backend.api_keys {filter} \
                     ORDER BY created_at DESC, id"
                );
                let rows = match &arg {
                    Some(arg) => client.query(&sql, &[arg]).await,
                    None => client.query(&sql, &[]).await,
                }
                .map_err(pg_error)?;
                rows.iter()
                    .map(|row| {
                        let role: String = row.get(3);
                        Ok(StoredKey {
                            record: KeyRecord {
                                id: row.get(0),
                                prefix: row.get(1),
                                owner: row.get(2),
                                role: parse_role(&role)?,
                                created_at: row.get(4),
                                expires_at: row.get(5),
                                last_used_at: row.get(6),
                                active: row.get(7),
                            },
                            key_hash: row.get(8),
                        })
                    })
                    .collect()
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let conn = conn.lock();
                    let sql = format!(
                        "SELECT {COLUMNS_LOCAL} FROM ducklake_backend.api_keys {filter} \
                         ORDER BY created_at DESC, id"
                    );
                    let mut stmt = conn.prepare(&sql).map_err(local_error)?;
                    let params: Vec<String> = arg.into_iter().collect();
                    let rows = stmt
                        .query_map(duckdb::params_from_iter(params.iter()), |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, String>(2)?,
                                row.get::<_, String>(3)?,
                                row.get::<_, i64>(4)?,
                                row.get::<_, Option<i64>>(5)?,
                                row.get::<_, Option<i64>>(6)?,
                                row.get::<_, bool>(7)?,
                                row.get::<_, String>(8)?,
                            ))
                        })
                        .map_err(local_error)?;
                    let mut keys = Vec::new();
                    for row in rows {
                        let (id, prefix, owner, role, created, expires, used, active, hash) =
                            row.map_err(local_error)?;
                        keys.push(StoredKey {
                            record: KeyRecord {
                                id: Uuid::parse_str(&id)
                                    .map_err(|e| StoreError::Failed(e.to_string()))?,
                                prefix,
                                owner,
                                role: parse_role(&role)?,
                                created_at: from_micros(created),
                                expires_at: expires.map(from_micros),
                                last_used_at: used.map(from_micros),
                                active,
                            },
                            key_hash: hash,
                        });
                    }
                    Ok(keys)
                })
                .await
            }
        }
    }
}

fn parse_role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name)
        .ok_or_else(|| StoreError::Failed(format!("unknown role {name:?} in api_keys")))
}

fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn local_error(e: duckdb::Error) -> StoreError {
    StoreError::Failed(e.to_string())
}
