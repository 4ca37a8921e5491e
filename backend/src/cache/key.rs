//! What makes two requests the same answer.

use crate::role::Role;

/// Everything a kept answer depends on besides the lake's data and schema
/// (which the validity check covers).
#[derive(Debug)]
pub struct KeyParts<'a> {
    pub sql: &'a str,
    /// The parameters as JSON text, numbers exactly as sent.
    pub params: &'a str,
    pub format: &'a str,
    /// The effective row limit, and whether the client asked for it (a
    /// held result carries its row count in the headers).
    pub max_rows: u64,
    pub client_max_rows: bool,
    /// The server's byte limit of one result.
    pub max_result_bytes: u64,
    /// The pinned snapshot, if any.
    pub pin: Option<i64>,
    /// The sandbox lets through what the role allows, and the read-only
    /// form refuses more: both can change the answer.
    pub role: Role,
    pub read_only: bool,
}

/// SHA-256 of the parts, each length-prefixed so no two differ only in
/// where one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    pub fn of(parts: &KeyParts<'_>) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        // Leading and trailing blanks and semicolons change nothing DuckDB
        // runs; anything inside the text may (string literals keep their
        // spaces), so it is kept as sent.
        field(normalize(parts.sql).as_bytes());
        field(parts.params.as_bytes());
        field(parts.format.as_bytes());
        field(&parts.max_rows.to_le_bytes());
        field(&[parts.client_max_rows as u8, parts.read_only as u8]);
        field(&parts.max_result_bytes.to_le_bytes());
        field(&parts.pin.map_or([0xff; 9], |p| {
            let mut b = [0; 9];
            b[1..].copy_from_slice(&p.to_le_bytes());
            b
        }));
        field(parts.role.to_string().as_bytes());
        Self(hash.finalize().into())
    }
}

fn normalize(sql: &str) -> &str {
    sql.trim_matches(|c: char| c.is_whitespace() || c == ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(sql: &str) -> KeyParts<'_> {
        KeyParts {
            sql,
            params: "",
            format: "json",
            max_rows: 100,
            client_max_rows: false,
            max_result_bytes: 1000,
            pin: None,
            role: Role::Read,
            read_only: false,
        }
    }

    #[test]
    fn every_part_counts_and_only_outer_blanks_do_not() {
        let base = Key::of(&parts("SELECT 1"));
        assert_eq!(base, Key::of(&parts("  SELECT 1 ;\n")));
        assert_ne!(base, Key::of(&parts("SELECT  1")));
        let variants = [
            KeyParts {
                params: "[1]",
                ..parts("SELECT 1")
            },
            KeyParts {
                format: "csv",
                ..parts("SELECT 1")
            },
            KeyParts {
                max_rows: 99,
                ..parts("SELECT 1")
            },
            KeyParts {
                client_max_rows: true,
                ..parts("SELECT 1")
            },
            KeyParts {
                max_result_bytes: 1,
                ..parts("SELECT 1")
            },
            KeyParts {
                pin: Some(0),
                ..parts("SELECT 1")
            },
            KeyParts {
                role: Role::Admin,
                ..parts("SELECT 1")
            },
            KeyParts {
                read_only: true,
                ..parts("SELECT 1")
            },
        ];
        for variant in &variants {
            assert_ne!(base, Key::of(variant), "{variant:?}");
        }
        // Where one part ends matters.
        let a = KeyParts {
            params: "x",
            ..parts("SELECT 1")
        };
        let b = KeyParts {
            sql: "SELECT 1x",
            params: "",
            ..parts("")
        };
        assert_ne!(Key::of(&a), Key::of(&b));
    }
}
