//! The `audit_log` table: written in batches by [`crate::audit`], read
//! newest first by `GET /api/v1/audit`.

use chrono::DateTime;

use super::sql::{text, Arg, Cell};
use crate::{
    audit::{AuditEntry, AuditFilter, Event},
    store::{Store, StoreError},
};

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
            let at = match self {
                Self::Postgres(_) => format!("to_timestamp(${}::BIGINT / 1000000.0)", n + 1),
                Self::Local(_) => {
                    format!("CAST(make_timestamp(${}::BIGINT) AS TIMESTAMPTZ)", n + 1)
                }
            };
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
