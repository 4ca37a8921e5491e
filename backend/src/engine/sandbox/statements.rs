//! Where one statement of a request ends and the next begins, as DuckDB's
//! own parser reads the text: no second tokenizer decides it.
//!
//! DuckDB's C API counts the statements of a text
//! (`duckdb_extract_statements`) but does not say where each one starts.
//! So a cut is proposed at a `;` byte and kept only when DuckDB reads the
//! text before it as exactly one statement and the text after it as all
//! the others: a `;` inside a string, a comment or a quoted name fails one
//! of the two counts. The cut cannot make the sandbox check one thing and
//! run another: each piece is then planned, checked and prepared as that
//! same text (see [`super::Checked`]), and DuckDB refuses to prepare a
//! piece that holds more than one statement. At worst a misplaced cut
//! answers with an error.
//!
//! The counting runs on a private in-memory DuckDB of the same build, which
//! holds no data and is never given anything to execute: parsing only.

use std::{
    ffi::{CStr, CString},
    ptr,
    sync::OnceLock,
};

use duckdb::ffi;
use parking_lot::Mutex;

use crate::error::Error;

/// Bytes the search for cuts may have DuckDB parse for one request, as a
/// multiple of the request's length (with a floor): a text with thousands
/// of `;` inside strings or comments between its statements would
/// otherwise cost a parse per `;`.
const PARSE_BUDGET_FACTOR: usize = 64;
const PARSE_BUDGET_FLOOR: usize = 4 << 20;

/// A DuckDB database and connection used only to parse.
struct Parser {
    db: ffi::duckdb_database,
    conn: ffi::duckdb_connection,
}

// SAFETY: the handles are used only under the mutex below, one call at a
// time, which DuckDB's C API allows from any thread.
unsafe impl Send for Parser {}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: both handles were opened by `Parser::open` and are closed once.
        unsafe {
            ffi::duckdb_disconnect(&mut self.conn);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

impl Parser {
    fn open() -> Result<Self, String> {
        let mut db = ptr::null_mut();
        let mut conn = ptr::null_mut();
        // SAFETY: a null path opens an in-memory database; the out
        // pointers are valid, and on failure nothing is left open.
        unsafe {
            if ffi::duckdb_open(ptr::null(), &mut db) != ffi::DuckDBSuccess {
                return Err("DuckDB's parser could not be opened".into());
            }
            if ffi::duckdb_connect(db, &mut conn) != ffi::DuckDBSuccess {
                ffi::duckdb_close(&mut db);
                return Err("DuckDB's parser could not be connected".into());
            }
        }
        Ok(Self { db, conn })
    }

    /// How many statements DuckDB's parser reads in `sql`, or its error.
    fn count(&self, sql: &CStr) -> Result<usize, String> {
        let mut extracted = ptr::null_mut();
        // SAFETY: `sql` is NUL-terminated; `extracted` is destroyed below
        // whatever the outcome, and its error text copied before that.
        unsafe {
            let n = ffi::duckdb_extract_statements(self.conn, sql.as_ptr(), &mut extracted);
            let error = ffi::duckdb_extract_statements_error(extracted);
            let outcome = if error.is_null() {
                Ok(n as usize)
            } else {
                Err(CStr::from_ptr(error).to_string_lossy().into_owned())
            };
            ffi::duckdb_destroy_extracted(&mut extracted);
            outcome
        }
    }
}

fn parser() -> Result<&'static Mutex<Parser>, Error> {
    static PARSER: OnceLock<Result<Mutex<Parser>, String>> = OnceLock::new();
    PARSER
        .get_or_init(|| Parser::open().map(Mutex::new))
        .as_ref()
        .map_err(|e| Error::internal(anyhow::anyhow!("{e}")))
}

/// How many statements DuckDB's parser reads in `sql`; `Err` with DuckDB's
/// message when it cannot read it.
pub fn count_statements(sql: &str) -> Result<Result<usize, String>, Error> {
    let text = CString::new(sql)
        .map_err(|_| Error::InvalidRequest("the SQL contains a NUL character".into()))?;
    Ok(parser()?.lock().count(&text))
}

