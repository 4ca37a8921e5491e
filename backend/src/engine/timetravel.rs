//! Reading the lake as of a snapshot, and naming the snapshot a response
//! read (`X-DuckLake-Snapshot`, and a weak ETag derived from it).
//!
//! **Pinning.** A request pinned to a snapshot version or a timestamp has
//! DuckLake's `AT (VERSION => n)` / `AT (TIMESTAMP => t)` applied to every
//! table it names that has no `AT` of its own. The rewrite works on DuckDB's
//! own parse tree: `json_serialize_sql` → add the `at_clause` to each
//! `BASE_TABLE` (CTE names excepted) → `json_deserialize_sql`. DuckDB only
//! serialises SELECT statements, which is also the only kind that makes
//! sense against the past; anything else answers 422. The sandbox then
//! checks the rewritten statement like any other.
//!
//! **ETags.** A read's ETag is `W/"s<snapshot>-<hash>"`: the snapshot it read
//! and a hash of what was asked (SQL, parameters, format, row limit, pin).
//! It is weak because JSON bodies carry their elapsed time. `If-None-Match`
//! answers 304 when the hash matches and none of the tables the query scans
//! changed after that snapshot (their last change as the table list reads
//! it), and the query calls no volatile function such as `random()` or
//! `now()`.

use duckdb::Connection;
use serde_json::Value;

use super::{lake::quote_literal, parse_tree};
use crate::error::Error;

/// A request's snapshot pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    Version(i64),
    /// Text DuckDB casts to TIMESTAMPTZ (RFC 3339 works).
    Time(String),
}

impl Pin {
    fn describe(&self) -> String {
        match self {
            Pin::Version(v) => format!("VERSION => {v}"),
            Pin::Time(t) => format!("TIMESTAMP => {}", quote_literal(t)),
        }
    }
}

fn duck(err: duckdb::Error) -> Error {
    Error::from_duckdb(err)
}

/// The snapshot `pin` names, checked against the lake's history, and the
/// `at_clause` node that applies it.
pub fn resolve(conn: &Connection, lake: &str, pin: &Pin) -> Result<(i64, Value), Error> {
    let snapshots = format!("ducklake_snapshots({})", quote_literal(lake));
    let snapshot: Option<i64> = match pin {
        Pin::Version(v) => conn
            .query_row(
                &format!("SELECT max(snapshot_id) FROM {snapshots} WHERE snapshot_id = ?"),
                [v],
                |row| row.get(0),
            )
            .map_err(duck)?,
        Pin::Time(t) => {
            let at: Option<i64> = conn
                .query_row(
                    &format!(
                        "SELECT max(snapshot_id) FROM {snapshots} WHERE snapshot_time <= TRY_CAST(? AS TIMESTAMPTZ)"
                    ),
                    [t],
                    |row| row.get(0),
                )
                .map_err(duck)?;
            let valid: bool = conn
                .query_row(
                    "SELECT TRY_CAST(? AS TIMESTAMPTZ) IS NOT NULL",
                    [t],
                    |row| row.get(0),
                )
                .map_err(duck)?;
            if !valid {
                return Err(Error::InvalidParameters(format!(
                    "as_of {t:?} is not a timestamp (use RFC 3339, e.g. 2026-11-23T10:00:00Z)"
                )));
            }
            at
        }
    };
    let Some(snapshot) = snapshot else {
        return Err(Error::InvalidParameters(match pin {
            Pin::Version(v) => format!("the lake has no snapshot {v} (it may have been expired)"),
            Pin::Time(t) => format!("the lake has no snapshot at or before {t}"),
        }));
    };
    // DuckDB builds the clause itself from a template statement.
    let template = format!("SELECT * FROM t AT ({})", pin.describe());
    let tree = serialize(conn, &template)?;
    let clause = tree["statements"][0]["node"]["from_table"]["at_clause"].clone();
    if clause.is_null() {
        return Err(Error::internal(anyhow::anyhow!(
            "DuckDB did not parse the AT clause template"
        )));
    }
    Ok((snapshot, clause))
}

/// `sql` (one statement) with `clause` on every table that has no AT of
/// its own.
pub fn pin_statement(conn: &Connection, sql: &str, clause: &Value) -> Result<String, Error> {
    // The EXPLAIN of a pinned read: the explained statement pinned, in an
    // EXPLAIN the sandbox's reader knows (it checks that statement again).
    if let Some(explain) = super::sandbox::explain(sql) {
        let inner = pin_statement(conn, explain.inner, clause)?;
        return Ok(explain.around(&inner));
    }
    let mut tree = serialize(conn, sql)?;
    apply(&mut tree, clause);
    parse_tree::deserialize(conn, &tree)
}

