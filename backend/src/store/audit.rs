//! The `audit_log` table and its records: events written in batches by
//! the trail's queue (`crate::audit`, which knows when and why), read newest
//! first by `GET /api/v1/audit`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::{text, Arg, Cell};
use crate::store::{Store, StoreError};

/// Longest statement text kept in an event.
pub const MAX_SQL_CHARS: usize = 2_000;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The sandbox or the caller's role refused it.
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Ok, Self::Refused, Self::Failed]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// Who asked: what every event of one request shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The key's visible prefix (`anonymous` with authentication off,
    /// `service` for the service's own periodic work).
    pub key_prefix: String,
    pub owner: String,
    pub request_id: Option<String>,
}

impl Actor {
    /// The service itself (periodic maintenance).
    pub fn service() -> Self {
        Self {
            key_prefix: "service".into(),
            owner: "service".into(),
            request_id: None,
        }
    }
}

/// One audited action.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// What was done: `statement`, `ingest`, `key.create`, `key.revoke`,
    /// `maintenance.compact` ...
    pub action: String,
    /// What it was done to (`schema.table`, a key prefix), when one thing.
    pub target: Option<String>,
    pub outcome: Outcome,
    /// The snapshot the action created, when it committed one.
    pub snapshot: Option<i64>,
    /// The rest, as a JSON object (statement kind and text, tables, reason).
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(actor: &Actor, action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            at: Utc::now(),
            actor: actor.clone(),
            action: action.into(),
            target: None,
            outcome,
            snapshot: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn snapshot(mut self, snapshot: Option<i64>) -> Self {
        self.snapshot = snapshot;
        self
    }

    /// Adds `key: value` to the detail object.
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        if let (serde_json::Value::Object(map), Ok(value)) =
            (&mut self.detail, serde_json::to_value(value))
        {
            map.insert(key.to_string(), value);
        }
        self
    }

    /// Adds the statement text, cut to [`MAX_SQL_CHARS`].
    pub fn sql(self, sql: &str) -> Self {
        let sql = sql.trim();
        match sql.char_indices().nth(MAX_SQL_CHARS) {
            Some((cut, _)) => self.detail("sql", format!("{}…", &sql[..cut])),
            None => self.detail("sql", sql),
        }
    }
}

/// One row of the audit log, as `GET /api/v1/audit` answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// The key's visible prefix (`anonymous` with authentication off,
    /// `service` for periodic maintenance).
    pub key_prefix: Option<String>,
    /// The key's owner.
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub snapshot: Option<i64>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub key_prefix: Option<String>,
    pub outcome: Option<Outcome>,
    /// Entries older than this id (the cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

const COLUMNS: &str =
    "occurred_at, actor, key_prefix, request_id, action, target, outcome, snapshot_id, detail";

impl Store {
    /// Writes `events` in one statement.
    pub async fn insert_audit(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(events.len());
        let mut args = Vec::with_capacity(events.len() * 9);
        for event in events {
            let n = args.len();
            let at = self.timestamp_param(n + 1);
            let rest: Vec<String> = (n + 2..=n + 9).map(|i| format!("${i}")).collect();
            rows.push(format!("({at}, {})", rest.join(", ")));
            args.extend([
                Arg::Int(Some(event.at.timestamp_micros())),
                text(event.actor.owner.clone()),
                text(event.actor.key_prefix.clone()),
                Arg::Text(event.actor.request_id.clone()),
                text(event.action.clone()),
                Arg::Text(event.target.clone()),
                text(event.outcome.as_str()),
                Arg::Int(event.snapshot),
                text(event.detail.to_string()),
            ]);
        }
        let sql = format!(
            "INSERT INTO ducklake_backend.audit_log ({COLUMNS}) VALUES {}",
            rows.join(", ")
        );
        self.execute(sql, args).await.map(drop)
    }

    /// Entries newest first, as `filter` asks.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        let mut bind = |condition: &str, arg: Arg| {
            args.push(arg);
            conditions.push(condition.replace('?', &format!("${}", args.len())));
        };
        if let Some(action) = &filter.action {
            bind("action = ?", text(action.clone()));
        }
        if let Some(prefix) = &filter.key_prefix {
            bind("key_prefix = ?", text(prefix.clone()));
        }
        if let Some(outcome) = filter.outcome {
            bind("outcome = ?", text(outcome.as_str()));
        }
        if let Some(before) = filter.before {
            bind("id < ?", Arg::Int(Some(before)));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT id, {}, actor, key_prefix, request_id, action, target, outcome, \
             snapshot_id, detail FROM ducklake_backend.audit_log {filter_sql} \
             ORDER BY id DESC LIMIT {}",
            self.micros("occurred_at"),
            filter.limit
        );
        self.select(sql, args, audit_entry).await
    }
}

fn audit_entry(cell: &dyn Fn(usize) -> Cell) -> Result<AuditEntry, StoreError> {
    let text = |i| cell(i).text;
    Ok(AuditEntry {
        id: cell(0).int.unwrap_or_default(),
        occurred_at: cell(1)
            .int
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or_default(),
        actor: text(2),
        key_prefix: text(3),
        request_id: text(4),
        action: text(5).unwrap_or_default(),
        target: text(6),
        outcome: text(7).unwrap_or_default(),
        snapshot: cell(8).int,
        detail: text(9)
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or(serde_json::Value::Null),
    })
}