/// Cuts `sql` into its statements as DuckDB's parser reads them (see the
/// module's notes). Text DuckDB cannot parse is one piece, whose check then
/// answers DuckDB's own error; text with no statement has no piece. A
/// piece may still hold several statements where no cut could be found:
/// its check refuses it.
pub fn split_statements(sql: &str) -> Result<Vec<&str>, Error> {
    let parser = parser()?;
    let mut budget = (sql.len() * PARSE_BUDGET_FACTOR).max(PARSE_BUDGET_FLOOR);
    let mut count = |text: &str| -> Result<Option<usize>, Error> {
        budget = budget.checked_sub(text.len()).ok_or_else(|| {
            Error::InvalidRequest(
                "this request has too many `;` inside strings, names or comments to tell \
                 its statements apart; send them in separate requests"
                    .into(),
            )
        })?;
        let text = CString::new(text)
            .map_err(|_| Error::InvalidRequest("the SQL contains a NUL character".into()))?;
        Ok(parser.lock().count(&text).ok())
    };
    let total = match count(sql)? {
        None => return Ok(vec![sql]),
        Some(0) => return Ok(Vec::new()),
        Some(1) => return Ok(vec![sql]),
        Some(n) => n,
    };
    let mut pieces = Vec::with_capacity(total);
    let mut rest = sql;
    let mut left = total;
    while left > 1 {
        let mut cut = None;
        for (at, _) in rest.match_indices(';') {
            if count(&rest[..at])? == Some(1) && count(&rest[at + 1..])? == Some(left - 1) {
                cut = Some(at);
                break;
            }
        }
        // No cut: DuckDB's parser made several statements of one (a PIVOT
        // over the data's values expands so), or the text defeats the
        // search. The rest is one piece, whose check then sees all of it
        // and refuses anything that is not exactly one plannable statement.
        let Some(at) = cut else {
            break;
        };
        pieces.push(&rest[..at]);
        rest = &rest[at + 1..];
        left -= 1;
    }
    pieces.push(rest);
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_where_duckdb_ends_statements() {
        let sql = "SELECT 'a;b'; -- c;d\nSELECT \"x;y\" FROM t; /* ; */ ;  SELECT $$;$$";
        assert_eq!(
            split_statements(sql).unwrap(),
            vec![
                "SELECT 'a;b'",
                " -- c;d\nSELECT \"x;y\" FROM t",
                " /* ; */ ;  SELECT $$;$$"
            ]
        );
        assert!(split_statements("  -- nothing\n ; ;").unwrap().is_empty());
        assert_eq!(split_statements("SELECT 'é;ü'; SELECT 2").unwrap().len(), 2);
    }

    /// DuckDB ends a `--` comment at a carriage return too (sqlparser's
    /// tokenizer did not): the cut follows DuckDB.
    #[test]
    fn a_comment_ends_where_duckdb_ends_it() {
        assert_eq!(
            split_statements("SELECT 1 -- x\r; SELECT 2").unwrap(),
            vec!["SELECT 1 -- x\r", " SELECT 2"]
        );
        assert_eq!(
            split_statements("SELECT 1 -- x;\r, 2; SELECT 3").unwrap(),
            vec!["SELECT 1 -- x;\r, 2", " SELECT 3"]
        );
        assert_eq!(count_statements("SELECT 1 -- x\r, 2").unwrap(), Ok(1));
    }

    /// DuckDB expands a PIVOT over the data's values into several
    /// statements with no `;` between them: one piece, for the check.
    #[test]
    fn an_expanded_statement_stays_one_piece() {
        let pivot = "PIVOT t ON x USING sum(y)";
        assert!(count_statements(pivot).unwrap().unwrap() > 1);
        assert_eq!(split_statements(pivot).unwrap(), vec![pivot]);
        assert_eq!(
            split_statements(&format!("SELECT 1; {pivot}")).unwrap(),
            vec!["SELECT 1", &format!(" {pivot}")]
        );
    }

    /// The docs say the service has no other SQL tokenizer: none is in
    /// the dependency tree to decide anything.
    #[test]
    fn no_second_sql_tokenizer_is_in_the_tree() {
        let lock = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
        for tokenizer in ["sqlparser", "pg_query", "sqlformat", "sql-parse"] {
            assert!(
                !lock.contains(&format!("name = \"{tokenizer}\"")),
                "{tokenizer} is back in Cargo.lock: what does it decide?"
            );
        }
    }

    #[test]
    fn unreadable_text_is_one_piece() {
        assert_eq!(
            split_statements("SELECT 'open; SELECT 2").unwrap(),
            vec!["SELECT 'open; SELECT 2"]
        );
        assert!(count_statements("SELEC 1").unwrap().is_err());
    }

    #[test]
    fn a_text_that_costs_too_many_parses_is_refused() {
        let noise = format!("'{}'", ";".repeat(4000));
        let sql = format!("SELECT {noise}, {noise}; SELECT 2;").repeat(20);
        match split_statements(&sql) {
            Err(err) => assert_eq!(err.code(), "invalid_request", "{err}"),
            Ok(pieces) => panic!("split into {} pieces", pieces.len()),
        }
    }
}