/// [`parse_tree::serialize`], with DuckDB's refusal as the request's error.
fn serialize(conn: &Connection, sql: &str) -> Result<Value, Error> {
    let tree = parse_tree::serialize(conn, sql)?;
    if tree["error"].as_bool() == Some(true) {
        let message = tree["error_message"].as_str().unwrap_or("").to_string();
        if message.contains("Only SELECT") {
            return Err(Error::InvalidParameters(
                "snapshot and as_of apply to SELECT statements only".into(),
            ));
        }
        let kind = tree["error_type"].as_str().unwrap_or("parser");
        return Err(Error::from_duckdb_message(format!(
            "{} Error: {message}",
            super::sandbox::title_case(kind)
        )));
    }
    Ok(tree)
}

/// Puts `clause` on every base table of `node` that has no AT of its own.
fn apply(node: &mut Value, clause: &Value) {
    parse_tree::for_each_table(node, &mut |table| {
        if table.get("at_clause").is_some_and(Value::is_null) {
            table.insert("at_clause".into(), clause.clone());
        }
    });
}

/// `W/"s<snapshot>-<hash>"`.
pub fn etag(snapshot: i64, request_hash: &str) -> String {
    format!("W/\"s{snapshot}-{request_hash}\"")
}

/// The strong ETag of one answer's exact bytes: its version tag's
/// `s<snapshot>-<hash>` and the first 128 bits of the bytes' SHA-256. The
/// GET form's file reads (HEAD, ranges) carry it: `If-Range` may name only
/// a strong validator (RFC 9110 13.1.5), and a reader that compares the
/// ETag of each part (DuckDB's httpfs) sees a change even where the
/// version is the same (an unordered answer run again at one snapshot can
/// come in another order).
pub fn content_etag(version_etag: &str, digest: &str) -> Option<String> {
    let (snapshot, hash) = version_of(version_etag)?;
    Some(format!(
        "\"s{snapshot}-{hash}.{}\"",
        &digest[..digest.len().min(32)]
    ))
}

/// The snapshot and request hash an ETag names, weak or strong, with or
/// without the digest of [`content_etag`].
fn version_of(tag: &str) -> Option<(i64, &str)> {
    let tag = tag.trim();
    let inner = tag.strip_prefix("W/").unwrap_or(tag);
    let inner = inner.strip_prefix('"')?.strip_suffix('"')?;
    let (snapshot, rest) = inner.strip_prefix('s')?.split_once('-')?;
    let hash = rest.split_once('.').map_or(rest, |(hash, _)| hash);
    Some((snapshot.parse().ok()?, hash))
}

/// Whether an `If-None-Match` value names the version `etag` names (by
/// its version tag or a content tag of it).
pub fn names_version(if_none_match: &str, etag: &str) -> bool {
    version_of(etag).is_some_and(|version| {
        if_none_match
            .split(',')
            .any(|tag| version_of(tag) == Some(version))
    })
}

/// The snapshots in an `If-None-Match` value whose hash is `request_hash`.
pub fn matching_snapshots(if_none_match: &str, request_hash: &str) -> Vec<i64> {
    if_none_match
        .split(',')
        .filter_map(version_of)
        .filter_map(|(snapshot, hash)| (hash == request_hash).then_some(snapshot))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_are_read_by_hash() {
        let tag = etag(42, "abcd");
        assert_eq!(tag, "W/\"s42-abcd\"");
        assert_eq!(matching_snapshots(&tag, "abcd"), vec![42]);
        assert_eq!(matching_snapshots(&tag, "ffff"), Vec::<i64>::new());
        assert_eq!(
            matching_snapshots("\"x\", W/\"s7-abcd\" , \"s9-abcd\"", "abcd"),
            vec![7, 9]
        );
        assert!(matching_snapshots("*", "abcd").is_empty());
        assert!(matching_snapshots("W/\"sx-abcd\"", "abcd").is_empty());
        // A content tag names its version too.
        let strong = content_etag(&tag, &"0f".repeat(32)).unwrap();
        assert_eq!(strong, format!("\"s42-abcd.{}\"", "0f".repeat(16)));
        assert_eq!(matching_snapshots(&strong, "abcd"), vec![42]);
        assert!(names_version(&format!("\"x\", {strong}"), &tag));
        assert!(names_version(&tag, &strong));
        assert!(!names_version(&etag(43, "abcd"), &tag));
        assert!(!names_version("*", &tag));
    }
}
