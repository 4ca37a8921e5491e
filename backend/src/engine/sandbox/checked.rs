//! The one door from a caller's SQL to DuckDB's executor.
//!
//! **Invariant: what runs is exactly what was checked.** A [`Checked`] is
//! made only by [`check`], from a text whose plan DuckDB bound and the
//! sandbox read on the connection (and in the transaction) that then runs
//! it, and it holds exactly one statement as DuckDB's parser reads it. Its
//! fields are private and it has no constructor outside this module: the
//! executor gets a statement to run only from [`Checked::start`] or
//! [`Checked::execute`], which prepare exactly the checked text and bind
//! exactly the checked values. So running text other than the checked text
//! cannot be written without changing this file.
//!
//! How the text checked relates to the request:
//!
//! - no parameters: the request's text itself;
//! - parameters DuckDB can plan as data (`WHERE a = ?`, `VALUES (?, ?)`):
//!   the request's text, planned with the placeholders in it (every one a
//!   `BOUND_PARAMETER` of the plan, which no value can change), and run
//!   with the values bound;
//! - parameters DuckDB needs to plan (`range(?)`, `query($q)`), in a
//!   SELECT: the text DuckDB writes from its own parse tree with each
//!   placeholder replaced by the value's literal ([`parse_tree::with_values`]);
//!   that text is checked and runs, with nothing left to bind. Anywhere
//!   else such a parameter is refused;
//! - `EXPLAIN`: see [`super::explain`]: the explained statement is checked
//!   as above, and the EXPLAIN the service writes around exactly that text
//!   runs.

use duckdb::{arrow::datatypes::SchemaRef, Connection, Statement};

use super::{explain::explain, inspect_with, statements::count_statements, Inspection};
use crate::{
    engine::{
        parse_tree,
        query::{bind_values, Params},
    },
    error::Error,
    role::Role,
};

/// The SQL that asks DuckDB for a statement's bound plan.
const PLAN_SQL: &str = "SELECT json_serialize_plan(?::VARCHAR)";

/// Who asks, and what the statement may read besides the lake.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The lake's catalog name.
    pub lake: &'a str,
    pub role: Role,
    /// The read-only form: nothing beyond reads, whatever the role.
    pub read_only: bool,
    /// In-memory copies of lake tables (`memory.main.<name>`) the statement
    /// may read: the service's own rewrite of a read onto them.
    pub copies: &'a [String],
}

/// A statement the sandbox checked, ready to run (see the module's notes).
#[derive(Debug)]
pub struct Checked {
    sql: String,
    params: Params,
    inspection: Inspection,
    needs: Role,
    explain: bool,
}

impl Checked {
    /// The text that was checked, which is the text that runs.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// What the check read in the statement's plan.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }

    /// The role the statement needs.
    pub fn needs(&self) -> Role {
        self.needs
    }

    /// An EXPLAIN the service wrote around the checked statement.
    pub fn is_explain(&self) -> bool {
        self.explain
    }

    /// Checks `sql`, a statement the service wrote from this one (the read
    /// pointed at hot table copies, its columns cast), with this one's
    /// parameters: it runs only as a [`Checked`] of its own.
    pub fn derive(
        &self,
        conn: &Connection,
        sql: &str,
        ask: Ask<'_>,
        duck: &dyn Fn(duckdb::Error) -> Error,
    ) -> Result<Option<Checked>, Error> {
        check(conn, sql, &self.params, ask, duck)
    }

    /// Prepares the checked text, binds the checked values and starts it.
    pub fn start<'c>(
        &self,
        conn: &'c Connection,
        duck: impl Fn(duckdb::Error) -> Error,
    ) -> Result<(Statement<'c>, SchemaRef), Error> {
        let mut stmt = conn.prepare(&self.sql).map_err(&duck)?;
        let values = bind_values(&stmt, &self.params)?;
        let schema = stmt
            .stream_arrow(duckdb::params_from_iter(values.iter()))
            .map_err(&duck)?
            .get_schema();
        Ok((stmt, schema))
    }

    /// Prepares the checked text, binds the checked values and runs it to
    /// its end (an earlier statement of a request, whose rows nobody reads).
    pub fn execute(
        &self,
        conn: &Connection,
        duck: impl Fn(duckdb::Error) -> Error,
    ) -> Result<(), Error> {
        let mut stmt = conn.prepare(&self.sql).map_err(&duck)?;
        let values = bind_values(&stmt, &self.params)?;
        stmt.execute(duckdb::params_from_iter(values.iter()))
            .map_err(&duck)?;
        Ok(())
    }
}

