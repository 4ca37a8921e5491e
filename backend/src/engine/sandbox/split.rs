//! Where one statement of a request ends and the next begins, and the
//! statement with its parameters written in as literals, for the sandbox's
//! check. Tokens come from sqlparser's tokenizer; DuckDB then confirms each
//! piece is exactly one statement (see [`super::judge`]).

use std::borrow::Cow;

use serde_json::Value;
use sqlparser::{
    dialect::DuckDbDialect,
    tokenizer::{Token, Tokenizer},
};

use crate::{
    engine::query::{Param, Params},
    error::Error,
};

/// Cuts `sql` into statements at top-level `;` tokens, dropping pieces that
/// hold only whitespace and comments. When the tokenizer cannot read the
/// text (an unterminated string, say) the whole text is one piece and
/// DuckDB's parser reports the problem.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let dialect = DuckDbDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return vec![sql];
    };
    let offsets = LineOffsets::new(sql);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut has_content = false;
    for token in &tokens {
        match &token.token {
            Token::SemiColon => {
                let at = offsets.byte_offset(token.span.start.line, token.span.start.column);
                if has_content {
                    pieces.push(&sql[start..at]);
                }
                start = at + 1;
                has_content = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_content = true,
        }
    }
    if has_content {
        pieces.push(&sql[start..]);
    }
    pieces
}

/// The statement the sandbox inspects when the request carries parameters:
/// `sql` with each placeholder (`?`, `$1`, `$name`) replaced by its value as
/// a SQL literal. The check then sees exactly what will run: a value can
/// change a plan (`query(?)` runs its argument as SQL), so planning with
/// unknown parameters would not do. The statement itself still runs with the
/// values bound, never spliced.
pub fn with_literals<'a>(sql: &'a str, params: &Params) -> Result<Cow<'a, str>, Error> {
    if matches!(params, Params::None) {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = DuckDbDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    let offsets = LineOffsets::new(sql);
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut next_positional = 0;
    for token in &tokens {
        let Token::Placeholder(name) = &token.token else {
            continue;
        };
        let value = match (params, name.as_str()) {
            (Params::Positional(values), "?") => {
                next_positional += 1;
                values.get(next_positional - 1)
            }
            (Params::Positional(values), numbered) => numbered[1..]
                .parse::<usize>()
                .ok()
                .and_then(|n| values.get(n.checked_sub(1)?)),
            (Params::Named(map), named) => map.get(named.trim_start_matches(['$', ':'])),
            (Params::None, _) => None,
        };
        let Some(value) = value else {
            return Err(Error::InvalidParameters(format!(
                "no value given for parameter {name}"
            )));
        };
        let start = offsets.byte_offset(token.span.start.line, token.span.start.column);
        let end = offsets.byte_offset(token.span.end.line, token.span.end.column);
        out.push_str(&sql[copied..start]);
        out.push_str(&sql_literal(value));
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

/// Whether `sql` holds a parameter placeholder (`?`, `$1`, `$name`).
pub fn has_placeholder(sql: &str) -> bool {
    Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize()
        .is_ok_and(|tokens| tokens.iter().any(|t| matches!(t, Token::Placeholder(_))))
}

/// A parameter as the SQL literal of what it binds as (see
/// [`crate::engine::query`]: a number as the digits sent, arrays and
/// objects as their JSON text), in parentheses: the literal is one
/// expression whatever stands beside it (`1-?` with -1 is `1-(-1)`, not
/// `1--1`, which would start a comment).
pub fn sql_literal(param: &Param) -> String {
    format!("({})", bare_literal(param))
}

fn bare_literal(param: &Param) -> String {
    let value = match param {
        Param::Number(text) => return text.clone(),
        Param::Json(value) => value,
    };
    // A NUL cannot sit inside SQL text; chr(0) stands for it.
    let quote = |text: &str| {
        text.split('\0')
            .map(|part| format!("'{}'", part.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" || chr(0) || ")
    };
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// Turns the tokenizer's 1-based line and character column into a byte offset.
pub(super) struct LineOffsets<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    pub(super) fn byte_offset(&self, line: u64, column: u64) -> usize {
        let line_start = self.starts[(line as usize).saturating_sub(1)];
        self.text[line_start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| line_start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "SELECT 'a;b'; -- c;d\nSELECT \"x;y\" FROM t; /* ; */ ;  SELECT $$;$$";
        assert_eq!(
            split_statements(sql),
            vec![
                "SELECT 'a;b'",
                " -- c;d\nSELECT \"x;y\" FROM t",
                "  SELECT $$;$$"
            ]
        );
        assert!(split_statements("  -- nothing\n ; ;").is_empty());
        assert_eq!(split_statements("SELECT 'é;ü'; SELECT 2").len(), 2);
    }

    #[test]
    fn parameters_become_literals_for_the_check() {
        let positional = Params::parse(r#"[1, "it's", [1, 2], null]"#).unwrap();
        assert_eq!(
            with_literals("SELECT ?, ? FROM t WHERE a = ? AND b IS ?", &positional).unwrap(),
            "SELECT (1), ('it''s') FROM t WHERE a = ('[1,2]') AND b IS (NULL)"
        );
        assert_eq!(
            with_literals("SELECT $2, $1", &positional).unwrap(),
            "SELECT ('it''s'), (1)"
        );
        let named = Params::parse(r#"{"min": 2.50, "q": "SELECT 1"}"#).unwrap();
        assert_eq!(
            with_literals("SELECT * FROM query($q) WHERE x > $min -- $nope", &named).unwrap(),
            "SELECT * FROM query(('SELECT 1')) WHERE x > (2.50) -- $nope"
        );
        assert_eq!(
            with_literals("SELECT '?', $missing", &named)
                .unwrap_err()
                .code(),
            "invalid_parameters"
        );
        assert_eq!(
            with_literals("SELECT ?", &Params::None).unwrap(),
            "SELECT ?"
        );
    }

    #[test]
    fn unreadable_text_is_one_piece() {
        assert_eq!(
            split_statements("SELECT 'open; SELECT 2"),
            vec!["SELECT 'open; SELECT 2"]
        );
    }
}
