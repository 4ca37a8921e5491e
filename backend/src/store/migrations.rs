//! Numbered SQL migrations of our own schema, embedded in the binary.
//!
//! Each file is portable SQL (it runs unchanged on PostgreSQL and on the local
//! DuckDB store) and idempotent (`IF NOT EXISTS`), and is recorded in
//! `ducklake_backend.schema_migrations` with its SHA-256 checksum. A recorded
//! checksum that differs from the embedded file means the history was edited
//! after it ran: the service refuses to start on such a database.

/// The schema our tables live in, apart from DuckLake's `ducklake_*` tables.
pub const SCHEMA: &str = "ducklake_backend";

/// Creates the schema and the bookkeeping table; runs before any migration.
pub const BOOTSTRAP_SQL: &str = "CREATE SCHEMA IF NOT EXISTS ducklake_backend; \
     CREATE TABLE IF NOT EXISTS ducklake_backend.schema_migrations ( \
         version INTEGER PRIMARY KEY, \
         name TEXT NOT NULL, \
         checksum TEXT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        crate::digest::sha256_hex(self.sql.as_bytes())
    }

    /// `0002_query_jobs`, as the file is named.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $file)),
        }
    };
}

/// Every migration this build knows, in order. Append; never edit or reorder.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "api_keys", "0001_api_keys.sql"),
    migration!(2, "query_jobs", "0002_query_jobs.sql"),
    migration!(3, "audit_log", "0003_audit_log.sql"),
    migration!(4, "query_jobs_runner", "0004_query_jobs_runner.sql"),
    migration!(5, "query_jobs_progress", "0005_query_jobs_progress.sql"),
    migration!(6, "audit_log_request", "0006_audit_log_request.sql"),
];

/// One row of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

/// Why the recorded history does not match this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaMismatch {
    #[error(
        "our schema `{SCHEMA}` is at version {current} but this build needs version {needed} \
         (pending: {pending}): run `ducklake-backend migrate`"
    )]
    Pending {
        current: i32,
        needed: i32,
        pending: String,
    },
    #[error(
        "migration {label} was recorded with checksum {recorded} but this build's file has \
         checksum {embedded}: the migration history was changed after it ran; restore the \
         original file or repair `{SCHEMA}.schema_migrations` by hand"
    )]
    Tampered {
        label: String,
        recorded: String,
        embedded: String,
    },
    #[error(
        "our schema `{SCHEMA}` has migration {version} ({name}), which this build does not know: \
         it was migrated by a newer build; run that build or a newer one"
    )]
    Unknown { version: i32, name: String },
}

/// Checks the recorded history against [`MIGRATIONS`]: every recorded one
/// must be known with the same checksum. Returns the pending migrations.
pub fn pending<'a>(
    applied: &[Applied],
    known: &'a [Migration],
) -> Result<Vec<&'a Migration>, SchemaMismatch> {
    for row in applied {
        let Some(migration) = known.iter().find(|m| m.version == row.version) else {
            return Err(SchemaMismatch::Unknown {
                version: row.version,
                name: row.name.clone(),
            });
        };
        let embedded = migration.checksum();
        if embedded != row.checksum {
            return Err(SchemaMismatch::Tampered {
                label: migration.label(),
                recorded: row.checksum.clone(),
                embedded,
            });
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .collect())
}

/// `serve`'s check: the history matches and nothing is pending.
pub fn verify(applied: &[Applied], known: &[Migration]) -> Result<i32, SchemaMismatch> {
    let pending = pending(applied, known)?;
    let current = applied.iter().map(|a| a.version).max().unwrap_or(0);
    if pending.is_empty() {
        Ok(current)
    } else {
        Err(SchemaMismatch::Pending {
            current,
            needed: known.iter().map(|m| m.version).max().unwrap_or(0),
            pending: pending
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            name: m.name.into(),
            checksum: m.checksum(),
        }
    }

    #[test]
    fn versions_are_numbered_in_order_and_files_name_them() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.label());
            assert!(m.sql.contains("ducklake_backend."), "{}", m.label());
        }
    }

    #[test]
    fn fresh_pending_and_current_histories() {
        let fresh = verify(&[], MIGRATIONS).unwrap_err();
        assert!(
            matches!(
                &fresh,
                SchemaMismatch::Pending {
                    current: 0,
                    needed: 6,
                    ..
                }
            ),
            "{fresh}"
        );
        assert!(fresh.to_string().contains("0001_api_keys, 0002_query_jobs"));
        let partial = [applied(&MIGRATIONS[0])];
        assert_eq!(pending(&partial, MIGRATIONS).unwrap().len(), 5);
        let all: Vec<Applied> = MIGRATIONS.iter().map(applied).collect();
        assert_eq!(verify(&all, MIGRATIONS), Ok(6));
    }

    #[test]
    fn a_changed_checksum_or_an_unknown_version_is_refused() {
        let mut all: Vec<Applied> = MIGRATIONS.iter().map(applied).collect();
        all[1].checksum = "0".repeat(64);
        let err = verify(&all, MIGRATIONS).unwrap_err();
        assert!(err
            .to_string()
            .contains("0002_query_jobs was recorded with checksum 000"));
        all[1] = applied(&MIGRATIONS[1]);
        all.push(Applied {
            version: 9,
            name: "future".into(),
            checksum: "x".into(),
        });
        let err = verify(&all, MIGRATIONS).unwrap_err();
        assert!(matches!(err, SchemaMismatch::Unknown { version: 9, .. }));
    }
}