/// Checks `sql` (one statement) with `params` for `ask`: the statement to
/// run, `None` when it holds nothing to run, or why it may not run.
pub fn check(
    conn: &Connection,
    sql: &str,
    params: &Params,
    ask: Ask<'_>,
    duck: &dyn Fn(duckdb::Error) -> Error,
) -> Result<Option<Checked>, Error> {
    if let Some(explain) = explain(sql) {
        let Some(mut inner) = check(conn, explain.inner, params, ask, duck)? else {
            return Err(Error::InvalidRequest(
                "EXPLAIN needs the statement to explain".into(),
            ));
        };
        inner.sql = explain.around(&inner.sql);
        inner.explain = true;
        // An EXPLAIN's answer (a plan, timings) has no lake version.
        inner.inspection.unversioned.insert("EXPLAIN".into());
        return one_statement(inner).map(Some);
    }
    // A value whose binding would lose its type (a timestamp with zone, a
    // list) is written in, typed, where DuckDB can write it: a SELECT.
    if !params.bind_exactly() {
        let tree = parse_tree::serialize(conn, sql)?;
        if tree["error"].as_bool() == Some(false) {
            if let Some(literal) = parse_tree::with_values(conn, &tree, params)? {
                let plan = plan_of(conn, &literal, duck)?;
                let inspection = inspect_with(&plan, ask.lake, ask.copies)?;
                return finish(literal, Params::None, inspection, ask);
            }
        }
    }
    let plan = plan_of(conn, sql, duck)?;
    let planned = inspect_with(&plan, ask.lake, ask.copies);
    let (sql, params, inspection) = match planned {
        Ok(inspection) => (sql.to_string(), params.clone(), inspection),
        Err(refusal) => {
            // DuckDB could not plan the statement with its placeholders
            // unbound: a value it needs to plan (a table function's
            // argument). A SELECT is checked and run with the values
            // written in by DuckDB itself.
            let tree = parse_tree::serialize(conn, sql)?;
            let serialized = tree["error"].as_bool() == Some(false);
            if !serialized && !matches!(params, Params::None) && unplanned(&plan) {
                return Err(Error::Forbidden(
                    "DuckDB needs the value of a parameter to plan this statement (a table \
                     function's argument, say), which only a SELECT can take: write the value \
                     in the SQL"
                        .into(),
                ));
            }
            if !parse_tree::has_placeholders(&tree) {
                return Err(refusal);
            }
            if matches!(params, Params::None) {
                return Err(Error::InvalidParameters(
                    "the statement has parameter placeholders and the request gives no params"
                        .into(),
                ));
            }
            let Some(literal) = parse_tree::with_values(conn, &tree, params)? else {
                return Err(refusal);
            };
            let plan = plan_of(conn, &literal, duck)?;
            let inspection = inspect_with(&plan, ask.lake, ask.copies)?;
            (literal, Params::None, inspection)
        }
    };
    finish(sql, params, inspection, ask)
}

/// The checked statement, once planned: `None` when it holds nothing to
/// run, or why the request may not run it.
fn finish(
    sql: String,
    params: Params,
    inspection: Inspection,
    ask: Ask<'_>,
) -> Result<Option<Checked>, Error> {
    let Some(needs) = inspection.needs else {
        return Ok(None);
    };
    if ask.read_only && needs > Role::Read {
        return Err(Error::ReadOnly(
            "this form of the query endpoint is read-only: writes need POST".into(),
        ));
    }
    if needs > ask.role {
        return Err(Error::InsufficientRole(format!(
            "this statement needs the {needs} role; the request has the {} role",
            ask.role
        )));
    }
    // DuckDB planned this text as exactly one statement (`inspect` refuses
    // more than one plan): its count is already DuckDB's.
    Ok(Some(Checked {
        sql,
        params,
        inspection,
        needs,
        explain: false,
    }))
}

/// DuckDB made no plan at all: what it answers when a parameter's value is
/// needed to bind the statement.
fn unplanned(plan_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(plan_json)
        .is_ok_and(|answer| answer["error_type"].as_str() == Some("internal"))
}

/// DuckDB's bound plan of `sql`, as JSON.
fn plan_of(
    conn: &Connection,
    sql: &str,
    duck: &dyn Fn(duckdb::Error) -> Error,
) -> Result<String, Error> {
    conn.prepare_cached(PLAN_SQL)
        .and_then(|mut stmt| stmt.query_row([sql], |row| row.get(0)))
        .map_err(duck)
}

/// `checked` (an EXPLAIN the service wrote around a checked statement),
/// once DuckDB's parser confirms its text is one statement (a prepared text
/// of several would run all but the last unseen).
fn one_statement(checked: Checked) -> Result<Checked, Error> {
    match count_statements(&checked.sql)? {
        Ok(1) => Ok(checked),
        Ok(_) => Err(Error::InvalidRequest(
            "could not tell where one statement ends and the next begins; \
             separate statements with `;`"
                .into(),
        )),
        Err(message) => Err(Error::from_duckdb_message(format!(
            "Parser Error: {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory DuckDB whose own catalog plays the lake, with a table.
    fn lake() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INT)").unwrap();
        conn
    }

    fn ask(role: Role) -> Ask<'static> {
        Ask {
            lake: "memory",
            role,
            read_only: false,
            copies: &[],
        }
    }

    fn rows(conn: &Connection) -> Vec<i32> {
        let mut stmt = conn.prepare("SELECT a FROM t ORDER BY a").unwrap();
        let rows = stmt.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn checked(conn: &Connection, sql: &str, params: &str, role: Role) -> Result<Checked, Error> {
        let params = Params::parse(params).unwrap();
        check(conn, sql, &params, ask(role), &Error::from_duckdb).map(|c| c.expect("a statement"))
    }

    /// The issue's attack: a `\r` ends DuckDB's `--` comment. The explained
    /// statement is what DuckDB reads after the head, an INSERT: refused to
    /// a reader, and for a writer the EXPLAIN that runs is written around
    /// exactly the checked text.
    #[test]
    fn an_explained_statement_is_what_duckdb_reads_after_the_head() {
        let conn = lake();
        let attack = "EXPLAIN ANALYZE -- x\rINSERT INTO t\nSELECT 42";
        let err = checked(&conn, attack, "null", Role::Read).unwrap_err();
        assert_eq!(err.code(), "insufficient_role", "{err}");
        assert!(rows(&conn).is_empty());
        let write = checked(&conn, attack, "null", Role::Write).unwrap();
        assert!(write.is_explain());
        assert_eq!(
            write.sql(),
            "EXPLAIN (ANALYZE, FORMAT text) -- x\rINSERT INTO t\nSELECT 42"
        );
        assert!(write.inspection().writes.contains("INSERT"));
        write.execute(&conn, Error::from_duckdb).unwrap();
        assert_eq!(rows(&conn), [42]);
    }

    /// Parameters DuckDB plans as data run bound, in the text as sent; a
    /// placeholder hidden from other tokenizers by a `\r` is one DuckDB
    /// sees, and binds.
    #[test]
    fn data_parameters_run_bound_in_the_text_that_was_checked() {
        let conn = lake();
        let sql = "INSERT INTO t VALUES (?), (-- ?\r?)";
        let insert = checked(&conn, sql, "[5, 6]", Role::Write).unwrap();
        assert_eq!(insert.sql(), sql);
        insert.execute(&conn, Error::from_duckdb).unwrap();
        assert_eq!(rows(&conn), [5, 6]);
        // One value short: DuckDB's count of placeholders decides.
        let short = checked(&conn, sql, "[7]", Role::Write).unwrap();
        let err = short.execute(&conn, Error::from_duckdb).unwrap_err();
        assert_eq!(err.code(), "invalid_parameters", "{err}");
    }

    /// A value DuckDB needs to plan: a SELECT is checked and runs as the
    /// text DuckDB writes with the value in place; anything else is refused.
    #[test]
    fn a_value_needed_to_plan_is_written_in_by_duckdb_or_refused() {
        let conn = lake();
        let range = checked(&conn, "SELECT * FROM range(?)", "[3]", Role::Read).unwrap();
        assert!(!range.sql().contains('?'), "{}", range.sql());
        let (stmt, _) = range.start(&conn, Error::from_duckdb).unwrap();
        let mut n = 0;
        while let Some(chunk) = stmt.step().unwrap() {
            n += duckdb::arrow::array::RecordBatch::from(&chunk).num_rows();
        }
        assert_eq!(n, 3);
        let insert = checked(
            &conn,
            "INSERT INTO t SELECT * FROM query($1)",
            r#"["SELECT 1"]"#,
            Role::Write,
        )
        .unwrap_err();
        assert_eq!(insert.code(), "forbidden_statement", "{insert}");
        let none = checked(&conn, "SELECT * FROM range(?)", "null", Role::Read).unwrap_err();
        assert_eq!(none.code(), "invalid_parameters", "{none}");
    }

    /// Text DuckDB reads as two statements is never one checked statement.
    #[test]
    fn a_checked_statement_is_one_statement() {
        let conn = lake();
        let err = checked(
            &conn,
            "SELECT 1; INSERT INTO t VALUES (1)",
            "null",
            Role::Write,
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{err}");
        let err = checked(
            &conn,
            "EXPLAIN SELECT 1; INSERT INTO t VALUES (1)",
            "null",
            Role::Write,
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{err}");
        assert!(rows(&conn).is_empty());
    }
}
